#!/usr/bin/env python3
"""A private Podman API service for tests: the Docker Engine API on a unix socket in a temp dir.

Everything lives under one directory: containers.conf (runc, cgroupfs, file events, ulimits
that fit a container sandbox), the image and container store (--root, --runroot, --tmpdir), and
the socket. Nothing touches the machine's global store or /etc/containers. An image needs no
registry: a busybox-static rootfs (/bin/busybox and one symlink per applet: sh, httpd, sleep,
cat, ...) is imported as `localhost/director-test-busybox:latest`.

Measured here (Podman 4.3.1, 2 cores): the service answers /_ping 0.1 s after it starts, the
image import takes 0.5-0.7 s. A pull of an image that is not stored fails after about 3 s
(registries.conf lists none; a "localhost/..." name makes Podman try https://localhost:443).

From Python (tests/e2e):
    with PodmanService() as podman:
        podman.socket   # path of the API socket
        podman.cli("ps", "-a")

From the command line (ctest fixtures, by hand):
    tools/podman.py serve --dir D      # starts it in the background, prints the socket path
    tools/podman.py stop --dir D       # removes every container, stops the service, removes D
    tools/podman.py run --dir D        # in the foreground until Ctrl-C, then cleans up
"""

import argparse
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

TEST_IMAGE = "localhost/director-test-busybox:latest"
BUSYBOX = "/bin/busybox"

CONTAINERS_CONF = """\
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{events}"

[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
"""


def available():
    """Why the service cannot run here (a reason), or None when it can."""
    if shutil.which("podman") is None:
        return "podman is not installed (tools/install-deps.sh installs it)"
    if not Path(BUSYBOX).is_file():
        return "%s is missing (package busybox-static)" % BUSYBOX
    return None


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=5):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def api(socket_path, method, target, timeout=5):
    """(status, headers, body) of one API call over the socket."""
    connection = UnixHTTPConnection(socket_path, timeout)
    try:
        connection.request(method, target)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


