#!/usr/bin/env python3
"""Identity: a request without exactly one non-empty X-Forwarded-Preferred-Username gets 403, a
username that cannot name a container (the agent in strict mode) gets 400; neither reaches the
spawner or any container. The 400 page shows the refused name only as the agent escaped it
(route::shown_username), so a hostile name can inject neither markup nor headers."""

from pathlib import Path

from common import IDENTITY, REFUSED_NAME_LINE, StackTest, main, shown_username

# Each of these would reach a live container (alice, bob, jack) under a naive mapping.
INVALID = [
    "jack.evil.example", "jack:22", "alice,bob", "bob, alice", "Alice", "ALICE",
    "../alice", "alice/..", "-alice", "alice-", "al ice", "169.254.169.254", "127.0.0.1",
    "Jäck.Doe@Example.com".encode(), "alice\tbob", "a" * 70, "jack%2e", "%6aack",
]


# Names that would be markup, quotes, a header or a log line if a page echoed them raw.
MARKUP = [
    "<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "a&amp;b", "x\" onmouseover=\"y",
    "it's", "back\\slash", "tab\there", "ctl\x01\x1f\x7f", "Jäck", "\xff\xfe".encode("latin-1"),
    "a" * 70 + "<b>", "%[var(txn.director.label)]%%",
]


class Identity(StackTest):
    stack_options = {"agent_args": ["--username-mode", "strict"]}
    # "<" in haproxy/pages/invalid-username.html: what a response may have, whatever the name.
    template_tags = (Path(__file__).resolve().parents[2] / "haproxy/pages/invalid-username.html"
                     ).read_bytes().count(b"<")

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
            shown = shown_username(raw.strip(b" \t"))
            self.assertIn(f"<code>{shown}</code>".encode(), body)
        self.assert_nothing_forwarded()

    def test_invalid_username_page_shows_the_name_escaped(self):
        """The refused name is on the page, as text: no byte of it is markup, a quote, a line
        break or a log-format directive; the response's headers are HAProxy's own."""
        for user in MARKUP:
            with self.subTest(user=user):
                raw = user if isinstance(user, bytes) else user.encode()
                got, headers, body = self.stack.request(raw)
                self.assertEqual(got, 400, body[:300])
                line = REFUSED_NAME_LINE.search(body)
                self.assertIsNotNone(line, body)
                self.assertEqual(line.group(1).decode("ascii"), shown_username(raw.strip(b" \t")))
                self.assertRegex(line.group(1), rb"^[\x20-\x7e]*$")
                self.assertFalse(set(line.group(1)) & set(b"<>&\"'"), line.group(1))
                # The page's markup is exactly the file's: one <code> per name, no injected tag.
                self.assertEqual(body.count(b"<"), self.template_tags, body)
                self.assertEqual(set(headers) - {"content-length"},
                                 {"cache-control", "content-type", "x-director-reason"})
                self.assertEqual(headers.get("x-director-reason"), "invalid-username")
        self.assert_nothing_forwarded()

    def test_valid_username_still_routed(self):
        """The refusals above are not a broken route: the same stack routes alice."""
        self.assert_routed("alice")


if __name__ == "__main__":
    main()
