#!/usr/bin/env python3
"""The spawner's benchmark, figures side by side in one run (docs/performance.md, "Spawner"):

  (a) the loading page and (b) the wake policy's 503 (a script's fetch()), req/s and latency
      with wrk (one thread), straight at director-spawner's pages listener with the headers
      HAProxy adds, and through HAProxy (identity header only; HAProxy answers (b) itself);
  (c) time from a user's first request to ready through the spawner, against the runtime's own
      create + start (+ until the container's port accepts) measured directly through the same
      Podman API in the same run, rounds interleaved;
  (d) director-spawner's RSS with N known users (default 10,000): N distinct users woken, each
      ending failed at once (a runtime that answers fast: see --known-runtime).

Everything runs on loopback with the real components: tools/stack.py's Stack(spawner="director")
starts dnsmasq, the agent, HAProxy with haproxy/haproxy.cfg, a private Podman API service
(tools/podman.py, a busybox image) and director-spawner; containers run busybox httpd on the
host's network, each on its own loopback address. The user "slow" gets a container that never
listens, so that its loading page is served for the whole of (a).

    python3 tests/bench/spawner_bench.py          # needs build/default's director-spawner and agent
    python3 tests/bench/spawner_bench.py --smoke  # a few seconds, tiny sizes (the ctest smoke test)

Exit status: 0 when every figure was measured, 1 otherwise, 77 when a tool is missing.
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tools"))
sys.path.insert(0, str(REPO / "tests" / "e2e"))
from bench import rss_mib  # noqa: E402
from common import metric, spawner_request  # noqa: E402
from podman import TEST_IMAGE, UnixHTTPConnection  # noqa: E402
from stack import (ADDRESS_PRELUDE, SERVE_SCRIPT, Stack,  # noqa: E402
                   director_spawner_unavailable, machine_facts)

SKIP = 77
# The user whose container never listens, so its loading page stays: wrk's script names users
# <prefix><i>, so one user of prefix "slow" is "slow0".
SLOW_PREFIX = "slow"
SLOW = SLOW_PREFIX + "0"
# What every container runs: SERVE_SCRIPT (busybox httpd on the user's address), except SLOW's.
CONTAINER_SCRIPT = ('if [ "{label}" = "%s" ]; then echo "never listens"; exec sleep 86400; fi\n'
                    % SLOW) + SERVE_SCRIPT


# --- wrk ----------------------------------------------------------------------------------------

def run_wrk(url, kind, users, prefix, seconds, connections, host_prefix=None, offset=0):
    """wrk -t1 with tests/bench/spawner_users.lua; its BENCH line plus "rps"."""
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "5s",
            "-s", str(HERE / "spawner_users.lua"), url, "--", kind, str(users), prefix, str(offset)]
    if host_prefix:
        argv.append(host_prefix)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    for line in out.stdout.splitlines():
        if line.startswith("BENCH "):
            result = json.loads(line[6:])
            result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
            return result
    raise RuntimeError(f"wrk printed no result: {out.stdout}\n{out.stderr}")


# --- straight at the spawner and at Podman ------------------------------------------------------

def spawner_get(stack, label, path="/", accept="text/html", mode="navigate"):
    """One request straight at the spawner's pages listener as HAProxy forwards it, as a page
    load (mode navigate) or a script's fetch (cors): (status, body)."""
    status, _, body = spawner_request(stack, label, path, headers=[
        ("Accept", accept), ("Sec-Fetch-Mode", mode),
        ("Sec-Fetch-Dest", "document" if mode == "navigate" else "empty")])
    return status, body


