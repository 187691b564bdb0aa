#!/usr/bin/env python3
"""The director's benchmark, side by side in one run (docs/performance.md), once per HAProxy
thread count (nbthread 1, then 2):

  1. HAProxy -> one static backend (the limit), measured first and again last: every other row
     is given with the mean of the two (ratio, p99 added), and their spread is reported;
  2. HAProxy do-resolve to the computed host (the do-it-yourself alternative, no liveness), and
     the floor of any per-user routing in HAProxy: haproxy.cfg's identity checks, then the
     user's address from a map (one lookup, no liveness, no agent) and set-dst, at 1 / 100 /
     10,000 users: how close to static a director in HAProxy's rules can get at all;
  3. HAProxy + director in TTL mode (no event feed), users alive and cached, 1 / 100 / 10,000
     users, fast path off and on;
  4. HAProxy + director, users not alive (the spawner path);
  5. as 3 at 10,000 users with re-checks so rare that every decision is a cache hit;
  6. HAProxy + director in events mode (the agent subscribed to tools/feed_standin.py, which
     lists every user as running, and clearing HAProxy's fast path through its runtime socket)
     at 1 / 100 / 10,000 / 100,000 users, with issue 11's targets (ratio to static >= 0.90,
     >= 0.80 at 100,000; p99 added <= 0.2 ms at 1 and 100 users, <= 0.5 ms at 10,000) printed
     PASS or MISS beside each figure, and the agent's and HAProxy's RSS at 100,000 users;

then the agent alone (tests/bench/spop_loadgen: NOTIFY->ACK per second on one agent thread), the
codec micro-benchmark (tests/bench/codec_bench), and the scale checks: agent RSS with 100,000
cached users, one lookup and one probe for 1,000 concurrent requests of one cold user, and the
convergence times, measured, in TTL mode and in events mode (container started, removed, killed
with SIGKILL: target <= 1 s with events), and in events mode a refused connection (the next
request goes to the spawner).

Everything runs on loopback with the real components: tools/stack.py starts dnsmasq, the agent
and HAProxy with haproxy/haproxy.cfg; the "containers" are one HAProxy answering a fixed
response on 254 addresses 127.0.<k>.1-254 (users are spread over them through DNS), so that the
backend is never the bottleneck. wrk runs one thread with 50 connections; before each row it
visits every user once (users.lua "once"), then warms up, then measures.

    python3 tests/bench/bench.py              # builds build/bench (Release) and runs everything
    python3 tests/bench/bench.py --smoke      # tiny sizes: the ctest smoke test
    python3 tests/bench/bench.py --events-only --compare-cfg B/haproxy.cfg C/haproxy.cfg
        # static, the floor and the events rows only, for haproxy.cfg, B and C in turn
    python3 tests/bench/bench.py --events-only --instructions --nbthread 1 --compare-cfg B/haproxy.cfg
        # the same under valgrind's callgrind: HAProxy's instructions per request, repeatable

An agent that does not enter events mode (no feed connected, HAProxy's runtime socket not
reached) gets its events rows reported as not measured, and why. Exit status: 0 when every row of the table was measured,
1 otherwise, 77 when a tool is missing (haproxy, dnsmasq, wrk).
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
from feed_standin import FeedStandin  # noqa: E402
from loopback import free_port, http_get, reserve_port  # noqa: E402
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


def metric_value(text, name):
    """The value of the unlabelled series `name`, or None when absent."""
    found = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(found.group(1)) if found else None


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
    nbthread {nbthread}
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

# The two per-user references' backends: the chosen address (txn.dst_addr) or the spawner.
REFERENCE_BACKENDS = """
backend container
    http-request set-dst var(txn.dst_addr)
    http-request set-dst-port int({container_port})
    # The director's tuning (haproxy.cfg): idle connections kept for many destinations.
    server container 0.0.0.0:0 pool-low-conn 1000
backend spawner
    server spawner 127.0.0.1:{spawner_port}
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
""" + REFERENCE_BACKENDS + """
resolvers dns
    nameserver dnsmasq {dns}
    resolve_retries 2
    timeout retry 250ms
    hold valid 1s
"""


# The floor: what every per-user router in HAProxy does at least on each request. The identity
# checks exactly as haproxy/haproxy.cfg's step 1, then one lookup of the user's address (a map
# file the bench writes: username -> address) and set-dst; no liveness, no agent, no fast path
# expiry, no guards, no log fields beyond the target.
FLOOR_CFG = REFERENCE_HEAD + """
frontend floor
    bind 127.0.0.1:{port}
    http-request del-header x-director- -m beg
    acl trusted_source src 127.0.0.0/8 ::1/128
    http-request return status 403 unless trusted_source
    acl one_identity   req.fhdr_cnt(x-forwarded-preferred-username) eq 1
    acl empty_identity req.fhdr(x-forwarded-preferred-username) -m len 0
    http-request return status 403 if !one_identity || empty_identity
    http-request set-var(txn.dst_addr) req.fhdr(x-forwarded-preferred-username),map({users_map}),ipmask(32)
    use_backend container if {{ var(txn.dst_addr) -m found }}
    default_backend spawner
