"""Shared helpers for the stdlib-only tests: import path and a frame builder."""
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
if str(REPO / "python") not in sys.path:
    sys.path.insert(0, str(REPO / "python"))

from ndp_torch.frame import encode_frame  # noqa: E402
from ndp_torch.msgpack_lite import packb  # noqa: E402
from ndp_torch.registry import DST, SRC, TYP  # noqa: E402
from ndp_torch.tensor_frame import tensor_frames_payloads  # noqa: E402


def control_frame(message) -> bytes:
    return encode_frame(SRC["TRAINER"], DST["WORKER"], TYP["CONTROL"], packb(message))


def tensor_frames(batch_id, name, dtype, shape, data, little_endian=True, max_payload=65535) -> bytes:
    return b"".join(
        encode_frame(SRC["TRAINER"], DST["WORKER"], TYP["TENSOR"], p)
        for p in tensor_frames_payloads(dtype, batch_id, shape, name, data, little_endian, max_payload)
    )
