"""The few pieces of SPOP (HAProxy's Stream Processing Offload Protocol) a test agent needs.

Frames and encodings as described in the SPOE specification (/usr/share/doc/haproxy/SPOE.txt.gz,
sections 3.1 data types and 3.2 frames): 4-byte length, type, 4-byte flags, varint stream-id and
frame-id, payload.
"""

import ipaddress
import struct

HAPROXY_HELLO, HAPROXY_DISCONNECT, NOTIFY = 1, 2, 3
AGENT_HELLO, AGENT_DISCONNECT, ACK = 101, 102, 103
FLAG_FIN = 1
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
    if kind in (T_INT32, T_UINT32, T_INT64, T_UINT64):
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
    return bytes([1, 3, scope]) + encode_string(name) + encode_typed(value)


def encode_frame(kind, stream_id, frame_id, payload, flags=FLAG_FIN):
    body = (bytes([kind]) + struct.pack(">I", flags) + encode_varint(stream_id)
            + encode_varint(frame_id) + payload)
    return struct.pack(">I", len(body)) + body


def read_frame(sock):
    """Returns (type, flags, stream_id, frame_id, payload), or None on a closed connection."""
    header = _read_exactly(sock, 4)
    if header is None:
        return None
    body = _read_exactly(sock, struct.unpack(">I", header)[0])
    if body is None:
        return None
    flags = struct.unpack(">I", body[1:5])[0]
    stream_id, pos = decode_varint(body, 5)
    frame_id, pos = decode_varint(body, pos)
    return body[0], flags, stream_id, frame_id, body[pos:]


def _read_exactly(sock, size):
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return bytes(data)
