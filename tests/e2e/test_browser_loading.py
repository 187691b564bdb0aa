#!/usr/bin/env python3
"""The loading page in a real browser: headless Chromium opens the director as a new user, sees
the spawner's loading page, and lands in the user's container by the page's own refresh; fetch()
calls made before the container is ready wake nothing.

The identity: tools/signin_standin.py, a reverse proxy on loopback in front of HAProxy that adds
X-Forwarded-Preferred-Username to everything the browser sends (the page's own fetches too), as
oauth2-proxy would. 127.0.0.1 is a secure origin, so Chromium sends Sec-Fetch-* and the wake
policy judges the real thing. Chromium is driven through the DevTools protocol with the standard
library only (a minimal WebSocket client); the test navigates exactly once.

Skipped (exit 77) without chromium (tools/install-deps.sh), HAProxy, dnsmasq or Podman.
"""

import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
from common import SKIP, main, metric, poll  # noqa: E402
from testing import report_failure  # noqa: E402
from demo_backend import read_ws_frame  # noqa: E402
from signin_standin import SignInStandIn  # noqa: E402
from stack import SERVE_SCRIPT, Stack  # noqa: E402

CHROMIUM = os.environ.get("DIRECTOR_CHROMIUM_BIN") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-extensions", "--remote-debugging-address=127.0.0.1",
                  "--remote-debugging-port=0"]


class DevToolsError(RuntimeError):
    """The browser answered a command with an error."""


class Chromium:
    """Headless Chromium with one tab, driven over the DevTools protocol.

        with Chromium() as browser:
            browser.call("Page.navigate", url=...)
            browser.evaluate("document.title")
            browser.events  # every event so far: {"method": ..., "params": ...}
    """

    def __init__(self, timeout=30):
        self.profile = tempfile.mkdtemp(prefix="director-chromium-")
        self.log = open(Path(self.profile) / "chromium.log", "wb")
        self.process = subprocess.Popen(
            ["setpriv", "--pdeathsig", "KILL", "--", CHROMIUM, *CHROMIUM_FLAGS,
             f"--user-data-dir={self.profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
            start_new_session=True)
        self.events, self.next_id, self.sock, self.stream = [], 0, None, None
        try:
            port = self._devtools_port(timeout)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as answer:
                page = next(t for t in json.load(answer) if t.get("type") == "page")
            self._connect(page["webSocketDebuggerUrl"])
        except BaseException:
            self.close()
            raise

    def _devtools_port(self, timeout):
        active = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while not (active.exists() and active.read_text().strip()):
            if self.process.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.process.returncode}: {self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"chromium did not open its DevTools port: {self.log_tail()}")
            time.sleep(0.05)
        return int(active.read_text().split()[0])

    def _connect(self, url):
        """A client WebSocket (RFC 6455) to ws://127.0.0.1:<port>/<path>."""
        rest = url.split("://", 1)[1]
        hostport, path = rest.split("/", 1)
        host, port = hostport.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           f"Sec-WebSocket-Version: 13\r\n\r\n").encode())
        self.stream = self.sock.makefile("rb")
        status = self.stream.readline()
        if b" 101 " not in status:
            raise RuntimeError(f"DevTools refused the WebSocket: {status!r}")
        while self.stream.readline().strip():
            pass

    def _send(self, text):
        payload, mask = text.encode(), os.urandom(4)
        head = bytes([0x81])
        if len(payload) < 126:
            head += bytes([0x80 | len(payload)])
        elif len(payload) < 65536:
            head += bytes([0x80 | 126]) + len(payload).to_bytes(2, "big")
        else:
            head += bytes([0x80 | 127]) + len(payload).to_bytes(8, "big")
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def _receive(self):
        """The next whole message (fragments joined), as JSON."""
        data = b""
        while True:
            frame = read_ws_frame(self.stream)
            if frame is None:
                raise RuntimeError("the DevTools connection closed")
            fin, opcode, payload = frame
            if opcode in (0x9, 0xA):  # ping, pong: nothing for us
                continue
            data += payload
            if fin:
                return json.loads(data)

    def call(self, method, timeout=30, **params):
        """Sends one command and waits for its result; events meanwhile go to self.events."""
        self.next_id += 1
        self._send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        self.sock.settimeout(timeout)
        while True:
            message = self._receive()
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise DevToolsError(f"{method}: {message['error']}")
                return message.get("result", {})
            if "method" in message:
                self.events.append(message)

    def evaluate(self, expression, await_promise=False):
        """The value of a JavaScript expression in the tab's current document."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=await_promise)
        if "exceptionDetails" in result:
            raise DevToolsError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def documents(self):
        """The tab's top-level document responses so far: [(status, url, headers), ...]."""
        return [(e["params"]["response"]["status"], e["params"]["response"]["url"],
                 {k.lower(): v for k, v in e["params"]["response"]["headers"].items()})
                for e in self.events
                if e["method"] == "Network.responseReceived" and e["params"].get("type") == "Document"]

    def log_tail(self, size=3000):
        self.log.flush()
        return (Path(self.profile) / "chromium.log").read_bytes()[-size:].decode(errors="replace")

    def close(self):
        for closable in (self.stream, self.sock):
            if closable is not None:
                closable.close()
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.log.close()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# --- the test -----------------------------------------------------------------------------------

