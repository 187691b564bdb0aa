#!/usr/bin/env python3
"""Containers that accept nothing: 100 users whose names resolve to an address where the
kernel drops every SYN (a listener whose accept queue is full: as a firewall dropping packets
would), requested concurrently and continuously. Their probes hang until the probe timeout,
and they reach the spawner (reason timeout); meanwhile decisions for other users stay fast:
a user with a cached answer, and first visits that need a DNS lookup and a probe of their own,
are decided in well under 200 ms, whereas 100 probes waited one after the other would take
100 x the probe timeout. HTTP probe mode also catches a container that completes the TCP
handshake but never answers (a TCP probe would call it alive)."""

import threading
import time

from common import (RecordingSpawner, StackTest, haproxy_log_decisions, load, main, our_pages,
                    poll)

HANGING = [f"hang{i:03d}" for i in range(100)]
FRESH = [f"fresh{i:02d}" for i in range(10)]
PROBE_TIMEOUT = 0.7  # s, below HAProxy's SPOE processing timeout (1 s)
DECISION_BOUND_MS = 200


class Unresponsive(StackTest):
    stack_options = {"agent_args": ["--probe-timeout", f"{int(PROBE_TIMEOUT * 1000)}ms"]}
    backlog_full = True
    hanging = HANGING

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.spawner = RecordingSpawner(cls.stack)
        cls.stack.add_containers(["alice"] + FRESH)
        cls.blackhole = cls.stack.add_unresponsive(cls.hanging, backlog_full=cls.backlog_full)

    @classmethod
    def tearDownClass(cls):
        cls.blackhole.close()
        cls.spawner.close()
        super().tearDownClass()

    def checks_in_flight(self):
        return self.stack.agent_metrics().get("director_checks_in_flight", 0)

    def test_no_head_of_line_blocking(self):
        stack, pages = self.stack, our_pages()
        self.assert_routed("alice")
        stop, lock, results = threading.Event(), threading.Lock(), []
        threads = [threading.Thread(target=load, args=(stack, [user], stop, results, lock),
                                    kwargs={"pages": pages, "timeout": 10})
                   for user in self.hanging]
        for thread in threads:
            thread.start()
        measured = []  # (user, answer, client seconds)
        try:
            # Many probes hang at once before anything is measured.
            _, _, history = poll(self.checks_in_flight, lambda n: n >= len(self.hanging) // 2, 15,
                                 0.02)
            peak = max(history)
            for round_ in range(3):
                for user in ["alice"] + FRESH[round_ * 3:round_ * 3 + 3]:  # first visits too
                    started = time.monotonic()
                    status, headers, _ = stack.request(user)
                    measured.append((user, (status, headers.get("x-served-by")),
                                     time.monotonic() - started))
                peak = max(peak, self.checks_in_flight())
                time.sleep(0.2)
        finally:
            stop.set()
            for thread in threads:
                thread.join()

        for user, answer, _ in measured:
            self.assertEqual(answer, (200, self.backend_of(user)), user)
        # HAProxy's own measure of each decision (ptime, ms), for the measured users.
        time.sleep(0.3)
        ptimes = {}
        measured_labels = {user for user, _, _ in measured}
        for entry in haproxy_log_decisions(stack):
            if entry.get("label") in measured_labels and entry.get("ptime", "-").isdigit():
                ptimes.setdefault(entry["label"], []).append(int(entry["ptime"]))
        slow = {label: times for label, times in ptimes.items() if max(times) >= DECISION_BOUND_MS}
        self.assertEqual(slow, {}, f"decisions of {DECISION_BOUND_MS} ms or more while "
                                   f"{peak:.0f} probes hung")
        self.assertEqual(set(ptimes), measured_labels)
        self.assertLess(max(s for _, _, s in measured), 1.0, "client-side latency")

        # The hanging users: spawner (probe timeout) or one of our pages, never a raw error.
        wrong = [r for r in results if r[1] != "spawner" and not r[1].startswith("page ")]
        self.assertEqual(wrong[:5], [], f"{len(wrong)} of {len(results)} hanging-user answers")
        reasons = {e["reason"] for e in self.spawner.since(0)
                   if e["container_host"] in {stack.host_for(u) for u in self.hanging}}
        self.assertIn("timeout", reasons)
        self.assertLessEqual(reasons, {"timeout", "agent-unavailable"})
        print(f"\n{len(results)} requests for {len(self.hanging)} hanging users, up to "
              f"{peak:.0f} probes in flight; measured decisions: max "
              f"{max(max(t) for t in ptimes.values())} ms (HAProxy ptime), client max "
              f"{max(s for _, _, s in measured) * 1000:.0f} ms")


class UnresponsiveHttpProbe(Unresponsive):
    """The handshake completes (the kernel accepts for the listener) but nothing is ever read
    or written: only the HTTP probe sees that nobody is there."""
    stack_options = {"agent_args": ["--probe-timeout", f"{int(PROBE_TIMEOUT * 1000)}ms",
                                    "--probe-mode", "http"]}
    backlog_full = False
    hanging = HANGING[:30]


if __name__ == "__main__":
    main()
