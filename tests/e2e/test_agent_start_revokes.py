"""The agent revokes every HAProxy's table of held answers before it answers SPOP at all
(docs/architecture.md, "Liveness from events, and answers held in HAProxy": the agent starts).

A real HAProxy holds an answer granted by "the agent's previous run" in its fast_path table
(as haproxy/haproxy.cfg's); the agent's only runtime socket is a relay in front of HAProxy's
that answers `clear table` half a second late, as a busy HAProxy might. A client playing HAProxy
connects to the agent's SPOP port while it starts and sends HAPROXY-HELLO: when AGENT-HELLO
comes, the held answer must already be revoked (gpt0 0). An agent that accepts SPOP before its
first revoke answers the HELLO within milliseconds, while the entry still routes.

Needs HAProxy (DIRECTOR_HAPROXY_BIN, else haproxy on PATH) and the agent (DIRECTOR_AGENT_BIN);
no dnsmasq, no stack.
"""

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
from agent import AgentProcess  # noqa: E402
from loopback import reserve_port  # noqa: E402
from spop import AGENT_HELLO, hello_frame, read_frame  # noqa: E402
from stack import haproxy_binary  # noqa: E402

SKIP = 77
CLEAR_DELAY = 0.5  # seconds the relay holds `clear table` back (the agent waits 1 s for an answer)


def command(path, text, timeout=5.0):
    """One command on the unix stats socket at `path`: HAProxy's whole answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(text.encode())
        answer = bytearray()
        while chunk := sock.recv(65536):
            answer += chunk
    return answer.decode()


def gpt0(path, key):
    """gpt0 of `key`'s entry in fast_path, None without one."""
    match = re.search(r": key=%s .*?gpt0=(\d+)" % re.escape(key), command(path, "show table fast_path\n"))
    return int(match.group(1)) if match else None


class Relay:
    """A unix stats socket in front of HAProxy's: `clear table` answered CLEAR_DELAY late."""

    def __init__(self, directory, target):
        self.path = Path(directory) / "relay.sock"
        self.target = target
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(self.path))
        self.listener.listen(16)
        self.clears = 0
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                line = bytearray()
                while b"\n" not in line and (chunk := conn.recv(65536)):
                    line += chunk
                text = line.decode(errors="replace")
                if text.startswith("clear table"):
                    self.clears += 1
                    time.sleep(CLEAR_DELAY)
                try:
                    conn.sendall(command(self.target, text).encode())
                except OSError:
                    pass

    def close(self):
        self.listener.close()


class AgentStartRevokes(unittest.TestCase):
    def setUp(self):
        self.directory = tempfile.mkdtemp(prefix="director-start-revokes-")
        self.addCleanup(shutil.rmtree, self.directory, True)
        self.admin = Path(self.directory) / "admin.sock"
        config = Path(self.directory) / "haproxy.cfg"
        config.write_text(
            "global\n"
            f"    stats socket {self.admin} mode 600 level admin\n"
            "defaults\n    timeout client 5s\n"
            "backend fast_path\n"
            "    stick-table type string len 64 size 200k expire 2m store gpt(3)\n")
        self.haproxy = subprocess.Popen([haproxy_binary(), "-db", "-f", str(config)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(self.haproxy.wait)
        self.addCleanup(self.haproxy.kill)
        deadline = time.monotonic() + 5
        while True:
            try:
                if "Name: HAProxy" in command(self.admin, "show info\n"):
                    break
            except OSError:
                pass
            self.assertLess(time.monotonic(), deadline, "HAProxy did not start")
            time.sleep(0.02)
        self.relay = Relay(self.directory, self.admin)
        self.addCleanup(self.relay.close)

    def test_held_answers_are_revoked_before_the_agent_says_hello(self):
        # An answer of the previous run: address 127.0.0.2 (gpt0), as haproxy.cfg stores one.
        self.assertEqual(command(self.admin, "set table fast_path key alice data.gpt 2130706434\n"), "\n")
        self.assertEqual(gpt0(self.admin, "alice"), 2130706434)

        reservation = reserve_port()  # the agent binds it (SO_REUSEADDR); no one else may
        self.addCleanup(reservation.close)
        port = reservation.getsockname()[1]
        agent = AgentProcess(["--haproxy-sockets", str(self.relay.path)], listen=f"127.0.0.1:{port}",
                             wait=False, log_path=Path(self.directory) / "agent.log")
        self.addCleanup(agent.kill)
        deadline = time.monotonic() + 10
        while True:  # the agent binds at once; until then the port refuses
            try:
                spop = socket.create_connection(("127.0.0.1", port), 0.5)
                break
            except OSError:
                self.assertLess(time.monotonic(), deadline, "the agent's SPOP port never took a connection")
                time.sleep(0.01)
        with spop:
            spop.settimeout(10)
            spop.sendall(hello_frame())
            hello = read_frame(spop)
            entry = gpt0(self.admin, "alice")  # at once, before anything else
        self.assertIsNotNone(hello, "the agent closed the connection: " + "\n".join(agent.lines()))
        self.assertEqual(hello.type, AGENT_HELLO)
        self.assertEqual(self.relay.clears, 1)
        self.assertIn(entry, (None, 0),
                      "the agent said AGENT-HELLO while HAProxy still held the previous run's answer")
        agent.stop()


if __name__ == "__main__":
    if not shutil.which(haproxy_binary()):
        print(f"skipped: {haproxy_binary()} not installed (tools/install-deps.sh)")
        sys.exit(SKIP)
    os.environ["PATH"] += os.pathsep + "/usr/sbin"
    unittest.main(verbosity=2)
