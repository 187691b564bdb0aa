#!/usr/bin/env python3
"""A sign-in stand-in: a reverse proxy on loopback that plays oauth2-proxy's part for one user.

Every request it receives is forwarded to the director (HAProxy) with exactly one
X-Forwarded-Preferred-Username: the configured user's (any copy the client sent is dropped, as
oauth2-proxy does). Everything else passes unchanged both ways: method, path, headers
(Sec-Fetch-*, Accept, ...), body, status, response headers. One upstream connection per request;
hop-by-hop headers are not forwarded. It is for tests and demos with a browser (a browser cannot
add the identity header itself): tests/e2e/test_browser_loading.py.

From Python:
    with SignInStandIn(("127.0.0.1", 8080), "alice") as standin:
        standin.url             # http://127.0.0.1:<port>, what the browser opens
        standin.answered()      # [(method, path, status), ...] in the order answered

From the command line:
    tools/signin_standin.py --upstream 127.0.0.1:8080 --user alice [--listen 127.0.0.1:0]
"""

import argparse
import http.client
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

IDENTITY = "X-Forwarded-Preferred-Username"
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
              "trailers", "transfer-encoding", "upgrade", "proxy-connection"}
MAX_BODY = 1 << 20  # a request body larger than this is refused (413): a stand-in, not a proxy


class SignInStandIn:
    def __init__(self, upstream, user, listen=("127.0.0.1", 0), timeout=30):
        self.upstream, self.user, self.timeout = tuple(upstream), user, timeout
        self.requests, self.lock = [], threading.Lock()
        standin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def forward(self):
                length = int(self.headers.get("Content-Length") or 0)
                if length > MAX_BODY:
                    self.send_error(413)
                    return
                body = self.rfile.read(length) if length else None
                upstream = http.client.HTTPConnection(*standin.upstream, timeout=standin.timeout)
                try:
                    upstream.putrequest(self.command, self.path, skip_host=True,
                                        skip_accept_encoding=True)
                    for name, value in self.headers.items():
                        if name.lower() not in HOP_BY_HOP and name.lower() != IDENTITY.lower():
                            upstream.putheader(name, value)
                    upstream.putheader(IDENTITY, standin.user)
                    if body is not None and "Content-Length" not in self.headers:
                        upstream.putheader("Content-Length", str(len(body)))
                    upstream.endheaders(body)
                    response = upstream.getresponse()
                    payload = response.read()
                    self.send_response_only(response.status, response.reason)
                    for name, value in response.getheaders():
                        if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                            self.send_header(name, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(payload)
                    status = response.status
                except (OSError, http.client.HTTPException) as error:
                    self.send_error(502, explain=f"the director did not answer: {error!r}")
                    status = 502
                finally:
                    upstream.close()
                with standin.lock:
                    standin.requests.append((self.command, self.path, status))

            do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = forward

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                if not isinstance(sys.exc_info()[1], ConnectionError):  # the browser closed
                    super().handle_error(request, client_address)

        self.server = Server(tuple(listen), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def address(self):
        return self.server.server_address[:2]

    @property
    def url(self):
        return "http://%s:%d" % self.address

    def answered(self):
        """A copy of [(method, path, status), ...] so far."""
        with self.lock:
            return list(self.requests)

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", required=True, help="the director's HTTP address, host:port")
    parser.add_argument("--user", required=True, help="the username every request carries")
    parser.add_argument("--listen", default="127.0.0.1:0", help="host:port (default %(default)s)")
    args = parser.parse_args()
    split = lambda value: (value.rsplit(":", 1)[0], int(value.rsplit(":", 1)[1]))  # noqa: E731
    standin = SignInStandIn(split(args.upstream), args.user, split(args.listen))
    print(f"{standin.url} -> http://{args.upstream} as {args.user}", flush=True)
    try:
        standin.thread.join()
    except KeyboardInterrupt:
        standin.close()


if __name__ == "__main__":
    main()
