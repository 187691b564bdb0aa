#!/usr/bin/env python3
"""A scripted stand-in for director-agent, for testing the HAProxy configuration alone.

It speaks just enough SPOP to answer the `route` message of docs/architecture.md. Without a
rule it behaves like the real agent in strict mode, minus caching: it maps the username to
`<prefix>-<label>`, looks the host up in the stack's DNS hosts directory and probes it with a
TCP connect. A rules file (JSON, re-read on every request) scripts answers the real agent
would never give, e.g. {"meta": {"alive": true, "addr": "169.254.169.254", "port": 80}};
"delay" (seconds) makes the answer late, "addr" may be any string ("addr_type": "string"),
"hold" (ms, INT32) is how long HAProxy may reuse the answer. --hold-ms gives unscripted answers
a hold as the real agent does (that many ms when alive, 0 otherwise; without it, none).
--notify-log appends one JSON line per `route` message: {"user": ..., "retry": ...}
(`retry` as HAProxy sent it: true, false or null).
"""

import argparse
import ipaddress
import json
import os
import re
import socket
import socketserver
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import spop  # noqa: E402

LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")


class Agent:
    def __init__(self, args):
        self.args = args
        self.log_lock = threading.Lock()

    def rules(self):
        if not self.args.rules or not os.path.exists(self.args.rules):
            return {}
        with open(self.args.rules) as f:
            return json.load(f)

    def answer(self, user):
        """The list of (name, value) variables for one `route` message."""
        answer = self.decide(user)
        if self.args.hold_ms is not None and not any(name == "hold" for name, _ in answer):
            alive = dict(answer).get("alive") is True
            answer.append(("hold", self.args.hold_ms if alive else 0))
        return answer

    def decide(self, user):
        if user is not None:
            user = user.decode("utf-8", "replace")
        rule = self.rules().get(user)
        if rule is not None:
            time.sleep(rule.get("delay", 0))
            return scripted(rule)
        if not user:
            return [("alive", False), ("reason", "missing-username")]
        host = f"{self.args.host_prefix}-{user}"
        if self.args.domain:
            host += "." + self.args.domain
        if not LABEL.match(user) or len(host.split(".")[0]) > 63:
            return [("alive", False), ("reason", "invalid-username")]
        known = [("label", user), ("host", host)]
        addr = self.lookup(host)
        if addr is None:
            return [("alive", False), ("reason", "no-such-host")] + known
        try:
            socket.create_connection((str(addr), self.args.container_port), 0.2).close()
        except ConnectionRefusedError:
            return [("alive", False), ("reason", "refused")] + known
        except OSError:
            return [("alive", False), ("reason", "timeout")] + known
        return [("alive", True), ("reason", "ok"), ("addr", addr),
                ("port", self.args.container_port)] + known

    def log_notify(self, args):
        if not self.args.notify_log:
            return
        user = args.get("user")
        line = json.dumps({"user": user.decode("utf-8", "replace") if user is not None else None,
                           "retry": args.get("retry")})
        with self.log_lock, open(self.args.notify_log, "a") as f:
            f.write(line + "\n")

    def lookup(self, host):
        try:
            with open(os.path.join(self.args.hosts_dir, host)) as f:
                return ipaddress.ip_address(f.read().split()[0])
        except (OSError, IndexError, ValueError):
            return None


def scripted(rule):
    out = []
    for name in ("alive", "reason", "label", "host", "addr", "port", "hold"):
        if name in rule:
            value = rule[name]
            if name == "addr" and rule.get("addr_type") != "string":
                value = ipaddress.ip_address(value)
            out.append((name, value))
    return out


class Connection(socketserver.BaseRequestHandler):
    def handle(self):
        self.write_lock = threading.Lock()
        sock = self.request
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while True:
            frame = spop.read_frame(sock)
            if frame is None:
                return
            kind, _flags, stream_id, frame_id, payload = frame
            if kind == spop.HAPROXY_HELLO:
                hello = spop.decode_kv_list(payload, 0)
                size = min(int(hello.get("max-frame-size") or 16380), 16380)
                reply = spop.encode_kv_list({"version": "2.0", "max-frame-size": spop.UInt32(size),
                                             "capabilities": "pipelining"})
                with self.write_lock:
                    sock.sendall(spop.encode_frame(spop.AGENT_HELLO, 0, 0, reply))
                if hello.get("healthcheck"):
                    return
            elif kind == spop.HAPROXY_DISCONNECT:
                reply = spop.encode_kv_list({"status-code": spop.UInt32(0), "message": "bye"})
                with self.write_lock:
                    sock.sendall(spop.encode_frame(spop.AGENT_DISCONNECT, 0, 0, reply))
                return
            elif kind == spop.NOTIFY:  # answered in parallel, possibly out of order
                threading.Thread(target=self.notify, daemon=True,
                                 args=(stream_id, frame_id, payload)).start()

    def notify(self, stream_id, frame_id, payload):
        actions = b""
        for name, args in spop.decode_messages(payload, 0):
            if name == "route":
                self.server.agent.log_notify(args)
                for var, value in self.server.agent.answer(args.get("user")):
                    actions += spop.encode_set_var(var, value)
        actions = actions or spop.encode_set_var("unhandled", True)
        with self.write_lock:
            try:
                self.request.sendall(spop.encode_frame(spop.ACK, stream_id, frame_id, actions))
            except OSError:
                pass  # HAProxy gave up on this connection


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1:12345")
    parser.add_argument("--hosts-dir", required=True)
    parser.add_argument("--host-prefix", default=os.environ.get("CONTAINER_HOST_PREFIX", "vscode"))
    parser.add_argument("--container-port", type=int,
                        default=int(os.environ.get("CONTAINER_PORT", "8080")))
    parser.add_argument("--domain", default="")
    parser.add_argument("--rules")
    parser.add_argument("--hold-ms", type=int, help="hold of unscripted answers (module doc)")
    parser.add_argument("--notify-log", help="append each route message's arguments (JSON lines)")
    args = parser.parse_args()
    host, port = args.listen.rsplit(":", 1)
    server = Server((host, int(port)), Connection)
    server.agent = Agent(args)
    print(f"fake agent listening on {args.listen}", flush=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    threading.Event().wait()


if __name__ == "__main__":
    main()