""" + REFERENCE_BACKENDS


# haproxy.cfg before issue 11 sets the fast path's TTL in HAProxy (DIRECTOR_FAST_PATH_TTL_MS);
# after it, HAProxy only switches it on or off (DIRECTOR_FAST_PATH) and the agent says how long
# each answer may be held (DIRECTOR_FAST_PATH_HOLD). The bench drives whichever it finds.
def fast_path_ttl_in(haproxy_cfg):
    """The DIRECTOR_FAST_PATH_TTL_MS default of a haproxy.cfg from before issue 11, else None."""
    found = re.search(r"presetenv\s+DIRECTOR_FAST_PATH_TTL_MS\s+(\d+)", Path(haproxy_cfg).read_text())
    return int(found.group(1)) if found else None


class BenchStack(Stack):
    """tools/stack.py's stack with the bench's differences: the spawner is the origin's fixed
    answer, HAProxy runs `nbthread` threads (a global section of its own) with the fast path
    held for `fast_path` ms (0: off), the agent subscribes to `event_feeds` (Stack's option)
    or not, and HAProxy's per-request log goes to /dev/null unless asked for."""

    def __init__(self, *, spawner_port, fast_path, keep_haproxy_log, nbthread=1, haproxy_prefix=(),
                 **kwargs):
        super().__init__(spawner_listen=f"127.0.0.1:{spawner_port}", **kwargs)
        self.haproxy_prefix = list(haproxy_prefix)  # callgrind_argv() with --instructions
        self.fast_path = fast_path
        self.nbthread = nbthread
        self.keep_haproxy_log = keep_haproxy_log
        self.fast_path_in_haproxy = fast_path_ttl_in(self.haproxy_cfg) is not None

    def start_spawner(self):
        pass  # the origin HAProxy answers for the spawner

    def haproxy_env(self):
        env = super().haproxy_env()
        if self.fast_path_in_haproxy:
            env["DIRECTOR_FAST_PATH_TTL_MS"] = str(self.fast_path)
        else:
            env["DIRECTOR_FAST_PATH"] = "on" if self.fast_path else "off"
        return env

    @property
    def haproxy_socket(self):
        return self.run_dir / "haproxy.sock"

    def configure(self, *, fast_path, nbthread, event_feeds=None):
        """Restarts what a change needs: HAProxy for another fast path or thread count, the agent
        (its cache emptied) for other settings of its own. event_feeds: the feeds' URLs (events
        mode: the agent is also given HAProxy's runtime socket), or None (TTL mode)."""
        agent_env = {} if self.fast_path_in_haproxy else {"DIRECTOR_FAST_PATH_HOLD": f"{fast_path or 500}ms"}
        agent = (event_feeds, event_feeds is not None, agent_env)
        if agent != (self.event_feeds, self.haproxy_sockets, self.agent_env):
            self.event_feeds, self.haproxy_sockets, self.agent_env = agent
            self.restart_agent()
            # Answers the previous agent let HAProxy hold (up to the event backstop) go too.
            self.haproxy_cli("clear table fast_path")
        if (fast_path, nbthread) != (self.fast_path, self.nbthread):
            self.fast_path, self.nbthread = fast_path, nbthread
            self.restart_haproxy()
        self.wait_agent_checked()

    def start_haproxy(self):
        extra = self.run_dir / "bench-global.cfg"
        extra.write_text(f"global\n    nbthread {self.nbthread}\n")
        # The extra file first: 3.x takes nbthread only in the first global section.
        argv = [*self.haproxy_prefix, haproxy_binary(), "-W", "-S", self.run_dir / "master.sock",
                "-f", extra, "-f", self.haproxy_cfg]
        component = Component("haproxy", argv, self.haproxy_env(), self.run_dir)
        if not self.keep_haproxy_log:
            component.log_path = Path(os.devnull)
        self.components["haproxy"] = component
        component.start()
        self.wait_haproxy_started()

    def restart_haproxy(self):
        self.components["haproxy"].stop()
        self.start_haproxy()


# --- wrk ----------------------------------------------------------------------------------

def wrk_argv(url, users, prefix, seconds, connections, offset=0, once=False):
    return (["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "5s",
             "-s", str(HERE / "users.lua"), url, "--", str(users), prefix, str(offset)]
            + (["once"] if once else []))


def run_wrk(url, users, prefix, seconds, connections, offset=0):
    seconds = max(1, round(seconds))
    argv = wrk_argv(url, users, prefix, seconds, connections, offset)
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    for line in out.stdout.splitlines():
        if line.startswith("BENCH "):
            result = json.loads(line[6:])
            result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
            return result
    raise RuntimeError(f"wrk printed no result: {out.stdout}\n{out.stderr}")


# --- instructions (--instructions) ----------------------------------------------------------

def callgrind_argv(run_dir):
    """valgrind's callgrind in front of an HAProxy's command: it counts the instructions the
    process executes in user space, with counting off until a measured row turns it on.
    --trace-children=yes: `haproxy -W` re-executes its master on a reload; the worker, forked
    before any exec, is counted either way."""
    return ["valgrind", "--tool=callgrind", "--trace-children=yes", "--instr-atstart=no",
            f"--callgrind-out-file={run_dir}/callgrind.%p"]


def callgrind_command(pid, *command):
    """A callgrind monitor command ("instrumentation on", "zero", "dump") to process `pid`
    through vgdb (callgrind_control does not find a worker HAProxy forked under valgrind)."""
    done = subprocess.run(["vgdb", f"--pid={pid}", *command], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"vgdb --pid={pid} {' '.join(command)}: {done.stdout}{done.stderr}")


def instructions_counted(run_dir, pid):
    """Dumps what callgrind counted in `pid` since it was last zeroed, stops counting, and
    returns the count (the "totals:" line of the last dump, callgrind.<pid>.<n> with the highest n)."""
    callgrind_command(pid, "dump")
    callgrind_command(pid, "instrumentation", "off")
    dumps = sorted((f for f in Path(run_dir).glob(f"callgrind.{pid}.*") if f.suffix[1:].isdigit()),
                   key=lambda f: int(f.suffix[1:]))
    if not dumps:
        raise RuntimeError(f"callgrind wrote no dump for HAProxy {pid} in {run_dir}")
    found = re.search(r"^totals:\s+(\d+)", dumps[-1].read_text(errors="replace"), re.MULTILINE)
    if not found:
        raise RuntimeError(f"{dumps[-1]}: no totals line")
    return int(found.group(1))


def visit_every_user(url, users, prefix, connections, limit=300):
    """Sends one request per user (users.lua "once"), ending wrk when it says every user got
    its answer: the first visits, whatever their number. Seconds taken."""
    started = time.monotonic()
    with subprocess.Popen(wrk_argv(url, users, prefix, limit, connections, once=True),
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as wrk:
        try:
            for line in wrk.stdout:
                if line.strip() == "COVERED":
                    break
            else:
                raise RuntimeError(f"wrk did not visit {users} users in {limit} s")
        finally:
            wrk.terminate()
    return time.monotonic() - started


def request(endpoint, user, timeout=5, cookie=None):
    """One page load (Accept: text/html, which the spawner backend's wake policy lets through)
    on a new connection: (status, X-Served-By, {lowercase header: its first value}, [every
    Set-Cookie value])."""
    extra = f"Cookie: {cookie}\r\n" if cookie else ""
    with socket.create_connection(endpoint, timeout=timeout) as s:
        s.sendall(f"GET / HTTP/1.1\r\nHost: bench\r\n{IDENTITY}: {user}\r\n{extra}"
                  "Accept: text/html\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode(errors="replace").split("\r\n")
    headers, cookies = {}, []
    for h in head[1:]:
        name, _, value = h.partition(":")
        name, value = name.strip().lower(), value.strip()
        headers.setdefault(name, value)
        if name == "set-cookie":
            cookies.append(value)
    return int(head[0].split()[1]), headers.get("x-served-by"), headers, cookies


def served_by(endpoint, user):
    return request(endpoint, user)[1]


# --- the targets of issue 11 (events mode) -------------------------------------------------

# Per row size (1, 100, 10,000, 100,000 users by default; smaller with --smoke): the least
# ratio to static req/s, and the most p99 added over static (ms; None: no target).
EVENT_TARGETS = {"one": (0.90, 0.2), "mid": (0.90, 0.2), "large": (0.90, 0.5), "scale": (0.80, None)}

# What HAProxy's retry page sets (haproxy/pages/container-unavailable.http, plan.md).
RETRY_COOKIE = "container_director_retry"


def verdict(ok):
    return "PASS" if ok else "MISS"


# --- the bench ----------------------------------------------------------------------------

class Bench:
    def __init__(self, args):
        self.args = args
        self.rows = []
        self.groups = []  # per HAProxy thread count: its static rows before and after
        self.results = {"rows": self.rows, "groups": self.groups}
        self.procs = []
        self.references = {}
        self.feed = None
        self.events_unavailable = None  # why events mode was not measured
        self.reservations = []  # the ports of the bench's own HAProxies (reserve)
        self.agent_args = ["--threads", "1"]
        if args.event_backstop:
            self.agent_args += ["--event-backstop", args.event_backstop]

    # components

    def start(self):
        a = self.args
        self.origin_subnet, self._origin_lock = claim_subnet(200)
        self.container_port = free_port()  # bound on the origin's own /24 only
        self.spawner_port = self.reserve()
        self.run_dir = Path(tempfile.mkdtemp(prefix="director-bench-"))
        binds = ",".join(f"{self.origin_subnet}.{i}:{self.container_port}" for i in range(1, 255))
        self.start_process("origin", [haproxy_binary(), "-f", self.write_cfg("origin.cfg", ORIGIN_CFG.format(
            binds=binds, spawner_port=self.spawner_port))], port=("127.0.0.1", self.spawner_port))

        self.haproxy_prefix = callgrind_argv(self.run_dir) if a.instructions else []
        self.stack = BenchStack(spawner_port=self.spawner_port, fast_path=a.fast_path,
                                haproxy_prefix=self.haproxy_prefix,
                                keep_haproxy_log=a.keep_logs, agent_bin=a.agent_bin,
                                container_port=self.container_port,
                                agent_args=self.agent_args, haproxy_cfg=Path(a.haproxy_cfg),
                                run_dir=self.run_dir / "stack")
        self.stack.start()
        # Every bench user's name, spread over the origin's 254 addresses. dnsmasq reads the
        # hosts directory again when a file appears in it.
        hosts = self.stack.containers.hosts_dir / "bench-users"
        tmp = self.stack.containers.hosts_dir / ".bench-users.tmp"
        with open(tmp, "w") as f:
            for i in range(self.most_users):
                f.write(f"{self.origin_addr(i)} vscode-bench{i}\n")
            for i in range(a.cold_users):
                f.write(f"{self.origin_addr(i)} vscode-cold{i}\n")
        tmp.replace(hosts)
        # The same, as the floor reference's map (FLOOR_CFG): username -> address.
        self.users_map = self.run_dir / "users.map"
        self.users_map.write_text("".join(f"bench{i} {self.origin_addr(i)}\n" for i in range(self.most_users)))
        last = f"vscode-bench{self.most_users - 1}"
        wait_for("dnsmasq to read the bench users", lambda: self.stack.resolve(last), 30)
        self.static_port, self.resolve_port, self.floor_port = self.reserve(), self.reserve(), self.reserve()
        self.sockets = {name: self.run_dir / f"{name}.sock" for name in ("static", "resolve", "floor")}

    @property
    def most_users(self):
        return max(self.args.users_large, self.args.scale_users)

    def start_references(self, nbthread):
        """The static, do-resolve and floor HAProxies with `nbthread` threads (stopped first if running)."""
        for component in self.references.values():
            component.stop()
            self.procs.remove(component)
        self.references = {}
        common = dict(nbthread=nbthread, container_port=self.container_port)
        self.references["static"] = self.start_process(
            "static", [*self.haproxy_prefix, haproxy_binary(), "-f", self.write_cfg(f"static{nbthread}.cfg", STATIC_CFG.format(
                stats_socket=self.sockets["static"], port=self.static_port,
                origin_addr=self.origin_addr(0), **common))],
            port=("127.0.0.1", self.static_port), log=False)
        self.references["resolve"] = self.start_process(
            "resolve", [haproxy_binary(), "-f", self.write_cfg(f"resolve{nbthread}.cfg", RESOLVE_CFG.format(
                stats_socket=self.sockets["resolve"], port=self.resolve_port,
                spawner_port=self.spawner_port, dns=f"{self.stack.dns[0]}:{self.stack.dns[1]}",
                **common))],
            port=("127.0.0.1", self.resolve_port), log=False)
        self.references["floor"] = self.start_process(
            "floor", [*self.haproxy_prefix, haproxy_binary(), "-f", self.write_cfg(f"floor{nbthread}.cfg", FLOOR_CFG.format(
                stats_socket=self.sockets["floor"], port=self.floor_port, spawner_port=self.spawner_port,
                users_map=self.users_map, **common))],
            port=("127.0.0.1", self.floor_port), log=False)

    def reserve(self):
        """A port on 127.0.0.1 for one of the bench's HAProxies, reserved until stop()
        (loopback.reserve_port: HAProxy binds it with SO_REUSEADDR)."""
        reservation = reserve_port()
        self.reservations.append(reservation)
        return reservation.getsockname()[1]

    def stop(self):
        for proc in self.procs:
            proc.stop()
        for reservation in self.reservations:
            reservation.close()
        if self.feed is not None:
            self.feed.stop()
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
        return component

    @property
    def agent_pid(self):
        return self.stack.components["agent"].proc.pid

    def agent_metrics(self):
        return http_get(self.stack.agent_http, "/metrics", timeout=10)[1]

    # the side-by-side table

    def measure(self, name, endpoint, haproxy_pid, users, prefix, expect, *, director=True,
                fast_path=None, socket_path=None, mode=None):
        a = self.args
        url = f"http://{endpoint[0]}:{endpoint[1]}/"
        status, served, *_ = request(endpoint, f"{prefix}0")
        if not expect(status, served):
            raise RuntimeError(f"{name}: unexpected answer {status} {served}")
        covered_in = visit_every_user(url, users, prefix, a.connections)  # first visits
        if a.warmup > 0:
            run_wrk(url, users, prefix, a.warmup, a.connections)  # caches and connections settle
        before = self.sample(haproxy_pid, director, socket_path)
        if a.instructions:
            callgrind_command(haproxy_pid, "instrumentation", "on")
            callgrind_command(haproxy_pid, "zero")
        result = run_wrk(url, users, prefix, a.duration, a.connections)
        instructions = instructions_counted(self.run_dir, haproxy_pid) if a.instructions else None
        if instructions == 0:
            raise RuntimeError(f"{name}: callgrind counted no instruction in HAProxy {haproxy_pid}")
        after = self.sample(haproxy_pid, director, socket_path)
        requests = result["requests"]
        row = {"scenario": name, "users": users, "nbthread": self.nbthread, "mode": mode,
               "fast_path_ms": fast_path, "first_visits_s": covered_in,
               "rps": result["rps"], "p50_ms": result["p50_us"] / 1000,
               "p99_ms": result["p99_us"] / 1000, "errors": result["errors"],
               "haproxy_us_per_req": (after["haproxy_cpu"] - before["haproxy_cpu"]) / requests * 1e6,
               "backend_connects_per_req": (after["connects"] - before["connects"]) / requests,
               "haproxy_rss_mib": rss_mib(haproxy_pid),
               "haproxy_instructions_per_req": instructions / requests if instructions is not None else None}
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
        counted = (f", HAProxy {row['haproxy_instructions_per_req']:,.0f} instructions/request"
                   if a.instructions else "")
        print(f"  {name:<34} {users:>6} users  {row['rps']:>8.0f} req/s  p99 {row['p99_ms']:.3f} ms"
              f"  (first visits {covered_in:.1f} s{counted})", flush=True)
        return row

    def sample(self, haproxy_pid, director, socket_path):
        s = {"t": time.monotonic(), "haproxy_cpu": cpu_seconds(haproxy_pid),
             "connects": backend_connects(socket_path or self.stack.haproxy_socket)}
        if director:
            text = self.agent_metrics()
            s.update(agent_cpu=cpu_seconds(self.agent_pid),
                     decisions=metric_sum(text, "director_decisions_total"),
                     checks=metric_sum(text, "director_dns_lookups_total"))
        return s

    def measure_static(self, when):
        row = self.measure(f"1. static backend ({when})", ("127.0.0.1", self.static_port),
                           self.references["static"].proc.pid, 1, "bench", self.alive,
                           director=False, socket_path=self.sockets["static"])
        self.group[when] = row

    @staticmethod
    def alive(status, served):
        return status == 200 and (served or "").startswith("origin")

    def side_by_side(self):
        a = self.args
        print("side by side (wrk -t1 -c%d, %ss each after every user's first visit and %ss of "
              "warm-up; static measured before and after the other rows):" % (
                  a.connections, a.duration, a.warmup), flush=True)
        for nbthread in a.nbthread:
            print(f" HAProxy nbthread {nbthread}:", flush=True)
            self.nbthread = nbthread
            self.group = {"nbthread": nbthread}
            self.groups.append(self.group)
            self.start_references(nbthread)
            self.measure_static("before")
            self.director_rows(nbthread)
            self.measure_static("after")
            before, after = self.group["before"]["rps"], self.group["after"]["rps"]
            self.group["static_rps"] = (before + after) / 2
            self.group["static_p99_ms"] = (self.group["before"]["p99_ms"] + self.group["after"]["p99_ms"]) / 2
            self.group["spread"] = abs(after - before) / self.group["static_rps"]
            print(f"  static before {before:.0f}, after {after:.0f} req/s: spread "
                  f"{self.group['spread'] * 100:.1f} % of their mean", flush=True)

    def director_rows(self, nbthread):
        a = self.args
        if not a.events_only:
            for users in (1, a.users_mid):
                self.measure("2. HAProxy do-resolve", ("127.0.0.1", self.resolve_port),
                             self.references["resolve"].proc.pid, users, "bench", self.alive,
                             director=False, socket_path=self.sockets["resolve"])
        for users in (1, a.users_mid, a.users_large):
            self.measure("2. floor: identity + map", ("127.0.0.1", self.floor_port),
                         self.references["floor"].proc.pid, users, "bench", self.alive,
                         director=False, socket_path=self.sockets["floor"])
        if a.events_only:
            self.events_rows(nbthread)
            return
        for hold in self.fast_path_settings():
            self.stack.configure(fast_path=hold, nbthread=nbthread)
            for users in (1, a.users_mid, a.users_large):
                self.measure(f"3. director, {fast_path_label(hold)}", self.stack.http,
                             self.haproxy_worker(), users, "bench", self.alive,
                             fast_path=hold, mode="ttl")
        self.stack.configure(fast_path=a.fast_path, nbthread=nbthread)
        spawner = lambda status, served: status == 202 and served == "spawner"  # noqa: E731
        self.measure("4. director, not alive (spawner)", self.stack.http, self.haproxy_worker(),
                     a.users_mid, "ghost", spawner, fast_path=a.fast_path, mode="ttl")
        # The cost of deciding alone at many users: the agent started with checks so rare that
        # every decision is a cache hit (its defaults re-check each active user every 0.3-0.8 s,
        # thousands of DNS lookups and probes a second at 10,000 users).
        self.stack.agent_args = self.agent_args + ["--alive-ttl", "60s", "--refresh-after", "50s"]
        self.stack.restart_agent()
        for hold in sorted({0, a.fast_path}):
            self.stack.configure(fast_path=hold, nbthread=nbthread)
            self.measure(f"5. as 3 without re-checks, {fast_path_label(hold, short=True)}",
                         self.stack.http, self.haproxy_worker(), a.users_large, "bench",
                         self.alive, fast_path=hold, mode="ttl, no re-checks")
        self.stack.agent_args = list(self.agent_args)
        self.stack.restart_agent()
        self.events_rows(nbthread)
        self.stack.configure(fast_path=a.fast_path, nbthread=nbthread)

    def haproxy_worker(self):
        return self.stack.haproxy_workers()[0]

    # events mode (issue 11)

    def event_feeds(self):
        """The agent's DIRECTOR_EVENT_FEEDS in events mode (BenchStack.configure gives it
        HAProxy's runtime socket too, so that answers are held long and cleared on events), or
        None (and why, in events_unavailable) when events mode cannot run here."""
        if self.feed is None and self.events_unavailable is None:
            # A stand-in for director-spawner's feed: no runtime here runs 100,000 containers.
            self.feed = FeedStandin(running=[f"bench{i}" for i in range(self.most_users)]).start()
        return None if self.feed is None else [self.feed.url]

    def wait_events_mode(self):
        """True once the agent says events mode is in force (director_liveness_mode 1, or
        /status's "liveness" mode "events") and, when it reports it, that it reaches HAProxy's
        runtime socket (director_haproxy_runtime_reachable 1: answers are held long only then);
        False at once from an agent that knows neither. Sets events_unavailable when False."""
        deadline = time.monotonic() + (10 if self.args.smoke else 30)
        while time.monotonic() < deadline:
            text = self.agent_metrics()
            liveness = json.loads(http_get(self.stack.agent_http, "/status", timeout=10)[1]).get("liveness")
            if "director_liveness_mode" not in text and liveness is None:
                self.events_unavailable = "the agent has no events mode (no director_liveness_mode)"
                return False
            events = (metric_value(text, "director_liveness_mode") == 1
                      or (isinstance(liveness, dict) and liveness.get("mode") == "events"))
            reachable = metric_value(text, "director_haproxy_runtime_reachable") in (None, 1)
            if events and reachable:
                return True
            time.sleep(0.1)
        self.events_unavailable = (
            f"the agent did not enter events mode: director_liveness_mode "
            f"{metric_value(text, 'director_liveness_mode')}, event feeds connected "
            f"{metric_value(text, 'director_event_feeds_connected')} of "
            f"{metric_value(text, 'director_event_feeds_configured')}, HAProxy runtime reachable "
            f"{metric_value(text, 'director_haproxy_runtime_reachable')}")
        return False

    def events_rows(self, nbthread):
        a = self.args
        feeds = None if self.events_unavailable else self.event_feeds()
        if feeds is None:
            print(f"  6. director, events mode: not measured ({self.events_unavailable})", flush=True)
            return
        if a.compare_cfg and "--event-backstop" not in self.stack.agent_args:
            # Compared configurations follow each other at a size for minutes: with the default
            # backstop (1 min) the users' answers would reach it during the later ones, whose
            # rows would then pay everybody's re-check at once.
            self.stack.agent_args = self.stack.agent_args + ["--event-backstop", "60m"]
        self.stack.configure(fast_path=a.fast_path, nbthread=nbthread, event_feeds=feeds)
        if not self.wait_events_mode():
            print(f"  6. director, events mode: not measured ({self.events_unavailable})", flush=True)
            return
        configs = [Path(a.haproxy_cfg)] + [Path(c) for c in a.compare_cfg]
        sizes = (("one", 1), ("mid", a.users_mid), ("large", a.users_large), ("scale", a.scale_users))
        if a.instructions:
            # Under callgrind a user's first visit (a miss: the SPOE round trip) takes about 10 ms:
            # 10,000 users take 100 s per configuration, 100,000 would take 17 minutes.
            sizes = sizes[:3]
        for turn, (size, users) in enumerate(sizes):
            # Compared configurations take turns at each size, each starting a size in rotation
            # and each in a fresh HAProxy (the agent and its cache kept), so that neither the
            # machine's drift nor the order favours one of them.
            order = range(len(configs))
            if a.compare_cfg:
                order = [(turn + k) % len(configs) for k in range(len(configs))]
            for index in order:
                config = configs[index]
                name = "6. director, events"
                if a.compare_cfg:
                    name = f"6. events, {index}: {config.parent.name}"
                    self.stack.haproxy_cfg = config
                    self.stack.restart_haproxy()
                    # The agent checks its runtime socket after 2 s without a command
                    # (HaproxyInvalidatorSettings::check_interval): a check that found HAProxy
                    # down, the whole-table revoke when it is back and that revoke's repeat
                    # 1.5 s later (repeat_after) are over before the row starts.
                    time.sleep(4)
                    if not self.wait_events_mode():
                        raise RuntimeError(f"{name}: the agent left events mode after HAProxy's restart "
                                           f"({self.events_unavailable})")
                row = self.measure(name, self.stack.http, self.haproxy_worker(), users,
                                   "bench", self.alive, fast_path=a.fast_path, mode="events")
                row["size"] = size
                row["haproxy_cfg"] = str(config)
                row["covered_users"] = metric_sum(self.agent_metrics(), "director_covered_users")
                row["fast_path_table"] = self.fast_path_table()
                if index == 0:
                    scale_row = row  # the first configuration's, at the largest size in the end
        if self.stack.haproxy_cfg != configs[0]:
            self.stack.haproxy_cfg = configs[0]
            self.stack.restart_haproxy()
        if a.instructions:
            return  # HAProxy's memory under valgrind is valgrind's
        table = scale_row["fast_path_table"]
        print(f"  at {scale_row['users']} users (events mode): agent RSS {scale_row['agent_rss_mib']:.1f} MiB, "
              f"HAProxy RSS {scale_row['haproxy_rss_mib']:.1f} MiB, fast_path table "
              f"{table.get('used', '?')} used of {table.get('size', '?')}", flush=True)
        self.group["events_rss"] = {"users": scale_row["users"], "agent_rss_mib": scale_row["agent_rss_mib"],
                                    "haproxy_rss_mib": scale_row["haproxy_rss_mib"], "fast_path_table": table}

    def instructions_columns(self, row):
        """A row's HAProxy instructions per request, and their ratio to the mean of its block's
        static rows and to the floor row of the same size (same thread count)."""
        def per_req(rows):
            counts = [r["haproxy_instructions_per_req"] for r in rows if r["nbthread"] == row["nbthread"]]
            return sum(counts) / len(counts) if counts else None
        mine = row["haproxy_instructions_per_req"]
        static = per_req(r for r in self.rows if r["scenario"].startswith("1. static"))
        floor = per_req(r for r in self.rows if r["scenario"].startswith("2. floor")
                        and r["users"] == row["users"])
        row["instructions_to_static"] = mine / static if static else None
        row["instructions_to_floor"] = mine / floor if floor else None
        ratio = lambda value: f"{value:>7.2f}" if value else f"{'-':>7}"  # noqa: E731
        return f"{mine:>12,.0f} {ratio(row['instructions_to_static'])} {ratio(row['instructions_to_floor'])}"

    def fast_path_table(self):
        """HAProxy's fast_path stick table: {"size": entries it can hold, "used": held now}
        ("show table" without a name lists one header line per table, not the entries:
        "# table: fast_path, type: string, size:204800, used:100000")."""
        head = next((line for line in self.stack.haproxy_cli("show table").splitlines()
                     if "table: fast_path," in line), "")
        return {k: int(v) for k, v in re.findall(r"(size|used):(\d+)", head)}

    def fast_path_settings(self):
        settings = [0] + [t for t in self.args.compare_ttl if t != 0]
        if self.args.fast_path not in settings:
            settings.append(self.args.fast_path)
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
        print(f"scale checks (HAProxy nbthread {a.nbthread[0]}):", flush=True)
        scale = self.results.setdefault("scale", {})
        self.nbthread = a.nbthread[0]
        self.stack.configure(fast_path=a.fast_path, nbthread=self.nbthread)

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

        # Convergence, TTL mode (fast path off and on), then events mode.
        scale["convergence"] = {}
        nbthread = a.nbthread[0]
        for hold in sorted({0, a.fast_path}):
            self.stack.configure(fast_path=hold, nbthread=nbthread)
            scale["convergence"][f"ttl, {fast_path_label(hold)}"] = self.convergence(
                f"TTL mode, {fast_path_label(hold)}", f"t{hold}")
        feeds = None if self.events_unavailable else self.event_feeds()
        if feeds is not None:
            self.stack.configure(fast_path=a.fast_path, nbthread=nbthread, event_feeds=feeds)
            if self.wait_events_mode():
                scale["convergence"]["events"] = self.convergence(
                    f"events mode, {fast_path_label(a.fast_path)}", "ev", events=True)
                scale["refused"] = self.refused_connection()
        if "events" not in scale["convergence"]:
            print(f"  convergence, events mode: not measured ({self.events_unavailable})", flush=True)
        self.stack.configure(fast_path=a.fast_path, nbthread=nbthread)

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

    def wait_served(self, user, want, started, limit=10):
        """Requests every 10 ms on new connections until one is served by `want` (a prefix of
        X-Served-By); seconds since `started` (time.monotonic())."""
        while True:
            served = served_by(self.stack.http, user) or ""
            if served.startswith(want):
                return time.monotonic() - started
            if time.monotonic() - started > limit:
                raise RuntimeError(f"{user} not served by {want} after {limit} s (last: {served})")
            time.sleep(0.01)

    def convergence(self, label, tag, events=False):
        """Seconds from a container being ready to the first request routed to it, and from its
        stop (removed, or killed with SIGKILL and its name kept) to the first request sent to the
        spawner; requests every 10 ms on new connections. events: the feed says so too, as
        director-spawner would (started when the container starts, stopped or died when it
        ends)."""
        out = {"started": [], "stopped": [], "killed": []}
        stack = self.stack
        for round_ in range(self.args.convergence_rounds):
            user = f"conv{tag}x{round_}"
            host = stack.host_for(user)
            # started: the agent knows the user has no container (the spawner answers), then it
            # starts, and requests keep coming.
            deadline = time.monotonic() + 0.5
            while time.monotonic() < deadline:
                request(stack.http, user)
                time.sleep(0.01)
            stack.containers.start(host, user)
            if events:
                self.feed.start_container(user)
            self.wait_served(user, "backend", time.monotonic())
            routed_at = time.time()
            ready_at = stack.containers.wait_ready(host)
            out["started"].append(routed_at - ready_at)
            # stopped (docker rm: the name goes too) and killed (SIGKILL, the name stays,
            # connections are refused): seconds to the spawner.
            for kind, forget in (("stopped", True), ("killed", False)):
                if kind == "killed":
                    stack.add_container(user)
                    if events:
                        self.feed.start_container(user)
                    self.wait_served(user, "backend", time.monotonic(), 5)
                for _ in range(20):  # steady traffic, so the fast path holds an answer
                    request(stack.http, user)
                    time.sleep(0.01)
                stopped_at = time.monotonic()
                stack.stop_container(user, signal.SIGTERM if forget else signal.SIGKILL, forget=forget)
                if events:
                    self.container_ended(user, removed=forget)
                out[kind].append(self.wait_served(user, "spawner", stopped_at))
                if not forget:
                    stack.containers.forget_dead(host)
        target = "" if not events else "  target <= 1 s: " + verdict(
            max(max(v) for v in out.values()) <= 1.0)
        print(f"  convergence, {label}: started -> routed max {max(out['started']):.3f} s, "
              f"stopped -> spawner max {max(out['stopped']):.3f} s, SIGKILL -> spawner max "
              f"{max(out['killed']):.3f} s ({self.args.convergence_rounds} rounds){target}",
              flush=True)
        return out

    def container_ended(self, user, removed):
        """What director-spawner's feed says when a container ends: stopped then destroyed
        (removed), or died (killed, exit code 137)."""
        if removed:
            self.feed.stop_container(user)
            self.feed.destroy(user)
        else:
            self.feed.stop_container(user, died=True)

    def refused_connection(self):
        """Events mode: a container whose process dies without the feed saying so (the
        container runs on, connections are refused). The first request may still be routed
        there (HAProxy holds the answer) and gets the retry page; the next one, carrying the
        retry cookie that page sets, must reach the spawner."""
        stack, user = self.stack, "refused0"
        stack.add_container(user)
        self.feed.start_container(user)
        self.wait_served(user, "backend", time.monotonic(), 5)
        for _ in range(20):
            request(stack.http, user)
            time.sleep(0.01)
        stack.stop_container(user, signal.SIGKILL, forget=False)
        killed_at = time.monotonic()
        first_status, first_served, _, cookies = request(stack.http, user)
        cookie = next((c.split(";", 1)[0] for c in cookies if c.startswith(RETRY_COOKIE + "=")), None)
        # The retry page reloads itself after 2 s (Refresh: 2), and so does the browser. (The agent
        # honours a retry only when its last check is over 250 ms old: retry_interval.)
        time.sleep(2.0)
        second_status, second_served, *_ = request(stack.http, user, cookie=cookie)
        seconds = time.monotonic() - killed_at
        stack.containers.forget_dead(stack.host_for(user))
        self.container_ended(user, removed=True)
        ok = first_served == "spawner" or second_served == "spawner"
        out = {"first": [first_status, first_served, cookie], "second": [second_status, second_served],
               "seconds": seconds, "ok": ok}
        first_page = first_served or ("the retry page" if cookie else "no X-Served-By")
        print(f"  refused connection (events mode): first request {first_status} {first_page}, "
              f"next (cookie {cookie}) {second_status} {second_served}: {verdict(ok)} (the next "
              f"request goes to the spawner), {seconds:.3f} s", flush=True)
        return out

    # the table

    def table(self):
        """One block per HAProxy thread count: every row with its run's static figure (the mean
        of the static rows before and after), the ratio and the p99 added over it, and for the
        events rows the targets of issue 11."""
        # Under callgrind (--instructions) req/s, latency and CPU time are valgrind's, not
        # HAProxy's: the instructions per request replace the targets.
        counted = self.args.instructions
        head = (f"{'scenario':<34} {'users':>6} {'req/s':>8} {'static':>7} {'ratio':>6} {'p50 ms':>7} "
                f"{'p99 ms':>7} {'+p99':>6} {'HAProxy':>8} {'conn/':>6} {'agent':>7} {'agent':>9} "
                f"{'agent':>8} {'HAProxy':>8}  "
                + (f"{'HAProxy':>12} {'/static':>7} {'/floor':>7}" if counted else "targets (events rows)"))
        head2 = (f"{'':<34} {'':>6} {'':>8} {'req/s':>7} {'':>6} {'':>7} {'':>7} {'ms':>6} {'us/req':>8} "
                 f"{'req':>6} {'dec/req':>7} {'us/dec':>9} {'RSS MiB':>8} {'RSS MiB':>8}  "
                 + (f"{'instr/req':>12}" if counted else ""))
        lines = []
        for group in self.groups:
            if "static_rps" not in group:
                continue
            static, static_p99 = group["static_rps"], group["static_p99_ms"]
            lines += [f"HAProxy nbthread {group['nbthread']}: static {group['before']['rps']:.0f} req/s "
                      f"before, {group['after']['rps']:.0f} after (spread {group['spread'] * 100:.1f} %; "
                      f"ratios and +p99 against their mean {static:.0f} req/s, p99 {static_p99:.3f} ms)",
                      head, head2, "-" * len(head)]
            for r in self.rows:
                if r["nbthread"] != group["nbthread"]:
                    continue
                fmt = lambda key, spec: format(r[key], spec) if r.get(key) is not None else "-"  # noqa: E731
                ratio, added = r["rps"] / static, r["p99_ms"] - static_p99
                r.update(static_rps=static, ratio=ratio, p99_added_ms=added)
                targets = ""
                if counted:
                    targets = self.instructions_columns(r)
                elif r["mode"] == "events":
                    ratio_target, p99_target = EVENT_TARGETS[r["size"]]
                    r["targets"] = {"ratio": [ratio_target, ratio >= ratio_target]}
                    targets = f"ratio >= {ratio_target:.2f} {verdict(ratio >= ratio_target)}"
                    if p99_target is not None:
                        r["targets"]["p99_added_ms"] = [p99_target, added <= p99_target]
                        targets += f", +p99 <= {p99_target} ms {verdict(added <= p99_target)}"
                lines.append(
                    f"{r['scenario']:<34} {r['users']:>6} {r['rps']:>8.0f} {static:>7.0f} {ratio:>6.2f} "
                    f"{r['p50_ms']:>7.3f} {r['p99_ms']:>7.3f} {added:>6.3f} "
                    f"{r['haproxy_us_per_req']:>8.1f} {r['backend_connects_per_req']:>6.3f} "
                    f"{fmt('decisions_per_req', '>7.3f'):>7} "
                    f"{fmt('agent_us_per_decision', '>9.1f'):>9} {fmt('agent_rss_mib', '>8.1f'):>8} "
                    f"{r['haproxy_rss_mib']:>8.1f}  {targets}")
            if "events_rss" in group:
                rss = group["events_rss"]
                lines.append(f"memory at {rss['users']} users, events mode: agent RSS "
                             f"{rss['agent_rss_mib']:.1f} MiB, HAProxy RSS {rss['haproxy_rss_mib']:.1f} MiB")
            lines.append("")
        if self.events_unavailable:
            lines.append(f"events mode not measured: {self.events_unavailable}")
        errors = [(r["scenario"], r["users"], r["nbthread"], r["errors"]) for r in self.rows
                  if any(r["errors"].values())]
        if errors:
            lines.append(f"wrk errors: {errors}")
        return "\n".join(lines)


def fast_path_label(hold, short=False):
    if hold == 0:
        return "off" if short else "fast path off"
    return f"{hold} ms" if short else f"fast path {hold} ms"


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
    parser.add_argument("--nbthread", type=int, nargs="+", default=[1, 2],
                        help="HAProxy thread counts, one block of rows each (default: 1 2)")
    parser.add_argument("--fast-path", "--fast-path-ttl", dest="fast_path", type=int, default=None,
                        help="how long (ms) HAProxy may hold an answer in TTL mode, measured "
                             "besides 'off' (default: haproxy.cfg's DIRECTOR_FAST_PATH_TTL_MS, "
                             "or the agent's DIRECTOR_FAST_PATH_HOLD default, 500)")
    parser.add_argument("--compare-ttl", type=int, nargs="*", default=[],
                        help="more fast path holds (ms) to measure side by side")
    parser.add_argument("--events-only", action="store_true",
                        help="only static, the floor and the events rows (1 to 100,000 users), "
                             "to compare configurations quickly; implies --skip-agent "
                             "--skip-scale (exit status 1 when events mode cannot run)")
    parser.add_argument("--compare-cfg", nargs="+", default=[], metavar="HAPROXY_CFG",
                        help="with --events-only: more director configurations (each in a folder "
                             "of its own, with pages/ and spoe.conf), measured in turn with "
                             "--haproxy-cfg at each user count, rows named by their position "
                             "and folder (0: --haproxy-cfg's)")
    parser.add_argument("--instructions", action="store_true",
                        help="with --events-only: run the measured HAProxies under valgrind's callgrind and report the "
                             "instructions each request costs HAProxy in user space, with their "
                             "ratio to static and to the floor: the same configuration repeats "
                             "within 1 to 3 %% where req/s here varies by 10 %% or more (req/s, "
                             "latency, CPU time and memory are then valgrind's; no targets; sizes "
                             "up to --users-large)")
    parser.add_argument("--event-backstop",
                        help="the agent's DIRECTOR_EVENT_BACKSTOP (e.g. 20s: its re-check cycle, from 5/8 to "
                             "3/4 of it after a row's first visits, then falls inside a row of "
                             "--duration 20; default: the agent's, 1m, or 60m with --compare-cfg)")
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--skip-agent", action="store_true")
    parser.add_argument("--json", help="also write every figure to this file")
    parser.add_argument("--keep-logs", action="store_true",
                        help="keep the run directory and HAProxy's per-request logs")
    parser.add_argument("--haproxy-cfg", default=str(REPO / "haproxy" / "haproxy.cfg"),
                        help="the director's HAProxy configuration (its folder's pages and "
                             "spoe.conf with it)")
    parser.add_argument("--build-dir", default=str(REPO / "build" / "bench"))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--agent-bin")
    parser.add_argument("--loadgen")
    parser.add_argument("--codec-bench")
    args = parser.parse_args()

    missing = [t for t in ("haproxy", "dnsmasq", "wrk") + (("valgrind",) if args.instructions else ())
               if not shutil.which(t) and not Path("/usr/sbin", t).exists()]
    if missing:
        print(f"skipped: {', '.join(missing)} not installed (tools/install-deps.sh)")
        return SKIP
    os.environ["PATH"] += os.pathsep + "/usr/sbin"
    if args.smoke:
        args.duration, args.warmup, args.users_mid = 1, 0, 10
        args.users_large, args.scale_users, args.convergence_rounds = 50, 500, 1
    if args.compare_cfg and not args.events_only:
        parser.error("--compare-cfg needs --events-only")
    if args.instructions and not args.events_only:
        parser.error("--instructions needs --events-only (the other rows' targets are timings)")
    for config in args.compare_cfg:
        if not Path(config).is_file():
            parser.error(f"--compare-cfg {config}: no such file")
        if (fast_path_ttl_in(config) is None) != (fast_path_ttl_in(args.haproxy_cfg) is None):
            parser.error(f"--compare-cfg {config}: sets the fast path otherwise than {args.haproxy_cfg} "
                         "(DIRECTOR_FAST_PATH_TTL_MS in one only); compare configurations of one kind")
    if args.events_only:
        args.skip_agent = args.skip_scale = True
    if args.fast_path is None:
        ttl = fast_path_ttl_in(args.haproxy_cfg)
        args.fast_path = 500 if ttl is None else ttl
    build(args)

    bench = Bench(args)
    machine, line = machine_facts()
    bench.results["machine"] = machine
    bench.results["agent"] = {"bin": args.agent_bin, "args": bench.agent_args}
    print(line, flush=True)
    print(f"agent: {args.agent_bin} {' '.join(bench.agent_args)}", flush=True)
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
        # static before and after, floor, events (per configuration), and unless --events-only:
        # do-resolve, director TTL mode, spawner, no re-checks
        event_sizes = 3 if args.instructions else 4  # Bench.events_rows
        per_group = (2 + 3 + (0 if bench.events_unavailable else event_sizes * (1 + len(args.compare_cfg)))
                     + (0 if args.events_only else
                        2 + 3 * len(bench.fast_path_settings()) + 1 + len({0, args.fast_path})))
        ok = (len(bench.rows) == per_group * len(args.nbthread)
              and all(r["rps"] > 0 for r in bench.rows)
              and not (args.events_only and bench.events_unavailable))
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
