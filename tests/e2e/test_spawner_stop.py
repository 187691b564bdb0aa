#!/usr/bin/env python3
"""SIGTERM to director-spawner while a runtime command is in flight (spawner/src/main.cpp's
StopSequence), with Podman: the spawner finishes its operations in flight for at most
5 s, and meanwhile its operator listener stays up so that /readyz answers 503
naming the stop (what load balancers and orchestrators expect) instead of refusing
connections, /events takes no new subscriber, and `director-spawner --health` (the image's
HEALTHCHECK: GET /readyz with the same configuration) exits 1 saying so; before the stop, 0. To keep a command in flight, the Podman API
service is paused (SIGSTOP) before the user's first page load: the spawner's runtime call
waits on it."""

import json
import os
import signal
import subprocess
import time

from common import SpawnerStackTest, main
from loopback import http_get
from testing import clean_environment

STOP_GRACE = 5.0  # s, spawner/src/main.cpp's stop_grace
MARGIN = 3.0  # s, for a busy machine


class SpawnerStop(SpawnerStackTest):
    users = ("stella",)

    def health(self):
        """`director-spawner --health` as the image runs it (configuration from the
        environment): (exit status, stdout, stderr)."""
        env = clean_environment({"SPAWNER_HTTP_LISTEN": "%s:%d" % self.stack.spawner_http})
        run = subprocess.run([self.stack.spawner_bin, "--health"], env=env, capture_output=True, text=True,
                             timeout=10)
        return run.returncode, run.stdout, run.stderr

    def test_readyz_answers_not_ready_until_the_end(self):
        spawner = self.stack.components["spawner"]
        podman = self.stack.podman.process
        self.assertEqual(http_get(self.stack.spawner_http, "/readyz")[0], 200)
        self.assertEqual(self.health(), (0, "", ""))
        os.kill(podman.pid, signal.SIGSTOP)
        try:
            answer, status, _, body = self.visit("stella")
            self.assertEqual(answer, "spawning", f"{status} {body[:500]}")
            deadline = time.monotonic() + 5
            while self.stack.spawner_status()["counts"]["operations_in_flight"] == 0:
                self.assertLess(time.monotonic(), deadline, "no runtime command in flight")
                time.sleep(0.05)

            began = time.monotonic()
            os.killpg(spawner.proc.pid, signal.SIGTERM)
            answers, events, health = [], [], None
            while spawner.proc.poll() is None:
                try:
                    status, body = http_get(self.stack.spawner_http, "/readyz")
                    answers.append(status)
                    if status == 503:
                        self.assertIn("stopping", " ".join(json.loads(body)["problems"]))
                    # Only once the stop is seen: before the signal is handled /events
                    # still takes subscribers.
                    if status == 503 and not events:
                        events.append(http_get(self.stack.spawner_http, "/events")[0])
                    if status == 503 and health is None:
                        health = self.health()
                except OSError as error:
                    if spawner.proc.poll() is None:
                        answers.append(type(error).__name__)
                time.sleep(0.05)
            took = time.monotonic() - began
        finally:
            os.kill(podman.pid, signal.SIGCONT)

        self.assertEqual(spawner.proc.returncode, 0)
        # The stop waits for the command (until the runtime call times out or the grace ends),
        # and not much longer.
        self.assertGreater(took, 1.0, answers)
        self.assertLess(took, STOP_GRACE + MARGIN, answers)
        self.assertGreater(len(answers), 10, answers)
        # The first answers may come before the signal is handled, the last ones race the exit
        # (the listener closes just before the process ends).
        while answers and answers[0] == 200:
            answers.pop(0)
        self.assertEqual(set(answers[:-3]), {503}, f"/readyz during the stop: {answers}")
        self.assertEqual(events, [503])
        code, stdout, stderr = health
        self.assertEqual((code, stdout), (1, ""), stderr)
        self.assertRegex(stderr, r"^director-spawner: not healthy: .*stopping")


if __name__ == "__main__":
    main()
