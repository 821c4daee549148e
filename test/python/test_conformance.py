"""protocol-spec/vectors: the frame and control vectors every implementation must pass (stdlib only).

The Python package reads frames (NDP.md §3) and msgpack maps, so it is checked against frames.json
and, for msgpack, control.json. stream.json is for a resynchronising decoder; the worker channel's
reader is deliberately strict (§11.1: any bad frame ends the channel), so it does not apply.
"""
import json
import math
import unittest

from helpers import REPO
from ndp_torch.errors import NdpError
from ndp_torch.frame import decode_frame
from ndp_torch.msgpack_lite import unpackb
from ndp_torch.registry import REGISTRY, TYP

VECTORS = REPO / "protocol-spec" / "vectors"
CONTROL_CODES = {entry["code"] for entry in REGISTRY["control"].values()}


def load(name):
    with open(VECTORS / name) as f:
        return json.load(f)["vectors"]


def from_json(value):
    """The vectors' JSON form of msgpack values: bin as {"$bin": hex}."""
    if isinstance(value, dict):
        if set(value) == {"$bin"}:
            return bytes.fromhex(value["$bin"])
        return {k: from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_json(v) for v in value]
    return value


def same(a, b):
    if isinstance(a, float) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-6)
    if isinstance(a, dict) and isinstance(b, dict):
        return set(a) == set(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


@unittest.skipUnless((VECTORS / "frames.json").is_file(), "protocol-spec/vectors/frames.json not present")
class FrameVectors(unittest.TestCase):
    def test_frames(self):
        vectors = load("frames.json")
        self.assertGreater(len(vectors), 10)
        for v in vectors:
            with self.subTest(v["name"]):
                expect = v["expect"]
                if "error" in expect:
                    with self.assertRaises(NdpError) as ctx:
                        decode_frame(bytes.fromhex(v["hex"]))
                    self.assertEqual(ctx.exception.code, expect["error"])
                    continue
                frame = decode_frame(bytes.fromhex(v["hex"]))
                want = expect["frame"]
                self.assertEqual((frame.src, frame.dst, frame.typ, len(frame.payload), frame.payload.hex(), frame.crc, frame.crc_ok),
                                 (want["src"], want["dst"], want["typ"], want["len"], want["payload"], want["crc"], want["crcOk"]))


@unittest.skipUnless((VECTORS / "control.json").is_file(), "protocol-spec/vectors/control.json not present")
class ControlVectors(unittest.TestCase):
    """Our msgpack subset decodes every control message the vectors hold, to the same values."""

    def decode_control(self, payload):
        try:
            message = unpackb(payload)
        except NdpError:
            return "NDP_ERR_BAD_CONTROL"
        if not isinstance(message, dict) or not isinstance(message.get("t"), int) or isinstance(message.get("t"), bool):
            return "NDP_ERR_BAD_CONTROL"
        if message["t"] not in CONTROL_CODES:
            return "NDP_ERR_UNKNOWN_CONTROL"
        return message

    def test_control(self):
        vectors = load("control.json")
        self.assertGreater(len(vectors), 5)
        for v in vectors:
            with self.subTest(v["name"]):
                frame = decode_frame(bytes.fromhex(v["hex"]))
                self.assertEqual(frame.typ, TYP["CONTROL"])
                got = self.decode_control(frame.payload)
                if "error" in v["expect"]:
                    self.assertEqual(got, v["expect"]["error"])
                else:
                    self.assertTrue(same(got, from_json(v["expect"]["message"])), f"{got!r} != {v['expect']['message']!r}")


if __name__ == "__main__":
    unittest.main()
