#!/usr/bin/env python3
"""Degraded mode: with the agent dead, HAProxy resolves containers itself, so running ones stay
reachable and other users reach the spawner; once the agent is back, it decides again."""

import time

from common import StackTest, main, poll


class Degraded(StackTest):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.stack.add_container("alice")

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
        # The agent decides again: it refuses "Judy" (strict scheme) and tells the spawner why
        # kim has no container.
        poll(lambda: stack.request("Judy")[0], lambda status: status == 400, 5)
        stack.request("kim")
        seen = stack.spawner_requests()[-1]
        self.assertEqual((seen["container_host"], seen["reason"]), ("vscode-kim", "no-such-host"))
        self.assert_routed("alice")


if __name__ == "__main__":
    main()
