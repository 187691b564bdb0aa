"""Shared pieces of the end-to-end tests: a test case owning one stack (tools/stack.py), polling
with timing, and a minimal WebSocket client.

Environment: DIRECTOR_AGENT_BIN (the agent under test; ctest sets it), DIRECTOR_SPAWNER_BIN
(director-spawner, for the spawner_* tests; ctest sets it), DIRECTOR_E2E_FAKE_AGENT=1
(use tools/fake_agent.py instead, to test the HAProxy side alone), DIRECTOR_KEEP_RUN_DIR=1
(keep the stack's run directory and logs).
"""

import base64
import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
from agent import AgentProcess, agent_binary  # noqa: E402
from demo_backend import read_ws_frame  # noqa: E402
from feed_standin import FeedStandin  # noqa: E402
from loopback import http_get  # noqa: E402
from testing import report_failure, test_failed  # noqa: E402
from stack import IDENTITY, Stack, director_spawner_unavailable, haproxy_binary  # noqa: E402

SKIP = 77  # ctest SKIP_RETURN_CODE: the tools the stack runs are not installed

def haproxy_has_sha2():
    """Whether the stack's HAProxy has the sha2 converter (built with OpenSSL), which degraded
    mode needs to compute escaped labels (haproxy.cfg, step 4)."""
    features = subprocess.run([haproxy_binary(), "-vv"], capture_output=True, text=True).stdout
    return "+OPENSSL" in features.split()


# The line of pages/invalid-username.html that shows the refused name.
REFUSED_NAME_LINE = re.compile(rb"as the director received it: <code>([^<]*)</code>")


def shown_username(raw):
    """The agent's route::shown_username, written again: printable ASCII as is but & < > " '
    and backslash, which like every other byte become \\xHH; the first 64 bytes, then "..."."""
    shown = "".join(chr(b) if 0x20 <= b < 0x7f and chr(b) not in "&<>\"'\\" else f"\\x{b:02x}"
                    for b in raw[:64])
    return shown + ("..." if len(raw) > 64 else "")


def main(director_spawner=False, event_feeds=False):
    """Runs the test module's tests; exits SKIP when what they need is missing
    (director_spawner: director-spawner built, podman and busybox-static installed;
    event_feeds: an agent that knows DIRECTOR_EVENT_FEEDS)."""
    missing = [tool for tool in ("haproxy", "dnsmasq") if not shutil.which(tool)
               and not Path("/usr/sbin", tool).exists()]
    if missing:
        print(f"skipped: {', '.join(missing)} not installed (tools/install-deps.sh)")
        sys.exit(SKIP)
    if director_spawner and (reason := director_spawner_unavailable()):
        print(f"skipped: {reason}")
        sys.exit(SKIP)
    if event_feeds and (reason := event_feeds_unavailable()):
        print(f"skipped: {reason}")
        sys.exit(SKIP)
    os.environ["PATH"] += os.pathsep + "/usr/sbin"
    unittest.main(verbosity=2)


class StackTest(unittest.TestCase):
    """One stack for all tests of the class; logs are printed when a test fails."""

    stack_options = {}
    stack = None

    @classmethod
    def setUpClass(cls):
        cls.stack = Stack(**cls.stack_options).start()

    @classmethod
    def tearDownClass(cls):
        if cls.stack is not None:
            cls.stack.stop()

    def tearDown(self):
        report_failure(self, self.stack.diagnostics)

    def backend_of(self, user):
        """The X-Served-By value of `user`'s running container."""
        state = self.stack.container(user)
        self.assertIsNotNone(state, f"{user} has no container")
        return f"backend {state['host']} {state['addr']}"

    def assert_routed(self, user, **kwargs):
        status, headers, body = self.stack.request(user, **kwargs)
        self.assertEqual((status, headers.get("x-served-by")), (200, self.backend_of(user)))
        return body


