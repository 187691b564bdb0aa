#!/usr/bin/env python3
"""The agent SIGKILLed under load: concurrent clients for users with running containers and
for users without one. While the agent is dead, users with containers keep reaching them
(degraded mode: HAProxy resolves them itself) and the others reach the spawner; no request
fails, none gets a raw 5xx, none waits much longer than one SPOE processing timeout. Once the agent is started again, it decides again within 2 s
(the spawner sees the agent's reasons instead of agent-unavailable)."""

import threading
import time

from common import RecordingSpawnerTest, load, main, our_pages

ALIVE = ["alice", "bob", "carol"]
NOT_ALIVE = ["nobody1", "nobody2"]
AGENT_REASONS = {"no-such-host", "dns-error", "refused", "timeout", "probe-failed"}


class AgentKilledUnderLoad(RecordingSpawnerTest):
    containers = ALIVE  # nobody* stay without one

    def test_kill_then_restart(self):
        stack = self.stack
        expected = {user: self.backend_of(user) for user in ALIVE}
        expected.update({user: "spawner" for user in NOT_ALIVE})
        for user in ALIVE:
            self.assert_routed(user)

        stop, lock, results, pages = threading.Event(), threading.Lock(), [], our_pages()
        threads = [threading.Thread(target=load, args=(stack, users, stop, results, lock),
                                    kwargs={"pages": pages})
                   for users in (ALIVE, ALIVE[::-1], ALIVE[1:] + ALIVE[:1], NOT_ALIVE,
                                 NOT_ALIVE[::-1])]
        for thread in threads:
            thread.start()
        try:
            time.sleep(1.0)
            killed_at = len(results)
            stack.kill_agent()  # SIGKILL: its connections die with it, mid-decision
            time.sleep(4.0)
            during = len(results) - killed_at
            first_spawner = self.spawner.count()
            restarted = time.monotonic()
            stack.start_agent()
            # Normal decisions again: the spawner sees the agent's reasons for nobody*.
            deadline = restarted + 10
            back = None
            while back is None and time.monotonic() < deadline:
                for entry in self.spawner.since(first_spawner):
                    if entry["time"] > restarted and entry["reason"] in AGENT_REASONS:
                        back = entry["time"] - restarted
                        break
                time.sleep(0.02)
            time.sleep(1.0)
        finally:
            stop.set()
            for thread in threads:
                thread.join()

        wrong = [(user, answer) for user, answer, _ in results if answer != expected[user]]
        self.assertEqual(wrong[:10], [], f"{len(wrong)} of {len(results)} answers were wrong")
        self.assertGreater(during, 10, "too few requests while the agent was dead")
        # Until HAProxy marks the agent down (within 2 s), a request waits for the SPOE
        # processing timeout (1 s); a degraded first visit also waits for HAProxy's resolver.
        slowest = max(seconds for _, _, seconds in results)
        self.assertLess(slowest, 3.0, "a request waited longer than the SPOE timeout allows")
        degraded = [e for e in self.spawner.since(0) if e["reason"] == "agent-unavailable"]
        self.assertTrue(degraded, "the spawner never saw a degraded-mode request")
        self.assertTrue(all(e["container_host"] in ("vscode-nobody1", "vscode-nobody2")
                            for e in degraded), degraded[:3])
        self.assertIsNotNone(back, "the agent did not decide again within 10 s")
        self.assertLess(back, 2.0, f"normal decisions took {back:.2f} s after the restart")
        # And they stay normal: nothing degraded from 0.5 s after the first agent answer on.
        late = [e for e in self.spawner.since(first_spawner)
                if e["time"] > restarted + back + 0.5 and e["reason"] == "agent-unavailable"]
        self.assertEqual(late, [])
        print(f"\n{len(results)} requests, {during} while the agent was dead; "
              f"normal decisions {back:.2f} s after the restart")


if __name__ == "__main__":
    main()
