#!/usr/bin/env python3
"""An event backstop longer than HAProxy reuses an answer for (issue 11): haproxy.cfg routes by a
held answer only while its expiry is at most 2 minutes ahead (acl fast_path, 1..120000 ms),
so an agent with DIRECTOR_EVENT_BACKSTOP=10m (a background re-check from 6.25 to 7.5 minutes)
must hold its answers no longer than that (decision::max_hold). With a longer hold HAProxy would
find every entry "not fresh" and ask the agent on every request: the fast path silently gone."""

from common import FeedStackTest, agent_decisions, main, poll, wait_long_hold


class EventLongBackstop(FeedStackTest):
    running = ("alice",)
    stack_options = {"agent_args": ["--event-backstop", "10m"]}

    def setUp(self):
        self.stack.wait_liveness_mode("events", timeout=15)

    def test_answers_are_held_two_minutes_at_most_and_used(self):
        self.stack.add_container("alice")
        poll(lambda: self.stack.served_by("alice"), lambda s: s == self.backend_of("alice"), 3)
        entry = wait_long_hold(self.stack, "alice")
        before = agent_decisions(self.stack)
        for _ in range(20):
            self.assertEqual(self.stack.served_by("alice"), self.backend_of("alice"))
        self.assertEqual(agent_decisions(self.stack), before, "requests reached the agent: HAProxy did not use the held answer")
        self.assertLessEqual(entry["hold_left"], 120.0)


if __name__ == "__main__":
    main(event_feeds=True)
