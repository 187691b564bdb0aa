#!/usr/bin/env python3
"""The director's benchmark, side by side in one run (docs/performance.md):

  1. HAProxy -> one static backend (the limit);
  2. HAProxy do-resolve to the computed host (the do-it-yourself alternative, no liveness);
  3. HAProxy + director, users alive and cached, 1 / 100 / 10,000 users, fast path off and on;
  4. HAProxy + director, users not alive (the spawner path);

then the agent alone (tests/bench/spop_loadgen: NOTIFY->ACK per second on one agent thread), the
codec micro-benchmark (tests/bench/codec_bench), and the scale checks: agent RSS with 100,000
cached users, one lookup and one probe for 1,000 concurrent requests of one cold user, and the
convergence times, measured.

Everything runs on loopback with the real components: tools/stack.py starts dnsmasq, the agent
and HAProxy with haproxy/haproxy.cfg; the "containers" are one HAProxy answering a fixed
response on 254 addresses 127.0.<k>.1-254 (users are spread over them through DNS), so that the
backend is never the bottleneck. Every HAProxy under test runs one thread (nbthread 1), as in
DESIGN-NOTES section 5; wrk runs one thread with 50 connections.

    python3 tests/bench/bench.py              # builds build/bench (Release) and runs everything
    python3 tests/bench/bench.py --smoke      # a few seconds, tiny sizes: the ctest smoke test

Exit status: 0 when every row of the table was measured, 1 otherwise, 77 when a tool is
missing (haproxy, dnsmasq, wrk).
"""

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO / "tools"))
from containers import claim_subnet  # noqa: E402
from loopback import free_port, http_get  # noqa: E402
from stack import IDENTITY, Component, Stack, haproxy_binary, machine_facts, wait_for  # noqa: E402

SKIP = 77
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


# --- measuring processes ------------------------------------------------------------------

def cpu_seconds(pid):
    """utime + stime of a process, in seconds (/proc/<pid>/stat fields 14 and 15)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mib(pid):
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE / 2**20


def metric_sum(text, name):
    """The sum of every series of `name` (all label values)."""
    return sum(float(v) for v in re.findall(rf"^{name}(?:\{{[^}}]*\}})? (\S+)$", text, re.M))


def backend_connects(socket_path):
    """Connections HAProxy opened to servers so far (show stat: "connect" of every server)."""
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(str(socket_path))
        s.sendall(b"show stat\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    lines = data.decode().splitlines()
    header = lines[0].lstrip("# ").split(",")
    column = header.index("connect")
    total = 0
    for line in lines[1:]:
        fields = line.split(",")
        if len(fields) > column and fields[1] not in ("FRONTEND", "BACKEND") and fields[column]:
            total += int(fields[column])
    return total


# --- the backend: one HAProxy for every user "container", and the spawner -----------------

ORIGIN_CFG = """
global
    nbthread 1
    maxconn 8000
defaults
    mode http
    timeout connect 2s
    timeout client 1m
    timeout server 1m
frontend containers
    bind {binds}
    http-request return status 200 content-type text/plain hdr X-Served-By "origin %[dst]" string "hello\\n"
frontend spawner
    bind 127.0.0.1:{spawner_port}
    http-request return status 202 content-type text/plain hdr X-Served-By spawner string "spawning\\n"
"""

# Shared by the two reference configurations: the same timeouts as haproxy/haproxy.cfg, and a
# log line per request to stdout as the director writes (to /dev/null here, like the director's).
REFERENCE_HEAD = """
global
    nbthread 1
    log stdout format raw local0 info
    stats socket {stats_socket} mode 600 level admin
defaults
    mode http
    log global
    option dontlognull
    log-format "%ci:%cp [%tr] %ft %b/%s %TR/%Tw/%Tc/%Tr/%Ta %ST %B %tsc %ac/%fc/%bc/%sc/%rc %sq/%bq %{{+Q}}r target=%[var(txn.dst_addr)]"
    timeout connect 2s
    timeout client 1m
    timeout server 1m
    timeout http-request 10s
