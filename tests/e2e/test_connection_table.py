#!/usr/bin/env python3
"""The stick table user_connections (haproxy.cfg, backend container), which director-spawner
reads with `show table` to retire no container whose user still has a connection open:

- an open WebSocket counts 1 (conn_cur) for its user while it is open, 0 once closed, by
  either side; two count 2;
- a request in flight counts until its response ends; a finished one does not;
- one keep-alive client connection carrying several users' requests, as the sign-in proxy's
  pool does, counts per request (per stream), never for the whole client connection: between
  requests each user's count is 0, and a long response of one user counts for that user only;
- requests that reach the spawner (no container) create no entry;
- after a reload the new worker's table is empty: a WebSocket the old worker still carries is
  counted in the old worker's table, which the master CLI reaches (`@!<pid> show table`)."""

import http.client
import re
import signal
import time

from common import IDENTITY, StackTest, WebSocket, main, poll

ENTRY = re.compile(r"key=(\S+) .*conn_cur=(\d+) http_req_cnt=(\d+)")


class ConnectionTable(StackTest):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.stack.add_containers(["alice", "bob", "carol"])

    def table(self, worker=None):
        """{username: (conn_cur, http_req_cnt)} from `show table user_connections` on the
        current worker's stats socket, or on `worker` (a PID) through the master CLI."""
        rows = {}
        output = (self.stack.haproxy_cli(f"@!{worker} show table user_connections", master=True)
                  if worker else self.stack.haproxy_cli("show table user_connections"))
        for line in output.splitlines():
            if (match := ENTRY.search(line)):
                rows[match[1]] = (int(match[2]), int(match[3]))
        return rows

    def open_connections(self, user):
        return self.table().get(user, (0, 0))[0]

    def wait_open(self, user, count):
        poll(lambda: self.open_connections(user), lambda n: n == count, 5)

    def test_websocket_counts_while_open(self):
        first = WebSocket(self.stack, "alice")
        try:
            self.assertTrue(first.accepted)
            self.wait_open("alice", 1)
            second = WebSocket(self.stack, "alice")
            try:
                self.assertTrue(second.accepted)
                self.wait_open("alice", 2)
                second.send("still here")
                self.assertEqual(second.receive(), (1, "still here"))
            finally:
                second.close()  # the client goes away without a close frame
            self.wait_open("alice", 1)
            first.send("", opcode=8)  # a clean close: the container answers and closes
            self.assertEqual(first.receive(), (8, ""))
        finally:
            first.close()
        self.wait_open("alice", 0)

    def test_shared_client_connection_counts_per_request(self):
        conn = http.client.HTTPConnection(*self.stack.http, timeout=10)
        try:
            before = self.table()
            for user in ("bob", "carol", "bob"):
                conn.request("GET", "/", headers={IDENTITY: user})
                response = conn.getresponse()
                response.read()
                self.assertEqual(response.status, 200)
                # The client connection stays open, yet no one's request is in flight.
                self.assertEqual(self.open_connections("bob"), 0)
                self.assertEqual(self.open_connections("carol"), 0)
            after = self.table()
            self.assertEqual(after["bob"][1] - before.get("bob", (0, 0))[1], 2)
            self.assertEqual(after["carol"][1] - before.get("carol", (0, 0))[1], 1)

            # A response that does not end (the container stalls after 1000 bytes) counts for
            # its user, on the same client connection, until it ends.
            conn.request("GET", "/partial", headers={IDENTITY: "carol"})
            response = conn.getresponse()
            self.assertEqual(response.read(1000), b"x" * 1000)
            self.wait_open("carol", 1)
            self.assertEqual(self.open_connections("bob"), 0)
            self.stack.stop_container("carol", signal.SIGKILL, forget=False)  # it ends
            with self.assertRaises((http.client.IncompleteRead, ConnectionError)):
                response.read()
            self.wait_open("carol", 0)
        finally:
            conn.close()

    def test_reload_leaves_open_connections_with_the_old_worker(self):
        old_workers = self.stack.haproxy_workers()
        ws = WebSocket(self.stack, "alice")
        try:
            self.assertTrue(ws.accepted)
            self.wait_open("alice", 1)
            self.stack.reload_haproxy()
            self.assertEqual(self.open_connections("alice"), 0)  # the new worker's table
            self.assertEqual([self.table(pid).get("alice", (0, 0))[0] for pid in old_workers], [1])
            ws.send("after the reload")  # still open, through the old worker
            self.assertEqual(ws.receive(), (1, "after the reload"))
        finally:
            ws.close()

    def test_spawner_requests_are_not_counted(self):
        status, headers, _ = self.stack.request("nobody-yet-" + str(int(time.time())))
        self.assertEqual(headers.get("x-served-by"), "spawner", status)
        self.assertEqual([u for u in self.table() if u.startswith("nobody-yet-")], [])


if __name__ == "__main__":
    main()
