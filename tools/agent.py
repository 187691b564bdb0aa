"""director-agent as tests and tools start it: the one harness (tools/stack.py, the end-to-end,
CLI and conformance tests, the bench and the soak all start the agent through it).

    agent = AgentProcess(["--threads", "2"], log_path=run_dir / "agent.log")
    agent.spop, agent.http          # (host, port) it bound, read from its started line
    agent.lines()                   # what it logged (stderr) since this start
    agent.stop()                    # SIGTERM, then its exit code

The agent listens on port 0 unless told an address: the kernel picks free ports and the agent's
"director-agent started" log line names the ones it bound, so no test races another for a
port. Start is complete when that line is logged (it comes once both listeners are bound); at
log levels that hide it (warn, error), say quiet=True, give both ports (reserved:
loopback.reserve_port) and start is complete when the SPOP port accepts a connection, which
another program's listener could also do. stderr goes to `log_path` (appended, after a
header line), stdout to `log_path` + ".stdout"; without a log_path both go to a temporary
directory removed when the test process exits (kept with DIRECTOR_KEEP_RUN_DIR=1). The agent
runs in its own process group and dies with the thread that started it (setpriv
--pdeathsig), so a killed test leaves nothing.
"""

import atexit
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))
from loopback import http_get, parse_metrics  # noqa: E402

DEFAULT_AGENT = TOOLS.parent / "build" / "default" / "agent" / "director-agent"
STARTED = "director-agent started"
START_TIMEOUT = 30.0  # seconds; generous for sanitizer builds on a busy machine


def agent_binary(binary=None):
    """`binary`, else $DIRECTOR_AGENT_BIN (ctest sets it), else the default build's agent."""
    return str(binary or os.environ.get("DIRECTOR_AGENT_BIN") or DEFAULT_AGENT)


def parse_address(text):
    """"127.0.0.1:9102" or "[::1]:9102" -> (host, port)."""
    host, port = text.rsplit(":", 1)
    return host.strip("[]"), int(port)


def started_fields(line):
    """The fields of a "director-agent started" line, text or JSON format, or None."""
    if STARTED not in line:
        return None
    try:
        fields = json.loads(line)
        return fields if isinstance(fields, dict) else None
    except ValueError:
        return dict(re.findall(r" (listen|http_listen|threads|version)=(\S+)", line))


def accepts(address):
    """Whether a TCP connection to `address` (host, port) is accepted now."""
    try:
        socket.create_connection(address, 0.5).close()
        return True
    except OSError:
        return False


class AgentError(RuntimeError):
    """The agent exited, or a line it should log did not come in time."""


class AgentProcess:
    def __init__(self, args=(), *, binary=None, env=None, log_path=None, listen="127.0.0.1:0",
                 http_listen="127.0.0.1:0", wait=True, timeout=START_TIMEOUT, quiet=False):
        """Starts the agent with `args` after --listen and --http-listen (None: leave the option
        to `env`); `env` is its whole environment (default: PATH only). quiet: its log level
        hides the started line (module text)."""
        if log_path is None:  # a directory of its own, removed when this process exits
            run_dir = tempfile.mkdtemp(prefix="director-agent-")
            if os.environ.get("DIRECTOR_KEEP_RUN_DIR") != "1":
                atexit.register(shutil.rmtree, run_dir, True)
            log_path = Path(run_dir) / "agent.log"
        self.log_path = Path(log_path)
        self.stdout_path = Path(f"{self.log_path}.stdout")
        self.argv = [agent_binary(binary)]
        self.listen_addresses, self.quiet = (listen, http_listen), quiet
        if listen is not None:
            self.argv += ["--listen", listen]
        if http_listen is not None:
            self.argv += ["--http-listen", http_listen]
        self.argv += [str(a) for a in args]
        if env is None:
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        self.spop = self.http = None
        with open(self.log_path, "ab") as log, open(self.stdout_path, "ab") as out:
            log.write(f"--- {time.strftime('%H:%M:%S')} {' '.join(self.argv)}\n".encode())
            log.flush()
            self.log_offset = log.tell()
            self.proc = subprocess.Popen(["setpriv", "--pdeathsig", "TERM", "--"] + self.argv,
                                         env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=log,
                                         start_new_session=True)
        if wait:
            self.wait_started(timeout)

    # --- start ------------------------------------------------------------------------------

    def wait_started(self, timeout=START_TIMEOUT):
        """Waits for the started line and sets self.spop and self.http to the addresses it names.
        A quiet agent (its log level hides that line) is started once its SPOP port accepts a
        connection instead."""
        given = [parse_address(a) for a in self.listen_addresses if a is not None]
        if self.quiet and not (len(given) == 2 and all(port for _, port in given)):
            raise ValueError("a quiet agent (log level warn or error) needs both ports given")
        try:
            line = self.wait_for_line(lambda l: started_fields(l) is not None, timeout,
                                      lambda: self.quiet and accepts(given[0]))
        except AgentError as failure:
            self.kill()
            raise AgentError(f"director-agent did not start: {failure}") from None
        if line is None:
            self.spop, self.http = given
            return {}
        fields = started_fields(line)
        self.spop, self.http = parse_address(fields["listen"]), parse_address(fields["http_listen"])
        return fields

    def wait_for_line(self, predicate, timeout, done_otherwise=lambda: False):
        """The first line logged since this start for which predicate(line) holds, waiting up to
        `timeout` s; None once done_otherwise() holds first. AgentError if the agent exits
        or the time is up first."""
        deadline = time.monotonic() + timeout
        while True:
            running = self.running()  # before reading: a line logged just before exiting counts
            for line in self.lines():
                if predicate(line):
                    return line
            if running and done_otherwise():
                return None
            if not running:
                raise AgentError(f"exited with {self.proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise AgentError(f"no such line within {timeout:.0f} s:\n{self.log_tail()}")
            time.sleep(0.02)

    # --- state ------------------------------------------------------------------------------

    @property
    def pid(self):
        return self.proc.pid

    def running(self):
        return self.proc.poll() is None

    def lines(self):
        """The complete lines the agent logged (stderr) since this start."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(self.log_offset)
                data = log.read()
        except FileNotFoundError:
            return []
        return [l.decode(errors="replace") for l in data.split(b"\n")[:-1]]

    def stdout(self):
        try:
            return self.stdout_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines=30):
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def fd_count(self):
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def rss_kib(self):
        with open(f"/proc/{self.pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))

    def http_get(self, path, timeout=10):
        """(status, body text) of GET `path` on the agent's HTTP listener."""
        return http_get(self.http, path, timeout)

    def metrics(self):
        """/metrics as {series (name with labels): value}."""
        return parse_metrics(self.http_get("/metrics")[1])

    # --- stop -------------------------------------------------------------------------------

    def stop(self, sig=signal.SIGTERM, timeout=10.0):
        """Sends `sig` to the agent's process group and waits; SIGKILL after `timeout` s.
        Returns the exit code (negative: the signal that ended it), None if it was killed."""
        if self.running():
            try:
                os.killpg(self.proc.pid, sig)
                return self.proc.wait(timeout)
            except ProcessLookupError:
                pass
            except subprocess.TimeoutExpired:
                self.kill()
                return None
        return self.proc.wait()

    def kill(self):
        if self.running():
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait()

