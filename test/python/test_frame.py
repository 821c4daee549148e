"""Frame codec and CRC-16 (NDP.md §3), standard library only."""
import io
import unittest

import helpers  # noqa: F401  (sets the import path)
from ndp_torch.crc16 import crc16
from ndp_torch.errors import NdpError
from ndp_torch.frame import FrameSource, decode_frame, encode_frame
from ndp_torch.registry import DST, MAGIC, SRC, TYP


class Crc16Test(unittest.TestCase):
    def test_check_value(self):
        self.assertEqual(crc16(b"123456789"), 0x29B1)

    def test_continues_over_pieces(self):
        data = bytes(range(256)) * 3
        self.assertEqual(crc16(data[100:], crc16(data[:100])), crc16(data))

    def test_empty_is_init(self):
        self.assertEqual(crc16(b""), 0xFFFF)


class FrameTest(unittest.TestCase):
    def test_exact_bytes_of_seed_frame(self):
        frame = encode_frame(SRC["CODE_REPO"], DST["EMBEDDING"], TYP["TOKEN_IDS"], bytes.fromhex("0000000100000002"))
        head = bytes([MAGIC, 0x02, 0x01, 0x01, 0x00, 0x08]) + bytes.fromhex("0000000100000002")
        self.assertEqual(frame, head + crc16(head).to_bytes(2, "big"))
        decoded = decode_frame(frame)
        self.assertTrue(decoded.crc_ok)
        self.assertEqual((decoded.src, decoded.dst, decoded.typ, decoded.payload), (2, 1, 1, bytes.fromhex("0000000100000002")))

    def test_bad_crc_is_a_result(self):
        frame = bytearray(encode_frame(1, 1, 1, b"abcd"))
        frame[7] ^= 0x01
        self.assertFalse(decode_frame(frame).crc_ok)

    def test_every_truncated_prefix_is_truncated(self):
        frame = encode_frame(1, 1, 1, b"0123456789")
        for n in range(1, len(frame)):
            with self.assertRaises(NdpError) as ctx:
                decode_frame(frame[:n])
            self.assertEqual(ctx.exception.code, "NDP_ERR_TRUNCATED", n)

    def test_bad_magic_and_trailing(self):
        frame = encode_frame(1, 1, 1, b"x")
        with self.assertRaises(NdpError) as ctx:
            decode_frame(b"\x55" + frame[1:])
        self.assertEqual(ctx.exception.code, "NDP_ERR_BAD_MAGIC")
        with self.assertRaises(NdpError) as ctx:
            decode_frame(frame + b"\x00")
        self.assertEqual(ctx.exception.code, "NDP_ERR_TRAILING_BYTES")

    def test_payload_limit(self):
        self.assertEqual(len(encode_frame(1, 1, 1, bytes(65535))), 65543)
        with self.assertRaises(NdpError) as ctx:
            encode_frame(1, 1, 1, bytes(65536))
        self.assertEqual(ctx.exception.code, "NDP_ERR_PAYLOAD_TOO_LARGE")


class OneByteAtATime(io.RawIOBase):
    """A stream that hands out one byte per read: every split point is exercised."""

    def __init__(self, data):
        self._data = memoryview(data)
        self._at = 0

    def readable(self):
        return True

    def readinto(self, b):
        if self._at >= len(self._data) or len(b) == 0:
            return 0
        b[0] = self._data[self._at]
        self._at += 1
        return 1


class FrameSourceTest(unittest.TestCase):
    def test_reads_frames_split_across_reads(self):
        frames = [encode_frame(1, 2, 3, bytes([i]) * i) for i in range(0, 40, 7)]
        source = FrameSource(OneByteAtATime(b"".join(frames)))
        got = []
        while (frame := source.read_frame()) is not None:
            self.assertTrue(frame.crc_ok)
            got.append(frame.payload)
        self.assertEqual(got, [bytes([i]) * i for i in range(0, 40, 7)])

    def test_end_inside_a_frame_is_truncated(self):
        frame = encode_frame(1, 2, 3, b"abcdef")
        for n in range(1, len(frame)):
            with self.assertRaises(NdpError) as ctx:
                FrameSource(io.BytesIO(frame[:n])).read_frame()
            self.assertEqual(ctx.exception.code, "NDP_ERR_TRUNCATED")

    def test_bad_magic_on_stream(self):
        with self.assertRaises(NdpError) as ctx:
            FrameSource(io.BytesIO(b"\x00" * 10)).read_frame()
        self.assertEqual(ctx.exception.code, "NDP_ERR_BAD_MAGIC")


if __name__ == "__main__":
    unittest.main()
