#!/usr/bin/env python3
"""Black-box SPOP conformance tests for director-agent (unittest).

Starts the real binary on 127.0.0.1 (tools/agent.py), talks to it with raw bytes built by
spop_wire.py (written from SPOE.txt section 3 and HAProxy's sources, independently of the
agent's C++ codec) and replays the HAProxy 2.6.12 and 3.5 captures verbatim. Loopback only;
python3 stdlib only.

    spop_conformance.py --agent build/default/agent/director-agent [GROUP ...]

Groups: handshake ids replay errors disconnect scale (default: all). Each group is a test case
class with an agent of its own; its tests run in the order written, and the last one checks
that the agent exits with 0 on SIGTERM. Exits 1 when a test fails.
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
import time
import unittest
from collections import deque
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1] / "tools"))
import spop_wire as w  # noqa: E402
from agent import AgentProcess  # noqa: E402
from testing import clean_environment, test_failed  # noqa: E402

DEFAULT_CAPTURES = HERE.parent / "data" / "spop-captures"
OUR_MAX_FRAME_SIZE = 16380  # passed to the agent with --max-frame-size
HOST_PREFIX = "vscode"      # passed with --container-host-prefix
TIMEOUT = 5.0               # seconds to wait for an answer that should come at once
DNS_TIMEOUT = 10.0          # a route for a valid user waits for the (dead) DNS server
OPTIONS = None              # the command line (main)


# --- one connection -----------------------------------------------------------------------

SENT = deque(maxlen=3)  # the last writes, shown when a test fails


class Conn:
    def __init__(self, address):
        self.sock = socket.create_connection(address, TIMEOUT)
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
        """A whole frame from the buffer, or None. AssertionError for a frame larger than the
        negotiated max-frame-size."""
        parsed = w.parse_frame(self.buf)
        if parsed is None:
            return None
        f, n = parsed
        del self.buf[:n]
        if n - 4 > self.max_frame_size:
            raise AssertionError("%s of %d bytes exceeds max-frame-size %d" % (
                w.FRAME_NAMES.get(f.type, f.type), n - 4, self.max_frame_size))
        return f

    def recv_frame(self, timeout=TIMEOUT):
        """The next frame; None when the agent closed; AssertionError on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            f = self.next_frame()
            if f is not None:
                return f
            if self.eof:
                if self.buf:
                    raise AssertionError("the agent closed after a partial frame: %s" % self.buf.hex())
                return None
            if not self.read_some(deadline - time.monotonic()) and time.monotonic() >= deadline:
                raise AssertionError("no frame within %.1fs (partial bytes: %r)" % (timeout, self.buf.hex()))

    def close(self):
        self.sock.close()


# --- the tests' base class: the agent and expectations on frames ---------------------------

class InOrder(unittest.TestLoader):
    """Runs a class's tests in the order written (they share one agent), test_clean_exit last."""

    def getTestCaseNames(self, case_class):
        def position(name):
            return name == "test_clean_exit", getattr(case_class, name).__code__.co_firstlineno
        return sorted(super().getTestCaseNames(case_class), key=position)


