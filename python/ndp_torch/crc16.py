"""CRC-16/CCITT-FALSE (NDP.md §3.2): poly 0x1021, init 0xFFFF, no reflection, xorout 0.

``binascii.crc_hqx`` is exactly this CRC when seeded with 0xFFFF, and it runs in C: no table of
our own is needed. Check value for ASCII "123456789": 0x29B1.
"""
import binascii

CRC16_INIT = 0xFFFF


def crc16(data, init: int = CRC16_INIT) -> int:
    """CRC-16/CCITT-FALSE of ``data`` (any bytes-like object); pass a previous result as ``init`` to continue."""
    return binascii.crc_hqx(data, init)
