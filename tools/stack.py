#!/usr/bin/env python3
"""The whole director on loopback, without Docker: dnsmasq, director-agent, HAProxy (with
haproxy/haproxy.cfg) and the demo spawner, plus demo user containers on 127.0.<n>.x.

Used by tools/run-stack (the quick start) and by every end-to-end test:

    with Stack() as stack:                  # ports of its own, a temporary run directory
        stack.add_container("alice")        # alice's container, resolvable as vscode-alice
        status, headers, body = stack.request("alice")
        stack.kill_agent(); stack.start_agent()
        stack.reload_haproxy()
        stack.stop_container("alice", signal.SIGKILL)

Each component runs in its own process group (stack.components[name].stop(sig) stops one),
dies with the process that started the stack, and logs to <run dir>/<component>.log; HAProxy
logs one line per request there, with the director's decision. Each stack claims a whole
127.0.<n>.0/24 for its containers, so stacks run side by side. The agent (tools/agent.py)
binds port 0 and its log names the ports it got; the other components are given free ports
(loopback.free_port).
"""

import argparse
import atexit
import http.client
import json
import os
import random
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

IDENTITY = "X-Forwarded-Preferred-Username"


def endpoint(value):
    """"127.0.0.1:0" -> ("127.0.0.1", <a free port>)."""
    host, port = parse_address(value)
    return host, port or free_port()


def haproxy_binary():
    """The HAProxy the stack runs: DIRECTOR_HAPROXY_BIN (the e2e-haproxy3.2/ tests set it to
    HAProxy 3.2), else haproxy on PATH."""
    return os.environ.get("DIRECTOR_HAPROXY_BIN") or "haproxy"


class HAProxyExited(RuntimeError):
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

    def start(self):
        with open(self.log_path, "ab") as log:
            log.write(f"--- {time.strftime('%H:%M:%S')} {' '.join(self.argv)}\n".encode())
            log.flush()
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

    def log_tail(self, lines=30):
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


