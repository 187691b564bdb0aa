"""The agent alone, driven over SPOP with raw sockets (no HAProxy): for the agent-level fault
tests (test_spop_faults.py, test_username_flood.py). Frames come from tools/spop.py, the
tools' SPOP codec (Python, written apart from the agent's C++ codec).

    agent = start_agent(["--username-mode", "escape"])   # tools/agent.py, on ports of its own
    session = open_session(agent)                         # HELLO done
    session.send(notify(1, 1, "alice")); session.frames(1)
    agent.rss_kib(), agent.fd_count(), agent.metrics(), agent.stop()
"""

import resource
import socket
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1] / "tools"))
import spop  # noqa: E402
from agent import AgentProcess  # noqa: E402
from loopback import free_port  # noqa: E402


def raise_fd_limit(wanted):
    """Raises this process's descriptor limit (soft) towards `wanted`; returns the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def route(user):
    """The `route` message of docs/architecture.md; user None is sent as NULL."""
    return spop.encode_message("route", [("user", user)])


def notify(stream_id, frame_id, user):
    return spop.notify_frame(stream_id, frame_id, [route(user)])


def start_agent(args=(), dns_server=None, **options):
    """The agent with two threads and `args`; its DNS server refuses every query unless given
    (nothing is bound to it: lookups fail fast with dns-error). `options` go to AgentProcess
    (tools/agent.py)."""
    dns = dns_server or f"127.0.0.1:{free_port(kind=socket.SOCK_DGRAM)}"
    return AgentProcess(["--dns-server", dns, "--threads", "2", *args], **options)


def open_session(agent, timeout=10):
    """A SPOP connection to `agent` with the HELLO exchanged."""
    session = Session(agent.spop, timeout)
    session.hello()
    return session


class Session:
    """One SPOP connection, blocking, with a frame reader."""

    def __init__(self, address, timeout=10):
        self.sock = socket.create_connection(address, timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()

    def send(self, data):
        self.sock.sendall(data)

    def hello(self):
        self.send(spop.hello_frame())
        hello = self.frames(1)[0]
        assert hello.type == spop.AGENT_HELLO, spop.describe(hello)

    def frames(self, count):
        """The next `count` frames (socket.timeout if they do not come)."""
        out = []
        while len(out) < count:
            parsed = spop.parse_frame(self.buf)
            if parsed is None:
                data = self.sock.recv(1 << 20)
                if not data:
                    raise ConnectionError(f"closed after {len(out)} of {count} frames")
                self.buf += data
                continue
            frame, used = parsed
            del self.buf[:used]
            out.append(frame)
        return out

    def count_frames(self, count):
        """Like frames() but only counts them (fast): returns the raw bytes of the last one."""
        seen, last = 0, b""
        while seen < count:
            pos = 0
            while len(self.buf) - pos >= 4:
                length = int.from_bytes(self.buf[pos:pos + 4], "big")
                if len(self.buf) - pos < 4 + length:
                    break
                last = bytes(self.buf[pos:pos + 4 + length])
                pos += 4 + length
                seen += 1
            del self.buf[:pos]
            if seen < count:
                data = self.sock.recv(1 << 20)
                if not data:
                    raise ConnectionError(f"closed after {seen} of {count} frames")
                self.buf += data
        return last

    def route_vars(self, frame):
        """{variable: value} of a route ACK."""
        assert frame.type == spop.ACK, spop.describe(frame)
        return {name.decode(): value for _, _, name, value in spop.decode_actions(frame.payload)}

    def close(self):
        self.sock.close()


def timed_round_trip(session, stream_id, user):
    """Seconds for one NOTIFY/ACK, and the ACK's variables."""
    started = time.monotonic()
    session.send(notify(stream_id, 1, user))
    frame = session.frames(1)[0]
    return time.monotonic() - started, session.route_vars(frame)
