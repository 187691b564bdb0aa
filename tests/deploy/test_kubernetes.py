#!/usr/bin/env python3
"""deploy/kubernetes, checked offline (no cluster, no API server runs here):

- `kubectl kustomize deploy/kubernetes` (kubectl 1.20's kustomize, v2.0.3) renders it;
- every rendered object validates against the Kubernetes v1.33.0 JSON schemas of the npm package
  kubernetes-models 4.5.1 (tests/deploy/package-lock.json pins it; tools/install-deps.sh installs
  it), with node, and has no field the API does not define (validate_schemas.cjs);
- what a schema cannot say: two namespaces, the director's and the users' (Pod Security Standard
  baseline enforced there); the spawner's Role (exactly what its runtime calls: the e2e test
  spawner_kubernetes proves it) is in
  the users' namespace only (no rights in the director's, no Secrets anywhere), bound to its
  ServiceAccount in the director's; the NetworkPolicies, evaluated here across both namespaces
  against the Pods' labels and ports, let the user containers reach none of the director's own
  ports and let each port be reached by whom it should only; an overlay renaming both
  namespaces changes every name that refers to them; SPOP and HAProxy's admin runtime API stay inside the director's Pod;
  every environment variable is one its program reads, and the agent (--check-config) and HAProxy
  (haproxy -c, 2.6 and 3.2) accept the environment the Pods give them; the images are
  compose.yaml's; the programs agree on names and ports.

Run by ctest (deploy/kubernetes); exit 77 (skipped) without kubectl or node outside CI."""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

import yaml  # python3-yaml (a dependency of docker-compose and of the tests here)

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy" / "kubernetes"
HERE = Path(__file__).resolve().parent
# Where tools/install-deps.sh installs tests/deploy's npm packages (its node_prefix).
NODE_PREFIX = Path(os.environ.get("DIRECTOR_DEPLOY_NODE_PREFIX",
                                  "/usr/local/lib/container-director/tests-deploy"))
NAMESPACE = "container-director"  # director/kustomization.yaml's namespace: the director's
USERS_NAMESPACE = "container-director-users"  # users/kustomization.yaml's: the users' objects
# The objects of users/ (besides the Namespace itself): in the users' namespace.
IN_USERS_NAMESPACE = {("Role", "director-spawner"), ("RoleBinding", "director-spawner"),
                      ("NetworkPolicy", "user-containers-from-director")}
CLUSTER_DOMAIN = "svc.cluster.local"

# Set by the manifests for $(...) expansion only (the downward API's namespace): no program reads it.
HELPER_NAMES = {"POD_NAMESPACE"}


def render(directory=DEPLOY):
    done = subprocess.run(["kubectl", "kustomize", str(directory)], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise AssertionError(f"kubectl kustomize {directory} failed:\n{done.stderr}")
    return [o for o in yaml.safe_load_all(done.stdout) if o]


def schema_validator_missing():
    """What validate_schemas() lacks here (node, the npm packages tools/install-deps.sh installs,
    or those of another package-lock.json), as one message; None when it can run."""
    if not shutil.which("node"):
        return "missing: node (tools/install-deps.sh installs it)"
    if not (NODE_PREFIX / "node_modules" / "kubernetes-models").is_dir():
        return f"missing: kubernetes-models in {NODE_PREFIX} (tools/install-deps.sh installs it)"
    if (NODE_PREFIX / "package-lock.json").read_bytes() != (HERE / "package-lock.json").read_bytes():
        return f"{NODE_PREFIX}/package-lock.json differs from tests/deploy's (tools/install-deps.sh installs it)"
    return None


def validate_schemas(objects):
    """[(kind, name, errors)] from tests/deploy/validate_schemas.cjs (schema_validator_missing()
    says whether it can run). Also imported by tests/e2e/test_spawner_kubernetes.py, for the
    objects director-spawner makes."""
    done = subprocess.run(["node", str(HERE / "validate_schemas.cjs"), str(NODE_PREFIX)],
                          input=json.dumps(objects), capture_output=True, text=True, timeout=120)
    if done.returncode not in (0, 1):
        raise AssertionError(f"validate_schemas.cjs exited {done.returncode}:\n{done.stderr}")
    return [(r["kind"], r["name"], r["errors"]) for r in json.loads(done.stdout)]


def text_of(path):
    """A file's text exactly (the pages' CRLF included: read_text() would translate them)."""
    return path.read_bytes().decode()


def one(objects, kind, name):
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    if len(found) != 1:
        raise AssertionError(f"{len(found)} {kind} named {name}")
    return found[0]


def namespaces_of(objects):
    """{(kind, name): namespace}, None for a cluster-scoped object."""
    return {(o["kind"], o["metadata"]["name"]): o["metadata"].get("namespace") for o in objects}


def strings_of(value, where=""):
    """[(path, text)] of every string in a rendered object tree."""
    if isinstance(value, dict):
        return [found for key, item in value.items() for found in strings_of(item, f"{where}/{key}")]
    if isinstance(value, list):
        return [found for index, item in enumerate(value) for found in strings_of(item, f"{where}/{index}")]
    return [(where, value)] if isinstance(value, str) else []


def unsubstituted(objects):
    """[(path, text)] of every string still holding a kustomize var, $(DIRECTOR_NAMESPACE) or
    $(USERS_NAMESPACE): kustomize leaves one as it is where its varReference misses."""
    return [(where, value) for where, value in strings_of(objects)
            if re.search(r"\$\((DIRECTOR|USERS)_NAMESPACE\)", value)]


def generated(objects, name):
    """A configMapGenerator's ConfigMap, whatever its hash suffix."""
    found = [o for o in objects if o["kind"] == "ConfigMap" and re.fullmatch(rf"{name}-[a-z0-9]{{10}}", o["metadata"]["name"])]
    if len(found) != 1:
        raise AssertionError(f"{len(found)} ConfigMaps generated as {name}")
    return found[0]


def container(deployment, name):
    (found,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == name]
    return found


def container_env(objects, spec, namespace=NAMESPACE):
    """A container's environment as the kubelet gives it: fieldRef metadata.namespace, ConfigMap
    keys, and $(NAME) references to names defined before (Kubernetes' own expansion)."""
    configmaps = {o["metadata"]["name"]: o.get("data", {}) for o in objects if o["kind"] == "ConfigMap"}
    env = {}
    for entry in spec.get("env", []):
        if "valueFrom" in entry:
            source = entry["valueFrom"]
            if "fieldRef" in source:
                assert source["fieldRef"]["fieldPath"] == "metadata.namespace", source
                value = namespace
            else:
                ref = source["configMapKeyRef"]
                value = configmaps[ref["name"]][ref["key"]]
        else:
            value = re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                           lambda m: env.get(m.group(1), m.group(0)), entry.get("value", ""))
        env[entry["name"]] = value
    return env


