#!/usr/bin/env python3
"""Seed corpora for the fuzz targets, from the real HAProxy captures (tests/data/spop-captures).

Writes one directory per target under --out (docs/fuzzing.md describes each input format):
  frame/     every captured frame, whole (both directions), and each connection's HAProxy side
  hello/     HAPROXY-HELLO payloads (the KV list after the frame header)
  notify/    one control byte + NOTIFY payloads
  session/   one control byte + everything HAProxy sent on one connection
  username/  one control byte + usernames: those in the captures and hostile ones
  activity/  one control byte + `show table` outputs of HAProxy 2.6 and 3.2 (0), agent /users
             pages (1) or agent /connections pages (2), written here
  feed/      one control byte + an event feed as the spawner writes it (docs/spawner.md), or a
             feed URL, written here
Standard library and tools/spop.py only; deterministic file names (content hashes), so reruns change nothing.
"""
import argparse
import hashlib
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "tools"))
import spop  # noqa: E402

HOSTILE_USERNAMES = [
    "jack", "Jack", "JACK", "jack.doe", "jack@example.com", "Jäck.Doe@Example.com", "иван",
    "...", "-jack", "jack-", "a--b", "jack:22", "jack.evil.example", "169.254.169.254",
    "0x7f.1", "[::1]", "xn--80akhbyknj4f", "jack\r\nX-Evil: 1", "jack\x00root", "a b\tc",
    "%6a%61%63%6b", "../../etc/passwd", "j" * 64, "jack-0123456789abcdef", "ＪＡＣＫ",
    "jаck",  # Cyrillic a
]

# `show table user_connections` as HAProxy 2.6.12 and 3.2.0 print it (keys escaped), and an
# agent's /users page (docs/metrics.md).
SHOW_TABLE_SEEDS = [
    "# table: user_connections, type: string, size:102400, used:3\n"
    "0x55c3431aacb8: key=a\\=b\\tc\"d\\\\e use=0 exp=86399794 conn_cur=0 http_req_cnt=1\n"
    "0x7f9aec042818: key=bob\\ smith use=0 exp=86399794 conn_cur=1 http_req_cnt=1\n"
    "0x7f9aec046bf8: key=caf\\xC3\\xA9 use=0 exp=86399794 conn_cur=2 http_req_cnt=1\n\n",
    "# table: user_connections, type: string, size:102400, used:1\n"
    "0x563e93fc71f8: key=alice use=0 exp=86399796 shard=0 conn_cur=1 http_req_cnt=2\n\n",
    "Unknown table name.\n",
]
AGENT_USERS_SEEDS = [
    '{"total": 2, "offset": 0, "users": ['
    '{"label": "bob", "host": "vscode-bob", "address": null, "state": "not_alive", "reason": "no-such-host", '
    '"last_seen_seconds_ago": 0.027, "last_checked_seconds_ago": 0.027, "last_probe_ms": null}, '
    '{"label": "alice", "host": "vscode-alice", "address": "127.0.89.1", "state": "alive", "reason": "ok", '
    '"last_seen_seconds_ago": 0.047, "last_checked_seconds_ago": 0.045, "last_probe_ms": 0.381}]}',
    '{"total":0,"offset":1000,"users":[]}',
]

# The agents' GET /connections pages (docs/metrics.md "HTTP endpoints").
AGENT_CONNECTIONS_SEEDS = [
    '{"table": "user_connections", "sockets": ["/run/haproxy/director.sock"], "total": 3, '
    '"connections": [{"key": "616c696365", "user": "alice", "open": 2}, '
    '{"key": "626f6220736d697468", "user": "bob smith", "open": 1}], '
    '"next": "626f6220736d697468"}',
    '{"table":"user_connections","sockets":[],"total":0,"connections":[],"next":null}',
]

