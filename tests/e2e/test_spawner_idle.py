#!/usr/bin/env python3
"""Idle retirement, with director-spawner, Podman, the agent's /users and its /connections (its
HAProxy's user_connections table, which the agent reads through DIRECTOR_HAPROXY_SOCKETS): a user who sent no request for SPAWNER_IDLE_TIMEOUT (1 minute, the
shortest the spawner accepts) and has no open connection gets their container stopped, their
volume kept; a user just as quiet but with a WebSocket open through HAProxy to their container
is spared. The next visit starts the stopped container again."""

import base64
import hashlib
import json
import os
import socket
import sys
import time

from common import SpawnerStackTest, main, metric
from loopback import http_get
from podman import api as podman_api

IDLE_TIMEOUT = 60  # seconds: SPAWNER_IDLE_TIMEOUT's minimum
CHECK_INTERVAL = 1
WEBSOCKET_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3


def open_websocket(stack, user):
    """A WebSocket through HAProxy to `user`'s container (its /cgi-bin/ws holds it open):
    (the connected socket, the response head, the Sec-WebSocket-Accept it must carry)."""
    key = base64.b64encode(os.urandom(16)).decode()
    sock = socket.create_connection(stack.http, timeout=10)
    sock.sendall((f"GET /cgi-bin/ws?{key} HTTP/1.1\r\nHost: director\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                  f"X-Forwarded-Preferred-Username: {user}\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            raise AssertionError(f"closed during the handshake: {head!r}")
        head += chunk
    accept = base64.b64encode(hashlib.sha1((key + WEBSOCKET_GUID).encode()).digest()).decode()
    return sock, head.decode(errors="replace"), accept


def open_connections(stack):
    """{username: open} as the stack's agent serves it to the spawner (GET /connections: its
    HAProxy's user_connections table), one page (the tests have a handful of users)."""
    status, body = http_get(stack.agent_http, "/connections")
    if status != 200:
        raise AssertionError(f"/connections answered {status}: {body}")
    answer = json.loads(body)
    assert answer["sockets"] and answer["next"] is None, answer
    return {row["user"]: row["open"] for row in answer["connections"]}


def wait_open_connections(stack, user, expected, timeout=5.0):
    """`user`'s count on /connections once it is `expected` (None: not listed), or the last seen
    after `timeout`. The agent serves one read of HAProxy for a second (the spawner's idle round
    may just have made it): a change shows within about a second."""
    deadline = time.monotonic() + timeout
    while True:
        seen = open_connections(stack).get(user)
        if seen == expected or time.monotonic() > deadline:
            return seen
        time.sleep(0.1)


class SpawnerIdle(SpawnerStackTest):
    users = ("ivan", "wendy")
    spawner_settings = {"SPAWNER_IDLE_TIMEOUT": f"{IDLE_TIMEOUT}s",
                        "SPAWNER_IDLE_CHECK_INTERVAL": f"{CHECK_INTERVAL}s",
                        "SPAWNER_VOLUME_MOUNT": "/data"}

    def state(self, label):
        [container] = self.managed_containers(label)
        return container

    def test_an_idle_user_is_retired_a_user_with_a_websocket_is_spared(self):
        for user in self.users:
            self.visit(user)
        for user in self.users:
            self.stack.wait_routed(user)
        ivan_seen = time.monotonic()  # ivan's last request
        ivan_id = self.state("ivan")["Id"]
        sock, head, accept = open_websocket(self.stack, "wendy")
        try:
            self.assertTrue(head.startswith("HTTP/1.1 101"), head)
            fields = dict(line.split(": ", 1) for line in head.split("\r\n")[1:] if ": " in line)
            self.assertEqual({k.lower(): v for k, v in fields.items()}.get("sec-websocket-accept"),
                             accept, head)
            self.assertEqual(wait_open_connections(self.stack, "wendy", 1), 1)

            # ivan: stopped once idle for the timeout (not before), within a few checks.
            while self.state("ivan")["State"] != "exited":  # running, then stopping
                self.assertLess(time.monotonic() - ivan_seen, IDLE_TIMEOUT + 30, "ivan never retired")
                time.sleep(0.5)
            retired_after = time.monotonic() - ivan_seen
            self.assertGreaterEqual(retired_after, IDLE_TIMEOUT - 1)
            status, _, body = podman_api(self.stack.podman.socket, "GET", "/volumes/director-home-ivan")
            self.assertEqual(status, 200, body[:300])  # the volume stays
            series = self.stack.spawner_metrics()
            self.assertGreaterEqual(metric(series, "director_spawner_retirements_total",
                                           reason="idle", action="stop"), 1)

            # wendy: as quiet as ivan for the agents, but her WebSocket is open.
            for _ in range(3 * CHECK_INTERVAL * 2):
                self.assertEqual(self.state("wendy")["State"], "running")
                time.sleep(0.5)
            self.assertEqual(wait_open_connections(self.stack, "wendy", 1), 1)
            print(f"\nivan retired {retired_after:.1f} s after his last request; wendy spared "
                  "while her WebSocket is open", file=sys.stderr)
        finally:
            sock.close()

        # ivan's next visit starts the same container again.
        answer = self.visit("ivan")[0]
        self.assertIn(answer, ("spawning", "container"))
        self.stack.wait_routed("ivan")
        self.assertEqual(self.state("ivan")["Id"], ivan_id)
        users = {row["label"]: row for row in self.stack.spawner_users()}
        self.assertEqual(users["ivan"]["phase"], "ready", json.dumps(users["ivan"]))


if __name__ == "__main__":
    main(director_spawner=True)
