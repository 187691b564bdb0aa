#!/usr/bin/env python3
"""The wake policy before a user's container is ready, with director-spawner and Podman: XHR,
fetch, favicon, script and WebSocket upgrade requests get 503 with Retry-After and create
nothing. HAProxy answers them itself (the spawner never sees them); asked directly with the
director's headers, the spawner applies its own copy of the rule (spawner/src/core/
wake_policy.hpp) and wakes nothing either. Without the director's headers it refuses (403)."""

import json
import time

from common import SpawnerStackTest, director_headers, main, metric, spawner_request

WEBSOCKET = [("Upgrade", "websocket"), ("Connection", "Upgrade"),
             ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="), ("Sec-WebSocket-Version", "13")]
NOT_NAVIGATIONS = {  # name: (path, headers, the spawner's refusal kind, JSON body)
    "xhr": ("/api/files", [("Accept", "application/json"), ("X-Requested-With", "XMLHttpRequest")],
            "xhr", True),
    "fetch": ("/api/state", [("Accept", "application/json"), ("Sec-Fetch-Mode", "cors"),
                             ("Sec-Fetch-Dest", "empty"), ("Sec-Fetch-Site", "same-origin")], "xhr", True),
    "favicon": ("/favicon.ico", [("Accept", "image/avif,image/webp,*/*"), ("Sec-Fetch-Mode", "no-cors"),
                                 ("Sec-Fetch-Dest", "image")], "asset", False),
    "script": ("/static/main.js", [("Accept", "*/*"), ("Sec-Fetch-Mode", "no-cors"),
                                   ("Sec-Fetch-Dest", "script")], "asset", False),
    "websocket": ("/stable/socket", [("Accept", "text/html")] + WEBSOCKET, "websocket", False),
    "monitor": ("/", [("Accept", "*/*")], "not_navigation", False),
}


class SpawnerRefusals(SpawnerStackTest):
    users = ("dave",)

    def assert_refused(self, name, status, headers, body, json_body):
        self.assertEqual(status, 503, f"{name}: {body[:300]}")
        self.assertEqual(headers.get("retry-after"), "5", name)
        self.assertEqual(headers.get("cache-control"), "no-store", name)
        self.assertEqual(headers.get("x-director-reason"), "not-a-navigation", name)
        if json_body:
            self.assertEqual(json.loads(body).get("retry_after"), 5, name)
        self.assertNotIn(b"http-equiv=\"refresh\"", body, name)

    def assert_nothing_created(self):
        self.assertEqual(self.managed_containers("dave"), [])
        rows = [row for row in self.stack.spawner_users() if row["label"] == "dave"]
        self.assertTrue(all(row["phase"] == "absent" and not row["in_flight"] for row in rows), rows)

    def test_haproxy_refuses_before_the_spawner(self):
        before = self.stack.spawner_metrics()
        for name, (path, headers, _, json_body) in NOT_NAVIGATIONS.items():
            with self.subTest(name):
                status, response_headers, body = self.stack.request("dave", path=path, headers=headers)
                self.assert_refused(name, status, response_headers, body, json_body)
        after = self.stack.spawner_metrics()
        for series in ("director_spawner_wake_refused_total", "director_spawner_pages_total"):
            self.assertEqual(metric(after, series), metric(before, series), f"{series}: the spawner saw one")
        time.sleep(0.5)
        self.assert_nothing_created()

    def test_the_spawner_refuses_the_same_requests(self):
        for name, (path, headers, kind, json_body) in NOT_NAVIGATIONS.items():
            with self.subTest(name):
                before = metric(self.stack.spawner_metrics(), "director_spawner_wake_refused_total", kind=kind)
                status, response_headers, body = spawner_request(self.stack, "dave", path, headers)
                self.assert_refused(name, status, response_headers, body, json_body)
                after = metric(self.stack.spawner_metrics(), "director_spawner_wake_refused_total", kind=kind)
                self.assertEqual(after, before + 1, name)
        time.sleep(0.5)
        self.assert_nothing_created()

    def test_the_status_endpoint_never_wakes(self):
        for send in (lambda: self.stack.request("dave", path="/.container-director/status",
                                                headers=[("Accept", "application/json")]),
                     lambda: spawner_request(self.stack, "dave", "/.container-director/status",
                                             [("Accept", "application/json")])):
            status, headers, body = send()
            self.assertEqual(status, 200, body[:300])
            self.assertEqual(json.loads(body)["phase"], "absent")
        self.assert_nothing_created()

    def test_the_spawner_refuses_requests_not_through_the_director(self):
        page_load = [("Accept", "text/html")]
        ours = director_headers(self.stack, "dave")

        def without(name, *extra):
            return [h for h in ours if h[0] != name] + list(extra)

        cases = {  # name: (headers, status, X-Director-Reason)
            "no headers": ([], 403, "not-through-the-director"),
            "no username": (without("X-Forwarded-Preferred-Username"), 403, "not-through-the-director"),
            "no container host": (without("X-Director-Container-Host"), 403, "not-through-the-director"),
            "another prefix": (without("X-Director-Container-Host",
                                       ("X-Director-Container-Host", "elsewhere-dave")),
                               403, "not-through-the-director"),
            "another user's host": (without("X-Director-Container-Host",
                                            ("X-Director-Container-Host", self.stack.host_for("alice"))),
                                    403, "not-through-the-director"),
            # The agent could not give a label: "cannot place you right now", nothing woken.
            "no label": (without("X-Director-Label"), 503, "no-label"),
        }
        for name, (headers, expected, reason) in cases.items():
            with self.subTest(name):
                status, response_headers, body = spawner_request(self.stack, "dave", "/",
                                                                 page_load + headers, director=False)
                self.assertEqual((status, response_headers.get("x-director-reason")),
                                 (expected, reason), f"{name}: {body[:300]}")
                self.assertEqual(response_headers.get("cache-control"), "no-store")
                if expected == 503:
                    self.assertEqual(response_headers.get("retry-after"), "5")
        self.assert_nothing_created()


if __name__ == "__main__":
    main(director_spawner=True)
