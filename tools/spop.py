"""SPOP (HAProxy's Stream Processing Offload Protocol) for the tools and tests: the one Python
codec of both sides, for the fake agent (tools/fake_agent.py), the agent-level end-to-end
tests (tests/e2e/agent_harness.py), the CLI tests and the fuzz seeds. The conformance suite
keeps its own, written independently on purpose (tests/conformance/spop_wire.py).

Frames and encodings as described in the SPOE specification (/usr/share/doc/haproxy/SPOE.txt.gz,
sections 3.1 data types and 3.2 frames): 4-byte length, type, 4-byte flags, varint stream-id and
frame-id, payload. Typed data decode to Python values: None (NULL), bool, int (UInt32 for
UINT32), ipaddress objects, bytes (STRING and BINARY).
"""

import ipaddress
import struct
from collections import namedtuple

HAPROXY_HELLO, HAPROXY_DISCONNECT, NOTIFY = 1, 2, 3
AGENT_HELLO, AGENT_DISCONNECT, ACK = 101, 102, 103
FRAME_NAMES = {1: "HAPROXY-HELLO", 2: "HAPROXY-DISCONNECT", 3: "NOTIFY", 101: "AGENT-HELLO",
               102: "AGENT-DISCONNECT", 103: "ACK"}
FLAG_FIN = 1
SET_VAR, UNSET_VAR = 1, 2
SCOPE_TXN = 2

T_NULL, T_BOOL, T_INT32, T_UINT32, T_INT64, T_UINT64 = 0, 1, 2, 3, 4, 5
T_IPV4, T_IPV6, T_STRING, T_BINARY = 6, 7, 8, 9


def encode_varint(value):
    if value < 240:
        return bytes([value])
    out = [(value | 0xF0) & 0xFF]
    value = (value - 240) >> 4
    while value >= 128:
        out.append((value | 0x80) & 0xFF)
        value = (value - 128) >> 7
    out.append(value)
    return bytes(out)


def decode_varint(buf, pos):
    value = buf[pos]
    pos += 1
    if value < 240:
        return value, pos
    shift = 4
    while True:
        byte = buf[pos]
        pos += 1
        value += byte << shift
        shift += 7
        if byte < 128:
            return value, pos


def encode_string(data):
    if isinstance(data, str):
        data = data.encode()
    return encode_varint(len(data)) + data


def decode_string(buf, pos):
    length, pos = decode_varint(buf, pos)
    return bytes(buf[pos:pos + length]), pos + length


class UInt32(int):
    """An int sent as UINT32 (max-frame-size, status-code) rather than INT32."""


def encode_typed(value):
    if value is None:
        return bytes([T_NULL])
    if isinstance(value, bool):
        return bytes([T_BOOL | (0x10 if value else 0)])
    if isinstance(value, int):
        return bytes([T_UINT32 if isinstance(value, UInt32) else T_INT32]) + encode_varint(value)
    if isinstance(value, ipaddress.IPv4Address):
        return bytes([T_IPV4]) + value.packed
    if isinstance(value, ipaddress.IPv6Address):
        return bytes([T_IPV6]) + value.packed
    return bytes([T_STRING]) + encode_string(value)


def decode_typed(buf, pos):
    kind, flags = buf[pos] & 0x0F, buf[pos] >> 4
    pos += 1
    if kind == T_NULL:
        return None, pos
    if kind == T_BOOL:
        return bool(flags & 1), pos
    if kind == T_UINT32:
        value, pos = decode_varint(buf, pos)
        return UInt32(value), pos
    if kind in (T_INT32, T_INT64, T_UINT64):
        return decode_varint(buf, pos)
    if kind == T_IPV4:
        return ipaddress.IPv4Address(bytes(buf[pos:pos + 4])), pos + 4
    if kind == T_IPV6:
        return ipaddress.IPv6Address(bytes(buf[pos:pos + 16])), pos + 16
    if kind in (T_STRING, T_BINARY):
        return decode_string(buf, pos)
    raise ValueError(f"unknown SPOP data type {kind}")


def decode_kv_list(buf, pos):
    """HELLO and DISCONNECT payloads: key (string) -> typed value."""
    items = {}
    while pos < len(buf):
        key, pos = decode_string(buf, pos)
        items[key.decode()], pos = decode_typed(buf, pos)
    return items


