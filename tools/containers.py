"""Demo user "containers": demo_backend.py processes, one per user, each on its own loopback
address, made known through DNS the way a container runtime would.

State lives in a stack's run directory, shared by the stack (tests) and the demo spawner:
  containers/<host>.json   one started container: host, user, addr, port, pid, started
  containers/.lock         serializes address allocation between processes
  hosts.d/<host>           "<addr> <host>", read by dnsmasq --hostsdir; written by the backend
                           itself once it listens, so a name resolves only when it answers.
Each stack owns a whole 127.0.<n>.0/24 (claimed with a lock file, see claim_subnet) so that
stacks running side by side never share an address.
"""

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

BACKEND = Path(__file__).resolve().parent / "demo_backend.py"
_children = {}  # pid -> Popen, so that exited children are reaped


def claim_subnet(preferred=1):
    """Claims a 127.0.<n>.0/24 for this process's lifetime; returns ("127.0.<n>", lock file)."""
    lock_dir = Path("/tmp/container-director-subnets")
    lock_dir.mkdir(mode=0o1777, exist_ok=True)
    for n in [preferred] + [n for n in range(1, 255) if n != preferred]:
        lock = open(lock_dir / f"127.0.{n}.lock", "a")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return f"127.0.{n}", lock
        except BlockingIOError:
            lock.close()
    raise RuntimeError("every 127.0.<n>.0/24 is claimed by another stack")


def running(pid):
    for proc in list(_children.values()):
        proc.poll()
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


class Containers:
    def __init__(self, run_dir, subnet, port, owner_pid):
        self.state_dir = Path(run_dir) / "containers"
        self.hosts_dir = Path(run_dir) / "hosts.d"
        self.subnet, self.port, self.owner_pid = subnet, port, owner_pid
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.hosts_dir.mkdir(parents=True, exist_ok=True)

    def get(self, host):
        """The container's state with "running" (its process is alive), or None."""
        try:
            state = json.loads((self.state_dir / f"{host}.json").read_text())
        except (OSError, ValueError):
            return None
        state["running"] = running(state["pid"])
        return state

    def all(self):
        return [s for s in (self.get(p.stem) for p in self.state_dir.glob("*.json")) if s]

    def start(self, host, user, addr=None):
        """Starts the container's process and returns its state at once (see wait_ready).
        `addr`, when given, must be free: it is used instead of the next address in turn."""
        with open(self.state_dir / ".lock", "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            # Addresses are handed out in turn, not lowest first: as with Docker, a released
            # address is not reused at once. (Reused at once, it would receive the previous
            # owner's requests for as long as the agent serves its cached "alive".)
            used = {s["addr"] for s in self.all()}
            counter = self.state_dir / ".next"
            start = int(counter.read_text()) if counter.exists() else 0
            order = [(start + i) % 254 + 1 for i in range(254)]
            free = [i for i in order if f"{self.subnet}.{i}" not in used]
            if addr is not None:
                if addr in used:
                    raise RuntimeError(f"{addr} is in use")
            elif not free:
                raise RuntimeError(f"no free address left in {self.subnet}.0/24")
            else:
                addr = f"{self.subnet}.{free[0]}"
                counter.write_text(str(free[0]))
            log = open(self.state_dir / f"{host}.log", "ab")
            proc = subprocess.Popen(
                [sys.executable, str(BACKEND), "--listen", f"{addr}:{self.port}",
                 "--host", host, "--user", user, "--hosts-dir", str(self.hosts_dir),
                 "--request-log", str(self.state_dir / f"{host}.requests"),
                 "--owner-pid", str(self.owner_pid)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)
            log.close()
            _children[proc.pid] = proc
            state = {"host": host, "user": user, "addr": addr, "port": self.port,
                     "pid": proc.pid, "started": time.time()}
            tmp = self.state_dir / f".{host}.json"
            tmp.write_text(json.dumps(state))
            tmp.replace(self.state_dir / f"{host}.json")
        return state

    def wait_ready(self, host, timeout=10):
        """Waits until the container listens and has written its hosts file since it started
        (one left by an earlier container of that name, stop(forget=False), does not count;
        dnsmasq answers the name a moment later: Stack.add_container waits for that too);
        returns the time it became ready."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.get(host)
            try:
                written = (self.hosts_dir / host).stat().st_mtime
                if state is not None and written >= state["started"]:
                    return written
            except FileNotFoundError:
                pass
            if state is None or not state["running"]:
                raise RuntimeError(f"container {host} exited; see {self.state_dir}/{host}.log")
            time.sleep(0.02)
        raise TimeoutError(f"container {host} not ready after {timeout} s")

    def stop(self, host, sig=signal.SIGTERM, forget=True):
        """Stops the container's process. forget=False leaves its state and DNS name behind,
        as a crashed container whose name still resolves."""
        state = self.get(host)
        if state is None:
            return
        try:
            os.killpg(state["pid"], sig)
        except ProcessLookupError:
            pass
        child = _children.pop(state["pid"], None)
        if child is not None:
            child.wait(5)
        deadline = time.monotonic() + 5
        while running(state["pid"]) and time.monotonic() < deadline:
            time.sleep(0.01)
        if forget:
            (self.hosts_dir / host).unlink(missing_ok=True)
            (self.state_dir / f"{host}.json").unlink(missing_ok=True)

    def forget_dead(self, host):
        """Removes what a container that died left behind; True if there was such a one."""
        state = self.get(host)
        if state is None or state["running"]:
            return False
        (self.hosts_dir / host).unlink(missing_ok=True)
        (self.state_dir / f"{host}.json").unlink(missing_ok=True)
        return True

    def stop_all(self):
        for state in self.all():
            self.stop(state["host"], signal.SIGKILL)
