"""The v1 frame (NDP.md §3): ``0xAA | SRC | DST | TYP | LEN u16 BE | payload | CRC-16 BE``.

``decode_frame`` reads one whole frame (a datagram, a vector); ``FrameSource`` reads frames from a
byte stream (the worker channel's socket) and can land a payload's tail straight in a caller's
buffer, so a tensor fragment is copied once: from the kernel into its final place.
"""
import struct
from typing import NamedTuple, Optional

from .crc16 import crc16
from .errors import NdpError
from .registry import FRAME_CRC_BYTES, FRAME_HEADER_BYTES, MAGIC, MAX_PAYLOAD

_HEADER = struct.Struct(">BBBBH")


class Frame(NamedTuple):
    src: int
    dst: int
    typ: int
    payload: bytes
    crc: int
    crc_ok: bool


def encode_frame(src: int, dst: int, typ: int, payload) -> bytes:
    """One whole frame around ``payload``; NDP_ERR_PAYLOAD_TOO_LARGE past LEN's 65,535 bytes."""
    if len(payload) > MAX_PAYLOAD:
        raise NdpError("NDP_ERR_PAYLOAD_TOO_LARGE", f"payload of {len(payload)} bytes exceeds LEN's limit of {MAX_PAYLOAD}")
    head = _HEADER.pack(MAGIC, src, dst, typ, len(payload))
    crc = crc16(payload, crc16(head))
    return b"".join((head, bytes(payload), crc.to_bytes(2, "big")))


def decode_frame(data) -> Frame:
    """Decodes ``data`` as exactly one frame. A CRC mismatch is a result (``crc_ok=False``), not an error."""
    data = memoryview(data).cast("B")
    if len(data) >= 1 and data[0] != MAGIC:
        raise NdpError("NDP_ERR_BAD_MAGIC", f"expected magic 0x{MAGIC:02x}, found 0x{data[0]:02x}")
    if len(data) < FRAME_HEADER_BYTES:
        raise NdpError("NDP_ERR_TRUNCATED", f"frame truncated: {len(data)} bytes")
    _, src, dst, typ, length = _HEADER.unpack_from(data)
    end = FRAME_HEADER_BYTES + length + FRAME_CRC_BYTES
    if len(data) < end:
        raise NdpError("NDP_ERR_TRUNCATED", f"frame truncated: {len(data)} bytes (LEN announces {end})")
    if len(data) > end:
        raise NdpError("NDP_ERR_TRAILING_BYTES", f"{len(data) - end} bytes after a whole frame of {end}")
    crc_at = FRAME_HEADER_BYTES + length
    crc = int.from_bytes(data[crc_at:end], "big")
    return Frame(src, dst, typ, bytes(data[FRAME_HEADER_BYTES:crc_at]), crc, crc16(data[:crc_at]) == crc)


class FrameHeader(NamedTuple):
    src: int
    dst: int
    typ: int
    length: int
    raw: bytes


class FrameSource:
    """Reads frames from a stream: a connected socket or a binary file object with ``readinto``.

    Frames are read in parts so a payload can be split between a small buffer and a caller's
    destination: ``read_header`` → ``read_payload_part`` … → ``finish`` (which checks the CRC over
    every part read). End of stream between frames is ``None``; inside a frame it is
    NDP_ERR_TRUNCATED, because on a stream a frame never ends early unless the peer died.
    """

    def __init__(self, stream):
        if hasattr(stream, "recv_into"):
            self._readinto = stream.recv_into
        elif hasattr(stream, "readinto"):
            self._readinto = stream.readinto
        else:
            raise TypeError("FrameSource needs a socket or a binary stream with readinto")
        self._crc = 0
        self._left = 0
        self._header_buf = bytearray(FRAME_HEADER_BYTES)

    def _read_exact(self, view: memoryview, at_boundary: bool = False) -> bool:
        got = 0
        while got < len(view):
            n = self._readinto(view[got:])
            if not n:
                if at_boundary and got == 0:
                    return False
                raise NdpError("NDP_ERR_TRUNCATED", f"stream ended {len(view) - got} bytes short inside a frame")
            got += n
        return True

    def read_header(self) -> Optional[FrameHeader]:
        """The next frame's 6-byte header, or ``None`` at a clean end of stream."""
        if self._left:
            raise RuntimeError(f"{self._left} payload bytes of the previous frame are unread")
        view = memoryview(self._header_buf)
        if not self._read_exact(view, at_boundary=True):
            return None
        magic, src, dst, typ, length = _HEADER.unpack_from(self._header_buf)
        if magic != MAGIC:
            raise NdpError("NDP_ERR_BAD_MAGIC", f"expected magic 0x{MAGIC:02x} on the stream, found 0x{magic:02x}")
        self._crc = crc16(view)
        self._left = length
        return FrameHeader(src, dst, typ, length, bytes(self._header_buf))

    @property
    def payload_left(self) -> int:
        return self._left

    def read_payload_part(self, dest: memoryview) -> None:
        """Fills ``dest`` (a writable byte view) with the next ``len(dest)`` payload bytes."""
        if len(dest) > self._left:
            raise NdpError("NDP_ERR_TRUNCATED", f"asked for {len(dest)} payload bytes, the frame has {self._left} left")
        self._read_exact(dest)
        self._crc = crc16(dest, self._crc)
        self._left -= len(dest)

    def read_payload(self, n: int) -> bytes:
        buf = bytearray(n)
        self.read_payload_part(memoryview(buf))
        return bytes(buf)

    def finish(self) -> bool:
        """Reads the CRC after a fully read payload; returns whether it matches."""
        if self._left:
            raise RuntimeError(f"{self._left} payload bytes are unread")
        tail = bytearray(FRAME_CRC_BYTES)
        self._read_exact(memoryview(tail))
        return int.from_bytes(tail, "big") == self._crc

    def read_frame(self) -> Optional[Frame]:
        """One whole frame into memory, or ``None`` at a clean end of stream."""
        header = self.read_header()
        if header is None:
            return None
        payload = self.read_payload(header.length)
        crc_ok = self.finish()
        return Frame(header.src, header.dst, header.typ, payload, -1, crc_ok)