def encode_kv_list(items):
    return b"".join(encode_string(k) + encode_typed(v) for k, v in items.items())


def encode_message(name, args=()):
    """One NOTIFY message: `args` are (name, value) pairs (a dict's items, or a list)."""
    args = list(args.items()) if isinstance(args, dict) else list(args)
    if len(args) > 255:
        raise ValueError("a message carries at most 255 arguments")
    return encode_string(name) + bytes([len(args)]) + b"".join(
        encode_string(k) + encode_typed(v) for k, v in args)


def decode_messages(buf, pos):
    """NOTIFY payload: [(message name, {argument name: value})]."""
    messages = []
    while pos < len(buf):
        name, pos = decode_string(buf, pos)
        count = buf[pos]
        pos += 1
        args = {}
        for _ in range(count):
            arg, pos = decode_string(buf, pos)
            args[arg.decode()], pos = decode_typed(buf, pos)
        messages.append((name.decode(), args))
    return messages


def encode_set_var(name, value, scope=SCOPE_TXN):
    return bytes([SET_VAR, 3, scope]) + encode_string(name) + encode_typed(value)


def decode_actions(buf, pos=0):
    """ACK payload: [(action, scope, name, value)]; value is None for unset-var."""
    actions = []
    while pos < len(buf):
        action, count, scope = buf[pos], buf[pos + 1], buf[pos + 2]
        name, pos = decode_string(buf, pos + 3)
        value = None
        if (action, count) == (SET_VAR, 3):
            value, pos = decode_typed(buf, pos)
        elif (action, count) != (UNSET_VAR, 2):
            raise ValueError(f"unknown SPOP action {action} with {count} arguments")
        actions.append((action, scope, name, value))
    return actions


def encode_frame(kind, stream_id, frame_id, payload, flags=FLAG_FIN):
    body = (bytes([kind]) + struct.pack(">I", flags) + encode_varint(stream_id)
            + encode_varint(frame_id) + payload)
    return struct.pack(">I", len(body)) + body


Frame = namedtuple("Frame", "type flags stream_id frame_id payload")


def decode_frame_body(body):
    """A frame without its length: Frame(type, flags, stream_id, frame_id, payload)."""
    if len(body) < 7:
        raise ValueError(f"a frame of {len(body)} bytes has no room for its header")
    flags = struct.unpack(">I", body[1:5])[0]
    stream_id, pos = decode_varint(body, 5)
    frame_id, pos = decode_varint(body, pos)
    return Frame(body[0], flags, stream_id, frame_id, bytes(body[pos:]))


def parse_frame(buf):
    """(Frame, bytes used) of the whole frame at the start of `buf`, or None until there is one."""
    if len(buf) < 4:
        return None
    end = 4 + struct.unpack(">I", buf[:4])[0]
    if len(buf) < end:
        return None
    return decode_frame_body(buf[4:end]), end


def read_frame(sock):
    """The next Frame from a blocking socket, or None on a closed connection."""
    header = _read_exactly(sock, 4)
    if header is None:
        return None
    body = _read_exactly(sock, struct.unpack(">I", header)[0])
    if body is None:
        return None
    return decode_frame_body(body)


def _read_exactly(sock, size):
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return bytes(data)


# --- HAProxy's frames, for tests that play HAProxy -----------------------------------------

def hello_frame(max_frame_size=16380, capabilities="pipelining", healthcheck=False):
    items = {"supported-versions": "2.0", "max-frame-size": UInt32(max_frame_size),
             "capabilities": capabilities}
    if healthcheck:
        items["healthcheck"] = True
    return encode_frame(HAPROXY_HELLO, 0, 0, encode_kv_list(items))


def notify_frame(stream_id, frame_id, messages):
    """`messages` encoded with encode_message."""
    return encode_frame(NOTIFY, stream_id, frame_id, b"".join(messages))


def disconnect_frame(status=0, message="normal"):
    return encode_frame(HAPROXY_DISCONNECT, 0, 0,
                        encode_kv_list({"status-code": UInt32(status), "message": message}))


def describe(frame):
    return (f"{FRAME_NAMES.get(frame.type, frame.type)}(flags={frame.flags}, stream={frame.stream_id}, "
            f"frame={frame.frame_id}, payload={frame.payload.hex()})")
