#!/usr/bin/env python3
"""director-spawner with SPAWNER_RUNTIME=kubernetes, the real process against the Kubernetes API
stand-in (tools/kube_api_standin.py, a process serving HTTPS with a service account's token and
CA, as a pod finds them): no API server can run here, so the stand-in is the API server and the
test plays the kubelet through its control API (docs/spawner.md, "Kubernetes").

The spawner is in-cluster as in a pod: KUBERNETES_SERVICE_HOST/PORT name the stand-in,
SPAWNER_KUBERNETES_SERVICEACCOUNT_DIR its token, ca.crt and namespace. As deploy/kubernetes
deploys it: its service account in the director's namespace, SPAWNER_KUBERNETES_NAMESPACE the
users', and the stand-in enforcing the spawner's Role exactly as `kubectl kustomize
deploy/kubernetes` renders it (403 Forbidden for anything else), so every test here also proves
that Role suffices; and a Role without one rule the spawner needs fails that path visibly. The user's Service name
<prefix>-<label>.<namespace>.svc.cluster.local (CONTAINER_DOMAIN) resolves through the test's
dnsmasq to a 127.0.x.y where the test runs the user's "container" (tools/demo_backend.py) once
it has made the Pod Running and Ready, so the spawner's port check passes as it would in a
cluster. A real director-agent (knowing nobody) answers the idle retirer's /users, and its
/connections from an HAProxy holding only the tables (nobody connected).

Asserted: a page load for a new user creates their PersistentVolumeClaim, Service and Pod with
the labels, annotations and spec of docs/spawner.md (read back from the stand-in), each a valid
Kubernetes object (the v1.33 schemas, no field the API lacks: tests/deploy's validate_schemas(),
skipped with its reason where node or its packages are missing, failed under CI=true); the loading
page while the Pod is Pending; Running+Ready completes the wake; /events carries created and
started with the username; a node failure that deletes the Pod shows on /events and the next
page load creates the Pod again; a compaction with every watch dropped ends /events' streams
(events are missed until the spawner has listed again) and the spawner re-lists, after which a
new subscriber's snapshot has the user; idle retirement deletes the Pod and keeps
the Service and the claim; a Pod in ImagePullBackOff fails the wake (502 exited) with the
kubelet's message on the page, and a later visit replaces that Pod (a new pull) rather than
waiting on it, whose ErrImagePull the page shows in turn; a rotated
token is read again; a Pod stuck Terminating (a lost node) fails the next visit at once with the
force deletion on the page, and director_spawner_kubernetes_pods_stuck_terminating counts
it once however often it is found, until it is forced; /status names the Kubernetes runtime. With SPAWNER_HEALTH_CMD, the Pod's
readinessProbe, and the wake waiting for the Ready condition; with it
SPAWNER_KUBERNETES_POD_SECURITY=restricted, the Pod's securityContext, valid by the schemas too. With SPAWNER_IDLE_ACTION=remove,
idle retirement deletes the Pod and the Service and keeps the claim. With the Role lacking
persistentvolumeclaims create, a new user's page is the 502 "refused" page quoting the API's 403
and no Pod is made; lacking pods delete, a Pod that ended cannot be replaced and the page quotes
the 403. The Role is exactly what the runtime uses: the stand-in records every (verb, resource)
asked of it, and their union over the classes running deploy/kubernetes' Role unchanged must
equal its grants (RoleIsWhatTheSpawnerUses, run last: when a filter left out any test of those
classes it is skipped with a reason naming them, never a silent pass). And the startup errors: not in a cluster, no token file,
SPAWNER_NETWORK with kubernetes, the users' namespace the spawner's own (also --check-config)."""

import http.client
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path

from common import SKIP, director_headers, follow_events, metric, poll
from stack import Component, Stack, haproxy_binary, spawner_binary, wait_for  # noqa: E402 (common put tools/ on the path)
from agent import AgentProcess  # noqa: E402
from containers import Containers  # noqa: E402
from kube_api_standin import load_role  # noqa: E402
from loopback import free_port, http_get  # noqa: E402
from testing import clean_environment, report_failure  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "deploy"))
from test_kubernetes import schema_validator_missing, validate_schemas  # noqa: E402 (deploy/kubernetes' own check)
STANDIN = REPO / "tools" / "kube_api_standin.py"
DEPLOY = REPO / "deploy" / "kubernetes"
NAMESPACE = "container-director-users"  # deploy/kubernetes: the users' (the Role's; SPAWNER_KUBERNETES_NAMESPACE)
DIRECTOR_NAMESPACE = "container-director"  # deploy/kubernetes: the spawner's own (its service account's)
SPAWNER_USER = f"system:serviceaccount:{DIRECTOR_NAMESPACE}:director-spawner"
DOMAIN = f"{NAMESPACE}.svc.cluster.local"
IDLE_TIMEOUT = 60  # seconds: SPAWNER_IDLE_TIMEOUT's minimum
USERNAME = "Alice.Smith@example.com"  # not a label: the annotation carries it
LABEL = "alice-smith-example-com-0123456789abcdef"  # as the agent escapes it (any label does here)
MANAGED = {"io.container-director.managed": "true", "io.container-director.label": LABEL}
SPAWNER_SETTINGS = {
    "SPAWNER_IMAGE": "registry.example/team/ide:1.2",
    "SPAWNER_COMMAND": json.dumps(["serve", "--owner", "{username}", "--label", "{label}"]),
    "SPAWNER_ENV": "OWNER={username},TZ=UTC",
    "SPAWNER_VOLUME_MOUNT": "/home/coder",
    "SPAWNER_MEMORY": "1g",
    "SPAWNER_CPUS": "1.5",
    "SPAWNER_MEMORY_REQUEST": "512m",
    "SPAWNER_CPUS_REQUEST": "0.25",
    "SPAWNER_RESTART": "on-failure",
    "SPAWNER_KUBERNETES_VOLUME_SIZE": "2Gi",
    "SPAWNER_KUBERNETES_STORAGE_CLASS": "fast",
    "SPAWNER_IDLE_TIMEOUT": f"{IDLE_TIMEOUT}s",
    "SPAWNER_IDLE_CHECK_INTERVAL": "1s",
    "SPAWNER_IDLE_ACTION": "stop",
    "SPAWNER_STOP_GRACE": "1s",
    "SPAWNER_READY_TIMEOUT": "2m",
}


