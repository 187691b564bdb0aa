#!/usr/bin/env python3
"""The fast path (haproxy.cfg, DIRECTOR_FAST_PATH=on): HAProxy reuses an agent's alive answer
for a user for as long as the agent said (its `hold`), without asking again.

With a scripted agent (tools/fake_agent.py), which sends exactly the holds a test wants:
(a) an answer is reused exactly while its hold lasts: no request reaches the agent before the
    hold ends, the first one after it does;
(b) an answer with hold 0, or without a hold, is never stored: every request asks;
(c) a not-alive answer, or an alive one with hold 0, zeroes the user's existing entry (HAProxy
    invalidates itself); a not-alive user never gets an entry;
(d) only names of up to 64 characters of [A-Za-z0-9._@+-] use it, and a stored name followed by
    a NUL byte is not that user;
(e) an old worker after a reload (`stopping`) never reuses an answer: the agent's runtime API
    commands reach the new worker only;
(f) nor does HAProxy while no agent is up (nbsrv(agents) 0): nobody would clear its entries.

With the real agent: an alive answer is held for the hold it sends (DIRECTOR_FAST_PATH_HOLD
minus the answer's age, in TTL mode); a stopped container is abandoned, and a started one
found, within 1 s under steady traffic with the default hold; a not-alive user always asks."""

import json
import signal
import socket
import time

from common import StackTest, agent_decisions, haproxy_log_decisions, main, poll
from stack import IDENTITY, Stack

BOUND = 1.0
LONG_HOLD = 60000  # ms: longer than any test, so only an invalidation ends it


class ScriptedAgent(StackTest):
    """A stack whose agent (tools/fake_agent.py, with `fake_agent_args`) answers what
    rules.json says and logs every route message."""

    fake_agent_args = []

    @classmethod
    def setUpClass(cls):
        cls.stack = Stack(fake_agent=True)
        cls.rules_path = cls.stack.run_dir / "agent-rules.json"
        cls.notify_log = cls.stack.run_dir / "agent-notify.jsonl"
        cls.stack.fake_rules = cls.rules_path
        cls.stack.agent_args = ["--notify-log", str(cls.notify_log)] + cls.fake_agent_args
        cls.rules = {}
        cls.rules_path.write_text("{}")
        cls.stack.start()

    def set_rule(self, user, **rule):
        """Scripts the agent's answer for `user`; addr/port default to its container's."""
        self.rules[user] = rule
        self.rules_path.write_text(json.dumps(self.rules))

    def alive_rule(self, user, hold):
        container = self.stack.container(user)
        self.set_rule(user, alive=True, reason="ok", addr=container["addr"],
                      port=container["port"], hold=hold)

    def notifications(self, user):
        """The arguments of every route message for `user` so far: [{"user":, "retry":}]."""
        try:
            lines = self.notify_log.read_text().splitlines()
        except FileNotFoundError:
            return []
        return [n for n in map(json.loads, lines) if n["user"] == user]

    def asks(self, user):
        """How many route messages for `user` reached the agent so far."""
        return len(self.notifications(user))

    def table(self):
        """HAProxy's fast_path table: {key: {"gpt0": ..., ...}}."""
        entries = {}
        for line in self.stack.haproxy_cli("show table fast_path").splitlines():
            if " key=" not in line:
                continue
            fields = dict(item.split("=", 1) for item in line.split()[1:] if "=" in item)
            entries[fields.pop("key")] = fields
        return entries

    def gpt0(self, user):
        fields = self.table()[user]
        # 2.6 and 3.2 print the array "gpt(3)" differently: "gpt0=N" or "gpt[0]=N".
        for name in ("gpt0", "gpt[0]"):
            if name in fields:
                return int(fields[name])
        raise AssertionError(f"no gpt0 in {fields}")


