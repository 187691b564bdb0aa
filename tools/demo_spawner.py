#!/usr/bin/env python3
"""A demo container spawner: HAProxy sends it the requests of users whose container is not
alive, with the container's host name in X-Director-Container-Host.

- no such container: starts one (demo_backend.py on the next free loopback address, which
  registers itself in DNS) and answers a loading page that refreshes itself after 2 s;
- the container is still starting: the same loading page;
- the container runs but the director did not route to it: an error page saying so.
Every request is logged as a JSON line to <run-dir>/spawner-requests.log (the tests read it).
Responses carry `X-Served-By: spawner`.
"""

import argparse
import html
import json
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from containers import Containers  # noqa: E402

HOST = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")
STARTING_FOR = 5.0  # seconds a new container may take before "did not answer" is an error
REFRESH = 2

PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">{meta}<title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem}}</style>
</head><body><h1>{title}</h1>
{body}</body></html>
"""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        host = self.headers.get("X-Director-Container-Host")
        reason = self.headers.get("X-Director-Reason", "")
        user = self.headers.get("X-Forwarded-Preferred-Username", "")
        self.server.log(self, host, reason)
        if not host or len(host) > 253 or not HOST.match(host):
            self.page(503, "Workspace temporarily unavailable",
                      "<p>The director could not say which workspace is yours right now "
                      f"(reason: <code>{html.escape(reason or 'none')}</code>). "
                      "This page retries in 5 seconds.</p>", refresh=5)
            return
        with self.server.lock_for(host):
            state = self.server.containers.get(host)
            if state is not None and not state["running"]:
                self.server.containers.forget_dead(host)
                state = None
            if state is None:
                state = self.server.containers.start(host, user)
                self.loading(host, "Creating")
                return
        age = time.time() - state["started"]
        if age < STARTING_FOR:
            self.loading(host, "Starting")
            return
        self.page(502, "Workspace exists but did not answer",
                  f"<p>Your workspace <code>{html.escape(host)}</code> exists (address "
                  f"{state['addr']}:{state['port']}, started {age:.0f} s ago), but the "
                  "director did not route you to it (reason: "
                  f"<code>{html.escape(reason or 'none')}</code>). It may be overloaded or "
                  "misconfigured; ask your administrator if this persists.</p>"
                  '<p><a href="">Retry</a></p>')

    do_HEAD = do_POST = do_PUT = do_DELETE = do_GET

    def loading(self, host, verb):
        self.page(202, f"{verb} your workspace",
                  f"<p>{verb} <code>{html.escape(host)}</code>. This page refreshes in "
                  f"{REFRESH} seconds.</p>", refresh=REFRESH)

    def page(self, status, title, body, refresh=None):
        meta = f'<meta http-equiv="refresh" content="{refresh}">' if refresh else ""
        data = PAGE.format(meta=meta, title=html.escape(title), body=body).encode()
        if self.headers.get("Content-Length"):  # keep the connection usable
            self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Served-By", "spawner")
        if refresh:
            self.send_header("Refresh", str(refresh))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def log_message(self, fmt, *args):
        pass  # logged as JSON lines instead


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # the default (5) drops connections under a burst

    def __init__(self, address, containers, request_log):
        super().__init__(address, Handler)
        self.containers = containers
        self.request_log = open(request_log, "a")
        self.lock = threading.Lock()
        self.host_locks = {}

    def lock_for(self, host):
        with self.lock:
            return self.host_locks.setdefault(host, threading.Lock())

    def log(self, handler, host, reason):
        entry = {"time": time.time(), "method": handler.command, "path": handler.path,
                 "user": handler.headers.get_all("X-Forwarded-Preferred-Username"),
                 "container_host": host, "reason": reason}
        with self.lock:
            self.request_log.write(json.dumps(entry) + "\n")
            self.request_log.flush()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="ADDR:PORT")
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--subnet", required=True, help="e.g. 127.0.1 for 127.0.1.0/24")
    parser.add_argument("--container-port", type=int, required=True)
    parser.add_argument("--owner-pid", type=int, required=True,
                        help="the containers stop when this process (the stack) is gone")
    args = parser.parse_args()
    addr, port = args.listen.rsplit(":", 1)
    containers = Containers(args.run_dir, args.subnet, args.container_port, args.owner_pid)
    server = Server((addr, int(port)), containers, Path(args.run_dir) / "spawner-requests.log")
    print(f"demo spawner listening on {args.listen}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
