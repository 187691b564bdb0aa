#!/usr/bin/env python3
"""The director's Pod of deploy/kubernetes, run here with the real programs: HAProxy (Debian's 2.6,
and 3.2 when CMake found it) and director-agent, started with the command, the environment and
the files the rendered Deployment gives them, as the user nobody (the Pod's runAsUser), in a
network and mount namespace of the test's own (root only: the cluster's part is played by
addresses on the namespace's loopback interface for a user's Service, and a dnsmasq answering the cluster's names
through the namespace's /etc/resolv.conf). Checked:

- the agent is ready and HAProxy's agents backend has it UP (SPOP on the Pod's loopback);
- the agent reaches HAProxy's admin runtime API through the unix socket in the shared
  directory (the emptyDir), both running as the same user (the socket is mode 600);
- a request with the identity header is routed by the agent to the user's Service name
  <prefix>-<label>.<namespace>.svc.cluster.local (CONTAINER_DOMAIN) and answered by the user's
  container there;
- the agent's GET /connections (the spawner's view, on the agent's HTTP port) shows that user
  while a request of theirs is open through HAProxy, and not once it closed; HAProxy's runtime
  API listens on no TCP port.

The volumes are directories: each mount path of a container is replaced by its volume's
directory in the environment and the command. One more change: HAProxy listens on 127.0.0.1:8080
instead of every address (`:8080`), because the user's container, another Pod in a cluster,
listens on port 8080 in this same namespace (no veth here to give it one of its own)."""

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO / "tools"))
from loopback import http_get, parse_metrics  # noqa: E402
from stack import wait_for  # noqa: E402
from testing import report_failure  # noqa: E402
from test_kubernetes import NAMESPACE, USERS_NAMESPACE, CLUSTER_DOMAIN, container, container_env, render  # noqa: E402

SERVICE_ADDRESS = "10.96.0.10"  # alice's Service (ClusterIP), on this namespace's loopback interface
SPAWNER_ADDRESS = "10.96.0.20"  # the spawner's Service: nothing listens there


