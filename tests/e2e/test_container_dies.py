#!/usr/bin/env python3
"""A container that dies (SIGKILL: its name still resolves, as a crashed container's does)
in the middle of a response and in the middle of a WebSocket:

- the response in flight ends at once (truncated: its headers are already sent), it does not
  hang until a timeout;
- the WebSocket is closed at once;
- the user's next requests, following the page's Refresh header as a browser does, get the
  auto-refreshing page (503 pages/container-unavailable.http) while the director still holds
  the container's "alive" answer, then the spawner (which creates a new container), then the
  new container; a WebSocket opened again works with the new container.
Never a raw error page.

The agent runs with DIRECTOR_ALIVE_TTL=3s (default 800ms) so that the request right after the
death deterministically finds the cached "alive" answer: that is the window in which HAProxy's
page is what the user sees."""

import http.client
import signal
import socket
import time

from common import StackTest, WebSocket, main, our_pages, who_answered

ALIVE_TTL = 3.0


class ContainerDies(StackTest):
    stack_options = {"agent_args": ["--alive-ttl", f"{int(ALIVE_TTL * 1000)}ms",
                                    "--refresh-after", f"{int(ALIVE_TTL * 1000) - 100}ms"]}

    def follow_refresh(self, user, first, limit=8):
        """Like a browser on our pages: request, and while the answer carries Refresh, wait
        that long and request again. Returns the answers (the first one given)."""
        pages, answers = our_pages(), [first]
        while len(answers) < limit and not answers[-1][0].startswith("backend"):
            refresh = answers[-1][1]
            self.assertIsNotNone(refresh, f"{answers[-1][0]} has no Refresh header")
            time.sleep(float(refresh.split(";")[0]))
            status, headers, body = self.stack.request(user)
            answers.append((who_answered(status, headers, body, pages), headers.get("refresh")))
        return [a for a, _ in answers]

    def check_recovery(self, user, answers):
        """page(s) container-unavailable, then the spawner, then the user's new container."""
        kinds = ["page" if a == "page container-unavailable 503" else
                 "spawner" if a == "spawner" else
                 "backend" if a.startswith(f"backend vscode-{user} ") else a for a in answers]
        collapsed = [k for i, k in enumerate(kinds) if i == 0 or kinds[i - 1] != k]
        print(f"\n{user}: {' -> '.join(kinds)}")
        self.assertIn(collapsed, (["page", "spawner", "backend"], ["spawner", "backend"]), answers)
        self.assertEqual(answers[-1], self.backend_of(user), "not the new container")

    def test_dies_mid_response(self):
        stack, pages = self.stack, our_pages()
        stack.add_container("alice")
        self.assert_routed("alice")
        old = self.backend_of("alice")

        conn = http.client.HTTPConnection(*stack.http, timeout=10)
        conn.request("GET", "/partial", headers={"X-Forwarded-Preferred-Username": "alice"})
        response = conn.getresponse()
        self.assertEqual((response.status, response.getheader("x-served-by")), (200, old))
        self.assertEqual(response.read(1000), b"x" * 1000)
        stack.stop_container("alice", signal.SIGKILL, forget=False)
        started = time.monotonic()
        with self.assertRaises((http.client.IncompleteRead, ConnectionError)):
            response.read()
        self.assertLess(time.monotonic() - started, 5, "the cut response hung")
        conn.close()

        status, headers, body = stack.request("alice")
        first = who_answered(status, headers, body, pages)
        self.assertEqual(first, "page container-unavailable 503")
        answers = self.follow_refresh("alice", (first, headers.get("refresh")))
        self.check_recovery("alice", answers)
        self.assertNotEqual(answers[-1], old)

    def test_closes_before_answering(self):
        """HAProxy's bare 502 never reaches the user: the page that retries does."""
        stack = self.stack
        stack.add_container("carol")
        self.assert_routed("carol")
        status, headers, body = stack.request("carol", path="/abort")
        self.assertEqual(who_answered(status, headers, body), "page container-failed 502")
        self.assertEqual(headers.get("refresh"), "2")
        self.assert_routed("carol")  # the container itself still answers

    def test_dies_mid_websocket(self):
        stack = self.stack
        stack.add_container("bob")
        ws = WebSocket(stack, "bob")
        try:
            self.assertTrue(ws.accepted)
            ws.send("before")
            self.assertEqual(ws.receive(), (1, "before"))
            stack.stop_container("bob", signal.SIGKILL, forget=False)
            started = time.monotonic()
            ws.sock.settimeout(5)
            try:
                closed = ws.receive() is None
            except (socket.timeout, ConnectionError) as error:
                closed = not isinstance(error, socket.timeout)
            self.assertTrue(closed, "the WebSocket stayed open after its container died")
            self.assertLess(time.monotonic() - started, 5)
        finally:
            ws.close()

        # The IDE opens its WebSocket again: no upgrade while the container is gone, and no
        # wake either (HAProxy's page while the "alive" answer holds, else the wake policy's
        # 503): only a page load wakes the spawner.
        again = WebSocket(stack, "bob")
        try:
            self.assertFalse(again.accepted)
            self.assertEqual(again.status, 503)
            self.assertTrue(again.headers.get("refresh") == "2" or
                            again.headers.get("x-director-reason") == "not-a-navigation",
                            again.headers)
        finally:
            again.close()
        status, headers, body = stack.request("bob")  # the user reloads the page
        answers = self.follow_refresh(
            "bob", (who_answered(status, headers, body, our_pages()), headers.get("refresh")))
        self.check_recovery("bob", answers)

        ws = WebSocket(stack, "bob")  # and with the new container, the WebSocket works again
        try:
            self.assertTrue(ws.accepted)
            self.assertEqual(ws.headers.get("x-served-by"), self.backend_of("bob"))
            ws.send("after")
            self.assertEqual(ws.receive(), (1, "after"))
        finally:
            ws.close()


if __name__ == "__main__":
    main()
