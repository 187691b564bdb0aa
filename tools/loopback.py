"""The network helpers every Python tool and test shares: a free TCP port on loopback, one HTTP
GET and the Prometheus text parser. Loopback only.

A component that must be told its port before it starts gets it from reserve_port(), which
keeps the port until closed; the component binds it with SO_REUSEADDR (HAProxy, dnsmasq,
Python's HTTP servers and the director's own listeners do). free_port() only says that a port
is free now: anyone may be handed it next, and a program binding it later with SO_REUSEADDR
takes it even from a reservation made meanwhile (another stack's dnsmasq took a spawner's port
this way). Use it only for a port bound on addresses of one's own (a stack's containers on its
/24). An agent started alone needs neither: it listens on port 0 and logs the port it bound
(tools/agent.py).
"""

import http.client
import socket


def free_port(host="127.0.0.1", kind=socket.SOCK_STREAM):
    """A port on `host` that nothing is bound to right now: TCP, or UDP with
    kind=socket.SOCK_DGRAM (a DNS server there refuses every query at once, with ICMP port
    unreachable)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def reserve_port(host="127.0.0.1"):
    """A TCP socket bound to a free port of `host`, with SO_REUSEADDR and not listening: until
    it is closed, bind() to port 0 never hands that port to anyone else (free_port() included),
    while a listener that sets SO_REUSEADDR (HAProxy does) may still bind it. A port that
    free_port() picked and released goes to the next bind() to port 0 that happens to draw it:
    one stack's 7 picks repeated a port once in 600 stacks."""
    reservation = socket.socket()
    reservation.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    reservation.bind((host, 0))
    return reservation


def http_get(address, path, timeout=5, headers=False):
    """(status, body text) of GET `path` on `address` (host, port), or with headers=True
    (status, {lower-case header name: value}, body text). An error status is returned, not
    raised; OSError when nothing answers."""
    conn = http.client.HTTPConnection(*address, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read().decode(errors="replace")
        if headers:
            return response.status, {k.lower(): v for k, v in response.getheaders()}, body
        return response.status, body
    finally:
        conn.close()


def parse_metrics(text):
    """Prometheus text format -> {series (name with labels, as printed): value}; comments
    skipped. ValueError for a series that appears twice."""
    series = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            if name in series:
                raise ValueError(f"series {name} appears twice")
            series[name] = float(value)
    return series