def poll(probe, done, timeout, interval=0.05):
    """Calls probe() every `interval` s until done(result); returns (result, seconds, history).
    Fails the test (AssertionError) after `timeout` s."""
    start = time.monotonic()
    history = []
    while True:
        result = probe()
        history.append(result)
        if done(result):
            return result, time.monotonic() - start, history
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not done after {timeout} s; answers: {history[-10:]}")
        time.sleep(interval)


class WebSocket:
    """A client WebSocket (RFC 6455) through HAProxy, for `user`."""

    def __init__(self, stack, user, path="/ws", timeout=5):
        self.sock = socket.create_connection(stack.http, timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: director\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           f"Sec-WebSocket-Version: 13\r\n{IDENTITY}: {user}\r\n\r\n").encode())
        self.stream = self.sock.makefile("rb")
        self.status = int(self.stream.readline().split()[1])
        self.headers = {}
        while (line := self.stream.readline().decode().strip()):
            name, value = line.split(":", 1)
            self.headers[name.strip().lower()] = value.strip()
        expected = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")
                                                 .encode()).digest()).decode()
        self.accepted = self.status == 101 and self.headers.get("sec-websocket-accept") == expected

    def send(self, text, opcode=1):
        payload, mask = text.encode(), os.urandom(4)
        head = bytes([0x80 | opcode])
        if len(payload) < 126:
            head += bytes([0x80 | len(payload)])
        else:
            head += bytes([0x80 | 126]) + len(payload).to_bytes(2, "big")
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def receive(self):
        """(opcode, text) of the next frame, or None when the connection closed."""
        frame = read_ws_frame(self.stream)
        return None if frame is None else (frame[1], frame[2].decode())

    def close(self):
        self.stream.close()
        self.sock.close()


# --- helpers for the fault and hostile-input tests ----------------------------------------------

PAGES = Path(__file__).resolve().parents[2] / "haproxy" / "pages"


def our_pages():
    """{body bytes: page name} of every page HAProxy answers itself (haproxy/pages)."""
    pages = {}
    for path in PAGES.iterdir():
        data = path.read_bytes()
        if path.suffix == ".http":  # a complete response: keep the body
            data = data.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in data else data.split(b"\n\n", 1)[1]
        pages[data] = path.stem
    return pages


def who_answered(status, headers, body, pages=None):
    """"backend <host> <addr>", "spawner", "page <name> <status>" (one of haproxy/pages), or
    "raw <status>" for anything else (e.g. HAProxy's built-in error pages)."""
    served_by = headers.get("x-served-by")
    if served_by:
        return served_by
    name = (pages if pages is not None else our_pages()).get(body)
    return f"page {name} {status}" if name else f"raw {status}"


