#!/usr/bin/env python3
"""Liveness from events with the real parts (issue 11): director-spawner and its Podman API
service (tools/podman.py), the agent subscribed to the spawner's /events
(DIRECTOR_EVENT_FEEDS) and clearing HAProxy's fast_path entries through its stats socket
(DIRECTOR_HAPROXY_SOCKETS). While the feed is connected, HAProxy holds an alive answer for tens
of seconds (the event TTL), so each convergence below within 1 s is the event's doing, not a
TTL's; the test reads the hold from HAProxy's table first.

(a) a container stopped through the runtime (podman stop): its user's next request goes to the
    spawner within 1 s, measured, and HAProxy's entry was cleared by the event;
(b) the same for a container killed with SIGKILL (podman kill);
(c) a container started through the runtime (podman start): routed within 1 s;
(d) the spawner killed (feed lost): /status says mode "ttl" at once, HAProxy's table is
    cleared, requests are still routed (TTL mode); the spawner restarted: the agent reconnects
    with a re-list (snapshot) and is in mode "events" again, holding long answers;
(e) the runtime down (the Podman API service killed: the spawner's event stream breaks, and it
    misses events until it has listed again): the spawner ends its feed's streams, so the agent
    is in mode "ttl" at once with HAProxy's table cleared, rather than holding answers nobody
    could take back; the runtime back: events again after the spawner's re-list.

To observe where a request goes without waking anyone, it asks as an XHR would (Accept:
application/json): the spawner backend answers those with HAProxy's 503 "not-a-navigation"."""

import signal
import sys
import time

from common import (SpawnerStackTest, covered_users, main, poll, snapshots_received,
                    wait_entry_cleared, wait_long_hold, wait_settled_long_hold, who_answered)

BOUND = 1.0  # seconds: issue 11's convergence target with events on