"""

STATIC_CFG = REFERENCE_HEAD + """
frontend static
    bind 127.0.0.1:{port}
    default_backend origin
backend origin
    server origin {origin_addr}:{container_port}
"""

# What an operator would write without the director: HAProxy resolves <prefix>-<username> itself
# (the director's degraded mode, without the identity checks), no liveness.
RESOLVE_CFG = REFERENCE_HEAD + """
frontend resolve
    bind 127.0.0.1:{port}
    http-request set-var-fmt(txn.host) "vscode-%[req.fhdr(x-forwarded-preferred-username)]"
    http-request do-resolve(txn.dst_addr,dns) var(txn.host)
    use_backend container if {{ var(txn.dst_addr) -m found }}
    default_backend spawner
backend container
    http-request set-dst var(txn.dst_addr)
    http-request set-dst-port int({container_port})
    # The director's tuning (haproxy.cfg): idle connections kept for many destinations.
    server container 0.0.0.0:0 pool-low-conn 1000
backend spawner
    server spawner 127.0.0.1:{spawner_port}
resolvers dns
    nameserver dnsmasq {dns}
    resolve_retries 2
    timeout retry 250ms
    hold valid 1s
"""


class BenchStack(Stack):
    """tools/stack.py's stack with the bench's differences: the spawner is the origin's fixed
    answer, HAProxy runs one thread (a global section of its own) with the fast path TTL given,
    and HAProxy's per-request log goes to /dev/null unless asked for."""

    def __init__(self, *, spawner_port, fast_path_ttl, keep_haproxy_log, **kwargs):
        super().__init__(spawner_listen=f"127.0.0.1:{spawner_port}", **kwargs)
        self.fast_path_ttl = fast_path_ttl
        self.keep_haproxy_log = keep_haproxy_log

    def start_spawner(self):
        pass  # the origin HAProxy answers for the spawner

    def haproxy_env(self):
        env = super().haproxy_env()
        # haproxy.cfg's fast path is on or off; how long it holds an answer is the agent's
        # DIRECTOR_FAST_PATH_HOLD (default 500 ms).
        env["DIRECTOR_FAST_PATH"] = "on" if self.fast_path_ttl else "off"
        return env

    def start_haproxy(self):
        extra = self.run_dir / "bench-global.cfg"
        extra.write_text("global\n    nbthread 1\n")
        # The extra file first: 3.x takes nbthread only in the first global section.
        argv = [haproxy_binary(), "-W", "-S", self.run_dir / "master.sock",
                "-f", extra, "-f", self.haproxy_cfg]
        component = Component("haproxy", argv, self.haproxy_env(), self.run_dir)
        if not self.keep_haproxy_log:
            component.log_path = Path(os.devnull)
        self.components["haproxy"] = component
        component.start()
        self.wait_haproxy_started()

    def restart_haproxy(self, fast_path_ttl):
        self.components["haproxy"].stop()
        self.fast_path_ttl = fast_path_ttl
        self.start_haproxy()


# --- wrk ----------------------------------------------------------------------------------

def run_wrk(url, users, prefix, seconds, connections, offset=0):
    seconds = max(1, round(seconds))
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s",
            "-s", str(HERE / "users.lua"), url, "--", str(users), prefix, str(offset)]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    for line in out.stdout.splitlines():
        if line.startswith("BENCH "):
            result = json.loads(line[6:])
            result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
            return result
    raise RuntimeError(f"wrk printed no result: {out.stdout}\n{out.stderr}")


