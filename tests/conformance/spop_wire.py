"""A minimal SPOP (HAProxy SPOE protocol, SPOE.txt section 3) encoder/decoder.

Written from the spec and HAProxy's sources, independently of the agent's C++ codec, so that
the conformance checks cross-check it. Python stdlib only.
"""

import struct
from collections import namedtuple

# Frame types and flags.
HAPROXY_HELLO, HAPROXY_DISCONNECT, NOTIFY = 1, 2, 3
AGENT_HELLO, AGENT_DISCONNECT, ACK = 101, 102, 103
FRAME_NAMES = {0: "UNSET", 1: "HAPROXY-HELLO", 2: "HAPROXY-DISCONNECT", 3: "NOTIFY",
               101: "AGENT-HELLO", 102: "AGENT-DISCONNECT", 103: "ACK"}
FIN, ABORT = 0x1, 0x2

# Typed data: type in the LOW nibble, flags in the high nibble (BOOL true = 0x11).
NULL, BOOL, INT32, UINT32, INT64, UINT64, IPV4, IPV6, STRING, BINARY = range(10)

# Actions and variable scopes.
SET_VAR, UNSET_VAR = 1, 2
SCOPE_PROC, SCOPE_SESS, SCOPE_TXN, SCOPE_REQ, SCOPE_RES = range(5)

# DISCONNECT status codes.
STATUS = {0: "normal", 1: "io", 2: "timeout", 3: "too big", 4: "invalid", 5: "no version",
          6: "no max-frame-size", 7: "no capabilities", 8: "bad version",
          9: "bad max-frame-size", 10: "fragmentation not supported", 11: "interlaced frames",
          12: "frame-id not found", 13: "resources", 99: "unknown"}


class Malformed(ValueError):
    """Bytes that do not decode (the peer sent something invalid)."""


# --- varint: HAProxy's "peers" encoding, not LEB128 ---------------------------------------

def varint(value):
    if value < 240:
        return bytes([value])
    out = [(value | 0xF0) & 0xFF]
    value = (value - 240) >> 4
    while value >= 128:
        out.append((value | 0x80) & 0xFF)
        value = (value - 128) >> 7
    out.append(value)
    return bytes(out)


def read_varint(buf, pos):
    """Returns (value, next position); raises Malformed when truncated."""
    if pos >= len(buf):
        raise Malformed("truncated varint")
    value = buf[pos]
    pos += 1
    if value >= 240:
        shift = 4
        while True:
            if pos >= len(buf):
                raise Malformed("truncated varint")
            byte = buf[pos]
            pos += 1
            value += byte << shift
            shift += 7
            if byte < 128:
                break
    return value, pos


# --- strings and typed data ---------------------------------------------------------------

def _bytes(s):
    return s.encode() if isinstance(s, str) else bytes(s)


def string(s):
    """A length-prefixed string as used for KV names, message and argument names."""
    b = _bytes(s)
    return varint(len(b)) + b


def read_string(buf, pos):
    n, pos = read_varint(buf, pos)
    if pos + n > len(buf):
        raise Malformed("string length %d runs past the end" % n)
    return bytes(buf[pos:pos + n]), pos + n


def t_null():
    return bytes([NULL])


def t_bool(value):
    return bytes([0x11 if value else 0x01])


def t_int(kind, value):
    return bytes([kind]) + varint(value)


def t_uint32(value):
    return t_int(UINT32, value)


def t_str(s):
    return bytes([STRING]) + string(s)


def t_ipv4(dotted):
    return bytes([IPV4]) + bytes(int(x) for x in dotted.split("."))


def read_typed(buf, pos):
    """Returns ((type, value), next position). BOOL -> bool, ints -> int, others -> bytes."""
    if pos >= len(buf):
        raise Malformed("truncated typed data")
    byte = buf[pos]
    kind, flags = byte & 0x0F, byte >> 4
    pos += 1
    if kind == NULL:
        return (NULL, None), pos
    if kind == BOOL:
        return (BOOL, bool(flags & 1)), pos
    if kind in (INT32, UINT32, INT64, UINT64):
        value, pos = read_varint(buf, pos)
        return (kind, value), pos
    if kind in (IPV4, IPV6):
        n = 4 if kind == IPV4 else 16
        if pos + n > len(buf):
            raise Malformed("truncated address")
        return (kind, bytes(buf[pos:pos + n])), pos + n
    if kind in (STRING, BINARY):
        value, pos = read_string(buf, pos)
        return (kind, value), pos
    raise Malformed("unknown data type byte 0x%02x" % byte)


