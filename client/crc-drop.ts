/**
 * CRC-Drop augmentation (the seed's `crc_drop_rate`): the receiver treats a seeded fraction of frames
 * whose CRC is good as if their CRC had failed. A sample that lost a fragment this way is dropped
 * whole (counted `augment`) unless the session repairs gaps, in which case the fragment is asked for
 * again and the retransmission faces the same coin. The seed makes a run repeatable: the same seed
 * over the same frame sequence drops the same frames.
 */
import { SeededRandom } from './seeded-random.js';

export interface CrcDropOptions {
  /** Fraction of good SEGMENT frames to drop, 0 ≤ rate < 1. Defaults to 0 (off). */
  readonly rate?: number;
  /** PRNG seed. Defaults to 0. */
  readonly seed?: number;
}

export class CrcDrop {
  readonly rate: number;
  private readonly random: SeededRandom;

  constructor(options: CrcDropOptions = {}) {
    const { rate = 0, seed = 0 } = options;
    // rate 1 would drop everything and, with repair, ask for the same frames forever.
    if (!(rate >= 0 && rate < 1)) throw new RangeError(`crcDropRate must be in [0, 1), got ${rate}`);
    this.rate = rate;
    this.random = new SeededRandom(seed);
  }

  /** Whether to drop the next good frame. Draws nothing when the rate is 0. */
  drop(): boolean {
    return this.rate > 0 && this.random.next() < this.rate;
  }
}
