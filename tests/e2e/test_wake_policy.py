#!/usr/bin/env python3
"""HAProxy's spawner backend: the wake policy (spawner/src/core/wake_policy.hpp, docs/spawner.md)
and the headers the spawner gets.

- Only a page navigation reaches the spawner: GET or HEAD, no Upgrade, and Sec-Fetch-Mode
  navigate with Sec-Fetch-Dest document, iframe or none, or, without any Sec-Fetch-* header, an
  Accept listing text/html. Everything else gets HAProxy's 503 (Retry-After: 5,
  Cache-Control: no-store, X-Director-Reason: not-a-navigation; a JSON body when Accept names
  JSON and not HTML, else HTML) and the spawner never sees it.
- /.container-director/status is exempt; users routed to their container are not concerned.
- The spawner gets X-Forwarded-Preferred-Username exactly once, X-Director-Label,
  X-Director-Container-Host and X-Director-Reason; clients' copies never pass. In degraded mode
  the label is the username when it is a label, else absent (with the container host)."""

import json

from common import RecordingSpawner, StackTest, main

NAVIGATIONS = {
    "accept html": [("Accept", "text/html")],
    "a browser's accept": [("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")],
    "media range case and parameters": [("Accept", "application/json, TEXT/HTML ; q=0.5")],
    "navigate document": [("Sec-Fetch-Mode", "navigate"), ("Sec-Fetch-Dest", "document"),
                          ("Sec-Fetch-Site", "none"), ("Accept", "*/*")],
    "navigate iframe": [("Sec-Fetch-Mode", "navigate"), ("Sec-Fetch-Dest", "iframe")],
    "navigate without dest": [("Sec-Fetch-Mode", "navigate")],
    "fetch metadata in any case": [("Sec-Fetch-Mode", "Navigate"), ("Sec-Fetch-Dest", "DOCUMENT")],
    "html with a quality": [("Accept", "text/html;q=0.1;level=1")],
}
REFUSED = {  # name: (headers, method, body kind)
    "no accept": ([("Accept", "")], "GET", "html"),
    "html not acceptable": ([("Accept", "text/html;q=0, */*")], "GET", "html"),
    "html not acceptable, json is": ([("Accept", "text/html; q=0.000, application/json")], "GET", "json"),
    "json not acceptable": ([("Accept", "application/json;q=0")], "GET", "html"),
    "any type only": ([("Accept", "*/*")], "GET", "html"),
    "text/htmlx is not html": ([("Accept", "text/htmlx")], "GET", "html"),
    "fetch() for json": ([("Accept", "application/json"), ("Sec-Fetch-Mode", "cors"),
                          ("Sec-Fetch-Dest", "empty")], "GET", "json"),
    "json suffix type": ([("Accept", "application/vnd.api+json")], "GET", "json"),
    "json and html wants html": ([("Accept", "application/json, text/html"),
                                  ("Sec-Fetch-Mode", "cors")], "GET", "html"),
    "cors with accept html": ([("Accept", "text/html"), ("Sec-Fetch-Mode", "cors")], "GET", "html"),
    "navigate to an image": ([("Sec-Fetch-Mode", "navigate"), ("Sec-Fetch-Dest", "image")], "GET", "html"),
    "script": ([("Accept", "*/*"), ("Sec-Fetch-Mode", "no-cors"), ("Sec-Fetch-Dest", "script")], "GET", "html"),
    "dest without mode": ([("Accept", "text/html"), ("Sec-Fetch-Dest", "document")], "GET", "html"),
    "other fetch metadata only": ([("Accept", "text/html"), ("Sec-Fetch-Site", "same-origin")], "GET", "html"),
    "websocket upgrade": ([("Accept", "text/html"), ("Upgrade", "websocket"), ("Connection", "Upgrade"),
                           ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                           ("Sec-WebSocket-Version", "13")], "GET", "html"),
    "post": ([("Accept", "text/html"), ("Content-Length", "0")], "POST", "html"),
    "head json": ([("Accept", "application/json")], "HEAD", "none"),
}


