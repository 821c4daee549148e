/** The trainer client's public API (issue #5): connect to a data server, iterate batches or samples. */
export { connect, NdpClient, type ConnectOptions, type BatchesOptions, type ClientBatch, type ClientStats, type ClientStatus, type ReconnectOptions } from './client.js';
export type { Batch } from './batch.js';
export { Batcher, IGNORE_LABEL, type BatcherOptions, type TruncationPolicy } from './batcher.js';
export { EqualStepsBatcher } from './equal-steps.js';
export { PrefetchQueue, type PrefetchStats } from './prefetch-queue.js';
export { Accounting, FRAME_DROP_REASONS, SAMPLE_DROP_REASONS, type AccountingSnapshot, type FrameDropReason, type SampleDropReason } from './accounting.js';
export { HttpApi, type DatasetInfo, type OpenedSession } from './http-api.js';
export type { AcceptInfo, DeliveredSample, SessionOptions } from './session.js';