def runtime_api(path, command):
    """One command on an HAProxy runtime API unix socket: its answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(str(path))
        s.sendall(command.encode() + b"\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data.decode(errors="replace")


def lay_out_volumes(objects, deployment, root):
    """{volume name: directory} holding what the Pod's volumes hold: ConfigMaps (projected or
    not) as files, emptyDirs empty and writable by anyone (as the kubelet makes them)."""
    data = {o["metadata"]["name"]: o.get("data", {}) for o in objects if o["kind"] == "ConfigMap"}
    directories = {}
    for volume in deployment["spec"]["template"]["spec"]["volumes"]:
        directory = root / volume["name"]
        directory.mkdir()
        directory.chmod(0o755)
        if "emptyDir" in volume:
            directory.chmod(0o777)
        sources = volume.get("projected", {}).get("sources", []) or \
            ([{"configMap": volume["configMap"]}] if "configMap" in volume else [])
        for source in sources:
            content = data[source["configMap"]["name"]]
            items = source["configMap"].get("items") or [{"key": k, "path": k} for k in content]
            for item in items:
                path = directory / item["path"]
                path.parent.mkdir(parents=True, exist_ok=True)
                path.parent.chmod(0o755)
                path.write_bytes(content[item["key"]].encode())
                path.chmod(0o644)
        directories[volume["name"]] = directory
    return directories


def mounted(spec, directories, value):
    """`value` with a container's mount path replaced by its volume's directory."""
    for mount in spec.get("volumeMounts", []):
        path = mount["mountPath"].rstrip("/")
        if value == path or value.startswith(path + "/"):
            return str(directories[mount["name"]]) + value[len(path):]
    return value


class DirectorPod(unittest.TestCase):
    haproxy = "haproxy"

    def setUp(self):
        self.objects = render()
        self.deployment = next(o for o in self.objects if o["kind"] == "Deployment" and o["metadata"]["name"] == "director")
        self.scratch = Path(tempfile.mkdtemp(prefix="director-pod-"))
        self.scratch.chmod(0o755)
        self.processes = []
        self.addCleanup(shutil.rmtree, self.scratch, ignore_errors=True)
        self.addCleanup(self.stop_all)

    def tearDown(self):
        report_failure(self, lambda: "".join(f"--- {log.name}\n{log.read_text(errors='replace')[-4000:]}\n"
                                             for log in sorted(self.scratch.glob("*.log"))))

    def stop_all(self):
        for process in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()

    def start(self, name, argv, env=None):
        log = open(self.scratch / f"{name}.log", "wb")
        self.addCleanup(log.close)
        process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.processes.append(process)
        return process

    def as_pod_user(self, spec):
        """setpriv to the user and group the Pod runs this container as."""
        pod = self.deployment["spec"]["template"]["spec"].get("securityContext", {})
        own = spec.get("securityContext", {})
        uid = own.get("runAsUser", pod.get("runAsUser"))
        gid = own.get("runAsGroup", pod.get("runAsGroup", uid))
        self.assertIsNotNone(uid, spec["name"])
        return ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--"]

    def log_of(self, name):
        return (self.scratch / f"{name}.log").read_text(errors="replace")

    def cluster(self):
        """What the cluster would provide: the user's Service address, and DNS for its names."""
        for command in (["ip", "link", "set", "lo", "up"],
                        ["ip", "addr", "add", f"{SERVICE_ADDRESS}/32", "dev", "lo"],
                        ["ip", "addr", "add", f"{SPAWNER_ADDRESS}/32", "dev", "lo"]):
            subprocess.run(command, check=True, capture_output=True)
        resolv = self.scratch / "resolv.conf"
        resolv.write_text("nameserver 127.0.0.1\n")
        resolv.chmod(0o644)
        subprocess.run(["mount", "--bind", str(resolv), "/etc/resolv.conf"], check=True)
        self.addCleanup(subprocess.run, ["umount", "/etc/resolv.conf"], check=False)
        users_domain = f"{USERS_NAMESPACE}.{CLUSTER_DOMAIN}"
        domain = f"{NAMESPACE}.{CLUSTER_DOMAIN}"
        self.start("dnsmasq", ["dnsmasq", "--keep-in-foreground", "--log-facility=-", "--conf-file=/dev/null",
                               "--no-resolv", "--no-hosts", "--user=root", "--bind-interfaces",
                               "--listen-address=127.0.0.1", "--port=53", "--local=/#/",
                               f"--address=/vscode-alice.{users_domain}/{SERVICE_ADDRESS}",
                               f"--address=/director-spawner.{domain}/{SPAWNER_ADDRESS}",
                               f"--pid-file={self.scratch / 'dnsmasq.pid'}"])
        hosts = self.scratch / "hosts"
        hosts.mkdir()
        self.start("alice", [sys.executable, str(REPO / "tools" / "demo_backend.py"),
                             "--listen", f"{SERVICE_ADDRESS}:8080", "--host", f"vscode-alice.{users_domain}",
                             "--user", "alice", "--hosts-dir", str(hosts),
                             "--request-log", str(self.scratch / "alice-requests.log"), "--owner-pid", str(os.getpid())])
        wait_for("alice's container", lambda: socket.create_connection((SERVICE_ADDRESS, 8080), timeout=1).close() or True)

    def test_pod(self):
        self.cluster()
        directories = lay_out_volumes(self.objects, self.deployment, self.scratch)
        agent_bin = os.environ["DIRECTOR_AGENT_BIN"]
        for name, program in (("haproxy", self.haproxy), ("agent", agent_bin)):
            spec = container(self.deployment, name)
            env = {k: mounted(spec, directories, v) for k, v in container_env(self.objects, spec).items()}
            env["PATH"] = os.environ["PATH"]
            if name == "haproxy":
                self.assertEqual(env["DIRECTOR_HTTP_BIND"], ":8080")
                env["DIRECTOR_HTTP_BIND"] = "127.0.0.1:8080"
            argv = [mounted(spec, directories, a) for a in spec.get("command", [spec["image"]])]
            argv[0] = program
            self.start(name, self.as_pod_user(spec) + argv, env)

        def ready():
            status, _ = http_get(("127.0.0.1", 9102), "/readyz")
            return status == 200
        wait_for("the agent's /readyz", ready)
        socket_path = Path(mounted(container(self.deployment, "haproxy"), directories,
                                   container_env(self.objects, container(self.deployment, "haproxy"))["DIRECTOR_HAPROXY_STATS_SOCKET"]))

        def agent_up():
            stat = runtime_api(socket_path, "show stat")
            return any(line.startswith("agents,agent,") and ",UP," in line for line in stat.splitlines())
        wait_for("HAProxy's agents backend to have the agent UP", agent_up)

        # The agent revokes through the shared unix socket (it cleared the fast_path table on start).
        haproxy_uid = int(self.as_pod_user(container(self.deployment, "haproxy"))[1].split("=")[1])
        self.assertEqual((socket_path.stat().st_uid, socket_path.stat().st_mode & 0o777), (haproxy_uid, 0o600))

        def agent_reaches_haproxy():
            metrics = parse_metrics(http_get(("127.0.0.1", 9102), "/metrics")[1])
            return metrics.get("director_haproxy_runtime_reachable") == 1 and \
                metrics.get('director_haproxy_runtime_commands_total{result="ok"}', 0) >= 1
        wait_for("the agent to reach HAProxy's runtime API", agent_reaches_haproxy)

        # A request from the sign-in hop (here loopback, the settings' trusted default), for alice.
        connection = http.client.HTTPConnection("127.0.0.1", 8080, timeout=10)
        connection.request("GET", "/", headers={"X-Forwarded-Preferred-Username": "alice",
                                                "Accept": "text/html"})
        response = connection.getresponse()
        body = response.read().decode(errors="replace")
        connection.close()
        self.assertEqual(response.status, 200, body + self.log_of("haproxy"))
        self.assertIn(f"vscode-alice.{USERS_NAMESPACE}.{CLUSTER_DOMAIN}", response.getheader("X-Served-By", ""))

        # The spawner's view, from the agent's HTTP port: alice while a request of hers is open
        # (its body still to come), nobody once it closed.
        def connections():
            status, body = http_get(("127.0.0.1", 9102), "/connections")
            self.assertEqual(status, 200, body)
            answer = json.loads(body)
            self.assertEqual(answer["sockets"], [str(socket_path)])
            return {row["user"]: row["open"] for row in answer["connections"]}
        self.assertEqual(connections(), {})
        with socket.create_connection(("127.0.0.1", 8080), timeout=10) as open_request:
            open_request.sendall(b"POST / HTTP/1.1\r\nHost: director\r\nX-Forwarded-Preferred-Username: alice\r\n"
                                 b"Content-Length: 100000\r\n\r\n")
            wait_for("alice's open request in /connections", lambda: connections() == {"alice": 1})
        wait_for("alice's closed request gone from /connections", lambda: connections() == {})
        # HAProxy's runtime API is on no TCP port of the Pod (the old one was 9999).
        with self.assertRaises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", 9999), timeout=5).close()


