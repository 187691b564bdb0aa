#!/usr/bin/env python3
"""HAProxy's guards against a wrong answer: with a scripted agent (tools/fake_agent.py) that
answers what the real one never should, no request goes to a forbidden address, to the
director itself, or anywhere the agent did not name. Runs without director-agent."""

import json
import time

from common import Stack, StackTest, main


class Guards(StackTest):
    @classmethod
    def setUpClass(cls):
        cls.stack = Stack(fake_agent=True)
        cls.rules_path = cls.stack.run_dir / "agent-rules.json"
        cls.stack.fake_rules = cls.rules_path
        # The spawner's HTTP listener is not started here: the guard refuses before connecting.
        cls.stack.haproxy_extra_env["SPAWNER_HTTP_LISTEN"] = "127.0.0.1:9"
        # Every agent slot set (nothing listens there: only the guard matters); unset, a slot
        # must forbid nothing, which every other test's routing shows.
        cls.agent_slots = {n: ("127.0.0.1", 9 + n) for n in (2, 3, 4)}
        cls.stack.haproxy_extra_env.update({f"DIRECTOR_AGENT_{n}": f"{addr}:{port}"
                                            for n, (addr, port) in cls.agent_slots.items()})
        cls.stack.start()
        # Until HAProxy has checked an empty slot, SPOE may open a connection to it: 3.x then
        # decides that request in degraded mode (2.6 tries the next agent).
        for n in cls.agent_slots:
            cls.stack.wait_agent_down(name=f"agent{n}")
        alice = cls.stack.add_container("alice")
        s = cls.stack
        alive = {"alive": True, "reason": "ok"}
        cls.rules = {
            "mallory": {**alive, "addr": alice["addr"], "port": alice["port"]},
            "metadata": {**alive, "addr": "169.254.169.254", "port": 80},
            "linklocal6": {**alive, "addr": "fe80::1", "port": 80},
            "unspecified": {**alive, "addr": "0.0.0.0", "port": s.container_port},
            "loop": {**alive, "addr": s.http[0], "port": s.http[1]},
            "metrics": {**alive, "addr": s.metrics[0], "port": s.metrics[1]},
            "agentport": {**alive, "addr": s.agent[0], "port": s.agent[1]},
            "spawnerpages": {**alive, "addr": s.spawner[0], "port": s.spawner[1]},
            "spawnerhttp": {**alive, "addr": "127.0.0.1", "port": 9},
            **{f"agent{n}port": {**alive, "addr": addr, "port": port}
               for n, (addr, port) in cls.agent_slots.items()},
            "noport": {**alive, "addr": alice["addr"]},
            "noaddr": {**alive, "port": alice["port"]},
            "notalive": {"alive": False, "reason": "refused", "addr": alice["addr"],
                         "port": alice["port"], "host": "vscode-notalive"},
            "badaddr": {**alive, "addr": "not-an-address", "addr_type": "string", "port": 80},
            "badport": {**alive, "addr": alice["addr"], "port": 70000},
            "refusing": {**alive, "addr": f"{s.subnet}.250", "port": s.container_port},
            "slow": {"delay": 3, "alive": False, "reason": "no-such-host"},
        }
        # The same answers with a hold: HAProxy's fast path would reuse them without asking
        # (and without the guards, which a fast path request skips) if it stored them.
        held = {"hold": 60000}
        cls.rules.update({
            "heldmallory": {**cls.rules["mallory"], **held},
            "heldmetadata": {**cls.rules["metadata"], **held},
            "heldloop": {**cls.rules["loop"], **held},
            "heldagentport": {**cls.rules["agentport"], **held},
            "heldspawnerhttp": {**cls.rules["spawnerhttp"], **held},
        })
        cls.rules_path.write_text(json.dumps(cls.rules))

    def answer(self, user):
        status, headers, body = self.stack.request(user)
        return status, headers.get("x-served-by"), body

    def test_follows_the_agent(self):
        """Control: an address the agent names is used, even for another user's container."""
        self.assertEqual(self.answer("mallory")[:2], (200, self.backend_of("alice")))

    def test_forbidden_addresses(self):
        for user in ("metadata", "linklocal6", "unspecified", "loop", "metrics", "agentport", "spawnerpages",
                     "spawnerhttp", "agent2port", "agent3port", "agent4port"):
            status, served_by, body = self.answer(user)
            self.assertEqual((status, served_by), (502, None), user)
            self.assertIn(b"never connects", body)

    def test_forbidden_answers_are_never_held(self):
        """Only an answer that passed the guards becomes a fast path entry: a held answer
        naming a forbidden address is refused on every request, never reused unchecked."""
        self.assertEqual(self.answer("heldmallory")[:2], (200, self.backend_of("alice")))
        self.assertTrue(self.stack.fast_path_entry("heldmallory")["fresh"], "control: held answer not kept")
        for user in ("heldmetadata", "heldloop", "heldagentport", "heldspawnerhttp"):
            for attempt in range(2):
                status, served_by, body = self.answer(user)
                self.assertEqual((status, served_by), (502, None), (user, attempt))
                self.assertIn(b"never connects", body)
            entry = self.stack.fast_path_entry(user)
            self.assertFalse(entry and entry["fresh"], (user, entry))

    def test_incomplete_answer_goes_to_spawner(self):
        for user in ("noport", "noaddr", "notalive"):
            self.assertEqual(self.answer(user)[1], "spawner", user)

    def test_unusable_address_or_port(self):
        for user in ("badaddr", "badport"):
            status, served_by, body = self.answer(user)
            self.assertEqual((status, served_by), (503, None), user)
            self.assertIn(b"no usable address", body)

    def test_refused_connection_gets_refreshing_page_at_once(self):
        started = time.monotonic()
        status, headers, body = self.stack.request("refusing")
        self.assertLess(time.monotonic() - started, 0.5, "a refusal is retried or waited on")
        self.assertEqual((status, headers.get("refresh")), (503, "2"))
        self.assertIn(b'http-equiv="refresh"', body)

    def test_late_agent_means_degraded_mode(self):
        started = time.monotonic()
        status, served_by, _ = self.answer("slow")
        self.assertLess(time.monotonic() - started, 2, "timeout processing not applied")
        self.assertEqual((status, served_by), (202, "spawner"))
        seen = self.stack.spawner_requests()[-1]
        self.assertEqual((seen["container_host"], seen["reason"]),
                         ("vscode-slow", "agent-unavailable"))


if __name__ == "__main__":
    main()
