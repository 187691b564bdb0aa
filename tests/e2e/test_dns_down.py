#!/usr/bin/env python3
"""The DNS server down, two ways: dead (dnsmasq stopped: queries are refused at once) and
silent (dnsmasq SIGSTOPped: queries time out). In both:

- users known alive keep reaching their containers: when DNS fails, the agent probes the
  user's last address instead (stale-if-error, docs/architecture.md), and only while that
  probe succeeds: a container that stops meanwhile is abandoned all the same; and only
  within --stale-if-error of DNS's last answer (DnsDownBeyondStaleBound);
- new users go to the spawner (dns-error; or agent-unavailable when the lookup outlasts the
  SPOE processing timeout), never to a guessed address;
- a container started while DNS was down is found once DNS is back, and unknown users get
  no-such-host again."""

import signal
import time

from common import RecordingSpawnerTest, main, our_pages, poll, who_answered

DOWN_FOR = 3.0  # s of traffic with DNS down


class DnsDown(RecordingSpawnerTest):
    def stale_answers(self):
        return self.stack.agent_metrics().get("director_stale_dns_answers_total", 0)

    def check_dns_down(self, how, sig):
        stack, pages = self.stack, our_pages()
        alive = [f"alice-{how}", f"bob-{how}"]
        stack.add_containers(alive)
        for user in alive:
            poll(lambda u=user: stack.served_by(u), lambda s: s.startswith("backend"), 5)
        stale_before = self.stale_answers()

        stack.stop_dns(sig)
        try:
            # Known users keep working, every request, for as long as the outage lasts.
            answers, started = [], time.monotonic()
            while time.monotonic() - started < DOWN_FOR:
                for user in alive:
                    answers.append((user, who_answered(*stack.request(user), pages=pages)))
            wrong = [(u, a) for u, a in answers if a != self.backend_of(u)]
            self.assertEqual(wrong[:5], [], f"{len(wrong)} of {len(answers)} wrong, DNS {how}")
            self.assertGreater(self.stale_answers(), stale_before,
                               "no answer came from the last known address")

            # A new user goes to the spawner, with a reason and without an address.
            before = self.spawner.count()
            status, headers, body = stack.request(f"carol-{how}")
            self.assertEqual(who_answered(status, headers, body, pages), "spawner")
            seen = self.spawner.since(before)
            self.assertEqual([e["container_host"] for e in seen], [f"vscode-carol-{how}"])
            self.assertIn(seen[0]["reason"], ("dns-error", "agent-unavailable"))

            # A known user whose container stops is not kept alive by the stale address.
            stack.stop_container(alive[1], signal.SIGKILL, forget=False)
            answer, seconds, history = poll(
                lambda: who_answered(*stack.request(alive[1]), pages=pages),
                lambda a: a == "spawner", 5)
            self.assertTrue(all(a.startswith("page container-unavailable") or a == "spawner"
                                or a == f"backend vscode-{alive[1]} {self.stack.container(alive[1])['addr']}"
                                for a in history), history)

            # A container that starts while DNS is down cannot be found yet.
            stack.containers.start(stack.host_for(f"dave-{how}"), f"dave-{how}")
            stack.containers.wait_ready(stack.host_for(f"dave-{how}"))
            self.assertEqual(stack.served_by(f"dave-{how}"), "spawner")
        finally:
            stack.resume_dns()

        # DNS is back: dave is found, carol is known not to exist.
        poll(lambda: stack.served_by(f"dave-{how}"), lambda s: s.startswith("backend"), 5)
        self.assert_routed(f"dave-{how}")
        self.assert_routed(alive[0])
        before = self.spawner.count()
        poll(lambda: (stack.request(f"carol-{how}"), self.spawner.since(before)[-1]["reason"])[1],
             lambda reason: reason == "no-such-host", 5)

    def test_dns_dead(self):
        self.check_dns_down("dead", signal.SIGTERM)

    def test_dns_silent(self):
        self.check_dns_down("silent", signal.SIGSTOP)


class DnsDownBeyondStaleBound(RecordingSpawnerTest):
    """With --stale-if-error 3s, a user known alive keeps their container through the first
    moments of the outage, then goes to the spawner (dns-error) once DNS's last answer is
    older than the bound, and comes back when DNS does."""

    STALE_IF_ERROR = 3.0
    stack_options = {"agent_args": ["--stale-if-error", f"{int(STALE_IF_ERROR * 1000)}ms"]}

    def test_fallback_ends_at_the_bound(self):
        stack, pages, user = self.stack, our_pages(), "erin"
        stack.add_container(user)
        poll(lambda: stack.served_by(user), lambda s: s.startswith("backend"), 5)
        # The last lookup that succeeded: at most alive_ttl (0.8 s) before this request, or
        # before the fast path's last ask (150 ms earlier). Margin: 1.5 s of the bound.
        self.assert_routed(user)

        stack.stop_dns(signal.SIGTERM)
        down = time.monotonic()
        try:
            # Within the bound minus one alive_ttl: still the container, every request.
            answers = []
            while time.monotonic() - down < self.STALE_IF_ERROR - 1.5:
                answers.append(who_answered(*stack.request(user), pages=pages))
            self.assertEqual({a for a in answers}, {self.backend_of(user)})
            # Past the bound: the spawner, because DNS failed.
            before = self.spawner.count()
            _, seconds, _ = poll(lambda: who_answered(*stack.request(user), pages=pages),
                                 lambda a: a == "spawner", self.STALE_IF_ERROR + 5)
            self.assertEqual({e["reason"] for e in self.spawner.since(before)}, {"dns-error"})
            self.assertGreater(time.monotonic() - down, self.STALE_IF_ERROR - 1.5)
        finally:
            stack.resume_dns()
        poll(lambda: stack.served_by(user), lambda s: s.startswith("backend"), 5)


if __name__ == "__main__":
    main()