class AgentTest(unittest.TestCase):
    """One agent for all tests of the class; the last writes and the agent's log are printed
    when a test fails."""

    maxDiff = None

    @classmethod
    def setUpClass(cls):
        # A DNS "server" that never answers: lookups time out (reason dns-error).
        cls.dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        cls.dns.bind(("127.0.0.1", 0))
        env = clean_environment()
        cls.agent = AgentProcess(
            ["--dns-server", "127.0.0.1:%d" % cls.dns.getsockname()[1], "--threads", "2",
             "--max-frame-size", str(OUR_MAX_FRAME_SIZE), "--container-host-prefix", HOST_PREFIX,
             "--username-mode", "strict"], binary=OPTIONS.agent, env=env)

    @classmethod
    def tearDownClass(cls):
        cls.agent.kill()
        cls.dns.close()

    def setUp(self):
        SENT.clear()

    def tearDown(self):
        if test_failed(self):
            for data in SENT:
                print("     sent: %s%s" % (data[:100].hex(), "..." if len(data) > 100 else ""), file=sys.stderr)
            if not self.agent.running():
                print("     agent exited with %s; log:\n%s" % (self.agent.proc.returncode, self.agent.log_tail(15)),
                      file=sys.stderr)

    def test_clean_exit(self):
        """Every group ends with a clean shutdown: exit code 0 on SIGTERM."""
        self.assertEqual(self.agent.stop(), 0)

    # --- the agent ---

    def assert_running(self):
        self.assertTrue(self.agent.running(), "the agent is not running (exit code %s)" % self.agent.proc.returncode)

    def connect(self):
        self.assert_running()
        return Conn(self.agent.spop)

    def settle_fds(self, baseline, settle=5.0):
        """Waits until the agent holds no more descriptors than `baseline`."""
        deadline = time.monotonic() + settle
        while True:
            self.assert_running()
            count = self.agent.fd_count()
            if count <= baseline:
                return
            if time.monotonic() > deadline:
                pid = self.agent.pid
                self.fail("%d descriptors %.0fs after closing, baseline %d: %s" % (
                    count, settle, baseline, sorted(os.readlink("/proc/%d/fd/%s" % (pid, fd))
                                                    for fd in os.listdir("/proc/%d/fd" % pid))[:20]))
            time.sleep(0.1)

    # --- expectations on frames ---

    def expect_closed(self, conn, timeout=TIMEOUT):
        f = conn.recv_frame(timeout) if not conn.eof or conn.buf else None
        self.assertIsNone(f, "expected the agent to close, got %s" % (f and w.describe(f)))

    def expect_frame(self, conn, ftype, timeout=TIMEOUT):
        name = w.FRAME_NAMES[ftype]
        f = conn.recv_frame(timeout)
        self.assertTrue(f is not None, "expected %s, the agent closed the connection" % name)
        self.assertTrue(f.type == ftype, "expected %s, got %s" % (name, w.describe(f)))
        self.assertTrue(f.flags == w.FIN, "%s flags are %#x, expected FIN only" % (name, f.flags))
        return f

    def kv_dict(self, f):
        items = w.read_kv_list(f.payload)
        names = [name for name, _ in items]
        self.assertTrue(len(set(names)) == len(names), "duplicate keys in %s" % w.describe(f))
        return {name.decode(): value for name, value in items}

    def expect_agent_hello(self, conn, max_frame_size=OUR_MAX_FRAME_SIZE, capabilities=(b"pipelining",)):
        f = self.expect_frame(conn, w.AGENT_HELLO)
        self.assertTrue((f.stream_id, f.frame_id) == (0, 0), "AGENT-HELLO ids must be 0: %s" % w.describe(f))
        kv = self.kv_dict(f)
        self.assertTrue(kv.get("version") == (w.STRING, b"2.0"), "version: %r (want STRING 2.0)" % (kv.get("version"),))
        self.assertTrue(kv.get("max-frame-size") == (w.UINT32, max_frame_size),
                        "max-frame-size: %r (want UINT32 %d)" % (kv.get("max-frame-size"), max_frame_size))
        self.assertTrue("capabilities" in kv, "no capabilities key: %s" % w.describe(f))
        self.assertTrue(kv["capabilities"][0] == w.STRING and kv["capabilities"][1] in capabilities,
                        "capabilities: %r (want one of %r)" % (kv["capabilities"], capabilities))
        conn.max_frame_size = max_frame_size
        return f

    def expect_disconnect(self, conn, status, timeout=TIMEOUT):
        """AGENT-DISCONNECT with this status (or one of these statuses), then the close."""
        statuses = status if isinstance(status, tuple) else (status,)
        f = self.expect_frame(conn, w.AGENT_DISCONNECT, timeout)
        self.assertTrue((f.stream_id, f.frame_id) == (0, 0), "AGENT-DISCONNECT ids must be 0: %s" % w.describe(f))
        kv = self.kv_dict(f)
        got = kv.get("status-code")
        self.assertTrue(got is not None and got[0] == w.UINT32 and got[1] in statuses,
                        "status-code %r, want UINT32 %s; message %r" % (got, statuses, kv.get("message")))
        self.assertTrue(kv.get("message", (None,))[0] == w.STRING, "message must be a STRING: %r" % (kv.get("message"),))
        self.expect_closed(conn, timeout)
        return got[1]

    def open_session(self, max_frame_size=OUR_MAX_FRAME_SIZE):
        conn = self.connect()
        conn.send(w.hello_frame(max_frame_size=max_frame_size))
        self.expect_agent_hello(conn, min(max_frame_size, OUR_MAX_FRAME_SIZE))
        return conn

    def expect_ack(self, conn, stream_id, frame_id, timeout=TIMEOUT):
        f = self.expect_frame(conn, w.ACK, timeout)
        self.assertTrue((f.stream_id, f.frame_id) == (stream_id, frame_id),
                        "ACK ids (%d, %d), want (%d, %d)" % (f.stream_id, f.frame_id, stream_id, frame_id))
        self.assertTrue(f.ids_raw == w.varint(stream_id) + w.varint(frame_id),
                        "ACK id bytes %s, want %s" % (f.ids_raw.hex(), (w.varint(stream_id) + w.varint(frame_id)).hex()))
        return f

    def expect_placeholder(self, f):
        got = [a[:4] for a in actions(f)]
        self.assertTrue(got == PLACEHOLDER, "ACK for an unknown message: %r, want set-var(txn.unhandled, true)" % got)
        self.assertTrue(f.payload.endswith(b"\x11"), "BOOL true must be 0x11: %s" % f.payload.hex())

    def route_vars(self, f):
        """The variables a `route` ACK sets: {name: (type, value)}; all must be set-var in txn."""
        out = {}
        for action, scope, name, value in actions(f):
            self.assertTrue(action == w.SET_VAR and scope == w.SCOPE_TXN,
                            "route ACK action %d scope %d (%r), want set-var in txn" % (action, scope, name))
            self.assertTrue(name.decode() not in out, "variable %r set twice" % name)
            out[name.decode()] = value
        return out

    def expect_route_answer(self, f, reason, label=None):
        v = self.route_vars(f)
        self.assertTrue(v.get("alive") == (w.BOOL, False), "alive: %r, want BOOL false" % (v.get("alive"),))
        self.assertTrue(v.get("reason") == (w.STRING, reason.encode()), "reason: %r, want %r" % (v.get("reason"), reason))
        want = {"alive", "reason"} | ({"label", "host"} if label else set())
        if reason == "invalid-username":  # the name as the 400 page shows it
            want.add("refused_username")
            shown = v.get("refused_username", (None, b""))
            self.assertTrue(shown[0] == w.STRING and all(0x20 <= b < 0x7f and b not in b"<>&\"'" for b in shown[1]),
                            "refused_username: %r, want printable ASCII without markup" % (shown,))
        self.assertTrue(set(v) == want, "variables %s, want %s" % (sorted(v), sorted(want)))
        if label:
            self.assertTrue(v["label"] == (w.STRING, label.encode()), "label: %r, want %r" % (v["label"], label))
            host = v["host"]
            self.assertTrue(host[0] == w.STRING and (host[1] == ("%s-%s" % (HOST_PREFIX, label)).encode()),
                            "host: %r, want %s-%s" % (host, HOST_PREFIX, label))
        # false is BOOL with the flag clear (0x01), never NULL (0x00): find the raw byte after "alive".
        raw = f.payload
        at = raw.find(w.string("alive")) + len(w.string("alive"))
        self.assertTrue(raw[at] == 0x01, "alive is encoded as %#04x, want 0x01" % raw[at])

    def expect_healthy(self):
        """A fresh session still completes a NOTIFY/ACK round trip."""
        self.assert_running()
        conn = self.open_session()
        conn.send(w.notify_frame(1, 1, [UNHANDLED]))
        self.expect_placeholder(self.expect_ack(conn, 1, 1))
        conn.close()


