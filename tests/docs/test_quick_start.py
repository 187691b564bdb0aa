#!/usr/bin/env python3
"""README's quick start, first command: `tools/run-stack` (installs what is missing, builds,
runs the whole director on loopback) comes up, and every curl command it prints to try does
what its text says; Ctrl-C stops everything. Run as the README says, with two changes so that
it can run beside the other tests: ports the test reserves instead of the defaults (its own
flags, which it passes to tools/stack.py) and a temporary run directory."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))
from loopback import reserve_port  # noqa: E402

IDENTITY = "X-Forwarded-Preferred-Username"
START_TIMEOUT = 240  # s: it may install and build first


def shell(command, timeout=30):
    run = subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True,
                         timeout=timeout)
    return run.returncode, run.stdout


class QuickStart(unittest.TestCase):
    def setUp(self):
        self.run_dir = Path(tempfile.mkdtemp(prefix="director-quick-start-"))
        self.addCleanup(shutil.rmtree, self.run_dir, ignore_errors=True)
        flags = ["--run-dir", str(self.run_dir)]
        # Reserved until the test ends (its listeners bind them with SO_REUSEADDR): run-stack
        # builds first, and a port merely free now could meanwhile go to another stack.
        for flag in ("--http", "--metrics", "--agent", "--agent-http", "--dns", "--spawner", "--spawner-http"):
            reservation = reserve_port()
            self.addCleanup(reservation.close)
            flags += [flag, f"127.0.0.1:{reservation.getsockname()[1]}"]
        self.stack = subprocess.Popen([str(REPO / "tools" / "run-stack"), *flags], cwd=REPO,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                      stdin=subprocess.DEVNULL, start_new_session=True)
        self.lines = []
        self.reader = threading.Thread(target=self.read_lines, daemon=True)
        self.reader.start()
        self.addCleanup(self.stop)

    def stop(self):
        """Ctrl-C, as the README says; SIGKILL if that does not stop it."""
        if self.stack.poll() is None:
            os.killpg(self.stack.pid, signal.SIGINT)
            if self.wait_exit(60) is None:
                os.killpg(self.stack.pid, signal.SIGKILL)
                self.stack.wait()
        self.reader.join(5)
        self.stack.stdout.close()

    def read_lines(self):
        """The reader thread: every line run-stack prints, into self.lines."""
        for line in self.stack.stdout:
            self.lines.append(line)

    def read_until(self, marker, timeout):
        deadline = time.monotonic() + timeout
        while marker not in self.output:
            self.assertLess(time.monotonic(), deadline, f"no {marker!r} within {timeout} s:\n{self.output[-3000:]}")
            self.assertTrue(self.reader.is_alive() or self.lines,
                            f"tools/run-stack exited ({self.stack.poll()}):\n{self.output[-3000:]}")
            time.sleep(0.1)

    @property
    def output(self):
        return "".join(self.lines)

    def test_run_stack_and_every_printed_command(self):
        self.read_until("Press Ctrl-C to stop.", START_TIMEOUT)
        commands = [line.strip() for line in self.output.splitlines()
                    if line.startswith(("  curl ", "  sleep "))]
        director = "director-spawner with Podman" in self.output
        self.assertGreaterEqual(len(commands), 6 if not director else 10, self.output)
        bob_loaded = False
        for command in commands:
            with self.subTest(command=command):
                status, out = shell(command)
                self.assertEqual(status, 0, f"{command}:\n{out[-2000:]}")
                self.assertTrue(out.strip(), command)
                if f"{IDENTITY}: alice" in command:
                    self.assertRegex(out, r"^HTTP/1\.1 200")
                    self.assertTrue("container alice" in out or "X-Served-By" in out, out[-1000:])
                elif f"{IDENTITY}: bob" in command and "Accept: text/html" in command:
                    self.assertRegex(out, r"^HTTP/1\.1 (200|202)")  # the loading page
                    self.assertIn("refresh", out)
                    bob_loaded = True
                elif f"{IDENTITY}: bob" in command:
                    # "2 s later bob reaches his own container": on a loaded machine, soon after.
                    self.assertTrue(bob_loaded)
                    deadline = time.monotonic() + 30
                    while not re.search(r"container bob|X-Served-By", out):
                        self.assertLess(time.monotonic(), deadline, out[-1000:])
                        time.sleep(0.5)
                        status, out = shell(command.removeprefix("sleep 2; "))
                    self.assertRegex(out, r"^HTTP/1\.1 200")
                elif "/users" in command and "grep" not in command:
                    users = json.loads(out)
                    rows = users["users"] if isinstance(users, dict) else users
                    self.assertTrue(any("bob" in json.dumps(row) for row in rows), out[:1000])
                elif "containers/json" in command:
                    self.assertTrue(any("vscode-bob" in json.dumps(c.get("Names")) for c in json.loads(out)))
                elif "/status?user=bob" in command:
                    self.assertIn("events", out)
        # Ctrl-C stops everything.
        os.killpg(self.stack.pid, signal.SIGINT)
        self.read_until("stopping...", 30)
        self.assertEqual(self.wait_exit(60), 0, self.output[-2000:])
        self.assertNotIn("Traceback", self.output)

    def wait_exit(self, timeout):
        try:
            return self.stack.wait(timeout)
        except subprocess.TimeoutExpired:
            return None


if __name__ == "__main__":
    unittest.main(verbosity=2)
