#!/usr/bin/env python3
"""SPOP peers that misbehave, against the agent alone (raw sockets, no HAProxy): 10,000
connections at once (silent, half a HELLO, a HELLO never read, half a NOTIFY), a peer that
never reads its ACKs, peers that write one byte at a time, and peers that never complete
their HELLO (--hello-timeout). Meanwhile a well-behaved
connection keeps its round trips fast, memory stays bounded (per connection, and for a peer
that never reads), and every descriptor is released once the peers go away.

tests/conformance/spop_conformance.py (group scale) covers the protocol side with 300
connections; this is the fault side."""

import socket
import threading
import time
import unittest

from agent_harness import notify, open_session, raise_fd_limit, start_agent, timed_round_trip
from testing import report_failure  # tools/, on the path through agent_harness
import spop
from stack import wait_for

CONNECTIONS = 10_000
ROUND_TRIP_BOUND = 0.5  # s, generous: a cached answer takes microseconds
PER_CONNECTION_KIB = 12  # RSS per idle connection
STALLED_GROWTH_KIB = 48 * 1024  # RSS a peer that never reads may cost


class AgentTest(unittest.TestCase):
    """One agent (self.agent, started with agent_args) for all tests of the class; its log
    is printed when a test fails."""

    agent_args = ()

    @classmethod
    def setUpClass(cls):
        cls.agent = start_agent(cls.agent_args)

    @classmethod
    def tearDownClass(cls):
        cls.agent.stop()

    def tearDown(self):
        report_failure(self, lambda: "--- agent.log ---\n" + self.agent.log_tail())