def actions(f):
    """[(action, scope, name, (type, value) or None)] of an ACK."""
    return w.read_actions(f.payload)


UNHANDLED = w.message("no-such-message", [("x", w.t_str("y"))])
PLACEHOLDER = [(w.SET_VAR, w.SCOPE_TXN, b"unhandled", (w.BOOL, True))]


def route(user):
    """The `route` message of docs/architecture.md; user None is sent as NULL."""
    return w.message("route", [("user", w.t_null() if user is None else w.t_str(user))])


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


# === the groups: a test case class each ======================================================

def hello_with(pairs):
    return w.frame(w.HAPROXY_HELLO, w.kv_list(pairs))


VERSIONS = ("supported-versions", w.t_str("2.0"))
MFS = ("max-frame-size", w.t_uint32(16380))
CAPS = ("capabilities", w.t_str("pipelining"))


class Handshake(AgentTest):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.cap26 = load_capture(OPTIONS.captures / "haproxy-2.6.12.frames")
        cls.cap35 = load_capture(OPTIONS.captures / "haproxy-3.5-dev5.frames")

    def hello_answer(self, frame_bytes, max_frame_size=OUR_MAX_FRAME_SIZE, capabilities=(b"pipelining",)):
        conn = self.connect()
        conn.send(frame_bytes)
        f = self.expect_agent_hello(conn, max_frame_size, capabilities)
        return conn, f

    def hello_refused(self, frame_bytes, status):
        conn = self.connect()
        conn.send(frame_bytes)
        self.expect_disconnect(conn, status)
        conn.close()

    def test_hello_2_6_capture(self):
        conn, f = self.hello_answer(capture_frame(self.cap26, 4, "HAPROXY-HELLO"))
        kv = self.kv_dict(f)
        self.assertTrue(set(kv) == {"version", "max-frame-size", "capabilities"}, "keys: %s" % sorted(kv))
        conn.send(w.notify_frame(0, 1, [UNHANDLED]))  # 2.6 uses stream-id 0
        self.expect_placeholder(self.expect_ack(conn, 0, 1))
        conn.close()

    def test_hello_3_5_healthcheck_capture(self):
        conn, f = self.hello_answer(capture_frame(self.cap35, 1, "HAPROXY-HELLO"), capabilities=(b"", b"pipelining"))
        conn.close()  # HAProxy closes after the AGENT-HELLO
        self.expect_healthy()

    def test_hello_3_5_capture(self):
        conn, _ = self.hello_answer(capture_frame(self.cap35, 4, "HAPROXY-HELLO"))
        conn.send(w.notify_frame(1, 1, [UNHANDLED]))  # 3.x: odd stream-ids per connection
        self.expect_placeholder(self.expect_ack(conn, 1, 1))
        conn.close()

    def test_max_frame_size_larger_than_ours(self):
        self.hello_answer(w.hello_frame(max_frame_size=65535), OUR_MAX_FRAME_SIZE)[0].close()

    def test_max_frame_size_300(self):
        self.hello_answer(w.hello_frame(max_frame_size=300), 300)[0].close()

    def test_max_frame_size_256(self):
        self.hello_answer(w.hello_frame(max_frame_size=256), 256)[0].close()

    def test_max_frame_size_100_refused(self):
        self.hello_refused(w.hello_frame(max_frame_size=100), 9)

    def test_max_frame_size_255_refused(self):
        self.hello_refused(w.hello_frame(max_frame_size=255), 9)

    def test_no_supported_versions(self):
        self.hello_refused(hello_with([MFS, CAPS]), 5)

    def test_only_version_3_0(self):
        self.hello_refused(w.hello_frame(versions="3.0"), 8)

    def test_no_max_frame_size(self):
        self.hello_refused(hello_with([VERSIONS, CAPS]), 6)

    def test_no_capabilities(self):
        self.hello_refused(hello_with([VERSIONS, MFS]), 7)

    def test_keys_in_any_order(self):
        self.hello_answer(hello_with([("engine-id", w.t_str("e")), ("max-frame-size", w.t_uint32(1000)),
                                 CAPS, ("healthcheck", w.t_bool(False)), VERSIONS]), 1000)[0].close()

    def test_unknown_keys_of_every_type_ignored(self):
        extra = [("x-null", w.t_null()), ("x-bool", w.t_bool(True)), ("x-int32", w.t_int(w.INT32, 7)),
                 ("x-int64", w.t_int(w.INT64, 2**40)), ("x-uint64", w.t_int(w.UINT64, 2**64 - 1)),
                 ("x-ipv4", w.t_ipv4("127.0.0.1")), ("x-ipv6", bytes([w.IPV6]) + bytes(16)),
                 ("x-binary", bytes([w.BINARY]) + w.string(b"\x00\xff")), ("", w.t_str(""))]
        self.hello_answer(hello_with(extra[:4] + [VERSIONS, MFS, CAPS] + extra[4:]))[0].close()

    def test_key_names_matched_in_full(self):
        self.hello_refused(hello_with([("supported-versionsx", w.t_str("2.0")), MFS, CAPS]), 5)
        self.hello_refused(hello_with([("supported-version", w.t_str("2.0")), MFS, CAPS]), 5)
        self.hello_refused(hello_with([VERSIONS, ("max-frame-sizex", w.t_uint32(16380)), CAPS]), 6)
        self.hello_refused(hello_with([VERSIONS, ("max-frame", w.t_uint32(16380)), CAPS]), 6)
        self.hello_refused(hello_with([VERSIONS, MFS, ("capabilitiesx", w.t_str("pipelining"))]), 7)
        # Decoys before the real keys must not be taken for them.
        self.hello_answer(hello_with([("supported-versions-x", w.t_str("3.0")), ("max-frame-sizes", w.t_uint32(100)),
                                 VERSIONS, ("max-frame-size", w.t_uint32(300)), CAPS]), 300)[0].close()

    def test_lists_with_spaces(self):
        self.hello_answer(w.hello_frame(versions=" 1.0 , 2.0 ", capabilities=" async , pipelining "))[0].close()

    def test_capabilities_only_pipelining_announced(self):
        self.hello_answer(w.hello_frame(capabilities="pipelining,async,fragmentation"))[0].close()


