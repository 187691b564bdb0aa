#!/usr/bin/env python3
"""Broken containers, with director-spawner and Podman: each user gets an error page that says
what the runtime says (state, exit code) and shows the container's last log lines, HTML-escaped,
with a retry link; never a bare 5xx.

- quiet: its command runs but never listens -> "not ready in time" (SPAWNER_READY_TIMEOUT);
- crash: its command exits (status 3) before listening -> "stopped before it was ready";
- vanish: it listens, so the spawner finds it ready, then its server process exits while the
  container runs on -> after the grace period, "running but cannot be reached"."""

import html
import sys
import time

from common import SpawnerStackTest, main, metric

READY_TIMEOUT = 4  # seconds

SCRIPT = r"""mkdir -p /tmp/www
echo "container {label} $ADDR" > /tmp/www/index.html
case "{label}" in
  quiet*)
    echo 'starting <script>alert("{label}")</script> & waiting'
    exec sleep 3600 ;;
  crash*)
    echo 'cannot start: <b>bad "config"</b> & more'
    exit 3 ;;
  vanish*)
    httpd -f -p "$ADDR:$PORT" -h /tmp/www &
    server=$!
    sleep 5
    kill $server
    echo '<i>the server went away</i> & the container runs on'
    exec sleep 3600 ;;
esac
exec httpd -f -p "$ADDR:$PORT" -h /tmp/www"""


class SpawnerBroken(SpawnerStackTest):
    users = ("quiet", "crash", "vanish")
    spawner_settings = {"SPAWNER_READY_TIMEOUT": f"{READY_TIMEOUT}s"}
    container_script = SCRIPT

    def assert_error_page(self, status, headers, body, expected_status, log_line):
        self.assertEqual(status, expected_status, body[:800])
        self.assertEqual(headers.get("cache-control"), "no-store")
        self.assertTrue(headers.get("content-type", "").startswith("text/html"))
        text = body.decode()
        self.assertIn(html.escape(log_line, quote=True).replace("&#x27;", "&#39;"), text)
        self.assertNotIn(log_line, text)  # never unescaped
        self.assertIn('href="/">Try again</a>', text)
        self.assertNotIn('http-equiv="refresh"', text)  # refreshes only on retry
        return text

    def test_a_container_that_never_listens(self):
        status, headers, body, seen = self.wait_for_page("quiet", "not_ready", READY_TIMEOUT + 20)
        text = self.assert_error_page(status, headers, body, 504,
                                      'starting <script>alert("quiet")</script> & waiting')
        self.assertIn("<dt>State</dt><dd>running</dd>", text)
        print(f"\nquiet: not-ready page after {len(seen)} loading pages", file=sys.stderr)

    def test_a_container_that_exits_before_listening(self):
        status, headers, body, _ = self.wait_for_page("crash", "exited", 20)
        text = self.assert_error_page(status, headers, body, 502,
                                      'cannot start: <b>bad "config"</b> & more')
        self.assertIn("<dt>Exit code</dt><dd>3</dd>", text)
        self.assertIn("<dt>State</dt><dd>exited</dd>", text)
        self.assertGreaterEqual(metric(self.stack.spawner_metrics(), "director_spawner_spawns_total",
                                       outcome="exited"), 1)

    def test_a_container_whose_server_exits(self):
        line = "<i>the server went away</i> & the container runs on"
        # Once its server is gone, HAProxy may still try it for as long as the agent's answer
        # "alive" is cached: its own page "not answering, retrying" then.
        status, headers, body, seen = self.wait_for_page(
            "vanish", "container_unreachable", 30, also=("page container-unavailable 503",))
        # The page fetches the logs again at most every few seconds: the line may come later.
        deadline = time.monotonic() + 15
        while html.escape(line).encode() not in body and time.monotonic() < deadline:
            time.sleep(1)
            answer, status, headers, body = self.visit("vanish")
            self.assertEqual(answer, "container_unreachable", body[:800])
        text = self.assert_error_page(status, headers, body, 502, line)
        self.assertIn("<dt>State</dt><dd>running</dd>", text)
        [container] = self.managed_containers("vanish")
        self.assertEqual(container["State"], "running")
        print(f"\nvanish: answers before the unreachable page: {seen}", file=sys.stderr)


if __name__ == "__main__":
    main(director_spawner=True)
