import t from 'tap';
import { CRC16_INIT, crc16, crc16Bitwise } from '../../src/protocol/crc16.js';

const ascii = (s: string): Uint8Array => new TextEncoder().encode(s);

function seeded(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let s = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    out[i] = s & 0xff;
  }
  return out;
}

t.test('check value of CRC-16/CCITT-FALSE', async (t) => {
  t.equal(crc16(ascii('123456789')), 0x29b1);
  t.equal(crc16Bitwise(ascii('123456789')), 0x29b1);
  t.equal(crc16(new Uint8Array(0)), CRC16_INIT, 'empty input leaves the initial value');
});

t.test('known values (Python binascii.crc_hqx(data, 0xFFFF))', async (t) => {
  t.equal(crc16(Uint8Array.of(0xaa, 0x01, 0x01, 0x01, 0x00, 0x00)), 0x82ef);
  t.equal(crc16(new Uint8Array(64)), 0xd6da);
  t.equal(crc16(new Uint8Array(1).fill(0xff)), 0xff00);
});

t.test('slicing-by-8 equals the bitwise definition for every length 0..200 and every start 0..8', async (t) => {
  const data = seeded(220, 42);
  let mismatches = 0;
  for (let start = 0; start <= 8; start++) {
    for (let end = start; end <= start + 200; end++) {
      if (crc16(data, CRC16_INIT, start, end) !== crc16Bitwise(data.subarray(start, end))) mismatches++;
    }
  }
  t.equal(mismatches, 0);
  const big = seeded(1 << 16, 7);
  t.equal(crc16(big), crc16Bitwise(big), '64 KiB');
  for (let offset = 1; offset < 4; offset++) {
    const view = big.subarray(offset, big.length - offset);
    t.equal(crc16(view), crc16Bitwise(view), `a view at byte offset ${offset}`);
  }
});

t.test('continuing a CRC over pieces equals the CRC of the whole', async (t) => {
  const data = seeded(1000, 3);
  for (const cut of [0, 1, 7, 8, 9, 500, 999, 1000]) {
    t.equal(crc16(data.subarray(cut), crc16(data.subarray(0, cut))), crc16(data), `cut at ${cut}`);
  }
  t.equal(crc16Bitwise(data.subarray(13), crc16Bitwise(data.subarray(0, 13))), crc16(data));
});
