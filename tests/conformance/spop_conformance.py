#!/usr/bin/env python3
"""Black-box SPOP conformance checks for director-agent.

Starts the real binary on 127.0.0.1, talks to it with raw bytes built by spop_wire.py (written
from SPOE.txt section 3 and HAProxy's sources, independently of the agent's C++ codec) and
replays the HAProxy 2.6.12 and 3.5 captures verbatim. Loopback only; python3 stdlib only.

    spop_conformance.py --agent build/default/agent/director-agent [GROUP ...]

Groups: handshake ids replay errors disconnect scale (default: all). Each group starts its own
agent. Prints one PASS/FAIL line per check; exits 1 when any check fails.
"""

import argparse
import os
import random
import resource
import selectors
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import spop_wire as w  # noqa: E402

HERE = Path(__file__).resolve().parent
DEFAULT_CAPTURES = HERE.parent / "data" / "spop-captures"
OUR_MAX_FRAME_SIZE = 16380  # passed to the agent with --max-frame-size
HOST_PREFIX = "vscode"      # passed with --container-host-prefix
TIMEOUT = 5.0               # seconds to wait for an answer that should come at once
DNS_TIMEOUT = 10.0          # a route for a valid user waits for the (dead) DNS server


class CheckFailed(Exception):
    pass


def expect(condition, what):
    if not condition:
        raise CheckFailed(what)


# --- the agent process --------------------------------------------------------------------

def free_tcp_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Agent:
    def __init__(self, binary):
        # A DNS "server" that never answers: lookups time out (reason dns-error).
        self.dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.dns.bind(("127.0.0.1", 0))
        self.log = tempfile.TemporaryFile()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DIRECTOR_", "CONTAINER_"))}
        for _ in range(5):
            self.port = free_tcp_port()
            self.proc = subprocess.Popen(
                [binary, "--listen", "127.0.0.1:%d" % self.port,
                 "--http-listen", "127.0.0.1:%d" % free_tcp_port(),
                 "--dns-server", "127.0.0.1:%d" % self.dns.getsockname()[1], "--threads", "2",
                 "--max-frame-size", str(OUR_MAX_FRAME_SIZE), "--container-host-prefix", HOST_PREFIX,
                 "--username-mode", "strict"],
                stdout=self.log, stderr=subprocess.STDOUT, env=env)
            deadline = time.monotonic() + 15
            while self.proc.poll() is None and time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", self.port), 1).close()
                    return
                except OSError:
                    time.sleep(0.05)
            self.kill()
        raise RuntimeError("the agent did not start listening:\n" + self.log_tail())

    @property
    def pid(self):
        return self.proc.pid

    def running(self):
        return self.proc.poll() is None

    def expect_running(self):
        expect(self.running(), "the agent is not running (exit code %s)" % self.proc.returncode)

    def fd_count(self):
        return len(os.listdir("/proc/%d/fd" % self.pid))

    def connect(self):
        self.expect_running()
        return Conn(self.port)

    def terminate(self, timeout=10.0):
        """SIGTERM; returns the exit code (None if it had to be killed)."""
        if self.running():
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return None
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log_tail(self, lines=15):
        self.log.seek(0)
        return "\n".join(self.log.read().decode(errors="replace").splitlines()[-lines:])


# --- one connection -----------------------------------------------------------------------

SENT = deque(maxlen=3)  # the last writes, shown when a check fails

