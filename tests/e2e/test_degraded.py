#!/usr/bin/env python3
"""Degraded mode: with the agent dead, HAProxy resolves containers itself, so running ones stay
reachable and other users reach the spawner; once the agent is back, it decides again.
The agent runs with the default username scheme (escape): HAProxy computes escaped labels
itself when it has the sha2 converter (built with OpenSSL, as Debian's 2.6), else it sends
those users to the spawner without a label."""

import hashlib
import time

from common import StackTest, haproxy_has_sha2, main, poll

# Usernames the escape scheme maps to another label, with the labels pinned in
# tests/unit/decision/username_test.cpp (prefix "vscode"): capitals, an e-mail address, UTF-8,
# nothing readable, a long name cut on a letter and one cut on a separator.
ESCAPED = {
    b"Alice": "alice-3bc51062973c458d",
    b"jack@example.com": "jack-example-com-74674963822d3693",
    b"j\xc3\xa4ger": "j-ger-06ded70f6534bff4",
    b"..": "u-5ec1f7e700f37c3d",
    b"a.b" * 100: "a-ba-ba-ba-ba-ba-ba-ba-ba-ba-ba-ba-ba-b-1524e961aa712b73",
    b"b" * 38 + b".x": "b" * 38 + "-6359b4bbea6d5113",
}


class Degraded(StackTest):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.stack.add_containers(["alice"] + list(ESCAPED.values()))

    def assert_escaped_routed(self):
        for user, label in ESCAPED.items():
            with self.subTest(user=user[:20]):
                self.assertEqual(self.stack.served_by(user), self.backend_of(label))

    def test_escaped_names_while_the_agent_is_down(self):
        stack = self.stack
        self.assert_escaped_routed()  # the agent, escape mode by default
        stack.kill_agent()
        # HAProxy's fast path serves its held answers until the agents backend is down (2 s).
        poll(lambda: stack.agent_server_state()[0], lambda state: state.startswith("DOWN"), 10)
        if haproxy_has_sha2():
            self.assert_escaped_routed()
            # A name whose escaped label has no container is not placed (it might be a name the
            # agent refuses, in strict mode): the spawner gets neither host nor label.
            self.assertEqual(stack.served_by("Nobody.Here"), "spawner")
        else:
            self.assertEqual(stack.served_by(b"Alice"), "spawner")
        seen = stack.spawner_requests()[-1]
        self.assertEqual((seen["container_host"], seen["reason"]), (None, "agent-unavailable"))
        stack.start_agent()
        stack.wait_agent_checked()
        poll(lambda: stack.served_by(b"Alice"), lambda s: s == self.backend_of(ESCAPED[b"Alice"]), 5)
        self.assert_escaped_routed()

    def test_agent_killed_then_restarted(self):
        stack = self.stack
        self.assert_routed("alice")

        stack.kill_agent()  # SIGKILL: its connections die with it
        started = time.monotonic()
        for _ in range(20):  # from the first request on, none fails
            self.assert_routed("alice")
        self.assertLess(time.monotonic() - started, 5, "degraded decisions are slow")

        status, headers, _ = stack.request("ivan")
        self.assertEqual((status, headers.get("x-served-by")), (202, "spawner"))
        seen = stack.spawner_requests()[-1]
        self.assertEqual((seen["container_host"], seen["reason"]),
                         ("vscode-ivan", "agent-unavailable"))

        # The spawner started ivan's container; HAProxy finds it through DNS.
        stack.containers.wait_ready("vscode-ivan")
        poll(lambda: stack.served_by("ivan"), lambda s: s.startswith("backend"), 3)
        self.assert_routed("ivan")

        # A username that is not a DNS label is not guessed at: spawner, without a host (and
        # not with one the client slipped in).
        status, headers, _ = stack.request(
            "Judy", headers=[("X-Director-Container-Host", "vscode-alice")])
        self.assertEqual(headers.get("x-served-by"), "spawner")
        seen = stack.spawner_requests()[-1]
        self.assertEqual((seen["container_host"], seen["reason"]), (None, "agent-unavailable"))

        stack.start_agent()
        stack.wait_agent_checked()
        # The agent decides again: "Judy" gets her escaped label (the default scheme), and the
        # spawner learns why neither she nor kim has a container.
        judy = "vscode-judy-" + hashlib.sha256(b"Judy").hexdigest()[:16]
        poll(lambda: stack.request("Judy") and stack.spawner_requests()[-1]["container_host"],
             lambda host: host == judy, 5)
        self.assertEqual(stack.spawner_requests()[-1]["reason"], "no-such-host")
        stack.request("kim")
        seen = stack.spawner_requests()[-1]
        self.assertEqual((seen["container_host"], seen["reason"]), ("vscode-kim", "no-such-host"))
        self.assert_routed("alice")


if __name__ == "__main__":
    main()
