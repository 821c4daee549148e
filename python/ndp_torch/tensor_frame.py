"""The TENSOR frame payload (NDP.md §11.2): a tensor header, then one fragment of a named tensor.

| off          | size   | field |
| ------------ | ------ | ----- |
| 0            | 1      | version (1) |
| 1            | 1      | flags: bit 0 LITTLE_ENDIAN (elements in little-endian order, else big-endian) |
| 2            | 1      | dtype: a TYP code naming the element type (TOKEN_IDS = int32, FLOAT32, FLOAT16, BFLOAT16) |
| 3            | 1      | ndim (0..8) |
| 4            | 4      | batch: id of the ``batch`` message the tensor belongs to |
| 8            | 4      | byteLength of the whole tensor |
| 12           | 4      | fragOffset of this fragment inside the tensor |
| 16           | 4·ndim | shape |
| 16 + 4·ndim  | 1      | nameLength |
| 17 + 4·ndim  | n      | name, UTF-8 |
| …            | rest   | fragment bytes |

All header integers are big-endian like the rest of NDP; the elements are in the byte order the
flag names, so a sender on the same host sends host order and the receiver wraps the bytes as they
are (zero copy).
"""
import struct
import sys
from typing import NamedTuple, Tuple

from .errors import NdpError
from .registry import MAX_PAYLOAD, TYP

TENSOR_VERSION = 1
FLAG_LITTLE_ENDIAN = 0x01
TENSOR_FIXED_BYTES = 16
MAX_NDIM = 8
_FIXED = struct.Struct(">BBBBIII")

#: dtype code → (name, element size, struct/memoryview format or None when Python has none).
DTYPES = {
    TYP["TOKEN_IDS"]: ("int32", 4, "i"),
    TYP["FLOAT32"]: ("float32", 4, "f"),
    TYP["FLOAT16"]: ("float16", 2, "e"),
    TYP["BFLOAT16"]: ("bfloat16", 2, None),
}
DTYPE_BY_NAME = {name: code for code, (name, _, _) in DTYPES.items()}
HOST_LITTLE_ENDIAN = sys.byteorder == "little"


class TensorHeader(NamedTuple):
    version: int
    flags: int
    dtype: int
    batch: int
    byte_length: int
    frag_offset: int
    shape: Tuple[int, ...]
    name: str
    header_bytes: int

    @property
    def little_endian(self) -> bool:
        return bool(self.flags & FLAG_LITTLE_ENDIAN)


def tensor_header_bytes(ndim: int, name: str) -> int:
    return TENSOR_FIXED_BYTES + 4 * ndim + 1 + len(name.encode("utf-8"))


def element_count(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def encode_tensor_header(dtype: int, batch: int, byte_length: int, frag_offset: int, shape, name: str, little_endian: bool = HOST_LITTLE_ENDIAN) -> bytes:
    raw_name = name.encode("utf-8")
    if len(raw_name) > 255:
        raise NdpError("NDP_ERR_BAD_TENSOR", f"tensor name of {len(raw_name)} bytes exceeds 255")
    if len(shape) > MAX_NDIM:
        raise NdpError("NDP_ERR_BAD_TENSOR", f"tensor of {len(shape)} dimensions exceeds {MAX_NDIM}")
    flags = FLAG_LITTLE_ENDIAN if little_endian else 0
    return b"".join((
        _FIXED.pack(TENSOR_VERSION, flags, dtype, len(shape), batch, byte_length, frag_offset),
        struct.pack(f">{len(shape)}I", *shape),
        bytes((len(raw_name),)),
        raw_name,
    ))


def decode_tensor_header(read, payload_length: int) -> TensorHeader:
    """Reads a tensor header through ``read(n) -> bytes`` from a payload of ``payload_length`` bytes.

    Raises NDP_ERR_BAD_TENSOR for a header that overruns the payload, an unknown dtype, too many
    dimensions, a byteLength that is not shape × element size, or a fragment outside the tensor;
    NDP_ERR_UNSUPPORTED_VERSION for a version other than 1.
    """
    if payload_length < TENSOR_FIXED_BYTES + 1:
        raise NdpError("NDP_ERR_BAD_TENSOR", f"TENSOR payload of {payload_length} bytes is shorter than its header")
    version, flags, dtype, ndim, batch, byte_length, frag_offset = _FIXED.unpack(read(TENSOR_FIXED_BYTES))
    if version != TENSOR_VERSION:
        raise NdpError("NDP_ERR_UNSUPPORTED_VERSION", f"tensor header version {version}, this implementation speaks {TENSOR_VERSION}")
    if ndim > MAX_NDIM:
        raise NdpError("NDP_ERR_BAD_TENSOR", f"tensor of {ndim} dimensions exceeds {MAX_NDIM}")
    if dtype not in DTYPES:
        raise NdpError("NDP_ERR_BAD_TENSOR", f"tensor dtype 0x{dtype:02x} is not one of {sorted(DTYPES)}")
    used = TENSOR_FIXED_BYTES + 4 * ndim + 1
    if used > payload_length:
        raise NdpError("NDP_ERR_BAD_TENSOR", f"tensor header of {ndim} dimensions overruns a payload of {payload_length} bytes")
    shape = struct.unpack(f">{ndim}I", read(4 * ndim)) if ndim else ()
    name_length = read(1)[0]
    used += name_length
    if used > payload_length:
        raise NdpError("NDP_ERR_BAD_TENSOR", f"tensor name of {name_length} bytes overruns a payload of {payload_length} bytes")
    try:
        name = read(name_length).decode("utf-8")
    except UnicodeDecodeError as e:
        raise NdpError("NDP_ERR_BAD_TENSOR", f"tensor name is not UTF-8: {e}") from e
    expected = element_count(shape) * DTYPES[dtype][1]
    if byte_length != expected:
        raise NdpError("NDP_ERR_BAD_TENSOR", f"tensor '{name}' of shape {list(shape)} {DTYPES[dtype][0]} needs {expected} bytes, header says {byte_length}")
    if frag_offset + (payload_length - used) > byte_length:
        raise NdpError("NDP_ERR_BAD_TENSOR", f"fragment at {frag_offset}+{payload_length - used} lies outside tensor '{name}' of {byte_length} bytes")
    return TensorHeader(version, flags, dtype, batch, byte_length, frag_offset, tuple(shape), name, used)


def tensor_frames_payloads(dtype: int, batch: int, shape, name: str, data, little_endian: bool = HOST_LITTLE_ENDIAN, max_payload: int = MAX_PAYLOAD):
    """Cuts ``data`` (the tensor's bytes) into TENSOR payloads of at most ``max_payload`` bytes each."""
    view = memoryview(data).cast("B")
    header_len = tensor_header_bytes(len(shape), name)
    room = max_payload - header_len
    if room <= 0:
        raise NdpError("NDP_ERR_BAD_TENSOR", f"tensor header of {header_len} bytes leaves no room in a {max_payload}-byte payload")
    offset = 0
    while True:
        part = view[offset:offset + room]
        yield encode_tensor_header(dtype, batch, len(view), offset, shape, name, little_endian) + bytes(part)
        offset += len(part)
        if offset >= len(view):
            return
