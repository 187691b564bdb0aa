#!/usr/bin/env python3
"""The docs hold command by command. Every shell command in a ```sh block of README.md,
haproxy/README.md and docs/*.md is either run here (RUN_BY: what runs it) or named in
NOT_RUN with the reason and what runs it instead; a command in neither fails the
inventory, so a new command in the docs needs a test or a stated reason. Commands quoted
inside a sentence are accounted for the same way (INLINE), and the package file names the
docs show carry the project's version. What runs here:

- the agent's configuration examples (docs/configuration.md, docs/operations.md): the example
  file is accepted, `--check-config` prints what the doc shows, and every error line the doc
  quotes is exactly what the agent prints for that mistake;
- the HAProxy checks (haproxy/README.md, docs/operations.md), with each HAProxy here (Debian's
  2.6 on PATH and DIRECTOR_HAPROXY3_BIN when set): exit 0 and no warning.

README's first quick-start command, tools/run-stack, has its own test (test_quick_start.py).

Paths a doc gives for a production host (/etc/director/agent.json, /etc/haproxy) are replaced
by this run's files; nothing else in a command is changed."""

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
DOCS = [REPO / "README.md", REPO / "haproxy" / "README.md", *sorted((REPO / "docs").glob("*.md"))]
sys.path.insert(0, str(REPO / "tools"))
from testing import clean_environment  # noqa: E402

AGENT_BIN = os.environ.get("DIRECTOR_AGENT_BIN", str(REPO / "build" / "default" / "agent" / "director-agent"))
CONFIG_PATH = "/etc/director/agent.json"  # the docs' example path

# Every documented command that a test runs, with the test (or the runner) that runs it.
RUN_BY = {
    "tools/run-stack": "tests/docs/test_quick_start.py",
    "director-agent --config /etc/director/agent.json":
        "AgentConfiguration.test_example_file (with --check-config: 10.0.0.5 is no address here)",
    "DIRECTOR_CONFIG=/etc/director/agent.json director-agent":
        "AgentConfiguration.test_example_file (with --check-config: 10.0.0.5 is no address here)",
    "DIRECTOR_CONFIG=/etc/director/agent.json CONTAINER_PORT=9000 director-agent --log-level debug "
    "--check-config | python3 -m json.tool": "AgentConfiguration.test_check_config_output",
    "DIRECTOR_HAPROXY_DIR=$PWD/haproxy SPAWNER_HOST=127.0.0.1 haproxy -c -f haproxy/haproxy.cfg":
        "HAProxyChecks.test_haproxy_readme_check",
    "export DIRECTOR_HAPROXY_DIR=/etc/haproxy SPAWNER_HOST=spawner.internal DIRECTOR_AGENT=127.0.0.1:12345":
        "HAProxyChecks.test_operations_check",
    "haproxy -c -f /etc/haproxy/haproxy.cfg": "HAProxyChecks.test_operations_check",
    "export DIRECTOR_AGENT=10.0.0.5:12345 DIRECTOR_AGENT_2=10.0.0.6:12345":
        "HAProxyChecks.test_several_agents_check",
    "tools/run-tests": "CI: .ci/run runs exactly this",
    "tools/install-deps.sh": "tools/run-stack and tools/run-tests run it first (so CI does)",
    "cmake --preset fuzz": "tools/run-tests, stage fuzz (CI)",
    "cmake --build --preset fuzz": "tools/run-tests, stage fuzz (CI)",
    "ctest --preset fuzz": "tools/run-tests, stage fuzz (CI)",
    "python3 tests/bench/bench.py --smoke": "ctest bench/smoke",
    "python3 tests/bench/spawner_bench.py --smoke": "ctest bench/spawner-smoke",
    "cmake --preset default && cmake --build --preset default --target director-agent director-spawner":
        "tools/run-tests, stage default (it builds every target)",
    "cmake --build --preset default --target director-agent director-spawner":
        "tools/run-tests, stage default (it builds every target)",
    "cmake --preset default && cmake --build --preset default": "tools/run-tests, stage default",
    "kubectl kustomize deploy/kubernetes": "deploy/kubernetes (tests/deploy/test_kubernetes.py)",
}