class WakePolicy(StackTest):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.spawner = RecordingSpawner(cls.stack)  # records, starts nothing
        cls.stack.add_container("alice")

    @classmethod
    def tearDownClass(cls):
        cls.spawner.close()
        super().tearDownClass()

    def test_navigations_reach_the_spawner(self):
        for method in ("GET", "HEAD"):
            for name, headers in NAVIGATIONS.items():
                with self.subTest(name, method=method):
                    before = self.spawner.count()
                    status, answer, _ = self.stack.request("newcomer", headers=headers, method=method)
                    self.assertEqual((status, answer.get("x-served-by")), (202, "spawner"))
                    self.assertEqual(len(self.spawner.since(before)), 1)

    def test_other_requests_get_503_and_wake_nothing(self):
        before = self.spawner.count()
        for name, (headers, method, kind) in REFUSED.items():
            with self.subTest(name):
                status, answer, body = self.stack.request("newcomer", headers=headers, method=method)
                self.assertEqual(status, 503)
                self.assertEqual((answer.get("retry-after"), answer.get("cache-control"),
                                  answer.get("x-director-reason")), ("5", "no-store", "not-a-navigation"))
                self.assertIsNone(answer.get("x-served-by"))
                if kind == "json":
                    self.assertTrue(answer["content-type"].startswith("application/json"))
                    reply = json.loads(body)
                    self.assertEqual((reply["error"], reply["retry_after"]), ("not-a-navigation", 5))
                elif kind == "html":
                    self.assertTrue(answer["content-type"].startswith("text/html"))
                    self.assertIn(b"<title>Workspace not running</title>", body)
                else:
                    self.assertEqual(body, b"")
        self.assertEqual(self.spawner.since(before), [])

    def test_status_endpoint_is_exempt(self):
        before = self.spawner.count()
        status, answer, _ = self.stack.request(
            "newcomer", path="/.container-director/status",
            headers=[("Accept", "application/json"), ("Sec-Fetch-Mode", "cors"), ("Sec-Fetch-Dest", "empty")])
        self.assertEqual((status, answer.get("x-served-by")), (202, "spawner"))
        self.assertEqual([e["path"] for e in self.spawner.since(before)], ["/.container-director/status"])
        status, answer, _ = self.stack.request("newcomer", path="/.container-director/status/x",
                                               headers=[("Accept", "application/json")])
        self.assertEqual((status, answer.get("x-director-reason")), (503, "not-a-navigation"))

    def test_routed_users_are_not_concerned(self):
        for headers in ([("Accept", "application/json"), ("Sec-Fetch-Mode", "cors")], [("Accept", "*/*")]):
            self.assert_routed("alice", headers=headers)
        self.assert_routed("alice", method="POST", headers=[("Content-Length", "0")])

    def test_headers_for_the_spawner(self):
        before = self.spawner.count()
        status, _, _ = self.stack.request("newcomer", headers=[
            ("X-Director-Label", "mallory"), ("X-Director-Container-Host", "vscode-mallory"),
            ("X-Director-Reason", "forged")])
        self.assertEqual(status, 202)
        (seen,) = self.spawner.since(before)
        self.assertEqual(seen["user"], ["newcomer"])
        self.assertEqual(seen["label"], ["newcomer"])
        self.assertEqual(seen["container_host"], "vscode-newcomer")
        self.assertNotEqual(seen["reason"], "forged")


class DegradedLabel(StackTest):
    """The agent down: a username that is a label is its own label; other names get neither a
    label nor a container host."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.spawner = RecordingSpawner(cls.stack)
        cls.stack.kill_agent()

    @classmethod
    def tearDownClass(cls):
        cls.spawner.close()
        super().tearDownClass()

    def test_labels(self):
        for user, label, host in (("ivan", ["ivan"], "vscode-ivan"), ("Judy", None, None),
                                  ("x" * 60, None, None)):
            with self.subTest(user):
                before = self.spawner.count()
                status, _, _ = self.stack.request(user)
                self.assertEqual(status, 202)
                (seen,) = self.spawner.since(before)
                self.assertEqual((seen["reason"], seen["label"], seen["container_host"], seen["user"]),
                                 ("agent-unavailable", label, host, [user]))


if __name__ == "__main__":
    main()