def options_of(program):
    """The environment variables a program reads: its --help-markdown table."""
    done = subprocess.run([program, "--help-markdown"], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise AssertionError(f"{program} --help-markdown exited {done.returncode}: {done.stderr}")
    return set(re.findall(r"^\| [^|]+ \| `([A-Z][A-Z0-9_]*)` \|", done.stdout, re.M))


# ---------------------------------------------------------------------------------------------
# NetworkPolicy evaluation (networking.k8s.io/v1 semantics): a connection from one Pod to a port
# of another is allowed when the source's egress and the destination's ingress both allow it; a
# Pod no policy of a direction selects is not isolated in that direction.

class Pod:
    def __init__(self, name, namespace, labels, ports):
        self.name, self.namespace, self.labels = name, namespace, labels
        self.ports = ports  # [(name or None, number, protocol)]

    def __repr__(self):
        return self.name


def selects(selector, labels):
    if selector is None:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values", [])
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def namespace_labels(namespace):
    return {"kubernetes.io/metadata.name": namespace}


def peer_matches(peer, policy_namespace, pod):
    if "ipBlock" in peer:
        return True  # an address range may hold Pod addresses: assume the worst
    if "namespaceSelector" in peer:
        if not selects(peer["namespaceSelector"], namespace_labels(pod.namespace)):
            return False
        return selects(peer.get("podSelector"), pod.labels)
    return pod.namespace == policy_namespace and selects(peer.get("podSelector"), pod.labels)


def ports_match(rule_ports, destination, number, protocol):
    if not rule_ports:
        return True
    for entry in rule_ports:
        if entry.get("protocol", "TCP") != protocol:
            continue
        port = entry.get("port")
        if port is None:
            return True
        if isinstance(port, str):
            named = [n for name, n, p in destination.ports if name == port and p == protocol]
            if number in named:
                return True
        elif port <= number <= entry.get("endPort", port):
            return True
    return False


def policy_types(policy):
    spec = policy["spec"]
    return spec.get("policyTypes") or (["Ingress"] + (["Egress"] if "egress" in spec else []))


def direction_allows(policies, direction, selected, peer, destination, number, protocol):
    key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    isolating = [p for p in policies if p["metadata"]["namespace"] == selected.namespace
                 and direction in policy_types(p) and selects(p["spec"]["podSelector"], selected.labels)]
    if not isolating:
        return True
    for policy in isolating:
        for rule in policy["spec"].get(key) or []:
            peers = rule.get(peers_key)
            if (not peers or any(peer_matches(p, policy["metadata"]["namespace"], peer) for p in peers)) \
                    and ports_match(rule.get("ports"), destination, number, protocol):
                return True
    return False


def allowed(policies, source, destination, number, protocol="TCP"):
    return (direction_allows(policies, "Egress", source, destination, destination, number, protocol)
            and direction_allows(policies, "Ingress", destination, source, destination, number, protocol))


def pod_of(deployment, namespace=NAMESPACE):
    spec = deployment["spec"]["template"]
    ports = [(p.get("name"), p["containerPort"], p.get("protocol", "TCP"))
             for c in spec["spec"]["containers"] for p in c.get("ports", [])]
    return Pod(deployment["metadata"]["name"], namespace, spec["metadata"]["labels"], ports)


def user_pod(label, port):
    """A user's Pod as the spawner's Kubernetes runtime makes it (the shared decisions of issue 12:
    labels io.container-director.managed=true and io.container-director.label=<label>)."""
    return Pod(f"vscode-{label}", USERS_NAMESPACE,
               {"io.container-director.managed": "true", "io.container-director.label": label},
               [("http", port, "TCP")])


# ---------------------------------------------------------------------------------------------

class Rendered(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.objects = render()
        cls.settings = generated(cls.objects, "director-settings")["data"]
        cls.director = one(cls.objects, "Deployment", "director")
        cls.spawner = one(cls.objects, "Deployment", "director-spawner")
        cls.oauth2_proxy = one(cls.objects, "Deployment", "oauth2-proxy")
        cls.haproxy_env = container_env(cls.objects, container(cls.director, "haproxy"))
        cls.agent_env = container_env(cls.objects, container(cls.director, "agent"))
        cls.spawner_env = container_env(cls.objects, container(cls.spawner, "spawner"))

    def test_objects(self):
        kinds = sorted((o["kind"], re.sub(r"-[a-z0-9]{10}$", "", o["metadata"]["name"]))
                       for o in self.objects if o["kind"] != "NetworkPolicy")
        self.assertEqual(kinds, sorted([
            ("ConfigMap", "director-haproxy"), ("ConfigMap", "director-haproxy-pages"),
            ("ConfigMap", "director-settings"),
            ("Deployment", "director"), ("Service", "director"), ("Service", "director-replicas"),
            ("PodDisruptionBudget", "director"),
            ("ServiceAccount", "director-spawner"), ("Role", "director-spawner"),
            ("RoleBinding", "director-spawner"), ("Deployment", "director-spawner"),
            ("Service", "director-spawner"), ("Deployment", "oauth2-proxy"), ("Service", "oauth2-proxy"),
            ("Namespace", USERS_NAMESPACE)]))
        # Two namespaces: the users' objects in theirs, everything else in the director's.
        self.assertEqual(namespaces_of(self.objects), {
            (o["kind"], o["metadata"]["name"]): USERS_NAMESPACE if (o["kind"], o["metadata"]["name"]) in IN_USERS_NAMESPACE
            else None if o["kind"] == "Namespace" else NAMESPACE for o in self.objects})
        # No credentials committed: oauth2-proxy's Secret is the operator's.
        self.assertNotIn("Secret", {o["kind"] for o in self.objects})

    def test_every_var_is_substituted(self):
        """No $(DIRECTOR_NAMESPACE) or $(USERS_NAMESPACE) is left anywhere in the output."""
        self.assertEqual(unsubstituted(self.objects), [])
        # Not vacuous: the bases alone leave the other base's var.
        self.assertNotEqual(unsubstituted(render(DEPLOY / "users")), [])

    def test_no_namespace_over_both_bases(self):
        """Each namespace is one base's "namespace:", the top has none, and no kustomization
        renders a Namespace object under another "namespace:" than its name (kustomize from
        v3.8.3 on would rename it: docs/kubernetes.md, "Install")."""
        expected = {DEPLOY: None, DEPLOY / "director": NAMESPACE, DEPLOY / "users": USERS_NAMESPACE}
        found = {path.parent for path in DEPLOY.rglob("kustomization.yaml")}
        self.assertEqual(found, set(expected))
        for directory, namespace in expected.items():
            kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
            self.assertEqual(kustomization.get("namespace"), namespace, directory)
            if namespace is not None:
                for listed in (o for o in render(directory) if o["kind"] == "Namespace"):
                    self.assertEqual(listed["metadata"]["name"], namespace, directory)

    def test_users_namespace_enforces_baseline(self):
        """The Pod Security Standard: baseline enforced (no privileged, hostPath or host-network
        Pod, whatever the spawner is asked to make), restricted warned about and audited."""
        labels = one(self.objects, "Namespace", USERS_NAMESPACE)["metadata"]["labels"]
        self.assertEqual({k: v for k, v in labels.items() if k.startswith("pod-security.kubernetes.io/")}, {
            "pod-security.kubernetes.io/enforce": "baseline",
            "pod-security.kubernetes.io/warn": "restricted",
            "pod-security.kubernetes.io/audit": "restricted"})

    def test_schemas(self):
        results = validate_schemas(self.objects)
        self.assertEqual(len(results), len(self.objects))
        self.assertEqual([r for r in results if r[2]], [])

    def test_schemas_catch_a_broken_object(self):
        """The validator is not vacuous: a replica count as text, an unknown restart policy and a
        Role rule without verbs are each refused."""
        broken = json.loads(json.dumps([self.director, self.spawner, one(self.objects, "Role", "director-spawner")]))
        broken[0]["spec"]["replicas"] = "two"
        broken[1]["spec"]["template"]["spec"]["restartPolicy"] = "Sometimes"
        del broken[2]["rules"][0]["verbs"]
        results = validate_schemas(broken)
        self.assertTrue(all(errors for _, _, errors in results), results)

    def test_schemas_catch_a_misspelt_field(self):
        """Unknown fields are refused at any depth, maps (labels) excepted."""
        broken = json.loads(json.dumps(self.director))
        pod = broken["spec"]["template"]["spec"]
        agent = [c for c in pod["containers"] if c["name"] == "agent"][0]
        agent["readinesProbe"] = agent.pop("readinessProbe")
        pod["volumes"][0]["projected"]["sources"][1]["configMap"]["items"][0]["paht"] = "x"
        broken["spec"]["template"]["metadata"]["labels"]["any-label"] = "is fine"
        ((_, _, errors),) = validate_schemas([broken])
        self.assertEqual(sorted(errors), [
            '/spec/template/spec/containers/1 has no field "readinesProbe"',
            '/spec/template/spec/volumes/0/projected/sources/1/configMap/items/0 has no field "paht"'])

    # --- RBAC ---------------------------------------------------------------------------------

    def test_role_is_namespaced_and_narrow(self):
        """The Role's shape. That it grants exactly what the runtime calls is proved against
        the calls themselves: tests/e2e/test_spawner_kubernetes.py runs the spawner under this
        Role and compares what it asked of it with what it grants."""
        self.assertEqual({o["kind"] for o in self.objects} & {"ClusterRole", "ClusterRoleBinding"}, set())
        # One Role and one RoleBinding, both in the users' namespace: no rights in the director's.
        self.assertEqual([(o["kind"], o["metadata"]["namespace"]) for o in self.objects
                          if o["kind"] in ("Role", "RoleBinding")],
                         [("Role", USERS_NAMESPACE), ("RoleBinding", USERS_NAMESPACE)])
        role = one(self.objects, "Role", "director-spawner")
        granted = {(group, resource, verb) for rule in role["rules"] for group in rule["apiGroups"]
                   for resource in rule["resources"] for verb in rule["verbs"]}
        self.assertEqual({group for group, _, _ in granted}, {""})  # the core group only
        self.assertNotIn("*", {part for entry in granted for part in entry})  # no wildcards
        self.assertNotIn("secrets", {resource.split("/")[0] for _, resource, _ in granted})
        for rule in role["rules"]:
            self.assertNotIn("resourceNames", rule)
            self.assertNotIn("nonResourceURLs", rule)

    def test_only_the_spawner_holds_credentials(self):
        binding = one(self.objects, "RoleBinding", "director-spawner")
        self.assertEqual(binding["roleRef"], {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                              "name": "director-spawner"})
        # The ServiceAccount lives in the director's namespace, the binding in the users'.
        self.assertEqual(binding["metadata"]["namespace"], USERS_NAMESPACE)
        self.assertEqual(binding["subjects"], [{"kind": "ServiceAccount", "name": "director-spawner",
                                                "namespace": NAMESPACE}])
        self.assertEqual(one(self.objects, "ServiceAccount", "director-spawner")["metadata"]["namespace"], NAMESPACE)
        # The spawner works where its Role is.
        self.assertEqual(self.spawner_env["SPAWNER_KUBERNETES_NAMESPACE"], USERS_NAMESPACE)
        spawner = self.spawner["spec"]["template"]["spec"]
        self.assertEqual(spawner["serviceAccountName"], "director-spawner")
        for deployment in (self.director, self.oauth2_proxy):
            self.assertIs(deployment["spec"]["template"]["spec"]["automountServiceAccountToken"], False)

    def test_pods_are_locked_down(self):
        """What docs/kubernetes.md promises of every Pod: a non-root user, a read-only root
        filesystem, no capabilities, no privilege escalation, the runtime's seccomp profile, no
        service links; a token for the spawner only (test above)."""
        for deployment in (self.director, self.spawner, self.oauth2_proxy):
            pod = deployment["spec"]["template"]["spec"]
            self.assertIs(pod["securityContext"]["runAsNonRoot"], True)
            self.assertNotEqual(pod["securityContext"]["runAsUser"], 0)
            self.assertEqual(pod["securityContext"]["seccompProfile"], {"type": "RuntimeDefault"})
            self.assertIs(pod["enableServiceLinks"], False)
            for spec in pod["containers"]:
                self.assertEqual(spec["securityContext"], {"allowPrivilegeEscalation": False,
                                                           "readOnlyRootFilesystem": True,
                                                           "capabilities": {"drop": ["ALL"]}},
                                 spec["name"])
                self.assertIn("memory", spec["resources"]["limits"], spec["name"])

    # --- The director's Pod -------------------------------------------------------------------

    def test_spop_and_the_admin_socket_stay_in_the_pod(self):
        """SPOP on the Pod's loopback, HAProxy naming the same address; the admin runtime API a
        unix socket in an emptyDir both containers mount, the agent revoking through it, both
        containers the same user (the socket is mode 600)."""
        self.assertTrue(self.agent_env["DIRECTOR_LISTEN"].startswith("127.0.0.1:"))
        self.assertEqual(self.haproxy_env["DIRECTOR_AGENT"], self.agent_env["DIRECTOR_LISTEN"])
        self.assertNotIn("DIRECTOR_AGENT_2", self.haproxy_env)
        socket = self.haproxy_env["DIRECTOR_HAPROXY_STATS_SOCKET"]
        self.assertTrue(socket.startswith("/"), socket)
        self.assertEqual(self.agent_env["DIRECTOR_HAPROXY_SOCKETS"], socket)
        pod = self.director["spec"]["template"]["spec"]
        empty_dirs = {v["name"] for v in pod["volumes"] if "emptyDir" in v}
        for name in ("haproxy", "agent"):
            mounts = [m for m in container(self.director, name)["volumeMounts"]
                      if m["name"] in empty_dirs and socket.startswith(m["mountPath"].rstrip("/") + "/")]
            self.assertEqual(len(mounts), 1, name)
            self.assertEqual(mounts[0]["mountPath"], os.path.dirname(socket))
        users = {pod["securityContext"].get("runAsUser")} | {
            c.get("securityContext", {}).get("runAsUser", pod["securityContext"].get("runAsUser"))
            for c in pod["containers"]}
        self.assertEqual(len(users), 1, users)
        # No runtime API on the network: the spawner reads open connections from the agents
        # (GET /connections); haproxy.cfg refuses the old TCP listener's variable.
        self.assertNotIn("DIRECTOR_HAPROXY_STATS_BIND", self.haproxy_env)
        self.assertNotIn("SPAWNER_HAPROXY_SOCKETS", self.spawner_env)
        cfg = (REPO / "haproxy" / "haproxy.cfg").read_text()
        self.assertNotRegex(cfg, r'(?m)^\s*stats socket "\$\{DIRECTOR_HAPROXY_STATS_BIND\}"')
        self.assertRegex(cfg, r'(?m)^\.alert "DIRECTOR_HAPROXY_STATS_BIND is no longer read')

    def test_haproxy_mounts_the_repository_files(self):
        """haproxy.cfg and spoe.conf as they are in haproxy/, every page of haproxy/pages under
        pages/ in DIRECTOR_HAPROXY_DIR, and haproxy.cfg the one configuration file."""
        haproxy = container(self.director, "haproxy")
        directory = self.haproxy_env["DIRECTOR_HAPROXY_DIR"]
        config = generated(self.objects, "director-haproxy")["data"]
        for name in ("haproxy.cfg", "spoe.conf"):
            self.assertEqual(config[name], text_of(REPO / "haproxy" / name), name)
        pages = generated(self.objects, "director-haproxy-pages")["data"]
        on_disk = {p.name: text_of(p) for p in (REPO / "haproxy" / "pages").iterdir()}
        self.assertEqual(pages, on_disk)
        (mount,) = [m for m in haproxy["volumeMounts"] if m["mountPath"] == directory]
        (volume,) = [v for v in self.director["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]]
        projected = {}
        for source in volume["projected"]["sources"]:
            data = next(o["data"] for o in self.objects if o["metadata"]["name"] == source["configMap"]["name"])
            items = source["configMap"].get("items") or [{"key": k, "path": k} for k in data]
            projected.update({item["path"]: data[item["key"]] for item in items})
        wanted = {"haproxy.cfg", "spoe.conf", *(f"pages/{name}" for name in on_disk)}
        self.assertEqual(set(projected), wanted)
        command = haproxy["command"]
        self.assertIn("-W", command)
        files = [command[i + 1] for i, arg in enumerate(command) if arg == "-f"]
        self.assertEqual(files, [f"{directory}/haproxy.cfg"])

    def test_haproxy_accepts_its_environment(self):
        """haproxy -c -dW (no warning) on haproxy.cfg with the HAProxy container's environment, with each HAProxy here (Debian's 2.6, and 3.2 when CMake found it).
        Changed for this machine only: the directories are this checkout's, and the spawner's
        Service name, which no DNS here resolves (-dW would fail on HAProxy's warning), is
        127.0.0.1."""
        binaries = [b for b in (shutil.which("haproxy"), os.environ.get("DIRECTOR_HAPROXY3_BIN")) if b]
        if not binaries:
            self.skipTest("no haproxy")
        env = dict(self.haproxy_env, PATH=os.environ["PATH"], DIRECTOR_HAPROXY_DIR=str(REPO / "haproxy"),
                   SPAWNER_HOST="127.0.0.1")
        with tempfile.TemporaryDirectory() as scratch:
            env["DIRECTOR_HAPROXY_STATS_SOCKET"] = f"{scratch}/director.sock"
            for binary in binaries:
                done = subprocess.run([binary, "-c", "-dW", "-f", str(REPO / "haproxy" / "haproxy.cfg")],
                                      capture_output=True, text=True, env=env, timeout=60)
                self.assertEqual(done.returncode, 0, f"{binary}:\n{done.stdout}{done.stderr}")

    def test_agent_accepts_its_environment(self):
        agent = os.environ.get("DIRECTOR_AGENT_BIN")
        if not agent:
            self.skipTest("DIRECTOR_AGENT_BIN not set")
        env = dict(self.agent_env, PATH=os.environ["PATH"])
        done = subprocess.run([agent, "--check-config"], capture_output=True, text=True, env=env, timeout=30)
        self.assertEqual(done.returncode, 0, done.stderr)
        effective = json.loads(done.stdout)
        self.assertEqual(effective["container_domain"], f"{USERS_NAMESPACE}.{CLUSTER_DOMAIN}")
        self.assertEqual(effective["listen"], "127.0.0.1:12345")
        self.assertEqual(effective["event_feeds"], [self.agent_env["DIRECTOR_EVENT_FEEDS"]])

    def test_spawner_accepts_its_environment(self):
        """director-spawner --check-config with the spawner container's environment, the
        in-cluster variables the kubelet adds, and a service account directory as a Pod finds it."""
        spawner = os.environ.get("DIRECTOR_SPAWNER_BIN")
        if not spawner:
            self.skipTest("DIRECTOR_SPAWNER_BIN not set")
        env = dict(self.spawner_env)
        with tempfile.TemporaryDirectory() as account:
            for name, content in (("token", "not-a-token"), ("namespace", NAMESPACE),
                                  ("ca.crt", text_of(REPO / "tests" / "data" / "tls" / "ca.crt"))):
                Path(account, name).write_text(content)
            env.update(PATH=os.environ["PATH"], KUBERNETES_SERVICE_HOST="127.0.0.1", KUBERNETES_SERVICE_PORT="6443")
            env["SPAWNER_KUBERNETES_SERVICEACCOUNT_DIR"] = account
            done = subprocess.run([spawner, "--check-config"], capture_output=True, text=True, env=env, timeout=30)
        self.assertEqual(done.returncode, 0, done.stderr)
        effective = json.loads(done.stdout)
        self.assertEqual(effective["container_domain"], f"{USERS_NAMESPACE}.{CLUSTER_DOMAIN}")
        # Its own namespace (the service account's file) is the director's; it works in the users'.
        self.assertEqual(effective["kubernetes_namespace"], USERS_NAMESPACE)
        self.assertEqual(effective["agents"], [self.spawner_env["SPAWNER_AGENTS"]])

    def test_spawner_refuses_one_namespace_for_both(self):
        """An overlay that sets one "namespace:" over both bases (what the docs once advised)
        puts the users' objects next to the director's Secrets: the spawner's --check-config,
        with the environment it renders and its service account there, refuses it (exit 2)."""
        spawner = os.environ.get("DIRECTOR_SPAWNER_BIN")
        if not spawner:
            self.skipTest("DIRECTOR_SPAWNER_BIN not set")
        with tempfile.TemporaryDirectory() as scratch:
            site = Path(scratch) / "one-namespace"
            site.mkdir()
            (site / "kustomization.yaml").write_text(yaml.safe_dump(
                {"bases": [os.path.relpath(DEPLOY, site)], "namespace": "directors"}))
            objects = render(site)
            self.assertEqual({o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"}, {"directors"})
            deployment = one(objects, "Deployment", "director-spawner")
            env = container_env(objects, container(deployment, "spawner"), "directors")
            account = Path(scratch) / "serviceaccount"
            account.mkdir()
            for name, content in (("token", "not-a-token"), ("namespace", "directors"),
                                  ("ca.crt", text_of(REPO / "tests" / "data" / "tls" / "ca.crt"))):
                (account / name).write_text(content)
            env.update(PATH=os.environ["PATH"], KUBERNETES_SERVICE_HOST="127.0.0.1", KUBERNETES_SERVICE_PORT="6443",
                       SPAWNER_KUBERNETES_SERVICEACCOUNT_DIR=str(account))
            done = subprocess.run([spawner, "--check-config"], capture_output=True, text=True, env=env, timeout=30)
        self.assertEqual(done.returncode, 2, done.stdout + done.stderr)
        self.assertIn('kubernetes_namespace (SPAWNER_KUBERNETES_NAMESPACE) "directors" is the spawner\'s own namespace',
                      done.stderr)

    def test_env_names_are_the_programs(self):
        """Every variable the manifests set is one its program reads: HAProxy's are those
        haproxy.cfg reads; the agent's and the spawner's are in their --help-markdown tables."""
        haproxy_reads = set(re.findall(r"\$\{?([A-Z_][A-Z0-9_]*)", (REPO / "haproxy" / "haproxy.cfg").read_text()))
        self.assertEqual(set(self.haproxy_env) - haproxy_reads - HELPER_NAMES, set())
        for variable, name in (("DIRECTOR_AGENT_BIN", "agent"), ("DIRECTOR_SPAWNER_BIN", "spawner")):
            program = os.environ.get(variable)
            if not program:
                self.skipTest(f"{variable} not set")
            accepted = options_of(program) | HELPER_NAMES
            env = self.agent_env if name == "agent" else self.spawner_env
            self.assertEqual(set(env) - accepted, set(), f"variables {name} does not read")
        # The helper is there only to be expanded, before the names that use it.
        for env in (self.haproxy_env, self.agent_env, self.spawner_env):
            self.assertTrue(all("$(" not in value for value in env.values()), env)

    # --- Names, ports, images -----------------------------------------------------------------

    def test_programs_agree(self):
        """One prefix, port and domain for HAProxy, the agent and the spawner (the Service name
        <prefix>-<label>.<namespace>.svc.cluster.local); HAProxy and the agents name the
        spawner's Service and ports; the spawner names the replicas' Service and ports."""
        for key in ("CONTAINER_HOST_PREFIX", "CONTAINER_PORT", "CONTAINER_DOMAIN"):
            values = {env[key] for env in (self.haproxy_env, self.agent_env, self.spawner_env)}
            self.assertEqual(len(values), 1, (key, values))
        self.assertEqual(self.spawner_env["CONTAINER_DOMAIN"], f"{USERS_NAMESPACE}.{CLUSTER_DOMAIN}")
        self.assertEqual(self.spawner_env["SPAWNER_RUNTIME"], "kubernetes")

        def service_port(name, port_name):
            service = one(self.objects, "Service", name)
            (port,) = [p for p in service["spec"]["ports"] if p["name"] == port_name]
            return port["port"]

        spawner_service = f"director-spawner.{NAMESPACE}.{CLUSTER_DOMAIN}"
        self.assertEqual(self.haproxy_env["SPAWNER_HOST"], spawner_service)
        self.assertEqual(int(self.haproxy_env["SPAWNER_PORT"]), service_port("director-spawner", "pages"))
        self.assertEqual(self.spawner_env["SPAWNER_LISTEN"], f"0.0.0.0:{service_port('director-spawner', 'pages')}")
        http = service_port("director-spawner", "spawner-http")
        self.assertEqual(self.spawner_env["SPAWNER_HTTP_LISTEN"], f"0.0.0.0:{http}")
        self.assertEqual(self.haproxy_env["SPAWNER_HTTP_LISTEN"], f":{http}")
        self.assertEqual(self.agent_env["DIRECTOR_EVENT_FEEDS"], f"http://{spawner_service}:{http}/events")

        replicas = f"director-replicas.{NAMESPACE}.{CLUSTER_DOMAIN}"
        headless = one(self.objects, "Service", "director-replicas")
        self.assertEqual(headless["spec"]["clusterIP"], "None")
        agent_port = service_port("director-replicas", "agent-http")
        self.assertEqual(self.agent_env["DIRECTOR_HTTP_LISTEN"], f"0.0.0.0:{agent_port}")
        self.assertEqual(self.spawner_env["SPAWNER_AGENTS"], f"http://{replicas}:{agent_port}")
        self.assertEqual(self.haproxy_env["DIRECTOR_HTTP_BIND"], f":{service_port('director', 'http')}")
        upstream = [a for a in container(self.oauth2_proxy, "oauth2-proxy")["args"] if a.startswith("--upstream=")]
        env = container_env(self.objects, container(self.oauth2_proxy, "oauth2-proxy"))
        self.assertEqual([re.sub(r"\$\(POD_NAMESPACE\)", env["POD_NAMESPACE"], a) for a in upstream],
                         [f"--upstream=http://director.{NAMESPACE}.{CLUSTER_DOMAIN}:{service_port('director', 'http')}/"])

    def test_one_spawner_many_directors(self):
        self.assertGreaterEqual(self.director["spec"]["replicas"], 2)
        self.assertEqual(self.spawner["spec"]["replicas"], 1)
        self.assertEqual(self.spawner["spec"]["strategy"], {"type": "Recreate"})

    def test_images_are_compose_s(self):
        compose = yaml.safe_load((REPO / "compose.yaml").read_text())["services"]
        self.assertEqual(container(self.director, "haproxy")["image"], compose["director"]["image"])
        self.assertEqual(container(self.director, "agent")["image"], compose["director-agent"]["image"])
        self.assertEqual(container(self.spawner, "spawner")["image"], compose["director-spawner"]["image"])
        self.assertEqual(container(self.oauth2_proxy, "oauth2-proxy")["image"], compose["auth"]["image"])
        self.assertEqual(self.spawner_env["SPAWNER_IMAGE"], compose["director-spawner"]["environment"]["SPAWNER_IMAGE"]
                         .split(":-", 1)[-1].rstrip("}"))

    def test_the_documented_overlay(self):
        """docs/kubernetes.md's overlay (one per namespace base, composed without "namespace:"),
        rendered: both namespaces renamed, every object in the one it belongs to, every name that
        refers to them following (CONTAINER_DOMAIN, SPAWNER_KUBERNETES_NAMESPACE, the
        RoleBinding's subject, the namespace selectors), the images replaced, the settings merged
        (the rest kept)."""
        doc = (REPO / "docs" / "kubernetes.md").read_text()
        files = dict(re.findall(r"```yaml\n# my-site/([a-z/-]+\.yaml)\n(.*?)```", doc, re.S))
        self.assertEqual(sorted(files), ["director/kustomization.yaml", "kustomization.yaml",
                                         "users/kustomization.yaml", "users/namespace-name.yaml"])
        top = yaml.safe_load(files["kustomization.yaml"])
        self.assertNotIn("namespace", top)  # never one namespace over both bases
        overlays = {base: yaml.safe_load(files[f"{base}/kustomization.yaml"]) for base in ("director", "users")}
        with tempfile.TemporaryDirectory() as scratch:
            site = Path(scratch) / "my-site"
            for name, text in files.items():
                (site / name).parent.mkdir(parents=True, exist_ok=True)
                (site / name).write_text(text)
            for base, overlay in overlays.items():
                # The documented path (my-site beside deploy/) made this checkout's.
                self.assertEqual(overlay["bases"], [f"../../deploy/kubernetes/{base}"])
                overlay["bases"] = [os.path.relpath(DEPLOY / base, site / base)]
                (site / base / "kustomization.yaml").write_text(yaml.safe_dump(overlay))
            objects = render(site)
        namespace, users = overlays["director"]["namespace"], overlays["users"]["namespace"]
        (renamed,) = [patch["value"] for patch in yaml.safe_load(files["users/namespace-name.yaml"])]
        self.assertEqual(renamed, users)
        self.assertNotIn(namespace, (NAMESPACE, USERS_NAMESPACE))
        self.assertNotIn(users, (NAMESPACE, USERS_NAMESPACE, namespace))
        # Neither old name is left anywhere a namespace is named (the part-of label is a name),
        # and no variable is left unsubstituted.
        stale = [(where, value) for where, value in strings_of(objects) if not where.endswith("/app.kubernetes.io/part-of")
                 and re.search(rf"(^|\.)({NAMESPACE}|{USERS_NAMESPACE})(\.|$)", value)]
        self.assertEqual(stale, [])
        self.assertEqual(unsubstituted(objects), [])
        self.assertEqual(namespaces_of(objects), {
            (o["kind"], o["metadata"]["name"]): users if (o["kind"], o["metadata"]["name"]) in IN_USERS_NAMESPACE
            else None if o["kind"] == "Namespace" else namespace for o in objects})
        self.assertIn(("Namespace", users), namespaces_of(objects))
        self.assertEqual(one(objects, "RoleBinding", "director-spawner")["subjects"][0]["namespace"], namespace)
        director = one(objects, "Deployment", "director")
        spawner = one(objects, "Deployment", "director-spawner")
        self.assertEqual(container(director, "agent")["image"], "registry.example.com/container-director/agent:0.2.0")
        self.assertEqual(container(spawner, "spawner")["image"], "registry.example.com/container-director/spawner:0.2.0")
        haproxy = container_env(objects, container(director, "haproxy"), namespace)
        agent = container_env(objects, container(director, "agent"), namespace)
        spawner_env = container_env(objects, container(spawner, "spawner"), namespace)
        self.assertEqual(haproxy["DIRECTOR_TRUSTED_SOURCES"], "10.244.0.0/16")
        self.assertEqual(haproxy["CONTAINER_HOST_PREFIX"], self.settings["CONTAINER_HOST_PREFIX"])
        for env in (haproxy, agent, spawner_env):
            self.assertEqual(env["CONTAINER_DOMAIN"], f"{users}.{CLUSTER_DOMAIN}")
        self.assertEqual(spawner_env["SPAWNER_KUBERNETES_NAMESPACE"], users)
        self.assertEqual(haproxy["SPAWNER_HOST"], f"director-spawner.{namespace}.{CLUSTER_DOMAIN}")
        selectors = [e["values"] for o in objects if o["kind"] == "NetworkPolicy"
                     for rule in o["spec"].get("ingress", []) + o["spec"].get("egress", [])
                     for peer in rule.get("from", []) + rule.get("to", [])
                     for e in peer.get("namespaceSelector", {}).get("matchExpressions", [])
                     if e["key"] == "kubernetes.io/metadata.name"]
        self.assertEqual(sorted(map(tuple, selectors)), [(namespace,), (namespace,), (users,)])
        self.assertEqual([r for r in validate_schemas(objects) if r[2]], [])

    # --- Network policies ---------------------------------------------------------------------

    def cluster(self, policies=None):
        """The Pods a connection may come from or go to, and the policies in force."""
        policies = policies if policies is not None else [o for o in self.objects if o["kind"] == "NetworkPolicy"]
        port = int(self.settings["CONTAINER_PORT"])
        pods = {
            "director": pod_of(self.director), "spawner": pod_of(self.spawner),
            "oauth2-proxy": pod_of(self.oauth2_proxy),
            "user": user_pod("alice", port), "other-user": user_pod("bob", port),
            "ingress-controller": Pod("ingress-controller", "ingress-nginx", {"app": "ingress"}, [("http", 80, "TCP")]),
            "elsewhere": Pod("elsewhere", "another-namespace", {"app": "x"}, [("http", 80, "TCP")]),
            "dns": Pod("dns", "kube-system", {"k8s-app": "kube-dns"}, [("dns", 53, "UDP"), ("dns-tcp", 53, "TCP")]),
            # The director's labels in another namespace: the labels alone open nothing.
            "impostor": Pod("impostor", "another-namespace", {"app.kubernetes.io/name": "director"},
                            [("http", 8080, "TCP")]),
            # A Pod of the users' namespace the spawner did not make: isolated all the same.
            "stray": Pod("stray", USERS_NAMESPACE, {"app": "x"}, [("http", port, "TCP")]),
        }
        return pods, policies

    def reachable(self, policies=None):
        """{(source, destination, port)} over every source Pod and every port of every Pod."""
        pods, policies = self.cluster(policies)
        return {(s, d, number) for s, source in pods.items() for d, destination in pods.items() if s != d
                for _, number, protocol in destination.ports if allowed(policies, source, destination, number, protocol)}

    def test_who_reaches_what(self):
        """The whole matrix: exactly these connections into the namespace's Pods, and the
        director's Pods reach nothing else."""
        director_ports = {n for _, n, _ in pod_of(self.director).ports}
        self.assertEqual(director_ports, {8080, 8405, 9102})
        port = int(self.settings["CONTAINER_PORT"])
        ours = {"director", "spawner", "oauth2-proxy", "user", "other-user", "stray"}
        inside = {c for c in self.reachable() if c[1] in ours}
        self.assertEqual(inside, {
            ("oauth2-proxy", "director", 8080),
            ("ingress-controller", "oauth2-proxy", 4180),
            ("director", "user", port), ("director", "other-user", port),
            ("spawner", "user", port), ("spawner", "other-user", port),
            # Every Pod of the users' namespace admits the spawner on CONTAINER_PORT (the director's
            # egress admits only the managed ones); only the spawner can create Pods there.
            ("spawner", "stray", port),
            ("director", "spawner", 9180), ("director", "spawner", 9181),
            ("spawner", "director", 9102),
        })
        outside = {c for c in self.reachable() if c[1] not in ours}
        self.assertIn(("director", "dns", 53), outside)
        self.assertNotIn(("director", "elsewhere", 80), outside)
        self.assertNotIn(("director", "impostor", 8080), outside)
        # The user containers' own egress stays open (their work needs the internet).
        self.assertIn(("user", "elsewhere", 80), outside)

    def test_user_containers_reach_none_of_the_director_s_ports(self):
        pods, policies = self.cluster()
        self.assertNotEqual(pods["user"].namespace, pods["director"].namespace)
        for destination in ("director", "spawner", "oauth2-proxy", "other-user", "stray"):
            for _, number, protocol in pods[destination].ports:
                self.assertFalse(allowed(policies, pods["user"], pods[destination], number, protocol),
                                 (destination, number))

    def test_policies_match_the_container_port(self):
        """users-namespace.yaml and network-policies.yaml name CONTAINER_PORT as a number: it must
        be the settings' one, on both sides (the user containers' ingress, the director's egress)."""
        port = int(self.settings["CONTAINER_PORT"])
        policy = one(self.objects, "NetworkPolicy", "user-containers-from-director")
        self.assertEqual([p["port"] for r in policy["spec"]["ingress"] for p in r["ports"]], [port])
        egress = one(self.objects, "NetworkPolicy", "director-egress")
        self.assertEqual([p["port"] for r in egress["spec"]["egress"] for peer in r.get("to", [])
                          if "namespaceSelector" in peer for p in r["ports"]], [port])

    def test_the_evaluator_sees_an_opening(self):
        """The evaluation is not vacuous: without the default deny, or with a policy that lets
        every Pod in, the user containers reach the agents' port."""
        policies = [o for o in self.objects if o["kind"] == "NetworkPolicy"]
        pods, _ = self.cluster()
        without_default = [p for p in policies if p["metadata"]["name"] not in
                           ("default-deny-ingress", "director-from-oauth2-proxy", "director-runtime-api-from-spawner")]
        self.assertTrue(allowed(without_default, pods["user"], pods["director"], 9102))
        opened = json.loads(json.dumps(policies))
        for policy in opened:
            if policy["metadata"]["name"] == "director-runtime-api-from-spawner":
                policy["spec"]["ingress"][0]["from"] = [{"namespaceSelector": {}}]
        self.assertTrue(allowed(opened, pods["user"], pods["director"], 9102))
        self.assertFalse(allowed(policies, pods["user"], pods["director"], 9102))


if __name__ == "__main__":
    message = ("missing: kubectl (tools/install-deps.sh installs it)" if not shutil.which("kubectl")
               else schema_validator_missing())
    if message:
        if os.environ.get("CI") == "true":
            sys.exit(message)
        print(f"skipped: {message}")
        sys.exit(77)
    unittest.main()
