#!/usr/bin/env python3
"""The fast path (haproxy.cfg, DIRECTOR_FAST_PATH_TTL_MS): HAProxy reuses the agent's last
"alive" answer for a user for a short time instead of asking again.

(a) repeated requests for a fresh alive user do not reach the agent: at most two decisions
    per TTL window (requests are sequential: the first answer of a window comes from the
    agent's cache, older than the TTL, and starts a re-check; the next brings the fresh one);
(b) a stopped container is still abandoned within 1 s, under steady traffic that keeps the
    fast path's answer fresh;
(c) a started container is still found within 1 s;
(d) a not-alive answer is never kept: every request of such a user asks the agent;
(e) a cached name followed by a NUL byte does not find that name's entry;
(f) an entry is fresh for the TTL after the agent's *check*, not after its answer: an answer
    the agent served from its cache, older than the TTL, is not reused.
The TTL is haproxy.cfg's default, or 200 ms when the default is 0 (off)."""

import http.client
import re
import signal
import time

from common import IDENTITY, StackTest, main, poll
from loopback import http_get
from stack import REPO, Stack

BOUND = 1.0


def configured_ttl():
    cfg = (REPO / "haproxy" / "haproxy.cfg").read_text()
    found = re.search(r"presetenv\s+DIRECTOR_FAST_PATH_TTL_MS\s+(\d+)", cfg)
    ttl = int(found.group(1)) if found else 0
    return ttl or 200


TTL_MS = configured_ttl()


class FastPathStack(Stack):
    def haproxy_env(self):
        env = super().haproxy_env()
        env["DIRECTOR_FAST_PATH_TTL_MS"] = str(TTL_MS)
        return env


class FastPath(StackTest):
    @classmethod
    def setUpClass(cls):
        cls.stack = FastPathStack().start()

    def decisions(self):
        text = http_get(self.stack.agent_http, "/metrics")[1]
        return sum(float(v) for v in
                   re.findall(r"^director_decisions_total\{[^}]*\} (\S+)$", text, re.M))

    def cached_users(self):
        """Usernames in HAProxy's fast path table."""
        return re.findall(r" key=(\S+) ", self.stack.haproxy_cli("show table fast_path"))

    def test_a_fresh_alive_user_does_not_reach_the_agent(self):
        self.stack.add_container("fiona")
        self.assert_routed("fiona")  # the agent's answer is now in the table
        self.assertIn("fiona", self.cached_users())
        expected = self.backend_of("fiona")
        before = self.decisions()
        conn = http.client.HTTPConnection(*self.stack.http, timeout=5)
        started = time.monotonic()
        answers = []
        for _ in range(100):
            conn.request("GET", "/", headers={IDENTITY: "fiona"})
            response = conn.getresponse()
            response.read()
            answers.append((response.status, response.getheader("X-Served-By")))
        elapsed = time.monotonic() - started
        conn.close()
        asked = self.decisions() - before
        print(f"100 requests in {elapsed:.3f} s, {asked:.0f} reached the agent", end=" ... ")
        self.assertEqual(set(answers), {(200, expected)})
        # Sequential requests: at most two asking requests per TTL window (docstring).
        self.assertLessEqual(asked, 2 * (elapsed * 1000 / TTL_MS + 1))
        self.assertLess(asked, 100 / 2)

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
        before = self.decisions()
        for _ in range(20):
            self.assertEqual(self.stack.served_by("julia"), "spawner")
        self.assertEqual(self.decisions() - before, 20)
        self.assertNotIn("julia", self.cached_users())

    def test_e_a_cached_name_followed_by_a_nul_byte_is_not_that_user(self):
        # The table compares keys as C strings: "kira" and a NUL byte must not find kira's entry.
        self.stack.add_container("kira")
        self.assert_routed("kira")
        self.assertIn("kira", self.cached_users())
        for _ in range(3):
            status, headers, _ = self.stack.request(b"kira\x00")
            self.assertNotEqual(headers.get("x-served-by"), self.backend_of("kira"))
            self.assertEqual(status, 400)  # strict scheme: not a DNS label


class FastPathAge(StackTest):
    """(f), with an agent that serves alive answers from its cache for 5 s without re-checking."""

    @classmethod
    def setUpClass(cls):
        cls.stack = FastPathStack(agent_args=["--alive-ttl", "5s", "--refresh-after", "4s"]).start()

    decisions = FastPath.decisions

    def test_f_an_answer_older_than_the_ttl_is_not_reused(self):
        self.stack.add_container("lena")
        self.assert_routed("lena")  # a fresh check: its answer is reused for the TTL
        before = self.decisions()
        self.assert_routed("lena")
        self.assertEqual(self.decisions() - before, 0, "a fresh entry was not used")

        time.sleep(TTL_MS / 1000 + 0.3)
        # The agent's check is now older than the TTL: each request asks, and each answer
        # (from the agent's cache, same check) stays too old to be reused.
        before = self.decisions()
        for _ in range(3):
            self.assert_routed("lena")
        self.assertEqual(self.decisions() - before, 3)


if __name__ == "__main__":
    main()