class Ids(AgentTest):
    def test_ids_echoed_exactly(self):
        conn = self.open_session()
        pairs = [(0, 0), (0, 1), (1, 1), (2, 7), (239, 240), (2287, 2288), (65535, 2**32 - 1),
                 (2**32, 2**32), (2**63, 1), (1, 2**63), (2**64 - 1, 2**64 - 1)]
        for stream_id, frame_id in pairs:
            conn.send(w.notify_frame(stream_id, frame_id, [UNHANDLED]))
            self.expect_placeholder(self.expect_ack(conn, stream_id, frame_id))
        conn.close()

    def test_odd_stream_ids_3x_style(self):
        conn = self.open_session()
        for stream_id in (1, 3, 5, 7, 239, 241):
            conn.send(w.notify_frame(stream_id, 1, [route(None)]))
            self.expect_route_answer(self.expect_ack(conn, stream_id, 1), "missing-username")
        conn.close()

    def test_route_null_user(self):
        conn = self.open_session()
        conn.send(w.notify_frame(0, 1, [route(None)]))
        self.expect_route_answer(self.expect_ack(conn, 0, 1), "missing-username")
        conn.close()

    def test_route_empty_user(self):
        conn = self.open_session()
        conn.send(w.notify_frame(2, 1, [route("")]))
        self.expect_route_answer(self.expect_ack(conn, 2, 1), "missing-username")
        conn.close()

    def test_route_invalid_user(self):
        conn = self.open_session()
        conn.send(w.notify_frame(2, 1, [route("Bad Name")]))
        self.expect_route_answer(self.expect_ack(conn, 2, 1), "invalid-username")
        conn.close()

    def test_empty_notify_gets_placeholder(self):
        conn = self.open_session()
        conn.send(w.notify_frame(9, 1, []))
        self.expect_placeholder(self.expect_ack(conn, 9, 1))
        conn.close()

    def test_pipelined_64_in_one_write(self):
        conn = self.open_session()
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
            f = self.expect_frame(conn, w.ACK)
            ids = (f.stream_id, f.frame_id)
            self.assertTrue(ids in sent, "ACK for ids never sent: %s" % w.describe(f))
            self.assertTrue(ids not in seen, "second ACK for %s" % (ids,))
            seen.add(ids)
            self.assertTrue(len(actions(f)) >= 1, "ACK without action: %s" % w.describe(f))
            kind = sent[ids]
            if kind in ("unknown", "empty"):
                self.expect_placeholder(f)
            else:
                self.expect_route_answer(f, "missing-username" if kind == "null" else "invalid-username")
        conn.close()

    def test_hello_and_notify_in_one_write(self):
        conn = self.connect()
        conn.send(w.hello_frame() + w.notify_frame(1, 1, [route(None)]))
        self.expect_agent_hello(conn)
        self.expect_route_answer(self.expect_ack(conn, 1, 1), "missing-username")
        conn.close()

    def test_split_at_every_byte(self):
        data = w.hello_frame() + w.notify_frame(3, 1, [route(None)]) + w.notify_frame(5, 2, [UNHANDLED])
        for cut in range(1, len(data)):
            conn = self.connect()
            conn.send(data[:cut])
            time.sleep(0.01)
            conn.send(data[cut:])
            self.expect_agent_hello(conn)
            self.expect_route_answer(self.expect_ack(conn, 3, 1), "missing-username")
            self.expect_placeholder(self.expect_ack(conn, 5, 2))
            conn.close()
        conn = self.connect()  # and one byte per write
        for i in range(len(data)):
            conn.send(data[i:i + 1])
            time.sleep(0.002)
        self.expect_agent_hello(conn)
        self.expect_route_answer(self.expect_ack(conn, 3, 1), "missing-username")
        self.expect_placeholder(self.expect_ack(conn, 5, 2))
        conn.close()

    def test_acks_out_of_order(self):
        conn = self.open_session()
        conn.send(w.notify_frame(0, 1, [route("jack")]) + w.notify_frame(2, 1, [UNHANDLED]))
        self.expect_placeholder(self.expect_ack(conn, 2, 1))  # not held back behind the slow DNS lookup
        self.expect_route_answer(self.expect_ack(conn, 0, 1, DNS_TIMEOUT), "dns-error", label="jack")
        conn.close()


