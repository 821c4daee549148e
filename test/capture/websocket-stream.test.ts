/** Recovering WebSocket messages from TCP segments: order, retransmission, splits, limits. */
import t from 'tap';
import { TCP_FLAG } from '../../src/capture/ip-packet.js';
import { WebSocketDirection, type WebSocketEvent } from '../../src/capture/websocket-stream.js';
import { WebSocketSynth, websocketAccept, websocketFrame, type SynthSegment } from '../../src/capture/websocket-synth.js';

const messages = [Uint8Array.of(1, 2, 3), new Uint8Array(300).fill(7), new Uint8Array(70_000).fill(9), new Uint8Array(0)];

/** The server → client segments of a synthesized connection carrying `messages`. */
function serverSegments(fromClient = false): SynthSegment[] {
  const synth = new WebSocketSynth('127.0.0.1:7401');
  const all = [...synth.open(), ...messages.flatMap((m) => synth.message(fromClient, m)), ...synth.close()];
  return all.filter((s) => s.fromClient === fromClient);
}

function feed(direction: WebSocketDirection, segments: SynthSegment[]): WebSocketEvent[] {
  return segments.flatMap((s) => direction.segment(s.tcp.seq, s.tcp.flags, s.data));
}

const payloads = (events: WebSocketEvent[]): number[][] => events.map((e) => (e.kind === 'message' ? [e.payload.length, e.payload[0] ?? -1] : [-1, -1]));
const expected = messages.map((m) => [m.length, m[0] ?? -1]);

t.test('RFC 6455 examples: accept key, frame bytes, masking', async (t) => {
  t.equal(websocketAccept('dGhlIHNhbXBsZSBub25jZQ=='), 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=', 'RFC 6455 §1.3 example');
  t.equal(Buffer.from(websocketFrame(Buffer.from('Hello'))).toString('hex'), '820548656c6c6f');
  t.equal(Buffer.from(websocketFrame(Buffer.from('Hello'), Uint8Array.of(0x37, 0xfa, 0x21, 0x3d))).toString('hex'), '828537fa213d7f9f4d5158', 'masked as RFC 6455 §5.7 (binary opcode)');
  t.equal(Buffer.from(websocketFrame(new Uint8Array(256))).subarray(0, 4).toString('hex'), '827e0100');
  t.equal(Buffer.from(websocketFrame(new Uint8Array(65536))).subarray(0, 10).toString('hex'), '827f0000000000010000');
});

t.test('in order, both directions (client frames masked)', async (t) => {
  for (const fromClient of [false, true]) t.same(payloads(feed(new WebSocketDirection(), serverSegments(fromClient))), expected);
});

t.test('out of order, retransmitted and overlapping segments give the same messages', async (t) => {
  const segments = serverSegments();
  const [syn, ...rest] = segments;
  const reversed = [syn!, ...[...rest].reverse()];
  t.same(payloads(feed(new WebSocketDirection(), reversed)), expected, 'reversed');
  const doubled = segments.flatMap((s) => [s, s]);
  t.same(payloads(feed(new WebSocketDirection(), doubled)), expected, 'every segment twice');
  // Re-cut the data stream into 7-byte pieces with overlapping retransmissions.
  const stream = Buffer.concat(rest.map((s) => s.data));
  const base = syn!.tcp.seq + 1;
  const pieces: SynthSegment[] = [syn!];
  for (let at = 0; at < stream.length; at += 7) {
    pieces.push({ fromClient: false, tcp: { seq: (base + at) >>> 0, ack: 0, flags: TCP_FLAG.ACK }, data: stream.subarray(at, at + 7) });
    if (at >= 3) pieces.push({ fromClient: false, tcp: { seq: (base + at - 3) >>> 0, ack: 0, flags: TCP_FLAG.ACK }, data: stream.subarray(at - 3, at + 4) });
  }
  t.same(payloads(feed(new WebSocketDirection(), pieces)), expected, 'small overlapping pieces');
});

t.test('a capture that starts mid-connection without the handshake is ignored, not misread', async (t) => {
  const segments = serverSegments().filter((s) => s.data.length > 0).slice(1);
  t.same(feed(new WebSocketDirection(), segments), []);
});

t.test('limits: held out-of-order bytes, message size; compressed and failed upgrades', async (t) => {
  const segments = serverSegments();
  const [syn, response, ...rest] = segments;
  const missingFirst = [syn!, ...rest];
  const events = feed(new WebSocketDirection({ maxOutOfOrderBytes: 1000, maxMessageBytes: 1 << 20 }), missingFirst);
  t.match(events, [{ kind: 'error', code: 'NDP_ERR_CAPTURE_STREAM', message: /out of order/ }], 'a segment missing from the capture');
  t.ok(response);
  const atLimit = feed(new WebSocketDirection({ maxOutOfOrderBytes: 1 << 20, maxMessageBytes: 70_000 }), segments);
  t.same(payloads(atLimit), expected, 'a message of exactly maxMessageBytes passes');
  const over = feed(new WebSocketDirection({ maxOutOfOrderBytes: 1 << 20, maxMessageBytes: 69_999 }), segments);
  t.match(over.at(-1), { kind: 'error', message: /longer than 69999/ });
  const direction = new WebSocketDirection();
  direction.segment(100, TCP_FLAG.SYN, new Uint8Array(0));
  const head = Buffer.from('HTTP/1.1 101 Switching Protocols\r\n\r\n');
  const compressed = Buffer.concat([head, Buffer.from([0xc2, 0x01, 0x00])]);
  t.match(direction.segment(101, TCP_FLAG.ACK, compressed), [{ kind: 'error', message: /compressed/ }]);
  const refused = new WebSocketDirection();
  t.same(refused.segment(1, TCP_FLAG.ACK, Buffer.concat([Buffer.from('HTTP/1.1 400 Bad Request\r\n\r\n'), websocketFrame(Uint8Array.of(0xaa))])), []);
  t.equal(refused.isWebSocket, false);
});