LOADING_TITLE = "Starting your container"  # spawner/src/server/pages.cpp, the loading page
# Each container listens this many seconds after it starts: the page's fetch() is then surely
# made before the container is ready (a container ready at once could be routed to first).
LISTEN_AFTER = 4
READY_TIMEOUT = 60.0  # seconds for the tab to land in the container (SPAWNER_READY_TIMEOUT is 2m)


class BrowserLoading(unittest.TestCase):
    """New users open the director in Chromium: alice with JavaScript, carol without it; bob
    never opens a page. A fresh browser (profile) per test."""

    @classmethod
    def setUpClass(cls):
        cls.stack = Stack(spawner="director", users=["alice", "bob", "carol"],
                          container_script=f"sleep {LISTEN_AFTER}\n" + SERVE_SCRIPT).start()
        cls.standins = {user: SignInStandIn(cls.stack.http, user) for user in ("alice", "bob", "carol")}

    @classmethod
    def tearDownClass(cls):
        for standin in cls.standins.values():
            standin.close()
        cls.stack.stop()

    def setUp(self):
        self.browser = Chromium()
        self.browser.call("Network.enable")
        self.browser.call("Page.enable")

    def tearDown(self):
        if report_failure(self, self.stack.diagnostics):
            print("--- chromium.log ---\n" + self.browser.log_tail(), file=sys.stderr)
            for user, standin in self.standins.items():
                print(f"{user}'s stand-in answered: {standin.answered()}", file=sys.stderr)
        self.browser.close()

    def page_text(self):
        """(title, text of role=status or None, body text) of the tab's document, or None while
        it is between documents."""
        try:
            return tuple(self.browser.evaluate(
                "[document.title, (document.querySelector('[role=status]') || {}).textContent || null,"
                " document.body ? document.body.innerText : '']"))
        except DevToolsError:
            return None

    def loaded(self, url):
        """Whether the tab shows a parsed document from `url` (not about:blank, not mid-load)."""
        try:
            return self.browser.evaluate("location.href + ' ' + document.readyState") in (
                f"{url} interactive", f"{url} complete")
        except DevToolsError:
            return False

    def open_as_new_user(self, user):
        """Navigates the tab to the director as `user` (the only navigation a test makes) and
        checks that the first document is the spawner's loading page, readable as it is."""
        url = self.standins[user].url + "/"
        self.browser.call("Page.navigate", url=url)
        deadline = time.monotonic() + 10
        while not (self.browser.documents() and self.loaded(url)):
            self.assertLess(time.monotonic(), deadline, f"no document from {url} within 10 s: "
                            f"documents {self.browser.documents()}, page {self.page_text()}")
            time.sleep(0.05)
        status, _, headers = self.browser.documents()[0]
        title, role_status, _ = self.page_text()
        self.assertEqual((status, headers.get("cache-control"), headers.get("x-director-reason")),
                         (200, "no-store", "spawning"), headers)
        self.assertEqual(title, LOADING_TITLE)
        self.assertTrue(role_status, "the loading page has no role=status text")

    def wait_in_container(self, user, started):
        """Waits, navigating nothing, until the tab shows `user`'s container's page; returns the
        seconds since `started` and the documents the tab loaded."""
        container_page = self.stack.container_page(user).decode().strip()
        while True:
            text = self.page_text()
            if text is not None and text[2].strip() == container_page:
                break
            self.assertLess(time.monotonic() - started, READY_TIMEOUT,
                            f"not in the container after {READY_TIMEOUT} s: {text}")
            time.sleep(0.1)
        documents = self.browser.documents()
        self.assertGreaterEqual(len(documents), 2, documents)
        self.assertEqual(documents[-1][:2], (200, self.standins[user].url + "/"), documents)
        self.assertIn(user, text[2])
        print(f"{user} landed in the container {time.monotonic() - started:.1f} s after the first "
              f"request; documents: {[d[0] for d in documents]}")
        return documents

    def test_new_user_lands_in_the_container_by_the_page_s_own_refresh(self):
        browser, stack = self.browser, self.stack
        before = stack.spawner_metrics()
        started = time.monotonic()
        self.open_as_new_user("alice")

        # fetch() from the page's own context, before the container is ready: HAProxy answers
        # 503 itself (Sec-Fetch-Mode: cors is no navigation); the same for bob, a user who never
        # loaded a page (no-cors: cross-origin, his stand-in records the status).
        answer = browser.evaluate(
            "fetch('/some/api', {headers: {'Accept': 'application/json'}})"
            ".then(async r => [r.status, r.headers.get('Retry-After'),"
            " r.headers.get('X-Director-Reason'), await r.text()])", await_promise=True)
        self.assertEqual(answer[:3], [503, "5", "not-a-navigation"], answer)
        self.assertEqual(json.loads(answer[3]).get("retry_after"), 5, answer)
        browser.evaluate(f"fetch('{self.standins['bob'].url}/some/api', {{mode: 'no-cors'}}).then(() => 1)",
                         await_promise=True)
        # The browser may have the response before the stand-in has recorded its status.
        answered, _, _ = poll(self.standins["bob"].answered, bool, 2)
        self.assertEqual(answered, [("GET", "/some/api", 503)])

        self.wait_in_container("alice", started)

        # One creation, one start, one spawn; nothing for bob; the spawner itself refused
        # nothing (HAProxy answered the fetches). The spawner counts the spawn once its own
        # readiness check sees the container, which may come after the agent's has routed the
        # page there (CI, asan: 0 right after landing).
        def grew(name, **labels):
            return metric(after, name, **labels) - metric(before, name, **labels)

        after = poll(stack.spawner_metrics, lambda m: metric(m, "director_spawner_spawns_total")
                     > metric(before, "director_spawner_spawns_total"), 5)[0]

        self.assertEqual(grew("director_spawner_runtime_requests_total", call="create"), 1)
        self.assertEqual(grew("director_spawner_runtime_requests_total", call="start"), 1)
        self.assertEqual(grew("director_spawner_spawns_total"), 1)
        self.assertEqual(grew("director_spawner_spawns_total", outcome="ready"), 1)
        self.assertEqual(grew("director_spawner_wake_refused_total"), 0)
        self.assertIsNotNone(stack.podman_container("alice"))
        self.assertIsNone(stack.podman_container("bob"))

    def test_without_javascript_the_meta_refresh_alone_lands_in_the_container(self):
        self.browser.call("Emulation.setScriptExecutionDisabled", value=True)
        started = time.monotonic()
        self.open_as_new_user("carol")
        documents = self.wait_in_container("carol", started)
        # No script ran: nothing asked for the status endpoint; only documents (and favicons).
        paths = [path for _, path, _ in self.standins["carol"].answered()]
        self.assertNotIn("/.container-director/status", paths)
        self.assertEqual(len([p for p in paths if p == "/"]), len(documents), paths)


if __name__ == "__main__":
    if not Path(CHROMIUM).is_file():
        print(f"skipped: {CHROMIUM} is not installed (tools/install-deps.sh installs chromium)")
        sys.exit(SKIP)
    main(director_spawner=True)
