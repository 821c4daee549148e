/**
 * Conformance: the reference implementation against protocol-spec/vectors/*.json (schema in the
 * README there), and the committed files against what test/protocol/make-vectors.ts builds.
 */
import t from 'tap';
import { readFileSync, readdirSync } from 'node:fs';
import { decodeControl } from '../../src/protocol/control.js';
import { decodeFrame } from '../../src/protocol/frame.js';
import { isNdpError } from '../../src/protocol/errors.js';
import { Reassembler } from '../../src/protocol/reassembler.js';
import { decodeSampleBody } from '../../src/protocol/sample-body.js';
import { segmentSample } from '../../src/protocol/segmenter.js';
import { StreamDecoder, type StreamEvent } from '../../src/protocol/stream-decoder.js';
import { readTransportHeader } from '../../src/protocol/transport-header.js';
import { buildVectors, vectorText, vectorsDir } from './make-vectors.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const bytes = (h: string): Uint8Array => Uint8Array.from(Buffer.from(h, 'hex'));
const load = <T>(name: string): T => JSON.parse(readFileSync(vectorsDir() + name, 'utf8')) as T;

function outcome(fn: () => object): object {
  try {
    return fn();
  } catch (err) {
    if (isNdpError(err)) return { error: err.code };
    throw err;
  }
}

interface Vector { name: string; hex: string; expect: Record<string, unknown> }

t.test('the committed vector files are what make-vectors builds', async (t) => {
  const built = buildVectors();
  const onDisk = readdirSync(vectorsDir()).filter((f) => f.endsWith('.json')).sort();
  t.same(onDisk, Object.keys(built).sort());
  for (const [name, content] of Object.entries(built)) t.equal(readFileSync(vectorsDir() + name, 'utf8') === vectorText(content), true, `${name} is up to date (run node dist/test/protocol/make-vectors.js)`);
});

t.test('frames.json', async (t) => {
  const { vectors } = load<{ vectors: Vector[] }>('frames.json');
  t.ok(vectors.length >= 25);
  for (const v of vectors) {
    const got = outcome(() => {
      const f = decodeFrame(bytes(v.hex));
      return { frame: { src: f.src, dst: f.dst, typ: f.typ, len: f.len, payload: hex(f.payload), crc: f.crc, crcOk: f.crcOk } };
    });
    t.same(got, v.expect, v.name);
  }
});

t.test('stream.json, as given and byte at a time', async (t) => {
  const { vectors } = load<{ vectors: Array<{ name: string; chunks: string[]; maxFrameBytes?: number; expect: object[] }> }>('stream.json');
  const run = (chunks: Uint8Array[], max: number | undefined): object[] => {
    const d = new StreamDecoder(max === undefined ? {} : { maxFrameBytes: max });
    const events: StreamEvent[] = [...chunks.flatMap((c) => d.push(c)), ...d.end()];
    return events.map((e) => (e.type === 'frame' ? { frame: hex(e.bytes), crcOk: e.frame.crcOk } : { skipped: e.bytes, code: e.error.code }));
  };
  for (const v of vectors) {
    const chunks = v.chunks.map(bytes);
    t.same(run(chunks, v.maxFrameBytes), v.expect, v.name);
    const all = Uint8Array.from(chunks.flatMap((c) => [...c]));
    t.same(run([...all].map((x) => Uint8Array.of(x)), v.maxFrameBytes), v.expect, `${v.name}, byte at a time`);
  }
});

t.test('sample-body.json', async (t) => {
  const { vectors } = load<{ vectors: Vector[] }>('sample-body.json');
  for (const v of vectors) {
    t.same(outcome(() => {
      const b = decodeSampleBody(bytes(v.hex));
      return { tokens: [...b.tokens], lossMask: [...b.lossMask] };
    }), v.expect, v.name);
  }
});

t.test('segments.json: segmentation, transport headers, reassembly', async (t) => {
  interface Seg { datagram: number; input: Record<string, number | string> & { body: string }; frames: string[]; name: string }
  const file = load<{
    segmentation: Seg[];
    transportHeaders: Array<{ name: string; payload: string; expect: object }>;
    reassembly: Array<{ name: string; frames: string[]; expect: string[]; body: string }>;
  }>('segments.json');
  for (const s of file.segmentation) {
    const input = { ...s.input, body: bytes(s.input.body) } as unknown as Parameters<typeof segmentSample>[0];
    t.same(segmentSample(input, { datagram: s.datagram }).frames.map(hex), s.frames, s.name);
  }
  for (const v of file.transportHeaders) {
    t.same(outcome(() => {
      const { header, fragment } = readTransportHeader(bytes(v.payload));
      return { header: { ...header }, fragment: hex(fragment) };
    }), v.expect, v.name);
  }
  for (const v of file.reassembly) {
    const r = new Reassembler();
    const got = v.frames.map((f) => {
      const frame = decodeFrame(bytes(f));
      if (!frame.crcOk) return 'bad_crc';
      const { header, fragment } = readTransportHeader(frame.payload);
      const result = r.accept(header, fragment);
      if (result.status === 'complete') t.equal(hex(result.body), v.body, `${v.name}: the body`);
      return result.status === 'dropped' ? `dropped:${result.reason}` : result.status;
    });
    t.same(got, v.expect, v.name);
  }
});

t.test('control.json', async (t) => {
  const { vectors } = load<{ vectors: Vector[] }>('control.json');
  const plain = (value: unknown): unknown => {
    if (value instanceof Uint8Array) return { $bin: hex(value) };
    if (Array.isArray(value)) return value.map(plain);
    if (typeof value === 'object' && value !== null) return Object.fromEntries(Object.entries(value).map(([k, x]) => [k, plain(x)]));
    return value;
  };
  for (const v of vectors) {
    t.same(outcome(() => {
      const f = decodeFrame(bytes(v.hex));
      return { message: plain(decodeControl(f.payload)) as object };
    }), v.expect, v.name);
  }
});
