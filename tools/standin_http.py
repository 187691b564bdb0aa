"""What the HTTP stand-ins of tools/ share (feed_standin.py, kube_api_standin.py): a threading
HTTP server on loopback that shrugs off peers that go away, its lifetime in a background thread
(start(), stop(), `with`), and the writing of one chunk of a chunked response."""

import http.server
import ssl
import sys
import threading


class StandinServer(http.server.ThreadingHTTPServer):
    """A ThreadingHTTPServer whose request threads die with the process, with a deep accept
    queue, that logs no traceback for a peer gone (a subscriber or watcher that left) or, with
    `tls_context`, for a failed TLS handshake. With `tls_context`, a connection is accepted
    plainly and its handshake left to its own thread (the handler calls tls_handshake()), so
    that a slow or silent client holds up nobody else."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address, handler, tls_context=None):
        self.tls_context = tls_context
        super().__init__(address, handler)

    def get_request(self):
        connection, address = self.socket.accept()
        if self.tls_context is not None:
            connection = self.tls_context.wrap_socket(connection, server_side=True,
                                                      do_handshake_on_connect=False)
        return connection, address

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], (ConnectionError, ssl.SSLError, TimeoutError)):
            super().handle_error(request, client_address)


def tls_handshake(connection, timeout=10.0):
    """Completes the TLS handshake of a connection StandinServer accepted (nothing for plain
    TCP); raises on a failed or slower one."""
    if isinstance(connection, ssl.SSLSocket):
        connection.settimeout(timeout)
        connection.do_handshake()


def write_chunk(wfile, data):
    """One chunk of a chunked response (HTTP/1.1), sent at once."""
    wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
    wfile.flush()


class ThreadedStandin:
    """The lifetime of a stand-in served by a StandinServer from a background thread. A subclass
    sets self.address ((host, port); port 0: any free one, read back after start()) and
    self._server = None, and defines _make_server() (its StandinServer) and, when its open
    connections must end before the server stops, _close_connections()."""

    thread_name = "standin"

    def _make_server(self):
        raise NotImplementedError

    def _close_connections(self):
        pass

    def start(self):
        self._server = self._make_server()
        self.address = self._server.server_address[:2]
        threading.Thread(target=self._server.serve_forever, daemon=True,
                         name=self.thread_name).start()
        return self

    def stop(self):
        if self._server is None:
            return
        self._close_connections()
        self._server.shutdown()
        self._server.server_close()
        self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