# Every documented command that no test runs, and why.
NOT_RUN = {
    "DIRECTOR_HAPROXY_DIR=$PWD/haproxy ... haproxy -W -S /run/haproxy/master.sock -f haproxy/haproxy.cfg":
        "'...' stands for the site's settings; tools/stack.py starts HAProxy this way in every "
        "end-to-end test (tests/e2e/test_stack_startup.py)",
    "kill -USR2 <master pid>": "a placeholder; tests/e2e/test_reload.py reloads HAProxy this way",
    "haproxy -W -S /run/haproxy/master.sock -f /etc/haproxy/haproxy.cfg":
        "runs HAProxy in the foreground on production paths; the end-to-end tests run it on loopback",
    "tests/fuzz/run-long.sh": "hours of fuzzing (10 million executions a target); ctest --preset "
                              "fuzz runs the same targets for 20 s each",
    "tests/fuzz/run-long.sh -runs=1000000 session": "as above",
    "tests/fuzz/run-long.sh -max_total_time=3600 frame": "as above",
    "build/fuzz/tests/fuzz/fuzz_session build/fuzz/tests/fuzz/artifacts/session/crash-<sha1>":
        "needs a crash file (a placeholder)",
    "build/fuzz/tests/fuzz/fuzz_session -minimize_crash=1 -runs=100000 "
    "build/fuzz/tests/fuzz/artifacts/session/crash-<sha1>": "needs a crash file (a placeholder)",
    "python3 tests/bench/bench.py": "12 minutes on an idle machine, figures in docs/performance.md; "
                                    "ctest bench/smoke runs it with --smoke",
    "python3 tests/bench/spawner_bench.py": "3 minutes, figures in docs/performance.md; ctest "
                                            "bench/spawner-smoke runs it with --smoke",
    "python3 tests/soak/soak.py": "10 minutes; ctest soak/smoke runs it short",
    # docs/operations.md, "Installing": what writes to the host's /usr, /etc or systemd.
    "cmake --preset default -DCMAKE_INSTALL_PREFIX=/usr/local":
        "would reconfigure the build the tests run from; install/layout installs that build with "
        "--prefix and DESTDIR into temporary directories",
    "sudo cmake --install build/default": "writes to /usr/local; install/layout runs cmake --install "
                                          "of this build into temporary directories",
    "(cd build/default && cpack)": "install/deb runs cpack -G DEB with this build's CPackConfig.cmake "
                                   "into a temporary directory, and checks the package",
    "sudo apt install ./build/default/container-director_0.2.0_amd64.deb":
        "installs system-wide; install/deb checks the package's files and Depends",
    "sudo install -d /etc/container-director": "writes to /etc; install/binaries checks every "
                                                "setting of the example environment files",
    "sudo cp /usr/share/doc/container-director/examples/director-*.env /etc/container-director/":
        "as above",
    "sudoedit /etc/container-director/director-spawner.env": "interactive",
    "sudo systemctl daemon-reload": "systemd is not PID 1 here; install/systemd verifies the units "
                                    "(systemd-analyze) and install/sandbox runs the programs under "
                                    "their restrictions",
    "sudo systemctl enable --now director-spawner director-agent": "as above",
    "sudo sh -c 'cat /usr/share/doc/container-director/examples/haproxy.env >> /etc/default/haproxy'":
        "writes to /etc/default; install/haproxy-2.6 and install/haproxy-3.2 run haproxy -c on "
        "the installed files under examples/haproxy.env",
    "sudo sh -c 'set -a; . /etc/default/haproxy; haproxy -c -f \"$CONFIG\"'": "as above",
    "sudo systemctl restart haproxy": "systemd is not PID 1 here",
    "cp docs/compose.env.example .env": "the compose demo: no container engine runs here; "
                                        "compose/config checks compose.yaml with docker-compose config",
    "docker compose up -d --build": "as above",
    # docs/kubernetes.md: what changes a cluster; none runs here. deploy/kubernetes renders and
    # checks what they would apply.
    "kubectl create namespace container-director": "no Kubernetes cluster runs here",
    "kubectl -n container-director create secret generic oauth2-proxy "
    "--from-literal=OAUTH2_PROXY_CLIENT_ID=container-director --from-literal=OAUTH2_PROXY_CLIENT_SECRET=... "
    "--from-literal=OAUTH2_PROXY_COOKIE_SECRET=... "
    "--from-literal=OAUTH2_PROXY_OIDC_ISSUER_URL=https://idp.example.com "
    "--from-literal=OAUTH2_PROXY_REDIRECT_URL=https://director.example.com/oauth2/callback":
        "no Kubernetes cluster runs here; '...' stands for the site's secrets",
    "kubectl apply -k deploy/kubernetes": "no Kubernetes cluster runs here; deploy/kubernetes renders "
                                          "the same kustomization and validates every object",
    "kubectl -n container-director scale deployment/director --replicas=4": "no Kubernetes cluster runs here",
}