# --- payloads -----------------------------------------------------------------------------

def kv_list(pairs):
    """pairs: [(name, encoded typed value), ...] in the order given."""
    return b"".join(string(name) + value for name, value in pairs)


def read_kv_list(payload):
    """Returns [(name bytes, (type, value)), ...]."""
    items, pos = [], 0
    while pos < len(payload):
        name, pos = read_string(payload, pos)
        value, pos = read_typed(payload, pos)
        items.append((name, value))
    return items


def message(name, args=()):
    """args: [(name, encoded typed value), ...]; the argument count is one byte."""
    return string(name) + bytes([len(args)]) + kv_list(args)


def read_actions(payload):
    """Returns [(action type, scope, name bytes, (type, value) or None), ...].

    set-var:   01 03 <scope:1 byte> <name:string> <value:typed data>
    unset-var: 02 02 <scope:1 byte> <name:string>
    """
    actions, pos = [], 0
    while pos < len(payload):
        if pos + 3 > len(payload):
            raise Malformed("truncated action")
        kind, nargs, scope = payload[pos], payload[pos + 1], payload[pos + 2]
        pos += 3
        if (kind, nargs) == (SET_VAR, 3):
            name, pos = read_string(payload, pos)
            value, pos = read_typed(payload, pos)
        elif (kind, nargs) == (UNSET_VAR, 2):
            name, pos = read_string(payload, pos)
            value = None
        else:
            raise Malformed("unknown action %d with %d args" % (kind, nargs))
        actions.append((kind, scope, name, value))
    return actions


# --- frames -------------------------------------------------------------------------------

Frame = namedtuple("Frame", "type flags stream_id frame_id ids_raw payload raw")


def frame(ftype, payload=b"", stream_id=0, frame_id=0, flags=FIN):
    body = bytes([ftype]) + struct.pack(">I", flags) + varint(stream_id) + varint(frame_id) + payload
    return struct.pack(">I", len(body)) + body


def hello_frame(versions="2.0", max_frame_size=16380, capabilities="pipelining", extra=()):
    pairs = [("supported-versions", t_str(versions)),
             ("max-frame-size", t_uint32(max_frame_size)),
             ("capabilities", t_str(capabilities))]
    return frame(HAPROXY_HELLO, kv_list(pairs + list(extra)))


def disconnect_frame(status=0, text="normal"):
    return frame(HAPROXY_DISCONNECT, kv_list([("status-code", t_uint32(status)),
                                              ("message", t_str(text))]))


def notify_frame(stream_id, frame_id, messages, flags=FIN):
    """messages: already encoded with message()."""
    return frame(NOTIFY, b"".join(messages), stream_id, frame_id, flags)


def parse_frame(buf):
    """Returns (Frame, bytes consumed), or None when buf does not hold a whole frame yet."""
    if len(buf) < 4:
        return None
    (length,) = struct.unpack(">I", buf[:4])
    if len(buf) < 4 + length:
        return None
    body = bytes(buf[4:4 + length])
    if length < 5:
        raise Malformed("frame of %d bytes has no room for type and flags" % length)
    ftype = body[0]
    (flags,) = struct.unpack(">I", body[1:5])
    stream_id, pos = read_varint(body, 5)
    frame_id, pos = read_varint(body, pos)
    return Frame(ftype, flags, stream_id, frame_id, body[5:pos], body[pos:],
                 bytes(buf[:4 + length])), 4 + length


def describe(f):
    return "%s(flags=%d, stream=%d, frame=%d, payload=%s)" % (
        FRAME_NAMES.get(f.type, f.type), f.flags, f.stream_id, f.frame_id, f.payload.hex())