class SpopFaults(AgentTest):
    # These peers must stay connected before their HELLO for as long as a test takes.
    agent_args = ("--hello-timeout", "10m")

    @classmethod
    def setUpClass(cls):
        limit = raise_fd_limit(CONNECTIONS * 2 + 500)  # the agent inherits it
        if limit < CONNECTIONS + 200:
            raise unittest.SkipTest(f"descriptor limit {limit} is below {CONNECTIONS + 200}")
        super().setUpClass()

    def round_trips(self, session, count, first_stream=1):
        """`count` NOTIFY/ACK round trips for a user (a miss then cache hits): max seconds."""
        slowest = 0.0
        for i in range(count):
            seconds, variables = timed_round_trip(session, first_stream + 2 * i, "alice")
            self.assertIs(variables.get("alive"), False)
            self.assertEqual(variables.get("reason"), b"dns-error")
            slowest = max(slowest, seconds)
        return slowest

    def settle_fds(self, baseline, timeout=20):
        wait_for(f"agent descriptors back to {baseline}",
                 lambda: self.agent.fd_count() <= baseline, timeout, 0.1)

    def open_many(self, count):
        """`count` connections in four flavours: silent, half a HELLO, a whole HELLO whose
        AGENT-HELLO is never read, a HELLO and half a NOTIFY."""
        hello, half_notify = spop.hello_frame(), notify(1, 1, "bob")[:20]
        flavours = [b"", hello[:10], hello, hello + half_notify]
        conns = []
        for i in range(count):
            conn = socket.socket()
            conn.setblocking(False)
            try:
                conn.connect(self.agent.spop)
            except BlockingIOError:
                pass
            conns.append(conn)
            if i % 500 == 499:  # let the agent accept: the listen backlog is finite
                time.sleep(0.05)
        wait_for("the agent to accept every connection",
                 lambda: self.agent.fd_count() >= count, 60, 0.1)
        for i, conn in enumerate(conns):
            data = flavours[i % len(flavours)]
            if data:
                conn.send(data)  # a few bytes: always fits the socket buffer
        return conns

    def test_ten_thousand_connections(self):
        agent = self.agent
        good = open_session(agent)
        self.round_trips(good, 50)
        baseline_fds, baseline_rss = agent.fd_count(), agent.rss_kib()

        conns = self.open_many(CONNECTIONS)
        try:
            time.sleep(1)
            spop = agent.metrics().get("director_spop_connections", 0)
            self.assertGreaterEqual(spop, CONNECTIONS)
            slowest = self.round_trips(good, 200, 1001)
            self.assertLess(slowest, ROUND_TRIP_BOUND, "round trips slowed by idle peers")
            rss = agent.rss_kib()
            per_connection = (rss - baseline_rss) / CONNECTIONS
            self.assertLess(per_connection, PER_CONNECTION_KIB,
                            f"{per_connection:.1f} KiB of RSS per idle connection")
        finally:
            for conn in conns:
                conn.close()
        self.settle_fds(baseline_fds)

        # A second wave reuses the memory of the first: bounded, not growing.
        conns = self.open_many(CONNECTIONS)
        try:
            time.sleep(1)
            second = agent.rss_kib()
            self.assertLess(second - rss, max(rss - baseline_rss, 1024) * 0.25 + 4096,
                            f"RSS {baseline_rss} KiB, {rss} KiB with {CONNECTIONS} peers, "
                            f"{second} KiB with the second wave")
        finally:
            for conn in conns:
                conn.close()
        self.settle_fds(baseline_fds)
        self.assertLess(self.round_trips(good, 20, 5001), ROUND_TRIP_BOUND)
        good.close()
        print(f"\nRSS {baseline_rss} KiB, {rss} KiB with {CONNECTIONS} peers "
              f"({per_connection:.1f} KiB each), {second} KiB with the second wave; "
              f"slowest round trip meanwhile {slowest * 1000:.1f} ms")

    def test_peer_that_never_reads(self):
        agent = self.agent
        good = open_session(agent)
        self.round_trips(good, 20)
        baseline_fds, baseline_rss = agent.fd_count(), agent.rss_kib()

        stalled = socket.socket()
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(agent.spop)
        stalled.sendall(spop.hello_frame())
        stalled.setblocking(False)
        batch = b"".join(notify(2 * i + 1, 1, "carol") for i in range(1000))
        sent, blocked_since = 0, None
        started = time.monotonic()
        # Write NOTIFYs until the agent has stopped reading for 2 s (its bounds: pending
        # answers and queued ACK bytes per connection), at most 60 s.
        while time.monotonic() - started < 60:
            try:
                sent += stalled.send(batch)
                blocked_since = None
            except BlockingIOError:
                blocked_since = blocked_since or time.monotonic()
                if time.monotonic() - blocked_since > 2:
                    break
                time.sleep(0.01)
        self.assertIsNotNone(blocked_since, f"the agent read {sent} bytes and kept reading")
        growth = agent.rss_kib() - baseline_rss
        slowest = self.round_trips(good, 50, 3001)
        stalled.close()
        self.settle_fds(baseline_fds)
        self.assertLess(growth, STALLED_GROWTH_KIB, f"RSS grew {growth} KiB for one peer")
        self.assertLess(slowest, ROUND_TRIP_BOUND)
        good.close()
        print(f"\npeer that never reads: {sent} bytes of NOTIFYs accepted before the agent "
              f"stopped reading; RSS +{growth} KiB; slowest other round trip "
              f"{slowest * 1000:.1f} ms")

    def test_peers_writing_one_byte_at_a_time(self):
        agent = self.agent
        good = open_session(agent)
        slow = [socket.create_connection(agent.spop) for _ in range(50)]
        data = spop.hello_frame() + notify(7, 3, "dave")
        answers, failures = [], []

        def dribble():
            try:
                for i in range(len(data)):
                    for conn in slow:
                        conn.send(data[i:i + 1])
                    time.sleep(0.005)
            except OSError as error:
                failures.append(repr(error))

        writer = threading.Thread(target=dribble)
        writer.start()
        try:
            slowest = 0.0
            stream = 1
            while writer.is_alive():
                seconds, _ = timed_round_trip(good, stream, "alice")
                slowest = max(slowest, seconds)
                stream += 2
        finally:
            writer.join()
        self.assertEqual(failures, [])
        self.assertLess(slowest, ROUND_TRIP_BOUND)
        # Each slow peer, once its bytes are all there, gets its AGENT-HELLO and its ACK.
        for conn in slow:
            conn.settimeout(10)
            buf = bytearray()
            frames = []
            while len(frames) < 2:
                parsed = spop.parse_frame(buf)
                if parsed:
                    frames.append(parsed[0])
                    del buf[:parsed[1]]
                    continue
                chunk = conn.recv(65536)
                self.assertTrue(chunk, "closed before answering")
                buf += chunk
            self.assertEqual([f.type for f in frames], [spop.AGENT_HELLO, spop.ACK])
            self.assertEqual((frames[1].stream_id, frames[1].frame_id), (7, 3))
            answers.append(frames[1])
            conn.close()
        self.assertEqual(len(answers), len(slow))
        good.close()