# Commands quoted inside a sentence (`...`) that start with one of INLINE_PROGRAMS: each is run
# by a test, or is a fragment of a command shown in full elsewhere, or is not a command (a log
# message, a package list). The reason says which.
INLINE_PROGRAMS = ("director-agent", "director-spawner", "haproxy", "curl", "podman", "python3", "cmake",
                   "ctest", "cpack", "promtool", "docker", "docker-compose", "systemctl", "systemd-analyze",
                   "kill", "git", "sudo", "apt", "apt-get")
INLINE = {
    "director-agent --check-config": "cli/check-config, and AgentConfiguration here",
    "director-agent --help": "cli/ (tests/cli/cli_test.py) and the option reference, cli/docs",
    "director-agent --help-markdown": "cli/docs compares it with configuration.md's table",
    "director-agent --health": "cli/health (tests/cli/cli_test.py, group health)",
    "director-agent --threads 1": "a flag, as the benchmark passes it (tests/bench/bench.py)",
    "director-agent X.Y.Z": "not a command: what --version prints",
    "director-agent started": "not a command: a log message (cli/logs checks it)",
    "director-agent failed": "not a command: a log message",
    "haproxy -c": "a fragment: the full commands are in sh blocks (HAProxyChecks here)",
    "haproxy -c -dW": "install/haproxy-2.6 and install/haproxy-3.2 run it on the installed files",
    "haproxy -Ws -f $CONFIG": "not run: what Debian's haproxy.service starts (systemd is not PID 1 here)",
    "haproxy -vv": "e2e/degraded and e2e/hostile_identities read its feature list (+OPENSSL)",
    "cmake --install": "a fragment; install/layout runs it",
    "cmake --install --component director-agent": "install/dockerfiles checks the component install",
    "cmake --build --preset tsan-server && ctest --preset tsan-server": "tools/run-tests, stage tsan (CI)",
    "ctest --preset asan": "tools/run-tests, stage asan (CI)",
    "ctest -L soak": "soak/smoke is that label's test",
    "ctest -R bench/compare-smoke": "bench/compare-smoke is that test",
    "ctest -R bench/instructions-smoke": "bench/instructions-smoke is that test",
    "ctest --test-dir build/default -R 'e2e/(trusted|hostile|agent_killed|reload_desc|dns_down|unresponsive|"
    "container_dies|spop_faults|stop_with|username_flood)' --output-on-failure":
        "tools/run-tests, stage default, runs these tests among all the others (CI)",
    "curl -f http://localhost:8080/": "not run: a container health check's command, as an example",
    "docker-compose config": "compose/config runs it",
    "git clone . /tmp/x && cd /tmp/x && CI=true bash .ci/run": "CI itself",
    "git tag -a vX.Y.Z -m \"container-director X.Y.Z\"": "not run: the release step (X.Y.Z is a placeholder)",
    "podman system service --time=0 unix:///run/podman/podman.sock":
        "tools/podman.py starts the API service this way, on its own socket, for every Podman test",
    "podman | docker.io": "not a command: the package's Suggests field",
    "systemctl enable --now podman.socket": "not run: systemd is not PID 1 here",
    "systemd-analyze verify": "install/systemd runs it on the installed units",
    "systemd-analyze security --offline=true": "install/systemd runs it on the installed units",
    "systemd-analyze syscall-filter": "not run: shows a filter group's system calls",
    "apt-get install --simulate ./container-director_0.2.0_amd64.deb": "checked by hand (docs/operations.md says so)",
    "promtool check config docs/prometheus.yml": "e2e/metrics (Docs.test_scrape_config_with_its_rules)",
    "promtool check rules docs/alerts.yml": "e2e/metrics (Docs.test_alerting_rules)",
    "promtool check metrics": "e2e/metrics (Metrics.test_promtool_accepts_the_agent_metrics)",
    "promtool check rules/config": "a fragment: the two commands above",
    "python3 tests/bench/bench.py --json out.json": "not run: the full benchmark (NOT_RUN above)",
    "python3 tests/bench/spawner_bench.py": "not run: the spawner's full benchmark (NOT_RUN above)",
    "python3 tests/soak/soak.py": "not run: the full soak (NOT_RUN above)",
    "python3 tests/cli/cli_test.py --agent build/default/agent/director-agent --doc docs/configuration.md "
    "--update-doc": "not run: it rewrites the doc; cli/docs runs the same script without --update-doc",
}