def request(endpoint, user, timeout=5):
    """One page load (Accept: text/html, which the spawner backend's wake policy lets through)
    on a new connection: (status, X-Served-By)."""
    with socket.create_connection(endpoint, timeout=timeout) as s:
        s.sendall(f"GET / HTTP/1.1\r\nHost: bench\r\n{IDENTITY}: {user}\r\n"
                  "Accept: text/html\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode(errors="replace").split("\r\n")
    served = next((h.split(":", 1)[1].strip() for h in head[1:]
                   if h.lower().startswith("x-served-by:")), None)
    return int(head[0].split()[1]), served


# --- the bench ----------------------------------------------------------------------------

class Bench:
    def __init__(self, args):
        self.args = args
        self.rows = []
        self.results = {"rows": self.rows}
        self.procs = []

    # components

    def start(self):
        a = self.args
        self.origin_subnet, self._origin_lock = claim_subnet(200)
        self.container_port = free_port()
        self.spawner_port = free_port()
        self.run_dir = Path(tempfile.mkdtemp(prefix="director-bench-"))
        binds = ",".join(f"{self.origin_subnet}.{i}:{self.container_port}" for i in range(1, 255))
        self.start_process("origin", [haproxy_binary(), "-f", self.write_cfg("origin.cfg", ORIGIN_CFG.format(
            binds=binds, spawner_port=self.spawner_port))], port=("127.0.0.1", self.spawner_port))

        self.stack = BenchStack(spawner_port=self.spawner_port, fast_path_ttl=a.fast_path_ttl,
                                keep_haproxy_log=a.keep_logs, agent_bin=a.agent_bin,
                                container_port=self.container_port,
                                agent_args=["--threads", "1"],
                                run_dir=self.run_dir / "stack")
        self.stack.start()
        # Every bench user's name, spread over the origin's 254 addresses. dnsmasq reads the
        # hosts directory again when a file appears in it.
        hosts = self.stack.containers.hosts_dir / "bench-users"
        tmp = self.stack.containers.hosts_dir / ".bench-users.tmp"
        with open(tmp, "w") as f:
            for i in range(max(a.users_large, a.scale_users)):
                f.write(f"{self.origin_addr(i)} vscode-bench{i}\n")
            for i in range(a.cold_users):
                f.write(f"{self.origin_addr(i)} vscode-cold{i}\n")
        tmp.replace(hosts)
        last = f"vscode-bench{max(a.users_large, a.scale_users) - 1}"
        wait_for("dnsmasq to read the bench users", lambda: self.stack.resolve(last), 30)

        self.static_port, self.resolve_port = free_port(), free_port()
        self.sockets = {"static": self.run_dir / "static.sock", "resolve": self.run_dir / "resolve.sock"}
        self.start_process("static", [haproxy_binary(), "-f", self.write_cfg("static.cfg", STATIC_CFG.format(
            stats_socket=self.sockets["static"], port=self.static_port, origin_addr=self.origin_addr(0),
            container_port=self.container_port))], port=("127.0.0.1", self.static_port), log=False)
        self.start_process("resolve", [haproxy_binary(), "-f", self.write_cfg("resolve.cfg", RESOLVE_CFG.format(
            stats_socket=self.sockets["resolve"], port=self.resolve_port,
            container_port=self.container_port,
            spawner_port=self.spawner_port, dns=f"{self.stack.dns[0]}:{self.stack.dns[1]}"))],
            port=("127.0.0.1", self.resolve_port), log=False)

    def stop(self):
        for proc in self.procs:
            proc.stop()
        if getattr(self, "stack", None) is not None:
            self.stack.stop()
        if getattr(self, "_origin_lock", None) is not None:
            self._origin_lock.close()
        if not self.args.keep_logs:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def origin_addr(self, i):
        return f"{self.origin_subnet}.{i % 254 + 1}"

    def write_cfg(self, name, text):
        path = self.run_dir / name
        path.write_text(text)
        check = subprocess.run([haproxy_binary(), "-c", "-q", "-f", str(path)], capture_output=True, text=True)
        if check.returncode != 0:
            raise RuntimeError(f"{name} is invalid:\n{check.stdout}{check.stderr}")
        return path

    def start_process(self, name, argv, port, log=True):
        component = Component(name, argv, {"PATH": os.environ["PATH"]}, self.run_dir)
        if not log or not self.args.keep_logs:
            component.log_path = Path(os.devnull)
        component.start()
        self.procs.append(component)
        wait_for(name, lambda: component.running()
                 and socket.create_connection(port, 0.5).close() is None)
        setattr(self, f"{name}_pid", component.proc.pid)

    @property
    def agent_pid(self):
        return self.stack.components["agent"].proc.pid

    def agent_metrics(self):
        return http_get(self.stack.agent_http, "/metrics", timeout=10)[1]

    # the side-by-side table

    def measure(self, name, endpoint, haproxy_pid, users, prefix, expect, *, director=True,
                fast_path=None, socket_path=None):
        a = self.args
        url = f"http://{endpoint[0]}:{endpoint[1]}/"
        status, served = request(endpoint, f"{prefix}0")
        if not expect(status, served):
            raise RuntimeError(f"{name}: unexpected answer {status} {served}")
        run_wrk(url, users, prefix, a.warmup, a.connections)  # first visits, caches filled
        before = self.sample(haproxy_pid, director, socket_path)
        result = run_wrk(url, users, prefix, a.duration, a.connections)
        after = self.sample(haproxy_pid, director, socket_path)
        requests = result["requests"]
        row = {"scenario": name, "users": users, "fast_path_ttl_ms": fast_path,
               "rps": result["rps"], "p50_ms": result["p50_us"] / 1000,
               "p99_ms": result["p99_us"] / 1000, "errors": result["errors"],
               "haproxy_us_per_req": (after["haproxy_cpu"] - before["haproxy_cpu"]) / requests * 1e6,
               "backend_connects_per_req": (after["connects"] - before["connects"]) / requests}
        if director:
            decisions = after["decisions"] - before["decisions"]
            row.update({
                "decisions_per_req": decisions / requests,
                "agent_us_per_decision": ((after["agent_cpu"] - before["agent_cpu"]) / decisions * 1e6
                                          if decisions else None),
                "agent_cpu_pct": (after["agent_cpu"] - before["agent_cpu"]) / (after["t"] - before["t"]) * 100,
                "checks_per_s": (after["checks"] - before["checks"]) / (after["t"] - before["t"]),
                "agent_rss_mib": rss_mib(self.agent_pid)})
        self.rows.append(row)
        print(f"  {name:<34} {users:>6} users  {row['rps']:>8.0f} req/s", flush=True)
        return row

    def sample(self, haproxy_pid, director, socket_path):
        s = {"t": time.monotonic(), "haproxy_cpu": cpu_seconds(haproxy_pid),
             "connects": backend_connects(socket_path or self.stack.run_dir / "haproxy.sock")}
        if director:
            text = self.agent_metrics()
            s.update(agent_cpu=cpu_seconds(self.agent_pid),
                     decisions=metric_sum(text, "director_decisions_total"),
                     checks=metric_sum(text, "director_dns_lookups_total"))
        return s

    def side_by_side(self):
        a = self.args
        print("side by side (wrk -t1 -c%d, %ss each after %ss of warm-up):" % (
            a.connections, a.duration, a.warmup), flush=True)
        alive = lambda status, served: status == 200 and (served or "").startswith("origin")  # noqa: E731
        self.measure("1. static backend", ("127.0.0.1", self.static_port), self.static_pid, 1,
                     "bench", alive, director=False, socket_path=self.sockets["static"])
        for users in (1, a.users_mid):
            self.measure("2. HAProxy do-resolve", ("127.0.0.1", self.resolve_port),
                         self.resolve_pid, users, "bench", alive, director=False,
                         socket_path=self.sockets["resolve"])
        for ttl in self.fast_path_settings():
            self.stack.restart_haproxy(ttl)
            worker = self.stack.haproxy_workers()[0]
            label = "fast path off" if ttl == 0 else f"fast path {ttl} ms"
            for users in (1, a.users_mid, a.users_large):
                self.measure(f"3. director, {label}", self.stack.http, worker, users, "bench",
                             alive, fast_path=ttl)
        self.stack.restart_haproxy(a.fast_path_ttl)
        worker = self.stack.haproxy_workers()[0]
        spawner = lambda status, served: status == 202 and served == "spawner"  # noqa: E731
        self.measure("4. director, not alive (spawner)", self.stack.http, worker, a.users_mid,
                     "ghost", spawner, fast_path=a.fast_path_ttl)
        # The cost of deciding alone at many users: the agent started with checks so rare that
        # every decision is a cache hit (its defaults re-check each active user every 0.3-0.8 s,
        # thousands of DNS lookups and probes a second at 10,000 users). Its cache is filled
        # first through SPOP; afterwards the agent is restarted with its defaults.
        self.stack.agent_args = ["--threads", "1", "--alive-ttl", "60s", "--refresh-after", "50s"]
        self.stack.restart_agent()
        self.stack.wait_agent_checked()
        self.loadgen(["--users", str(a.users_large), "--count", str(a.users_large),
                      "--connections", "4", "--depth", "256"])
        for ttl in sorted({0, a.fast_path_ttl}):
            self.stack.restart_haproxy(ttl)
            label = "off" if ttl == 0 else f"{ttl} ms"
            self.measure(f"5. as 3 without re-checks, {label}", self.stack.http,
                         self.stack.haproxy_workers()[0], a.users_large, "bench", alive,
                         fast_path=ttl)
        self.stack.agent_args = ["--threads", "1"]
        self.stack.restart_agent()
        self.stack.restart_haproxy(a.fast_path_ttl)

    def fast_path_settings(self):
        settings = [0] + [t for t in self.args.compare_ttl if t != 0]
        if self.args.fast_path_ttl not in settings:
            settings.append(self.args.fast_path_ttl)
        return settings

    # the agent alone

    def agent_alone(self):
        a = self.args
        print("agent alone (spop_loadgen, agent --threads 1):", flush=True)
        out = {}
        for users, connections, depth in ((1, 4, 64), (a.users_mid, 4, 64), (a.users_mid, 1, 1)):
            before = cpu_seconds(self.agent_pid)
            result = self.loadgen(["--users", str(users), "--connections", str(connections),
                                   "--depth", str(depth), "--duration", str(a.duration),
                                   "--warmup", "0"])
            cpu = cpu_seconds(self.agent_pid) - before
            result["agent_cpu_pct"] = cpu / result["seconds"] * 100
            result["agent_us_per_ack"] = cpu / max(1, result["acks"]) * 1e6
            key = f"{users} users, {connections} connections x {depth} in flight"
            out[key] = result
            print(f"  {key:<44} {result['acks_per_s']:>9.0f} ACK/s  agent CPU "
                  f"{result['agent_cpu_pct']:.0f}%, {result['agent_us_per_ack']:.2f} us/ACK  "
                  f"reasons {result['reasons']}", flush=True)
        self.results["agent_alone"] = out
        codec = subprocess.run([a.codec_bench] + (["--quick"] if a.smoke else []),
                               capture_output=True, text=True, timeout=600)
        if codec.returncode != 0:
            raise RuntimeError(f"codec_bench failed: {codec.stderr}")
        self.results["codec"] = codec.stdout
        print("codec micro-benchmark (codec_bench):\n" + codec.stdout, flush=True)

    def loadgen(self, extra):
        argv = [self.args.loadgen, "--agent", f"{self.stack.agent[0]}:{self.stack.agent[1]}"] + extra
        out = subprocess.run(argv, capture_output=True, text=True, timeout=900)
        if out.returncode != 0:
            raise RuntimeError(f"spop_loadgen failed: {out.stderr}")
        return json.loads(out.stdout.strip().splitlines()[-1])

    # scale checks

    def scale(self):
        a = self.args
        print("scale checks:", flush=True)
        scale = self.results.setdefault("scale", {})

        # RSS with many cached users: fill the cache straight through SPOP, then read it back.
        rss_before = rss_mib(self.agent_pid)
        started = time.monotonic()
        fill = self.loadgen(["--users", str(a.scale_users), "--count", str(a.scale_users),
                             "--connections", "4", "--depth", "256"])
        cached = metric_sum(self.agent_metrics(), "director_users_cached")
        scale["rss"] = {"users_sent": a.scale_users, "users_cached": cached,
                        "rss_before_mib": rss_before, "rss_mib": rss_mib(self.agent_pid),
                        "fill_seconds": time.monotonic() - started, "reasons": fill["reasons"]}
        print(f"  agent RSS with {cached:.0f} cached users: {scale['rss']['rss_mib']:.1f} MiB "
              f"(before: {rss_before:.1f} MiB)", flush=True)

        # One cold user, 1,000 concurrent requests: one lookup and one probe.
        scale["single_flight"] = [self.single_flight_spop(), self.single_flight_haproxy()]

        # Convergence, fast path off and on.
        scale["convergence"] = {}
        for ttl in sorted({0, a.fast_path_ttl}):
            self.stack.restart_haproxy(ttl)
            scale["convergence"][ttl] = self.convergence(ttl)
        self.stack.restart_haproxy(a.fast_path_ttl)

    def check_counts(self):
        text = self.agent_metrics()
        return {"lookups": metric_sum(text, "director_dns_lookups_total"),
                "probes": metric_sum(text, "director_probes_total"),
                "decisions": metric_sum(text, "director_decisions_total"),
                "waited": metric_sum(text, "director_cache_misses_total")}

    def single_flight_spop(self):
        before = self.check_counts()
        result = self.loadgen(["--users", "1", "--count", "1000", "--connections", "10",
                               "--depth", "100", "--prefix", "cold", "--first", "0"])
        return self.report_single_flight("SPOP (agent alone), 10 connections x 100", before,
                                         result["acks"])

    def single_flight_haproxy(self):
        """1,000 connections through HAProxy (fast path on), opened first, then one request on
        each sent as close together as possible."""
        before = self.check_counts()
        user = "cold1"
        payload = (f"GET / HTTP/1.1\r\nHost: bench\r\n{IDENTITY}: {user}\r\n"
                   "Connection: close\r\n\r\n").encode()

        async def burst():
            conns = [await asyncio.open_connection(*self.stack.http) for _ in range(1000)]
            for _, writer in conns:
                writer.write(payload)
            answers = await asyncio.gather(*(reader.read() for reader, _ in conns))
            for _, writer in conns:
                writer.close()
            return answers

        started = time.monotonic()
        answers = asyncio.run(burst())
        elapsed = time.monotonic() - started
        routed = sum(1 for a in answers if b"X-Served-By: origin" in a or b"x-served-by: origin" in a)
        # A burst longer than the agent's refresh_after (300 ms) also sees one background
        # re-check: single flight means one check at a time, not one check ever.
        return self.report_single_flight(
            f"HTTP through HAProxy, 1000 connections, {routed} routed, burst {elapsed:.2f} s",
            before, len(answers))

    def report_single_flight(self, how, before, requests):
        after = self.check_counts()
        delta = {k: after[k] - before[k] for k in after}
        delta.update(how=how, requests=requests)
        print(f"  cold user, {requests} concurrent requests via {how}: {delta['lookups']:.0f} DNS "
              f"lookup(s), {delta['probes']:.0f} probe(s), {delta['decisions']:.0f} decisions "
              f"({delta['waited']:.0f} waited on the check)", flush=True)
        return delta

    def convergence(self, ttl):
        """Seconds from a container being ready to the first request routed to it, and from its
        stop to the first request sent to the spawner; requests every 10 ms on new connections."""
        out = {"started": [], "stopped": [], "crashed": []}
        stack = self.stack
        for round_ in range(self.args.convergence_rounds):
            user = f"conv{ttl}x{round_}"
            host = stack.host_for(user)
            # started: the agent knows the user has no container (the spawner answers), then it
            # starts, and requests keep coming.
            deadline = time.monotonic() + 0.5
            while time.monotonic() < deadline:
                request(stack.http, user)
                time.sleep(0.01)
            stack.containers.start(host, user)
            while True:
                _, served = request(stack.http, user)
                if served and served.startswith("backend"):
                    routed_at = time.time()
                    break
                time.sleep(0.01)
            ready_at = stack.containers.wait_ready(host)
            out["started"].append(routed_at - ready_at)
            # stopped (docker rm: the name goes too) and crashed (the name stays, connections
            # are refused): seconds to the spawner.
            for kind, forget in (("stopped", True), ("crashed", False)):
                if kind == "crashed":
                    stack.add_container(user)
                    wait_for("routed", lambda: (request(stack.http, user)[1] or "").startswith("backend"), 5)
                for _ in range(20):  # steady traffic, so the fast path holds an answer
                    request(stack.http, user)
                    time.sleep(0.01)
                stopped_at = time.monotonic()
                stack.stop_container(user, signal.SIGKILL, forget=forget)
                while True:
                    _, served = request(stack.http, user)
                    if served == "spawner":
                        break
                    if time.monotonic() - stopped_at > 10:
                        raise RuntimeError(f"{user} not abandoned after 10 s (last: {served})")
                    time.sleep(0.01)
                out[kind].append(time.monotonic() - stopped_at)
                if not forget:
                    stack.containers.forget_dead(host)
        label = "off" if ttl == 0 else f"{ttl} ms"
        print(f"  convergence, fast path {label}: started -> routed max "
              f"{max(out['started']):.3f} s, stopped -> spawner max {max(out['stopped']):.3f} s, "
              f"crashed -> spawner max {max(out['crashed']):.3f} s "
              f"({self.args.convergence_rounds} rounds)", flush=True)
        return out

    # the table

    def table(self):
        static = next(r["rps"] for r in self.rows if r["scenario"].startswith("1."))
        static_p99 = next(r["p99_ms"] for r in self.rows if r["scenario"].startswith("1."))
        head = (f"{'scenario':<34} {'users':>6} {'req/s':>8} {'ratio':>6} {'p50 ms':>7} "
                f"{'p99 ms':>7} {'+p99':>6} {'HAProxy':>8} {'conn/':>6} {'agent':>7} {'agent':>9} {'agent':>8}")
        head2 = (f"{'':<34} {'':>6} {'':>8} {'':>6} {'':>7} {'':>7} {'ms':>6} {'us/req':>8} {'req':>6} "
                 f"{'dec/req':>7} {'us/dec':>9} {'RSS MiB':>8}")
        lines = [head, head2, "-" * len(head)]
        for r in self.rows:
            fmt = lambda key, spec: format(r[key], spec) if r.get(key) is not None else "-"  # noqa: E731
            lines.append(
                f"{r['scenario']:<34} {r['users']:>6} {r['rps']:>8.0f} {r['rps'] / static:>6.2f} "
                f"{r['p50_ms']:>7.3f} {r['p99_ms']:>7.3f} {r['p99_ms'] - static_p99:>6.3f} "
                f"{r['haproxy_us_per_req']:>8.1f} {r['backend_connects_per_req']:>6.3f} "
                f"{fmt('decisions_per_req', '>7.3f'):>7} "
                f"{fmt('agent_us_per_decision', '>9.1f'):>9} {fmt('agent_rss_mib', '>8.1f'):>8}")
        errors = [(r["scenario"], r["users"], r["errors"]) for r in self.rows
                  if any(r["errors"].values())]
        if errors:
            lines.append(f"wrk errors: {errors}")
        return "\n".join(lines)


def build(args):
    """Builds the agent, the load generator and the micro-benchmark (Release) unless given."""
    if args.agent_bin and args.loadgen and args.codec_bench:
        return
    build_dir = Path(args.build_dir)
    if not (build_dir / "build.ninja").exists():
        subprocess.run(["cmake", "-S", str(REPO), "-B", str(build_dir), "-G", "Ninja",
                        "-DCMAKE_BUILD_TYPE=Release"], check=True)
    subprocess.run(["cmake", "--build", str(build_dir), "-j", str(args.jobs), "--target",
                    "director-agent", "spop_loadgen", "codec_bench"], check=True)
    args.agent_bin = args.agent_bin or str(build_dir / "agent" / "director-agent")
    args.loadgen = args.loadgen or str(build_dir / "tests" / "bench" / "spop_loadgen")
    args.codec_bench = args.codec_bench or str(build_dir / "tests" / "bench" / "codec_bench")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true",
                        help="a few seconds with tiny sizes (the ctest smoke test)")
    parser.add_argument("--duration", type=float, default=10, help="seconds measured per row")
    parser.add_argument("--warmup", type=float, default=3, help="seconds of warm-up per row")
    parser.add_argument("--connections", type=int, default=50, help="wrk connections")
    parser.add_argument("--users-mid", type=int, default=100)
    parser.add_argument("--users-large", type=int, default=10_000)
    parser.add_argument("--scale-users", type=int, default=100_000,
                        help="cached users for the RSS check")
    parser.add_argument("--cold-users", type=int, default=2)
    parser.add_argument("--convergence-rounds", type=int, default=3)
    parser.add_argument("--fast-path-ttl", type=int, default=None,
                        help="the fast path TTL (ms) measured besides 'off' "
                             "(default: 500, the agent's DIRECTOR_FAST_PATH_HOLD, when "
                             "haproxy.cfg's DIRECTOR_FAST_PATH is on)")
    parser.add_argument("--compare-ttl", type=int, nargs="*", default=[],
                        help="more fast path TTLs (ms) to measure side by side")
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--skip-agent", action="store_true")
    parser.add_argument("--json", help="also write every figure to this file")
    parser.add_argument("--keep-logs", action="store_true",
                        help="keep the run directory and HAProxy's per-request logs")
    parser.add_argument("--build-dir", default=str(REPO / "build" / "bench"))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--agent-bin")
    parser.add_argument("--loadgen")
    parser.add_argument("--codec-bench")
    args = parser.parse_args()

    missing = [t for t in ("haproxy", "dnsmasq", "wrk")
               if not shutil.which(t) and not Path("/usr/sbin", t).exists()]
    if missing:
        print(f"skipped: {', '.join(missing)} not installed (tools/install-deps.sh)")
        return SKIP
    os.environ["PATH"] += os.pathsep + "/usr/sbin"
    if args.smoke:
        args.duration, args.warmup, args.users_mid = 1, 1, 10
        args.users_large, args.scale_users, args.convergence_rounds = 50, 500, 1
    if args.fast_path_ttl is None:
        cfg = (REPO / "haproxy" / "haproxy.cfg").read_text()
        found = re.search(r"presetenv\s+DIRECTOR_FAST_PATH\s+on\b", cfg)
        args.fast_path_ttl = 500 if found else 0  # the agent's default DIRECTOR_FAST_PATH_HOLD
    build(args)

    bench = Bench(args)
    machine, line = machine_facts()
    bench.results["machine"] = machine
    print(line, flush=True)
    ok = False
    try:
        bench.start()
        bench.side_by_side()
        if not args.skip_agent:
            bench.agent_alone()
        if not args.skip_scale:
            bench.scale()
        machine["load_after"] = os.getloadavg()
        print()
        print(bench.table())
        print(f"load average after: {' '.join(f'{x:.2f}' for x in machine['load_after'])}")
        expected = 3 + 3 * len(bench.fast_path_settings()) + 1 + len({0, args.fast_path_ttl})
        ok = len(bench.rows) == expected and all(r["rps"] > 0 for r in bench.rows)
    except BaseException:
        if getattr(bench, "stack", None) is not None:
            print(bench.stack.diagnostics(), file=sys.stderr)
        raise
    finally:
        bench.stop()
        if args.json:
            Path(args.json).write_text(json.dumps(bench.results, indent=2, default=str))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
