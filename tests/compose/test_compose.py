#!/usr/bin/env python3
"""compose.yaml, checked without a container engine: `docker-compose config` accepts it with the
example .env and names the missing variable without one; HAProxy's environment holds only
variables haproxy.cfg reads; director-agent and director-spawner --check-config accept their environments; the
zones hold (the user containers' network never meets the sign-in hop); the parts agree on
addresses (Dex's issuer and redirect URI, the spawner's listener, the metrics listeners and
Prometheus' targets); Dex gives its users preferred_username; the Grafana provisioning loads
docs/grafana-dashboard.json, which has the spawner's panels."""

import ipaddress
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "compose.yaml"
EXAMPLE_ENV = REPO / "docs" / "compose.env.example"
DEPLOY = REPO / "deploy" / "compose"


def compose_config(env_file):
    """`docker-compose config` for compose.yaml: (exit code, stdout, stderr)."""
    argv = ["docker-compose", "--project-directory", str(REPO), "-f", str(COMPOSE)]
    if env_file:
        argv += ["--env-file", str(env_file)]
    clean = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    done = subprocess.run(argv + ["config"], capture_output=True, text=True, env=clean, timeout=30)
    return done.returncode, done.stdout, done.stderr


class Compose(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        import yaml  # python3-yaml, a dependency of docker-compose
        code, out, err = compose_config(EXAMPLE_ENV)
        if code != 0:
            raise AssertionError(f"docker-compose config failed:\n{err}")
        cls.config = yaml.safe_load(out)

    def test_missing_secret_is_named(self):
        with tempfile.TemporaryDirectory() as empty:
            env = Path(empty) / ".env"
            env.write_text("")
            code, _, err = compose_config(env)
        self.assertNotEqual(code, 0)
        self.assertTrue("OIDC_CLIENT_SECRET" in err or "OAUTH2_PROXY_COOKIE_SECRET" in err, err)

    def test_services(self):
        self.assertEqual(set(self.config["services"]),
                         {"auth", "dex", "director", "director-agent", "director-spawner",
                          "prometheus", "grafana"})
        auth = self.config["services"]["auth"]
        self.assertIn("--upstream=http://director:8080/", auth["command"])

    def networks_of(self, service):
        """The compose network keys a service joins (network_mode service:x: x's)."""
        spec = self.config["services"][service]
        if spec.get("network_mode", "").startswith("service:"):
            return self.networks_of(spec["network_mode"].split(":", 1)[1])
        return set(spec.get("networks", {}))

    def test_zones(self):
        """Only oauth2-proxy's network is trusted; the user containers' network (the one the
        spawner attaches them to) holds HAProxy's namespace only, never the sign-in hop; the
        agent and the spawner share HAProxy's namespace; the monitoring network holds
        HAProxy's namespace, Prometheus and Grafana."""
        services, networks = self.config["services"], self.config["networks"]
        director = services["director"]
        self.assertEqual(self.networks_of("auth"), {"identity", "edge"})
        self.assertEqual(self.networks_of("dex"), {"identity"})
        self.assertEqual(self.networks_of("director"), {"edge", "backend", "monitoring"})
        edge = ipaddress.ip_network(networks["edge"]["ipam"]["config"][0]["subnet"])
        trusted = [ipaddress.ip_network(w) for w in director["environment"]["DIRECTOR_TRUSTED_SOURCES"].split()]
        self.assertTrue(all(t.subnet_of(edge) for t in trusted), trusted)
        for name in ("director-agent", "director-spawner"):
            self.assertEqual(services[name]["network_mode"], "service:director", name)

        user_network = services["director-spawner"]["environment"]["SPAWNER_NETWORK"]
        self.assertEqual(networks["backend"]["name"], user_network)
        on_user_network = {name for name in services if "backend" in self.networks_of(name)}
        self.assertEqual(on_user_network, {"director", "director-agent", "director-spawner"})
        on_monitoring = {name for name in services if "monitoring" in self.networks_of(name)}
        self.assertEqual(on_monitoring, {"director", "director-agent", "director-spawner",
                                         "prometheus", "grafana"})

    def test_listeners(self):
        """SPOP, the spawner's pages and HAProxy's runtime API on loopback (HAProxy's namespace);
        the metrics listeners on HAProxy's monitoring address, where Prometheus scrapes them."""
        services = self.config["services"]
        haproxy = services["director"]["environment"]
        agent = services["director-agent"]["environment"]
        spawner = services["director-spawner"]["environment"]
        for key, value in (("DIRECTOR_LISTEN", agent["DIRECTOR_LISTEN"]),
                           ("SPAWNER_LISTEN", spawner["SPAWNER_LISTEN"]),
                           ("DIRECTOR_HAPROXY_STATS_SOCKET", haproxy["DIRECTOR_HAPROXY_STATS_SOCKET"])):
            self.assertTrue(str(value).startswith("127.0.0.1:"), (key, value))
        self.assertEqual(haproxy["DIRECTOR_AGENT"], agent["DIRECTOR_LISTEN"])
        self.assertEqual(f"{haproxy['SPAWNER_HOST']}:{haproxy['SPAWNER_PORT']}", spawner["SPAWNER_LISTEN"])
        # The runtime API is the agent's alone; the spawner reads open connections from the agent.
        self.assertEqual(agent["DIRECTOR_HAPROXY_SOCKETS"], haproxy["DIRECTOR_HAPROXY_STATS_SOCKET"])
        self.assertNotIn("SPAWNER_HAPROXY_SOCKETS", spawner)
        self.assertNotIn("DIRECTOR_HAPROXY_STATS_BIND", haproxy)
        self.assertEqual(spawner["SPAWNER_AGENTS"], f"http://{agent['DIRECTOR_HTTP_LISTEN']}")

        monitoring = services["director"]["networks"]["monitoring"]["ipv4_address"]
        subnet = self.config["networks"]["monitoring"]["ipam"]["config"][0]["subnet"]
        self.assertIn(ipaddress.ip_address(monitoring), ipaddress.ip_network(subnet))
        listeners = {"director-agent": agent["DIRECTOR_HTTP_LISTEN"],
                     "haproxy": haproxy["DIRECTOR_HAPROXY_METRICS_BIND"],
                     "director-spawner": spawner["SPAWNER_HTTP_LISTEN"]}
        import yaml
        prometheus = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
        targets = {job["job_name"]: [t for c in job["static_configs"] for t in c["targets"]]
                   for job in prometheus["scrape_configs"]}
        self.assertEqual(targets, {job: [address] for job, address in listeners.items()})
        self.assertTrue(all(a.startswith(monitoring + ":") for a in listeners.values()), listeners)

    def test_container_settings_agree(self):
        """The same prefix and port for HAProxy, the agent and the spawner; code-server by
        default, its home in a volume; the Docker socket for the spawner."""
        services = self.config["services"]
        for key in ("CONTAINER_HOST_PREFIX", "CONTAINER_PORT"):
            values = {str(services[s]["environment"][key])
                      for s in ("director", "director-agent", "director-spawner")}
            self.assertEqual(len(values), 1, (key, values))
        spawner = services["director-spawner"]
        env = spawner["environment"]
        self.assertTrue(env["SPAWNER_IMAGE"].startswith("codercom/code-server"))
        self.assertEqual(str(env["CONTAINER_PORT"]), "8080")
        self.assertEqual(env["SPAWNER_VOLUME_MOUNT"], "/home/coder")
        command = json.loads(env["SPAWNER_COMMAND"])
        self.assertIn("0.0.0.0:8080", command)
        mounts = [v if isinstance(v, str) else f"{v['source']}:{v['target']}" for v in spawner["volumes"]]
        self.assertTrue(any(m.startswith("/var/run/docker.sock:/var/run/docker.sock") for m in mounts), mounts)
        self.assertEqual(spawner["build"]["dockerfile"], "spawner/Dockerfile")
        dockerfile = (REPO / "spawner" / "Dockerfile").read_text()
        self.assertIn("--target director-spawner", dockerfile)
        self.assertRegex(dockerfile, r"(?m)^FROM .* AS build$")

    def test_dex_and_oauth2_proxy_agree(self):
        """One issuer URL (Dex's alias on the identity network, its published port), the
        redirect URL among Dex's, and static users with preferred_username (Dex v2.45+)."""
        import yaml
        services = self.config["services"]
        auth, dex_service = services["auth"]["environment"], services["dex"]
        dex = yaml.safe_load((DEPLOY / "dex.yaml").read_text())
        issuer = auth["OAUTH2_PROXY_OIDC_ISSUER_URL"]
        self.assertEqual(dex["issuer"], issuer)
        host, port = re.match(r"^http://([^:/]+):(\d+)/", issuer).groups()
        self.assertIn(host, dex_service["networks"]["identity"]["aliases"])
        self.assertEqual(dex["web"]["http"], f"0.0.0.0:{port}")
        published = [p if isinstance(p, str) else f"{p['published']}:{p['target']}"
                     for p in dex_service["ports"]]
        self.assertIn(f"{port}:{port}", published)
        (client,) = dex["staticClients"]
        self.assertEqual(client["id"], auth["OAUTH2_PROXY_CLIENT_ID"])
        self.assertIn(auth["OAUTH2_PROXY_REDIRECT_URL"], client["redirectURIs"])
        self.assertEqual(dex_service["environment"][client["secretEnv"]], auth["OAUTH2_PROXY_CLIENT_SECRET"])
        version = re.search(r":v(\d+)\.(\d+)", dex_service["image"]).groups()
        self.assertGreaterEqual(tuple(map(int, version)), (2, 45))
        for user in dex["staticPasswords"]:
            self.assertRegex(user["preferredUsername"], r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
            self.assertTrue(user["hash"].startswith(("$2a$", "$2b$", "$2y$")))

    def test_prometheus_config_with_the_mounted_rules(self):
        """deploy/compose/prometheus.yml with docs/alerts.yml beside it, as compose mounts them."""
        promtool = shutil.which("promtool")
        if not promtool:
            self.skipTest("promtool not installed (tools/install-deps.sh)")
        mounts = dict(reversed(m.split(":")[:2]) for m in self.config["services"]["prometheus"]["volumes"]
                      if isinstance(m, str)) or {v["target"]: v["source"] for v in
                                                 self.config["services"]["prometheus"]["volumes"]}
        self.assertEqual(mounts["/etc/prometheus/alerts.yml"], str(REPO / "docs" / "alerts.yml"))
        self.assertEqual(mounts["/etc/prometheus/prometheus.yml"], str(DEPLOY / "prometheus.yml"))
        with tempfile.TemporaryDirectory() as scratch:
            for target, source in mounts.items():
                shutil.copy(source, Path(scratch) / Path(target).name)
            done = subprocess.run([promtool, "check", "config", str(Path(scratch) / "prometheus.yml")],
                                  capture_output=True, text=True, timeout=60)
        self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
        self.assertIn("SUCCESS: 1 rule files found", done.stdout)

    def test_grafana_loads_the_dashboard(self):
        import yaml
        grafana = self.config["services"]["grafana"]
        mounts = {v["target"]: v["source"] for v in grafana["volumes"]} if isinstance(
            grafana["volumes"][0], dict) else dict(reversed(m.split(":")[:2]) for m in grafana["volumes"])
        provider = yaml.safe_load((DEPLOY / "grafana" / "dashboards.yaml").read_text())["providers"][0]
        dashboards = [t for t in mounts if t.startswith(provider["options"]["path"] + "/")]
        self.assertEqual([mounts[t] for t in dashboards], [str(REPO / "docs" / "grafana-dashboard.json")])
        source = yaml.safe_load((DEPLOY / "grafana" / "datasources.yaml").read_text())["datasources"][0]
        self.assertEqual((source["type"], source["url"]), ("prometheus", "http://prometheus:9090"))

    def test_dashboard_has_the_spawner_panels(self):
        dashboard = json.loads((REPO / "docs" / "grafana-dashboard.json").read_text())
        panels = dashboard["panels"]
        rows = [p["title"] for p in panels if p["type"] == "row"]
        self.assertIn("Spawner", rows)
        start = next(i for i, p in enumerate(panels) if p["type"] == "row" and p["title"] == "Spawner")
        spawner = [p for p in panels[start + 1:]]
        spawner = spawner[:next((i for i, p in enumerate(spawner) if p["type"] == "row"), len(spawner))]
        exprs = " ".join(t["expr"] for p in spawner for t in p["targets"])
        documented = set(re.findall(r"\bdirector_spawner_[a-z_]+\b", (REPO / "docs" / "metrics.md").read_text()))
        used = {re.sub(r"_(bucket|sum|count)$", "", m) for m in re.findall(r"\bdirector_spawner_[a-z_]+\b", exprs)}
        for wanted in ("director_spawner_spawns_total", "director_spawner_time_to_ready_seconds",
                       "director_spawner_containers", "director_spawner_retirements_total",
                       "director_spawner_runtime_requests_total", "director_spawner_wake_refused_total"):
            self.assertIn(wanted, used)
        self.assertEqual(used - documented, set(), "spawner metrics missing from docs/metrics.md")

    def test_haproxy_reads_every_variable_it_gets(self):
        cfg = (REPO / "haproxy" / "haproxy.cfg").read_text()
        read = set(re.findall(r"\$\{?([A-Z_][A-Z0-9_]*)", cfg))
        given = set(self.config["services"]["director"]["environment"])
        self.assertEqual(given - read, set(), "variables haproxy.cfg never reads")
        self.assertIn("SPAWNER_HOST", given)

    def test_haproxy_mounts_this_configuration(self):
        director = self.config["services"]["director"]
        env = director["environment"]
        mounts = [v if isinstance(v, str) else f"{v['source']}:{v['target']}" for v in director["volumes"]]
        self.assertTrue(any(m.startswith(str(REPO / "haproxy") + ":" + env["DIRECTOR_HAPROXY_DIR"])
                            for m in mounts), mounts)
        self.assertIn(env["DIRECTOR_HAPROXY_DIR"] + "/haproxy.cfg", director["command"])

    def test_haproxy_is_a_tested_version_in_master_worker_mode(self):
        """HAProxy 3.2, which tests/e2e runs (e2e-haproxy3.2/), started with -W: haproxy.cfg
        does not say master-worker (3.5 refuses the keyword), yet reloads rely on it."""
        director = self.config["services"]["director"]
        self.assertEqual(director["image"], "haproxy:3.2")
        self.assertIn("-W", director["command"])
        cfg = (REPO / "haproxy" / "haproxy.cfg").read_text()
        self.assertNotRegex(cfg, r"(?m)^\s*master-worker")

    def check_config(self, binary_variable, service):
        """The program's --check-config on the environment compose gives `service`: its
        effective configuration, compact JSON text."""
        program = os.environ.get(binary_variable)
        if not program:
            self.skipTest(f"{binary_variable} not set")
        env = {k: str(v) for k, v in self.config["services"][service]["environment"].items()}
        env["PATH"] = os.environ["PATH"]
        done = subprocess.run([program, "--check-config"], capture_output=True, text=True, env=env, timeout=10)
        self.assertEqual(done.returncode, 0, done.stderr)
        return done.stdout.replace(" ", "")

    def test_agent_accepts_its_environment(self):
        self.assertIn('"container_host_prefix":"vscode"', self.check_config("DIRECTOR_AGENT_BIN", "director-agent"))

    def test_spawner_accepts_its_environment(self):
        """The defaults compose.yaml writes must start the spawner (a 1h idle timeout once did
        not: durations take ms, s and m)."""
        self.assertIn('"idle_timeout":"60m"', self.check_config("DIRECTOR_SPAWNER_BIN", "director-spawner"))

if __name__ == "__main__":
    if not shutil.which("docker-compose"):
        if os.environ.get("CI") == "true":
            sys.exit("docker-compose is missing (tools/install-deps.sh installs it)")
        print("skipped: docker-compose not installed (tools/install-deps.sh)")
        sys.exit(77)
    unittest.main()
