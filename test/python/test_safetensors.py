"""The safetensors writer and reader the worker uses when the ``safetensors`` package is absent (stdlib)."""
import json
import os
import struct
import tempfile
import unittest

import helpers  # noqa: F401  (sets the import path)
from ndp_torch.errors import NdpError
from ndp_torch.safetensors_io import read_safetensors, write_safetensors


class SafetensorsTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)
        self.path = os.path.join(self.dir.name, "a.safetensors")

    def test_layout_and_round_trip(self):
        b = struct.pack("<6f", *range(6))
        a = struct.pack("<2f", 0.5, -1.5)
        write_safetensors(self.path, {"x.lora_B.weight": ("F32", (3, 2), b), "x.lora_A.weight": ("F32", (1, 2), a)}, {"format": "pt"})
        with open(self.path, "rb") as f:
            raw = f.read()
        (n,) = struct.unpack_from("<Q", raw)
        self.assertEqual(n % 8, 0, "header padded to 8 bytes")
        header = json.loads(raw[8:8 + n])
        self.assertEqual(header["__metadata__"], {"format": "pt"})
        # Names sorted, data back to back in that order.
        self.assertEqual(header["x.lora_A.weight"], {"dtype": "F32", "shape": [1, 2], "data_offsets": [0, 8]})
        self.assertEqual(header["x.lora_B.weight"], {"dtype": "F32", "shape": [3, 2], "data_offsets": [8, 32]})
        self.assertEqual(raw[8 + n:], a + b)
        tensors, metadata = read_safetensors(self.path)
        self.assertEqual(metadata, {"format": "pt"})
        self.assertEqual(bytes(tensors["x.lora_B.weight"][2]), b)
        self.assertEqual(tensors["x.lora_A.weight"][:2], ("F32", (1, 2)))

    def test_refuses_a_length_that_does_not_match_the_shape(self):
        with self.assertRaises(ValueError):
            write_safetensors(self.path, {"x": ("F32", (2, 2), b"\0" * 12)})

    def test_damaged_files(self):
        cases = [b"\x01", struct.pack("<Q", 100) + b"{}", struct.pack("<Q", 2) + b"{x",
                 struct.pack("<Q", 56) + json.dumps({"t": {"dtype": "F32", "shape": [1], "data_offsets": [0, 40]}}).encode().ljust(56)]
        for data in cases:
            with open(self.path, "wb") as f:
                f.write(data)
            with self.assertRaises(NdpError) as ctx:
                read_safetensors(self.path)
            self.assertEqual(ctx.exception.code, "NDP_ERR_BAD_TENSOR", data[:12])


if __name__ == "__main__":
    unittest.main()
