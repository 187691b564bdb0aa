#!/usr/bin/env python3
"""compose.yaml, checked without a container engine: `docker-compose config` accepts it with the
example .env and names the missing variable without one; HAProxy's environment holds only
variables haproxy.cfg reads; director-agent --check-config accepts the agent's environment."""

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
        self.assertIn("OIDC_ISSUER_URL", err)

    def test_services(self):
        self.assertEqual(set(self.config["services"]),
                         {"auth", "director", "director-agent", "container-spawner"})
        auth = self.config["services"]["auth"]
        self.assertIn("--upstream=http://director:8080/", auth["command"])

    def test_zones(self):
        """Only oauth2-proxy's network is trusted; it never shares one with user containers;
        the agent shares HAProxy's namespace and listens on loopback."""
        import ipaddress
        services, networks = self.config["services"], self.config["networks"]
        auth, director, agent = services["auth"], services["director"], services["director-agent"]
        self.assertNotIn("backend", auth["networks"])
        self.assertEqual(set(director["networks"]), {"edge", "backend"})
        edge = ipaddress.ip_network(networks["edge"]["ipam"]["config"][0]["subnet"])
        trusted = [ipaddress.ip_network(w) for w in director["environment"]["DIRECTOR_TRUSTED_SOURCES"].split()]
        self.assertTrue(all(t.subnet_of(edge) for t in trusted), trusted)
        self.assertEqual(agent["network_mode"], "service:director")
        env = agent["environment"]
        for key in ("DIRECTOR_LISTEN", "DIRECTOR_HTTP_LISTEN"):
            self.assertTrue(str(env[key]).startswith("127.0.0.1:"), (key, env[key]))
        self.assertEqual(director["environment"]["DIRECTOR_AGENT"], env["DIRECTOR_LISTEN"])

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

    def test_agent_accepts_its_environment(self):
        agent = os.environ.get("DIRECTOR_AGENT_BIN")
        if not agent:
            self.skipTest("DIRECTOR_AGENT_BIN not set")
        env = {k: str(v) for k, v in self.config["services"]["director-agent"]["environment"].items()}
        env["PATH"] = os.environ["PATH"]
        done = subprocess.run([agent, "--check-config"], capture_output=True, text=True, env=env, timeout=10)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertIn('"container_host_prefix":"vscode"', done.stdout.replace(" ", ""))


if __name__ == "__main__":
    if not shutil.which("docker-compose"):
        if os.environ.get("CI") == "true":
            sys.exit("docker-compose is missing (tools/install-deps.sh installs it)")
        print("skipped: docker-compose not installed (tools/install-deps.sh)")
        sys.exit(77)
    unittest.main()
