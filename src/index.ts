/** The public API of ndp. Internal pieces for tests and tools are in ./internal.ts. */
export { crc16 } from './protocol/crc16.js';
export { encodeFrame, decodeFrame, type DecodedFrame, type FrameFields } from './protocol/frame.js';
export { NdpError, ERROR_CODES, type NdpErrorCode } from './protocol/errors.js';
export { SRC, DST, TYP, CONTROL, codeName, parseCode } from './protocol/registry.js';
export { openNdpFile, NdpFile, type OpenNdpFileOptions, type CrcPolicy, type StoredSample, type ReaderStats } from './dataset/ndp-file.js';
export { NdpFileWriter, type NdpFileWriterOptions } from './dataset/ndp-file-writer.js';
export type { Sample, SampleSource } from './dataset/sample.js';
