import t from 'tap';
import { TRANSPORT_HEADER_BYTES, readTransportHeader, writeTransportHeader, type TransportHeader } from '../../src/protocol/transport-header.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const header: TransportHeader = {
  version: 1, flags: 0x06, source: 3, session: 0xdeadbeef, seq: 0xfffffffe, epoch: 2, position: 70_000, sample: 123_456,
  fragIndex: 1, fragCount: 2, fragOffset: 4, bodyLength: 8, bodyCrc: 0x8a76cae9,
};

t.test('exact bytes (NDP.md §4.1 offsets), and back', async (t) => {
  const payload = new Uint8Array(TRANSPORT_HEADER_BYTES + 4);
  writeTransportHeader(payload, 0, header);
  payload.set([1, 2, 3, 4], 40);
  t.equal(hex(payload.subarray(0, 40)), '01060300' + 'deadbeef' + 'fffffffe' + '00000002' + '00011170' + '0001e240' + '0001' + '0002' + '00000004' + '00000008' + '8a76cae9');
  const back = readTransportHeader(payload);
  t.same(back.header, header);
  t.same(back.fragment, Uint8Array.of(1, 2, 3, 4));
  t.equal(back.fragment.buffer, payload.buffer, 'the fragment is a view');
});

t.test('writes at an offset inside a larger buffer', async (t) => {
  const out = new Uint8Array(50).fill(0xee);
  writeTransportHeader(out.subarray(3), 2, header);
  t.equal(out[4], 0xee);
  t.equal(out[5], 1);
  t.equal(out[45], 0xee);
});

t.test('rejections: short, version, count, index, past the body', async (t) => {
  const ok = new Uint8Array(44);
  writeTransportHeader(ok, 0, header);
  t.throws(() => readTransportHeader(ok.subarray(0, 39)), { code: 'NDP_ERR_BAD_SEGMENT' });
  const v2 = Uint8Array.from(ok);
  v2[0] = 2;
  t.throws(() => readTransportHeader(v2), { code: 'NDP_ERR_UNSUPPORTED_VERSION' });
  const cases: Array<Partial<TransportHeader>> = [{ fragCount: 0, fragIndex: 0 }, { fragIndex: 2 }, { fragOffset: 5 }, { bodyLength: 7 }];
  for (const change of cases) {
    const p = new Uint8Array(44);
    writeTransportHeader(p, 0, { ...header, ...change });
    t.throws(() => readTransportHeader(p), { code: 'NDP_ERR_BAD_SEGMENT' }, JSON.stringify(change));
  }
  const edge = new Uint8Array(44);
  writeTransportHeader(edge, 0, { ...header, fragOffset: 4, bodyLength: 8 });
  t.equal(readTransportHeader(edge).fragment.length, 4, 'a fragment ending exactly at bodyLength is fine');
});
