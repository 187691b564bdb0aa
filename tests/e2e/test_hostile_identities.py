#!/usr/bin/env python3
"""Hostile identities through real HAProxy and the agent: every value of
tests/data/hostile-usernames.txt (dots, colons, slashes, @, percent-encoding, CR/LF, NUL,
whitespace, Unicode and homoglyphs, punycode, IP literals in every notation, long names,
leading and trailing "-", case variants, separators), sent as the raw bytes of the
X-Forwarded-Preferred-Username header, while alice, bob, jack and 127 have running containers.

- strict mode: each value is refused with a 4xx page (by HAProxy itself, or by the agent's
  invalid-username, whose page shows the value only escaped: no markup, quote or control byte
  of it reaches the page) and nothing is forwarded, except the values that are DNS labels already
  (e.g. 2130706433, xn--80ak6aa92e): those go to the spawner as their own container host
  vscode-<value>, a name and never an address.
- escape mode: each value reaches the spawner with its own safe host, distinct from every other
  value's and from the real users'; or HTTP itself refuses it (raw CR/LF, and NUL on HAProxy
  3.2 and later).
- in both modes no hostile value ever reaches a real user's container. Before each value the
  real users are requested, so that any cache in front of the agent (e.g. a HAProxy fast path
  keyed by the header) holds their answers when the hostile value arrives.
- repeated or empty headers are refused (403) in both modes.
"""

import http.client
import re
import socket
import unittest
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import (IDENTITY, REFUSED_NAME_LINE, RecordingSpawner, Stack, StackTest,
                    haproxy_has_sha2, main, poll, shown_username, who_answered)

REPO = Path(__file__).resolve().parents[2]
TABLE = REPO / "tests" / "data" / "hostile-usernames.txt"
REAL_USERS = ["alice", "bob", "jack", "127"]
LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
ESCAPED_SHAPE = re.compile(r"-[0-9a-f]{16}$")
ESCAPES = {"\\": b"\\", "t": b"\t", "r": b"\r", "n": b"\n", "0": b"\0"}


def unescape(text):
    out, i = bytearray(), 0
    while i < len(text):
        c = text[i]
        if c != "\\":
            out += c.encode()
            i += 1
        elif text[i + 1] == "x":
            out.append(int(text[i + 2:i + 4], 16))
            i += 4
        else:
            out += ESCAPES[text[i + 1]]
            i += 2
    return bytes(out)


def hostile_rows():
    """[(line number, strict outcome, where, raw value)] of the shared table."""
    rows = []
    for number, line in enumerate(TABLE.read_text(encoding="utf-8").split("\n"), 1):
        if not line or line.startswith("#"):
            continue
        strict, where, repeat, value = line.split("\t", 3)
        rows.append((number, strict, where, unescape(value) * int(repeat)))
    return rows


def raw_request(stack, header_lines, timeout=10):
    """A request whose header lines are sent byte for byte: (status, headers, body). A page
    load (Accept: text/html), so that HAProxy's wake policy lets it reach the spawner."""
    with socket.create_connection(stack.http, timeout=timeout) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: director\r\nAccept: text/html\r\n" + b"".join(
            line + b"\r\n" for line in header_lines) + b"Connection: close\r\n\r\n")
        response = http.client.HTTPResponse(sock)
        response.begin()
        body = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body


def identity(value):
    return IDENTITY.encode() + b": " + value


