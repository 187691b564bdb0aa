#!/usr/bin/env python3
"""Soak: the whole director on loopback (tools/stack.py) under wrk at half its measured maximum
for a long time, while user containers stop and the spawner starts them again.

    python3 tests/soak/soak.py                  # 10 minutes, 50 users (docs/performance.md)
    python3 tests/soak/soak.py --seconds 20     # a short run (ctest soak/smoke)

It measures the maximum first (wrk, same users, no pacing), then runs at half of it with each
connection paced, stopping one random user's container every --churn-every seconds. Every
answer must be the container (200), the spawner (202) or HAProxy's auto-refreshing page for a
container that just stopped (503) or died before answering (502). A container stopped in the middle of a response cuts that
response (demo containers exit at once on SIGTERM, as a crashing one would): wrk counts a read
error, and at most one request per connection can be in flight at a stop, so up to
stops x connections read errors are the churn's; anything else (another status, a connect or
write error, a timeout, more read errors) is unexpected. The agent's and HAProxy's RSS are sampled; after the first quarter (warm-up) they
must stay within a bound printed with the figures. Exit 0 only when both hold.
"""

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tools"))
from stack import Stack  # noqa: E402

# The container, the spawner's loading page, and HAProxy's pages that retry by themselves.
EXPECTED = {"200", "202", "202+refresh", "502+refresh", "503+refresh"}
CONNECTIONS = 50


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    except (OSError, StopIteration):
        return None


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def wrk(url, users, seconds, delay_ms):
    argv = ["wrk", "-t1", f"-c{CONNECTIONS}", f"-d{int(seconds)}s", "--timeout", "5s",
            "-s", str(HERE / "soak.lua"), url, "--", str(users), "soak", str(delay_ms)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 120)
    for line in out.stdout.splitlines():
        if line.startswith("SOAK "):
            result = json.loads(line[5:])
            result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
            return result
    raise RuntimeError(f"wrk printed no result:\n{out.stdout}\n{out.stderr}")


class Sampler(threading.Thread):
    """RSS of the agent and HAProxy's worker(s) every `interval` seconds: [(t, agent, haproxy)]."""

    def __init__(self, stack, interval):
        super().__init__(daemon=True)
        self.stack, self.interval, self.samples = stack, interval, []
        self.stop = threading.Event()

    def run(self):
        started = time.monotonic()
        while not self.stop.wait(self.interval):
            agent = rss_kib(self.stack.agent_pid())
            master = self.stack.components["haproxy"].proc.pid
            workers = [rss_kib(p) for p in children(master) if p != master]
            haproxy = sum(w for w in workers if w) or None
            self.samples.append((time.monotonic() - started, agent, haproxy))


class Churn(threading.Thread):
    """Stops a random user's container every `every` seconds; the spawner starts it again on
    that user's next request."""

    def __init__(self, stack, users, every):
        super().__init__(daemon=True)
        self.stack, self.users, self.every = stack, users, every
        self.stop, self.stopped = threading.Event(), 0
        self.rng = random.Random(1)

    def run(self):
        while not self.stop.wait(self.every):
            user = self.rng.choice(self.users)
            if self.stack.container(user) is not None:
                self.stack.stop_container(user)
                self.stopped += 1


def bound(values):
    """RSS growth allowed after warm-up: 20% of the warm-up peak, at least 8 MiB."""
    peak = max(values)
    return peak + max(8 * 1024, peak // 5)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=600)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--churn-every", type=float, default=5.0, help="seconds between stops")
    parser.add_argument("--agent-bin", default=os.environ.get("DIRECTOR_AGENT_BIN"))
    args = parser.parse_args()
    missing = [t for t in ("haproxy", "dnsmasq", "wrk") if not shutil.which(t) and not Path("/usr/sbin", t).exists()]
    if missing:
        print(f"skipped: {', '.join(missing)} not installed (tools/install-deps.sh)")
        return 77

    users = [f"soak{i}" for i in range(args.users)]
    with Stack(agent_bin=args.agent_bin) as stack:
        stack.add_containers(users)
        for user in users:  # first visits: every user known alive
            stack.request(user)
        maximum = wrk(stack.url, args.users, min(10, max(3, args.seconds // 10)), 0)
        rate = maximum["rps"] / 2
        delay_ms = max(1, round(CONNECTIONS * 1000 / rate))
        print(f"maximum {maximum['rps']:.0f} req/s; soaking at half: {CONNECTIONS} connections, "
              f"one request every {delay_ms} ms each (~{CONNECTIONS * 1000 / delay_ms:.0f} req/s) "
              f"for {args.seconds} s, a container stopped every {args.churn_every} s", flush=True)

        sampler = Sampler(stack, max(1.0, args.seconds / 60))
        churn = Churn(stack, users, args.churn_every)
        sampler.start()
        churn.start()
        try:
            result = wrk(stack.url, args.users, args.seconds, delay_ms)
        finally:
            churn.stop.set()
            sampler.stop.set()
            churn.join()
            sampler.join()

    statuses = result["statuses"]
    unexpected = {k: v for k, v in statuses.items() if k not in EXPECTED}
    errors = result["errors"]
    cut_limit = churn.stopped * CONNECTIONS
    socket_errors = errors["connect"] + errors["write"] + errors["timeout"] + max(0, errors["read"] - cut_limit)
    warm = [s for s in sampler.samples if s[0] <= args.seconds / 4]
    later = [s for s in sampler.samples if s[0] > args.seconds / 4]
    problems = []
    if unexpected or socket_errors:
        problems.append(f"unexpected answers {unexpected}, socket errors {result['errors']}")
    figures = [
        f"requests {result['requests']} in {result['duration_us'] / 1e6:.0f} s: {result['rps']:.0f} req/s "
        f"(maximum {maximum['rps']:.0f}), p50 {result['p50_us'] / 1000:.2f} ms, p99 {result['p99_us'] / 1000:.2f} ms",
        f"answers {dict(sorted(statuses.items()))}; containers stopped {churn.stopped}, responses cut "
        f"by a stop {errors['read']} (at most {cut_limit}); other socket errors "
        f"{errors['connect'] + errors['write'] + errors['timeout']}",
    ]
    for column, name in ((1, "agent"), (2, "haproxy")):
        warm_values = [s[column] for s in warm if s[column]]
        later_values = [s[column] for s in later if s[column]]
        if not warm_values or not later_values:
            problems.append(f"{name}: too few RSS samples")
            continue
        limit = bound(warm_values)
        figures.append(f"{name} RSS: warm-up peak {max(warm_values) / 1024:.1f} MiB, afterwards "
                       f"{min(later_values) / 1024:.1f}-{max(later_values) / 1024:.1f} MiB, bound "
                       f"{limit / 1024:.1f} MiB")
        if max(later_values) > limit:
            problems.append(f"{name} RSS grew past its bound")
    print("\n".join(figures))
    if problems:
        print("FAIL: " + "; ".join(problems))
        return 1
    print("PASS: no unexpected answer, RSS flat within its bound")
    return 0


if __name__ == "__main__":
    sys.exit(main())
