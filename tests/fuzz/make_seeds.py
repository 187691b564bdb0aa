#!/usr/bin/env python3
"""Seed corpora for the fuzz targets, from the real HAProxy captures (tests/data/spop-captures).

Writes one directory per target under --out (docs/fuzzing.md describes each input format):
  frame/     every captured frame, whole (both directions), and each connection's HAProxy side
  hello/     HAPROXY-HELLO payloads (the KV list after the frame header)
  notify/    one control byte + NOTIFY payloads
  session/   one control byte + everything HAProxy sent on one connection
  username/  one control byte + usernames: those in the captures and hostile ones
Standard library and tools/spop.py only; deterministic file names (content hashes), so reruns change nothing.
"""
import argparse
import hashlib
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "tools"))
from spop import decode_varint as read_varint  # noqa: E402

HOSTILE_USERNAMES = [
    "jack", "Jack", "JACK", "jack.doe", "jack@example.com", "Jäck.Doe@Example.com", "иван",
    "...", "-jack", "jack-", "a--b", "jack:22", "jack.evil.example", "169.254.169.254",
    "0x7f.1", "[::1]", "xn--80akhbyknj4f", "jack\r\nX-Evil: 1", "jack\x00root", "a b\tc",
    "%6a%61%63%6b", "../../etc/passwd", "j" * 64, "jack-0123456789abcdef", "ＪＡＣＫ",
    "jаck",  # Cyrillic a
]


def payload_of(frame):
    """The payload of a whole frame: after length (4), type (1), flags (4), stream-id, frame-id."""
    _, pos = read_varint(frame, 9)
    _, pos = read_varint(frame, pos)
    return frame[pos:]


def read_string(data, pos):
    length, pos = read_varint(data, pos)
    return data[pos:pos + length], pos + length


def usernames_in_notify(payload):
    """The STRING values of `user` arguments of a NOTIFY payload (best effort)."""
    names = []
    pos = 0
    try:
        while pos < len(payload):
            _, pos = read_string(payload, pos)
            count = payload[pos]
            pos += 1
            for _ in range(count):
                arg, pos = read_string(payload, pos)
                kind = payload[pos] & 0x0F
                pos += 1
                if kind in (8, 9):
                    value, pos = read_string(payload, pos)
                    if arg == b"user":
                        names.append(value)
                elif kind in (2, 3, 4, 5):
                    _, pos = read_varint(payload, pos)
                elif kind == 6:
                    pos += 4
                elif kind == 7:
                    pos += 16
    except IndexError:
        pass
    return names


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
    print(f"fuzz seeds: {len(frames)} captured frames, {len(streams)} connections, "
          f"{len(set(usernames))} usernames -> {args.out}")


if __name__ == "__main__":
    main()