class HoldSemantics(ScriptedAgent):
    def test_a_an_answer_is_reused_exactly_while_its_hold_lasts(self):
        hold = 2.0
        self.stack.add_container("hana")
        self.alive_rule("hana", int(hold * 1000))
        before = self.asks("hana")
        started = time.monotonic()
        self.assert_routed("hana")
        answered = time.monotonic()
        self.assertEqual(self.asks("hana"), before + 1)
        self.assertIn("hana", self.table())
        reused = 0
        while time.monotonic() < started + hold - 0.5:  # room for a slow request
            self.assert_routed("hana")
            reused += 1
            time.sleep(0.02)
        print(f"{reused} requests answered by HAProxy alone", end=" ... ")
        self.assertGreater(reused, 10)
        self.assertEqual(self.asks("hana"), before + 1, "a request within the hold asked")
        time.sleep(max(0.0, answered + hold + 0.1 - time.monotonic()))
        self.assert_routed("hana")
        self.assertEqual(self.asks("hana"), before + 2, "a request after the hold was not asked")
        container = self.stack.container("hana")
        target = f"{container['addr']}:{container['port']}"
        # HAProxy writes a request's log line once the response is sent: wait for the last.
        poll(lambda: [d["fast"] for d in haproxy_log_decisions(self.stack)
                      if d["target"] == target].count("1"), lambda n: n == reused, 5)

    def test_b_hold_0_or_no_hold_is_never_stored(self):
        for user, hold in (("ida", 0), ("ilse", None)):
            with self.subTest(hold=hold):
                self.stack.add_container(user)
                if hold is None:
                    container = self.stack.container(user)
                    self.set_rule(user, alive=True, reason="ok", addr=container["addr"],
                                  port=container["port"])
                else:
                    self.alive_rule(user, hold)
                before = self.asks(user)
                for _ in range(5):
                    self.assert_routed(user)
                self.assertEqual(self.asks(user), before + 5)
                self.assertNotIn(user, self.table())

    def test_c_an_answer_not_stored_zeroes_the_existing_entry(self):
        # Not alive: asked because the request carries the retry cookie (skips the fast path).
        self.stack.add_container("jana")
        self.alive_rule("jana", LONG_HOLD)
        self.assert_routed("jana")
        self.assertNotEqual(self.gpt0("jana"), 0)
        self.set_rule("jana", alive=False, reason="refused", hold=0)
        before = self.asks("jana")
        self.assertEqual(self.stack.served_by(
            "jana", headers=[("Cookie", "container_director_retry=1")]), "spawner")
        self.assertEqual(self.gpt0("jana"), 0)
        self.assertEqual(self.stack.served_by("jana"), "spawner")
        self.assertEqual(self.asks("jana"), before + 2, "the zeroed entry was used")

        # Alive with hold 0, after the entry's own hold ended.
        self.stack.add_container("jule")
        self.alive_rule("jule", 300)
        self.assert_routed("jule")
        self.assertNotEqual(self.gpt0("jule"), 0)
        time.sleep(0.4)
        self.alive_rule("jule", 0)
        self.assert_routed("jule")
        self.assertEqual(self.gpt0("jule"), 0)

        # A not-alive user gets no entry.
        self.set_rule("julia", alive=False, reason="no-such-host", hold=0)
        before = self.asks("julia")
        for _ in range(3):
            self.assertEqual(self.stack.served_by("julia"), "spawner")
        self.assertEqual(self.asks("julia"), before + 3)
        self.assertNotIn("julia", self.table())

    def test_d_only_plain_names_of_up_to_64_characters(self):
        long_name = "k" * 65
        self.stack.add_container("kira")
        for user in (long_name, "k" * 64, "kira!", "kira"):
            self.alive_rule("kira", LONG_HOLD)
            self.set_rule(user, **{**self.rules["kira"]})
        for user, stored in ((long_name, False), ("kira!", False), ("k" * 64, True)):
            with self.subTest(user=user[:10]):
                before = self.asks(user)
                for _ in range(3):
                    self.assertEqual(self.stack.served_by(user), self.backend_of("kira"))
                self.assertEqual(self.asks(user), before + (1 if stored else 3))
                self.assertEqual(user in self.table(), stored)
        # The table compares keys as C strings: "kira" and a NUL byte must not find kira's
        # entry (2.6 passes the name to the agent, which has no rule for it; 3.2 refuses it).
        self.assert_routed("kira")
        self.assertIn("kira", self.table())
        for _ in range(3):
            status, headers, _ = self.stack.request(b"kira\x00")
            self.assertNotEqual(headers.get("x-served-by"), self.backend_of("kira"))
            self.assertEqual(status, 400)

    def test_e_no_reuse_in_an_old_worker_after_a_reload(self):
        self.stack.add_container("lena")
        self.alive_rule("lena", LONG_HOLD)
        self.assert_routed("lena")
        before = self.asks("lena")
        self.assert_routed("lena")
        self.assertEqual(self.asks("lena"), before, "control: the entry is used")
        # A request the old worker has begun to read before the reload is finished after it.
        with socket.create_connection(self.stack.http, timeout=5) as conn:
            conn.sendall(b"GET / HTTP/1.1\r\nHost: director\r\nAccept: text/html\r\n")
            time.sleep(0.1)
            self.stack.reload_haproxy()
            conn.sendall(f"{IDENTITY}: lena\r\nConnection: close\r\n\r\n".encode())
            response = b""
            while chunk := conn.recv(65536):
                response += chunk
        self.assertTrue(response.startswith(b"HTTP/1.1 200"), response[:200])
        self.assertIn(f"x-served-by: {self.backend_of('lena')}".encode(), response.lower())
        self.assertEqual(self.asks("lena"), before + 1, "the old worker reused the answer")

    def test_f_no_reuse_while_no_agent_is_up(self):
        self.stack.add_container("mira")
        self.alive_rule("mira", LONG_HOLD)
        first = len(haproxy_log_decisions(self.stack))
        self.assert_routed("mira")
        # HAProxy writes the log line once the stream ends, which may be after the client read
        # the response: the first request's line must be in before the second is counted.
        poll(lambda: len(haproxy_log_decisions(self.stack)), lambda n: n > first, 5)
        before = len(haproxy_log_decisions(self.stack))
        self.assert_routed("mira")
        # HAProxy writes the log line once the stream ends, which may be after the client read
        # the response.
        decision = poll(lambda: haproxy_log_decisions(self.stack)[before:], lambda found: found, 5)[0][-1]
        self.assertEqual(decision["fast"], "1")
        self.stack.kill_agent()
        try:
            poll(self.stack.agent_server_state, lambda s: s and s[0].startswith("DOWN"), 10)
            before = len(haproxy_log_decisions(self.stack))
            # Degraded mode routes mira's container (its name resolves), not the fast path.
            self.assert_routed("mira")
            decision = poll(lambda: haproxy_log_decisions(self.stack)[before:],
                            lambda found: found, 5)[0][-1]
            self.assertEqual(decision["fast"], "-")
            self.assertNotEqual(decision["error"], "-")
        finally:
            self.stack.start_agent()
            self.stack.wait_agent_checked()


