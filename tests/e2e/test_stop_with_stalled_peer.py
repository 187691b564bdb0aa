#!/usr/bin/env python3
"""SIGTERM while an SPOP peer has stopped reading, against the agent alone (raw sockets, no
HAProxy). The peer completes its HELLO, then sends NOTIFYs without ever reading an ACK until
the agent's writes block (the peer's receive buffer is small, the agent's queue of ACK bytes
fills and it stops reading) and the peer's own sends block. Then SIGTERM: the agent must not
wait for the stop deadline (5 s) on that peer. Its graceful stop gives pending answers the stop
grace (2 s) and then its writes the closing write timeout (1 s) to make progress
(agent/src/server/connection.hpp); a peer that still does not read is closed, with a log line
saying so, and the agent exits 0."""

import fcntl
import os
import signal
import socket
import struct
import termios
import time
import unittest

from agent_harness import notify, spop, start_agent

STOP_GRACE = 2.0  # s, agent/src/main.cpp
STOP_DEADLINE = 5.0  # s, agent/src/main.cpp: the agent exits then whatever is still open
CLOSING_WRITE_TIMEOUT = 1.0  # s, ConnectionLimits::closing_write_timeout
MARGIN = 1.5  # s, for a busy machine
STALLED_FOR = 1.0  # s the peer's sends must stay blocked: the agent has stopped reading


def unread_bytes(sock):
    """Bytes waiting in the socket's receive buffer."""
    return struct.unpack("i", fcntl.ioctl(sock, termios.FIONREAD, b"\0\0\0\0"))[0]


class StopWithStalledPeer(unittest.TestCase):
    def setUp(self):
        self.agent = start_agent()
        self.addCleanup(self.agent.kill)

    def stalled_peer(self):
        """A connection past its HELLO whose peer never reads again and whose sends block."""
        peer = socket.socket()
        self.addCleanup(peer.close)
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: the window
        peer.settimeout(10)
        peer.connect(self.agent.spop)
        peer.sendall(spop.hello_frame())
        hello = spop.read_frame(peer)
        self.assertIsNotNone(hello, "closed before AGENT-HELLO")
        self.assertEqual(hello.type, spop.AGENT_HELLO, spop.describe(hello))

        peer.setblocking(False)
        batch = b"".join(notify(2 * i + 1, 1, "carol") for i in range(1000))
        # Whole frames only: a partial send resumes where it stopped in the batch, so the agent
        # never sees a torn frame (a protocol error would close the session, not the stop).
        view, offset = memoryview(batch), 0
        sent, blocked_since, started = 0, None, time.monotonic()
        while time.monotonic() - started < 60:
            try:
                count = peer.send(view[offset:])
                sent += count
                offset = (offset + count) % len(batch)
                blocked_since = None
            except BlockingIOError:
                blocked_since = blocked_since or time.monotonic()
                if time.monotonic() - blocked_since > STALLED_FOR:
                    break
                time.sleep(0.01)
        self.assertIsNotNone(blocked_since, f"the agent read {sent} bytes and kept reading")
        self.assertGreater(unread_bytes(peer), 0, "no ACK ever reached the peer")
        return peer

    def test_sigterm_does_not_wait_for_a_peer_that_never_reads(self):
        agent = self.agent
        self.stalled_peer()

        started = time.monotonic()
        status = agent.stop(signal.SIGTERM, timeout=STOP_DEADLINE + 10)
        elapsed = time.monotonic() - started

        log = "\n".join(agent.lines())
        said = f"exit status {status} {elapsed:.2f} s after SIGTERM; agent log:\n{log[-3000:]}"
        self.assertEqual(status, 0, said)
        self.assertLess(elapsed, STOP_GRACE + CLOSING_WRITE_TIMEOUT + MARGIN,
                        f"held by the peer that never reads: {said}")
        self.assertIn("closing an SPOP connection whose peer stopped reading", log, said)
        self.assertNotIn("connections still open at the stop deadline", log, said)
        self.assertNotIn("SPOP protocol error", log, said)
        print(f"\nstopped {elapsed:.2f} s after SIGTERM with a peer that never reads")

    def test_readyz_answers_not_ready_until_the_end(self):
        """While the stop waits for a peer, the HTTP listener stays up: /readyz answers 503
        (what load balancers and orchestrators expect), never a refused connection."""
        agent = self.agent
        self.assertEqual(agent.http_get("/readyz")[0], 200)
        self.stalled_peer()
        os.killpg(agent.proc.pid, signal.SIGTERM)
        answers = []
        while agent.running():
            try:
                status, body = agent.http_get("/readyz", timeout=2)
                answers.append(status)
                if status == 503:
                    self.assertIn("not_ready", body)
            except OSError as error:
                if agent.running():
                    answers.append(type(error).__name__)
            time.sleep(0.05)
        self.assertEqual(agent.proc.wait(), 0)
        log = "\n".join(agent.lines())
        self.assertGreater(len(answers), 10, f"the stop took no time: {answers}; {log[-2000:]}")
        # The last answers may race the exit (the listener closes just before the process ends).
        settled = answers[:-3]
        self.assertEqual(set(settled), {503}, f"/readyz during the stop: {answers}")


if __name__ == "__main__":
    unittest.main()
