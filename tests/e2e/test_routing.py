#!/usr/bin/env python3
"""Routing: a user with a live container reaches it; a user without one reaches the spawner,
told which container to create, and then their new container."""

import http.client

from common import IDENTITY, StackTest, main, poll
from loopback import http_get


class Routing(StackTest):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.stack.add_containers(["alice", "bob"])

    def test_alive_user_reaches_own_container(self):
        for user in ("alice", "bob", "alice"):
            body = self.assert_routed(user, path="/some/path?x=1")
            self.assertIn(f"hello {user} from vscode-{user}".encode(), body)
        last = self.stack.backend_requests("alice")[-1]
        self.assertEqual((last["path"], last["user"]), ("/some/path?x=1", ["alice"]))

    def test_unknown_user_reaches_spawner_with_container_host(self):
        status, headers, body = self.stack.request("carol")
        self.assertEqual((status, headers.get("x-served-by")), (202, "spawner"))
        self.assertIn("refresh", headers)
        seen = self.stack.spawner_requests()[-1]
        self.assertEqual(seen["user"], ["carol"])
        self.assertEqual(seen["container_host"], "vscode-carol")
        self.assertEqual(seen["reason"], "no-such-host")

    def test_spawned_container_is_reached_next(self):
        status, headers, _ = self.stack.request("dave")
        self.assertEqual((status, headers.get("x-served-by")), (202, "spawner"))
        self.stack.containers.wait_ready("vscode-dave")
        poll(lambda: self.stack.served_by("dave"), lambda s: s.startswith("backend"), 3)
        self.assert_routed("dave")

    def test_client_cannot_choose_the_container(self):
        """X-Director-* request headers are the director's: a client's copies are dropped."""
        status, _, _ = self.stack.request(
            "erin", headers=[("X-Director-Container-Host", "vscode-alice"),
                             ("X-Director-Reason", "ok")])
        self.assertEqual(status, 202)
        seen = self.stack.spawner_requests()[-1]
        self.assertEqual((seen["container_host"], seen["reason"]), ("vscode-erin", "no-such-host"))

    def test_backend_connections_are_reused_across_users(self):
        """Many users over one client connection (the sign-in proxy's keep-alive pool): each
        container's connection is reused, not opened anew whenever the user changes
        (haproxy.cfg, pool-low-conn on the container server)."""
        users = ["alice", "bob", "frank", "grace"]
        self.stack.add_containers(users[2:])
        for user in users:
            poll(lambda u=user: self.stack.served_by(u), lambda s: s.startswith("backend"), 3)
        before = self.container_connects()
        conn = http.client.HTTPConnection(*self.stack.http, timeout=5)
        served = []
        for i in range(40):
            user = users[i % len(users)]
            conn.request("GET", "/", headers={IDENTITY: user})
            response = conn.getresponse()
            response.read()
            served.append((response.status, response.getheader("X-Served-By")) ==
                          (200, self.backend_of(user)))
        conn.close()
        opened = self.container_connects() - before
        self.assertEqual(served, [True] * 40)
        self.assertLessEqual(opened, 2 * len(users), f"{opened} connections for 40 requests")

    def container_connects(self):
        """Connections HAProxy opened to containers so far (show stat, "connect")."""
        lines = self.stack.haproxy_cli("show stat").splitlines()
        header = lines[0].lstrip("# ").split(",")
        row = next(line.split(",") for line in lines[1:]
                   if line.startswith("container,container,"))
        return int(row[header.index("connect")])

    def test_metrics_endpoint(self):
        self.stack.request("alice")
        text = http_get(self.stack.metrics, "/metrics")[1]
        self.assertIn('haproxy_backend_http_responses_total{proxy="container",code="2xx"}', text)
        self.assertIn('haproxy_server_status{proxy="agents",server="agent"', text)


class RoutingWithDomain(StackTest):
    """CONTAINER_DOMAIN: containers are <prefix>-<label>.<domain>, for the agent and for
    HAProxy's degraded mode alike."""

    stack_options = {"domain": "users.test"}

    def test_routes_by_full_name(self):
        self.stack.add_container("alice")
        self.assert_routed("alice")
        self.assertEqual(self.stack.served_by("bob"), "spawner")
        self.assertEqual(self.stack.spawner_requests()[-1]["container_host"],
                         "vscode-bob.users.test")
        self.stack.kill_agent()
        self.assert_routed("alice")
        self.assertEqual(self.stack.served_by("carol"), "spawner")
        seen = self.stack.spawner_requests()[-1]
        self.assertEqual((seen["container_host"], seen["reason"]),
                         ("vscode-carol.users.test", "agent-unavailable"))


if __name__ == "__main__":
    main()