class RecordingSpawner:
    """Stands in for the demo spawner on the stack's spawner address: answers every request
    with a loading page (202, X-Served-By: spawner) and records what HAProxy sent, but starts
    no container, so that users stay without one for the whole test.

        spawner = RecordingSpawner(stack)   # stops the stack's demo spawner
        spawner.requests  # [{"container_host", "reason", "user", "label", "time"}, ...]
    """

    def __init__(self, stack):
        stack.components["spawner"].stop()
        self.requests, self.lock = [], threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                entry = {"container_host": self.headers.get("X-Director-Container-Host"),
                         "reason": self.headers.get("X-Director-Reason"),
                         "user": self.headers.get_all("X-Forwarded-Preferred-Username"),
                         "label": self.headers.get_all("X-Director-Label"),
                         "path": self.path, "time": time.monotonic()}
                with recorder.lock:
                    recorder.requests.append(entry)
                body = b"<html><body>creating your workspace</body></html>\n"
                self.send_response(202)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Refresh", "2")
                self.send_header("X-Served-By", "spawner")
                self.end_headers()
                self.wfile.write(body)

            do_HEAD = do_POST = do_PUT = do_DELETE = do_GET

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 1024

            def handle_error(self, request, client_address):
                if not isinstance(sys.exc_info()[1], ConnectionError):  # HAProxy closed: fine
                    super().handle_error(request, client_address)

        self.server = Server(stack.spawner, Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def count(self):
        with self.lock:
            return len(self.requests)

    def since(self, start):
        with self.lock:
            return list(self.requests[start:])

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class RecordingSpawnerTest(StackTest):
    """A stack whose spawner records what it was told (self.spawner, a RecordingSpawner: it
    starts no container) and where `containers` (labels) run from the start."""

    containers = ()

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.spawner = RecordingSpawner(cls.stack)
        cls.stack.add_containers(list(cls.containers))

    @classmethod
    def tearDownClass(cls):
        cls.spawner.close()
        super().tearDownClass()


def haproxy_log_decisions(stack):
    """HAProxy's request log lines as dicts of the director fields (label, alive, reason,
    ptime, error, target) plus "status" and "line"."""
    out = []
    for line in (stack.run_dir / "haproxy.log").read_text(errors="replace").splitlines():
        if " director: " not in line:
            continue
        head, tail = line.split(" director: ", 1)
        fields = dict(item.split("=", 1) for item in tail.split(" ") if "=" in item)
        parts = head.split()
        fields["status"] = parts[5] if len(parts) > 5 else ""
        fields["line"] = line
        out.append(fields)
    return out


def load(stack, users, stop, results, lock, timeout=5, pause=0.0, pages=None):
    """A client loop for threads: requests for each user in turn until `stop` is set; appends
    (user, who_answered(...) or repr(error), seconds) to `results`."""
    pages = pages if pages is not None else our_pages()
    while not stop.is_set():
        for user in users:
            started = time.monotonic()
            try:
                answer = who_answered(*stack.request(user, timeout=timeout), pages=pages)
            except (OSError, ValueError, http.client.HTTPException) as error:
                answer = repr(error)
            with lock:
                results.append((user, answer, time.monotonic() - started))
            if pause:
                time.sleep(pause)


# --- helpers for the tests of director-spawner (tests/e2e/test_spawner_*.py) --------------------

class SpawnerStackTest(StackTest):
    """A stack with director-spawner and a Podman API service (tools/stack.py, spawner="director").
    `users` get an address and a DNS name up front; `spawner_settings` are extra SPAWNER_*."""

    users = ()
    spawner_settings = {}
    container_script = None

    @classmethod
    def setUpClass(cls):
        options = dict(cls.stack_options, spawner="director", users=cls.users,
                       spawner_settings=cls.spawner_settings)
        if cls.container_script is not None:
            options["container_script"] = cls.container_script
        cls.stack = Stack(**options).start()

    def tearDown(self):
        if report_failure(self, self.stack.diagnostics):
            try:
                print(f"spawner /users: {self.stack.spawner_users()}", file=sys.stderr)
            except (OSError, ValueError, RuntimeError) as error:
                print(f"spawner /users: {error!r}", file=sys.stderr)

    def visit(self, user, **kwargs):
        """A page load: (what answered, status, headers, body), what being "container" (the
        user's container's page), the X-Director-Reason of the page that answered ("spawning"
        for the loading page, a failure kind, "not-a-navigation", ...), "page <name> <status>"
        for one of HAProxy's own pages (haproxy/pages), else "raw <status>"."""
        status, headers, body = self.stack.request(user, **kwargs)
        if status == 200 and user in self.stack.user_addresses and body == self.stack.container_page(user):
            return "container", status, headers, body
        if "x-director-reason" in headers:
            return headers["x-director-reason"], status, headers, body
        return who_answered(status, headers, body), status, headers, body

    def wait_for_page(self, user, reason, timeout=30, interval=0.5, also=()):
        """Page loads every `interval` s until the page of `reason` answers; returns (status,
        headers, body, the answers seen before). Fails on any answer but the loading page, the
        user's container or those in `also` on the way."""
        seen, deadline = [], time.monotonic() + timeout
        while True:
            answer, status, headers, body = self.visit(user)
            if answer == reason:
                return status, headers, body, seen
            self.assertIn(answer, ("spawning", "container") + tuple(also), f"{user}: {status} {body[:800]}")
            seen.append(answer)
            self.assertLess(time.monotonic(), deadline, f"{user}: no {reason} page: {seen[-5:]}")
            time.sleep(interval)

    def assert_loading_page(self, status, headers, body):
        self.assertEqual(status, 200, body[:500])
        self.assertEqual(headers.get("x-director-reason"), "spawning")
        self.assertEqual(headers.get("cache-control"), "no-store")
        self.assertTrue(headers.get("content-type", "").startswith("text/html"), headers)
        self.assertRegex(body, rb'<meta http-equiv="refresh" content="\d+">')
        self.assertIn(b'role="status"', body)

    def managed_containers(self, label):
        """The stack's containers carrying `label`'s spawner labels."""
        return [c for c in self.stack.podman_containers()
                if (c.get("Labels") or {}).get("io.container-director.label") == label]


def metric(series, name, **labels):
    """The sum of the series of `name` (from parse_metrics) whose labels include `labels`."""
    total = 0.0
    for key, value in series.items():
        match = re.fullmatch(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?", key)
        if not match or match.group(1) != name:
            continue
        have = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', match.group(2) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += value
    return total


def agent_decisions(stack, name="agent"):
    """How many route requests agent `name` answered: its director_decisions_total over every
    outcome and reason."""
    return metric(stack.agent_metrics(name), "director_decisions_total")


def follow_events(test, address, refused_ok=False):
    """director-spawner's /events at `address` (host, port) as a list the lines (parsed JSON)
    are appended to as they come; the stream's end appends {"ended": True}, a reading error
    {"reader_error": ...}. The connection closes when `test` ends. An answer other than 200
    fails the test, or returns None when `refused_ok` (503: the spawner does not follow its
    runtime's events yet)."""
    connection = http.client.HTTPConnection(*address, timeout=120)
    connection.request("GET", "/events")
    response = connection.getresponse()
    if refused_ok and response.status != 200:
        connection.close()
        return None
    test.assertEqual(response.status, 200)
    lines = []

    def read():
        try:
            for line in iter(response.readline, b""):
                lines.append(json.loads(line))
            lines.append({"ended": True})
        except (OSError, ValueError) as error:  # the test's poll then shows it
            lines.append({"reader_error": repr(error)})
    threading.Thread(target=read, daemon=True).start()
    test.addCleanup(connection.close)
    return lines


def director_headers(stack, user, label=None):
    """The headers HAProxy sends the spawner for `user` (to ask the spawner directly)."""
    label = label or user
    return [(IDENTITY, user), ("X-Director-Label", label),
            ("X-Director-Container-Host", stack.host_for(label)), ("X-Director-Reason", "refused")]


def spawner_request(stack, user, path="/", headers=(), method="GET", director=True, timeout=10):
    """One request straight to the spawner's pages listener (not through HAProxy), with the
    director's headers for `user` unless director=False: (status, headers, body)."""
    ours = director_headers(stack, user) if director else []
    return stack.request(None, path, ours + list(headers), method, timeout, address=stack.spawner)


# --- helpers for the tests of liveness from events (tests/e2e/test_event_*.py) ----------------

def event_feeds_unavailable():
    """Why the agent under test cannot run in event mode (a reason), or None: it must know
    DIRECTOR_EVENT_FEEDS and report its liveness mode in /status (issue 11's agent side)."""
    binary = agent_binary()
    try:
        help_text = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=10).stdout
    except OSError as error:
        return f"{binary}: {error}"
    if "DIRECTOR_EVENT_FEEDS" not in help_text:
        return f"{binary} has no DIRECTOR_EVENT_FEEDS (built before issue 11)"
    agent = AgentProcess()
    try:
        status = json.loads(http_get(agent.http, "/status")[1])
    finally:
        agent.stop()
    if "liveness" not in status:
        return f"{binary}'s /status has no liveness section (issue 11's agent side is not all there)"
    return None


class FeedStackTest(StackTest):
    """A stack whose agents subscribe to a feed stand-in (tools/feed_standin.py, `running`: its
    labels running at start) and clear HAProxy's fast_path table through its stats socket;
    its spawner records requests and starts nothing (RecordingSpawner), so that only the test
    starts and stops containers. `stack_options` add to (or override) those."""

    running = ()
    feed = None
    spawner = None

    @classmethod
    def setUpClass(cls):
        cls.feed = FeedStandin(running=cls.running).start()
        try:
            options = dict(event_feeds=[cls.feed.url], haproxy_sockets=True)
            options.update(cls.stack_options)
            cls.stack = Stack(**options).start()
            cls.spawner = RecordingSpawner(cls.stack)
        except BaseException:
            if cls.stack is not None:
                cls.stack.stop()
            cls.feed.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.spawner is not None:
            cls.spawner.close()
        super().tearDownClass()
        if cls.feed is not None:
            cls.feed.stop()

    def tearDown(self):
        super().tearDown()
        if test_failed(self):
            for name in self.stack.agent_names():
                try:
                    print(f"{name} liveness: {self.stack.liveness(name)}", file=sys.stderr)
                except (OSError, ValueError, RuntimeError, KeyError) as error:
                    print(f"{name} liveness: {error!r}", file=sys.stderr)


# A hold far longer than any TTL-mode one (DIRECTOR_FAST_PATH_HOLD, 500 ms): an answer HAProxy
# holds this long was given under the event TTL (event_refresh_after: 37.5 to 45 s by default).
LONG_HOLD = 10.0


def wait_long_hold(stack, user, timeout=5.0, **request_options):
    """Requests for `user` until HAProxy's fast_path entry for them holds an answer for more than
    LONG_HOLD seconds (the agent's answer under the event TTL); returns the entry."""
    seen = {}

    def probe():
        stack.request(user, **request_options)
        entry = seen["entry"] = stack.fast_path_entry(user)
        return entry and {k: entry[k] for k in ("addr", "port", "hold_left", "fresh")}
    poll(probe, lambda e: e is not None and e["fresh"] and e["hold_left"] > LONG_HOLD, timeout, 0.1)
    return seen["entry"]  # the entry the poll accepted: a later read may find it revoked


# The agent sends every revocation again 1.5 s after it (HaproxyInvalidator's repeat_after), and
# sends it up to a command timeout (1 s) after the event that caused it: the revocations of a
# container's own created and started events may still clear its user's entry this long after.
REVOCATION_REPEAT_BOUND = 2.5


def wait_settled_long_hold(stack, user, **request_options):
    """wait_long_hold, then again once the repeats of the revocations before it are over: from
    then on, only a new invalidation clears `user`'s entry (a test that waits for the one its
    event causes must not take a late repeat for it). Returns the entry."""
    wait_long_hold(stack, user, **request_options)
    time.sleep(REVOCATION_REPEAT_BOUND)
    return wait_long_hold(stack, user, **request_options)


def wait_entry_cleared(stack, user, timeout=2.0):
    """Polls HAProxy's fast_path table, sending no request, until `user`'s entry is gone or
    revoked (address 0: the agent revoked it through the stats socket; HAProxy keeps an entry a
    live request tracks); returns the seconds waited."""
    _, seconds, _ = poll(lambda: stack.fast_path_entry(user), lambda e: e is None or e["addr"] == "0.0.0.0",
                         timeout, 0.01)
    return seconds


def snapshots_received(stack, name="agent"):
    """Snapshots the agent's feeds delivered so far: one per connection and re-list
    (director_event_feed_messages_total{type="snapshot"})."""
    return metric(stack.agent_metrics(name), "director_event_feed_messages_total", type="snapshot")


def covered_users(stack, name="agent"):
    """How many labels a connected feed reports running and not unhealthy, as the agent counts
    them (director_covered_users, docs/metrics.md)."""
    return metric(stack.agent_metrics(name), "director_covered_users")
