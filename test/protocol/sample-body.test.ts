import t from 'tap';
import { decodeSampleBody, encodeSampleBody, sampleBodySize } from '../../src/protocol/sample-body.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

t.test('exact bytes with and without a mask', async (t) => {
  t.equal(hex(encodeSampleBody({ tokens: Int32Array.of(1, -1) })), '0100000000000002' + '00000001' + 'ffffffff');
  const masked = encodeSampleBody({ tokens: Int32Array.from({ length: 10 }, (_, i) => i), lossMask: Uint8Array.of(0, 0, 0, 1, 1, 1, 1, 1, 1, 1) });
  t.equal(masked.length, sampleBodySize(10, true));
  t.equal(hex(masked.subarray(0, 8)), '010100000000000a');
  t.equal(hex(masked.subarray(48)), '1fc0', 'mask bits MSB first, tokens 3..9 trained on');
  const back = decodeSampleBody(masked);
  t.same([...back.lossMask], [0, 0, 0, 1, 1, 1, 1, 1, 1, 1]);
  t.same([...back.tokens], [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
});

t.test('an all-ones mask is written as no mask; no mask reads back as all ones', async (t) => {
  const body = encodeSampleBody({ tokens: Int32Array.of(5, 6), lossMask: Uint8Array.of(1, 1) });
  t.equal(body[1], 0);
  t.same([...decodeSampleBody(body).lossMask], [1, 1]);
});

t.test('a mask of the wrong length is refused', async (t) => {
  t.throws(() => encodeSampleBody({ tokens: Int32Array.of(1, 2), lossMask: Uint8Array.of(0) }), RangeError);
});

t.test('malformed bodies', async (t) => {
  t.throws(() => decodeSampleBody(new Uint8Array(7)), { code: 'NDP_ERR_BAD_BODY' });
  t.throws(() => decodeSampleBody(Uint8Array.from(Buffer.from('010000000000000200000001', 'hex'))), { code: 'NDP_ERR_BAD_BODY' });
  t.throws(() => decodeSampleBody(Uint8Array.from(Buffer.from('020000000000000100000001', 'hex'))), { code: 'NDP_ERR_UNSUPPORTED_VERSION' });
  t.same([...decodeSampleBody(encodeSampleBody({ tokens: new Int32Array(0) })).tokens], [], 'zero tokens is a valid body');
});