class Replay(AgentTest):
    """Every captured connection replayed verbatim, HAProxy's side only: a test each."""

    @classmethod
    def add_tests(cls, captures):
        for filename in ("haproxy-2.6.12.frames", "haproxy-3.5-dev5.frames"):
            version = "2_6" if "2.6" in filename else "3_5"
            conns = load_capture(captures / filename)
            for number in sorted(conns):
                def test(self, frames=conns[number]):
                    self.replay(frames)
                test.__name__ = "test_%s_connection_%d" % (version, number)
                setattr(cls, test.__name__, test)

    def replay(self, frames):
        conn = self.connect()
        notifies = []
        for direction, ftype, data in frames:
            if direction != "H>A":
                continue
            if ftype == "HAPROXY-HELLO":
                conn.send(data)
                healthcheck = w.string("healthcheck") in data
                self.expect_agent_hello(conn, capabilities=(b"", b"pipelining") if healthcheck else (b"pipelining",))
            elif ftype == "NOTIFY":
                conn.send(data)  # pipelined, as HAProxy does: no wait for the ACK
                notifies.append(w.parse_frame(data)[0])
            elif ftype == "HAPROXY-DISCONNECT":
                self.collect_acks(conn, notifies)
                notifies = []
                conn.send(data)
                self.expect_disconnect(conn, 0)
        self.collect_acks(conn, notifies)
        conn.close()

    def collect_acks(self, conn, notifies):
        pending = {(n.stream_id, n.frame_id): n for n in notifies}
        while pending:
            f = self.expect_frame(conn, w.ACK, DNS_TIMEOUT)
            notify = pending.pop((f.stream_id, f.frame_id), None)
            self.assertTrue(notify is not None, "ACK for ids not pending: %s" % w.describe(f))
            self.assertTrue(f.ids_raw == notify.ids_raw, "ACK id bytes %s, NOTIFY had %s" % (f.ids_raw.hex(), notify.ids_raw.hex()))
            reason, label = expected_route_reason(notify)
            self.expect_route_answer(f, reason, label)


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


