#!/usr/bin/env python3
"""How tools/stack.py starts HAProxy, the cause of a flaky e2e/degraded (issue 9, item 6):

- Every port the stack picks for a listener (HAProxy's, the spawner's two, dnsmasq's, the
  agents') stays reserved from the moment the stack picks it: no bind() to port 0 on the
  machine (the next free port anyone asks for) may be handed one of them before its listener
  binds it. A port picked and released was handed out again about once in 600 stacks (7 picks
  each), and HAProxy then could not bind and exited; an agent's listener once took the
  spawner's port before a test's RecordingSpawner could bind it (CI, 2026-11-29).
- A component counts as started when it said so itself, not when its port takes a connection:
  another stack's dnsmasq, given a port picked and released, bound a spawner's reserved port
  (SO_REUSEADDR), the spawner could not bind and exited, and every request sent to "the
  spawner" hung unanswered in dnsmasq (CI, 2026-11-29). The stack now says at once which
  component exited and why.
- When HAProxy exits at startup, the stack says so at once, with HAProxy's reason, instead of
  waiting 15 s for a worker that will never come ("timed out waiting for HAProxy's worker").
"""

import contextlib
import socket
import time
import unittest

from common import Stack, main
from loopback import free_port
from agent import AgentError
from stack import ComponentExited, HAProxyExited

# free_port() (a bind() to port 0, what any process asking for a free port does) this many
# times: about 10 would land on 3 ports that are picked but not reserved.
PICKS = 50000


@contextlib.contextmanager
def squatting(address):
    """Another program on `address` (host, port), bound as dnsmasq binds (SO_REUSEADDR) and
    listening: a connection there succeeds, but the component given the port cannot bind."""
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(address)
        squatter.listen()
        yield


class HAProxyStartup(unittest.TestCase):
    def test_listener_ports_are_not_handed_out_before_their_listeners_bind_them(self):
        stack = Stack(fake_agent=True)  # ports picked, nothing started yet
        try:
            ours = {stack.http[1], stack.metrics[1], stack.spawner[1], stack.spawner_http[1],
                    stack.dns[1], stack.agent[1]}
            self.assertEqual(len(ours), 6)
            handed_out = [port for port in (free_port() for _ in range(PICKS)) if port in ours]
            self.assertEqual(handed_out, [], "a reserved port was given to someone else")
            stack.start()
            self.assertEqual(stack.request("alice")[0], 202)  # HAProxy and the spawner bound theirs
        finally:
            stack.stop()

    def test_a_component_whose_port_another_program_took_is_reported_not_trusted(self):
        for name, port_of in (("dnsmasq", lambda s: s.dns), ("agent", lambda s: s.agent),
                              ("spawner", lambda s: s.spawner)):
            with self.subTest(component=name):
                stack = Stack(fake_agent=True)
                try:
                    with squatting(port_of(stack)):
                        started = time.monotonic()
                        with self.assertRaises(ComponentExited) as raised:
                            stack.start()
                        self.assertLess(time.monotonic() - started, 10)
                    self.assertIn(f"{name} exited", str(raised.exception))
                    self.assertIn("Address already in use", str(raised.exception))
                finally:
                    stack.stop()
        # director-agent (tools/agent.py): started when it logs so, after binding both ports.
        for port_name in ("agent", "agent_http"):
            with self.subTest(component=f"director-agent, {port_name}"):
                stack = Stack(fake_agent=False)
                try:
                    with squatting(getattr(stack, port_name)):
                        with self.assertRaises(AgentError) as raised:
                            stack.start()
                    self.assertIn("Address already in use", str(raised.exception))
                finally:
                    stack.stop()

    def test_haproxy_that_cannot_start_is_reported_at_once_with_its_reason(self):
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            stack = Stack(fake_agent=True, http=f"127.0.0.1:{taken.getsockname()[1]}")
            started = time.monotonic()
            with self.assertRaises(HAProxyExited) as raised:
                stack.start()
            self.assertLess(time.monotonic() - started, 10)
        self.assertIn("cannot bind socket", str(raised.exception))


if __name__ == "__main__":
    main()