def unavailable():
    """Why this test cannot run here, or None."""
    if not Path(spawner_binary()).is_file():
        return f"{spawner_binary()} is not built"
    for tool in ("dnsmasq", "openssl", "kubectl"):
        if not shutil.which(tool) and not Path("/usr/sbin", tool).exists():
            return f"{tool} not installed (tools/install-deps.sh)"
    return None


def quantity(text):
    """A Kubernetes quantity (resource.Quantity's usual forms) as a number: "1Gi", "1073741824",
    "1500m", "1.5", "512Mi", "2G"."""
    match = re.fullmatch(r"([0-9.]+)(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E)?", str(text))
    if not match:
        raise AssertionError(f"not a quantity: {text!r}")
    factor = {None: 1, "m": 0.001, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
              "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
    return float(match.group(1)) * factor[match.group(2)]


def spawner_role(run_dir, without=None):
    """The spawner's Role as `kubectl kustomize deploy/kubernetes` renders it, in NAMESPACE, minus
    the verb `without` = (resource, verb) when given: written to run_dir for the stand-in's --role."""
    rendered = Path(run_dir) / "deploy-kubernetes.yaml"
    done = subprocess.run(["kubectl", "kustomize", str(DEPLOY)], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise AssertionError(f"kubectl kustomize {DEPLOY}: {done.stderr}")
    rendered.write_text(done.stdout)
    role = load_role(rendered)
    if role["metadata"]["namespace"] != NAMESPACE:
        raise AssertionError(f"the rendered Role is in {role['metadata']['namespace']}, not {NAMESPACE}")
    if without is not None:
        resource, verb = without
        (rule,) = [r for r in role["rules"] if resource in r["resources"] and verb in r["verbs"]]
        rule["verbs"] = [v for v in rule["verbs"] if v != verb]
        role["rules"] = [r for r in role["rules"] if r["verbs"]]
    path = Path(run_dir) / "role.json"
    path.write_text(json.dumps(role))
    return path


def role_grants(role):
    """{(verb, "resource[/subresource]")} a Role's rules grant (core group, no wildcards: the
    deploy test checks the Role has none)."""
    return {(verb, resource) for rule in role["rules"] for resource in rule["resources"] for verb in rule["verbs"]}


# {class name: {(verb, "resource[/subresource]")}} the spawner asked of deploy/kubernetes' Role
# in each class of tests using that Role unchanged (the stand-in records every question), for
# the classes all of whose tests ran (a class cut by a filter asked less than the Role needs).
ROLE_USED = {}
# The classes whose union of ROLE_USED must equal the Role's grants (RoleIsWhatTheSpawnerUses).
ROLE_SCENARIO = {"SpawnerOnKubernetes", "RestrictedPodWithReadinessProbe", "IdleRemoval"}
# {class name: [its tests a filter left out]}: why a class of ROLE_SCENARIO is not in ROLE_USED.
ROLE_LEFT_OUT = {}


class KubeApi:
    """The stand-in as a process (tools/kube_api_standin.py --serviceaccount-dir), enforcing the
    Role in `role_file` on its API, and the test's HTTPS client of its control API (/_standin/,
    which no Role restricts: the test reads every object there, the claims too, which the
    spawner's Role lets it create only)."""

    def __init__(self, run_dir, account_dir, role_file):
        self.account_dir = Path(account_dir)
        self.component = Component("kube-api", [sys.executable, STANDIN, "--listen", "127.0.0.1:0",
                                                "--serviceaccount-dir", account_dir, "--namespace", DIRECTOR_NAMESPACE,
                                                "--role", role_file, "--user", SPAWNER_USER,
                                                "--termination-delay", "0.5"],
                                   clean_environment(), run_dir)
        self.component.start()
        self.port = wait_for("the stand-in's address", self._port, timeout=30)
        self.context = ssl.create_default_context(cafile=str(self.account_dir / "ca.crt"))
        self.token = (self.account_dir / "token").read_text().strip()

    def _port(self):
        if not self.component.running():
            raise AssertionError(f"the stand-in exited:\n{self.component.log_tail()}")
        match = re.search(r"kube-api stand-in: https://127\.0\.0\.1:(\d+)", self.component.log_path.read_text())
        return int(match.group(1)) if match else None

    def call(self, method, path, body=None):
        """(status, parsed JSON body) of one request."""
        connection = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=10, context=self.context)
        try:
            headers = {"Authorization": f"Bearer {self.token}"}
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
            connection.request(method, path, data, headers)
            response = connection.getresponse()
            text = response.read()
            return response.status, json.loads(text) if text else None
        finally:
            connection.close()

    def get(self, resource, name):
        """The object, or None (404)."""
        status, body = self.call("GET", f"/_standin/objects/{resource}/{NAMESPACE}/{name}")
        if status == 404:
            return None
        if status != 200:
            raise AssertionError(f"GET {resource}/{name}: {status} {body}")
        return body

    def control(self, path, body=None):
        status, answer = self.call("POST", f"/_standin/{path}", body if body is not None else {})
        if status != 200:
            raise AssertionError(f"/_standin/{path}: {status} {answer}")
        return answer

    def kubelet_runs(self, pod, ready=True):
        self.control(f"pods/{NAMESPACE}/{pod}/status", {"phase": "Running", "ready": ready, "podIP": "10.1.0.7"})

    def requests(self):
        status, body = self.call("GET", "/_standin/requests")
        return body

    def authorized(self):
        """{(verb, "resource[/subresource]")} of every request the Role was asked about."""
        status, body = self.call("GET", "/_standin/authorized")
        if status != 200:
            raise AssertionError(f"/_standin/authorized: {status} {body}")
        return {(info["verb"], info["resource"] + (f"/{info['subresource']}" if info["subresource"] else ""))
                for info in body}


class SpawnerAgainstStandin(unittest.TestCase):
    """One stand-in, dnsmasq, agent and spawner (with `settings`) for each class of tests."""

    settings = SPAWNER_SETTINGS
    missing_from_role = None  # (resource, verb) the stand-in's Role lacks, or None: deploy/kubernetes' Role

    @classmethod
    def setUpClass(cls):
        cls.stack = Stack(domain=DOMAIN)
        cls.stack.run_dir.mkdir(parents=True, exist_ok=True)
        cls.stack.containers = Containers(cls.stack.run_dir, cls.stack.subnet, cls.stack.container_port, os.getpid())
        cls.agent = cls.api = None
        cls.tests_run = set()
        try:
            cls.stack.start_dns()
            cls.api = KubeApi(cls.stack.run_dir, cls.stack.run_dir / "serviceaccount",
                              spawner_role(cls.stack.run_dir, cls.missing_from_role))
            cls.stack.components["kube-api"] = cls.api.component
            # Idle retirement refuses an agent that reads no HAProxy: this one reads an HAProxy
            # holding only haproxy.cfg's two tables (nothing proxied, nobody connected).
            tables = cls.stack.run_dir / "tables-haproxy.cfg"
            tables.write_text(f"global\n    stats socket {cls.stack.run_dir / 'tables.sock'} mode 600 level admin\n"
                              "backend fast_path\n    stick-table type string len 64 size 1k expire 2m store gpt(3)\n"
                              "backend user_connections\n"
                              "    stick-table type string len 64 size 1k expire 1d store conn_cur,http_req_cnt\n")
            cls.stack.components["haproxy-tables"] = Component(
                "haproxy-tables", [haproxy_binary(), "-f", tables], clean_environment(), cls.stack.run_dir)
            cls.stack.components["haproxy-tables"].start()
            wait_for("HAProxy's runtime socket", lambda: (cls.stack.run_dir / "tables.sock").exists())
            cls.agent = AgentProcess(log_path=cls.stack.run_dir / "agent.log", env=clean_environment(
                {"DIRECTOR_HAPROXY_SOCKETS": str(cls.stack.run_dir / "tables.sock")}))
            cls.spawner = Component("spawner", [spawner_binary()], cls.spawner_env(), cls.stack.run_dir)
            cls.stack.components["spawner"] = cls.spawner  # stopped and shown with the stack
            cls.spawner.start()
            wait_for("director-spawner to be ready (API reachable, watch running)",
                     lambda: cls.spawner.running() and http_get(cls.stack.spawner_http, "/readyz")[0] == 200,
                     timeout=30)
        except BaseException:
            print(cls.stack.diagnostics(), file=sys.stderr)
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.api is not None and cls.missing_from_role is None and cls.api.component.running():
            # A loader of its own: unittest.main() gives the default one the -k patterns.
            left_out = sorted(set(unittest.TestLoader().getTestCaseNames(cls)) - cls.tests_run)
            if left_out:
                ROLE_LEFT_OUT[cls.__name__] = left_out
            else:
                ROLE_USED[cls.__name__] = cls.api.authorized()
        if cls.agent is not None:
            cls.agent.stop()
        cls.stack.stop()  # the spawner, dnsmasq and the users' servers
        if cls.api is not None:
            cls.api.component.stop()

    @classmethod
    def spawner_env(cls):
        return clean_environment(dict(
            CONTAINER_HOST_PREFIX=cls.stack.host_prefix,
            CONTAINER_PORT=str(cls.stack.container_port),
            CONTAINER_DOMAIN=DOMAIN,
            SPAWNER_LISTEN=f"{cls.stack.spawner[0]}:{cls.stack.spawner[1]}",
            SPAWNER_HTTP_LISTEN=f"{cls.stack.spawner_http[0]}:{cls.stack.spawner_http[1]}",
            SPAWNER_THREADS="2",
            SPAWNER_DNS_SERVER=f"{cls.stack.dns[0]}:{cls.stack.dns[1]}",
            SPAWNER_RUNTIME="kubernetes",
            KUBERNETES_SERVICE_HOST="127.0.0.1",
            KUBERNETES_SERVICE_PORT=str(cls.api.port),
            SPAWNER_KUBERNETES_SERVICEACCOUNT_DIR=str(cls.api.account_dir),
            SPAWNER_KUBERNETES_NAMESPACE=NAMESPACE,
            SPAWNER_AGENTS=f"http://{cls.agent.http[0]}:{cls.agent.http[1]}",
            **cls.settings))

    def setUp(self):
        type(self).tests_run.add(self._testMethodName)

    def tearDown(self):
        report_failure(self, lambda: self.stack.diagnostics(60))

    # --- helpers ---------------------------------------------------------------------------

    @property
    def name(self):
        return self.stack.host_for(LABEL).split(".")[0]  # vscode-<label>

    def page_load(self, path="/"):
        """A page load sent to the spawner as HAProxy sends it: (status, headers, body)."""
        return self.stack.request(None, path, director_headers(self.stack, USERNAME, LABEL),
                                  address=self.stack.spawner)

    def phase(self):
        status, _, body = self.page_load("/.container-director/status")
        self.assertEqual(status, 200, body[:300])
        return json.loads(body)["phase"]

    def start_container(self):
        """What the kubelet does once the Pod is scheduled: runs it (the user's server on their
        address, resolvable by the Service's name) and reports it Running and Ready."""
        host = self.stack.host_for(LABEL)
        if self.stack.containers.get(host) is None:
            self.stack.containers.start(host, LABEL)
            self.stack.containers.wait_ready(host)
        self.api.kubelet_runs(self.name)

    def assert_valid_kubernetes_objects(self, objects):
        """Each of `objects` ({what: object as the stand-in serves it}) validates against the
        Kubernetes v1.33 schemas with no field the API does not define (tests/deploy's
        validate_schemas(), as for deploy/kubernetes). Taken as read back, with what the stand-in
        set (uid, resourceVersion, creationTimestamp, defaults, status): all real API fields, so
        nothing is stripped. In a subTest, so that the rest of the test goes on when the validator
        cannot run here: a skip with the reason, a failure under CI=true."""
        with self.subTest("valid Kubernetes objects"):
            if missing := schema_validator_missing():
                if os.environ.get("CI") == "true":
                    self.fail(f"cannot validate the spawner's objects: {missing}")
                self.skipTest(f"the spawner's objects not validated: {missing}")
            results = validate_schemas(list(objects.values()))
            self.assertEqual([kind for kind, _, _ in results], [o["kind"] for o in objects.values()])  # one each
            self.assertEqual([(what, errors) for what, (_, _, errors) in zip(objects, results) if errors], [],
                             json.dumps(objects, indent=1))

    def user_running(self):
        """The user's Pod made, Running and Ready, and their wake complete: what a test after
        test_2 starts from, made here when an earlier test did not (a filter, a failure)."""
        if self.api.get("pods", self.name) is None:
            status, headers, body = self.page_load()
            self.assertEqual((status, headers.get("x-director-reason")), (200, "spawning"), body[:500])
            poll(lambda: self.api.get("pods", self.name), bool, 15)
        self.start_container()
        poll(self.phase, lambda phase: phase == "ready", 30, 0.2)

    def wait_events(self, events, match, timeout=15):
        """The /events lines for which match(line) holds, once there is one."""
        found, _, _ = poll(lambda: [line for line in list(events) if "reader_error" in line or match(line)],
                           bool, timeout)
        self.assertNotIn("reader_error", found[0], found)
        return found


class SpawnerOnKubernetes(SpawnerAgainstStandin):
    """One user's life, in name order, as their visits come. Each test makes what it starts from
    (user_running), so that any of them runs alone (-k); test_2 asserts the user's first page
    load, so it comes before the others that make their Pod, which name order does."""

    def test_1_status_names_the_kubernetes_runtime(self):
        status = self.stack.spawner_status()
        self.assertEqual(status["configuration"]["runtime"], "kubernetes", status["configuration"])
        self.assertEqual(status["configuration"]["kubernetes_volume_size"], "2Gi")
        self.assertTrue(status["runtime"]["reachable"], status["runtime"])
        self.assertTrue(status["runtime"]["event_stream_connected"], status["runtime"])
        self.assertIn("Kubernetes", status["runtime"]["name"] or "", status["runtime"])
        log = self.spawner.log_path.read_text()
        self.assertRegex(log, rf"director-spawner started.*kubernetes https://127\.0\.0\.1:{self.api.port} "
                              rf"namespace {NAMESPACE}")

    def test_2_a_page_load_creates_the_claim_the_service_and_the_pod(self):
        events = follow_events(self, self.stack.spawner_http)
        status, headers, body = self.page_load()
        self.assertEqual((status, headers.get("x-director-reason")), (200, "spawning"), body[:500])

        pod, _, _ = poll(lambda: self.api.get("pods", self.name), bool, 15)
        service = self.api.get("services", self.name)
        claim = self.api.get("persistentvolumeclaims", f"director-home-{LABEL}")
        self.assertIsNotNone(service)
        self.assertIsNotNone(claim)
        self.assert_valid_kubernetes_objects({"pod": pod, "service": service, "claim": claim})
        for kind, item in (("pod", pod), ("service", service), ("claim", claim)):
            with self.subTest(kind=kind):
                self.assertEqual(item["metadata"]["namespace"], NAMESPACE)
                self.assertEqual({k: v for k, v in item["metadata"].get("labels", {}).items() if k in MANAGED},
                                 MANAGED)
                self.assertEqual(item["metadata"].get("annotations", {}).get("io.container-director.user"), USERNAME)

        spec = service["spec"]
        self.assertEqual(spec.get("type", "ClusterIP"), "ClusterIP")
        self.assertEqual(spec["selector"], MANAGED)
        self.assertEqual([(p["port"], p.get("targetPort")) for p in spec["ports"]],
                         [(self.stack.container_port, self.stack.container_port)])
        # No Pod manifest kept: start() renders the Pod from the spawner's template.
        self.assertNotIn("io.container-director.pod", service["metadata"].get("annotations", {}))

        spec = pod["spec"]
        self.assertIs(spec["automountServiceAccountToken"], False)
        self.assertIs(spec["enableServiceLinks"], False)
        self.assertEqual(spec["restartPolicy"], "OnFailure")
        [container] = spec["containers"]
        self.assertEqual(container["image"], "registry.example/team/ide:1.2")
        self.assertEqual(container.get("imagePullPolicy"), "IfNotPresent")
        self.assertNotIn("command", container)  # Docker's Cmd is Kubernetes' args
        self.assertEqual(container["args"], ["serve", "--owner", USERNAME, "--label", LABEL])
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        self.assertEqual((env.get("OWNER"), env.get("TZ")), (USERNAME, "UTC"), env)
        resources = container["resources"]
        self.assertEqual(quantity(resources["limits"]["memory"]), 2**30)
        self.assertEqual(quantity(resources["limits"]["cpu"]), 1.5)
        self.assertEqual(quantity(resources["requests"]["memory"]), 512 * 2**20)
        self.assertEqual(quantity(resources["requests"]["cpu"]), 0.25)
        [mount] = container["volumeMounts"]
        self.assertEqual(mount["mountPath"], "/home/coder")
        [volume] = [v for v in spec["volumes"] if v["name"] == mount["name"]]
        self.assertEqual(volume["persistentVolumeClaim"]["claimName"], f"director-home-{LABEL}")
        self.assertEqual(quantity(claim["spec"]["resources"]["requests"]["storage"]), 2 * 2**30)
        self.assertEqual(claim["spec"].get("storageClassName"), "fast")

        # Pending: the loading page, however often the user reloads.
        for _ in range(3):
            status, headers, body = self.page_load()
            self.assertEqual((status, headers.get("x-director-reason")), (200, "spawning"), body[:500])
            self.assertNotEqual(self.phase(), "ready")
            time.sleep(0.3)

        # The kubelet runs it: the wake completes.
        self.start_container()
        poll(self.phase, lambda phase: phase == "ready", 30, 0.2)
        created = self.wait_events(events, lambda line: line.get("type") == "created" and line.get("label") == LABEL)
        started = self.wait_events(events, lambda line: line.get("type") == "started" and line.get("label") == LABEL)
        self.assertEqual({line.get("username") for line in created + started}, {USERNAME})
        self.assertEqual({line.get("id") for line in created + started}, {self.name})
        users = {row["label"]: row for row in self.stack.spawner_users()}
        self.assertEqual(users[LABEL]["phase"], "ready", users[LABEL])

    def test_3_a_node_failure_shows_on_events_and_the_next_page_load_starts_the_pod_again(self):
        self.user_running()
        events = follow_events(self, self.stack.spawner_http)
        self.wait_events(events, lambda line: line.get("type") == "snapshot")
        first_uid = self.api.get("pods", self.name)["metadata"]["uid"]
        self.stack.containers.stop(self.stack.host_for(LABEL))  # the node took the container with it
        self.api.control(f"pods/{NAMESPACE}/{self.name}/node-failure", {"deleted": True})
        gone = self.wait_events(events, lambda line: line.get("label") == LABEL and line.get("type") == "stopped")
        self.assertEqual(gone[0].get("username"), USERNAME, gone)
        self.assertIsNone(self.api.get("pods", self.name))
        self.assertIsNotNone(self.api.get("services", self.name))

        status, headers, body = self.page_load()
        self.assertEqual((status, headers.get("x-director-reason")), (200, "spawning"), body[:500])
        pod, _, _ = poll(lambda: self.api.get("pods", self.name), bool, 15)
        self.assertNotEqual(pod["metadata"]["uid"], first_uid)
        self.assertEqual(pod["spec"]["containers"][0]["args"], ["serve", "--owner", USERNAME, "--label", LABEL])
        self.start_container()
        poll(self.phase, lambda phase: phase == "ready", 30, 0.2)
        self.wait_events(events, lambda line: line.get("type") == "started" and line.get("label") == LABEL)

    def test_4_after_a_compaction_and_dropped_watches_the_feed_ends_and_the_spawner_lists_again(self):
        self.user_running()  # in the snapshots
        events = follow_events(self, self.stack.spawner_http)
        self.wait_events(events, lambda line: line.get("type") == "snapshot")
        before = len(self.api.requests())
        self.api.control("compact")
        self.api.control("drop-watches")
        # The watches resume from resourceVersions the compaction made too old: 410 Expired. What
        # happens until the spawner has listed again is missed, so the feed's open stream ends
        # (an agent falls back to TTLs) rather than go on vouching; the spawner lists again.
        self.wait_events(events, lambda line: line.get("ended"), timeout=30)
        self.assertEqual([line for line in events if line.get("type") == "snapshot"][1:], [], events)
        self.assertIn("too old resource version", self.spawner.log_path.read_text())
        # /events serves again once the spawner has listed: a new subscriber's snapshot has the user.
        again = poll(lambda: follow_events(self, self.stack.spawner_http, refused_ok=True),
                     lambda lines: lines is not None, 30, 0.2)[0]
        snapshot = self.wait_events(again, lambda line: line.get("type") == "snapshot")[0]
        self.assertIn(LABEL, {row["label"] for row in snapshot["containers"]}, snapshot)
        after = self.api.requests()[before:]
        lists = [r for r in after if r[0] == "GET" and r[1].endswith("/pods") and "watch" not in str(r[2])]
        watches = [r for r in after if r[0] == "GET" and "watch" in str(r[2])]
        self.assertTrue(lists and watches, after)
        wait_for("/readyz", lambda: http_get(self.stack.spawner_http, "/readyz")[0] == 200, timeout=15)

    def test_5_idle_retirement_deletes_the_pod_and_keeps_the_service_and_the_claim(self):
        self.user_running()
        events = follow_events(self, self.stack.spawner_http)
        # Nobody's agent has seen the user: idle once a whole timeout passed since the first
        # check that found the Pod running.
        poll(lambda: self.api.get("pods", self.name), lambda pod: pod is None, IDLE_TIMEOUT + 45, 0.5)
        self.wait_events(events, lambda line: line.get("label") == LABEL and line.get("type") == "stopped")
        self.assertEqual([line for line in list(events) if line.get("type") == "destroyed"], [])
        self.assertIsNotNone(self.api.get("services", self.name))
        self.assertIsNotNone(self.api.get("persistentvolumeclaims", f"director-home-{LABEL}"))
        self.assertGreaterEqual(metric(self.stack.spawner_metrics(), "director_spawner_retirements_total",
                                       reason="idle", action="stop"), 1)

    def test_6_an_image_the_kubelet_cannot_pull_fails_the_wake_with_its_message_and_a_visit_retries(self):
        # The kubelet's message reaches the page of the wake it ends (the watch's died event
        # carries it), escaped; a later visit does not wait on the Pod that cannot start: it is
        # deleted and made again, a new pull, whose failure the page shows in turn.
        other = "bob"
        name = self.stack.host_for(other).split(".")[0]
        headers = director_headers(self.stack, other, other)

        def load():
            return self.stack.request(None, "/", headers, address=self.stack.spawner)

        def until_not_loading():
            (status, answer_headers, body), _, _ = poll(
                load, lambda answer: answer[1].get("x-director-reason") != "spawning", 30, 0.3)
            return status, answer_headers, body

        status, answer_headers, body = load()
        self.assertEqual((status, answer_headers.get("x-director-reason")), (200, "spawning"), body[:500])
        first, _, _ = poll(lambda: self.api.get("pods", name), bool, 15)
        waiting = {"reason": "ImagePullBackOff", "message": 'Back-off pulling image "registry.example/team/ide:1.2"'}
        self.api.control(f"pods/{NAMESPACE}/{name}/status", {"phase": "Pending", "containerState": {"waiting": waiting}})
        status, answer_headers, body = until_not_loading()
        self.assertEqual((status, answer_headers.get("x-director-reason")), (502, "exited"), body[:800])
        self.assertIn(b"<dt>State</dt><dd>exited</dd>", body)
        said = b"ImagePullBackOff: Back-off pulling image &quot;registry.example/team/ide:1.2&quot;"
        self.assertIn(b"<dt>Runtime error</dt><dd>" + said + b"</dd>", body, body[:1500])

        # Past the 2 s in which a reload shows the failure again, a visit retries at once: a new
        # Pod (the image may exist now; a new Pod is pulled at once, without the old one's back-off).
        time.sleep(2.2)
        status, answer_headers, body = load()
        self.assertEqual((status, answer_headers.get("x-director-reason")), (200, "spawning"), body[:800])
        second, _, _ = poll(lambda: self.api.get("pods", name),
                            lambda pod: pod is not None and pod["metadata"]["uid"] != first["metadata"]["uid"], 15, 0.2)
        self.assertNotIn("containerStatuses", second["status"])  # no kubelet's word on it yet
        waiting = {"reason": "ErrImagePull", "message": "manifest for registry.example/team/ide:1.2 <not found>"}
        self.api.control(f"pods/{NAMESPACE}/{name}/status", {"phase": "Pending", "containerState": {"waiting": waiting}})
        status, answer_headers, body = until_not_loading()
        self.assertEqual((status, answer_headers.get("x-director-reason")), (502, "exited"), body[:800])
        self.assertIn(b"<dt>Runtime error</dt><dd>ErrImagePull: manifest for registry.example/team/ide:1.2 "
                      b"&lt;not found&gt;</dd>", body, body[:1500])
        self.assertNotIn(b"<not found>", body)

    def test_7_a_rotated_token_is_read_again(self):
        # As the kubelet does for a bound token: the file is replaced, then the old token
        # stops working.
        token_file = self.api.account_dir / "token"
        new_token = "rotated-" + os.urandom(8).hex()
        staged = token_file.with_name(".token.new")
        staged.write_text(new_token)
        staged.replace(token_file)
        self.api.control("token", {"token": new_token})
        self.api.token = new_token
        other = "carol"
        name = self.stack.host_for(other).split(".")[0]
        status, headers, body = self.stack.request(None, "/", director_headers(self.stack, other, other),
                                                   address=self.stack.spawner)
        self.assertEqual((status, headers.get("x-director-reason")), (200, "spawning"), body[:800])
        poll(lambda: self.api.get("pods", name), bool, 15)
        self.assertIsNotNone(self.api.get("services", name))

    def test_8_a_pod_stuck_terminating_fails_the_visit_and_counts_until_it_is_gone(self):
        # Its node lost: the Pod Terminating for good, its grace period ended 5 minutes ago. The
        # next visit's start fails at once naming the force deletion, and the metric operators
        # alert on counts the Pod once, however often it is found, until the operator forces it.
        other = "dave"
        name = self.stack.host_for(other).split(".")[0]
        headers = director_headers(self.stack, other, other)
        series = "director_spawner_kubernetes_pods_stuck_terminating"

        def load():
            return self.stack.request(None, "/", headers, address=self.stack.spawner)

        def stuck_count():
            return metric(self.stack.spawner_metrics(), series)

        status, answer_headers, body = load()
        self.assertEqual((status, answer_headers.get("x-director-reason")), (200, "spawning"), body[:500])
        poll(lambda: self.api.get("pods", name), bool, 15)
        before = stuck_count()
        self.api.control(f"pods/{NAMESPACE}/{name}/stuck-terminating", {"since": 300})
        force = f"kubectl delete pod {name} -n {NAMESPACE} --force --grace-period=0".encode()
        (status, answer_headers, body), _, _ = poll(load, lambda answer: force in answer[2], 30, 0.3)
        self.assertEqual(status, 503, body[:800])  # runtime_unavailable: "The container runtime is not answering"
        poll(stuck_count, lambda count: count == before + 1, 10, 0.2)
        time.sleep(2.2)  # past the 2 s in which a reload shows the failure again: a new start
        (status, answer_headers, body), _, _ = poll(load, lambda answer: force in answer[2], 30, 0.3)
        self.assertEqual(stuck_count(), before + 1)
        # The operator forces it: the spawner's watch sees it DELETED, and it no longer counts.
        status, answer = self.api.call("DELETE", f"/api/v1/namespaces/{NAMESPACE}/pods/{name}?gracePeriodSeconds=0")
        self.assertEqual(status, 200, answer)
        poll(stuck_count, lambda count: count == before, 10, 0.2)


class RestrictedPodWithReadinessProbe(SpawnerAgainstStandin):
    """With SPAWNER_HEALTH_CMD the Pod has a readinessProbe, and the wake waits for its Ready
    condition, not for the port (no server runs for this user). With
    SPAWNER_KUBERNETES_POD_SECURITY=restricted and SPAWNER_KUBERNETES_FS_GROUP, the Pod carries
    the restricted Pod Security Standard's securityContext and the fsGroup, and is still a valid
    Kubernetes object (the schemas)."""

    settings = dict(SPAWNER_SETTINGS, SPAWNER_HEALTH_CMD="test -e /tmp/ready", SPAWNER_HEALTH_INTERVAL="2s",
                    SPAWNER_HEALTH_TIMEOUT="1s", SPAWNER_IDLE_TIMEOUT="0s",
                    SPAWNER_KUBERNETES_POD_SECURITY="restricted", SPAWNER_KUBERNETES_FS_GROUP="1000")

    def test_the_wake_waits_for_the_ready_condition_of_a_restricted_pod(self):
        status, headers, body = self.page_load()
        self.assertEqual((status, headers.get("x-director-reason")), (200, "spawning"), body[:500])
        pod, _, _ = poll(lambda: self.api.get("pods", self.name), bool, 15)
        self.assertEqual(pod["spec"]["securityContext"],
                         {"fsGroup": 1000, "runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}})
        self.assertEqual(pod["spec"]["containers"][0]["securityContext"],
                         {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}})
        self.assert_valid_kubernetes_objects({"restricted pod": pod})
        probe = pod["spec"]["containers"][0]["readinessProbe"]
        self.assertEqual(probe["exec"]["command"], ["/bin/sh", "-c", "test -e /tmp/ready"])
        self.assertEqual((probe.get("periodSeconds"), probe.get("timeoutSeconds")), (2, 1), probe)

        self.api.kubelet_runs(self.name, ready=False)  # running, the probe not passed yet
        for _ in range(4):
            self.assertNotEqual(self.phase(), "ready")
            time.sleep(0.5)
        self.api.kubelet_runs(self.name, ready=True)
        poll(self.phase, lambda phase: phase == "ready", 15, 0.2)


class WithoutARuleOfTheRole(SpawnerAgainstStandin):
    """deploy/kubernetes' Role without persistentvolumeclaims create: a new user's page load
    fails visibly, with the API's 403 and what to grant, and no Pod is made."""

    missing_from_role = ("persistentvolumeclaims", "create")

    def test_a_new_user_s_page_says_what_the_role_lacks(self):
        (status, headers, body), _, _ = poll(self.page_load, lambda answer: answer[1].get("x-director-reason") != "spawning",
                                             30, 0.3)
        self.assertEqual((status, headers.get("x-director-reason")), (502, "limits_refused"), body[:800])
        self.assertIn(f'persistentvolumeclaims is forbidden: User &quot;{SPAWNER_USER}&quot; cannot create resource '
                      f'&quot;persistentvolumeclaims&quot; in API group &quot;&quot; in the namespace '
                      f'&quot;{NAMESPACE}&quot; (RBAC: '.encode(), body)
        self.assertIsNone(self.api.get("pods", self.name))


class IdleRemoval(SpawnerAgainstStandin):
    """SPAWNER_IDLE_ACTION=remove: idle retirement deletes the Pod, then its Service (remove()),
    and keeps the claim (a user's files outlive their container)."""

    settings = dict(SPAWNER_SETTINGS, SPAWNER_IDLE_ACTION="remove")

    def test_idle_removal_deletes_the_pod_and_the_service_and_keeps_the_claim(self):
        status, headers, body = self.page_load()
        self.assertEqual((status, headers.get("x-director-reason")), (200, "spawning"), body[:500])
        poll(lambda: self.api.get("pods", self.name), bool, 15)
        self.api.kubelet_runs(self.name)
        poll(lambda: self.api.get("services", self.name), lambda service: service is None, IDLE_TIMEOUT + 45, 0.5)
        self.assertIsNone(self.api.get("pods", self.name))
        self.assertIsNotNone(self.api.get("persistentvolumeclaims", f"director-home-{LABEL}"))
        self.assertGreaterEqual(metric(self.stack.spawner_metrics(), "director_spawner_retirements_total",
                                       reason="idle", action="remove"), 1)


class WithoutPodsDelete(SpawnerAgainstStandin):
    """deploy/kubernetes' Role without pods delete: a Pod that ended cannot be replaced, and the
    next page load says so with the API's 403 (docs/kubernetes.md, "RBAC")."""

    missing_from_role = ("pods", "delete")

    def test_an_ended_pod_s_next_page_says_what_the_role_lacks(self):
        status, headers, body = self.page_load()
        self.assertEqual((status, headers.get("x-director-reason")), (200, "spawning"), body[:500])
        poll(lambda: self.api.get("pods", self.name), bool, 15)
        self.api.control(f"pods/{NAMESPACE}/{self.name}/node-failure", {"deleted": False})  # Failed, kept
        # That wake ends on the "exited" page; the next one ("Try again") must replace the Pod.
        (status, headers, body), _, _ = poll(
            self.page_load, lambda answer: answer[0] != 200 and b"forbidden" in answer[2], 30, 0.3)
        self.assertEqual(status, 502, body[:800])
        self.assertIn(f'pods &quot;{self.name}&quot; is forbidden: User &quot;{SPAWNER_USER}&quot; cannot delete '
                      f'resource &quot;pods&quot; in API group &quot;&quot; in the namespace '
                      f'&quot;{NAMESPACE}&quot;'.encode(), body)


class StartupErrors(unittest.TestCase):
    """With runtime kubernetes, the spawner refuses to start without what a pod has."""

    def setUp(self):
        self.directory = Path(tempfile.mkdtemp(prefix="director-kube-startup-"))
        self.addCleanup(shutil.rmtree, self.directory, True)
        self.account = self.directory / "serviceaccount"
        self.account.mkdir()
        # As in a Pod of deploy/kubernetes: the service account's namespace is the director's.
        for name, content in (("token", "t0ken"), ("ca.crt", "-----BEGIN CERTIFICATE-----\n"),
                              ("namespace", DIRECTOR_NAMESPACE)):
            (self.account / name).write_text(content)

    def run_spawner(self, *arguments, **variables):
        env = clean_environment({"SPAWNER_RUNTIME": "kubernetes",
                                 "SPAWNER_LISTEN": f"127.0.0.1:{free_port()}",
                                 "SPAWNER_HTTP_LISTEN": f"127.0.0.1:{free_port()}",
                                 "SPAWNER_KUBERNETES_SERVICEACCOUNT_DIR": str(self.account),
                                 "SPAWNER_KUBERNETES_NAMESPACE": NAMESPACE,
                                 "KUBERNETES_SERVICE_HOST": "127.0.0.1",
                                 "KUBERNETES_SERVICE_PORT": str(free_port())})
        for name, value in variables.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        env.pop("KUBERNETES_PORT", None)
        done = subprocess.run([spawner_binary(), *arguments], env=env, capture_output=True, text=True, timeout=30)
        return done.returncode, done.stdout + done.stderr

    def test_not_in_a_cluster(self):
        code, output = self.run_spawner(KUBERNETES_SERVICE_HOST=None)
        self.assertEqual(code, 1, output)
        self.assertIn("the spawner is not running in a Kubernetes cluster: KUBERNETES_SERVICE_HOST not set", output)

    def test_no_token_file(self):
        (self.account / "token").unlink()
        code, output = self.run_spawner()
        self.assertEqual(code, 1, output)
        self.assertIn(f"cannot read {self.account / 'token'} (No such file or directory)", output)

    def test_the_users_namespace_the_spawner_s_own(self):
        """An overlay that puts everything in one namespace: refused at startup and by
        --check-config (exit 2), saying why and how to accept it."""
        for users in (DIRECTOR_NAMESPACE, None):  # named, or the default (the service account's)
            for arguments in ((), ("--check-config",)):
                code, output = self.run_spawner(*arguments, SPAWNER_KUBERNETES_NAMESPACE=users)
                self.assertEqual(code, 2, (users, arguments, output))
                self.assertIn(f'"{DIRECTOR_NAMESPACE}"', output)
                self.assertIn(f"the spawner's own namespace ({self.account / 'namespace'}): the spawner's right to "
                              "create Pods there (or a Pod it is tricked into making) could mount the director's "
                              "Secrets", output)
                self.assertIn("SPAWNER_KUBERNETES_SHARE_NAMESPACE=true", output)
        code, output = self.run_spawner("--check-config", SPAWNER_KUBERNETES_NAMESPACE=None,
                                        SPAWNER_KUBERNETES_SHARE_NAMESPACE="true")
        self.assertEqual(code, 0, output)
        self.assertIs(json.loads(output)["kubernetes_share_namespace"], True)

    def test_a_network_with_kubernetes(self):
        code, output = self.run_spawner(SPAWNER_NETWORK="director")
        self.assertEqual(code, 2, output)
        self.assertIn('inconsistent options: network (SPAWNER_NETWORK, --network) is "director" (environment), '
                      'runtime (SPAWNER_RUNTIME, --runtime) is "kubernetes" (environment); Kubernetes has no '
                      'Docker networks', output)


class RoleIsWhatTheSpawnerUses(unittest.TestCase):
    """Run after every other class (load_tests), once their stacks are stopped."""

    checked = False  # whether the test below ran (tearDownModule says so when a filter left it out)

    def test_the_union_of_what_the_spawner_asked_equals_the_role_s_grants(self):
        """The Role is exactly what the runtime uses: the union of what the spawner asked of it
        over ROLE_SCENARIO's classes (deploy/kubernetes' Role unchanged) equals what it grants.
        A grant never used is a finding too: a path no test takes, or a right to drop. Only
        when every test of those classes ran: a skip saying which did not (a failure under
        CI=true, which runs them all), never a silent pass."""
        type(self).checked = True
        if set(ROLE_USED) != ROLE_SCENARIO:
            not_run = {name: ROLE_LEFT_OUT.get(name, "the class did not run or its stack failed")
                       for name in sorted(ROLE_SCENARIO - set(ROLE_USED))}
            why = (f"the Role's grants are compared with what the spawner used only when every test of "
                   f"{sorted(ROLE_SCENARIO)} ran; not run: {not_run}")
            if os.environ.get("CI") == "true":
                self.fail(why)
            self.skipTest(why)
        used = set().union(*ROLE_USED.values())
        with tempfile.TemporaryDirectory() as scratch:
            granted = role_grants(json.loads(spawner_role(scratch).read_text()))
        print(f"\nwhat the spawner used of the Role over {sorted(ROLE_USED)}: {sorted(used)}", file=sys.stderr)
        self.assertEqual(used, granted,
                         f"the spawner used what deploy/kubernetes' Role does not grant: {sorted(used - granted)}; "
                         f"the Role grants what no test used: {sorted(granted - used)}")


def load_tests(loader, tests, pattern):
    """unittest's order (classes by name, tests by name), but RoleIsWhatTheSpawnerUses last:
    its test reads what the others' stacks recorded."""
    last = unittest.TestSuite()
    rest = unittest.TestSuite()
    for suite in tests:
        (last if any(isinstance(test, RoleIsWhatTheSpawnerUses) for test in suite) else rest).addTest(suite)
    rest.addTests(last)
    return rest


def tearDownModule():
    if not RoleIsWhatTheSpawnerUses.checked:
        print("\nthe Role's grants were not compared with what the spawner used: RoleIsWhatTheSpawnerUses was "
              "left out (a test filter)", file=sys.stderr)


if __name__ == "__main__":
    if reason := unavailable():
        print(f"skipped: {reason}")
        sys.exit(SKIP)
    os.environ["PATH"] += os.pathsep + "/usr/sbin"
    unittest.main(verbosity=2)