def inline_commands():
    """{span: [where]} for every `...` outside code blocks that starts with a program of
    INLINE_PROGRAMS followed by a space."""
    found = {}
    for doc in DOCS:
        text = re.sub(r"^```.*?^```", "", doc.read_text(), flags=re.S | re.M)
        for span in re.finditer(r"`([^`\n]+)`", text):
            command = span.group(1).strip()
            if " " in command and command.split(" ")[0] in INLINE_PROGRAMS:
                found.setdefault(command, []).append(str(doc.relative_to(REPO)))
    return found


def project_version():
    return re.search(r"project\(container-director VERSION (\S+)", (REPO / "CMakeLists.txt").read_text()).group(1)

def documented_commands():
    """{command: [where]} for every command of every ```sh block: each logical line (backslash
    continuations joined) without its trailing comment; in a block that shows a prompt ("$ "),
    only the prompted lines (the rest is output)."""
    found = {}
    for doc in DOCS:
        text = doc.read_text()
        for block in re.finditer(r"^```(?:sh|bash|shell|console)\n(.*?)^```", text, re.S | re.M):
            line_number = text[:block.start()].count("\n") + 2
            lines = block.group(1).splitlines()
            prompted = any(line.startswith("$ ") for line in lines)
            logical, continuing = [], False
            for offset, line in enumerate(lines):
                if continuing:
                    logical[-1] = (logical[-1][0], logical[-1][1] + " " + line.strip().rstrip("\\").strip())
                elif not prompted or line.startswith("$ "):
                    logical.append((line_number + offset, line.removeprefix("$ ").rstrip("\\").strip()))
                else:
                    continue
                continuing = line.endswith("\\")
            for number, command in logical:
                command = re.sub(r"\s+#.*$", "", command).strip()
                command = re.sub(r"\s+", " ", command)
                if command:
                    found.setdefault(command, []).append(f"{doc.relative_to(REPO)}:{number}")
    return found


def doc_text(name):
    return (REPO / "docs" / name).read_text()


class Inventory(unittest.TestCase):
    def test_every_documented_command_is_run_or_excused(self):
        found = documented_commands()
        self.assertGreater(len(found), 15)
        self.assertEqual(set(RUN_BY) & set(NOT_RUN), set())
        unknown = {command: where for command, where in found.items()
                   if command not in RUN_BY and command not in NOT_RUN}
        self.assertEqual(unknown, {}, "documented commands that no test runs and no reason excuses: "
                                      "run them in tests/docs or say why not in NOT_RUN")
        stale = (set(RUN_BY) | set(NOT_RUN)) - set(found)
        self.assertEqual(stale, set(), "commands listed here that no doc shows any more")

    def test_every_command_quoted_in_a_sentence_is_run_or_excused(self):
        found = inline_commands()
        self.assertGreater(len(found), 20)
        unknown = {command: where for command, where in found.items() if command not in INLINE}
        self.assertEqual(unknown, {}, "commands quoted in the docs that INLINE does not account for")
        self.assertEqual(set(INLINE) - set(found), set(), "INLINE entries that no doc quotes any more")

    def test_package_names_carry_the_project_version(self):
        version = project_version()
        named = {(doc.name, name) for doc in DOCS
                 for name in re.findall(r"container-director_([0-9][^_\s`]*)_amd64\.deb", doc.read_text())}
        self.assertTrue(named)
        self.assertEqual({(doc, name) for doc, name in named if name != version}, set(),
                         f"package file names in the docs that are not version {version}'s")


