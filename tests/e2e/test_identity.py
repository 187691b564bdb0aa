#!/usr/bin/env python3
"""Identity: a request without exactly one non-empty X-Forwarded-Preferred-Username gets 403, a
username that cannot name a container (the agent in strict mode) gets 400; neither reaches the
spawner or any container.
The error pages never echo the username back."""

from common import IDENTITY, StackTest, main

# Each of these would reach a live container (alice, bob, jack) under a naive mapping.
INVALID = [
    "jack.evil.example", "jack:22", "alice,bob", "bob, alice", "Alice", "ALICE",
    "../alice", "alice/..", "-alice", "alice-", "al ice", "169.254.169.254", "127.0.0.1",
    "Jäck.Doe@Example.com".encode(), "alice\tbob", "a" * 70, "jack%2e", "%6aack",
]


class Identity(StackTest):
    stack_options = {"agent_args": ["--username-mode", "strict"]}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.stack.add_containers(["alice", "bob", "jack"])

    def setUp(self):
        self.before = (len(self.stack.spawner_requests()), len(self.stack.all_backend_requests()))

    def assert_nothing_forwarded(self):
        after = (len(self.stack.spawner_requests()), len(self.stack.all_backend_requests()))
        self.assertEqual(after, self.before, "(spawner requests, container requests) changed")

    def assert_refused(self, status, user=None, headers=()):
        got, response_headers, body = self.stack.request(user, headers=headers)
        self.assertEqual(got, status, f"user {user!r}, headers {headers!r}: {body[:200]!r}")
        self.assertNotIn("x-served-by", response_headers)
        return body

    def test_missing_identity(self):
        self.assert_refused(403)
        self.assert_refused(403, headers=[("X-Forwarded-User", "alice"),
                                          ("X-Forwarded-Preferred-Usernam", "alice")])
        self.assert_nothing_forwarded()

    def test_empty_identity(self):
        for value in ("", "   ", "\t"):
            self.assert_refused(403, value)
        self.assert_nothing_forwarded()

    def test_repeated_identity(self):
        for second in ("alice", "bob", ""):
            self.assert_refused(403, "alice", headers=[(IDENTITY, second)])
        self.assert_refused(403, "alice", headers=[(IDENTITY.lower(), "alice")])
        self.assert_refused(403, None, headers=[(IDENTITY, "alice")] * 3)
        self.assert_nothing_forwarded()

    def test_invalid_username(self):
        for user in INVALID:
            body = self.assert_refused(400, user)
            self.assertIn(b"invalid-username", body)
            raw = user if isinstance(user, bytes) else user.encode()
            self.assertNotIn(raw.strip(), body, "the page echoes the username")
        self.assert_nothing_forwarded()

    def test_valid_username_still_routed(self):
        """The refusals above are not a broken route: the same stack routes alice."""
        self.assert_routed("alice")


if __name__ == "__main__":
    main()
