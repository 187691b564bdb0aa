#!/usr/bin/env python3
"""director-spawner through HAProxy, with a real Podman API service (tools/podman.py): a new
user's first page load gets the loading page and creates their container; the first refresh
after the container listens is routed into it; 200 concurrent first visits create one
container; a stopped container is started again (not re-created) on the next visit.

Each user's container is busybox httpd on the user's own loopback address (tools/stack.py,
spawner="director"); the agent routes to it once it accepts connections."""

import json
import socket
import sys
import threading
import time

from common import SpawnerStackTest, main, metric, poll

REFRESH = 2.0  # SPAWNER_REFRESH_INTERVAL's default: the loading page's meta refresh
DEAD_TTL = 0.5  # the agent's DIRECTOR_DEAD_TTL: how long "not alive" may be answered from its cache


def listening(address, port):
    try:
        socket.create_connection((address, port), 0.2).close()
        return True
    except OSError:
        return False


class SpawnerWake(SpawnerStackTest):
    users = ("alice", "carol", "gina")

    def test_a_new_user_is_routed_by_the_first_refresh_after_the_container_listens(self):
        addr, port = self.stack.user_addresses["alice"], self.stack.container_port
        self.assertFalse(listening(addr, port))
        self.assertEqual(self.managed_containers("alice"), [])

        # The moment alice's container first accepts a connection, seen from outside.
        listened = []

        def watch():
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not listening(addr, port):
                time.sleep(0.02)
            listened.append(time.monotonic())

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()

        first = time.monotonic()
        answer, status, headers, body = self.visit("alice")
        self.assertEqual(answer, "spawning", body[:500])
        self.assert_loading_page(status, headers, body)
        self.assertIn(b'content="2"', body)

        # The status endpoint, on alice's own origin through HAProxy (exempt from the wake
        # policy): the spawner's JSON while she has no container, or her container's 404.
        status, headers, body = self.stack.request(
            "alice", path="/.container-director/status", headers=[("Accept", "application/json")])
        if status == 200:
            self.assertEqual(headers.get("cache-control"), "no-store")
            phase = json.loads(body)["phase"]
            self.assertIn(phase, ("inspecting", "pulling", "creating", "starting",
                                  "waiting_for_ready", "ready"))
        else:
            self.assertEqual(status, 404, body[:300])  # already routed to the container

        # A browser: reloads every REFRESH seconds while it gets the loading page.
        visits = [(first, "spawning")]
        while visits[-1][1] != "container":
            time.sleep(REFRESH)
            sent = time.monotonic()
            answer, status, headers, body = self.visit("alice")
            if answer != "container":
                self.assertEqual(answer, "spawning", body[:800])
                self.assert_loading_page(status, headers, body)
            visits.append((sent, answer))
            self.assertLess(sent - first, 60, f"alice not routed after 60 s: {visits}")
        watcher.join(5)
        self.assertTrue(listened, "the container never listened")
        listen_at = listened[0]
        # Every refresh sent once the agent's "not alive" could no longer be cached is routed.
        late = [(round(sent - listen_at, 2), answer) for sent, answer in visits
                if sent >= listen_at + DEAD_TTL + 0.1]
        self.assertTrue(late and all(answer == "container" for _, answer in late), late)
        print(f"\nalice: container listened {listen_at - first:.2f} s after her first visit; "
              f"routed by the refresh at {visits[-1][0] - first:.2f} s "
              f"({len(visits) - 1} refreshes of {REFRESH:.0f} s)", file=sys.stderr)

        containers = self.managed_containers("alice")
        self.assertEqual(len(containers), 1, containers)
        self.assertEqual(containers[0]["State"], "running")
        self.assertEqual(containers[0]["Labels"].get("io.container-director.user"), "alice")
        self.assertEqual(containers[0]["Labels"].get("io.container-director.managed"), "true")
        # The spawner counts the spawn when its own readiness check sees the container, which
        # may come after the agent's check has routed alice there (as in e2e/browser_loading).
        series = poll(self.stack.spawner_metrics,
                      lambda m: metric(m, "director_spawner_spawns_total", outcome="ready") >= 1, 5)[0]
        self.assertGreaterEqual(metric(series, "director_spawner_spawns_total", outcome="ready"), 1)
        self.assertGreaterEqual(metric(series, "director_spawner_time_to_ready_seconds_count"), 1)
        self.assertGreaterEqual(metric(series, "director_spawner_pages_total", page="loading"), 1)

    def test_concurrent_first_visits_create_one_container(self):
        visitors, answers, lock = 200, [], threading.Lock()
        barrier = threading.Barrier(visitors)

        def visit():
            barrier.wait(10)
            try:
                result = self.visit("carol", timeout=30)[:2]
            except OSError as error:
                result = (repr(error), None)
            with lock:
                answers.append(result)

        creates_before = metric(self.stack.spawner_metrics(), "director_spawner_runtime_requests_total",
                                call="create")
        threads = [threading.Thread(target=visit) for _ in range(visitors)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        took = time.monotonic() - started
        kinds = sorted(set(answers))
        self.assertEqual(len(answers), visitors)
        # Each got the loading page (or, late, her container): never an error.
        self.assertTrue(set(answers) <= {("spawning", 200), ("container", 200)}, kinds)
        self.stack.wait_routed("carol")
        containers = self.managed_containers("carol")
        self.assertEqual(len(containers), 1, containers)
        creates = metric(self.stack.spawner_metrics(), "director_spawner_runtime_requests_total",
                         call="create") - creates_before
        self.assertEqual(creates, 1)
        print(f"\n{visitors} concurrent first visits answered in {took:.2f} s: {kinds}; "
              "one container created", file=sys.stderr)

    def test_a_stopped_container_is_started_again_not_recreated(self):
        self.visit("gina")
        self.stack.wait_routed("gina")
        [before] = self.managed_containers("gina")
        status = self.stack.podman_stop(before["Id"])
        self.assertIn(status, (204, 304))
        [stopped] = self.managed_containers("gina")
        self.assertEqual(stopped["State"], "exited")
        creates_before = metric(self.stack.spawner_metrics(), "director_spawner_runtime_requests_total",
                                call="create")
        # The agent notices at once (refused); the spawner starts the same container again.
        deadline = time.monotonic() + 30
        while self.visit("gina")[0] != "spawning":
            self.assertLess(time.monotonic(), deadline, "gina never got the loading page")
            time.sleep(0.2)
        seconds, _ = self.stack.wait_routed("gina")
        [after] = self.managed_containers("gina")
        self.assertEqual(after["Id"], before["Id"])
        self.assertEqual(after["State"], "running")
        self.assertEqual(metric(self.stack.spawner_metrics(), "director_spawner_runtime_requests_total",
                                call="create"), creates_before)
        print(f"\ngina's stopped container started again, routed {seconds:.2f} s later",
              file=sys.stderr)


if __name__ == "__main__":
    main(director_spawner=True)