class AgentConfiguration(unittest.TestCase):
    """docs/configuration.md's examples against the agent built here."""

    def setUp(self):
        self.dir = Path(tempfile.mkdtemp(prefix="director-docs-"))
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)
        self.config = self.dir / "agent.json"
        text = doc_text("configuration.md")
        example = re.search(r"For example, `/etc/director/agent\.json`:\n\n```json\n(.*?)```", text, re.S)
        self.assertIsNotNone(example, "configuration.md: the example file is gone")
        self.example = json.loads(example.group(1))
        self.config.write_text(example.group(1))

    def shell(self, command, **env):
        """Runs a documented command line with bash, the example paths pointing at this run's
        files and the agent built here first on PATH."""
        command = command.replace(CONFIG_PATH, str(self.config))
        path = f"{Path(AGENT_BIN).parent}:{os.environ['PATH']}"
        return subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True,
                              env=clean_environment({"PATH": path, **env}), timeout=30, cwd=REPO)

    def agent(self, *args, **env):
        """director-agent --check-config with `args`: (status, stdout, stderr with this run's
        file shown as the docs' path)."""
        run = subprocess.run([AGENT_BIN, *args, "--check-config"], capture_output=True, text=True,
                             env=clean_environment(env), timeout=30)
        return run.returncode, run.stdout, run.stderr.replace(str(self.config), CONFIG_PATH).strip()

    def test_example_file(self):
        for command in ("director-agent --config /etc/director/agent.json",
                        "DIRECTOR_CONFIG=/etc/director/agent.json director-agent"):
            run = self.shell(command + " --check-config")
            self.assertEqual(run.returncode, 0, f"{command}: {run.stderr}")
            effective = json.loads(run.stdout)
            for key, value in self.example.items():
                self.assertEqual(effective[key], value, key)
                self.assertEqual(effective["sources"][key], "file", key)

    def test_check_config_output(self):
        text = doc_text("configuration.md")
        block = re.search(r"```sh\n\$ (DIRECTOR_CONFIG=.*?--check-config \| python3 -m json\.tool)\n(\{.*?\n\})\n```",
                          text, re.S)
        self.assertIsNotNone(block, "configuration.md: the --check-config example is gone")
        command = re.sub(r"\\\n\s*", "", block.group(1))
        run = self.shell(command)
        self.assertEqual(run.returncode, 0, run.stderr)
        effective = json.loads(run.stdout)
        # The doc's output with its "..." lines left out: every key it shows, with its value.
        shown = json.loads(re.sub(r",(\s*[}\]])", r"\1", re.sub(r"\n\s*\.\.\.,?", "", block.group(2))))
        self.assertEqual(shown.pop("config"), CONFIG_PATH)
        self.assertEqual(effective.pop("config"), str(self.config))
        # The number of cores of the machine that ran the example (this one has as many, or not).
        shown.pop("effective_threads")
        for key, value in shown.items():
            if key == "sources":
                for option, source in value.items():
                    self.assertEqual(effective["sources"][option], source, f"sources.{option}")
            else:
                self.assertEqual(effective[key], value, key)

    def test_error_lines(self):
        """Each line of "When the configuration is wrong", from the mistake it names."""
        mistakes = {
            "invalid value '70000' for CONTAINER_PORT": lambda: self.agent(CONTAINER_PORT="70000"),
            "invalid value '2h' for --alive-ttl": lambda: self.agent("--alive-ttl", "2h"),
            "for probe_timeout in /etc/director/agent.json":
                lambda: self.with_file('{"probe_timeout": "1h"}'),
            "wrong type for container_port": lambda: self.with_file('{"container_port": "8080"}'),
            "malformed configuration file": lambda: self.with_file('{\n  "container_port": 8080,\n}'),
            "cannot open configuration file": lambda: self.agent("--config", str(self.dir / "missing.json")),
            "unknown argument '--container-prot'": lambda: self.agent("--container-prot", "8080"),
            "missing value for --listen": lambda: self.agent_last("--listen"),
            "inconsistent options": lambda: self.agent("--refresh-after", "1s"),
        }
        text = doc_text("configuration.md")
        quoted = [line for block in re.findall(r"```\n(director-agent: .*?)```", text, re.S)
                  for line in block.splitlines()]
        self.assertGreaterEqual(len(quoted), len(mistakes))
        for line in quoted:
            [mistake] = [m for m in mistakes if m in line] or [None]
            self.assertIsNotNone(mistake, f"configuration.md quotes an error this test does not make: {line}")
            status, stdout, stderr = mistakes[mistake]()
            if mistake == "cannot open configuration file":
                stderr = stderr.replace(str(self.dir / "missing.json"), CONFIG_PATH)
            self.assertEqual((status, stdout, stderr), (2, "", line))

    def with_file(self, content):
        self.config.write_text(content)
        return self.agent("--config", str(self.config))

    def agent_last(self, flag):
        """The agent with `flag` as its last argument (no value after it)."""
        run = subprocess.run([AGENT_BIN, "--check-config", flag], capture_output=True, text=True,
                             env=clean_environment(), timeout=30)
        return run.returncode, run.stdout, run.stderr.strip()