class Errors(AgentTest):
    def refused(self, data, status, hello=True, max_frame_size=OUR_MAX_FRAME_SIZE):
        conn = self.open_session(max_frame_size) if hello else self.connect()
        conn.send(data)
        self.expect_disconnect(conn, status)
        conn.close()

    NOTIFY_HEAD = bytes([w.NOTIFY]) + b"\x00\x00\x00\x01" + w.varint(1) + w.varint(1)

    def test_oversized_frame(self):
        # Only the length and the frame's first bytes: the length alone must be refused.
        self.refused((OUR_MAX_FRAME_SIZE + 1).to_bytes(4, "big") + self.NOTIFY_HEAD, 3)

    def padded_notify(self, size):
        """A NOTIFY whose length field is exactly `size`."""
        data = w.notify_frame(1, 1, [w.message("pad", [("p", w.t_str(b"x" * (size - 40)))])])
        data = w.notify_frame(1, 1, [w.message("pad", [("p", w.t_str(b"x" * (size - 40 + size + 4 - len(data))))])])
        self.assertTrue(len(data) == size + 4, "test bug: frame is %d bytes" % len(data))
        return data

    def test_frame_of_exactly_max_frame_size(self):
        conn = self.open_session()
        conn.send(self.padded_notify(OUR_MAX_FRAME_SIZE))
        self.expect_placeholder(self.expect_ack(conn, 1, 1))
        conn.close()

    def test_oversized_for_negotiated_300(self):
        conn = self.open_session(300)
        conn.send(self.padded_notify(300))  # exactly max-frame-size: accepted
        self.expect_placeholder(self.expect_ack(conn, 1, 1))
        conn.send((301).to_bytes(4, "big") + self.NOTIFY_HEAD)
        self.expect_disconnect(conn, 3)
        conn.close()

    def test_oversized_before_hello(self):
        self.refused(b"\xff\xff\xff\xff" + self.NOTIFY_HEAD, (3, 4), hello=False)

    def test_zero_length_frame(self):
        self.refused(b"\x00\x00\x00\x00", 4)

    def test_zero_length_frame_before_hello(self):
        self.refused(b"\x00\x00\x00\x00", 4, hello=False)

    def test_frame_shorter_than_its_header(self):
        self.refused(b"\x00\x00\x00\x03\x03\x00\x00", 4)
        self.refused(b"\x00\x00\x00\x06\x03\x00\x00\x00\x01\xf0", 4)  # stream-id varint cut short

    def test_notify_before_hello(self):
        self.refused(w.notify_frame(1, 1, [UNHANDLED]), 4, hello=False)

    def test_notify_without_fin(self):
        self.refused(w.notify_frame(1, 1, [UNHANDLED], flags=0), 10)

    def test_malformed_notify_payloads(self):
        bad = [w.notify_frame(1, 1, [w.string("route") + b"\x02" + w.string("user") + w.t_null()]),  # 2 args, 1 sent
               w.notify_frame(1, 1, [w.string("route") + b"\x01" + w.string("user") + b"\x08\x20ab"]),  # string past end
               w.notify_frame(1, 1, [w.string("route") + b"\x01" + w.string("user") + b"\x0a"]),  # type 10
               w.notify_frame(1, 1, [w.string("route") + b"\x01" + w.string("user") + b"\x06\x7f"]),  # short IPv4
               w.notify_frame(1, 1, [b"\x40route"])]  # message name length past end
        for data in bad:
            self.refused(data, 4)

    def test_truncated_frames_then_close(self):
        hello = w.hello_frame()
        for cut in (1, 3, 4, 10, len(hello) - 1):
            conn = self.connect()
            conn.send(hello[:cut])
            conn.close()
        notify = w.notify_frame(1, 1, [route(None)])
        for cut in (2, 4, 9, len(notify) - 1):
            conn = self.open_session()
            conn.send(notify[:cut])
            conn.close()
        time.sleep(0.2)
        self.expect_healthy()

    def test_random_garbage(self):
        self.garbage(OPTIONS.seed, OPTIONS.garbage)

    def test_still_healthy_afterwards(self):
        self.expect_healthy()

    def garbage(self, seed, count, batch=50, wait=1.0):
        """Each input on its own connection. Allowed: well-formed agent frames, ending in an
        AGENT-DISCONNECT with a known status before the close, or nothing more (the agent waits)."""
        inputs = list(garbage_inputs(seed, count))
        outcomes = {}
        for start in range(0, len(inputs), batch):
            self.assert_running()
            conns = []
            for data in inputs[start:start + batch]:
                conn = self.connect()
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
                    outcome = self.judge_garbage_answer(conn)
                except (AssertionError, w.Malformed) as failure:
                    raise AssertionError("input %s: %s" % (data.hex(), failure)) from None
                finally:
                    conn.close()
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
        self.assert_running()
        return ", ".join("%s: %d" % item for item in sorted(outcomes.items()))


    def judge_garbage_answer(self, conn):
        frames = []
        while (f := conn.next_frame()) is not None:
            frames.append(f)
        self.assertTrue(not conn.buf, "partial frame %s" % conn.buf.hex())
        hello_seen = False
        for i, f in enumerate(frames):
            self.assertTrue(f.type in (w.AGENT_HELLO, w.ACK, w.AGENT_DISCONNECT) and f.flags == w.FIN,
                            "unexpected %s" % w.describe(f))
            if f.type == w.AGENT_HELLO:
                self.assertTrue(i == 0, "AGENT-HELLO not first")
                hello_seen = True
            if f.type == w.ACK:
                self.assertTrue(hello_seen and len(w.read_actions(f.payload)) >= 1, "bad ACK %s" % w.describe(f))
            if f.type == w.AGENT_DISCONNECT:
                self.assertTrue(i == len(frames) - 1, "frames after AGENT-DISCONNECT")
                status = self.kv_dict(f).get("status-code")
                self.assertTrue(status and status[0] == w.UINT32 and status[1] in w.STATUS, "bad status %r" % (status,))
        if conn.eof:
            self.assertTrue(frames and frames[-1].type == w.AGENT_DISCONNECT, "closed without AGENT-DISCONNECT")
            return "disconnect %d" % self.kv_dict(frames[-1])["status-code"][1]
        self.assertTrue(not frames or frames[-1].type != w.AGENT_DISCONNECT, "AGENT-DISCONNECT but no close")
        return "waiting"


