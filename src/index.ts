/** The public API of ndp. Internal pieces for tests and tools are in ./internal.ts. */
export { crc16 } from './protocol/crc16.js';
export { encodeFrame, decodeFrame, type DecodedFrame, type FrameFields } from './protocol/frame.js';
export { NdpError, ERROR_CODES, type NdpErrorCode } from './protocol/errors.js';
export { SRC, DST, TYP, CONTROL, codeName, parseCode } from './protocol/registry.js';
export { SEGMENT_FLAG, DEFAULT_PORTS, MAX_PAYLOAD } from './protocol/registry.js';
export { readTransportHeader, writeTransportHeader, TRANSPORT_HEADER_BYTES, type TransportHeader } from './protocol/transport-header.js';
export { encodeSampleBody, decodeSampleBody, type SampleTokens } from './protocol/sample-body.js';
export { segmentSample, writeSegments, writeSegment, fragmentCount, segmentedSize, DEFAULT_DATAGRAM, MAX_UDP_DATAGRAM, MAX_FRAME_BYTES, type SegmentInput, type Segmented } from './protocol/segmenter.js';
export { Reassembler, sampleKey, REASSEMBLER_DEFAULTS, type ReassemblerOptions, type ReassemblerStats, type AcceptResult, type DroppedSample } from './protocol/reassembler.js';
export { StreamDecoder, decodeStream, type StreamDecoderOptions, type StreamEvent, type StreamDecoderStats } from './protocol/stream-decoder.js';
export { encodeControl, decodeControl, encodeControlFrame, type ControlMessage } from './protocol/control.js';
export { openNdpFile, NdpFile, type OpenNdpFileOptions, type CrcPolicy, type StoredSample, type ReaderStats } from './dataset/ndp-file.js';
export { NdpFileWriter, type NdpFileWriterOptions } from './dataset/ndp-file-writer.js';
export { buildDemoData, type DemoData, type DemoDataOptions } from './dataset/demo-data.js';
export { convertToNdp, type ConvertOptions, type ConvertSummary } from './dataset/convert.js';
export { loadTokenizer, type TextTokenizer } from './dataset/tokenizer.js';
export type { Sample, SampleSource } from './dataset/sample.js';
