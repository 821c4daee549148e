/**
 * The trainer's TENSOR frame writer (NDP.md §11.2): frames read back with the stream decoder give
 * the tensor's header fields and its bytes in order, the size prediction is exact, and every input
 * the wire cannot carry is refused with NDP_ERR_BAD_TENSOR instead of being written wrong.
 */
import t from 'tap';
import { tensorFramesSize, tensorHeaderSize, writeTensorFrames, TENSOR_FLAG_LITTLE_ENDIAN, type NamedTensor } from '../../client/tensor-frame.js';
import { isNdpError } from '../../src/protocol/errors.js';
import { readFrameAt } from '../../src/protocol/frame.js';
import { TYP } from '../../src/protocol/registry.js';

function write(tensor: NamedTensor, maxPayload?: number): Uint8Array {
  const out = new Uint8Array(tensorFramesSize(tensor, maxPayload));
  const end = writeTensorFrames(out, 0, 7, tensor, maxPayload);
  if (end !== out.length) throw new Error(`wrote ${end} bytes, tensorFramesSize said ${out.length}`);
  return out;
}

t.test('a tensor split over several frames reads back whole, header fields per frame', async (t) => {
  const data = Int32Array.from({ length: 1000 }, (_, i) => i * 3 - 500);
  const tensor: NamedTensor = { name: 'input_ids', shape: [10, 100], data };
  const maxPayload = 1024;
  const bytes = write(tensor, maxPayload);
  const header = tensorHeaderSize(2, 'input_ids'.length);
  const joined = new Uint8Array(data.byteLength);
  let offset = 0;
  let frames = 0;
  for (let read = readFrameAt(bytes, 0); read !== undefined; read = readFrameAt(bytes, read.end)) {
    const { frame } = read;
    t.ok(frame.crcOk, `frame ${frames}: CRC-16 holds`);
    t.equal(frame.typ, TYP.TENSOR);
    t.ok(frame.payload.length <= maxPayload, `frame ${frames}: payload within ${maxPayload} bytes`);
    const view = new DataView(frame.payload.buffer, frame.payload.byteOffset, frame.payload.length);
    t.equal(view.getUint8(2), TYP.TOKEN_IDS, 'int32 data is dtype TOKEN_IDS');
    t.equal(view.getUint8(3), 2, 'ndim');
    t.equal(view.getUint32(4), 7, 'batch id');
    t.equal(view.getUint32(8), data.byteLength, 'byteLength of the whole tensor');
    t.equal(view.getUint32(12), offset, 'fragOffset follows the previous fragment');
    t.same([view.getUint32(16), view.getUint32(20)], [10, 100], 'shape');
    const part = frame.payload.subarray(header);
    joined.set(part, offset);
    offset += part.length;
    frames++;
    if (frames === 1) t.equal(view.getUint8(1) & TENSOR_FLAG_LITTLE_ENDIAN, new Uint8Array(Uint16Array.of(1).buffer)[0], 'LITTLE_ENDIAN flag names host order');
  }
  t.equal(frames, Math.ceil(data.byteLength / (maxPayload - header)), 'as many frames as the payload room needs');
  t.equal(offset, data.byteLength, 'every byte arrived');
  t.same(new Int32Array(joined.buffer), data, 'elements equal the source');
});

t.test('an empty tensor is one frame; float32 is dtype FLOAT32', async (t) => {
  const bytes = write({ name: 'w', shape: [0, 4], data: new Float32Array(0) });
  const read = readFrameAt(bytes, 0)!;
  t.equal(read.end, bytes.length, 'one frame');
  t.equal(read.frame.payload[2], TYP.FLOAT32);
});

t.test('inputs the wire cannot carry are refused with NDP_ERR_BAD_TENSOR', async (t) => {
  const cases: Array<[string, NamedTensor, number?]> = [
    ['name over 255 bytes', { name: 'x'.repeat(256), shape: [1], data: new Int32Array(1) }],
    ['9 dimensions', { name: 'x', shape: [1, 1, 1, 1, 1, 1, 1, 1, 1], data: new Int32Array(1) }],
    ['shape and data disagree', { name: 'x', shape: [2, 3], data: new Int32Array(5) }],
    ['negative dimensions whose product matches', { name: 'x', shape: [-1, -4], data: new Int32Array(4) }],
    ['fractional dimension', { name: 'x', shape: [0.5, 8], data: new Int32Array(4) }],
    ['header leaves no payload room', { name: 'x'.repeat(40), shape: [1], data: new Int32Array(1) }, 40],
  ];
  for (const [what, tensor, maxPayload] of cases) {
    let caught: unknown;
    try {
      writeTensorFrames(new Uint8Array(1 << 16), 0, 1, tensor, maxPayload);
    } catch (err) {
      caught = err;
    }
    t.ok(isNdpError(caught, 'NDP_ERR_BAD_TENSOR'), `${what}: ${String(caught)}`);
  }
});

t.test('the limits themselves are accepted: a 255-byte name, 8 dimensions', async (t) => {
  const bytes = write({ name: 'n'.repeat(255), shape: [1, 1, 1, 1, 1, 1, 1, 2], data: new Int32Array(2) });
  const read = readFrameAt(bytes, 0)!;
  t.ok(read.frame.crcOk);
  t.equal(read.frame.payload[3], 8, 'ndim 8');
});
