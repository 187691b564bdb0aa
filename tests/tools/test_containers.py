#!/usr/bin/env python3
"""tools/containers.py: the demo user containers the stacks run (demo_backend.py processes on
addresses of a claimed 127.0.<n>.0/24, made known by a hosts file each writes once it listens)."""
import os
import signal
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
from containers import Containers, claim_subnet  # noqa: E402
from loopback import http_get  # noqa: E402

PORT = 8080  # the claimed /24 is this test's alone


class WaitReady(unittest.TestCase):
    def setUp(self):
        self.subnet, lock = claim_subnet()
        self.addCleanup(lock.close)
        run_dir = tempfile.TemporaryDirectory(prefix="test-containers-")
        self.addCleanup(run_dir.cleanup)
        self.containers = Containers(run_dir.name, self.subnet, PORT, owner_pid=os.getpid())
        self.addCleanup(self.containers.stop_all)

    def test_ready_means_listening_and_named_by_this_start(self):
        first = self.containers.start("vscode-alice", "alice")
        self.containers.wait_ready("vscode-alice")
        self.assertEqual(http_get((first["addr"], PORT), "/")[0], 200)
        # Killed, its name left resolving (as a runtime would until it notices), then started
        # again on another address: ready only once the new one names itself.
        self.containers.stop("vscode-alice", signal.SIGKILL, forget=False)
        second = self.containers.start("vscode-alice", "alice")
        self.assertNotEqual(first["addr"], second["addr"])
        self.containers.wait_ready("vscode-alice")
        hosts = (self.containers.hosts_dir / "vscode-alice").read_text()
        self.assertEqual(hosts.split(), [second["addr"], "vscode-alice"])
        self.assertEqual(http_get((second["addr"], PORT), "/")[0], 200)


if __name__ == "__main__":
    unittest.main(verbosity=2)