class Conn:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.max_frame_size = OUR_MAX_FRAME_SIZE  # the negotiated value once AGENT-HELLO arrived
        self.eof = False  # the agent closed (FIN or RST)

    def send(self, data):
        SENT.append(data)
        self.sock.sendall(data)

    def read_some(self, timeout):
        """Appends what arrives within timeout; returns False on timeout."""
        if self.eof:
            return True
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return False
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
        self.buf += data
        return True

    def next_frame(self):
        """A whole frame from the buffer, or None."""
        parsed = w.parse_frame(self.buf)
        if parsed is None:
            return None
        f, n = parsed
        del self.buf[:n]
        expect(n - 4 <= self.max_frame_size, "%s of %d bytes exceeds max-frame-size %d" % (
            w.FRAME_NAMES.get(f.type, f.type), n - 4, self.max_frame_size))
        return f

    def recv_frame(self, timeout=TIMEOUT):
        """The next frame; None when the agent closed; CheckFailed on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            f = self.next_frame()
            if f is not None:
                return f
            if self.eof:
                expect(not self.buf, "the agent closed after a partial frame: %s" % self.buf.hex())
                return None
            if not self.read_some(deadline - time.monotonic()) and time.monotonic() >= deadline:
                raise CheckFailed("no frame within %.1fs (partial bytes: %r)" % (timeout, self.buf.hex()))

    def expect_closed(self, timeout=TIMEOUT):
        f = self.recv_frame(timeout) if not self.eof or self.buf else None
        expect(f is None, "expected the agent to close, got %s" % (f and w.describe(f)))

    def close(self):
        self.sock.close()


# --- expectations on frames -----------------------------------------------------------------

def expect_frame(conn, ftype, timeout=TIMEOUT):
    name = w.FRAME_NAMES[ftype]
    f = conn.recv_frame(timeout)
    expect(f is not None, "expected %s, the agent closed the connection" % name)
    expect(f.type == ftype, "expected %s, got %s" % (name, w.describe(f)))
    expect(f.flags == w.FIN, "%s flags are %#x, expected FIN only" % (name, f.flags))
    return f


def kv_dict(f):
    items = w.read_kv_list(f.payload)
    names = [name for name, _ in items]
    expect(len(set(names)) == len(names), "duplicate keys in %s" % w.describe(f))
    return {name.decode(): value for name, value in items}


def expect_agent_hello(conn, max_frame_size=OUR_MAX_FRAME_SIZE, capabilities=(b"pipelining",)):
    f = expect_frame(conn, w.AGENT_HELLO)
    expect((f.stream_id, f.frame_id) == (0, 0), "AGENT-HELLO ids must be 0: %s" % w.describe(f))
    kv = kv_dict(f)
    expect(kv.get("version") == (w.STRING, b"2.0"), "version: %r (want STRING 2.0)" % (kv.get("version"),))
    expect(kv.get("max-frame-size") == (w.UINT32, max_frame_size),
           "max-frame-size: %r (want UINT32 %d)" % (kv.get("max-frame-size"), max_frame_size))
    expect("capabilities" in kv, "no capabilities key: %s" % w.describe(f))
    expect(kv["capabilities"][0] == w.STRING and kv["capabilities"][1] in capabilities,
           "capabilities: %r (want one of %r)" % (kv["capabilities"], capabilities))
    conn.max_frame_size = max_frame_size
    return f


def expect_disconnect(conn, status, timeout=TIMEOUT):
    """AGENT-DISCONNECT with this status (or one of these statuses), then the close."""
    statuses = status if isinstance(status, tuple) else (status,)
    f = expect_frame(conn, w.AGENT_DISCONNECT, timeout)
    expect((f.stream_id, f.frame_id) == (0, 0), "AGENT-DISCONNECT ids must be 0: %s" % w.describe(f))
    kv = kv_dict(f)
    got = kv.get("status-code")
    expect(got is not None and got[0] == w.UINT32 and got[1] in statuses,
           "status-code %r, want UINT32 %s; message %r" % (got, statuses, kv.get("message")))
    expect(kv.get("message", (None,))[0] == w.STRING, "message must be a STRING: %r" % (kv.get("message"),))
    conn.expect_closed(timeout)
    return got[1]


def open_session(agent, max_frame_size=OUR_MAX_FRAME_SIZE):
    conn = agent.connect()
    conn.send(w.hello_frame(max_frame_size=max_frame_size))
    expect_agent_hello(conn, min(max_frame_size, OUR_MAX_FRAME_SIZE))
    return conn


def actions(f):
    """[(action, scope, name, (type, value) or None)] of an ACK."""
    return w.read_actions(f.payload)


def expect_ack(conn, stream_id, frame_id, timeout=TIMEOUT):
    f = expect_frame(conn, w.ACK, timeout)
    expect((f.stream_id, f.frame_id) == (stream_id, frame_id),
           "ACK ids (%d, %d), want (%d, %d)" % (f.stream_id, f.frame_id, stream_id, frame_id))
    expect(f.ids_raw == w.varint(stream_id) + w.varint(frame_id),
           "ACK id bytes %s, want %s" % (f.ids_raw.hex(), (w.varint(stream_id) + w.varint(frame_id)).hex()))
    return f


UNHANDLED = w.message("no-such-message", [("x", w.t_str("y"))])
PLACEHOLDER = [(w.SET_VAR, w.SCOPE_TXN, b"unhandled", (w.BOOL, True))]


def route(user):
    """The `route` message of docs/architecture.md; user None is sent as NULL."""
    return w.message("route", [("user", w.t_null() if user is None else w.t_str(user))])


def expect_placeholder(f):
    got = [a[:4] for a in actions(f)]
    expect(got == PLACEHOLDER, "ACK for an unknown message: %r, want set-var(txn.unhandled, true)" % got)
    expect(f.payload.endswith(b"\x11"), "BOOL true must be 0x11: %s" % f.payload.hex())


def route_vars(f):
    """The variables a `route` ACK sets: {name: (type, value)}; all must be set-var in txn."""
    out = {}
    for action, scope, name, value in actions(f):
        expect(action == w.SET_VAR and scope == w.SCOPE_TXN,
               "route ACK action %d scope %d (%r), want set-var in txn" % (action, scope, name))
        expect(name.decode() not in out, "variable %r set twice" % name)
        out[name.decode()] = value
    return out


def expect_route_answer(f, reason, label=None):
    v = route_vars(f)
    expect(v.get("alive") == (w.BOOL, False), "alive: %r, want BOOL false" % (v.get("alive"),))
    expect(v.get("reason") == (w.STRING, reason.encode()), "reason: %r, want %r" % (v.get("reason"), reason))
    want = {"alive", "reason"} | ({"label", "host"} if label else set())
    expect(set(v) == want, "variables %s, want %s" % (sorted(v), sorted(want)))
    if label:
        expect(v["label"] == (w.STRING, label.encode()), "label: %r, want %r" % (v["label"], label))
        host = v["host"]
        expect(host[0] == w.STRING and (host[1] == ("%s-%s" % (HOST_PREFIX, label)).encode()),
               "host: %r, want %s-%s" % (host, HOST_PREFIX, label))
    # false is BOOL with the flag clear (0x01), never NULL (0x00): find the raw byte after "alive".
    raw = f.payload
    at = raw.find(w.string("alive")) + len(w.string("alive"))
    expect(raw[at] == 0x01, "alive is encoded as %#04x, want 0x01" % raw[at])


def expect_healthy(agent):
    """A fresh session still completes a NOTIFY/ACK round trip."""
    agent.expect_running()
    conn = open_session(agent)
    conn.send(w.notify_frame(1, 1, [UNHANDLED]))
    expect_placeholder(expect_ack(conn, 1, 1))
    conn.close()


# --- captures -----------------------------------------------------------------------------

def load_capture(path):
    """{connection number: [(direction, frame type name, bytes), ...]} in file order."""
    conns = {}
    for line in Path(path).read_text().splitlines():
        if line.strip():
            number, direction, ftype, hexbytes = line.split()
            conns.setdefault(int(number), []).append((direction, ftype, bytes.fromhex(hexbytes)))
    return conns


def capture_frame(conns, number, ftype, direction="H>A"):
    return next(b for d, t, b in conns[number] if d == direction and t == ftype)


# === check groups =========================================================================
# Each group function gets a fresh agent and returns its checks: functions that raise
# CheckFailed, or return an optional detail string on success.

def check_list():
    """([], decorator that appends to it)."""
    checks = []

    def check(fn):
        checks.append(fn)
        return fn
    return checks, check


def hello_with(pairs):
    return w.frame(w.HAPROXY_HELLO, w.kv_list(pairs))


VERSIONS = ("supported-versions", w.t_str("2.0"))
MFS = ("max-frame-size", w.t_uint32(16380))
CAPS = ("capabilities", w.t_str("pipelining"))


def group_handshake(agent, opts):
    cap26, cap35 = load_capture(opts.captures / "haproxy-2.6.12.frames"), load_capture(
        opts.captures / "haproxy-3.5-dev5.frames")
    checks, check = check_list()

    def hello_answer(frame_bytes, max_frame_size=OUR_MAX_FRAME_SIZE, capabilities=(b"pipelining",)):
        conn = agent.connect()
        conn.send(frame_bytes)
        f = expect_agent_hello(conn, max_frame_size, capabilities)
        return conn, f

    def hello_refused(frame_bytes, status):
        conn = agent.connect()
        conn.send(frame_bytes)
        expect_disconnect(conn, status)
        conn.close()

    @check
    def hello_2_6_capture():
        conn, f = hello_answer(capture_frame(cap26, 4, "HAPROXY-HELLO"))
        kv = kv_dict(f)
        expect(set(kv) == {"version", "max-frame-size", "capabilities"}, "keys: %s" % sorted(kv))
        conn.send(w.notify_frame(0, 1, [UNHANDLED]))  # 2.6 uses stream-id 0
        expect_placeholder(expect_ack(conn, 0, 1))
        conn.close()
        return "same bytes as the reference agent" if f.raw == capture_frame(
            cap26, 4, "AGENT-HELLO", "A>H") else "keys ok (order differs from the reference agent)"

    @check
    def hello_3_5_healthcheck_capture():
        conn, f = hello_answer(capture_frame(cap35, 1, "HAPROXY-HELLO"), capabilities=(b"", b"pipelining"))
        conn.close()  # HAProxy closes after the AGENT-HELLO
        expect_healthy(agent)

    @check
    def hello_3_5_capture():
        conn, _ = hello_answer(capture_frame(cap35, 4, "HAPROXY-HELLO"))
        conn.send(w.notify_frame(1, 1, [UNHANDLED]))  # 3.x: odd stream-ids per connection
        expect_placeholder(expect_ack(conn, 1, 1))
        conn.close()

    @check
    def max_frame_size_larger_than_ours():
        hello_answer(w.hello_frame(max_frame_size=65535), OUR_MAX_FRAME_SIZE)[0].close()

    @check
    def max_frame_size_300():
        hello_answer(w.hello_frame(max_frame_size=300), 300)[0].close()

    @check
    def max_frame_size_256():
        hello_answer(w.hello_frame(max_frame_size=256), 256)[0].close()

    @check
    def max_frame_size_100_refused():
        hello_refused(w.hello_frame(max_frame_size=100), 9)

    @check
    def max_frame_size_255_refused():
        hello_refused(w.hello_frame(max_frame_size=255), 9)

    @check
    def no_supported_versions():
        hello_refused(hello_with([MFS, CAPS]), 5)

    @check
    def only_version_3_0():
        hello_refused(w.hello_frame(versions="3.0"), 8)

    @check
    def no_max_frame_size():
        hello_refused(hello_with([VERSIONS, CAPS]), 6)

    @check
    def no_capabilities():
        hello_refused(hello_with([VERSIONS, MFS]), 7)

    @check
    def keys_in_any_order():
        hello_answer(hello_with([("engine-id", w.t_str("e")), ("max-frame-size", w.t_uint32(1000)),
                                 CAPS, ("healthcheck", w.t_bool(False)), VERSIONS]), 1000)[0].close()

    @check
    def unknown_keys_of_every_type_ignored():
        extra = [("x-null", w.t_null()), ("x-bool", w.t_bool(True)), ("x-int32", w.t_int(w.INT32, 7)),
                 ("x-int64", w.t_int(w.INT64, 2**40)), ("x-uint64", w.t_int(w.UINT64, 2**64 - 1)),
                 ("x-ipv4", w.t_ipv4("127.0.0.1")), ("x-ipv6", bytes([w.IPV6]) + bytes(16)),
                 ("x-binary", bytes([w.BINARY]) + w.string(b"\x00\xff")), ("", w.t_str(""))]
        hello_answer(hello_with(extra[:4] + [VERSIONS, MFS, CAPS] + extra[4:]))[0].close()

    @check
    def key_names_matched_in_full():
        hello_refused(hello_with([("supported-versionsx", w.t_str("2.0")), MFS, CAPS]), 5)
        hello_refused(hello_with([("supported-version", w.t_str("2.0")), MFS, CAPS]), 5)
        hello_refused(hello_with([VERSIONS, ("max-frame-sizex", w.t_uint32(16380)), CAPS]), 6)
        hello_refused(hello_with([VERSIONS, ("max-frame", w.t_uint32(16380)), CAPS]), 6)
        hello_refused(hello_with([VERSIONS, MFS, ("capabilitiesx", w.t_str("pipelining"))]), 7)
        # Decoys before the real keys must not be taken for them.
        hello_answer(hello_with([("supported-versions-x", w.t_str("3.0")), ("max-frame-sizes", w.t_uint32(100)),
                                 VERSIONS, ("max-frame-size", w.t_uint32(300)), CAPS]), 300)[0].close()

    @check
    def lists_with_spaces():
        hello_answer(w.hello_frame(versions=" 1.0 , 2.0 ", capabilities=" async , pipelining "))[0].close()

    @check
    def capabilities_only_pipelining_announced():
        hello_answer(w.hello_frame(capabilities="pipelining,async,fragmentation"))[0].close()

    return checks


def group_ids(agent, opts):
    checks, check = check_list()

    @check
    def ids_echoed_exactly():
        conn = open_session(agent)
        pairs = [(0, 0), (0, 1), (1, 1), (2, 7), (239, 240), (2287, 2288), (65535, 2**32 - 1),
                 (2**32, 2**32), (2**63, 1), (1, 2**63), (2**64 - 1, 2**64 - 1)]
        for stream_id, frame_id in pairs:
            conn.send(w.notify_frame(stream_id, frame_id, [UNHANDLED]))
            expect_placeholder(expect_ack(conn, stream_id, frame_id))
        conn.close()

    @check
    def odd_stream_ids_3x_style():
        conn = open_session(agent)
        for stream_id in (1, 3, 5, 7, 239, 241):
            conn.send(w.notify_frame(stream_id, 1, [route(None)]))
            expect_route_answer(expect_ack(conn, stream_id, 1), "missing-username")
        conn.close()

    @check
    def route_null_user():
        conn = open_session(agent)
        conn.send(w.notify_frame(0, 1, [route(None)]))
        expect_route_answer(expect_ack(conn, 0, 1), "missing-username")
        conn.close()

    @check
    def route_empty_user():
        conn = open_session(agent)
        conn.send(w.notify_frame(2, 1, [route("")]))
        expect_route_answer(expect_ack(conn, 2, 1), "missing-username")
        conn.close()

    @check
    def route_invalid_user():
        conn = open_session(agent)
        conn.send(w.notify_frame(2, 1, [route("Bad Name")]))
        expect_route_answer(expect_ack(conn, 2, 1), "invalid-username")
        conn.close()

    @check
    def empty_notify_gets_placeholder():
        conn = open_session(agent)
        conn.send(w.notify_frame(9, 1, []))
        expect_placeholder(expect_ack(conn, 9, 1))
        conn.close()

    @check
    def pipelined_64_in_one_write():
        conn = open_session(agent)
        kinds = [("unknown", [UNHANDLED]), ("null", [route(None)]), ("bad", [route("Bad Name")]),
                 ("empty", [])]
        sent, data = {}, b""
        for i in range(64):
            ids = (2 * i + 1 if i % 2 else 2**40 + i, 1 + i % 3)
            kind, messages = kinds[i % 4]
            sent[ids] = kind
            data += w.notify_frame(ids[0], ids[1], messages)
        conn.send(data)
        seen = set()
        for _ in range(64):
            f = expect_frame(conn, w.ACK)
            ids = (f.stream_id, f.frame_id)
            expect(ids in sent, "ACK for ids never sent: %s" % w.describe(f))
            expect(ids not in seen, "second ACK for %s" % (ids,))
            seen.add(ids)
            expect(len(actions(f)) >= 1, "ACK without action: %s" % w.describe(f))
            kind = sent[ids]
            if kind in ("unknown", "empty"):
                expect_placeholder(f)
            else:
                expect_route_answer(f, "missing-username" if kind == "null" else "invalid-username")
        conn.close()

    @check
    def hello_and_notify_in_one_write():
        conn = agent.connect()
        conn.send(w.hello_frame() + w.notify_frame(1, 1, [route(None)]))
        expect_agent_hello(conn)
        expect_route_answer(expect_ack(conn, 1, 1), "missing-username")
        conn.close()

    @check
    def split_at_every_byte():
        data = w.hello_frame() + w.notify_frame(3, 1, [route(None)]) + w.notify_frame(5, 2, [UNHANDLED])
        for cut in range(1, len(data)):
            conn = agent.connect()
            conn.send(data[:cut])
            time.sleep(0.01)
            conn.send(data[cut:])
            expect_agent_hello(conn)
            expect_route_answer(expect_ack(conn, 3, 1), "missing-username")
            expect_placeholder(expect_ack(conn, 5, 2))
            conn.close()
        conn = agent.connect()  # and one byte per write
        for i in range(len(data)):
            conn.send(data[i:i + 1])
            time.sleep(0.002)
        expect_agent_hello(conn)
        expect_route_answer(expect_ack(conn, 3, 1), "missing-username")
        expect_placeholder(expect_ack(conn, 5, 2))
        conn.close()
        return "%d split points" % (len(data) - 1)

    @check
    def acks_out_of_order():
        conn = open_session(agent)
        conn.send(w.notify_frame(0, 1, [route("jack")]) + w.notify_frame(2, 1, [UNHANDLED]))
        expect_placeholder(expect_ack(conn, 2, 1))  # not held back behind the slow DNS lookup
        expect_route_answer(expect_ack(conn, 0, 1, DNS_TIMEOUT), "dns-error", label="jack")
        conn.close()

    return checks


def group_replay(agent, opts):
    checks = []
    for filename in ("haproxy-2.6.12.frames", "haproxy-3.5-dev5.frames"):
        version = "2.6" if "2.6" in filename else "3.5"
        conns = load_capture(opts.captures / filename)
        for number in sorted(conns):
            checks.append(make_replay(agent, version, number, conns[number]))
    return checks


def expected_route_reason(notify):
    """What the agent must answer for a captured NOTIFY, from its `route` user argument."""
    payload, pos = notify.payload, 0
    while pos < len(payload):
        name, pos = w.read_string(payload, pos)
        nargs = payload[pos]
        pos += 1
        args = {}
        for _ in range(nargs):
            arg, pos = w.read_string(payload, pos)
            args[arg], pos = w.read_typed(payload, pos)
        if name == b"route":
            user = args[b"user"]
            if user[0] == w.NULL or user[1] == b"":
                return "missing-username", None
            if user[1] == b"jack":
                return "dns-error", "jack"
            return "invalid-username", None  # Jäck.Doe@Example.com in strict mode
    return None, None


def make_replay(agent, version, number, frames):
    def replay():
        conn = agent.connect()
        notifies, answers = [], 0
        for direction, ftype, data in frames:
            if direction != "H>A":
                continue
            if ftype == "HAPROXY-HELLO":
                conn.send(data)
                healthcheck = w.string("healthcheck") in data
                expect_agent_hello(conn, capabilities=(b"", b"pipelining") if healthcheck else (b"pipelining",))
            elif ftype == "NOTIFY":
                conn.send(data)  # pipelined, as HAProxy does: no wait for the ACK
                notifies.append(w.parse_frame(data)[0])
            elif ftype == "HAPROXY-DISCONNECT":
                answers += collect_acks(conn, notifies)
                notifies = []
                conn.send(data)
                expect_disconnect(conn, 0)
        answers += collect_acks(conn, notifies)
        conn.close()
        return "%d ACKs" % answers if answers else None
    replay.__name__ = "%s_connection_%d" % (version, number)
    return replay


def collect_acks(conn, notifies):
    pending = {(n.stream_id, n.frame_id): n for n in notifies}
    while pending:
        f = expect_frame(conn, w.ACK, DNS_TIMEOUT)
        notify = pending.pop((f.stream_id, f.frame_id), None)
        expect(notify is not None, "ACK for ids not pending: %s" % w.describe(f))
        expect(f.ids_raw == notify.ids_raw, "ACK id bytes %s, NOTIFY had %s" % (f.ids_raw.hex(), notify.ids_raw.hex()))
        reason, label = expected_route_reason(notify)
        expect_route_answer(f, reason, label)
    return len(notifies)


def group_errors(agent, opts):
    checks, check = check_list()

    def refused(data, status, hello=True, max_frame_size=OUR_MAX_FRAME_SIZE):
        conn = open_session(agent, max_frame_size) if hello else agent.connect()
        conn.send(data)
        expect_disconnect(conn, status)
        conn.close()

    notify_head = bytes([w.NOTIFY]) + b"\x00\x00\x00\x01" + w.varint(1) + w.varint(1)

    @check
    def oversized_frame():
        # Only the length and the frame's first bytes: the length alone must be refused.
        refused((OUR_MAX_FRAME_SIZE + 1).to_bytes(4, "big") + notify_head, 3)

    def padded_notify(size):
        """A NOTIFY whose length field is exactly `size`."""
        data = w.notify_frame(1, 1, [w.message("pad", [("p", w.t_str(b"x" * (size - 40)))])])
        data = w.notify_frame(1, 1, [w.message("pad", [("p", w.t_str(b"x" * (size - 40 + size + 4 - len(data))))])])
        expect(len(data) == size + 4, "test bug: frame is %d bytes" % len(data))
        return data

    @check
    def frame_of_exactly_max_frame_size():
        conn = open_session(agent)
        conn.send(padded_notify(OUR_MAX_FRAME_SIZE))
        expect_placeholder(expect_ack(conn, 1, 1))
        conn.close()

    @check
    def oversized_for_negotiated_300():
        conn = open_session(agent, 300)
        conn.send(padded_notify(300))  # exactly max-frame-size: accepted
        expect_placeholder(expect_ack(conn, 1, 1))
        conn.send((301).to_bytes(4, "big") + notify_head)
        expect_disconnect(conn, 3)
        conn.close()

    @check
    def oversized_before_hello():
        refused(b"\xff\xff\xff\xff" + notify_head, (3, 4), hello=False)

    @check
    def zero_length_frame():
        refused(b"\x00\x00\x00\x00", 4)

    @check
    def zero_length_frame_before_hello():
        refused(b"\x00\x00\x00\x00", 4, hello=False)

    @check
    def frame_shorter_than_its_header():
        refused(b"\x00\x00\x00\x03\x03\x00\x00", 4)
        refused(b"\x00\x00\x00\x06\x03\x00\x00\x00\x01\xf0", 4)  # stream-id varint cut short

    @check
    def notify_before_hello():
        refused(w.notify_frame(1, 1, [UNHANDLED]), 4, hello=False)

    @check
    def notify_without_fin():
        refused(w.notify_frame(1, 1, [UNHANDLED], flags=0), 10)

    @check
    def malformed_notify_payloads():
        bad = [w.notify_frame(1, 1, [w.string("route") + b"\x02" + w.string("user") + w.t_null()]),  # 2 args, 1 sent
               w.notify_frame(1, 1, [w.string("route") + b"\x01" + w.string("user") + b"\x08\x20ab"]),  # string past end
               w.notify_frame(1, 1, [w.string("route") + b"\x01" + w.string("user") + b"\x0a"]),  # type 10
               w.notify_frame(1, 1, [w.string("route") + b"\x01" + w.string("user") + b"\x06\x7f"]),  # short IPv4
               w.notify_frame(1, 1, [b"\x40route"])]  # message name length past end
        for data in bad:
            refused(data, 4)

    @check
    def truncated_frames_then_close():
        hello = w.hello_frame()
        for cut in (1, 3, 4, 10, len(hello) - 1):
            conn = agent.connect()
            conn.send(hello[:cut])
            conn.close()
        notify = w.notify_frame(1, 1, [route(None)])
        for cut in (2, 4, 9, len(notify) - 1):
            conn = open_session(agent)
            conn.send(notify[:cut])
            conn.close()
        time.sleep(0.2)
        expect_healthy(agent)

    @check
    def random_garbage():
        return garbage(agent, opts.seed, opts.garbage)

    @check
    def still_healthy_afterwards():
        expect_healthy(agent)

    return checks


def garbage_inputs(seed, count):
    rng = random.Random(seed)
    hello = w.hello_frame()
    notify = w.notify_frame(7, 1, [route(None), UNHANDLED])

    def mutate(data):
        data = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if rng.random() < 0.3:
            data = data[:rng.randrange(1, len(data) + 1)]
        return bytes(data)

    for i in range(count):
        kind = i % 4
        if kind == 0:
            yield bytes(rng.randrange(256) for _ in range(rng.randint(1, 80)))
        elif kind == 1:
            yield mutate(hello)
        elif kind == 2:
            yield hello + mutate(notify)
        else:
            body = bytes([rng.randrange(256)]) + bytes(rng.randrange(256) for _ in range(rng.randint(4, 40)))
            yield hello + len(body).to_bytes(4, "big") + body


def garbage(agent, seed, count, batch=50, wait=1.0):
    """Each input on its own connection. Allowed: well-formed agent frames, ending in an
    AGENT-DISCONNECT with a known status before the close, or nothing more (the agent waits)."""
    inputs = list(garbage_inputs(seed, count))
    outcomes = {}
    for start in range(0, len(inputs), batch):
        agent.expect_running()
        conns = []
        for data in inputs[start:start + batch]:
            conn = agent.connect()
            conn.send(data)
            conn.sock.setblocking(False)
            conns.append((conn, data))
        sel = selectors.DefaultSelector()
        for conn, _ in conns:
            sel.register(conn.sock, selectors.EVENT_READ, conn)
        deadline = time.monotonic() + wait
        open_count = len(conns)
        while open_count and time.monotonic() < deadline:
            for key, _ in sel.select(deadline - time.monotonic()):
                conn = key.data
                try:
                    data = conn.sock.recv(65536)
                except BlockingIOError:
                    continue
                except ConnectionResetError:
                    data = b""
                conn.buf += data
                if not data:
                    conn.eof = True
                    sel.unregister(conn.sock)
                    open_count -= 1
        sel.close()
        for conn, data in conns:
            try:
                outcome = judge_garbage_answer(conn)
            except (CheckFailed, w.Malformed) as failure:
                raise CheckFailed("input %s: %s" % (data.hex(), failure))
            finally:
                conn.close()
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
    agent.expect_running()
    return ", ".join("%s: %d" % item for item in sorted(outcomes.items()))


def judge_garbage_answer(conn):
    frames = []
    while (f := conn.next_frame()) is not None:
        frames.append(f)
    expect(not conn.buf, "partial frame %s" % conn.buf.hex())
    hello_seen = False
    for i, f in enumerate(frames):
        expect(f.type in (w.AGENT_HELLO, w.ACK, w.AGENT_DISCONNECT) and f.flags == w.FIN,
               "unexpected %s" % w.describe(f))
        if f.type == w.AGENT_HELLO:
            expect(i == 0, "AGENT-HELLO not first")
            hello_seen = True
        if f.type == w.ACK:
            expect(hello_seen and len(w.read_actions(f.payload)) >= 1, "bad ACK %s" % w.describe(f))
        if f.type == w.AGENT_DISCONNECT:
            expect(i == len(frames) - 1, "frames after AGENT-DISCONNECT")
            status = kv_dict(f).get("status-code")
            expect(status and status[0] == w.UINT32 and status[1] in w.STATUS, "bad status %r" % (status,))
    if conn.eof:
        expect(frames and frames[-1].type == w.AGENT_DISCONNECT, "closed without AGENT-DISCONNECT")
        return "disconnect %d" % kv_dict(frames[-1])["status-code"][1]
    expect(not frames or frames[-1].type != w.AGENT_DISCONNECT, "AGENT-DISCONNECT but no close")
    return "waiting"


def group_disconnect(agent, opts):
    checks, check = check_list()

    @check
    def haproxy_disconnect():
        conn = open_session(agent)
        conn.send(w.disconnect_frame(0, "normal"))
        expect_disconnect(conn, 0)
        conn.close()

    @check
    def haproxy_disconnect_captured_2_6():
        cap = load_capture(opts.captures / "haproxy-2.6.12.frames")
        conn = open_session(agent)
        conn.send(capture_frame(cap, 4, "HAPROXY-DISCONNECT"))
        expect_disconnect(conn, 0)
        conn.close()

    @check
    def haproxy_disconnect_with_work_in_flight():
        conn = open_session(agent)
        conn.send(w.notify_frame(0, 1, [route("jack")]) + w.disconnect_frame(0, "normal"))
        # HAProxy ignores frames other than AGENT-DISCONNECT here; nothing may follow it.
        f = conn.recv_frame()
        while f is not None and f.type == w.ACK:
            f = conn.recv_frame()
        expect(f is not None and f.type == w.AGENT_DISCONNECT, "expected AGENT-DISCONNECT, got %s" % (
            f and w.describe(f)))
        expect(kv_dict(f).get("status-code") == (w.UINT32, 0), "status %r" % kv_dict(f))
        conn.expect_closed(DNS_TIMEOUT)
        conn.close()
        time.sleep(DNS_TIMEOUT / 4)  # let the lookup finish against the closed connection
        expect_healthy(agent)

    @check
    def abrupt_close_with_work_in_flight():
        warm = open_session(agent)  # one lookup first: the resolver may keep its socket open
        warm.send(w.notify_frame(1, 1, [route("warm-up")]))
        expect_route_answer(expect_ack(warm, 1, 1, DNS_TIMEOUT), "dns-error", label="warm-up")
        warm.close()
        time.sleep(0.5)
        baseline = agent.fd_count()
        for i in range(20):
            conn = open_session(agent)
            conn.send(w.notify_frame(1, 1, [route("user-%d" % i)]) + w.notify_frame(3, 1, [UNHANDLED]))
            time.sleep(0.01)
            # RST instead of FIN: the ACKs are written to a connection that is gone.
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
        time.sleep(DNS_TIMEOUT / 4)  # the lookups finish after their connections are gone
        expect_healthy(agent)
        return settle_fds(agent, baseline)

    @check
    def sigterm_with_idle_sessions():
        idle = open_session(agent)
        used = open_session(agent)
        used.send(w.notify_frame(1, 1, [UNHANDLED]))
        expect_placeholder(expect_ack(used, 1, 1))
        agent.proc.send_signal(signal.SIGTERM)
        for conn in (idle, used):
            expect_disconnect(conn, 0, timeout=8.0)
            conn.close()
        try:
            code = agent.proc.wait(10)
        except subprocess.TimeoutExpired:
            raise CheckFailed("the agent did not exit within 10s of SIGTERM")
        expect(code == 0, "exit code %d after SIGTERM" % code)

    return checks


def group_scale(agent, opts):
    checks, check = check_list()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2048:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(2048, hard), hard))
    state = {}

    @check
    def baseline():
        expect_healthy(agent)
        time.sleep(0.5)
        state["fds"] = agent.fd_count()
        return "%d descriptors" % state["fds"]

    @check
    def connections_300_simultaneous():
        conns = [agent.connect() for _ in range(300)]
        for conn in conns:
            conn.send(w.hello_frame())
        for conn in conns:
            expect_agent_hello(conn)
        for i, conn in enumerate(conns):
            conn.send(w.notify_frame(2 * i + 1, 1, [route(None)]))
        for i, conn in enumerate(conns):
            expect_route_answer(expect_ack(conn, 2 * i + 1, 1, 15.0), "missing-username")
        for conn in conns:
            conn.close()
        return settle_fds(agent, state["fds"])

    @check
    def pipelined_5000_in_one_write():
        conn = open_session(agent)
        count = 5000
        conn.send(b"".join(w.notify_frame(2 * i + 1, 1, [route(None) if i % 2 else UNHANDLED])
                           for i in range(count)))
        seen = set()
        for _ in range(count):
            f = expect_frame(conn, w.ACK, 15.0)
            expect(f.stream_id % 2 == 1 and f.stream_id < 2 * count and f.frame_id == 1,
                   "unexpected %s" % w.describe(f))
            expect(f.stream_id not in seen, "second ACK for stream %d" % f.stream_id)
            seen.add(f.stream_id)
            if f.stream_id // 2 % 2:
                expect_route_answer(f, "missing-username")
            else:
                expect_placeholder(f)
        conn.close()
        return "%d ACKs" % count

    @check
    def cycles_1000_connect_hello_close():
        for i in range(1000):
            conn = agent.connect()
            style = i % 4
            if style == 0:  # close without reading the AGENT-HELLO
                conn.send(w.hello_frame())
            elif style == 1:  # health check
                conn.send(w.hello_frame(capabilities="", extra=[("healthcheck", w.t_bool(True))]))
                expect_agent_hello(conn, capabilities=(b"", b"pipelining"))
            elif style == 2:  # orderly HAProxy-side disconnect
                conn.send(w.hello_frame())
                expect_agent_hello(conn)
                conn.send(w.disconnect_frame())
                expect_disconnect(conn, 0)
            else:
                conn.send(w.hello_frame())
                expect_agent_hello(conn)
            conn.close()
        return settle_fds(agent, state["fds"])

    @check
    def still_answers():
        expect_healthy(agent)

    return checks


def settle_fds(agent, baseline, settle=5.0):
    deadline = time.monotonic() + settle
    while True:
        agent.expect_running()
        count = agent.fd_count()
        if count <= baseline:
            return "descriptors back to %d (baseline %d)" % (count, baseline)
        if time.monotonic() > deadline:
            raise CheckFailed("%d descriptors %.0fs after closing, baseline %d: %s" % (
                count, settle, baseline, sorted(os.readlink("/proc/%d/fd/%s" % (agent.pid, fd))
                                                for fd in os.listdir("/proc/%d/fd" % agent.pid))[:20]))
        time.sleep(0.1)


GROUPS = {"handshake": group_handshake, "ids": group_ids, "replay": group_replay,
          "errors": group_errors, "disconnect": group_disconnect, "scale": group_scale}


def run_group(name, opts):
    """Runs one group against a fresh agent; returns the number of failures."""
    try:
        agent = Agent(opts.agent)
    except (OSError, RuntimeError) as failure:
        print("FAIL %s: cannot start the agent: %s" % (name, failure))
        return 1
    failures = 0
    try:
        for fn in GROUPS[name](agent, opts):
            label = "%s/%s" % (name, fn.__name__.replace("_", "-"))
            started = time.monotonic()
            SENT.clear()
            try:
                detail = fn()
                print("PASS %s (%.2fs)%s" % (label, time.monotonic() - started, ": " + detail if detail else ""))
            except Exception as failure:  # CheckFailed, w.Malformed (bad bytes), OSError, ...
                failures += 1
                print("FAIL %s: %s: %s" % (label, type(failure).__name__, failure))
                for data in SENT:
                    print("     sent: %s%s" % (data[:100].hex(), "..." if len(data) > 100 else ""))
                if not agent.running():
                    print("     agent exited with %s; log:\n%s" % (agent.proc.returncode, agent.log_tail()))
            sys.stdout.flush()
        if agent.running():  # every group ends with a clean shutdown
            code = agent.terminate()
            ok = code == 0
            failures += not ok
            print("%s %s/clean-exit: exit code %s after SIGTERM" % ("PASS" if ok else "FAIL", name, code))
    finally:
        agent.kill()
    return failures


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agent", required=True, help="path to the director-agent binary")
    parser.add_argument("--captures", type=Path, default=DEFAULT_CAPTURES, help="directory of the .frames files")
    parser.add_argument("--seed", type=int, default=20240611, help="seed of the random garbage")
    parser.add_argument("--garbage", type=int, default=300, help="number of random garbage inputs")
    parser.add_argument("groups", nargs="*", metavar="GROUP", help=" ".join(GROUPS))
    opts = parser.parse_args()
    for name in opts.groups:
        if name not in GROUPS:
            parser.error("unknown group %r; groups: %s" % (name, " ".join(GROUPS)))
    failures = sum(run_group(name, opts) for name in (opts.groups or GROUPS))
    print("%d check(s) failed" % failures if failures else "all checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