class HelloTimeout(AgentTest):
    """A peer that does not complete HAPROXY-HELLO within --hello-timeout is told so
    (AGENT-DISCONNECT, status 2 "timeout") and closed; a peer that did is never timed out."""

    TIMEOUT = 1.0
    agent_args = ("--hello-timeout", f"{int(TIMEOUT * 1000)}ms")

    def until_closed(self, conn):
        """Every frame the agent sends until it closes the connection, and when it closed."""
        conn.settimeout(self.TIMEOUT + 10)
        buf = bytearray()
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break
            buf += chunk
        closed = time.monotonic()
        frames = []
        while (parsed := spop.parse_frame(buf)) is not None:
            frames.append(parsed[0])
            del buf[:parsed[1]]
        self.assertEqual(bytes(buf), b"", "a partial frame before the close")
        return frames, closed

    def test_peers_without_hello_are_closed(self):
        agent = self.agent
        baseline_fds = agent.fd_count()
        before = agent.metrics().get('director_spop_protocol_errors_total{status="timeout"}', 0)
        hello = spop.hello_frame()
        peers = {"silent": b"", "half a HELLO": hello[:len(hello) // 2],
                 "a NOTIFY instead": notify(1, 1, "bob")}
        started = time.monotonic()
        conns = {}
        for name, data in peers.items():
            conns[name] = socket.create_connection(agent.spop)
            if data:
                conns[name].sendall(data)
        # A peer that completed its HELLO, idle for twice the timeout, still gets answers.
        good = open_session(agent)
        for name, conn in conns.items():
            if name == "a NOTIFY instead":
                continue  # a protocol error before the deadline: closed at once (below)
            frames, closed = self.until_closed(conn)
            self.assertGreaterEqual(closed - started, self.TIMEOUT * 0.9, name)
            self.assertEqual([(f.type, spop.decode_kv_list(f.payload, 0).get("status-code")) for f in frames],
                             [(spop.AGENT_DISCONNECT, 2)], name)
        frames, _ = self.until_closed(conns["a NOTIFY instead"])
        self.assertEqual([f.type for f in frames], [spop.AGENT_DISCONNECT])
        self.assertNotEqual(spop.decode_kv_list(frames[0].payload, 0).get("status-code"), 2)
        for conn in conns.values():
            conn.close()

        time.sleep(max(0.0, started + 2 * self.TIMEOUT - time.monotonic()))
        _, variables = timed_round_trip(good, 1, "alice")
        self.assertEqual(variables.get("reason"), b"dns-error")
        good.close()
        after = agent.metrics().get('director_spop_protocol_errors_total{status="timeout"}', 0)
        self.assertEqual(after - before, 2)
        timed_out = [line for line in agent.lines()
                     if "SPOP protocol error" in line and "no HAPROXY-HELLO within 1000 ms" in line]
        self.assertEqual(len(timed_out), 2, "one warn line per peer timed out")
        wait_for(f"agent descriptors back to {baseline_fds}",
                 lambda: agent.fd_count() <= baseline_fds, 10, 0.1)


if __name__ == "__main__":
    unittest.main(verbosity=2)
