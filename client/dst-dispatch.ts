/**
 * DST dispatch (NDP.md §4.3): a table of handlers by DST code. Sample frames for EMBEDDING go to the
 * batcher by default; a frame for a DST with no handler is a legal v1 frame this trainer has no use
 * for, so it is counted per DST and dropped (`unrouted`), never an error.
 */
import type { DecodedFrame } from '../src/protocol/frame.js';

export type DstHandler = (frame: DecodedFrame) => void;

export class DstDispatch {
  private readonly handlers = new Map<number, DstHandler>();
  private readonly unrouted = new Map<number, number>();

  /** Installs (or replaces) the handler for `dst`. */
  on(dst: number, handler: DstHandler): this {
    if (!Number.isInteger(dst) || dst < 0 || dst > 255) throw new RangeError(`DST must be 0..255, got ${dst}`);
    this.handlers.set(dst, handler);
    return this;
  }

  off(dst: number): this {
    this.handlers.delete(dst);
    return this;
  }

  has(dst: number): boolean {
    return this.handlers.has(dst);
  }

  /** Hands the frame to its DST's handler; returns false (and counts it) when there is none. */
  dispatch(frame: DecodedFrame): boolean {
    const handler = this.handlers.get(frame.dst);
    if (handler === undefined) {
      this.unrouted.set(frame.dst, (this.unrouted.get(frame.dst) ?? 0) + 1);
      return false;
    }
    handler(frame);
    return true;
  }

  /** Frames dropped for want of a handler, by DST code. */
  unroutedByDst(): ReadonlyMap<number, number> {
    return this.unrouted;
  }
}
