#!/usr/bin/env python3
"""What goes wrong around the container, with director-spawner and Podman: each failure gets
its own page and reason through HAProxy, never a bare 5xx.

- the runtime is down (the spawner pointed at a socket nobody serves): runtime_unavailable;
- the image is missing and cannot be pulled (no registry here): image_missing;
- the user's container name is taken by a container the spawner did not create (made directly
  through the API, without the spawner's labels): name_taken, and that container is never
  touched (not started, stopped or removed) nor its logs shown."""

import json
import time

from common import SpawnerStackTest, main
from podman import TEST_IMAGE, UnixHTTPConnection


def assert_failure_page(test, status, headers, body, expected_status, reason, title):
    test.assertEqual(status, expected_status, body[:800])
    test.assertEqual(headers.get("x-director-reason"), reason)
    test.assertEqual(headers.get("cache-control"), "no-store")
    test.assertTrue(headers.get("content-type", "").startswith("text/html"), headers)
    test.assertIn(f"<title>{title}</title>".encode(), body)
    test.assertIn(f"<code>{reason}</code>".encode(), body)
    test.assertIn(b"Try again</a>", body)


class RuntimeDown(SpawnerStackTest):
    users = ("rita",)
    spawner_settings = {"SPAWNER_RUNTIME": "unix:///nonexistent/director-test/podman.sock"}

    def test_runtime_unavailable_page(self):
        status, headers, body, _ = self.wait_for_page("rita", "runtime_unavailable")
        assert_failure_page(self, status, headers, body, 503, "runtime_unavailable",
                            "The container runtime is not answering")
        self.assertEqual(headers.get("retry-after"), "10")
        self.assertFalse(self.stack.spawner_status()["runtime"]["reachable"])
        [row] = [row for row in self.stack.spawner_users() if row["label"] == "rita"]
        self.assertEqual((row["phase"], row["failure"]), ("failed", "runtime_unavailable"))


class ImageMissing(SpawnerStackTest):
    users = ("ines",)
    spawner_settings = {"SPAWNER_IMAGE": "localhost/director-test-missing:latest"}

    def test_image_missing_page(self):
        status, headers, body, _ = self.wait_for_page("ines", "image_missing")
        assert_failure_page(self, status, headers, body, 502, "image_missing",
                            "Your container&#39;s image is missing")
        self.assertEqual(self.managed_containers("ines"), [])


class NameTaken(SpawnerStackTest):
    users = ("tina",)

    def create_foreign_container(self, name):
        """A container made directly through the API, without the spawner's labels, started."""
        spec = {"Image": TEST_IMAGE, "Cmd": ["sh", "-c", "echo secret-of-someone-else; exec sleep 600"],
                "HostConfig": {"NetworkMode": "none"}}
        connection = UnixHTTPConnection(self.stack.podman.socket, timeout=30)
        try:
            connection.request("POST", f"/containers/create?name={name}", json.dumps(spec),
                               {"Content-Type": "application/json"})
            response = connection.getresponse()
            body = response.read()
            self.assertEqual(response.status, 201, body)
            container_id = json.loads(body)["Id"]
        finally:
            connection.close()
        connection = UnixHTTPConnection(self.stack.podman.socket, timeout=30)
        try:
            connection.request("POST", f"/containers/{container_id}/start")
            self.assertEqual(connection.getresponse().status, 204)
        finally:
            connection.close()
        return container_id

    def inspect(self, container_id):
        connection = UnixHTTPConnection(self.stack.podman.socket, timeout=30)
        try:
            connection.request("GET", f"/containers/{container_id}/json")
            response = connection.getresponse()
            return json.loads(response.read())
        finally:
            connection.close()

    def test_a_name_taken_by_another_container_is_never_touched(self):
        container_id = self.create_foreign_container(self.stack.host_for("tina"))
        before = self.inspect(container_id)
        self.assertTrue(before["State"]["Running"])
        status, headers, body, _ = self.wait_for_page("tina", "name_taken")
        assert_failure_page(self, status, headers, body, 409, "name_taken",
                            "Your container&#39;s name is taken")
        self.assertNotIn(b"secret-of-someone-else", body)  # never another's logs
        # More visits: each retries (the loading page while it inspects again) and finds the
        # name taken again; the container stays as it was.
        for _ in range(3):
            time.sleep(2.5)  # past the lifecycle's retry_after
            self.wait_for_page("tina", "name_taken", 10, interval=0.2)
        after = self.inspect(container_id)
        self.assertTrue(after["State"]["Running"])
        self.assertEqual(after["State"]["StartedAt"], before["State"]["StartedAt"])
        self.assertEqual(after["RestartCount"], before["RestartCount"])
        self.assertEqual(self.managed_containers("tina"), [])  # still not labelled as ours
        names = [name.lstrip("/") for c in self.stack.podman_containers() for name in c.get("Names", [])]
        self.assertEqual(names.count(self.stack.host_for("tina")), 1)


if __name__ == "__main__":
    main(director_spawner=True)