class EventLiveness(SpawnerStackTest):
    users = ("alice", "bob", "carol", "dave", "erin")
    stack_options = {"event_feeds": "spawner", "haproxy_sockets": True}

    def setUp(self):
        self.stack.wait_liveness_mode("events", timeout=15)

    def where(self, user):
        """Where a request for `user` goes, waking nothing: "container" (their container's
        page), "spawner" (the spawner backend: its not-a-navigation answer) or what else
        answered (who_answered, e.g. "page container-unavailable 503")."""
        status, headers, body = self.stack.request(user, headers=[("Accept", "application/json")])
        if status == 200 and body == self.stack.container_page(user):
            return "container"
        if headers.get("x-director-reason") == "not-a-navigation":
            return "spawner"
        return who_answered(status, headers, body)

    def routed_with_long_hold(self, user):
        """Wakes `user`'s container, waits until it is routed and HAProxy holds the answer long
        (the event TTL) and no revocation of the container's start is still to come; returns
        (HAProxy's entry, the container's API id)."""
        self.visit(user)
        self.stack.wait_routed(user, timeout=60)
        entry = wait_settled_long_hold(self.stack, user)
        self.assertEqual(entry["addr"], self.stack.user_addresses[user])
        [container] = self.managed_containers(user)
        return entry, container["Id"]

    def assert_sent_to_spawner_within_bound(self, user, since, entry, how):
        cleared = wait_entry_cleared(self.stack, user, 3)
        _, _, history = poll(lambda: self.where(user), lambda w: w == "spawner", 3, 0.02)
        elapsed = time.monotonic() - since
        print(f"\n{user}: {how}; HAProxy held the answer {entry['hold_left']:.1f} s more; its "
              f"entry cleared {cleared * 1000:.0f} ms and the spawner reached "
              f"{elapsed * 1000:.0f} ms after the runtime's answer; {history}",
              file=sys.stderr, end=" ")
        self.assertEqual(history, ["spawner"])  # the first request after the clear already
        self.assertLessEqual(elapsed, BOUND)

    def test_a_stopped_through_the_runtime(self):
        entry, container = self.routed_with_long_hold("alice")
        self.assertEqual(self.stack.podman_stop(container), 204)
        self.assert_sent_to_spawner_within_bound("alice", time.monotonic(), entry, "podman stop")

    def test_b_killed_with_sigkill(self):
        entry, container = self.routed_with_long_hold("bob")
        self.assertEqual(self.stack.podman_kill(container, "KILL"), 204)
        self.assert_sent_to_spawner_within_bound("bob", time.monotonic(), entry, "podman kill")

    def test_c_started_through_the_runtime(self):
        _, container = self.routed_with_long_hold("carol")
        self.assertEqual(self.stack.podman_stop(container), 204)
        poll(lambda: self.where("carol"), lambda w: w == "spawner", 3, 0.05)
        self.assertEqual(self.stack.podman_start(container), 204)
        started_at = time.monotonic()
        _, _, history = poll(lambda: self.where("carol"), lambda w: w == "container", 3, 0.02)
        elapsed = time.monotonic() - started_at
        print(f"\ncarol: routed {elapsed * 1000:.0f} ms after podman start answered "
              f"({len(history)} requests)", file=sys.stderr, end=" ")
        self.assertLessEqual(elapsed, BOUND)

    def test_d_spawner_killed_falls_back_to_ttls_and_reconnects_with_a_relist(self):
        self.routed_with_long_hold("dave")
        snapshots = snapshots_received(self.stack)
        killed_at = time.monotonic()
        self.stack.components["spawner"].stop(signal.SIGKILL)
        took = self.stack.wait_liveness_mode("ttl", timeout=60)
        cleared = wait_entry_cleared(self.stack, "dave", 3)
        print(f"\nspawner killed: mode ttl after {took * 1000:.0f} ms, dave's entry cleared "
              f"{(time.monotonic() - killed_at) * 1000:.0f} ms after the kill", file=sys.stderr,
              end=" ")
        self.assertLessEqual(took, BOUND)
        # TTL mode: dave is still routed, and HAProxy holds his answer only briefly.
        self.assertEqual(self.where("dave"), "container")
        entry = self.stack.fast_path_entry("dave")
        self.assertTrue(entry is None or entry["hold_left"] <= 0.5, entry)

        self.stack.start_director_spawner()
        restarted_at = time.monotonic()
        self.stack.wait_liveness_mode("events", timeout=15)
        print(f"events again {time.monotonic() - restarted_at:.2f} s after the restart",
              file=sys.stderr, end=" ")
        # The re-list: a new snapshot, covering every running managed container.
        self.assertGreater(snapshots_received(self.stack), snapshots)
        running = sum(1 for c in self.stack.podman_containers()
                      if (c.get("Labels") or {}).get("io.container-director.managed") == "true"
                      and c["State"] == "running")
        poll(lambda: covered_users(self.stack), lambda n: n == running, 3)
        wait_long_hold(self.stack, "dave")

    def test_e_runtime_down_ends_the_feed_until_the_spawner_has_listed_again(self):
        self.routed_with_long_hold("erin")
        snapshots = snapshots_received(self.stack)
        killed_at = time.monotonic()
        self.stack.podman.kill_service()
        try:
            took = self.stack.wait_liveness_mode("ttl", timeout=60)
            wait_entry_cleared(self.stack, "erin", 3)
            print(f"\nruntime down: mode ttl after {took * 1000:.0f} ms, erin's entry cleared "
                  f"{(time.monotonic() - killed_at) * 1000:.0f} ms after the kill", file=sys.stderr,
                  end=" ")
            self.assertLessEqual(took, BOUND)
            # The container runs on: routed, under TTLs.
            self.assertEqual(self.where("erin"), "container")
            self.assertEqual(self.stack.liveness()["mode"], "ttl")
        finally:
            self.stack.podman.start_service()
        back_at = time.monotonic()
        self.stack.wait_liveness_mode("events", timeout=30)
        print(f"events again {time.monotonic() - back_at:.2f} s after the runtime came back",
              file=sys.stderr, end=" ")
        self.assertGreater(snapshots_received(self.stack), snapshots)
        wait_long_hold(self.stack, "erin")


if __name__ == "__main__":
    main(director_spawner=True, event_feeds=True)
