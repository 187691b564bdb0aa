#!/usr/bin/env python3
"""The whole director on loopback: dnsmasq, director-agent, HAProxy (with haproxy/haproxy.cfg)
and a spawner, plus user containers on 127.0.<n>.x. The spawner is either the demo spawner
(tools/demo_spawner.py, the default: no container runtime needed, its "containers" are
demo_backend.py processes) or director-spawner with a private Podman API service
(spawner="director", below).

Used by tools/run-stack (the quick start) and by every end-to-end test:

    with Stack() as stack:                  # ports of its own, a temporary run directory
        stack.add_container("alice")        # alice's container, resolvable as vscode-alice
        status, headers, body = stack.request("alice")
        stack.kill_agent(); stack.start_agent()
        stack.reload_haproxy()
        stack.stop_container("alice", signal.SIGKILL)

With director-spawner (tools/podman.py's service, its busybox image, network host):

    with Stack(spawner="director", users=["alice"]) as stack:
        stack.expect_user("bob")            # an address and a DNS name for bob's container
        stack.request("alice")              # the loading page; the spawner creates her container
        seconds, answer = stack.wait_routed("alice")   # (status, headers, body) of her container
        stack.spawner_metrics(); stack.spawner_status(); stack.podman_containers()

Each user's container is busybox on the host's network: its command picks the user's own
address from the environment (ADDRESSES="alice=127.0.<n>.101 bob=...", the stack hands them out
and publishes vscode-<label> in its dnsmasq) and runs `container_script` (default: busybox
httpd serving a page "container <label> <address>" on CONTAINER_PORT).

Each component runs in its own process group (stack.components[name].stop(sig) stops one),
dies with the process that started the stack, and logs to <run dir>/<component>.log; HAProxy
logs one line per request there, with the director's decision. Each stack claims a whole
127.0.<n>.0/24 for its containers, so stacks run side by side. The ports of its components on
127.0.0.1 stay reserved while the stack runs (loopback.reserve_port), and a component counts as
started once it says so itself, not when its port takes a connection (Component.wait_started,
tools/agent.py); containers, each on an address of the stack's own /24, share one free port
(loopback.free_port).
"""

import argparse
import atexit
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
REPO = TOOLS.parent
sys.path.insert(0, str(TOOLS))
from agent import DEFAULT_AGENT, AgentProcess, agent_binary, parse_address  # noqa: E402
from containers import Containers, claim_subnet  # noqa: E402
from loopback import free_port, http_get, parse_metrics, reserve_port  # noqa: E402
from podman import TEST_IMAGE, PodmanService  # noqa: E402
from podman import api as podman_api  # noqa: E402
from podman import available as podman_unavailable  # noqa: E402

DEFAULT_SPAWNER = REPO / "build" / "default" / "spawner" / "director-spawner"

# What each user's container runs (sh -c) once $ADDR (the user's own loopback address, from
# ADDRESSES) and $PORT (CONTAINER_PORT) are set: busybox httpd serving a page naming the user
# (container_page), and /cgi-bin/ws?<Sec-WebSocket-Key>, a WebSocket the container accepts and
# then holds open, silent, for 10 minutes: an open connection HAProxy counts in
# user_connections (busybox httpd passes a CGI's own status line through).
SERVE_SCRIPT = r"""mkdir -p /tmp/www/cgi-bin
echo "container {label} $ADDR" > /tmp/www/index.html
cat > /tmp/www/cgi-bin/ws <<'CGI'
#!/bin/sh
accept=$(printf '%s' "${QUERY_STRING}258EAFA5-E914-47DA-95CA-C5AB0DC85B11" | sha1sum | cut -c1-40 | xxd -r -p | base64)
printf 'HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n' "$accept"
exec sleep 600
CGI
chmod +x /tmp/www/cgi-bin/ws
echo "serving {label} on $ADDR:$PORT"
exec httpd -f -p "$ADDR:$PORT" -h /tmp/www"""

# The prelude of every container command: $ADDR from ADDRESSES (exits, saying so, without one).
ADDRESS_PRELUDE = r"""ADDR=
for entry in $ADDRESSES; do
  case "$entry" in "{label}="*) ADDR="${entry#*=}" ;; esac
done
PORT="$CONTAINER_PORT"
if [ -z "$ADDR" ]; then echo "no address for {label} in ADDRESSES" >&2; exit 64; fi
"""


def spawner_binary(binary=None):
    """`binary`, else $DIRECTOR_SPAWNER_BIN (ctest sets it), else the default build's."""
    return str(binary or os.environ.get("DIRECTOR_SPAWNER_BIN") or DEFAULT_SPAWNER)


def director_spawner_unavailable(binary=None):
    """Why the stack cannot run director-spawner here (a reason), or None when it can."""
    if not Path(spawner_binary(binary)).is_file():
        return f"{spawner_binary(binary)} is not built"
    return podman_unavailable()

IDENTITY = "X-Forwarded-Preferred-Username"
# haproxy.cfg's acl fast_path: HAProxy routes with a fast path entry whose expiry is
# 1..FAST_PATH_FRESH_MS ahead (the agent's decision::max_hold, 2 minutes).
FAST_PATH_FRESH_MS = 120000


def haproxy_binary():
    """The HAProxy the stack runs: DIRECTOR_HAPROXY_BIN (the e2e-haproxy3.2/ tests set it to
    HAProxy 3.2), else haproxy on PATH."""
    return os.environ.get("DIRECTOR_HAPROXY_BIN") or "haproxy"


def machine_facts():
    """What a benchmark ran on, for its printout and its JSON: cores, the load average before,
    the HAProxy version (haproxy_binary()) and the start time; and the line it prints."""
    machine = {"cores": os.cpu_count(), "load_before": os.getloadavg(),
               "haproxy": subprocess.run([haproxy_binary(), "-v"], capture_output=True,
                                         text=True).stdout.splitlines()[0],
               "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    line = (f"{machine['haproxy']}; {machine['cores']} cores; load average before: "
            f"{' '.join(f'{x:.2f}' for x in machine['load_before'])}")
    return machine, line


class ComponentExited(RuntimeError):
    """A process of the stack exited while the stack waited for it to start."""


class HAProxyExited(ComponentExited):
    """HAProxy's master exited while the stack waited for it."""