# The spawner's event feed (docs/spawner.md "The event feed"), and feed URLs (the same target
# parses its input as a URL too).
FEED_SEEDS = [
    '{"type":"snapshot","containers":[{"label":"alice","id":"4f1c","state":"running","health":"healthy"},'
    '{"label":"carol","id":"77aa","state":"exited","health":"none"}]}\n'
    '{"type":"started","label":"bob","id":"9a2e"}\n'
    '{"type":"health","label":"bob","id":"9a2e","health":"unhealthy"}\n'
    '{"type":"died","label":"alice","id":"4f1c","exit_code":137}\n'
    '{"type":"heartbeat"}\n',
    '{"type":"snapshot","containers":[]}\r\n{"type":"created","label":"dave","id":"d1"}\n'
    '{"type":"stopped","label":"dave","id":"d1"}\n{"type":"destroyed","label":"dave","id":"d1"}\n',
    '{"type":"snapshot","containers":[{"label":"a","id":"x","state":"exited"},{"label":"a","id":"y","state":"running"}]}\n'
    '{"type":"destroyed","label":"a","id":"x"}\n{"type":"paused","label":"a"}\n\n',
    'http://127.0.0.1:9181/events',
    'http://[::1]:9181/events?x=1',
]


def payload_of(frame):
    """The payload of a whole frame: after length, type, flags, stream-id and frame-id."""
    return spop.parse_frame(frame)[0].payload


def usernames_in_notify(payload):
    """The STRING or BINARY values of `user` arguments of a NOTIFY payload (none if it does not
    decode)."""
    try:
        messages = spop.decode_messages(payload, 0)
    except (IndexError, ValueError):
        return []
    return [args["user"] for _, args in messages if isinstance(args.get("user"), bytes)]


def load(path):
    frames = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        connection, direction, kind, hexdata = line.split()
        frames.append((f"{path.stem}#{connection}", direction, kind, bytes.fromhex(hexdata)))
    return frames


def write(directory, data):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / hashlib.sha1(data).hexdigest()).write_bytes(data)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--captures", type=pathlib.Path, required=True)
    parser.add_argument("--out", type=pathlib.Path, required=True)
    args = parser.parse_args()

    frames = []
    for path in sorted(args.captures.glob("*.frames")):
        frames.extend(load(path))
    if not frames:
        sys.exit(f"no *.frames files in {args.captures}")

    streams = {}
    usernames = [name.encode() for name in HOSTILE_USERNAMES]
    for connection, direction, kind, frame in frames:
        write(args.out / "frame", frame)
        if direction != "H>A":
            continue
        streams[connection] = streams.get(connection, b"") + frame
        if kind == "HAPROXY-HELLO":
            write(args.out / "hello", payload_of(frame))
        elif kind == "NOTIFY":
            write(args.out / "notify", b"\x00" + payload_of(frame))
            usernames.extend(usernames_in_notify(payload_of(frame)))

    for stream in streams.values():
        write(args.out / "frame", stream)
        for control in (0x00, 0x01, 0x02, 0x03, 0x04):  # each chunking mode, and a 256-byte limit
            write(args.out / "session", bytes([control]) + stream)
    for name in usernames:
        write(args.out / "username", b"\x00" + name)
    for text in SHOW_TABLE_SEEDS:
        write(args.out / "activity", b"\x00" + text.encode())
    for text in AGENT_USERS_SEEDS:
        write(args.out / "activity", b"\x01" + text.encode())
    for text in AGENT_CONNECTIONS_SEEDS:
        write(args.out / "activity", b"\x02" + text.encode())
    for text in FEED_SEEDS:
        for control in (0x00, 0x04, 0x0f):  # one byte at a time, 5-byte pieces, 4096-byte pieces with a 64-byte limit
            write(args.out / "feed", bytes([control]) + text.encode())
    print(f"fuzz seeds: {len(frames)} captured frames, {len(streams)} connections, "
          f"{len(set(usernames))} usernames -> {args.out}")


if __name__ == "__main__":
    main()
