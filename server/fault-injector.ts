/**
 * Fault injection for loss experiments (NDP.md §7.12): decides from (seed, seq) alone whether the
 * first transmission of a frame is dropped or gets one bit flipped, so the injected set is the same
 * in every run, and counts exactly what it did.
 */
import { FRAME_HEADER_BYTES } from '../src/protocol/registry.js';
import { injectionBit, injectionDraw } from './seeded-order.js';

export type InjectedFate = 'send' | 'drop' | 'corrupt';

export class FaultInjector {
  dropped = 0;
  corrupted = 0;

  constructor(readonly drop: number, readonly corrupt: number, readonly seed: number) {}

  get active(): boolean {
    return this.drop > 0 || this.corrupt > 0;
  }

  /** The fate of the first transmission of `seq`. */
  fate(seq: number): InjectedFate {
    if (!this.active) return 'send';
    const u = injectionDraw(this.seed, seq) / 2 ** 32;
    if (u < this.drop) return 'drop';
    if (u < this.drop + this.corrupt) return 'corrupt';
    return 'send';
  }

  /** Applies the fate of `seq` to `frame`: undefined (dropped), the frame, or a corrupted copy. Counts it. */
  apply(seq: number, frame: Uint8Array): Uint8Array | undefined {
    const fate = this.fate(seq);
    if (fate === 'send') return frame;
    if (fate === 'drop') {
      this.dropped++;
      return undefined;
    }
    this.corrupted++;
    const copy = Uint8Array.from(frame);
    // Only bytes after the header: a flipped magic or LEN would be a framing error, not a bad CRC.
    const bit = injectionBit(injectionDraw(this.seed, seq), 8 * (frame.length - FRAME_HEADER_BYTES));
    copy[FRAME_HEADER_BYTES + (bit >> 3)]! ^= 0x80 >> (bit & 7);
    return copy;
  }
}