def wait_for(what, check, timeout=15.0, interval=0.05):
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if result:
                return result
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(interval)


def resolve(name, server):
    """The first A record of `name` from the DNS server (host, port), or None (NXDOMAIN)."""
    query_id = random.randrange(65536)
    question = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    query = struct.pack(">6H", query_id, 0x0100, 1, 0, 0, 0) + question + struct.pack(">2H", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(1)
        s.sendto(query, server)
        reply = s.recv(4096)
    answers = struct.unpack(">H", reply[6:8])[0]
    pos = 12 + len(question) + 4
    for _ in range(answers):
        pos += 2 if reply[pos] >= 0xC0 else reply.index(b"\0", pos) + 1 - pos
        rtype, _, _, length = struct.unpack(">HHIH", reply[pos:pos + 10])
        pos += 10
        if rtype == 1:
            return socket.inet_ntoa(reply[pos:pos + 4])
        pos += length
    return None


class Component:
    """One process (group) of the stack, logging to <run dir>/<name>.log."""

    def __init__(self, name, argv, env, run_dir):
        self.name, self.argv, self.env = name, [str(a) for a in argv], env
        self.log_path = Path(run_dir) / f"{name}.log"
        self.proc = None
        self.log_start = 0  # where this start's output begins in the log

    def start(self):
        with open(self.log_path, "ab") as log:
            log.write(f"--- {time.strftime('%H:%M:%S')} {' '.join(self.argv)}\n".encode())
            log.flush()
            self.log_start = log.tell()
            # --pdeathsig: nothing outlives a stack whose process was killed (e.g. by ctest).
            self.proc = subprocess.Popen(["setpriv", "--pdeathsig", "TERM", "--"] + self.argv,
                                         env=self.env, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig=signal.SIGTERM, timeout=5.0):
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout)
        except ProcessLookupError:
            self.proc.wait()
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def wait_started(self, banner, check=lambda: True, timeout=15.0):
        """Waits until this start's output contains `banner` (none: ""), which the program
        prints only once its listeners are bound, and check() holds; raises ComponentExited at once if the
        process exits instead. A connection that succeeds proves nothing alone: a port the
        stack reserved may still be bound by another program that sets SO_REUSEADDR (another
        stack's dnsmasq took a spawner's port this way, CI 2026-11-29; requests sent to the
        spawner then hung unanswered)."""
        def started():
            if not self.running():
                raise self.exited_error()
            with open(self.log_path, "rb") as log:
                log.seek(self.log_start)
                return banner.encode() in log.read() and check()
        wait_for(self.name, started, timeout)

    def exited_error(self, error=ComponentExited):
        """The error for this component having exited: its status and the end of its log.
        `error`: the ComponentExited subclass to raise."""
        return error(f"{self.name} exited (status {self.proc.returncode}):\n{self.log_tail(10)}")

    def log_tail(self, lines=30):
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