class Stack:
    def __init__(self, *, run_dir=None, agent_bin=None, fake_agent=None, fake_rules=None,
                 http="127.0.0.1:0", metrics="127.0.0.1:0", agent="127.0.0.1:0",
                 agent_http="127.0.0.1:0",
                 dns="127.0.0.1:0", spawner="127.0.0.1:0", container_port=0,
                 host_prefix="vscode", domain="", agent_args=(), subnet_preference=None,
                 haproxy_cfg=REPO / "haproxy" / "haproxy.cfg", haproxy_extra_env=None):
        if fake_agent is None:
            fake_agent = os.environ.get("DIRECTOR_E2E_FAKE_AGENT") == "1"
        self.fake_agent, self.fake_rules = fake_agent, fake_rules
        self.agent_bin = agent_binary(agent_bin)
        self.temporary = run_dir is None
        self.run_dir = Path(run_dir or tempfile.mkdtemp(prefix="director-stack-"))
        # HAProxy's listeners: reserved for the stack's lifetime (loopback.reserve_port), so
        # that no one else binds them before HAProxy does, nor while it restarts.
        self._haproxy_reservations = []
        self.http, self.metrics = self._reserve_for_haproxy(http), self._reserve_for_haproxy(metrics)
        # The agent's SPOP and HTTP (/metrics, /healthz, /status, /users) addresses. The real
        # agent binds port 0 itself and its first start fixes the ports (HAProxy is told the
        # SPOP one); the fake agent is given a free port.
        self.agent = endpoint(agent) if fake_agent else parse_address(agent)
        self.agent_http = parse_address(agent_http)
        self.dns, self.spawner = endpoint(dns), endpoint(spawner)
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

    # --- the whole stack -------------------------------------------------------------------

    def start(self):
        for stale in ("containers", "hosts.d"):
            shutil.rmtree(self.run_dir / stale, ignore_errors=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.containers = Containers(self.run_dir, self.subnet, self.container_port, os.getpid())
        atexit.register(self.stop)
        try:
            self.start_dns()
            self.start_agent()
            self.start_spawner()
            self.start_haproxy()
        except BaseException:
            print(self.diagnostics(), file=sys.stderr)
            self.stop()
            raise
        return self

    def stop(self):
        for name in ("haproxy", "spawner", "agent", "dnsmasq"):
            if name in self.components:
                self.components[name].stop()
        self._release_haproxy_reservations()
        if self.containers is not None:
            self.containers.stop_all()
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
        """The end of every log, for a failed test."""
        out = [f"run directory: {self.run_dir}"]
        for name, component in self.components.items():
            out.append(f"--- {name}.log ---\n{component.log_tail(lines)}")
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
        self._start("dnsmasq", argv)
        wait_for("dnsmasq", lambda: resolve("ready.invalid", self.dns) is None
                 and self.components["dnsmasq"].running())

    def resolve(self, host):
        return resolve(host, self.dns)

    # --- the agent -------------------------------------------------------------------------

    def start_agent(self):
        """Starts the agent; a restart binds the ports of the first start."""
        listen = f"{self.agent[0]}:{self.agent[1]}"
        if self.fake_agent:
            argv = [sys.executable, TOOLS / "fake_agent.py", "--listen", listen,
                    "--hosts-dir", self.containers.hosts_dir]
            if self.fake_rules:
                argv += ["--rules", self.fake_rules]
            if self.domain:
                argv += ["--domain", self.domain]
            component = self._start("agent", argv + self.agent_args)
            wait_for("the agent to listen", lambda: component.running()
                     and socket.create_connection(self.agent, 0.5).close() is None)
            return
        agent = AgentProcess(["--dns-server", f"{self.dns[0]}:{self.dns[1]}"] + self.agent_args,
                             binary=self.agent_bin, env=self._env(),  # the rest: _env()
                             log_path=self.run_dir / "agent.log", listen=listen,
                             http_listen=f"{self.agent_http[0]}:{self.agent_http[1]}")
        self.components["agent"] = agent
        self.agent, self.agent_http = agent.spop, agent.http

    def kill_agent(self, sig=signal.SIGKILL):
        self.components["agent"].stop(sig)

    def restart_agent(self):
        self.kill_agent(signal.SIGTERM)
        self.start_agent()

    def agent_pid(self):
        """The agent's PID (the process group leader is the agent itself)."""
        return self.components["agent"].proc.pid

    def agent_fd_count(self):
        return len(os.listdir(f"/proc/{self.agent_pid()}/fd"))

    def agent_rss_kib(self):
        with open(f"/proc/{self.agent_pid()}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))

    def agent_metrics(self):
        """The agent's /metrics as {series (name with labels): value}."""
        return parse_metrics(http_get(self.agent_http, "/metrics")[1])

    # --- the spawner -----------------------------------------------------------------------

    def start_spawner(self):
        component = self._start("spawner", [
            sys.executable, TOOLS / "demo_spawner.py", "--listen",
            f"{self.spawner[0]}:{self.spawner[1]}", "--run-dir", self.run_dir,
            "--subnet", self.subnet, "--container-port", self.container_port,
            "--owner-pid", os.getpid()])
        wait_for("the spawner", lambda: component.running()
                 and socket.create_connection(self.spawner, 0.5).close() is None)

    def spawner_requests(self):
        """What the spawner received, one dict per request (see demo_spawner.py)."""
        return _json_lines(self.run_dir / "spawner-requests.log")

    # --- HAProxy ---------------------------------------------------------------------------

    def haproxy_env(self):
        return self._env(
            SPAWNER_HOST=self.spawner[0], SPAWNER_PORT=str(self.spawner[1]),
            DIRECTOR_AGENT=f"{self.agent[0]}:{self.agent[1]}",
            DIRECTOR_HTTP_BIND=f"{self.http[0]}:{self.http[1]}",
            DIRECTOR_HAPROXY_METRICS_BIND=f"{self.metrics[0]}:{self.metrics[1]}",
            DIRECTOR_HAPROXY_STATS_SOCKET=str(self.run_dir / "haproxy.sock"),
            DIRECTOR_HAPROXY_DIR=str(self.haproxy_cfg.parent),
            DIRECTOR_DNS_SERVER=f"{self.dns[0]}:{self.dns[1]}", **self.haproxy_extra_env)

    def _reserve_for_haproxy(self, value):
        """endpoint(value), but a port picked here stays reserved until stop()."""
        if not value.endswith(":0"):
            return endpoint(value)
        reservation = reserve_port(parse_address(value)[0])
        self._haproxy_reservations.append(reservation)
        return reservation.getsockname()[:2]

    def _release_haproxy_reservations(self):
        for reservation in self._haproxy_reservations:
            reservation.close()
        self._haproxy_reservations = []

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
        if self.components["agent"].running():
            self.wait_agent_checked()

    def _haproxy_alive(self):
        """True while HAProxy's master runs; raises at once, with HAProxy's reason, once it has
        exited (e.g. a port it cannot bind): nothing is left to wait for."""
        component = self.components["haproxy"]
        if component.running():
            return True
        raise HAProxyExited(f"HAProxy exited (status {component.proc.returncode}):\n"
                            f"{component.log_tail(10)}")

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

    def agent_server_state(self):
        """(status, last check) of the agent server as HAProxy sees it, e.g. ("UP", "L7OK")."""
        for row in self.haproxy_cli("show stat").splitlines():
            fields = row.split(",")
            if fields[:2] == ["agents", "agent"]:
                return fields[17], fields[36]
        return None

    def wait_agent_checked(self, timeout=15.0):
        wait_for("HAProxy's health check of the agent",
                 lambda: self.agent_server_state() == ("UP", "L7OK"), timeout)

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
        self.containers.wait_ready(host)
        return self.containers.get(host)

    def add_containers(self, users):
        hosts = [self.host_for(user) for user in users]
        for host, user in zip(hosts, users):
            self.containers.start(host, user)
        for host in hosts:
            self.containers.wait_ready(host)
        return [self.containers.get(host) for host in hosts]

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
            host = self.host_for(user)
            tmp = self.containers.hosts_dir / f".{host}.tmp"
            tmp.write_text(f"{addr} {host}\n")
            tmp.replace(self.containers.hosts_dir / host)
        for user in users:
            wait_for(f"{self.host_for(user)} to resolve", lambda u=user: self.resolve(self.host_for(u)))
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

    def request(self, user=None, path="/", headers=(), method="GET", timeout=10, source=None):
        """One request on a new connection: (status, {lower-case header: value}, body).
        `user` is sent as the identity header; `headers` are extra (name, value) pairs,
        values may be bytes. `source` is the client's own address (e.g. "127.0.0.9").
        Without an Accept header in `headers`, it sends a browser's page load's,
        "Accept: text/html", so that the spawner backend's wake policy lets it through."""
        conn = http.client.HTTPConnection(*self.http, timeout=timeout,
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
    return f"""
container-director is running. Logs: {stack.run_dir}/*.log (HAProxy's has one line a request)
  HAProxy  {url}   metrics {metrics}/metrics   stats {metrics}/stats
  agent metrics {agent_http}/metrics   users {agent_http}/users   status {agent_http}/status
  agent {stack.agent[0]}:{stack.agent[1]}   DNS {stack.dns[0]}:{stack.dns[1]}   \
spawner {stack.spawner[0]}:{stack.spawner[1]}   containers {stack.subnet}.x:{stack.container_port}

(a) alice's container runs: HAProxy routes her there (see X-Served-By):
  curl -si -H '{identity}: alice' {url}/

(b) bob has no container: the spawner answers a loading page and starts one; 2 s later
    bob reaches his own container. Only a page load (here: Accept: text/html) wakes it;
    without it HAProxy answers 503 "not-a-navigation":
  curl -si -H '{identity}: bob' -H 'Accept: text/html' {url}/
  sleep 2; curl -si -H '{identity}: bob' {url}/

(c) metrics: HAProxy's exporter, then the agent's decisions and who was active:
  curl -s {metrics}/metrics | grep -E '^haproxy_backend_http_responses_total.*(container|spawner)'
  curl -s {agent_http}/metrics | grep -E '^director_decisions_total'
  curl -s {agent_http}/users

Press Ctrl-C to stop.
"""


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
    parser.add_argument("--spawner", default="127.0.0.1:8081")
    parser.add_argument("--container-port", type=int, default=8080)
    parser.add_argument("--host-prefix", default="vscode")
    parser.add_argument("--domain", default="")
    parser.add_argument("--user", action="append", default=[],
                        help="start this user's container up front (repeatable)")
    args = parser.parse_args()

    stack = Stack(run_dir=args.run_dir, agent_bin=args.agent_bin, fake_agent=args.fake_agent,
                  http=args.http, metrics=args.metrics, agent=args.agent,
                  agent_http=args.agent_http, dns=args.dns,
                  spawner=args.spawner, container_port=args.container_port,
                  host_prefix=args.host_prefix, domain=args.domain, subnet_preference=1)
    stopping = []
    for sig in (signal.SIGINT, signal.SIGTERM):  # SIGINT may arrive ignored (background job)
        signal.signal(sig, lambda *_: stopping.append(1))
    try:
        stack.start()
        for user in args.user:
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
