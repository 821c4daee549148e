/**
 * Every error ndp raises on bad input, in one module (NDP.md §9 lists the codes).
 * A code is stable: users match on it, and metrics use the same string (lower-cased, without the
 * `NDP_ERR_` prefix) as the label of the drop counter for that reason.
 */
export const ERROR_CODES = {
  // frame layer (NDP.md §3)
  NDP_ERR_BAD_MAGIC: 'first byte is not the frame magic 0xAA',
  NDP_ERR_TRUNCATED: 'fewer bytes than the frame header or LEN announce',
  NDP_ERR_TRAILING_BYTES: 'bytes after the end of a whole frame',
  NDP_ERR_PAYLOAD_TOO_LARGE: 'payload longer than LEN can express or a configured limit allows',
  NDP_ERR_BAD_CRC: 'CRC-16 of the frame does not match',
  // transport header and sample body (NDP.md §4, §5)
  NDP_ERR_BAD_SEGMENT: 'SEGMENT payload shorter than its transport header or with inconsistent fields',
  NDP_ERR_UNSUPPORTED_VERSION: 'transport header or file version this implementation does not speak',
  NDP_ERR_BAD_BODY: 'sample body malformed (token count does not match its length)',
  NDP_ERR_BODY_CRC: 'CRC-32 of a reassembled sample body does not match',
  NDP_ERR_FRAGMENT_MISMATCH: 'fragments of one sample disagree on count, length or checksum',
  NDP_ERR_SAMPLE_TOO_LARGE: 'sample body longer than the reassembler accepts (maxSampleBytes)',
  // control messages (NDP.md §6)
  NDP_ERR_BAD_CONTROL: 'CONTROL payload is not a msgpack map with a numeric type',
  NDP_ERR_UNKNOWN_CONTROL: 'control message type not in the registry',
  // .ndp files (NDP.md §10, src/dataset/)
  NDP_ERR_FILE_BAD_HEADER: 'not an .ndp file, or its header is damaged (magic, length, CRC-32, names)',
  NDP_ERR_FILE_TRUNCATED: 'file shorter than its header, index or last frame announce',
  NDP_ERR_FILE_INCOMPLETE: '.ndp file without an index: its writer did not finish (ndp inspect --reindex recovers it)',
  NDP_ERR_INDEX_MISMATCH: '.ndp index damaged (CRC-32) or not matching the frames of the body',
  NDP_ERR_SAMPLE_OUT_OF_RANGE: 'sample index not in 0..sampleCount-1',
  NDP_ERR_FILE_TOO_MANY_SAMPLES: 'more samples than an .ndp file can index (2^32 - 1)',
  // ndp convert input (src/dataset/convert*)
  NDP_ERR_INPUT_UNREADABLE: 'an input file or directory cannot be read',
  NDP_ERR_INPUT_BAD_JSON: 'an input line is not a JSON object',
  NDP_ERR_INPUT_BINARY: 'a source file in a directory input is binary (NUL byte): skipped',
  NDP_ERR_INPUT_TOO_LARGE: 'a source file in a directory input is larger than --max-file-bytes: skipped',
  NDP_ERR_INPUT_LINE_TOO_LONG: 'a JSONL input line is longer than --max-line-bytes: skipped, never held whole',
  NDP_ERR_INPUT_UNKNOWN_FORMAT: 'an input record has none of text, prompt+completion, messages, instruction+output',
  NDP_ERR_INPUT_EMPTY: 'an input record tokenizes to no tokens, or no token is trained on',
  NDP_ERR_SAMPLE_OVERFLOW: 'a sample longer than --max-tokens was dropped (--overflow drop)',
  NDP_ERR_TOKENIZER_LOAD: 'the tokenizer folder or embedded tokenizer cannot be loaded',
  // loss-rate experiments (`ndp experiment`, src/experiment/)
  NDP_ERR_NETNS_UNAVAILABLE: 'network namespaces or nftables not permitted here (needs root, iproute2, nftables): --where network is skipped',
  NDP_ERR_EXPERIMENT_BAD_OPTION: 'an experiment option is out of range or malformed (rates, seeds, steps, parallelism)',
  NDP_ERR_EXPERIMENT_RUN_FAILED: 'a server or trainer process of an experiment run failed; the run is reported with its stderr',
  // worker channel to a PyTorch worker (NDP.md §11, client/worker-channel.ts, python/ndp_torch/)
  NDP_ERR_WORKER_START: 'the training worker could not start or connect (no Python with torch, connect timeout)',
  NDP_ERR_WORKER_EXITED: 'the training worker (the torch process, or the ONNX backend thread) ended while requests were pending (exit status or signal, stderr tail)',
  NDP_ERR_WORKER_PROTOCOL: 'a worker-channel peer sent a frame or message that breaks NDP.md §11',
  NDP_ERR_WORKER_FAILED: 'the training worker reported an error it could not recover from (its message is forwarded)',
  NDP_ERR_WORKER_TIMEOUT: 'the training worker did not answer a request within replyTimeoutMs',
  NDP_ERR_BAD_TENSOR: 'TENSOR frame payload malformed: header, dtype, shape/length, fragment order or size limit',
  NDP_ERR_BAD_FEED_OPTION: 'an ndp feed option is out of range or malformed (batch, seq, epochs, limits)',
  // trainer client (client/, ndp pull; NDP.md §7.15)
  NDP_ERR_BAD_URL: 'a server URL the client cannot use (scheme not udp://, ws://, wss://, http(s)://; no host or port)',
  NDP_ERR_UNREACHABLE: 'the data server did not answer (connection refused, no COOKIE/ACCEPT after every retry, reconnect attempts exhausted)',
  NDP_ERR_REFUSED: 'the data server refused the session (REJECT, HTTP error, WebSocket upgrade refused); the server\'s code is in the message',
  NDP_ERR_CONNECTION_CLOSED: 'the WebSocket closed with a code that is neither normal nor an NDP_ERR_* reason',
  NDP_ERR_STREAM_ENDED_EARLY: 'the session ended (BYE, close) before END delivered the whole stream, and it could not be resumed',
  NDP_ERR_SERVER_SILENT: 'nothing arrived from the server for deadAfterMs: the client reconnects from its cursor',
  // LoRA training session (client/trainer/)
  NDP_ERR_DEVICE_UNAVAILABLE: 'the requested training device (webgpu, cuda) is not available in this onnxruntime-node build or machine',
  NDP_ERR_VOCAB_MISMATCH: "the tokenizer's vocabulary size does not match the model's",
  NDP_ERR_TOKEN_OUT_OF_RANGE: 'a batch holds a token id or label outside the model vocabulary',
  NDP_ERR_BAD_SAFETENSORS: 'a safetensors file is malformed (header length, JSON, offsets, dtype)',
  NDP_ERR_BAD_CHECKPOINT: 'a model folder lacks config.json or a weight the architecture needs, or a shape disagrees',
  NDP_ERR_BAD_TRAIN_OPTION: 'a training option is out of range or malformed (model, rank, targets, steps, sizes)',
  // packet captures (src/capture/, ndp inspect FILE.pcap)
  NDP_ERR_BAD_CAPTURE: 'not a pcap/pcapng file, or a record or block in it contradicts itself',
  NDP_ERR_CAPTURE_STREAM: 'a captured WebSocket stream cannot be followed (segment missing beyond the hold limit, message too large, compressed)',
  // data server (server/, ndp serve; NDP.md §7)
  NDP_ERR_BAD_PARAMS: 'session parameters invalid (type, range, unknown key); HTTP 400, REJECT, WebSocket close 4400',
  NDP_ERR_UNKNOWN_DATASET: 'a session names a dataset or SRC the server does not serve (or a SRC several datasets share); HTTP 404, REJECT',
  NDP_ERR_UNAUTHORIZED: 'missing or wrong token (server started with --token); HTTP 401, REJECT, WebSocket close 4401',
  NDP_ERR_TOO_MANY_SESSIONS: 'the server holds --max-sessions sessions already; HTTP 503, REJECT',
  NDP_ERR_TOO_MANY_CONNECTIONS: 'a TCP listener (WebSocket, HTTP) holds --max-connections connections already: the new one is closed on accept and counted',
  NDP_ERR_UNKNOWN_SESSION: 'no session with that id (HTTP 404; in-band: dropped and counted)',
  NDP_ERR_SESSION_CLOSED: 'in-band message about a session that already ended (e.g. the client\'s BYE after BYE complete): dropped and counted',
  NDP_ERR_BAD_TICKET: 'SUBSCRIBE attach with a wrong, expired or already used ticket',
  NDP_ERR_BAD_COOKIE: 'UDP SUBSCRIBE without a valid address-validation cookie (missing, expired, other address)',
  NDP_ERR_SHORT_HELLO: 'UDP HELLO datagram under 256 bytes: dropped, a reply could amplify',
  NDP_ERR_AMPLIFICATION: 'reply not sent: it would exceed 3x the bytes received from an unvalidated address',
  NDP_ERR_HANDSHAKE_RATE: 'HELLO/SUBSCRIBE above --max-handshakes per IP per 10 s: dropped',
  NDP_ERR_FOREIGN: 'datagram or message from a peer that holds no session, or about a session held by another peer: dropped',
  NDP_ERR_UNEXPECTED_FRAME: 'a client sent a frame that is not TYP CONTROL (UDP: dropped; WebSocket: close 1002)',
  NDP_ERR_STALE_CREDIT: 'CREDIT whose ack is below one already received: ignored',
  NDP_ERR_TEXT_MESSAGE: 'WebSocket text message (NDP is binary): close 1003',
  NDP_ERR_HANDSHAKE_TIMEOUT: 'WebSocket connection sent no SUBSCRIBE within --handshake-timeout: close 4408',
  NDP_ERR_IDLE_TIMEOUT: 'nothing heard from the client for --idle-timeout: BYE idle',
  NDP_ERR_SESSION_DELETED: 'session deleted with DELETE /v1/sessions/:id: BYE deleted',
  NDP_ERR_SHUTDOWN: 'server shutting down (SIGTERM): BYE shutdown with the cursor; new sessions refused',
  NDP_ERR_BAD_ROUTE: 'a --route flag or --routes file rule is malformed',
  NDP_ERR_BAD_JSON: 'HTTP request body is not a JSON object or not application/json (400 / 415)',
  NDP_ERR_REQUEST_TOO_LARGE: 'HTTP request body over 64 KiB (413)',
  NDP_ERR_NOT_FOUND: 'no such HTTP path (404)',
  NDP_ERR_METHOD_NOT_ALLOWED: 'HTTP method not allowed on that path (405)',
  NDP_ERR_SERVER_OPTION: 'an ndp serve option is out of range or malformed',
  NDP_ERR_READ_FAILED: 'the server could not read a sample from its dataset: session closed with BYE',
  NDP_ERR_SEND_FAILED: 'the kernel refused a UDP send (counted; repair sessions recover it by NACK)',
  NDP_ERR_BAD_WEBSOCKET: 'a WebSocket protocol violation the ws library closed the connection for (bad opcode, masking, UTF-8)',
  NDP_ERR_INTERNAL: 'a server bug: HTTP 500 with the message',
} as const;

export type NdpErrorCode = keyof typeof ERROR_CODES | `NDP_ERR_${string}`;

export class NdpError extends Error {
  override readonly name = 'NdpError';
  constructor(readonly code: NdpErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** The metrics / stats label for an error code: `NDP_ERR_BAD_CRC` → `bad_crc`. */
export function dropLabel(code: NdpErrorCode): string {
  return code.replace(/^NDP_ERR_/, '').toLowerCase();
}

export function isNdpError(err: unknown, code?: NdpErrorCode): err is NdpError {
  return err instanceof NdpError && (code === undefined || err.code === code);
}