class HostileBase(StackTest):
    mode = "strict"

    @classmethod
    def setUpClass(cls):
        cls.stack = Stack(agent_args=["--username-mode", cls.mode]).start()
        cls.spawner = RecordingSpawner(cls.stack)
        cls.stack.add_containers(REAL_USERS)

    @classmethod
    def tearDownClass(cls):
        cls.spawner.close()
        super().tearDownClass()

    def real_backend_counts(self):
        return {user: len(self.stack.backend_requests(user)) for user in REAL_USERS}

    def warm(self):
        """Each real user reaches their container (and every cache holds that answer)."""
        for user in REAL_USERS:
            self.assert_routed(user)

    def send_each(self, rows, check):
        """Warms, sends one hostile value, and calls check(row, status, who, forwarded) where
        forwarded is what the spawner received; collects every problem, fails once at the end."""
        problems = []
        for row in rows:
            self.warm()
            before_backends, before_spawner = self.real_backend_counts(), self.spawner.count()
            try:
                status, headers, body = raw_request(self.stack, [identity(row[3])])
                who = who_answered(status, headers, body)
                self.last_response = (headers, body)
            except (OSError, http.client.HTTPException) as error:
                problems.append((row[0], row[3][:60], f"request failed: {error!r}"))
                continue
            forwarded = self.spawner.since(before_spawner)
            hit = {u: n for u, n in self.real_backend_counts().items() if n != before_backends[u]}
            if hit:
                problems.append((row[0], row[3][:60], f"reached the container of {hit} ({who})"))
            problem = check(row, status, who, forwarded)
            if problem:
                problems.append((row[0], row[3][:60], problem))
        self.assertEqual(problems, [], f"{len(problems)} of {len(rows)} values misbehaved")

    def refused(self, status, who, forwarded):
        """None if the request was refused with a 4xx and reached nobody."""
        if not 400 <= status < 500 or who.startswith(("backend", "spawner")) or forwarded:
            return f"not refused: {status} {who}, spawner saw {forwarded}"
        return None

    def test_repeated_and_empty_headers_are_refused(self):
        before = self.spawner.count()
        cases = [[identity(b"alice"), identity(b"bob")],
                 [identity(b"alice"), identity(b"alice")],
                 [identity(b"alice"), identity(b"")],
                 [identity(b"alice"), b"x-forwarded-preferred-username: alice"],
                 [identity(b"ALICE"), identity(b"alice")],
                 [identity(b"alice")] * 3,
                 [identity(b"")],
                 [identity(b"   ")],
                 [identity(b"\t")],
                 []]
        for lines in cases:
            self.warm()
            backends = self.real_backend_counts()
            status, headers, body = raw_request(self.stack, lines)
            self.assertEqual((status, headers.get("x-served-by")), (403, None), lines)
            self.assertEqual(self.real_backend_counts(), backends, lines)
        self.assertEqual(self.spawner.count(), before)

    def test_whitespace_around_a_value_is_not_part_of_it(self):
        """HTTP (RFC 9110 section 5.5) strips whitespace around a field value before anyone
        sees it: " dora" is dora. The IdP must not let a user pick " alice" (docs/security.md)."""
        for value in (b" dora", b"dora\t", b"  dora  "):
            before = self.spawner.count()
            status, headers, _ = raw_request(self.stack, [identity(value)])
            self.assertEqual((status, headers.get("x-served-by")), (202, "spawner"))
            self.assertEqual([r["container_host"] for r in self.spawner.since(before)],
                             ["vscode-dora"])


class HostileStrict(HostileBase):
    mode = "strict"
    # "<" in haproxy/pages/invalid-username.html: what its response may have, whatever the name.
    template_tags = (REPO / "haproxy/pages/invalid-username.html").read_bytes().count(b"<")

    def test_every_hostile_value_is_refused_or_its_own_label(self):
        rows = [row for row in hostile_rows() if row[2] == "e2e"]
        self.assertGreaterEqual(len(rows), 100)

        def check(row, status, who, forwarded):
            _, strict, _, value = row
            if strict != "own":
                return self.refused(status, who, forwarded) or self.refused_name_shown(value)
            hosts = [r["container_host"] for r in forwarded]
            if who != "spawner" or hosts != [f"vscode-{value.decode()}"]:
                return f"label-shaped name: {status} {who}, spawner saw hosts {hosts}"
            return None

        self.send_each(rows, check)


    def refused_name_shown(self, value):
        """None unless the agent's 400 page shows the name otherwise than escaped (HAProxy's
        own 400, for a NUL byte on 3.2, shows nothing)."""
        headers, body = self.last_response
        if headers.get("x-director-reason") != "invalid-username":
            return None
        line = REFUSED_NAME_LINE.search(body)
        # What the agent got: HTTP strips the value, HAProxy turns an obs-fold's CR LF into
        # two spaces (any other CR or LF is HAProxy's own 400).
        want = shown_username(value.replace(b"\r\n", b"  ").strip(b" \t"))
        if line is None or line.group(1) != want.encode() or body.count(b"<") != self.template_tags:
            return f"400 page shows {line.group(1) if line else None!r}, want {want!r}"
        return None


