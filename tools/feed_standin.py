#!/usr/bin/env python3
"""A stand-in for director-spawner's event feed (docs/spawner.md, "The event feed"), for the
tests and benchmarks where no container runtime can run the containers the feed would describe
(the bench's 10,000 and 100,000 users; the e2e tests of the agent's invalidations with demo
containers). It is not the spawner: it knows only what it is told, and says it at once.

It serves `GET /events` on 127.0.0.1 as the spawner does: HTTP/1.1, chunked,
`Content-Type: application/x-ndjson`, `Cache-Control: no-store`; first a snapshot line of every
label it knows, then one line per change (`created`, `started`, `stopped`, `died` with
`exit_code`, `health` with `health`, `destroyed`), a `heartbeat` line whenever nothing else was
sent for `heartbeat` seconds (the spawner's 15 s by default).

In a test or the bench:

    with FeedStandin(running=["alice", "bob"]) as feed:     # 127.0.0.1, a free port
        Stack(event_feeds=[feed.url], haproxy_sockets=True)  # the agent subscribes
        feed.wait_subscribers(1)
        feed.stop_container("alice")             # {"type":"stopped","label":"alice",...}
        feed.stop_container("bob", died=True)    # {"type":"died",...,"exit_code":137}
        feed.start_container("alice")            # {"type":"started",...}
        feed.set_health("alice", "unhealthy")    # {"type":"health",...}
        feed.destroy("alice")                    # {"type":"destroyed",...}
        feed.drop_connections()                  # every subscriber's connection closed
        feed.refuse(True)                        # new subscriptions get 503 (feed "down")
        feed.resnapshot()                        # a new snapshot line to every subscriber

As a process (the same controls over HTTP on the same port):

    tools/feed_standin.py --listen 127.0.0.1:9190 --running alice,bob --users 10000
    curl -X PUT -d '{"state":"exited"}' http://127.0.0.1:9190/labels/alice   # stopped
    curl -X PUT -d '{"state":"exited","event":"died"}' .../labels/alice       # died (137)
    curl -X PUT -d '{"state":"running"}' .../labels/alice                     # started
    curl -X PUT -d '{"state":"running","username":"Al@x.io"}' .../labels/al   # a new container for Al@x.io
    curl -X PUT -d '{"health":"unhealthy"}' .../labels/alice                  # health
    curl -X DELETE .../labels/alice                                           # destroyed
    curl -X POST .../drop   .../snapshot   .../refuse?on=1   .../refuse?on=0
    curl .../labels         # what it knows, as JSON; .../subscribers: how many are connected
"""

import argparse
import http.server
import json
import os
import queue
import socket
import threading
import time
import urllib.parse

from standin_http import StandinServer, ThreadedStandin, write_chunk

DEFAULT_HEARTBEAT = 15.0  # seconds: director-spawner's heartbeat interval
_CLOSE = object()  # queued to a subscriber: end its connection


def new_container_id():
    """A fresh 64-hex container id, as the runtime gives one to each container it creates."""
    return os.urandom(32).hex()


class _Subscriber:
    def __init__(self, connection):
        self.queue, self.connection = queue.Queue(), connection


