#!/usr/bin/env python3
"""A flood of distinct random usernames (escape mode, so that every one of them is mapped,
cached and checked): the decision cache stays within DIRECTOR_CACHE_CAPACITY (least recently
used first out), the agent's memory stays flat once the cache is full, and the metrics keep
exactly the same series (no label ever carries a username). DNS refuses every query at once
(a closed port), so each check is a lookup that fails: the agent, not DNS, sets the pace.

ctest runs 100,000 names. The issue's million, about ten times as long:

    DIRECTOR_FLOOD_USERNAMES=1000000 DIRECTOR_AGENT_BIN=build/default/agent/director-agent \\
        python3 tests/e2e/test_username_flood.py

One run (2 cores shared with other builds, RelWithDebInfo): 1,000,000 usernames in 82 s
(12,200/s); cache 1000 of 1000; RSS 7604 KiB after the first 20,000 names, peak 8084 KiB,
final 8080 KiB; 99 metric series before and after.
"""

import os
import random
import time
import unittest

from agent_harness import notify, open_session, start_agent
from common import metric
import spop
from loopback import reserve_port

NAMES = int(os.environ.get("DIRECTOR_FLOOD_USERNAMES", "100000"))
CAPACITY = 1000
SESSIONS = 4
WINDOW = 100  # NOTIFYs in flight per session: 400 checks at once
WARMUP = 20 * CAPACITY  # names before the memory baseline: the cache is full by then
RSS_GROWTH_KIB = 16 * 1024


def names(seed, count):
    """Distinct hostile-looking usernames: emails, dots, case, Unicode, plain labels."""
    rng = random.Random(seed)
    shapes = [lambda i, r: f"User.{i}@Example.com",
              lambda i, r: f"u{i:x}-{r:x}",  # a valid label: kept as is
              lambda i, r: f"{r:x}:{i}/..",
              lambda i, r: f"Jäck{i}\t{r}",
              lambda i, r: f"{i}.{r % 256}.0.1"]
    for i in range(count):
        yield shapes[i % len(shapes)](i, rng.getrandbits(32))


def series(agent):
    """The names (with labels) of every metric series."""
    return set(agent.metrics())


class UsernameFlood(unittest.TestCase):
    def test_flood(self):
        # At level warn (not a line per new user) the agent does not log the ports it bound:
        # it is given reserved ones (it binds them with SO_REUSEADDR).
        spop_port, http_port = reserve_port(), reserve_port()
        self.addCleanup(spop_port.close)
        self.addCleanup(http_port.close)
        agent = start_agent(["--username-mode", "escape", "--cache-capacity", str(CAPACITY),
                             "--log-level", "warn"],
                            listen=f"127.0.0.1:{spop_port.getsockname()[1]}",
                            http_listen=f"127.0.0.1:{http_port.getsockname()[1]}", quiet=True)
        try:
            self.flood(agent)
        except BaseException:
            print("\n--- agent.log ---\n" + agent.log_tail(), flush=True)
            raise
        finally:
            agent.stop()

    def flood(self, agent):
        sessions = [open_session(agent, timeout=30) for _ in range(SESSIONS)]
        initial_series = series(agent)
        source = names(20240611, NAMES)
        sent = answered = 0
        stream = [1] * SESSIONS
        baseline_rss = peak_rss = None
        samples = []
        started = time.monotonic()
        last_ack = b""
        while sent < NAMES:
            batches = []
            for s in range(SESSIONS):
                frames = []
                for _ in range(min(WINDOW, NAMES - sent)):
                    frames.append(notify(stream[s], 1, next(source)))
                    stream[s] += 2
                    sent += 1
                batches.append(len(frames))
                if frames:
                    sessions[s].send(b"".join(frames))
            for s, count in enumerate(batches):
                if count:
                    last_ack = sessions[s].count_frames(count)
                    answered += count
            if baseline_rss is None and answered >= WARMUP:
                baseline_rss = agent.rss_kib()
            if baseline_rss is not None and answered % (NAMES // 10 or 1) < SESSIONS * WINDOW:
                rss = agent.rss_kib()
                peak_rss = max(peak_rss or rss, rss)
                samples.append((answered, rss))
        elapsed = time.monotonic() - started

        # The last answer is an escaped label's, as for any of these names.
        frame = spop.parse_frame(last_ack)[0]
        variables = {n.decode(): v for _, _, n, v in spop.decode_actions(frame.payload)}
        self.assertIs(variables["alive"], False)
        self.assertEqual(variables["reason"], b"dns-error")

        time.sleep(0.5)  # the last checks complete
        metrics = agent.metrics()
        self.assertEqual(set(metrics), initial_series, "metric series changed")
        cached = metrics["director_users_cached"]
        self.assertLessEqual(cached, CAPACITY)
        self.assertGreaterEqual(metrics["director_cache_evictions_total"], NAMES - CAPACITY)
        decisions = metric(metrics, "director_decisions_total")
        self.assertGreaterEqual(decisions, NAMES)
        final_rss = agent.rss_kib()
        peak_rss = max(peak_rss or final_rss, final_rss)
        self.assertLess(peak_rss - baseline_rss, RSS_GROWTH_KIB,
                        f"RSS grew from {baseline_rss} to {peak_rss} KiB: {samples}")
        for session in sessions:
            session.close()
        print(f"\n{NAMES} usernames in {elapsed:.1f} s ({NAMES / elapsed:.0f}/s); cache "
              f"{cached:.0f} of {CAPACITY}; RSS {baseline_rss} KiB after {WARMUP} names, peak "
              f"{peak_rss} KiB, final {final_rss} KiB; {len(initial_series)} metric series "
              f"before and after")


if __name__ == "__main__":
    unittest.main(verbosity=2)
