#!/usr/bin/env python3
"""20 seamless HAProxy reloads under load: not one request fails or goes astray, the old
workers exit, and the agent's descriptors come back to their baseline: every SPOP connection of
an old worker is closed on the agent's side too (none left in CLOSE_WAIT), so reloads never
leak descriptors. Connections the new worker keeps idle live up to the SPOE idle timeout
(spoe.conf "timeout idle 2m"), which bounds the wait."""

import threading
import time

from common import RecordingSpawner, StackTest, load, main, our_pages, poll

RELOADS = 20
CLIENTS = 4
SETTLE = 150  # s: the SPOE idle timeout (2 min) and some


def agent_side_states(stack):
    """TCP states of the agent's SPOP sockets (local port = the agent's), from /proc/net/tcp."""
    port = f"{stack.agent[1]:04X}"
    states = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for row in f.readlines()[1:]:
                fields = row.split()
                # Not the listener (0A), not TIME_WAIT leftovers (no descriptor: inode 0).
                if fields[1].endswith(":" + port) and fields[3] != "0A" and fields[9] != "0":
                    states.append({"01": "ESTABLISHED", "08": "CLOSE_WAIT"}.get(fields[3], fields[3]))
    return states


class ReloadDescriptors(StackTest):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.spawner = RecordingSpawner(cls.stack)
        cls.stack.add_containers(["alice", "bob"])

    @classmethod
    def tearDownClass(cls):
        cls.spawner.close()
        super().tearDownClass()

    def run_load(self, seconds_or_action):
        stack = self.stack
        users = ["alice", "bob", "nobody"]
        stop, lock, results, pages = threading.Event(), threading.Lock(), [], our_pages()
        threads = [threading.Thread(target=load, args=(stack, users[i % 3:] + users[:i % 3], stop,
                                                        results, lock), kwargs={"pages": pages})
                   for i in range(CLIENTS)]
        for thread in threads:
            thread.start()
        try:
            seconds_or_action()
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        return results

    def test_twenty_reloads_under_load(self):
        stack = self.stack
        expected = {"alice": self.backend_of("alice"), "bob": self.backend_of("bob"),
                    "nobody": "spawner"}

        # Baseline: the same load without reloads, then idle.
        warmup = self.run_load(lambda: time.sleep(2))
        self.assertEqual([r for r in warmup if r[1] != expected[r[0]]][:5], [])
        time.sleep(1)
        baseline = stack.agent_fd_count()
        baseline_connections = len(agent_side_states(stack))

        def reloads():
            for _ in range(RELOADS):
                time.sleep(0.3)
                stack.reload_haproxy()
            time.sleep(0.5)

        results = self.run_load(reloads)
        wrong = [r for r in results if r[1] != expected[r[0]]]
        self.assertEqual(wrong[:10], [], f"{len(wrong)} of {len(results)} requests went wrong")
        self.assertGreater(len(results), 200)
        master = stack.haproxy_cli("show proc", master=True).splitlines()[1].split()
        self.assertEqual(master[1:3], ["master", str(RELOADS)], "reload count")

        # The old workers exit (their clients are gone) and take their SPOP connections along.
        poll(lambda: len(stack.haproxy_workers()) + len(old_workers(stack)),
             lambda n: n == 1, 30)

        def settled():
            states = agent_side_states(stack)
            return stack.agent_fd_count(), states

        # The new worker may hold a connection or two more than the old one did (one per
        # thread, opened under load): allow 2, and no half-closed socket.
        (fds, states), seconds, _ = poll(
            settled, lambda r: r[0] <= baseline + 2 and "CLOSE_WAIT" not in r[1], SETTLE, 1.0)
        print(f"\n{len(results)} requests, {RELOADS} reloads; agent descriptors {baseline} "
              f"before, {fds} after ({seconds:.1f} s to settle); SPOP connections "
              f"{baseline_connections} before, {len(states)} after")


def old_workers(stack):
    """PIDs of old workers (still finishing after a reload), from the master CLI."""
    pids, section = [], None
    for line in stack.haproxy_cli("show proc", master=True).splitlines():
        if line.startswith("#"):
            section = line
        elif section and "old workers" in section and line.split():
            pids.append(int(line.split()[0]))
    return pids


if __name__ == "__main__":
    main()
