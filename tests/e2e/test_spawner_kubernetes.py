#!/usr/bin/env python3
"""director-spawner with SPAWNER_RUNTIME=kubernetes, the real process: the startup errors (not in a
cluster, no token file, SPAWNER_NETWORK with kubernetes), each with its exit code and message
(docs/spawner.md, "Kubernetes")."""

import os
import shutil
import subprocess
import sys
import tempfile
import unittest
from pathlib import Path

from common import SKIP
from stack import spawner_binary  # noqa: E402 (common put tools/ on the path)
from loopback import free_port  # noqa: E402
from testing import clean_environment  # noqa: E402


NAMESPACE = "director-users"


def unavailable():
    """Why this test cannot run here, or None."""
    if not Path(spawner_binary()).is_file():
        return f"{spawner_binary()} is not built"
    for tool in ("dnsmasq", "openssl"):
        if not shutil.which(tool) and not Path("/usr/sbin", tool).exists():
            return f"{tool} not installed (tools/install-deps.sh)"
    return None


class StartupErrors(unittest.TestCase):
    """With runtime kubernetes, the spawner refuses to start without what a pod has."""

    def setUp(self):
        self.directory = Path(tempfile.mkdtemp(prefix="director-kube-startup-"))
        self.addCleanup(shutil.rmtree, self.directory, True)
        self.account = self.directory / "serviceaccount"
        self.account.mkdir()
        for name, content in (("token", "t0ken"), ("ca.crt", "-----BEGIN CERTIFICATE-----\n"), ("namespace", NAMESPACE)):
            (self.account / name).write_text(content)

    def run_spawner(self, **variables):
        env = clean_environment({"SPAWNER_RUNTIME": "kubernetes",
                                 "SPAWNER_LISTEN": f"127.0.0.1:{free_port()}",
                                 "SPAWNER_HTTP_LISTEN": f"127.0.0.1:{free_port()}",
                                 "SPAWNER_KUBERNETES_SERVICEACCOUNT_DIR": str(self.account),
                                 "KUBERNETES_SERVICE_HOST": "127.0.0.1",
                                 "KUBERNETES_SERVICE_PORT": str(free_port())})
        for name, value in variables.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        env.pop("KUBERNETES_PORT", None)
        done = subprocess.run([spawner_binary()], env=env, capture_output=True, text=True, timeout=30)
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

    def test_a_network_with_kubernetes(self):
        code, output = self.run_spawner(SPAWNER_NETWORK="director")
        self.assertEqual(code, 2, output)
        self.assertIn('inconsistent options: network (SPAWNER_NETWORK, --network) is "director" (environment), '
                      'runtime (SPAWNER_RUNTIME, --runtime) is "kubernetes" (environment); Kubernetes has no '
                      'Docker networks', output)


if __name__ == "__main__":
    if reason := unavailable():
        print(f"skipped: {reason}")
        sys.exit(SKIP)
    os.environ["PATH"] += os.pathsep + "/usr/sbin"
    unittest.main(verbosity=2)
