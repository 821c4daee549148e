/**
 * Internal pieces for tests, benchmarks and tools (`ndp/internal`): not a stable API. The public one
 * is ./index.ts.
 */
export { crc16Bitwise, CRC16_INIT } from './protocol/crc16.js';
export { writeFrame, readFrameAt, frameSize } from './protocol/frame.js';
export { dropLabel, isNdpError } from './protocol/errors.js';
export { REGISTRY, MAGIC, FRAME_HEADER_BYTES, FRAME_CRC_BYTES, FRAME_OVERHEAD } from './protocol/registry.js';
export { sampleBodySize, BODY_HEADER_BYTES, BODY_VERSION } from './protocol/sample-body.js';
export { TRANSPORT_VERSION } from './protocol/transport-header.js';
export { fragmentBytes, MIN_DATAGRAM, MAX_FRAGMENTS } from './protocol/segmenter.js';
export { STREAM_DECODER_DEFAULTS } from './protocol/stream-decoder.js';