class FeedStandin(ThreadedStandin):
    """The feed: a label -> {"id", "state", "health"} table and the subscribers it streams to.
    Thread-safe: the controls may be called from any thread."""

    thread_name = "feed-standin"

    def __init__(self, listen="127.0.0.1:0", running=(), stopped=(), heartbeat=DEFAULT_HEARTBEAT):
        host, port = listen.rsplit(":", 1)
        self.address = (host, int(port))
        self.heartbeat = heartbeat
        self._lock = threading.Lock()
        self._labels = {}  # label -> {"id", "state", "health"} (insertion order = snapshot order)
        self._subscribers = []
        self._refusing = False
        self.subscriptions = 0  # /events requests answered with a stream, since start
        self.lines_sent = 0
        for label in running:
            self._labels[label] = {"id": new_container_id(), "state": "running", "health": "none"}
        for label in stopped:
            self._labels[label] = {"id": new_container_id(), "state": "exited", "health": "none"}
        self._server = None

    # --- lifetime (start(), stop(), with: ThreadedStandin) ----------------------------------

    def _make_server(self):
        return StandinServer(self.address, _handler_for(self))

    def _close_connections(self):
        self.drop_connections()

    @property
    def url(self):
        return f"http://{self.address[0]}:{self.address[1]}/events"

    # --- what it knows --------------------------------------------------------------------

    def labels(self):
        with self._lock:
            return {label: dict(row) for label, row in self._labels.items()}

    def add_running(self, labels):
        """Adds many running labels at once without an event each (then resnapshot())."""
        with self._lock:
            for label in labels:
                self._labels[label] = {"id": new_container_id(), "state": "running",
                                       "health": "none"}

    def start_container(self, label, new_id=False, username=None):
        """`label` running: `created` first when it was unknown (or new_id), then `started`.
        `username` (taken for a new container only): the user it is for, which each of its events
        names (as the spawner's do, from the container's label io.container-director.user)."""
        events = []
        with self._lock:
            row = self._labels.get(label)
            if row is None or new_id:
                row = self._labels[label] = {"id": new_container_id(), "state": "created",
                                             "health": "none"}
                if username is not None:
                    row["username"] = username
                events.append(self._event("created", label, row))
            row["state"] = "running"
            events.append(self._event("started", label, row))
            self._send(events)

    def stop_container(self, label, died=False, exit_code=137):
        """`label` exited: a `stopped` event, or `died` with `exit_code` (SIGKILL: 137)."""
        with self._lock:
            row = self._labels[label]
            row["state"] = "exited"
            if died:
                self._send([self._event("died", label, row, exit_code=exit_code)])
            else:
                self._send([self._event("stopped", label, row)])

    def set_health(self, label, health):
        """A `health` event: "healthy", "unhealthy", "starting" or "none"."""
        with self._lock:
            row = self._labels[label]
            row["health"] = health
            self._send([self._event("health", label, row, health=health)])

    def destroy(self, label):
        with self._lock:
            row = self._labels.pop(label)
            self._send([self._event("destroyed", label, row)])

    @staticmethod
    def _event(kind, label, row, **fields):
        event = {"type": kind, "label": label, "id": row["id"]}
        if "username" in row:
            event["username"] = row["username"]
        event.update(fields)
        return event

    # --- the connections ------------------------------------------------------------------

    def snapshot_line(self):
        with self._lock:
            return self._snapshot_locked()

    def resnapshot(self):
        """A new snapshot line to every subscriber: a re-list on the same connection, which the
        agent handles (director-spawner ends its streams instead, docs/spawner.md)."""
        with self._lock:
            line = self._snapshot_locked()
            for subscriber in self._subscribers:
                subscriber.queue.put(line)

    def drop_connections(self):
        """Closes every subscriber's connection now (the agent sees its feed lost)."""
        with self._lock:
            subscribers, self._subscribers = self._subscribers, []
        for subscriber in subscribers:
            subscriber.queue.put(_CLOSE)
            try:  # unblocks a writer stuck on a full socket, and tells the peer at once
                subscriber.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def refuse(self, on=True):
        """While on, /events answers 503 (the feed is down; connections are not dropped: call
        drop_connections() too)."""
        with self._lock:
            self._refusing = on

    def subscriber_count(self):
        with self._lock:
            return len(self._subscribers)

    def wait_subscribers(self, count=1, timeout=15.0, since=None):
        """Waits until `count` subscribers are connected (and, with `since`, until more than
        `since` subscriptions were made in total: a reconnection after a drop)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                done = len(self._subscribers) >= count and (since is None or self.subscriptions > since)
            if done:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.subscriber_count()} subscribers to the feed stand-in "
                                   f"after {timeout} s, not {count}")
            time.sleep(0.02)

    # --- internals --------------------------------------------------------------------------

    def _snapshot_locked(self):
        containers = [{"label": label, "id": row["id"], "state": row["state"],
                       "health": row["health"]} for label, row in self._labels.items()]
        return _line({"type": "snapshot", "containers": containers})

    def _send(self, events):
        for event in events:
            line = _line(event)
            for subscriber in self._subscribers:
                subscriber.queue.put(line)

    def _subscribe(self, connection):
        """(subscriber, snapshot line), or None while refusing; atomic with every change, so
        that a subscriber misses no event after its snapshot."""
        with self._lock:
            if self._refusing:
                return None
            subscriber = _Subscriber(connection)
            self._subscribers.append(subscriber)
            self.subscriptions += 1
            return subscriber, self._snapshot_locked()

    def _unsubscribe(self, subscriber):
        with self._lock:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)

    def _control(self, method, path, body):
        """The HTTP control API: (status, JSON-able answer)."""
        url = urllib.parse.urlsplit(path)
        query = urllib.parse.parse_qs(url.query)
        if method == "GET" and url.path == "/labels":
            return 200, self.labels()
        if method == "GET" and url.path == "/subscribers":
            return 200, {"subscribers": self.subscriber_count(), "subscriptions": self.subscriptions}
        if method == "POST" and url.path == "/drop":
            self.drop_connections()
            return 200, {}
        if method == "POST" and url.path == "/snapshot":
            self.resnapshot()
            return 200, {}
        if method == "POST" and url.path == "/refuse":
            self.refuse(query.get("on", ["1"])[0] not in ("0", "false", "no"))
            return 200, {}
        if url.path.startswith("/labels/"):
            label = urllib.parse.unquote(url.path[len("/labels/"):])
            try:
                if method == "DELETE":
                    self.destroy(label)
                    return 200, {}
                if method == "PUT":
                    change = json.loads(body or b"{}")
                    state = change.get("state")
                    if state == "running":
                        self.start_container(label, bool(change.get("new_id")), change.get("username"))
                    elif state is not None:
                        self.stop_container(label, change.get("event") == "died",
                                            int(change.get("exit_code", 137)))
                    if "health" in change:
                        self.set_health(label, change["health"])
                    return 200, self.labels().get(label, {})
            except KeyError:
                return 404, {"error": f"unknown label {label}"}
            except (ValueError, TypeError, AttributeError) as error:
                return 400, {"error": str(error)}
        return 404, {"error": "GET /events, /labels, /subscribers; PUT|DELETE /labels/<label>; "
                              "POST /drop, /snapshot, /refuse?on=1|0"}


def _line(obj):
    return (json.dumps(obj, separators=(",", ":")) + "\n").encode()


def _handler_for(feed):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self):
            if urllib.parse.urlsplit(self.path).path == "/events":
                self._stream()
            else:
                self._answer(*feed._control("GET", self.path, b""))

        def do_PUT(self):
            self._answer(*feed._control(self.command, self.path, self._body()))

        do_POST = do_DELETE = do_PUT

        def _body(self):
            length = min(int(self.headers.get("Content-Length") or 0), 1 << 20)
            return self.rfile.read(length) if length else b""

        def _answer(self, status, obj):
            body = _line(obj)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _stream(self):
            subscribed = feed._subscribe(self.connection)
            if subscribed is None:
                body = b"feed stand-in: refusing subscriptions\n"
                self.send_response(503)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = True
                return
            subscriber, snapshot = subscribed
            self.close_connection = True
            try:
                self.send_response(200)
                self.send_header("Content-Type", "application/x-ndjson")
                self.send_header("Cache-Control", "no-store")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                self._chunk(snapshot)
                while True:
                    try:
                        line = subscriber.queue.get(timeout=feed.heartbeat)
                    except queue.Empty:
                        line = b'{"type":"heartbeat"}\n'
                    if line is _CLOSE:
                        break
                    self._chunk(line)
            except OSError:
                pass
            finally:
                feed._unsubscribe(subscriber)

        def _chunk(self, data):
            write_chunk(self.wfile, data)
            feed.lines_sent += 1

        def log_message(self, *args):
            pass

    return Handler


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", default="127.0.0.1:0", help="IP:PORT (127.0.0.1 only)")
    parser.add_argument("--running", default="", help="labels running at start, comma-separated")
    parser.add_argument("--users", type=int, default=0,
                        help="also N running labels named by --user-format")
    parser.add_argument("--user-format", default="user{}", help="the labels of --users (0-based)")
    parser.add_argument("--heartbeat", type=float, default=DEFAULT_HEARTBEAT, help="seconds")
    args = parser.parse_args()
    if not args.listen.startswith("127."):
        parser.error("the stand-in listens on loopback only")
    running = [label for label in args.running.split(",") if label]
    running += [args.user_format.format(n) for n in range(args.users)]
    feed = FeedStandin(args.listen, running=running, heartbeat=args.heartbeat).start()
    print(f"feed stand-in: {feed.url} ({len(running)} running labels)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        feed.stop()


if __name__ == "__main__":
    main()