class RealAgentHold(StackTest):
    """director-agent in TTL mode, holding alive answers 3 s (its cache keeps them 5 s)."""

    stack_options = {"agent_args": ["--alive-ttl", "5s", "--refresh-after", "4s",
                                    "--fast-path-hold", "3s"]}

    def test_a_an_answer_is_held_for_the_hold_the_agent_sent(self):
        self.stack.add_container("nora")
        before = agent_decisions(self.stack)
        started = time.monotonic()
        self.assert_routed("nora")  # a fresh check: hold 3 s
        reused = 0
        while time.monotonic() < started + 2.5:
            self.assert_routed("nora")
            reused += 1
            time.sleep(0.02)
        print(f"{reused} requests answered by HAProxy alone", end=" ... ")
        self.assertGreater(reused, 10)
        self.assertEqual(agent_decisions(self.stack) - before, 1, "a request within the hold asked")
        hold = [int(d["hold"]) for d in haproxy_log_decisions(self.stack) if d["label"] == "nora"]
        self.assertEqual(len(hold), 1)
        self.assertTrue(2900 <= hold[0] <= 3000, hold)
        time.sleep(max(0.0, started + 3.1 - time.monotonic()))
        # The hold is over; the agent's answer (from its cache, 3 s old) holds what is left
        # of the hold after its age: nothing, so the next request asks again.
        self.assert_routed("nora")
        self.assertEqual(agent_decisions(self.stack) - before, 2)
        self.assert_routed("nora")
        self.assertEqual(agent_decisions(self.stack) - before, 3)


class RealAgent(StackTest):
    """With director-agent and its default hold: the fast path never delays what the agent
    learns beyond its 1 s bound."""

    def test_b_stopped_container_abandoned_within_1s(self):
        for forget in (True, False):  # docker rm (the name goes), crash (the name stays)
            with self.subTest(forget=forget):
                user = "gina" if forget else "hanna"
                self.stack.add_container(user)
                poll(lambda: self.stack.served_by(user), lambda s: s.startswith("backend"), 3)
                # Steady traffic: the fast path's answer stays fresh up to the stop.
                for _ in range(30):
                    self.assert_routed(user)
                    time.sleep(0.01)
                stopped_at = time.monotonic()
                self.stack.stop_container(user, signal.SIGKILL, forget=forget)
                _, _, history = poll(lambda: self.stack.request(user),
                                     lambda r: r[1].get("x-served-by") == "spawner", 5, 0.02)
                elapsed = time.monotonic() - stopped_at
                print(f"spawner reached {elapsed:.3f} s after the stop", end=" ... ")
                self.assertLessEqual(elapsed, BOUND)
                for status, headers, _ in history[:-1]:  # meanwhile: the self-reloading page
                    self.assertEqual((status, headers.get("refresh")), (503, "2"))
                if not forget:
                    self.stack.containers.forget_dead(self.stack.host_for(user))

    def test_c_started_container_found_within_1s(self):
        # The spawner's answer starts the container (tools/demo_spawner.py).
        self.assertEqual(self.stack.served_by("ines"), "spawner")
        ready_at = self.stack.containers.wait_ready(self.stack.host_for("ines"))
        _, _, history = poll(lambda: self.stack.served_by("ines"),
                             lambda s: s.startswith("backend"), 5, 0.02)
        routed_after = time.time() - ready_at
        print(f"routed {routed_after:.3f} s after the container was ready", end=" ... ")
        self.assertEqual(history[-1], self.backend_of("ines"))
        self.assertLessEqual(routed_after, BOUND)

    def test_d_not_alive_user_always_asks_the_agent(self):
        before = agent_decisions(self.stack)
        for _ in range(20):
            self.assertEqual(self.stack.served_by("julia"), "spawner")
        self.assertEqual(agent_decisions(self.stack) - before, 20)
        self.assertNotIn("julia", self.stack.haproxy_cli("show table fast_path"))


if __name__ == "__main__":
    main()
