"""The safetensors file format, written and read with the standard library.

Layout: u64 little-endian N, then N bytes of JSON ``{name: {"dtype", "shape", "data_offsets":
[begin, end]}, "__metadata__": {str: str}}`` padded with spaces to a multiple of 8, then the raw
little-endian tensor bytes. Used when the ``safetensors`` package is not installed; the output is
the same file PEFT and ``safetensors.torch.load_file`` read.
"""
import json
import struct
from typing import Dict, Mapping, Optional, Tuple

from .errors import NdpError

#: safetensors dtype name → bytes per element.
DTYPE_SIZES = {"F32": 4, "F16": 2, "BF16": 2, "F64": 8, "I32": 4, "I64": 8, "I8": 1, "U8": 1, "BOOL": 1}


def write_safetensors(path, tensors: Mapping[str, Tuple[str, Tuple[int, ...], bytes]], metadata: Optional[Dict[str, str]] = None) -> None:
    """Writes ``tensors`` (name → (dtype, shape, little-endian bytes)) to ``path``, names sorted."""
    header: Dict[str, object] = {}
    if metadata:
        header["__metadata__"] = dict(metadata)
    offset = 0
    order = sorted(tensors)
    for name in order:
        dtype, shape, data = tensors[name]
        expected = DTYPE_SIZES[dtype]
        for d in shape:
            expected *= d
        if len(data) != expected:
            raise ValueError(f"tensor {name}: {len(data)} bytes for shape {list(shape)} {dtype} (needs {expected})")
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for name in order:
            f.write(tensors[name][2])


def read_safetensors(path) -> Tuple[Dict[str, Tuple[str, Tuple[int, ...], memoryview]], Dict[str, str]]:
    """Reads a whole file: (name → (dtype, shape, bytes view), metadata). Malformed: NDP_ERR_BAD_TENSOR."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise NdpError("NDP_ERR_BAD_TENSOR", f"{path}: shorter than a safetensors header")
    (n,) = struct.unpack_from("<Q", data)
    if 8 + n > len(data):
        raise NdpError("NDP_ERR_BAD_TENSOR", f"{path}: header of {n} bytes overruns the file")
    try:
        header = json.loads(data[8:8 + n])
    except ValueError as e:
        raise NdpError("NDP_ERR_BAD_TENSOR", f"{path}: header is not JSON: {e}") from e
    body = memoryview(data)[8 + n:]
    metadata = header.pop("__metadata__", {}) or {}
    out = {}
    for name, entry in header.items():
        begin, end = entry["data_offsets"]
        if not 0 <= begin <= end <= len(body) or entry["dtype"] not in DTYPE_SIZES:
            raise NdpError("NDP_ERR_BAD_TENSOR", f"{path}: tensor {name} has bad offsets or dtype")
        out[name] = (entry["dtype"], tuple(entry["shape"]), body[begin:end])
    return out, metadata
