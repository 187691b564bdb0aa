#!/usr/bin/env python3
"""The default username scheme (escape) with director-spawner and Podman: a user whose name is
an e-mail address with capitals (refused under strict) gets a container, a network alias and a
volume named after their escaped label, and is routed into it; a user whose name is already a
label keeps it as is (docs/architecture.md, "Why escape is the default"). The spawner's event
feed names the user beside the label (HAProxy holds an escaped user's answer under the name,
and every agent revokes it from the event: docs/spawner.md, "The event feed")."""

import hashlib

from common import SpawnerStackTest, follow_events, main, poll
from podman import api as podman_api

JACK = b"Jack.Doe@Example.com"
# Username scheme v1 escape: readable part, "-", the first 16 hex digits of SHA-256.
JACK_LABEL = "jack-doe-example-com-" + hashlib.sha256(JACK).hexdigest()[:16]


class SpawnerEscaped(SpawnerStackTest):
    users = (JACK_LABEL, "alice")
    spawner_settings = {"SPAWNER_VOLUME_MOUNT": "/data"}

    def test_containers_and_volumes_are_named_after_the_label(self):
        events = follow_events(self, self.stack.spawner_http)
        for user, label in ((JACK, JACK_LABEL), (b"alice", "alice")):
            with self.subTest(user=user):
                status, headers, body = self.stack.request(user)
                self.assertEqual((status, headers.get("x-director-reason")), (200, "spawning"),
                                 body[:500])
                self.stack.wait_routed(user, label=label, timeout=60)
                [container] = self.managed_containers(label)
                self.assertEqual([name.lstrip("/") for name in container["Names"]], [f"vscode-{label}"])
                self.assertEqual(container["Labels"].get("io.container-director.user"), user.decode())
                status, _, body = podman_api(self.stack.podman.socket, "GET",
                                             f"/volumes/director-home-{label}")
                self.assertEqual(status, 200, body[:300])
                started, _, _ = poll(lambda: [line for line in list(events) if "reader_error" in line
                                              or (line.get("type") == "started" and line.get("label") == label)],
                                     bool, 5)
                self.assertEqual({line.get("username") for line in started}, {user.decode()})


if __name__ == "__main__":
    main(director_spawner=True)