class HostileEscape(HostileBase):
    mode = "escape"

    def test_every_hostile_value_gets_its_own_safe_label(self):
        rows = [row for row in hostile_rows() if row[2] == "e2e"]
        self.assertGreaterEqual(len(rows), 100)
        owner = {f"vscode-{user}": user for user in REAL_USERS}
        refused_by_http = []

        def check(row, status, who, forwarded):
            number, strict, _, value = row
            if 400 <= status < 500:  # escape mode maps every non-empty name: HTTP refused it
                refused_by_http.append(value)
                return self.refused(status, who, forwarded)
            hosts = [r["container_host"] for r in forwarded]
            if who != "spawner" or len(hosts) != 1 or hosts[0] is None:
                return f"{status} {who}, spawner saw hosts {hosts}"
            host = hosts[0]
            label = host[len("vscode-"):]
            if not host.startswith("vscode-") or len(host) > 63 or not LABEL.match(label):
                return f"unsafe host {host!r}"
            if strict == "own" and label != value.decode():
                return f"label-shaped name mapped to {label!r}"
            if host in owner:
                return f"mapped to {host}, which belongs to {owner[host]!r}"
            owner[host] = value
            return None

        self.send_each(rows, check)
        # Only what HTTP forbids in a header value may be refused: raw CR/LF (which a proxy
        # never sends: it ends the header line), and NUL, which HAProxy 3.2 and later refuse
        # with 400 while 2.6 passes it on. Either way the value reaches no container.
        self.assertTrue(all(any(c in v for c in (b"\r", b"\n", b"\0")) for v in refused_by_http),
                        refused_by_http)

        # Degraded mode computes the same labels (haproxy.cfg, step 4): with the agent down,
        # HAProxy asks DNS for exactly the host the agent gave each value, an escaped one
        # only when it has sha2 (OpenSSL), and for no other.
        given = {value: host for host, value in owner.items() if isinstance(value, bytes)}
        stack = self.stack
        stack.kill_agent()
        poll(lambda: stack.agent_server_state()[0], lambda state: state.startswith("DOWN"), 10)
        log = stack.components["dnsmasq"].log_path
        mark = log.stat().st_size
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda value: raw_request(stack, [identity(value)]), given))
        with open(log, "rb") as lines:
            lines.seek(mark)
            queried = set(re.findall(rb"query\[A+\] (\S+) from", lines.read()))
        computes = haproxy_has_sha2()
        want = {host.encode() for host in given.values()
                if computes or LABEL.match(host[len("vscode-"):]) and not ESCAPED_SHAPE.search(host)}
        self.assertEqual((sorted(want - queried)[:5], sorted(queried - want)[:5]), ([], []),
                         f"{len(want - queried)} hosts not asked, {len(queried - want)} others asked")
        self.assertGreater(len(want), 100 if computes else 5)
        stack.start_agent()
        stack.wait_agent_checked()


class HostileDegraded(StackTest):
    """Degraded mode (the agent down): HAProxy routes a label-shaped name to <prefix>-<name>
    by itself. It must not route a name the agent's scheme keeps for escaped labels (ending in
    "-" and 16 hex digits), which is another user's label in escape mode, nor a label too long
    for DNS (haproxy.cfg, step 4)."""
    stack_options = {"agent_args": ["--username-mode", "escape"]}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.spawner = RecordingSpawner(cls.stack)
        # "ALICE"'s container in escape mode (pinned in tests/unit/decision/username_test.cpp).
        cls.stack.add_container("alice-e7dcee3cc63d170b")

    @classmethod
    def tearDownClass(cls):
        cls.spawner.close()
        super().tearDownClass()

    def test_reserved_and_overlong_names_are_not_resolved_by_haproxy(self):
        stack = self.stack
        before = len(stack.backend_requests("alice-e7dcee3cc63d170b"))
        status, headers, _ = raw_request(stack, [identity(b"ALICE")])
        self.assertEqual(headers.get("x-served-by"), self.backend_of("alice-e7dcee3cc63d170b"))
        stack.kill_agent()
        poll(lambda: stack.agent_server_state()[0], lambda s: s == "DOWN", 5)
        problems = []
        for value in (b"alice-e7dcee3cc63d170b", b"a" * 100, b"a" * 8000):
            mark = self.spawner.count()
            status, headers, body = raw_request(stack, [identity(value)])
            who = who_answered(status, headers, body)
            hosts = [r["container_host"] for r in self.spawner.since(mark)]
            if who.startswith("backend") or any(h and (len(h) > 63) for h in hosts):
                problems.append((value[:30], who, [h[:40] for h in hosts if h]))
        after = len(stack.backend_requests("alice-e7dcee3cc63d170b"))
        self.assertEqual((problems, after), ([], before + 1))


del HostileBase  # not a test case of its own

if __name__ == "__main__":
    main()