def podman_call(podman, method, target, body=None, timeout=60):
    connection = UnixHTTPConnection(podman.socket, timeout)
    try:
        payload = json.dumps(body).encode() if body is not None else None
        connection.request(method, target, body=payload,
                           headers={"Content-Type": "application/json"} if payload else {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def accepts(addr, port):
    try:
        socket.create_connection((addr, port), timeout=0.5).close()
        return True
    except OSError:
        return False


def wait_until(what, check, timeout, interval=0.002):
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(interval)
    return time.monotonic()


# --- the bench ----------------------------------------------------------------------------------

class SpawnerBench:
    def __init__(self, args):
        self.args = args
        self.stack = None
        self.results = {"pages": [], "ready": [], "memory": {}}

    def start(self):
        a = self.args
        users = [SLOW] + [f"ready{i}" for i in range(a.rounds)] + [f"direct{i}" for i in range(a.rounds)]
        self.stack = Stack(spawner="director", users=users, container_script=CONTAINER_SCRIPT,
                           spawner_settings={"SPAWNER_READY_TIMEOUT": "60m",
                                             "SPAWNER_LOG_LEVEL": "warn"}).start()

    def stop(self):
        if self.stack is not None:
            self.stack.stop()

    # (a), (b)
    def pages(self):
        a, stack = self.args, self.stack
        status, body = spawner_get(stack, SLOW)  # wakes SLOW: its loading page from now on
        if status != 200:
            raise RuntimeError(f"the loading page answered {status}: {body[:300]!r}")
        direct = f"http://{stack.spawner[0]}:{stack.spawner[1]}/"
        rows = [("loading page", "spawner", direct, "navigate", stack.host_prefix, 200),
                ("loading page", "HAProxy", stack.url + "/", "navigate", None, 200),
                ("wake-policy 503", "spawner", direct, "fetch", stack.host_prefix, 503),
                ("wake-policy 503", "HAProxy", stack.url + "/", "fetch", None, 503)]
        for what, where, url, kind, host_prefix, expected in rows:
            run_wrk(url, kind, 1, SLOW_PREFIX, a.warmup, a.connections, host_prefix)
            result = run_wrk(url, kind, 1, SLOW_PREFIX, a.duration, a.connections, host_prefix)
            result.update(what=what, where=where, expected=expected)
            self.results["pages"].append(result)
            print(f"  {what:<16} {where:<8} {result['rps']:>9.0f} req/s  p50 {result['p50_us'] / 1000:.2f} ms"
                  f"  p99 {result['p99_us'] / 1000:.2f} ms  statuses {result['status']}", flush=True)

    # (c)
    def spawner_ready(self, label):
        """Seconds from the first request (a navigation straight at the spawner) until its status
        endpoint says ready, and until the container's port first accepts: both polled in one
        loop every 2 ms, so their difference is what the spawner's readiness check adds."""
        addr, port = self.stack.user_addresses[label], self.stack.container_port
        began = time.monotonic()
        status, body = spawner_get(self.stack, label)
        if status != 200:
            raise RuntimeError(f"{label}'s first request answered {status}: {body[:300]!r}")
        ready_at = listening_at = None
        while ready_at is None or listening_at is None:
            if time.monotonic() - began > 60:
                raise TimeoutError(f"{label}: ready at {ready_at}, listening at {listening_at}")
            if listening_at is None and accepts(addr, port):
                listening_at = time.monotonic()
            if ready_at is None:
                status, body = spawner_get(self.stack, label, "/.container-director/status",
                                           accept="application/json", mode="cors")
                phase = json.loads(body).get("phase") if status == 200 else None
                if phase == "failed":
                    raise RuntimeError(f"{label} failed: {body!r}")
                if phase == "ready":
                    ready_at = time.monotonic()
            time.sleep(0.002)
        return ready_at - began, listening_at - began

    def direct_ready(self, label):
        """The runtime alone: create, start, and the port accepting (polled every 2 ms), for the
        same image, command and environment on the same Podman API; the container is removed."""
        stack, podman = self.stack, self.stack.podman
        addr, port = stack.user_addresses[label], stack.container_port
        name = f"bench-direct-{label}"
        body = {"Image": TEST_IMAGE,
                "Cmd": ["sh", "-c", (ADDRESS_PRELUDE + CONTAINER_SCRIPT).replace("{label}", label)],
                "Env": [f"ADDRESSES={label}={addr}", f"CONTAINER_PORT={port}"],
                "Labels": {"director.bench": "direct"},
                "HostConfig": {"NetworkMode": "host"}}
        began = time.monotonic()
        status, answer = podman_call(podman, "POST", f"/v1.41/containers/create?name={name}", body)
        created = time.monotonic()
        if status != 201:
            raise RuntimeError(f"create answered {status}: {answer[:300]!r}")
        status, answer = podman_call(podman, "POST", f"/v1.41/containers/{name}/start")
        started = time.monotonic()
        if status != 204:
            raise RuntimeError(f"start answered {status}: {answer[:300]!r}")
        listening = wait_until(f"{name} listening", lambda: accepts(addr, port), 10)
        podman_call(podman, "DELETE", f"/v1.41/containers/{name}?force=true")
        return created - began, started - began, listening - began

    def ready(self):
        before = self.stack.spawner_metrics()
        for i in range(self.args.rounds):
            create, create_start, direct_listen = self.direct_ready(f"direct{i}")
            spawner_ready, spawner_listen = self.spawner_ready(f"ready{i}")
            row = {"direct_create_s": create, "direct_create_start_s": create_start,
                   "direct_listening_s": direct_listen, "spawner_ready_s": spawner_ready,
                   "spawner_listening_s": spawner_listen}
            self.results["ready"].append(row)
            print("  round %d: runtime create %.0f ms, create+start %.0f ms, +listening %.0f ms; "
                  "spawner: its container listening at %.0f ms, ready at %.0f ms"
                  % (i, create * 1e3, create_start * 1e3, direct_listen * 1e3, spawner_listen * 1e3,
                     spawner_ready * 1e3), flush=True)
        after = self.stack.spawner_metrics()
        count = (metric(after, "director_spawner_time_to_ready_seconds_count")
                 - metric(before, "director_spawner_time_to_ready_seconds_count"))
        total = (metric(after, "director_spawner_time_to_ready_seconds_sum")
                 - metric(before, "director_spawner_time_to_ready_seconds_sum"))
        self.results["time_to_ready_metric_mean_s"] = total / count if count else None

    # (d)
    def memory(self):
        """Restarts director-spawner on a runtime that answers fast, wakes N distinct users with
        one page load each, straight at its pages listener (16 at a time), and waits until it
        knows every one of them as failed. One load each: a failed user's next page load is a
        retry, which would keep them cycling."""
        a, stack = self.args, self.stack
        runtime = {"podman-missing-image": {"SPAWNER_IMAGE": "localhost/director-bench-missing:latest",
                                            "SPAWNER_PULL": "never"},
                   "runtime-down": {"SPAWNER_RUNTIME": f"unix://{stack.run_dir}/no-runtime.sock"}}
        stack.components["spawner"].stop()
        stack.spawner_settings.update(runtime[a.known_runtime])
        stack.start_director_spawner()
        pid = stack.components["spawner"].proc.pid
        time.sleep(0.5)
        known_before = metric(stack.spawner_metrics(), "director_spawner_users")
        rss_before = rss_mib(pid)
        began = time.monotonic()

        def wake(user):
            """The first page load's status; again after a 503, the pages listener's "too many
            connections" (it woke nothing)."""
            for _ in range(100):
                status, _ = spawner_get(stack, user)
                if status != 503:
                    return status
                time.sleep(0.01)
            return status

        with ThreadPoolExecutor(16) as pool:
            statuses = Counter(pool.map(wake, (f"u{i}" for i in range(a.known_users))))
        woken = time.monotonic() - began
        while True:
            metrics = stack.spawner_metrics()
            failed = metric(metrics, "director_spawner_users", phase="failed")
            if failed >= a.known_users or time.monotonic() - began > a.known_timeout:
                break
            time.sleep(0.2)
        known = metric(metrics, "director_spawner_users")
        rss_after = rss_mib(pid)
        self.results["memory"] = {
            "runtime": a.known_runtime, "users_known": known, "users_known_before": known_before,
            "users_failed": failed, "first_answers": dict(statuses),
            "rss_before_mib": rss_before, "rss_after_mib": rss_after,
            "kib_per_user": (rss_after - rss_before) * 1024 / max(1, known - known_before),
            "seconds_to_wake": woken, "seconds_to_failed": time.monotonic() - began,
            "phases": {k: v for k, v in metrics.items() if k.startswith("director_spawner_users")}}
        print(f"  {known:.0f} users known ({failed:.0f} failed; first answers {dict(statuses)}), "
              f"RSS {rss_before:.1f} -> {rss_after:.1f} MiB", flush=True)
        return failed >= a.known_users

    def table(self):
        lines = ["", "spawner figures (wrk -t1 -c%d, %ss each after %ss of warm-up):"
                 % (self.args.connections, self.args.duration, self.args.warmup),
                 "%-18s %-9s %10s %9s %9s  %s" % ("", "", "req/s", "p50 ms", "p99 ms", "statuses")]
        for r in self.results["pages"]:
            lines.append("%-18s %-9s %10.0f %9.2f %9.2f  %s" % (
                r["what"], r["where"], r["rps"], r["p50_us"] / 1000, r["p99_us"] / 1000,
                " ".join(f"{k}:{v}" for k, v in r["status"].items() if v)))
        ready = self.results["ready"]
        if ready:
            med = {k: statistics.median(r[k] for r in ready) * 1000 for k in ready[0]}
            lines += ["", "time to ready, median of %d interleaved rounds (ms):" % len(ready),
                      "  runtime alone: create %.0f, create+start %.0f, until its port accepts %.0f"
                      % (med["direct_create_s"], med["direct_create_start_s"], med["direct_listening_s"]),
                      "  through the spawner: first request -> its container accepting %.0f, "
                      "-> status ready %.0f" % (med["spawner_listening_s"], med["spawner_ready_s"]),
                      "  the spawner adds %.0f ms over the runtime's create+start+listening; its "
                      "readiness check %.0f ms after the port accepts (median of the differences)"
                      % (med["spawner_ready_s"] - med["direct_listening_s"],
                         statistics.median(r["spawner_ready_s"] - r["spawner_listening_s"]
                                           for r in ready) * 1000)]
            if self.results.get("time_to_ready_metric_mean_s") is not None:
                lines.append("  director_spawner_time_to_ready_seconds mean: %.0f ms"
                             % (self.results["time_to_ready_metric_mean_s"] * 1000))
        memory = self.results["memory"]
        if memory:
            lines += ["", "director-spawner RSS with %.0f known users (%s; %.0f before; woken in "
                      "%.1f s, all failed after %.1f s): %.1f MiB before, %.1f MiB after, %.2f KiB "
                      "per user" % (memory["users_known"], memory["runtime"], memory["users_known_before"],
                                    memory["seconds_to_wake"], memory["seconds_to_failed"],
                                    memory["rss_before_mib"], memory["rss_after_mib"],
                                    memory["kib_per_user"])]
        return "\n".join(lines)


def answered_as_expected(row):
    """The row measured what it names: most answers had the status it expects (200 or 503); the
    table shows any other status (e.g. the pages listener's 503 "too many connections")."""
    return row["rps"] > 0 and row["status"][str(row["expected"])] > sum(row["status"].values()) / 2


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="a few seconds, tiny sizes")
    parser.add_argument("--duration", type=float, default=10, help="seconds measured per row")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of warm-up per row")
    parser.add_argument("--connections", type=int, default=50, help="wrk connections")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of (c)")
    parser.add_argument("--known-users", type=int, default=10_000, help="users of (d)")
    parser.add_argument("--known-runtime", choices=("podman-missing-image", "runtime-down"),
                        default="podman-missing-image",
                        help="what answers the spawner in (d): the stack's Podman without the "
                             "image (pulls off), or no runtime at all (default %(default)s)")
    parser.add_argument("--known-timeout", type=float, default=600,
                        help="seconds (d) may take until every user has failed")
    parser.add_argument("--json", help="also write every figure to this file")
    args = parser.parse_args()
    if args.smoke:
        args.duration, args.warmup, args.rounds, args.known_users = 1, 1, 1, 200

    missing = [t for t in ("haproxy", "dnsmasq", "wrk")
               if not shutil.which(t) and not Path("/usr/sbin", t).exists()]
    if missing:
        print(f"skipped: {', '.join(missing)} not installed (tools/install-deps.sh)")
        return SKIP
    os.environ["PATH"] += os.pathsep + "/usr/sbin"
    unavailable = director_spawner_unavailable()
    if unavailable:
        print(f"skipped: {unavailable}")
        return SKIP

    bench = SpawnerBench(args)
    machine, line = machine_facts()
    bench.results["machine"] = machine
    print(line, flush=True)
    ok = False
    try:
        bench.start()
        print("(a), (b) pages:", flush=True)
        bench.pages()
        print("(c) time to ready:", flush=True)
        bench.ready()
        print("(d) memory:", flush=True)
        all_known = bench.memory()
        machine["load_after"] = os.getloadavg()
        print(bench.table())
        print(f"load average after: {' '.join(f'{x:.2f}' for x in machine['load_after'])}")
        ok = all_known and all(answered_as_expected(r) for r in bench.results["pages"])
    except BaseException:
        if bench.stack is not None:
            print(bench.stack.diagnostics(), file=sys.stderr)
        raise
    finally:
        bench.stop()
        if args.json:
            Path(args.json).write_text(json.dumps(bench.results, indent=2, default=str))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
