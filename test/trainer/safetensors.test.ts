import t from 'tap';
import { readSafetensors, writeSafetensors, MAX_SAFETENSORS_HEADER } from '../../client/trainer/safetensors.js';
import { isNdpError } from '../../src/protocol/errors.js';

function file(header: Record<string, unknown>, data: Uint8Array, headerLength?: number): Uint8Array {
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerLength ?? json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

t.test('write then read round-trips names, shapes, values; data starts 8-byte aligned; metadata kept out of tensors', async (t) => {
  const tensors = new Map([
    ['b.weight', { shape: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, 6]) }],
    ['a.weight', { shape: [1], data: Float32Array.from([-0.5]) }],
  ]);
  const bytes = writeSafetensors(tensors, { format: 'pt' });
  const headerLength = Number(new DataView(bytes.buffer).getBigUint64(0, true));
  t.equal((8 + headerLength) % 8, 0, 'aligned');
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + headerLength))) as Record<string, { data_offsets: number[] }>;
  t.same(header.__metadata__, { format: 'pt' });
  t.same(header['a.weight']?.data_offsets, [0, 4], 'names sorted, a first');
  const back = readSafetensors(bytes);
  t.same([...back.keys()].sort(), ['a.weight', 'b.weight']);
  t.same(back.get('b.weight'), { shape: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, 6]) });
});

t.test('F16 and BF16 tensors convert to float32', async (t) => {
  // 1.0, -2.0, 0.5 in half precision; 1.0, -2.0, 0.5 in bfloat16.
  const f16 = new Uint16Array([0x3c00, 0xc000, 0x3800]);
  const bf16 = new Uint16Array([0x3f80, 0xc000, 0x3f00]);
  const data = new Uint8Array(12);
  data.set(new Uint8Array(f16.buffer), 0);
  data.set(new Uint8Array(bf16.buffer), 6);
  const bytes = file({ h: { dtype: 'F16', shape: [3], data_offsets: [0, 6] }, b: { dtype: 'BF16', shape: [3], data_offsets: [6, 12] } }, data);
  const back = readSafetensors(bytes);
  t.same(Array.from(back.get('h')!.data), [1, -2, 0.5]);
  t.same(Array.from(back.get('b')!.data), [1, -2, 0.5]);
});

t.test('malformed files are refused with NDP_ERR_BAD_SAFETENSORS', async (t) => {
  const bad = (bytes: Uint8Array, what: string): void => {
    let caught: unknown;
    try {
      readSafetensors(bytes);
    } catch (err) {
      caught = err;
    }
    t.ok(isNdpError(caught, 'NDP_ERR_BAD_SAFETENSORS'), `${what}: ${(caught as Error | undefined)?.message}`);
  };
  bad(new Uint8Array(4), 'shorter than the length prefix');
  bad(file({}, new Uint8Array(0), 1000), 'header length past the end');
  bad(file({}, new Uint8Array(0), MAX_SAFETENSORS_HEADER + 1), 'header length over the limit');
  const notJson = file({}, new Uint8Array(0));
  notJson[8] = 0x7b + 1;
  bad(notJson, 'header not JSON');
  bad(file({ x: { dtype: 'F32', shape: [4], data_offsets: [0, 16] } }, new Uint8Array(8)), 'offsets past the end');
  bad(file({ x: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, new Uint8Array(8)), 'byte count not matching the shape');
  bad(file({ x: { dtype: 'I64', shape: [1], data_offsets: [0, 8] } }, new Uint8Array(8)), 'integer dtype');
});