class DirectorPodHAProxy32(DirectorPod):
    haproxy = os.environ.get("DIRECTOR_HAPROXY3_BIN", "")

    def setUp(self):
        if not self.haproxy:
            self.skipTest("no HAProxy 3.2 (DIRECTOR_HAPROXY3_BIN)")
        super().setUp()


if __name__ == "__main__":
    if "--inside" in sys.argv:
        sys.argv.remove("--inside")
        unittest.main()
        sys.exit(0)
    missing = [tool for tool in ("kubectl", "unshare", "setpriv", "dnsmasq", "ip", "haproxy") if not shutil.which(tool)]
    if os.geteuid() != 0 or missing or not os.environ.get("DIRECTOR_AGENT_BIN"):
        message = f"needs root, DIRECTOR_AGENT_BIN and {', '.join(missing) or 'nothing else'}"
        if os.environ.get("CI") == "true":
            sys.exit(message)
        print(f"skipped: {message}")
        sys.exit(77)
    # Each Pod in a network and mount namespace of its own: its ports, its loopback, its resolv.conf.
    failed = 0
    for test in sys.argv[1:] or ["DirectorPod", "DirectorPodHAProxy32"]:
        done = subprocess.run(["unshare", "--net", "--mount", "--propagation", "private",
                               sys.executable, __file__, "--inside", test])
        failed += done.returncode != 0
    sys.exit(1 if failed else 0)
