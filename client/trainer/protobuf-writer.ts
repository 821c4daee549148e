/**
 * A minimal protocol-buffers encoder: just the wire types ONNX's ModelProto needs (varint, 32-bit,
 * length-delimited). Messages are encoded bottom-up into byte arrays; the model is written once per
 * session, so the simplicity beats streaming.
 */

const WIRE_VARINT = 0;
const WIRE_LENGTH_DELIMITED = 2;
const WIRE_FIXED32 = 5;

export class ProtobufWriter {
  private chunks: Uint8Array[] = [];
  private scratch: number[] = [];
  private length = 0;

  private flushScratch(): void {
    if (this.scratch.length === 0) return;
    this.chunks.push(Uint8Array.from(this.scratch));
    this.length += this.scratch.length;
    this.scratch = [];
  }

  private tag(field: number, wireType: number): void {
    this.rawVarint(BigInt((field << 3) | wireType));
  }

  /** Varint of a (possibly negative, then 10-byte two's complement) 64-bit integer. */
  private rawVarint(value: bigint): void {
    let v = BigInt.asUintN(64, value);
    while (v >= 0x80n) {
      this.scratch.push(Number(v & 0x7fn) | 0x80);
      v >>= 7n;
    }
    this.scratch.push(Number(v));
  }

  int(field: number, value: number | bigint): this {
    this.tag(field, WIRE_VARINT);
    this.rawVarint(BigInt(value));
    return this;
  }

  float(field: number, value: number): this {
    this.tag(field, WIRE_FIXED32);
    const b = new Uint8Array(4);
    new DataView(b.buffer).setFloat32(0, value, true);
    this.scratch.push(...b);
    return this;
  }

  bytes(field: number, value: Uint8Array): this {
    this.tag(field, WIRE_LENGTH_DELIMITED);
    this.rawVarint(BigInt(value.byteLength));
    this.flushScratch();
    if (value.byteLength > 0) {
      this.chunks.push(value);
      this.length += value.byteLength;
    }
    return this;
  }

  string(field: number, value: string): this {
    return this.bytes(field, new TextEncoder().encode(value));
  }

  message(field: number, build: (w: ProtobufWriter) => void): this {
    const child = new ProtobufWriter();
    build(child);
    return this.bytes(field, child.finish());
  }

  /** Packed repeated int64. */
  packedInts(field: number, values: readonly (number | bigint)[]): this {
    const child = new ProtobufWriter();
    for (const v of values) child.rawVarint(BigInt(v));
    return this.bytes(field, child.finish());
  }

  /** Packed repeated float. */
  packedFloats(field: number, values: readonly number[]): this {
    const f = new Float32Array(values);
    return this.bytes(field, new Uint8Array(f.buffer));
  }

  finish(): Uint8Array {
    this.flushScratch();
    if (this.chunks.length === 1 && this.chunks[0] !== undefined) return this.chunks[0];
    const out = new Uint8Array(this.length);
    let offset = 0;
    for (const c of this.chunks) {
      out.set(c, offset);
      offset += c.byteLength;
    }
    return out;
  }
}