class Disconnect(AgentTest):
    def test_haproxy_disconnect(self):
        conn = self.open_session()
        conn.send(w.disconnect_frame(0, "normal"))
        self.expect_disconnect(conn, 0)
        conn.close()

    def test_haproxy_disconnect_captured_2_6(self):
        cap = load_capture(OPTIONS.captures / "haproxy-2.6.12.frames")
        conn = self.open_session()
        conn.send(capture_frame(cap, 4, "HAPROXY-DISCONNECT"))
        self.expect_disconnect(conn, 0)
        conn.close()

    def test_haproxy_disconnect_with_work_in_flight(self):
        conn = self.open_session()
        conn.send(w.notify_frame(0, 1, [route("jack")]) + w.disconnect_frame(0, "normal"))
        # HAProxy ignores frames other than AGENT-DISCONNECT here; nothing may follow it.
        f = conn.recv_frame()
        while f is not None and f.type == w.ACK:
            f = conn.recv_frame()
        self.assertTrue(f is not None and f.type == w.AGENT_DISCONNECT, "expected AGENT-DISCONNECT, got %s" % (
            f and w.describe(f)))
        self.assertTrue(self.kv_dict(f).get("status-code") == (w.UINT32, 0), "status %r" % self.kv_dict(f))
        self.expect_closed(conn, DNS_TIMEOUT)
        conn.close()
        time.sleep(DNS_TIMEOUT / 4)  # let the lookup finish against the closed connection
        self.expect_healthy()

    def test_abrupt_close_with_work_in_flight(self):
        warm = self.open_session()  # one lookup first: the resolver may keep its socket open
        warm.send(w.notify_frame(1, 1, [route("warm-up")]))
        self.expect_route_answer(self.expect_ack(warm, 1, 1, DNS_TIMEOUT), "dns-error", label="warm-up")
        warm.close()
        time.sleep(0.5)
        baseline = self.agent.fd_count()
        for i in range(20):
            conn = self.open_session()
            conn.send(w.notify_frame(1, 1, [route("user-%d" % i)]) + w.notify_frame(3, 1, [UNHANDLED]))
            time.sleep(0.01)
            # RST instead of FIN: the ACKs are written to a connection that is gone.
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
        time.sleep(DNS_TIMEOUT / 4)  # the lookups finish after their connections are gone
        self.expect_healthy()
        self.settle_fds(baseline)

    def test_sigterm_with_idle_sessions(self):
        idle = self.open_session()
        used = self.open_session()
        used.send(w.notify_frame(1, 1, [UNHANDLED]))
        self.expect_placeholder(self.expect_ack(used, 1, 1))
        self.agent.proc.send_signal(signal.SIGTERM)
        for conn in (idle, used):
            self.expect_disconnect(conn, 0, timeout=8.0)
            conn.close()
        try:
            code = self.agent.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.fail("the agent did not exit within 10s of SIGTERM")
        self.assertEqual(code, 0, "exit code after SIGTERM")