class PodmanService:
    def __init__(self, directory=None):
        self.owned = directory is None
        self.dir = Path(directory or tempfile.mkdtemp(prefix="director-podman-")).resolve()
        self.socket = str(self.dir / "podman.sock")
        self.pidfile = self.dir / "service.pid"
        # Podman refuses a runroot longer than 50 characters: a short one in /tmp, named after
        # the directory, removed with it.
        self.runroot = Path("/tmp") / ("director-podman-run-" + hashlib.sha1(str(self.dir).encode()).hexdigest()[:10])
        self.timings = {}
        self.process = None  # the service, when this object started it

    # --- the podman command line on the same store and configuration ---
    def env(self):
        env = dict(os.environ)
        env["CONTAINERS_CONF"] = str(self.dir / "containers.conf")
        env["CONTAINERS_STORAGE_CONF"] = str(self.dir / "storage.conf")
        env["CONTAINERS_REGISTRIES_CONF"] = str(self.dir / "registries.conf")
        env["XDG_RUNTIME_DIR"] = str(self.dir / "xdg")
        return env

    def global_flags(self):
        return ["--root", str(self.dir / "root"), "--runroot", str(self.runroot),
                "--tmpdir", str(self.dir / "tmp")]

    def cli(self, *args, check=True, timeout=120):
        return subprocess.run(["podman", *self.global_flags(), *args], env=self.env(), check=check,
                              capture_output=True, text=True, timeout=timeout)

    # --- lifecycle ---
    def write_configuration(self):
        for sub in ("root", "tmp", "xdg"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        self.runroot.mkdir(parents=True, exist_ok=True)
        (self.dir / "containers.conf").write_text(CONTAINERS_CONF.format(events=self.dir / "tmp" / "events.log"))
        # vfs: works on any filesystem (no overlay inside a container sandbox); the test image
        # is one small layer.
        (self.dir / "storage.conf").write_text(
            '[storage]\ndriver = "vfs"\nrunroot = "%s"\ngraphroot = "%s"\n'
            % (self.runroot, self.dir / "root"))
        # No registry at all: a pull of anything not stored here fails at once.
        (self.dir / "registries.conf").write_text('unqualified-search-registries = []\n')

    def start(self, timeout=30):
        if available():
            raise RuntimeError(available())
        began = time.monotonic()
        self.write_configuration()
        self.start_service(timeout)
        self.timings["service_start_s"] = round(time.monotonic() - began, 2)
        began = time.monotonic()
        self.import_test_image()
        self.timings["image_import_s"] = round(time.monotonic() - began, 2)
        return self

    def kill_service(self):
        """Kills the API service alone (SIGKILL; the containers, under their conmon, go on
        running): every client's connection, an event stream too, breaks, as when a Docker
        daemon goes down. start_service() brings it back on the same socket."""
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.process = None
        self.pidfile.unlink()

    def start_service(self, timeout=30):
        """`podman system service` on self.socket, until it answers /_ping."""
        with open(self.dir / "service.log", "a") as log:  # the service keeps its own descriptor
            process = subprocess.Popen(
                ["podman", *self.global_flags(), "system", "service", "--time=0", "unix://" + self.socket],
                env=self.env(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        self.process = process  # reaped by stop()
        self.pidfile.write_text(str(process.pid))
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError("podman system service exited with %d: %s"
                                   % (process.returncode, (self.dir / "service.log").read_text()[-2000:]))
            try:
                status, headers, _ = api(self.socket, "GET", "/_ping", timeout=1)
                if status == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("podman system service did not answer /_ping within %d s" % timeout)
            time.sleep(0.05)

    def import_test_image(self):
        """localhost/director-test-busybox:latest from /bin/busybox and its applets."""
        rootfs = self.dir / "rootfs"
        (rootfs / "bin").mkdir(parents=True, exist_ok=True)
        for sub in ("tmp", "proc", "sys", "dev", "etc", "www", "data"):
            (rootfs / sub).mkdir(exist_ok=True)
        shutil.copy2(BUSYBOX, rootfs / "bin" / "busybox")
        applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True, check=True).stdout.split()
        for applet in applets:
            link = rootfs / "bin" / applet
            if applet != "busybox" and not link.exists():
                link.symlink_to("busybox")
        (rootfs / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
        (rootfs / "etc" / "group").write_text("root:x:0:\n")
        (rootfs / "www" / "index.html").write_text("director test container\n")
        archive = self.dir / "rootfs.tar"
        with tarfile.open(archive, "w") as tar:
            tar.add(rootfs, arcname=".")
        self.cli("import", "--change", "ENV=PATH=/bin", "--change", 'CMD=["/bin/sh"]', str(archive), TEST_IMAGE)

    def stop(self):
        """Removes every container (volumes too), stops the service."""
        if (self.dir / "root").exists():
            self.cli("rm", "--all", "--force", "--time", "0", check=False, timeout=60)
            self.cli("volume", "rm", "--all", "--force", check=False, timeout=60)
        if self.pidfile.exists():
            pid = int(self.pidfile.read_text())
            try:
                os.killpg(pid, signal.SIGTERM)
                for _ in range(100):
                    if self.process is not None:  # our child: gone once reaped, not a zombie
                        if self.process.poll() is not None:
                            break
                    else:
                        os.kill(pid, 0)
                    time.sleep(0.05)
                else:
                    os.killpg(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.pidfile.unlink()
        if self.process is not None:
            self.process.wait()
            self.process = None

    def remove(self):
        """Stops and deletes the directory (the store included)."""
        self.stop()
        # The vfs store can hold read-only directories; podman's own unshare is not needed as root.
        subprocess.run(["rm", "-rf", str(self.dir), str(self.runroot)], check=False)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        if self.owned:
            self.remove()
        else:
            self.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["serve", "stop", "run", "check"])
    parser.add_argument("--dir", help="the service's directory (created; serve/run: a new temp dir when omitted)")
    options = parser.parse_args()
    if options.command == "check":
        reason = available()
        print(reason or "ok")
        return 1 if reason else 0
    if options.command == "stop":
        if not options.dir:
            parser.error("stop needs --dir")
        if Path(options.dir).exists():
            PodmanService(options.dir).remove()
        return 0
    if options.dir:
        # A fresh directory each time: what a previous run left is removed first.
        stale = PodmanService(options.dir)
        if Path(options.dir).exists():
            stale.remove()
    service = PodmanService(options.dir)
    try:
        service.start()
    except RuntimeError as error:
        print("podman.py: %s" % error, file=sys.stderr)
        return 1
    print(service.socket, flush=True)
    print("podman.py: %s" % json.dumps(service.timings), file=sys.stderr, flush=True)
    if options.command == "run":
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
        service.remove()
    return 0


if __name__ == "__main__":
    sys.exit(main())
