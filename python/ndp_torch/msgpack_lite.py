"""The msgpack subset the worker channel's messages use (NDP.md §11.3), with the standard library.

nil, bool, int (up to 64 bits), float 32/64, str, bin, array, map. Extension types are refused
(NDP_ERR_WORKER_PROTOCOL): no worker message uses them, and guessing at them would hide bugs.
Written here because the stdlib-only tests must run where the ``msgpack`` package is absent.
"""
import struct

from .errors import NdpError


def packb(value) -> bytes:
    out = bytearray()
    _pack(value, out)
    return bytes(out)


def _pack(v, out: bytearray) -> None:
    if v is None:
        out.append(0xC0)
    elif v is True:
        out.append(0xC3)
    elif v is False:
        out.append(0xC2)
    elif isinstance(v, int):
        _pack_int(v, out)
    elif isinstance(v, float):
        out.append(0xCB)
        out += struct.pack(">d", v)
    elif isinstance(v, str):
        data = v.encode("utf-8")
        if len(data) < 32:
            out.append(0xA0 | len(data))
            out += data
        else:
            _pack_sized(data, 0xD9, out)
    elif isinstance(v, (bytes, bytearray, memoryview)):
        _pack_sized(bytes(v), 0xC4, out)
    elif isinstance(v, (list, tuple)):
        _pack_length(len(v), 0x90, 0xDC, out)
        for item in v:
            _pack(item, out)
    elif isinstance(v, dict):
        _pack_length(len(v), 0x80, 0xDE, out)
        for key, item in v.items():
            _pack(key, out)
            _pack(item, out)
    else:
        raise TypeError(f"cannot msgpack a {type(v).__name__}")


def _pack_sized(data: bytes, code8: int, out: bytearray) -> None:
    """str 8/16/32 (0xD9..0xDB) and bin 8/16/32 (0xC4..0xC6) share one layout: code, length, bytes."""
    n = len(data)
    if n < 0x100:
        out += bytes((code8, n))
    elif n < 0x10000:
        out.append(code8 + 1)
        out += struct.pack(">H", n)
    else:
        out.append(code8 + 2)
        out += struct.pack(">I", n)
    out += data


def _pack_length(n: int, fix: int, code16: int, out: bytearray) -> None:
    if n < 16:
        out.append(fix | n)
    elif n < 0x10000:
        out.append(code16)
        out += struct.pack(">H", n)
    else:
        out.append(code16 + 1)
        out += struct.pack(">I", n)


def _pack_int(v: int, out: bytearray) -> None:
    if 0 <= v < 0x80:
        out.append(v)
    elif -32 <= v < 0:
        out.append(v & 0xFF)
    elif 0 <= v < 0x100:
        out += bytes((0xCC, v))
    elif 0 <= v < 0x10000:
        out.append(0xCD)
        out += struct.pack(">H", v)
    elif 0 <= v < 0x100000000:
        out.append(0xCE)
        out += struct.pack(">I", v)
    elif 0 <= v < 1 << 64:
        out.append(0xCF)
        out += struct.pack(">Q", v)
    elif -0x80 <= v < 0:
        out.append(0xD0)
        out += struct.pack(">b", v)
    elif -0x8000 <= v < 0:
        out.append(0xD1)
        out += struct.pack(">h", v)
    elif -0x80000000 <= v < 0:
        out.append(0xD2)
        out += struct.pack(">i", v)
    elif -(1 << 63) <= v < 0:
        out.append(0xD3)
        out += struct.pack(">q", v)
    else:
        raise OverflowError(f"integer {v} does not fit msgpack's 64 bits")


def unpackb(data):
    """Decodes exactly one value; truncated input, trailing bytes and extension types are NDP_ERR_WORKER_PROTOCOL."""
    view = memoryview(data).cast("B")
    try:
        value, end = _unpack(view, 0)
    except RecursionError as e:
        raise NdpError("NDP_ERR_WORKER_PROTOCOL", "msgpack value nested too deeply") from e
    if end != len(view):
        raise NdpError("NDP_ERR_WORKER_PROTOCOL", f"{len(view) - end} bytes after a msgpack value")
    return value


_FIXED = {
    0xCC: (">B", 1), 0xCD: (">H", 2), 0xCE: (">I", 4), 0xCF: (">Q", 8),
    0xD0: (">b", 1), 0xD1: (">h", 2), 0xD2: (">i", 4), 0xD3: (">q", 8),
    0xCA: (">f", 4), 0xCB: (">d", 8),
}


def _take(view: memoryview, at: int, n: int) -> memoryview:
    if at + n > len(view):
        raise NdpError("NDP_ERR_WORKER_PROTOCOL", "msgpack value truncated")
    return view[at:at + n]


def _unpack(view: memoryview, at: int):
    b = _take(view, at, 1)[0]
    at += 1
    if b < 0x80:
        return b, at
    if b >= 0xE0:
        return b - 0x100, at
    if 0x80 <= b <= 0x8F:
        return _unpack_map(view, at, b & 0x0F)
    if 0x90 <= b <= 0x9F:
        return _unpack_array(view, at, b & 0x0F)
    if 0xA0 <= b <= 0xBF:
        n = b & 0x1F
        return _str(_take(view, at, n)), at + n
    if b == 0xC0:
        return None, at
    if b == 0xC2:
        return False, at
    if b == 0xC3:
        return True, at
    if b in _FIXED:
        fmt, n = _FIXED[b]
        return struct.unpack(fmt, _take(view, at, n))[0], at + n
    if b in (0xD9, 0xDA, 0xDB, 0xC4, 0xC5, 0xC6):
        width = {0xD9: 1, 0xDA: 2, 0xDB: 4, 0xC4: 1, 0xC5: 2, 0xC6: 4}[b]
        n = int.from_bytes(_take(view, at, width), "big")
        at += width
        raw = _take(view, at, n)
        return (_str(raw) if b >= 0xD9 else bytes(raw)), at + n
    if b in (0xDC, 0xDD, 0xDE, 0xDF):
        width = 2 if b in (0xDC, 0xDE) else 4
        n = int.from_bytes(_take(view, at, width), "big")
        at += width
        return (_unpack_array if b in (0xDC, 0xDD) else _unpack_map)(view, at, n)
    raise NdpError("NDP_ERR_WORKER_PROTOCOL", f"msgpack type byte 0x{b:02x} (extension or reserved) is not used on the worker channel")


def _str(raw: memoryview) -> str:
    try:
        return bytes(raw).decode("utf-8")
    except UnicodeDecodeError as e:
        raise NdpError("NDP_ERR_WORKER_PROTOCOL", f"msgpack string is not UTF-8: {e}") from e


def _unpack_array(view: memoryview, at: int, n: int):
    items = []
    for _ in range(n):
        item, at = _unpack(view, at)
        items.append(item)
    return items, at


def _unpack_map(view: memoryview, at: int, n: int):
    out = {}
    for _ in range(n):
        key, at = _unpack(view, at)
        value, at = _unpack(view, at)
        try:
            out[key] = value
        except TypeError as e:
            raise NdpError("NDP_ERR_WORKER_PROTOCOL", f"msgpack map key of type {type(key).__name__} is not hashable") from e
    return out, at