def haproxy_binaries():
    """{version name: a directory holding it as "haproxy"}: Debian's on PATH, and
    DIRECTOR_HAPROXY3_BIN when set."""
    binaries = {}
    debian = shutil.which("haproxy")
    if debian:
        binaries["2.6"] = debian
    if os.environ.get("DIRECTOR_HAPROXY3_BIN"):
        binaries["3.2"] = os.environ["DIRECTOR_HAPROXY3_BIN"]
    return binaries


class HAProxyChecks(unittest.TestCase):
    def check(self, script, expected_warnings=(), **replace):
        self.assertTrue(haproxy_binaries(), "no haproxy on PATH (tools/install-deps.sh installs it)")
        for version, binary in haproxy_binaries().items():
            with self.subTest(haproxy=version), tempfile.TemporaryDirectory() as bin_dir:
                os.symlink(binary, Path(bin_dir) / "haproxy")
                for old, new in replace.items():
                    script = script.replace(old, new)
                run = subprocess.run(["bash", "-e", "-c", script], capture_output=True, text=True, cwd=REPO,
                                     env=clean_environment({"PATH": f"{bin_dir}:{os.environ['PATH']}"}), timeout=60)
                output = run.stdout + run.stderr
                self.assertEqual(run.returncode, 0, output)
                warnings = [line for line in output.splitlines() if "[WARNING]" in line or "[ALERT]" in line]
                allowed = expected_warnings if version == "2.6" else ()
                self.assertEqual([w for w in warnings if not any(a in w for a in allowed)], [], output)

    def test_haproxy_readme_check(self):
        self.check("DIRECTOR_HAPROXY_DIR=$PWD/haproxy SPAWNER_HOST=127.0.0.1 haproxy -c -f haproxy/haproxy.cfg")

    def test_operations_check(self):
        self.check("export DIRECTOR_HAPROXY_DIR=/etc/haproxy SPAWNER_HOST=spawner.internal "
                   "DIRECTOR_AGENT=127.0.0.1:12345\nhaproxy -c -f /etc/haproxy/haproxy.cfg",
                   # The name does not resolve here; operations.md says what 2.6 prints then.
                   expected_warnings=("could not resolve address 'spawner.internal', disabling server.",),
                   **{"/etc/haproxy": str(REPO / "haproxy")})

    def test_several_agents_check(self):
        # operations.md's "Several agents", with the paths and spawner of its "Running HAProxy".
        self.check("export DIRECTOR_HAPROXY_DIR=/etc/haproxy SPAWNER_HOST=127.0.0.1\n"
                   "export DIRECTOR_AGENT=10.0.0.5:12345 DIRECTOR_AGENT_2=10.0.0.6:12345\n"
                   "haproxy -c -f /etc/haproxy/haproxy.cfg",
                   **{"/etc/haproxy": str(REPO / "haproxy")})


if __name__ == "__main__":
    unittest.main(verbosity=2)