class Stack:
    def __init__(self, *, run_dir=None, agent_bin=None, fake_agent=None, fake_rules=None,
                 http="127.0.0.1:0", metrics="127.0.0.1:0", agent="127.0.0.1:0",
                 agent_http="127.0.0.1:0",
                 dns="127.0.0.1:0", spawner_listen="127.0.0.1:0", container_port=0,
                 host_prefix="vscode", domain="", agent_args=(), subnet_preference=None,
                 haproxy_cfg=REPO / "haproxy" / "haproxy.cfg", haproxy_extra_env=None,
                 spawner="demo", spawner_bin=None, spawner_settings=None, users=(),
                 container_script=SERVE_SCRIPT, spawner_http="127.0.0.1:0",
                 event_feeds=None, haproxy_sockets=None, agents=1, agent_env=None):
        """spawner: "demo" (tools/demo_spawner.py) or "director" (director-spawner with a
        Podman API service of its own; spawner_settings are extra SPAWNER_* variables, e.g.
        {"SPAWNER_IDLE_TIMEOUT": "3s"}; users: labels given an address up front, see
        expect_user; container_script: what each container runs, see SERVE_SCRIPT).

        Liveness from events (docs/architecture.md); the defaults keep the agent in TTL mode:
        event_feeds: the agent's DIRECTOR_EVENT_FEEDS: None (none), "spawner" (director-spawner's
        /events on its SPAWNER_HTTP_LISTEN; needs spawner="director") or a list of URLs (e.g.
        tools/feed_standin.py's FeedStandin.url). haproxy_sockets: True gives the agent
        DIRECTOR_HAPROXY_SOCKETS = this stack's HAProxy stats socket (its invalidation channel,
        and what its GET /connections reads for director-spawner's idle retirement); None (the
        default): True with spawner="director", else False.
        agents: how many agents run behind the one HAProxy, 1 to 4 (agent, agent2, ...: HAProxy
        gets them as DIRECTOR_AGENT, DIRECTOR_AGENT_2, ..., haproxy.cfg's agent slots).
        agent_env: extra environment for every agent, e.g. {"DIRECTOR_EVENT_BACKSTOP": "2m"}."""
        if fake_agent is None:
            fake_agent = os.environ.get("DIRECTOR_E2E_FAKE_AGENT") == "1"
        self.fake_agent, self.fake_rules = fake_agent, fake_rules
        self.agent_bin = agent_binary(agent_bin)
        self.temporary = run_dir is None
        self.run_dir = Path(run_dir or tempfile.mkdtemp(prefix="director-stack-"))
        # Every port the stack picks for a listener (HAProxy's, the spawner's, dnsmasq's, the
        # agents'): reserved for the stack's lifetime (loopback.reserve_port), so that no
        # one else is handed it before its listener binds it, nor while one restarts or a test
        # puts its own spawner there (RecordingSpawner): an agent binding port 0 once drew the
        # spawner's port in between, and another stack's dnsmasq, given a port picked and
        # released, bound it over the reservation.
        self._reservations = []
        self.http, self.metrics = self._reserve(http), self._reserve(metrics)
        # The agent's SPOP and HTTP (/metrics, /healthz, /status, /users) addresses: every
        # start (and restart) binds these.
        self.agent, self.agent_http = self._reserve(agent), self._reserve(agent_http)
        self.dns, self.spawner = self._reserve(dns), self._reserve(spawner_listen)
        self.container_port = container_port or free_port()
        self.host_prefix, self.domain = host_prefix, domain
        self.agent_args, self.haproxy_cfg = list(agent_args), Path(haproxy_cfg)
        # Extra environment for HAProxy only, e.g. {"DIRECTOR_TRUSTED_SOURCES": "127.0.0.1/32"}.
        self.haproxy_extra_env = dict(haproxy_extra_env or {})
        if subnet_preference is None:
            subnet_preference = random.randrange(2, 255)
        self.subnet, self._subnet_lock = claim_subnet(subnet_preference)
        self.components = {}
        self.containers = None
        if spawner not in ("demo", "director"):
            raise ValueError(f"spawner is demo or director, not {spawner!r}")
        self.spawner_kind, self.spawner_bin = spawner, spawner_binary(spawner_bin)
        self.spawner_settings = dict(spawner_settings or {})
        self.container_script = container_script
        self.spawner_http = self._reserve(spawner_http)  # director-spawner's /metrics, /status...
        self.podman = None
        self.user_addresses = {}  # label -> its container's address (director-spawner)
        if event_feeds == "spawner" and spawner != "director":
            raise ValueError('event_feeds="spawner" needs spawner="director"')
        if isinstance(event_feeds, str) and event_feeds != "spawner":
            raise ValueError(f'event_feeds is None, "spawner" or a list of URLs, not {event_feeds!r}')
        if agents < 1 or agents > 4 or (agents > 1 and fake_agent):
            raise ValueError(f"agents: 1, or up to 4 with the real agent (haproxy.cfg's slots), "
                             f"not {agents}")
        if haproxy_sockets is None:
            haproxy_sockets = spawner == "director"
        self.event_feeds, self.haproxy_sockets = event_feeds, haproxy_sockets
        self.agent_count, self.agent_env = agents, dict(agent_env or {})
        # The other agents' (SPOP, HTTP) addresses by component name (the first's are
        # self.agent and self.agent_http).
        self.agent_endpoints = {name: (self._reserve("127.0.0.1:0"), self._reserve("127.0.0.1:0"))
                                for name in self.agent_names()[1:]}
        for label in users:
            self.expect_user(label)

    # --- the whole stack -------------------------------------------------------------------

    def start(self):
        for stale in ("containers", "hosts.d"):
            shutil.rmtree(self.run_dir / stale, ignore_errors=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.containers = Containers(self.run_dir, self.subnet, self.container_port, os.getpid())
        atexit.register(self.stop)
        try:
            self.start_dns()
            for name in self.agent_names():
                self.start_agent(name)
            if self.spawner_kind == "director":
                self.start_podman()
            self.start_spawner()
            self.start_haproxy()
        except BaseException:
            print(self.diagnostics(), file=sys.stderr)
            self.stop()
            raise
        return self

    def stop(self):
        for name in ("haproxy", "spawner", *self.agent_names(), "dnsmasq"):
            if name in self.components:
                self.components[name].stop()
        self._release_reservations()
        if self.containers is not None:
            self.containers.stop_all()
        if self.podman is not None:
            if os.environ.get("DIRECTOR_KEEP_RUN_DIR") == "1":
                self.podman.stop()
            else:
                self.podman.remove()
            self.podman = None
        if self._subnet_lock is not None:
            self._subnet_lock.close()
            self._subnet_lock = None
        if self.temporary and os.environ.get("DIRECTOR_KEEP_RUN_DIR") != "1":
            shutil.rmtree(self.run_dir, ignore_errors=True)
        atexit.unregister(self.stop)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def diagnostics(self, lines=30):
        """The end of every log, for a failed test: HAProxy's first (a line per request, with
        how it ended), then the spawner's and the agents', dnsmasq's (a line per query) last,
        so that an excerpt of the output that keeps its head shows what tells most."""
        out = [f"run directory: {self.run_dir}"]
        ends = ("haproxy", "spawner", "dnsmasq")
        order = ["haproxy", "spawner", *(n for n in self.components if n not in ends), "dnsmasq"]
        for name in (n for n in order if n in self.components):
            out.append(f"--- {name}.log ---\n{self.components[name].log_tail(lines)}")
        if self.podman is not None:
            log = Path(self.podman.dir) / "service.log"
            tail = log.read_text(errors="replace").splitlines()[-lines:] if log.exists() else []
            out.append("--- podman service.log ---\n" + "\n".join(tail))
        return "\n".join(out)

    def _env(self, **extra):
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
               "CONTAINER_HOST_PREFIX": self.host_prefix,
               "CONTAINER_PORT": str(self.container_port)}
        if self.domain:
            env["CONTAINER_DOMAIN"] = self.domain
        env.update(extra)
        return env

    def _start(self, name, argv, env=None):
        component = Component(name, argv, env or self._env(), self.run_dir)
        self.components[name] = component
        component.start()
        return component

    # --- dnsmasq ---------------------------------------------------------------------------

    def start_dns(self):
        # dnsmasq changes credentials, which clears its parent-death signal: a shell keeps it.
        argv = ["sh", "-c", """trap 'kill $child' TERM; "$@" & child=$!; wait $child""", "dnsmasq",
                "dnsmasq", "--keep-in-foreground", "--log-facility=-", "--log-queries",
                "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--local=/#/",
                # Docker's embedded DNS answers with TTL 600: caches in front of it matter.
                "--local-ttl=600",
                f"--hostsdir={self.containers.hosts_dir}", "--bind-interfaces",
                f"--listen-address={self.dns[0]}", f"--port={self.dns[1]}",
                f"--pid-file={self.run_dir / 'dnsmasq.pid'}"]
        if os.getuid() == 0:
            argv.append("--user=root")  # not nobody, who could not read the run directory
        self._start("dnsmasq", argv).wait_started(
            "started, version", lambda: resolve("ready.invalid", self.dns) is None)

    def resolve(self, host):
        return resolve(host, self.dns)

    # --- the agent -------------------------------------------------------------------------

    def agent_names(self):
        """The agents' component names: "agent", then "agent2", ... (Stack(agents=N))."""
        return ["agent"] + [f"agent{n}" for n in range(2, self.agent_count + 1)]

    @staticmethod
    def agent_variable(name):
        """HAProxy's variable for the agent `name` (agent_names()), whose server in the agents
        backend has the same name: DIRECTOR_AGENT, DIRECTOR_AGENT_2 .. DIRECTOR_AGENT_4."""
        return "DIRECTOR_AGENT" if name == "agent" else f"DIRECTOR_AGENT_{name.removeprefix('agent')}"

    def agent_environment(self):
        """What every agent gets on top of _env(): the event feeds, HAProxy's runtime socket
        and agent_env."""
        env = {}
        if self.event_feeds == "spawner":
            env["DIRECTOR_EVENT_FEEDS"] = f"http://{self.spawner_http[0]}:{self.spawner_http[1]}/events"
        elif self.event_feeds:
            env["DIRECTOR_EVENT_FEEDS"] = " ".join(self.event_feeds)
        if self.haproxy_sockets:
            env["DIRECTOR_HAPROXY_SOCKETS"] = str(self.run_dir / "haproxy.sock")
        env.update(self.agent_env)
        return env

    def start_agent(self, name="agent"):
        """Starts the agent `name` (agent_names()) on its reserved ports."""
        if name != "agent":
            spop, http = self.agent_endpoints[name]
            agent = AgentProcess(["--dns-server", f"{self.dns[0]}:{self.dns[1]}"] + self.agent_args,
                                 binary=self.agent_bin, env=self._env(**self.agent_environment()),
                                 log_path=self.run_dir / f"{name}.log",
                                 listen=f"{spop[0]}:{spop[1]}", http_listen=f"{http[0]}:{http[1]}")
            self.components[name] = agent
            self.agent_endpoints[name] = (agent.spop, agent.http)
            return
        listen = f"{self.agent[0]}:{self.agent[1]}"
        if self.fake_agent:
            argv = [sys.executable, TOOLS / "fake_agent.py", "--listen", listen,
                    "--hosts-dir", self.containers.hosts_dir]
            if self.fake_rules:
                argv += ["--rules", self.fake_rules]
            if self.domain:
                argv += ["--domain", self.domain]
            self._start("agent", argv + self.agent_args).wait_started(
                "fake agent listening on", lambda: socket.create_connection(self.agent, 0.5).close() is None)
            return
        agent = AgentProcess(["--dns-server", f"{self.dns[0]}:{self.dns[1]}"] + self.agent_args,
                             binary=self.agent_bin, env=self._env(**self.agent_environment()),
                             log_path=self.run_dir / "agent.log", listen=listen,
                             http_listen=f"{self.agent_http[0]}:{self.agent_http[1]}")
        self.components["agent"] = agent
        self.agent, self.agent_http = agent.spop, agent.http

    def kill_agent(self, sig=signal.SIGKILL, name="agent"):
        self.components[name].stop(sig)

    def restart_agent(self, name="agent"):
        self.kill_agent(signal.SIGTERM, name)
        self.start_agent(name)

    def agent_http_address(self, name="agent"):
        return self.agent_http if name == "agent" else self.agent_endpoints[name][1]

    def agent_pid(self):
        """The agent's PID (the process group leader is the agent itself)."""
        return self.components["agent"].proc.pid

    def agent_fd_count(self):
        return len(os.listdir(f"/proc/{self.agent_pid()}/fd"))

    def agent_rss_kib(self):
        with open(f"/proc/{self.agent_pid()}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))

    def agent_metrics(self, name="agent"):
        """The agent's /metrics as {series (name with labels): value}."""
        return parse_metrics(http_get(self.agent_http_address(name), "/metrics")[1])

    def agent_status(self, name="agent", path="/status"):
        """The agent's GET /status (JSON); `path` may name a user's, e.g. "/status?user=alice"."""
        status, body = http_get(self.agent_http_address(name), path)
        if status != 200:
            raise RuntimeError(f"GET {path} of {name} answered {status}: {body}")
        return json.loads(body)

    def liveness(self, name="agent"):
        """The "liveness" section of the agent's /status: mode ("events" or "ttl"), its feeds,
        HAProxy sockets and covered users (docs/metrics.md)."""
        return self.agent_status(name)["liveness"]

    def wait_liveness_mode(self, mode, name="agent", timeout=15.0):
        """Waits until the agent's /status says liveness mode `mode`; returns the seconds waited."""
        started = time.monotonic()
        wait_for(f"{name}'s liveness mode {mode}", lambda: self.liveness(name)["mode"] == mode,
                 timeout, interval=0.02)
        return time.monotonic() - started

    # --- the spawner -----------------------------------------------------------------------

    def start_spawner(self):
        if self.spawner_kind == "director":
            self.start_director_spawner()
            return
        component = self._start("spawner", [
            sys.executable, TOOLS / "demo_spawner.py", "--listen",
            f"{self.spawner[0]}:{self.spawner[1]}", "--run-dir", self.run_dir,
            "--subnet", self.subnet, "--container-port", self.container_port,
            "--owner-pid", os.getpid()])
        component.wait_started("demo spawner listening on",
                               lambda: socket.create_connection(self.spawner, 0.5).close() is None)

    def spawner_requests(self):
        """What the spawner received, one dict per request (see demo_spawner.py)."""
        return _json_lines(self.run_dir / "spawner-requests.log")

    # --- director-spawner and its Podman API service ---------------------------------------

    def start_podman(self):
        """The Podman API service of this stack (tools/podman.py), with its busybox image."""
        self.podman = PodmanService(self.run_dir / "podman").start()

    def expect_user(self, label):
        """Gives `label`'s container its own address (127.0.<n>.101 up) and publishes
        <prefix>-<label> in the stack's DNS: the name resolves before the container listens,
        as with Docker's DNS once a container is created. Containers created later get the
        address (the spawner's SPAWNER_ENV); after start(), restarts director-spawner so that
        they do. Returns the address."""
        if label in self.user_addresses:
            return self.user_addresses[label]
        if len(self.user_addresses) >= 150:
            raise RuntimeError("at most 150 users per stack (127.0.<n>.101-250)")
        addr = f"{self.subnet}.{101 + len(self.user_addresses)}"
        self.user_addresses[label] = addr
        if self.containers is not None:
            self._publish_user(label)
            if "spawner" in self.components and self.spawner_kind == "director":
                self.components["spawner"].stop()
                self.start_director_spawner()
        return addr

    def _publish_user(self, label):
        self._publish_host(self.host_for(label), self.user_addresses[label])

    def _publish_host(self, host, addr):
        """Makes this stack's dnsmasq answer `host` with `addr` (a hosts file of its own,
        replaced whole) and waits until it does: dnsmasq reads the file a moment after it is
        written, and until then may still answer an earlier address."""
        tmp = self.containers.hosts_dir / f".{host}.tmp"  # dnsmasq skips dot files
        tmp.write_text(f"{addr} {host}\n")
        tmp.replace(self.containers.hosts_dir / host)
        self._wait_resolves(host, addr)

    def _wait_resolves(self, host, addr):
        wait_for(f"{host} to resolve to {addr}", lambda: self.resolve(host) == addr)

    def container_page(self, label):
        """The body SERVE_SCRIPT's container of `label` answers for /."""
        return f"container {label} {self.user_addresses[label]}\n".encode()

    def spawner_env(self):
        addresses = " ".join(f"{label}={addr}" for label, addr in self.user_addresses.items())
        env = self._env(
            SPAWNER_LISTEN=f"{self.spawner[0]}:{self.spawner[1]}",
            SPAWNER_HTTP_LISTEN=f"{self.spawner_http[0]}:{self.spawner_http[1]}",
            SPAWNER_THREADS="2",
            SPAWNER_DNS_SERVER=f"{self.dns[0]}:{self.dns[1]}",
            SPAWNER_RUNTIME=f"unix://{self.podman.socket}" if self.podman else "unix:///nonexistent",
            SPAWNER_IMAGE=TEST_IMAGE,
            SPAWNER_NETWORK="host",
            SPAWNER_COMMAND=json.dumps(["sh", "-c", ADDRESS_PRELUDE + self.container_script]),
            SPAWNER_ENV=f"ADDRESSES={addresses},CONTAINER_PORT={self.container_port}",
            SPAWNER_STOP_GRACE="1s",
            SPAWNER_AGENTS=f"http://{self.agent_http[0]}:{self.agent_http[1]}")
        env.update(self.spawner_settings)
        return env

    def start_director_spawner(self):
        for label in self.user_addresses:
            self._publish_user(label)
        env = self.spawner_env()
        component = self._start("spawner", [self.spawner_bin], env)
        # Its "started" line is at level info, which SPAWNER_LOG_LEVEL may hide (the bench's
        # warn). /healthz on its own HTTP port proves as much: director-spawner binds both of its
        # listeners before it serves either, and exits when one cannot bind.
        component.wait_started("", lambda: http_get(self.spawner_http, "/healthz")[0] == 200)
        if self.podman is not None and env["SPAWNER_RUNTIME"] == f"unix://{self.podman.socket}":
            # Its runtime answers and its event stream runs: it knows what exists.
            wait_for("director-spawner to be ready", lambda: component.running()
                     and http_get(self.spawner_http, "/readyz")[0] == 200)

    def spawner_metrics(self):
        """director-spawner's /metrics as {series (name with labels): value}."""
        return parse_metrics(http_get(self.spawner_http, "/metrics")[1])

    def spawner_status(self):
        """director-spawner's GET /status (JSON)."""
        status, body = http_get(self.spawner_http, "/status")
        if status != 200:
            raise RuntimeError(f"GET /status answered {status}: {body}")
        return json.loads(body)

    def spawner_users(self):
        """director-spawner's GET /users rows (label, phase, failure, container...)."""
        status, body = http_get(self.spawner_http, "/users?offset=0&limit=1000")
        if status != 200:
            raise RuntimeError(f"GET /users answered {status}: {body}")
        return json.loads(body)["users"]

    def podman_containers(self):
        """Every container of the stack's Podman service (GET /containers/json?all=true), as
        the Docker API lists them (Names, State, Labels, ...)."""
        status, _, body = podman_api(self.podman.socket, "GET", "/containers/json?all=true")
        if status != 200:
            raise RuntimeError(f"GET /containers/json answered {status}: {body[:200]!r}")
        return json.loads(body)

    def podman_stop(self, container_id, grace=1):
        """Stops a container through the API as an operator would; returns the HTTP status
        (204 stopped, 304 already stopped)."""
        return podman_api(self.podman.socket, "POST", f"/containers/{container_id}/stop?t={grace}",
                          timeout=grace + 30)[0]

    def podman_start(self, container_id):
        """Starts a container through the API as an operator would: 204 started, 304 running."""
        return podman_api(self.podman.socket, "POST", f"/containers/{container_id}/start",
                          timeout=30)[0]

    def podman_kill(self, container_id, sig="KILL"):
        """Sends the container a signal through the API (POST .../kill): 204 sent."""
        return podman_api(self.podman.socket, "POST", f"/containers/{container_id}/kill?signal={sig}",
                          timeout=30)[0]

    def podman_container(self, label):
        """The stack's container named <prefix>-<label> (the Docker API's list entry), or None."""
        name = "/" + self.host_for(label)
        return next((c for c in self.podman_containers()
                     if name in c.get("Names", []) or name[1:] in c.get("Names", [])), None)

    def wait_routed(self, user, label=None, timeout=30.0, interval=0.1, **kwargs):
        """Requests for `user` until HAProxy routes them into their container (its page, see
        container_page); returns (seconds waited, (status, headers, body) of that answer)."""
        expected = self.container_page(label or user)
        started = time.monotonic()
        last = None
        while time.monotonic() - started < timeout:
            last = self.request(user, **kwargs)
            if last[0] == 200 and last[2] == expected:
                return time.monotonic() - started, last
            time.sleep(interval)
        raise TimeoutError(f"{user} not routed to their container after {timeout} s; "
                           f"last answer: {last[0] if last else None} {last[2][:300] if last else ''}")

    # --- HAProxy ---------------------------------------------------------------------------

    def haproxy_env(self):
        return self._env(
            SPAWNER_HOST=self.spawner[0], SPAWNER_PORT=str(self.spawner[1]),
            DIRECTOR_AGENT=f"{self.agent[0]}:{self.agent[1]}",
            **{self.agent_variable(name): f"{spop[0]}:{spop[1]}"
               for name, (spop, _) in self.agent_endpoints.items()},
            DIRECTOR_HTTP_BIND=f"{self.http[0]}:{self.http[1]}",
            DIRECTOR_HAPROXY_METRICS_BIND=f"{self.metrics[0]}:{self.metrics[1]}",
            DIRECTOR_HAPROXY_STATS_SOCKET=str(self.run_dir / "haproxy.sock"),
            DIRECTOR_HAPROXY_DIR=str(self.haproxy_cfg.parent),
            DIRECTOR_DNS_SERVER=f"{self.dns[0]}:{self.dns[1]}", **self.haproxy_extra_env)

    def _reserve(self, value):
        """(host, port) of "host:port"; port 0 picks a free port that stays reserved until
        stop() (its listener must set SO_REUSEADDR: HAProxy, dnsmasq, Python's HTTP servers and
        the director's own do). The reservation is TCP only: dnsmasq's UDP socket on the same port
        may find it taken by a UDP bind to port 0 (dnsmasq then exits, and the stack says so)."""
        host, port = parse_address(value)
        if port:
            return host, port
        reservation = reserve_port(host)
        self._reservations.append(reservation)
        return reservation.getsockname()[:2]

    def _release_reservations(self):
        for reservation in self._reservations:
            reservation.close()
        self._reservations = []

    def start_haproxy(self):
        self._start("haproxy", [haproxy_binary(), "-W", "-S", self.run_dir / "master.sock",
                                "-f", self.haproxy_cfg], self.haproxy_env())
        self.wait_haproxy_started()

    def wait_haproxy_started(self):
        """Waits until the HAProxy just started serves (and its agent is checked, if it runs);
        raises HAProxyExited at once if it exits instead."""
        wait_for("HAProxy's worker", lambda: self._haproxy_alive() and self.haproxy_workers())
        # Listed is not started: 3.x lists a worker before it has bound anything, and one that
        # cannot bind exits. A worker that answers on its stats socket has bound every
        # listener, so the next check cannot be answered by someone else's listener.
        wait_for("HAProxy's worker to serve", lambda: self._haproxy_alive()
                 and "Name: HAProxy" in self.haproxy_cli("show info"))
        wait_for("HAProxy to listen", lambda: self._haproxy_alive()
                 and socket.create_connection(self.http, 0.5).close() is None)
        for name in self.agent_names():
            if self.components[name].running():
                self.wait_agent_checked(timeout=15.0, name=name)

    def _haproxy_alive(self):
        """True while HAProxy's master runs; raises at once, with HAProxy's reason, once it has
        exited (e.g. a port it cannot bind): nothing is left to wait for."""
        component = self.components["haproxy"]
        if component.running():
            return True
        raise component.exited_error(HAProxyExited)

    def haproxy_cli(self, command, master=False):
        """Runs a runtime API command on the worker's stats socket (or the master CLI)."""
        path = self.run_dir / ("master.sock" if master else "haproxy.sock")
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(5)
            s.connect(str(path))
            s.sendall(command.encode() + b"\n")
            s.shutdown(socket.SHUT_WR)  # the master CLI answers, then waits for this
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        return data.decode(errors="replace")

    def haproxy_workers(self):
        """PIDs of the current (not old) HAProxy workers, from the master CLI."""
        workers, section = [], None
        for line in self.haproxy_cli("show proc", master=True).splitlines():
            if line.startswith("#"):
                section = line
            elif section == "# workers" and line.split():
                workers.append(int(line.split()[0]))
        return workers

    def reload_haproxy(self, timeout=15.0):
        """Seamless reload: SIGUSR2 to the master, then waits for the new worker."""
        old = set(self.haproxy_workers())
        self.components["haproxy"].proc.send_signal(signal.SIGUSR2)
        wait_for("the reloaded worker", lambda: set(self.haproxy_workers()) - old, timeout)

    def agent_server_state(self, name="agent"):
        """(status, last check) of the agent server as HAProxy sees it, e.g. ("UP", "L7OK")."""
        for row in self.haproxy_cli("show stat").splitlines():
            fields = row.split(",")
            if fields[:2] == ["agents", name]:
                return fields[17], fields[36]
        return None

    def wait_agent_checked(self, timeout=15.0, name="agent"):
        wait_for(f"HAProxy's health check of {name}",
                 lambda: self.agent_server_state(name) == ("UP", "L7OK"), timeout)

    def wait_agent_down(self, timeout=15.0, name="agent"):
        """Waits until HAProxy marks the agent server `name` down (e.g. a slot nothing answers)."""
        wait_for(f"HAProxy to mark {name} down",
                 lambda: (self.agent_server_state(name) or ("",))[0] == "DOWN", timeout)

    def fast_path_entry(self, user):
        """`user`'s entry in HAProxy's fast_path table (show table fast_path key <user>), or
        None: {"addr": gpt0 as an IPv4 address, "expiry": gpt1 (HAProxy's ms clock mod 2^32),
        "port": gpt2, "hold_left": seconds until the expiry (negative: past; HAProxy's clock is
        the wall clock in ms), "exp": seconds until HAProxy drops the entry, "fresh": whether
        HAProxy would route with it now (an address, the expiry 1..FAST_PATH_FRESH_MS ahead),
        "raw": the fields}."""
        for line in self.haproxy_cli(f"show table fast_path key {user}").splitlines():
            if line.startswith("#") or " key=" not in line:
                continue
            raw = dict(item.split("=", 1) for item in line.split()[1:] if "=" in item)
            if raw.get("key") != user:
                continue
            gpt = [int(raw.get(f"gpt{n}", 0)) for n in range(3)]
            left = (gpt[1] - int(time.time() * 1000)) % 2**32
            left = left - 2**32 if left >= 2**31 else left
            return {"addr": socket.inet_ntoa(struct.pack(">I", gpt[0])), "expiry": gpt[1],
                    "port": gpt[2], "hold_left": left / 1000, "exp": int(raw.get("exp", 0)) / 1000,
                    "fresh": gpt[0] != 0 and 0 < left <= FAST_PATH_FRESH_MS, "raw": raw}
        return None

    def fast_path_used(self):
        """How many entries HAProxy's fast_path table holds (its "used:" count)."""
        header = self.haproxy_cli("show table fast_path").splitlines()[0]
        return int(re.search(r"used:(\d+)", header).group(1))

    # --- user containers -------------------------------------------------------------------

    def host_for(self, label):
        host = f"{self.host_prefix}-{label}"
        return f"{host}.{self.domain}" if self.domain else host

    def add_container(self, user, addr=None):
        """Starts `user`'s demo container (username == label) and waits until it resolves.
        `addr` claims a given free address (e.g. one another container just released)."""
        if addr is None:
            return self.add_containers([user])[0]
        host = self.host_for(user)
        self.containers.start(host, user, addr)
        return self._wait_container(host)

    def add_containers(self, users):
        hosts = [self.host_for(user) for user in users]
        for host, user in zip(hosts, users):
            self.containers.start(host, user)
        return [self._wait_container(host) for host in hosts]

    def _wait_container(self, host):
        """Waits until the container `host` listens and this stack's dnsmasq answers its name
        with its address (dnsmasq reads the hosts file a moment after it is written); returns
        its state."""
        self.containers.wait_ready(host)
        state = self.containers.get(host)
        self._wait_resolves(host, state["addr"])
        return state

    def stop_container(self, user, sig=signal.SIGTERM, forget=True):
        """Stops `user`'s container; forget=False keeps its DNS name (a crashed container)."""
        self.containers.stop(self.host_for(user), sig, forget)

    def container(self, user):
        return self.containers.get(self.host_for(user))

    def backend_requests(self, user):
        return _json_lines(self.containers.state_dir / f"{self.host_for(user)}.requests")

    def all_backend_requests(self):
        return [r for p in self.containers.state_dir.glob("*.requests") for r in _json_lines(p)]

    def add_unresponsive(self, users, addr=None, backlog_full=True):
        """Makes `users` resolve to one address where nothing ever accepts: a listener on
        CONTAINER_PORT that never calls accept(). With backlog_full (the default) its accept
        queue is filled first, so the kernel drops every further SYN and connecting hangs,
        as with a firewall dropping packets; otherwise the handshake completes and nothing
        is ever read or written. `addr` defaults to the subnet's .254 (containers get
        addresses from .1 up, in turn). Returns an object whose close() ends it."""
        addr = addr or f"{self.subnet}.254"
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((addr, self.container_port))
        listener.listen(0 if backlog_full else 4096)
        fillers = []
        if backlog_full:
            # Linux queues backlog + 1 connections; the next SYN is dropped and retried.
            for _ in range(4):
                filler = socket.socket()
                filler.setblocking(False)
                try:
                    filler.connect((addr, self.container_port))
                except BlockingIOError:
                    pass
                fillers.append(filler)
            time.sleep(0.2)
        listener = _Unresponsive(listener, fillers)
        for user in users:
            self._publish_host(self.host_for(user), addr)
        return listener

    def stop_dns(self, sig=signal.SIGTERM):
        """Stops dnsmasq (SIGSTOP instead leaves it bound but silent: queries time out)."""
        if sig == signal.SIGSTOP:
            os.killpg(self.components["dnsmasq"].proc.pid, signal.SIGSTOP)
        else:
            self.components["dnsmasq"].stop(sig)

    def resume_dns(self):
        """Undoes stop_dns: SIGCONT to a stopped dnsmasq, or a new one on the same port."""
        component = self.components["dnsmasq"]
        if component.running():
            os.killpg(component.proc.pid, signal.SIGCONT)
        else:
            self.start_dns()

    # --- clients ---------------------------------------------------------------------------

    @property
    def url(self):
        return f"http://{self.http[0]}:{self.http[1]}"

    def request(self, user=None, path="/", headers=(), method="GET", timeout=10, source=None,
                address=None):
        """One request on a new connection: (status, {lower-case header: value}, body).
        `user` is sent as the identity header; `headers` are extra (name, value) pairs,
        values may be bytes. `source` is the client's own address (e.g. "127.0.0.9").
        Without an Accept header in `headers`, it sends a browser's page load's,
        "Accept: text/html", so that the spawner backend's wake policy lets it through.
        `address`: another server than HAProxy (e.g. stack.spawner)."""
        conn = http.client.HTTPConnection(*(address or self.http), timeout=timeout,
                                          source_address=(source, 0) if source else None)
        try:
            conn.putrequest(method, path)
            if user is not None:
                conn.putheader(IDENTITY, user)
            if not any(name.lower() == "accept" for name, _ in headers):
                conn.putheader("Accept", "text/html")
            for name, value in headers:
                conn.putheader(name, value)
            conn.endheaders()
            response = conn.getresponse()
            body = response.read()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, body
        finally:
            conn.close()

    def served_by(self, user=None, **kwargs):
        """Who answered: "spawner", "backend <host> <addr>", or "haproxy <status>"."""
        status, headers, _ = self.request(user, **kwargs)
        return headers.get("x-served-by", f"haproxy {status}")


class _Unresponsive:
    """The sockets of Stack.add_unresponsive: the listener and the connections filling it."""

    def __init__(self, listener, fillers):
        self.listener, self.fillers = listener, fillers

    def close(self):
        for sock in self.fillers + [self.listener]:
            sock.close()


def _json_lines(path):
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def demo_text(stack):
    url, identity = stack.url, IDENTITY
    metrics = f"http://{stack.metrics[0]}:{stack.metrics[1]}"
    agent_http = f"http://{stack.agent_http[0]}:{stack.agent_http[1]}"
    director = stack.spawner_kind == "director"
    if director:
        spawner_http = f"http://{stack.spawner_http[0]}:{stack.spawner_http[1]}"
        users = ", ".join(stack.user_addresses)
        spawner = (f"director-spawner (pages {stack.spawner[0]}:{stack.spawner[1]}, "
                   f"{spawner_http}/metrics /status /users /events), Podman API "
                   f"{stack.podman.socket}")
        containers = (f"busybox httpd in a Podman container per user, on {stack.subnet}.x:"
                      f"{stack.container_port}; users with an address: {users}")
        new_user = f"""(b) bob has no container: director-spawner answers a loading page and creates his
    container through Podman's API; the refresh after it listens reaches it. Only a page
    load (here: Accept: text/html) wakes it; without it HAProxy answers 503 "not-a-navigation":
  curl -si -H '{identity}: bob' -H 'Accept: text/html' {url}/
  sleep 2; curl -si -H '{identity}: bob' {url}/
  curl -s {spawner_http}/users
  curl -s --unix-socket {stack.podman.socket} 'http://podman/containers/json?all=true'
    The agent follows director-spawner's events ("liveness" in its /status: mode "events"), and
    HAProxy holds its answers until an event takes them back:
  curl -s '{agent_http}/status?user=bob'"""
        more_metrics = (f"\n  curl -s {spawner_http}/metrics | grep -E '^director_spawner_spawns_total'"
                        f"\n  curl -s {agent_http}/metrics | grep -E '^director_liveness_mode'")
    else:
        spawner = f"the demo spawner {stack.spawner[0]}:{stack.spawner[1]}"
        containers = f"demo backends on {stack.subnet}.x:{stack.container_port}"
        new_user = f"""(b) bob has no container: the spawner answers a loading page and starts one; 2 s later
    bob reaches his own container. Only a page load (here: Accept: text/html) wakes it;
    without it HAProxy answers 503 "not-a-navigation":
  curl -si -H '{identity}: bob' -H 'Accept: text/html' {url}/
  sleep 2; curl -si -H '{identity}: bob' {url}/"""
        more_metrics = ""
    routed = ("alice's container runs: HAProxy routes her there (its page names her)" if director
              else "alice's container runs: HAProxy routes her there (see X-Served-By)")
    return f"""
container-director is running. Logs: {stack.run_dir}/*.log (HAProxy's has one line a request)
  HAProxy  {url}   metrics {metrics}/metrics   stats {metrics}/stats
  agent metrics {agent_http}/metrics   users {agent_http}/users   status {agent_http}/status
  agent {stack.agent[0]}:{stack.agent[1]}   DNS {stack.dns[0]}:{stack.dns[1]}
  spawner: {spawner}
  containers: {containers}

(a) {routed}:
  curl -si -H '{identity}: alice' {url}/

{new_user}

(c) metrics: HAProxy's exporter, then the agent's decisions and who was active:
  curl -s {metrics}/metrics | grep -E '^haproxy_backend_http_responses_total.*(container|spawner)'
  curl -s {agent_http}/metrics | grep -E '^director_decisions_total'
  curl -s {agent_http}/users{more_metrics}

Press Ctrl-C to stop.
"""


def choose_spawner(choice, spawner_bin=None):
    """("director" | "demo", why): `choice` auto picks director-spawner where it can run (root,
    podman and busybox-static installed, director-spawner built), else the demo spawner."""
    if choice != "auto":
        return choice, f"asked for the {choice} spawner"
    if os.getuid() != 0:
        return "demo", "not root: tools/podman.py's service runs as root here"
    reason = director_spawner_unavailable(spawner_bin)
    if reason:
        return "demo", reason
    return "director", "podman and director-spawner are available"


def main():
    parser = argparse.ArgumentParser(description="Run the director on loopback.")
    parser.add_argument("--run-dir", default=str(REPO / "run"))
    parser.add_argument("--agent-bin", help=f"director-agent (default {DEFAULT_AGENT})")
    parser.add_argument("--fake-agent", action="store_true", help="use tools/fake_agent.py")
    parser.add_argument("--http", default="127.0.0.1:8080", help="HAProxy's listener")
    parser.add_argument("--metrics", default="127.0.0.1:8405")
    parser.add_argument("--agent", default="127.0.0.1:12345")
    parser.add_argument("--agent-http", default="127.0.0.1:9102", help="the agent's HTTP listener")
    parser.add_argument("--dns", default="127.0.0.1:5353")
    parser.add_argument("--spawner", default="127.0.0.1:8081", help="the spawner's (pages) listener")
    parser.add_argument("--spawner-http", default="127.0.0.1:9181",
                        help="director-spawner's HTTP listener (/metrics, /status, /users, /events)")
    parser.add_argument("--spawner-kind", choices=["auto", "director", "demo"], default="auto",
                        help="director-spawner with a Podman API service of its own, or the demo "
                             "spawner; auto (the default): director-spawner where it can run")
    parser.add_argument("--spawner-bin", help=f"director-spawner (default {DEFAULT_SPAWNER})")
    parser.add_argument("--container-port", type=int, default=8080)
    parser.add_argument("--host-prefix", default="vscode")
    parser.add_argument("--domain", default="")
    parser.add_argument("--user", action="append", default=[],
                        help="start this user's container up front (repeatable)")
    parser.add_argument("--expect", default="alice,bob,carol,dave,erin",
                        help="with director-spawner: the users given an address (and so a "
                             "working container), comma-separated; --user adds to them")
    args = parser.parse_args()

    kind, why = choose_spawner(args.spawner_kind, args.spawner_bin)
    print(f"spawner: {'director-spawner with Podman' if kind == 'director' else 'the demo spawner'}"
          f" ({why})", file=sys.stderr, flush=True)
    users = []
    if kind == "director":
        users = [u for u in args.expect.split(",") if u] + [u for u in args.user if u not in args.expect]
        stale = Path(args.run_dir) / "podman"
        if stale.exists():  # what a previous run left (e.g. killed): containers and store
            PodmanService(stale).remove()
    stack = Stack(run_dir=args.run_dir, agent_bin=args.agent_bin, fake_agent=args.fake_agent,
                  http=args.http, metrics=args.metrics, agent=args.agent,
                  agent_http=args.agent_http, dns=args.dns,
                  spawner_listen=args.spawner, container_port=args.container_port,
                  host_prefix=args.host_prefix, domain=args.domain, subnet_preference=1,
                  spawner=kind, spawner_bin=args.spawner_bin, users=users,
                  spawner_http=args.spawner_http,
                  # With director-spawner, liveness from its events (docs/architecture.md).
                  event_feeds="spawner" if kind == "director" else None,
                  haproxy_sockets=kind == "director")
    stopping = []
    for sig in (signal.SIGINT, signal.SIGTERM):  # SIGINT may arrive ignored (background job)
        signal.signal(sig, lambda *_: stopping.append(1))
    try:
        stack.start()
        for user in args.user:
            if kind == "director":
                stack.request(user)  # a page load wakes it
                stack.wait_routed(user, timeout=60)
            else:
                stack.add_container(user)
        print(demo_text(stack), flush=True)
        while not stopping:
            time.sleep(0.2)
            for name, component in stack.components.items():
                if not component.running():
                    print(f"{name} exited:\n{component.log_tail()}", file=sys.stderr)
                    stopping.append(1)
    finally:
        print("stopping...", file=sys.stderr)
        stack.stop()


if __name__ == "__main__":
    main()
