/**
 * What a loss-rate experiment records: one `RunRecord` per (rate, seed) run and the parameters they
 * shared. `runs.json` in a report folder is exactly an `ExperimentResult`; the report, the plots and
 * the conclusion are computed from it alone, so a report can be re-rendered from its raw data.
 */

/** Where the loss is injected: the trainer's CRC-Drop augmentation, the server's fault injector, or nftables on a veth pair. */
export type LossPlace = 'client' | 'server' | 'network';
export const LOSS_PLACES: readonly LossPlace[] = ['client', 'server', 'network'];

export interface StepPoint {
  readonly step: number;
  readonly loss: number;
}

/** Exact counts of what the injector did, from the injector's own counters. */
export interface InjectedCounts {
  /** Who counted: `client` (trainer's CRC-Drop), `server` (the session's injector), `nft` (the lab's rules). */
  readonly counter: 'client' | 'server' | 'nft';
  /** Data frames the injector saw, where it counts them. */
  readonly seen?: number;
  readonly dropped: number;
  readonly corrupted: number;
}

export interface RunRecord {
  /** Loss rate of this run (fraction of data frames). */
  readonly rate: number;
  /** 0-based seed index; the seeds it derives are below. */
  readonly seedIndex: number;
  /** Seed of the model's initial weights (the base model and the LoRA init). */
  readonly modelSeed: number;
  /** Seed of the loss injector (CRC-Drop / server injection; nftables is not seedable). */
  readonly lossSeed: number;
  readonly ok: boolean;
  /** Why the run failed (stderr tail), when `ok` is false. */
  readonly error?: string;
  /** Training loss per optimizer step. */
  readonly trainCurve: readonly StepPoint[];
  /** Held-out eval loss at each evaluation. */
  readonly evalCurve: readonly StepPoint[];
  /** Mean training loss over the last `ceil(steps / 10)` steps (a single step's loss is one batch: noisy). */
  readonly finalTrainLoss: number;
  /** Held-out eval loss after the last step (the eval split is never trained on). */
  readonly finalEvalLoss: number;
  /** Trained (non-padding) tokens per second of training wall time, as the trainer reports it. */
  readonly tokensPerSecond: number;
  readonly steps: number;
  readonly wallSeconds: number;
  /** The client's final accounting (`ndp pull --stats`), flattened to dotted keys (e.g. `frames.dropped.augment`). */
  readonly accounting: Readonly<Record<string, number>>;
  readonly injected?: InjectedCounts;
  /** What the stream delivered to training, and the check that it sat in the one shared order. */
  readonly delivery?: {
    readonly samples: number;
    readonly tokens: number;
    readonly orderMismatches: number;
    readonly orderChecked: number;
  };
  /** The exact commands the run executed. */
  readonly commands: Readonly<Record<string, readonly string[]>>;
}

export interface ExperimentParameters {
  readonly rates: readonly number[];
  readonly seeds: number;
  readonly steps: number;
  readonly where: LossPlace;
  /** What the server and network injectors do to a hit frame: break its CRC (`corrupt`, the seed's scenario) or drop it. The client's CRC-Drop always drops. */
  readonly fault: 'corrupt' | 'drop';
  readonly model: string;
  readonly evalEvery: number;
  /**
   * Session loss policy: `lossy` (a frame hit by the injector is never resent, its sample is dropped:
   * the seed's augmentation) or `repair` (it is NACKed and resent, so the loss never reaches training).
   */
  readonly loss: 'lossy' | 'repair';
  /** Added to the seed index to make the model and loss seeds. */
  readonly seedBase: number;
  readonly parallel: number;
  /** Shuffle seed of every run's session (`ndp pull --seed`): one data order for all runs. */
  readonly dataSeed: number;
  /** Held-out batches per evaluation (`ndp train --eval-batches`). */
  readonly evalBatches: number;
  /** Extra arguments passed to every `ndp train`. */
  readonly trainArgs: readonly string[];
}

export interface ExperimentResult {
  readonly experiment: 'loss-rate';
  /** The command line that made it, as typed (quoted). */
  readonly command: string;
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly host: { readonly cpus: number; readonly cpuModel: string; readonly node: string; readonly platform: string };
  /** The parameters, plus the epochs every run pulled. */
  readonly parameters: ExperimentParameters & { readonly pullEpochs: number };
  readonly runs: readonly RunRecord[];
}
