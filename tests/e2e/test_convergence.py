#!/usr/bin/env python3
"""Convergence (a functional requirement): a container that starts is reached within 1 s of
being ready; a container that stops is abandoned for the spawner within 1 s. Requests are
sent every 50 ms, each on a new connection."""

import signal
import time

from common import StackTest, main, poll

BOUND = 1.0


class Convergence(StackTest):
    def test_started_container_routed_within_1s(self):
        # The user is known to be without a container (the agent has cached that); the
        # spawner's answer starts the container.
        self.assertEqual(self.stack.served_by("frank"), "spawner")
        ready_at = self.stack.containers.wait_ready("vscode-frank")
        _, _, history = poll(lambda: self.stack.served_by("frank"),
                             lambda s: s.startswith("backend"), 5)
        routed_after = time.time() - ready_at
        self.assertEqual(history[-1], self.backend_of("frank"))
        print(f"routed {routed_after:.3f} s after the container was ready", end=" ... ")
        self.assertLessEqual(routed_after, BOUND, f"routed {routed_after:.3f} s after ready")

    def check_abandoned(self, user, sig, forget):
        self.stack.add_container(user)
        poll(lambda: self.stack.served_by(user), lambda s: s.startswith("backend"), 3)
        stopped_at = time.monotonic()
        self.stack.stop_container(user, sig, forget)
        _, _, history = poll(lambda: self.stack.request(user), lambda r: r[0] != 503
                             and r[1].get("x-served-by") == "spawner", 5)
        elapsed = time.monotonic() - stopped_at
        print(f"spawner reached {elapsed:.3f} s after the stop", end=" ... ")
        self.assertLessEqual(elapsed, BOUND, f"spawner reached {elapsed:.3f} s after the stop")
        # Meanwhile: HAProxy's self-refreshing page, never a bare error or another backend.
        for status, headers, _ in history[:-1]:
            self.assertEqual((status, headers.get("refresh")), (503, "2"))

    def test_stopped_container_abandoned_within_1s(self):
        """The container is gone, and so is its DNS name (docker rm)."""
        self.check_abandoned("grace", signal.SIGKILL, forget=True)

    def test_crashed_container_abandoned_within_1s(self):
        """The process died, its name still resolves: connections are refused."""
        self.check_abandoned("heidi", signal.SIGKILL, forget=False)


if __name__ == "__main__":
    main()
