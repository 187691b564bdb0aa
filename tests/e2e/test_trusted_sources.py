#!/usr/bin/env python3
"""Trusted sources: only the sign-in proxy may say who the user is. A request whose TCP source
is not in DIRECTOR_TRUSTED_SOURCES gets 403 (pages/untrusted-source.html) before its identity
header is looked at: neither the agent, nor the spawner, nor any container sees it.

The client binds its socket to another loopback address (127.0.0.x) to be "somebody else"."""

from common import StackTest, agent_decisions, main, our_pages, who_answered

UNTRUSTED = ["127.0.0.2", "127.0.0.77", "127.1.2.3"]


class TrustedSources(StackTest):
    # Several entries, one of them IPv6: the list is expanded into one ACL pattern per entry.
    stack_options = {"haproxy_extra_env": {
        "DIRECTOR_TRUSTED_SOURCES": "192.0.2.0/24 127.0.0.1/32 ::1/128"}}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.stack.add_container("alice")

    def forwarded(self):
        return (len(self.stack.spawner_requests()), len(self.stack.all_backend_requests()),
                agent_decisions(self.stack))

    def test_trusted_source_is_served(self):
        self.assert_routed("alice")
        self.assert_routed("alice", source="127.0.0.1")

    def test_untrusted_source_is_refused_before_anything(self):
        self.assert_routed("alice")  # the agent is up and alice's container answers
        before = self.forwarded()
        for source in UNTRUSTED:
            for user, headers in (("alice", ()), ("ivan", ()), (None, ()),
                                  ("alice", [("X-Forwarded-Preferred-Username", "bob")]),
                                  ("Jäck.Doe@Example.com".encode(), ()),
                                  ("alice", [("X-Director-Container-Host", "vscode-alice")])):
                status, response_headers, body = self.stack.request(user, headers=headers,
                                                                    source=source)
                answer = who_answered(status, response_headers, body)
                self.assertEqual(answer, "page untrusted-source 403", (source, user, headers))
                self.assertEqual(response_headers.get("x-director-reason"), "untrusted-source")
                self.assertEqual(response_headers.get("cache-control"), "no-store")
        self.assertEqual(self.forwarded(), before,
                         "(spawner requests, container requests, agent decisions) changed")
        self.assert_routed("alice")  # and the trusted proxy is still served

    def test_untrusted_websocket_upgrade_is_refused(self):
        status, headers, body = self.stack.request(
            "alice", source="127.0.0.2",
            headers=[("Upgrade", "websocket"), ("Connection", "Upgrade"),
                     ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                     ("Sec-WebSocket-Version", "13")])
        self.assertEqual(who_answered(status, headers, body), "page untrusted-source 403")


class DefaultTrustsLoopbackOnly(StackTest):
    """Without DIRECTOR_TRUSTED_SOURCES: loopback (127.0.0.0/8, ::1) is trusted."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.stack.add_container("alice")

    def test_loopback_sources_are_trusted(self):
        for source in ["127.0.0.1"] + UNTRUSTED:
            self.assert_routed("alice", source=source)


class EmptyListTrustsNobody(StackTest):
    """An empty list fails closed: everyone is refused (HAProxy warns at startup)."""
    stack_options = {"haproxy_extra_env": {"DIRECTOR_TRUSTED_SOURCES": ""}}

    def test_everyone_is_refused(self):
        pages = our_pages()
        for source in ("127.0.0.1", "127.0.0.2"):
            answer = who_answered(*self.stack.request("alice", source=source), pages=pages)
            self.assertEqual(answer, "page untrusted-source 403")
        self.assertEqual(self.stack.spawner_requests(), [])


if __name__ == "__main__":
    main()
