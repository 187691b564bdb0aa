#!/usr/bin/env python3
"""Metrics and observability (docs/metrics.md), through the whole stack:

(a) promtool finds nothing to say about the agent's /metrics after traffic;
(b) the agent's counters, histograms, /users and /status move exactly as the traffic sent
    through HAProxy implies (one cold user with a running container, one without, one
    invalid username);
(c) HAProxy's exporter answers on its own listener and counts the same traffic;
(d) HAProxy's log line carries the director's variables;
and docs/: alerts.yml and prometheus.yml pass promtool, grafana-dashboard.json is a dashboard
whose queries name only metrics the agent or HAProxy's exporter expose.

The agent runs with long cache lifetimes (no background refresh, no expiry during a test) and
HAProxy without its fast path (DIRECTOR_FAST_PATH=off), so that every request is exactly one
decision. promtool (tools/install-deps.sh) is required: without it the test is skipped, except
in CI (CI=true), where it fails.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path

from common import StackTest, main, poll
from loopback import http_get, parse_metrics
from stack import REPO, Stack

DOCS = REPO / "docs"
PROMTOOL = shutil.which("promtool")
# Long enough that nothing expires or refreshes during the test (refresh_after < alive_ttl).
# strict: the invalid-username counters and log fields need a name the agent refuses.
AGENT_ARGS = ["--alive-ttl", "60s", "--refresh-after", "59s", "--dead-ttl", "60s", "--username-mode", "strict"]
N = 20  # requests of the cold user whose container runs

# Every metric the agent must expose (docs/metrics.md), by name as it appears in the text format.
AGENT_METRICS = {
    "director_decisions_total", "director_decision_duration_seconds_bucket",
    "director_decision_duration_seconds_sum", "director_decision_duration_seconds_count",
    "director_cache_hits_total", "director_cache_misses_total", "director_cache_evictions_total",
    "director_stale_dns_answers_total",
    "director_dns_lookups_total", "director_dns_lookup_duration_seconds_bucket",
    "director_dns_lookup_duration_seconds_sum", "director_dns_lookup_duration_seconds_count",
    "director_probes_total", "director_probe_duration_seconds_bucket",
    "director_probe_duration_seconds_sum", "director_probe_duration_seconds_count",
    "director_checks_in_flight", "director_dns_lookups_in_flight", "director_probes_in_flight",
    "director_spop_connections", "director_spop_frames_received_total",
    "director_spop_frames_sent_total", "director_spop_protocol_errors_total",
    "director_spop_acks_without_decision_total",
    "director_users_cached", "director_active_users", "director_build_info",
    "director_start_time_seconds",
    "director_liveness_mode", "director_event_feeds_configured", "director_event_feeds_connected",
    "director_event_feed_reconnects_total", "director_event_feed_messages_total", "director_covered_users",
    "director_invalidations_total", "director_rechecks_total", "director_haproxy_runtime_reachable",
    "director_haproxy_runtime_sockets", "director_haproxy_runtime_commands_total",
    "director_haproxy_keys_cleared_total", "director_haproxy_table_clears_total",
    "director_haproxy_keys_refused_total",
}
HISTOGRAMS = ("director_decision_duration_seconds", "director_dns_lookup_duration_seconds",
              "director_probe_duration_seconds")
# Series that move without traffic: HAProxy's health check of the agent (a connection, a
# HELLO, a close) every second.
UNRELATED = re.compile(
    r'^director_spop_(connections|frames_(received|sent)_total\{type="(hello|disconnect)"\})')


class MetricsStack(Stack):
    def haproxy_env(self):
        env = super().haproxy_env()
        env["DIRECTOR_FAST_PATH"] = "off"
        return env


def names(series):
    return {s.split("{", 1)[0] for s in series}


def delta(before, after):
    """The series that moved (histogram buckets and sums left out), with how much."""
    assert set(before) == set(after), set(before) ^ set(after)
    return {s: after[s] - before[s] for s in after
            if after[s] != before[s] and "_bucket{" not in s and not s.endswith("_sum")
            and not UNRELATED.match(s)}


def log_fields(line):
    """The director's part of one HAProxy log line as a dict (label, alive, reason, ptime,
    error, target), or None for a line without it."""
    if " director: " not in line:
        return None
    return dict(item.split("=", 1) for item in line.split(" director: ", 1)[1].split())


class Metrics(StackTest):
    """One stack; every test takes its own before/after snapshots, with users of its own."""

    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.stack = MetricsStack(agent_args=AGENT_ARGS, fake_agent=False).start()  # needs /metrics

    def agent(self, path="/metrics"):
        return http_get(self.stack.agent_http, path, headers=True)

    def scrape(self):
        status, headers, text = self.agent()
        self.assertEqual(status, 200)
        content_type = headers.get("content-type", "")
        self.assertTrue(content_type.startswith("text/plain; version=0.0.4"), content_type)
        return parse_metrics(text)

    def haproxy_scrape(self):
        status, text = http_get(self.stack.metrics, "/metrics")
        self.assertEqual(status, 200)
        return parse_metrics(text)

    def users(self):
        return {u["label"]: u for u in json.loads(self.agent("/users?limit=1000")[2])["users"]}

    def assert_histograms_consistent(self, series):
        for histogram in HISTOGRAMS:
            buckets = sorted(((float(m.group(1)), v) for s, v in series.items()
                              if (m := re.fullmatch(histogram + r'_bucket\{le="([^"]+)"\}', s))),
                             key=lambda b: b[0])
            self.assertGreater(len(buckets), 5, histogram)
            counts = [v for _, v in buckets]
            self.assertEqual(counts, sorted(counts), f"{histogram}: buckets not cumulative")
            self.assertEqual(buckets[-1], (float("inf"), series[histogram + "_count"]), histogram)

    def assert_no_check_in_flight(self, series):
        for gauge in ("director_checks_in_flight", "director_dns_lookups_in_flight",
                      "director_probes_in_flight"):
            self.assertEqual(series[gauge], 0, gauge)

    # --- (b) the agent's numbers follow the traffic exactly --------------------------------------

    def test_cold_user_with_a_running_container(self):
        """N requests, the first for a user the agent never saw: one DNS lookup, one probe,
        one cache miss, then N-1 hits; N decisions, all alive."""
        self.stack.add_container("alice")
        container = self.stack.container("alice")
        before, haproxy_before = self.scrape(), self.haproxy_scrape()
        for _ in range(N):
            self.assert_routed("alice")
        last_request = time.monotonic()
        after, haproxy_after = self.scrape(), self.haproxy_scrape()

        self.assertEqual(delta(before, after), {
            'director_decisions_total{outcome="alive",reason="ok"}': N,
            "director_decision_duration_seconds_count": N,
            'director_dns_lookups_total{result="ok"}': 1,
            "director_dns_lookup_duration_seconds_count": 1,
            'director_probes_total{result="ok"}': 1,
            "director_probe_duration_seconds_count": 1,
            "director_cache_misses_total": 1,
            "director_cache_hits_total": N - 1,
            "director_users_cached": 1,
            'director_active_users{window="5m"}': 1,
            'director_active_users{window="15m"}': 1,
            'director_spop_frames_received_total{type="notify"}': N,
            'director_spop_frames_sent_total{type="ack"}': N,
        })
        self.assertGreater(after["director_spop_connections"], 0)
        for histogram in HISTOGRAMS:  # every observation took some time
            self.assertGreater(after[histogram + "_sum"], before[histogram + "_sum"], histogram)
        self.assert_histograms_consistent(after)
        self.assert_no_check_in_flight(after)

        # HAProxy counted the same N requests, all to the container backend.
        moved = {s: haproxy_after[s] - haproxy_before[s] for s in (
            'haproxy_frontend_http_requests_total{proxy="director"}',
            'haproxy_backend_http_requests_total{proxy="container"}',
            'haproxy_backend_http_requests_total{proxy="spawner"}',
            'haproxy_backend_http_responses_total{proxy="container",code="2xx"}')}
        self.assertEqual(moved, {
            'haproxy_frontend_http_requests_total{proxy="director"}': N,
            'haproxy_backend_http_requests_total{proxy="container"}': N,
            'haproxy_backend_http_requests_total{proxy="spawner"}': 0,
            'haproxy_backend_http_responses_total{proxy="container",code="2xx"}': N})

        user = self.users()["alice"]
        self.assertEqual((user["state"], user["reason"], user["address"], user["host"]),
                         ("alive", "ok", container["addr"], "vscode-alice"))
        # Last seen at the last request (recent), checked once, at the first one.
        self.assertLessEqual(user["last_seen_seconds_ago"], time.monotonic() - last_request + 1.0)
        self.assertGreater(user["last_checked_seconds_ago"], user["last_seen_seconds_ago"])
        self.assertIsNotNone(user["last_probe_ms"])

        status = json.loads(self.agent("/status")[2])
        decisions = sum(v for s, v in after.items() if s.startswith("director_decisions_total"))
        self.assertEqual(status["counts"]["decisions"], decisions)
        self.assertEqual(status["counts"]["users_cached"], after["director_users_cached"])

    def test_user_without_container_goes_to_the_spawner(self):
        """Two requests: the first looks the name up (NXDOMAIN: no probe), the second is
        answered from the cache; both are counted with reason no-such-host."""
        before = self.scrape()
        for _ in range(2):
            self.assertEqual(self.stack.served_by("nora"), "spawner")
        after = self.scrape()
        self.assertEqual(delta(before, after), {
            'director_decisions_total{outcome="not_alive",reason="no-such-host"}': 2,
            "director_decision_duration_seconds_count": 2,
            'director_dns_lookups_total{result="no_such_host"}': 1,
            "director_dns_lookup_duration_seconds_count": 1,
            "director_cache_misses_total": 1,
            "director_cache_hits_total": 1,
            "director_users_cached": 1,
            'director_active_users{window="5m"}': 1,
            'director_active_users{window="15m"}': 1,
            'director_spop_frames_received_total{type="notify"}': 2,
            'director_spop_frames_sent_total{type="ack"}': 2,
        })
        self.assertEqual([r["reason"] for r in self.stack.spawner_requests()
                          if r["user"] == ["nora"]], ["no-such-host"] * 2)
        user = self.users()["nora"]
        self.assertEqual((user["state"], user["reason"], user["address"], user["last_probe_ms"]),
                         ("not_alive", "no-such-host", None, None))
        self.assertLess(user["last_seen_seconds_ago"], 5)
        self.assert_no_check_in_flight(after)

    def test_invalid_username_is_counted_and_not_cached(self):
        before = self.scrape()
        status, _, _ = self.stack.request("Not.A.Label")
        self.assertEqual(status, 400)
        after = self.scrape()
        self.assertEqual(delta(before, after), {
            'director_decisions_total{outcome="not_alive",reason="invalid-username"}': 1,
            "director_decision_duration_seconds_count": 1,
            'director_spop_frames_received_total{type="notify"}': 1,
            'director_spop_frames_sent_total{type="ack"}': 1,
        })

    # --- (a) promtool ------------------------------------------------------------------------

    def test_promtool_accepts_the_agent_metrics(self):
        self.stack.add_container("paula")
        self.assert_routed("paula")
        self.stack.served_by("nobody-here")
        _, _, text = self.agent()
        self.assertEqual(names(parse_metrics(text)) - AGENT_METRICS, set(), "undocumented metrics")
        self.assertEqual(AGENT_METRICS - names(parse_metrics(text)), set(), "missing metrics")
        result = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                                text=True, timeout=30)
        self.assertEqual((result.returncode, result.stdout + result.stderr), (0, ""))

    # --- (c) HAProxy's exporter -------------------------------------------------------------------

    def test_haproxy_exporter_on_its_own_listener(self):
        self.assertNotEqual(self.stack.metrics, self.stack.http)
        series = self.haproxy_scrape()
        agent_up = 'haproxy_server_status{proxy="agents",server="agent",state="UP"}'
        self.assertEqual(series[agent_up], 1)
        self.assertEqual(series['haproxy_backend_active_servers{proxy="agents"}'], 1)
        for backend in ("container", "spawner"):
            self.assertIn(f'haproxy_backend_http_requests_total{{proxy="{backend}"}}', series)
        # Scrapes are not user traffic: they do not count as director requests.
        requests = 'haproxy_frontend_http_requests_total{proxy="director"}'
        self.assertEqual(self.haproxy_scrape()[requests], series[requests])
        # The main listener does not serve the exporter: a request there is a user request.
        status, _, _ = self.stack.request(None, path="/metrics")
        self.assertEqual(status, 403)

    # --- (d) HAProxy's log line -------------------------------------------------------------------

    def test_haproxy_log_line_carries_the_director_variables(self):
        self.stack.add_container("logan")
        container = self.stack.container("logan")
        cases = {"logan": "/log-check-alive", "lucy": "/log-check-spawner",
                 "Bad.Name": "/log-check-invalid"}
        for user, path in cases.items():
            self.stack.request(user, path=path)
        log = self.stack.run_dir / "haproxy.log"

        def lines():
            found = {}
            for line in log.read_text(errors="replace").splitlines():
                for user, path in cases.items():
                    if f'"GET {path} HTTP/1.1"' in line:
                        found[user] = line
            return found

        found, _, _ = poll(lines, lambda f: len(f) == len(cases), 5)
        alive = log_fields(found["logan"])
        self.assertEqual({k: alive[k] for k in ("label", "alive", "reason", "error", "target")},
                         {"label": "logan", "alive": "1", "reason": "ok", "error": "-",
                          "target": f"{container['addr']}:{self.stack.container_port}"})
        self.assertRegex(alive["ptime"], r"^\d+$")  # SPOE's processing time, in ms
        self.assertIn(" director container/container ", found["logan"])

        spawner = log_fields(found["lucy"])
        self.assertEqual({k: spawner[k] for k in ("label", "alive", "reason", "error", "target")},
                         {"label": "lucy", "alive": "0", "reason": "no-such-host", "error": "-",
                          "target": "-:-"})
        self.assertRegex(spawner["ptime"], r"^\d+$")
        self.assertIn(" director spawner/spawner ", found["lucy"])

        invalid = log_fields(found["Bad.Name"])
        self.assertEqual({k: invalid[k] for k in ("label", "alive", "reason", "error")},
                         {"label": "-", "alive": "0", "reason": "invalid-username", "error": "-"})
        self.assertRegex(found["Bad.Name"], r" 400 \d+ ")

        # Every example of the log line in the docs names the fields HAProxy prints, in order.
        fields = list(alive)
        examples = 0
        for doc in [DOCS.parent / "README.md", DOCS.parent / "haproxy" / "README.md",
                    *sorted(DOCS.glob("*.md"))]:
            for line in doc.read_text().splitlines():
                if " director: label=" in line:
                    examples += 1
                    self.assertEqual(list(log_fields(line)), fields, f"{doc.name}: {line}")
        self.assertGreaterEqual(examples, 4)

    # --- docs/grafana-dashboard.json and docs/alerts.yml name only existing metrics ------------

    def test_docs_name_only_existing_metrics(self):
        self.stack.served_by("dora")  # some traffic
        agent = names(self.scrape())
        exposed = agent | names(self.haproxy_scrape())
        dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
        exprs = dashboard_exprs(dashboard)
        self.assertGreaterEqual(len(exprs), 20)
        alerts = (DOCS / "alerts.yml").read_text()
        # docs/metrics.md describes every metric (a histogram by its base name).
        documented = set(re.findall(r"\bdirector_[a-z_]+\b", (DOCS / "metrics.md").read_text()))
        for source, text in (("grafana-dashboard.json", "\n".join(exprs)), ("alerts.yml", alerts)):
            referenced = set(re.findall(r"\b(?:director|haproxy)_[a-z_]+\b", text))
            self.assertTrue(referenced, source)
            # This stack runs no director-spawner: its metrics must at least be documented.
            spawner = {re.sub(r"_(bucket|sum|count)$", "", n) for n in referenced
                       if n.startswith("director_spawner_")}
            self.assertEqual(spawner - documented, set(), f"{source} names undocumented metrics")
            self.assertEqual(referenced - exposed - {n for n in referenced if n.startswith("director_spawner_")},
                             set(), f"{source} names unknown metrics")
        base = {re.sub(r"_(bucket|sum|count)$", "", n) if n.startswith(HISTOGRAMS) else n
                for n in agent}
        self.assertEqual(base - documented, set(), "metrics missing from docs/metrics.md")


def dashboard_exprs(dashboard):
    """Every PromQL expression of the dashboard's panels (rows' nested panels included)."""
    exprs = []
    for panel in dashboard["panels"]:
        for inner in [panel] + panel.get("panels", []):
            exprs += [t["expr"] for t in inner.get("targets", [])]
    return exprs


class Docs(unittest.TestCase):
    """docs/: the scrape configuration, the alerting rules and the dashboard, without a stack."""

    def promtool(self, *args):
        result = subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60,
                                cwd="/")  # paths in the config are relative to the file
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        return result.stdout

    def test_alerting_rules(self):
        self.assertIn("SUCCESS", self.promtool("check", "rules", str(DOCS / "alerts.yml")))

    def test_scrape_config_with_its_rules(self):
        out = self.promtool("check", "config", str(DOCS / "prometheus.yml"))
        self.assertIn("SUCCESS: 1 rule files found", out)

    def test_dashboard_is_an_importable_grafana_dashboard(self):
        dashboard = json.loads((DOCS / "grafana-dashboard.json").read_text())
        self.assertEqual((dashboard["uid"], dashboard["title"]),
                         ("container-director", "container-director"))
        self.assertIsNone(dashboard["id"])  # imports as a new dashboard
        self.assertIsInstance(dashboard["schemaVersion"], int)
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        self.assertEqual((variables["datasource"]["type"], variables["datasource"]["query"]),
                         ("datasource", "prometheus"))
        ids = [p["id"] for p in dashboard["panels"]]
        self.assertEqual(len(ids), len(set(ids)), "panel ids are unique")
        for panel in dashboard["panels"]:
            with self.subTest(panel=panel["title"]):
                self.assertIn(panel["type"], ("row", "timeseries", "stat"))
                self.assertEqual(set(panel["gridPos"]), {"x", "y", "w", "h"})
                self.assertLessEqual(panel["gridPos"]["x"] + panel["gridPos"]["w"], 24)
                if panel["type"] == "row":
                    continue
                self.assertEqual(panel["datasource"]["uid"], "${datasource}")
                self.assertTrue(panel["targets"])
                for target in panel["targets"]:
                    self.assertEqual(target["expr"].count("("), target["expr"].count(")"))
                    self.assertEqual(target["datasource"]["uid"], "${datasource}")
        # Every query parses as PromQL: promtool checks them as recording rules.
        exprs = [e.replace("$__rate_interval", "5m") for e in dashboard_exprs(dashboard)]
        with tempfile.TemporaryDirectory() as scratch:
            rules = Path(scratch) / "dashboard-rules.yml"
            rules.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": [
                {"record": f"dashboard:query{i}", "expr": e} for i, e in enumerate(exprs)]}]}))
            self.promtool("check", "rules", str(rules))
        titles = " | ".join(p["title"] for p in dashboard["panels"])
        for wanted in ("Decisions/s by outcome", "Decision latency", "Probe latency",
                       "DNS lookup latency", "Probes/s by result", "Cache hit ratio",
                       "SPOP connections", "Active users", "HAProxy requests/s",
                       "Backend split: container vs spawner"):
            self.assertIn(wanted, titles)


if __name__ == "__main__":
    if PROMTOOL is None:
        if os.environ.get("CI") == "true":
            print("promtool is missing (apt-get install prometheus; tools/install-deps.sh)",
                  file=sys.stderr)
            sys.exit(1)
        print("skipped: promtool not installed (tools/install-deps.sh)")
        sys.exit(77)
    main()