class Scale(AgentTest):
    @classmethod
    def setUpClass(cls):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < 2048:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(2048, hard), hard))
        super().setUpClass()
        cls.fds = None  # the agent's descriptors at rest (test_baseline)

    def test_baseline(self):
        self.expect_healthy()
        time.sleep(0.5)
        type(self).fds = self.agent.fd_count()

    def test_connections_300_simultaneous(self):
        conns = [self.connect() for _ in range(300)]
        for conn in conns:
            conn.send(w.hello_frame())
        for conn in conns:
            self.expect_agent_hello(conn)
        for i, conn in enumerate(conns):
            conn.send(w.notify_frame(2 * i + 1, 1, [route(None)]))
        for i, conn in enumerate(conns):
            self.expect_route_answer(self.expect_ack(conn, 2 * i + 1, 1, 15.0), "missing-username")
        for conn in conns:
            conn.close()
        self.settle_fds(self.fds)

    def test_pipelined_5000_in_one_write(self):
        conn = self.open_session()
        count = 5000
        conn.send(b"".join(w.notify_frame(2 * i + 1, 1, [route(None) if i % 2 else UNHANDLED])
                           for i in range(count)))
        seen = set()
        for _ in range(count):
            f = self.expect_frame(conn, w.ACK, 15.0)
            self.assertTrue(f.stream_id % 2 == 1 and f.stream_id < 2 * count and f.frame_id == 1,
                            "unexpected %s" % w.describe(f))
            self.assertTrue(f.stream_id not in seen, "second ACK for stream %d" % f.stream_id)
            seen.add(f.stream_id)
            if f.stream_id // 2 % 2:
                self.expect_route_answer(f, "missing-username")
            else:
                self.expect_placeholder(f)
        conn.close()

    def test_cycles_1000_connect_hello_close(self):
        for i in range(1000):
            conn = self.connect()
            style = i % 4
            if style == 0:  # close without reading the AGENT-HELLO
                conn.send(w.hello_frame())
            elif style == 1:  # health check
                conn.send(w.hello_frame(capabilities="", extra=[("healthcheck", w.t_bool(True))]))
                self.expect_agent_hello(conn, capabilities=(b"", b"pipelining"))
            elif style == 2:  # orderly HAProxy-side disconnect
                conn.send(w.hello_frame())
                self.expect_agent_hello(conn)
                conn.send(w.disconnect_frame())
                self.expect_disconnect(conn, 0)
            else:
                conn.send(w.hello_frame())
                self.expect_agent_hello(conn)
            conn.close()
        self.settle_fds(self.fds)

    def test_still_answers(self):
        self.expect_healthy()


GROUPS = {"handshake": Handshake, "ids": Ids, "replay": Replay, "errors": Errors,
          "disconnect": Disconnect, "scale": Scale}


def main():
    global OPTIONS
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agent", required=True, help="path to the director-agent binary")
    parser.add_argument("--captures", type=Path, default=DEFAULT_CAPTURES, help="directory of the .frames files")
    parser.add_argument("--seed", type=int, default=20240611, help="seed of the random garbage")
    parser.add_argument("--garbage", type=int, default=300, help="number of random garbage inputs")
    parser.add_argument("groups", nargs="*", metavar="GROUP", help=" ".join(GROUPS))
    OPTIONS = parser.parse_args()
    for name in OPTIONS.groups:
        if name not in GROUPS:
            parser.error("unknown group %r; groups: %s" % (name, " ".join(GROUPS)))
    Replay.add_tests(OPTIONS.captures)
    loader = InOrder()
    suite = unittest.TestSuite(loader.loadTestsFromTestCase(GROUPS[name]) for name in OPTIONS.groups or GROUPS)
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
