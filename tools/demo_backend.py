#!/usr/bin/env python3
"""A demo user container: says hello over HTTP and echoes WebSocket text frames on /ws
(/partial: a response that stops after its first 1000 bytes and never ends; /abort: the
connection closed without any response).

Every response carries `X-Served-By: backend <host> <addr>`, which the tests use to tell who
answered. Once listening it registers "<addr> <host>" in the DNS hosts directory, and removes
the entry when stopped with SIGTERM (a SIGKILL leaves it, like a crashed container).
"""

import argparse
import base64
import hashlib
import json
import os
import signal
import socket
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        self.server.log_request_json(self)
        if self.path.split("?")[0] == "/ws" and "websocket" in self.headers.get("Upgrade", "").lower():
            self.websocket()
            return
        if self.path.split("?")[0] == "/partial":
            self.partial()
            return
        if self.path.split("?")[0] == "/abort":  # dies before answering: no response at all
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        body = f"hello {self.server.user} from {self.server.host} ({self.server.addr})\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Served-By", self.server.served_by)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_HEAD = do_POST = do_PUT = do_DELETE = do_GET

    def partial(self):
        """A response that never ends: headers announcing 1 MB, the first 1000 bytes, then
        nothing (the tests kill the container mid-response)."""
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(1_000_000))
        self.send_header("X-Served-By", self.server.served_by)
        self.end_headers()
        self.wfile.write(b"x" * 1000)
        self.wfile.flush()
        time.sleep(3600)

    def websocket(self):
        key = self.headers.get("Sec-WebSocket-Key", "")
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        self.send_response(101)
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.send_header("X-Served-By", self.server.served_by)
        self.end_headers()
        self.close_connection = True
        message, message_op = b"", 0
        while True:
            frame = read_ws_frame(self.rfile)
            if frame is None:
                return
            fin, opcode, payload = frame
            if opcode == 8:  # close: answer with the same status, then stop
                self.wfile.write(ws_frame(8, payload[:2]))
                return
            if opcode == 9:  # ping
                self.wfile.write(ws_frame(10, payload))
                continue
            if opcode in (1, 2):  # text, binary
                message, message_op = payload, opcode
            elif opcode == 0:  # continuation
                message += payload
            else:
                continue
            if fin:
                self.wfile.write(ws_frame(message_op, message))

    def log_message(self, fmt, *args):
        pass  # requests are logged as JSON lines, see log_request_json


def read_ws_frame(stream):
    """Reads one client frame: (fin, opcode, unmasked payload), or None at end of stream."""
    head = stream.read(2)
    if len(head) < 2:
        return None
    fin, opcode = head[0] & 0x80, head[0] & 0x0F
    masked, length = head[1] & 0x80, head[1] & 0x7F
    if length == 126:
        length = struct.unpack(">H", stream.read(2))[0]
    elif length == 127:
        length = struct.unpack(">Q", stream.read(8))[0]
    mask = stream.read(4) if masked else b"\0\0\0\0"
    data = stream.read(length)
    if len(data) < length:
        return None
    return bool(fin), opcode, bytes(b ^ mask[i % 4] for i, b in enumerate(data))


def ws_frame(opcode, payload):
    """A server frame (unmasked, FIN set)."""
    if len(payload) < 126:
        head = struct.pack(">BB", 0x80 | opcode, len(payload))
    elif len(payload) < 65536:
        head = struct.pack(">BBH", 0x80 | opcode, 126, len(payload))
    else:
        head = struct.pack(">BBQ", 0x80 | opcode, 127, len(payload))
    return head + payload


def watch_owner(pid):
    """Stops this container (as SIGTERM would) once the stack that started it is gone."""
    while True:
        time.sleep(0.5)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            os.kill(os.getpid(), signal.SIGTERM)
            return


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # the default (5) drops connections under a burst

    def log_request_json(self, handler):
        entry = {"time": time.time(), "method": handler.command, "path": handler.path,
                 "user": handler.headers.get_all("X-Forwarded-Preferred-Username")}
        with self.log_lock:
            self.request_log.write(json.dumps(entry) + "\n")
            self.request_log.flush()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="ADDR:PORT")
    parser.add_argument("--host", required=True, help="the container's DNS name")
    parser.add_argument("--user", required=True)
    parser.add_argument("--hosts-dir", required=True)
    parser.add_argument("--request-log", required=True)
    parser.add_argument("--owner-pid", type=int, help="stop when this process is gone")
    args = parser.parse_args()

    addr, port = args.listen.rsplit(":", 1)
    server = Server((addr, int(port)), Handler)
    server.host, server.user, server.addr = args.host, args.user, addr
    server.served_by = f"backend {args.host} {addr}"
    server.request_log, server.log_lock = open(args.request_log, "a"), threading.Lock()

    entry = os.path.join(args.hosts_dir, args.host)
    tmp = os.path.join(args.hosts_dir, f".{args.host}.tmp")  # dnsmasq skips dot files
    with open(tmp, "w") as f:
        f.write(f"{addr} {args.host}\n")
    os.replace(tmp, entry)

    def stop(*_):
        try:
            os.unlink(entry)
        except FileNotFoundError:
            pass
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    if args.owner_pid:
        threading.Thread(target=watch_owner, args=(args.owner_pid,), daemon=True).start()
    print(f"{server.served_by} listening on {args.listen}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
