/**
 * Robustness, time-boxed: damaged capture files make `ndp inspect` throw only NDP_ERR_BAD_CAPTURE
 * (or report malformed units), never anything else; random payloads with valid CRCs never make the
 * Lua dissector raise a Lua error.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import fc from 'fast-check';
import t from 'tap';
import { captureFrames } from '../../src/capture/capture-frames.js';
import { CaptureSummarizer } from '../../src/capture/capture-summary.js';
import { PcapWriter } from '../../src/capture/pcap-writer.js';
import { isNdpError } from '../../src/protocol/errors.js';
import { encodeFrame } from '../../src/protocol/frame.js';
import { DST, SRC, TYP } from '../../src/protocol/registry.js';
import { tshark, tsharkMissing } from './tshark.js';
import { tempDir } from '../temp-dir.js';

const dir = tempDir(t, 'ndp-capture-fuzz-');

const client = { address: '127.0.0.1', port: 50000 };
const server = { address: '127.0.0.1', port: 7401 };
const udpA = { address: '127.0.0.1', port: 40000 };
const udpB = { address: '127.0.0.1', port: 7400 };

/** A capture with UDP and WebSocket traffic whose bytes the fuzzer then damages. */
function seedCapture(): Uint8Array {
  const file = `${dir}/seed.pcap`;
  const w = new PcapWriter(file);
  const frame = (typ: number, payload: Uint8Array): Uint8Array => encodeFrame({ src: SRC.CHAT, dst: DST.LORA, typ, payload });
  w.udp(udpA, udpB, frame(TYP.TOKEN_IDS, new Uint8Array(40)));
  w.wsOpen(client, server);
  w.wsMessage(server, client, Buffer.concat([frame(TYP.SEGMENT, new Uint8Array(60)), frame(TYP.CONTROL, Uint8Array.of(0x81, 0xa1, 0x74, 0x08))]));
  w.wsMessage(client, server, frame(TYP.CONTROL, Uint8Array.of(0x81, 0xa1, 0x74, 0x06)));
  w.wsClose(client, server);
  w.close();
  return readFileSync(file);
}

t.test('damaged capture files: only NDP_ERR_BAD_CAPTURE escapes, and the summary still completes', async (t) => {
  const seed = seedCapture();
  const target = `${dir}/damaged.pcap`;
  let runs = 0;
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.nat(seed.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }),
      fc.nat(seed.length),
      (flips, cut) => {
        const bytes = Buffer.from(seed.subarray(0, Math.max(cut, 1)));
        for (const [at, value] of flips) if (at < bytes.length) bytes[at] = value;
        writeFileSync(target, bytes);
        runs++;
        const summarizer = new CaptureSummarizer();
        try {
          for (const record of captureFrames(target, { limits: { maxOutOfOrderBytes: 1 << 16, maxMessageBytes: 1 << 20 } })) summarizer.add(record);
        } catch (err) {
          if (!isNdpError(err, 'NDP_ERR_BAD_CAPTURE')) throw err;
        }
        summarizer.finish();
      },
    ),
    { numRuns: 400, interruptAfterTimeLimit: 20_000, seed: 7 },
  );
  t.ok(runs > 50, `${runs} damaged files read`);
});

t.test('random payloads with valid CRCs never raise a Lua error in the dissector', { skip: tsharkMissing() }, async (t) => {
  const file = `${dir}/random-payloads.pcap`;
  const w = new PcapWriter(file);
  w.wsOpen(client, server);
  const payloads = fc.sample(fc.uint8Array({ maxLength: 120 }), { numRuns: 300, seed: 11 });
  const msgpackish = fc.sample(fc.uint8Array({ maxLength: 60 }).map((b) => Uint8Array.from([0x80 | (b.length % 16), ...b])), { numRuns: 200, seed: 12 });
  payloads.forEach((payload, i) => {
    const typ = [TYP.SEGMENT, TYP.CONTROL, TYP.TOKEN_IDS, 0x99][i % 4]!;
    const frame = encodeFrame({ src: SRC.CONTROL, dst: DST.CONTROL, typ, payload });
    if (i % 2 === 0) w.udp(udpA, udpB, frame);
    else w.wsMessage(server, client, frame);
  });
  for (const payload of msgpackish) w.udp(udpA, udpB, encodeFrame({ src: SRC.TRAINER, dst: DST.CONTROL, typ: TYP.CONTROL, payload }));
  // Frames cut short on the NDP port: the dissector must flag them, not fail.
  w.udp(udpA, udpB, encodeFrame({ src: 1, dst: 1, typ: 1, payload: new Uint8Array(8) }).subarray(0, 10));
  w.udp(udpA, udpB, Uint8Array.of(0xaa, 1));
  w.close();
  const verbose = tshark(file, ['-V']);
  t.notMatch(verbose, /Lua Error/, 'no Lua error on any of the random payloads');
  const frames = [...captureFrames(file)].filter((r) => r.kind === 'frame').length;
  const decoded = tshark(file, ['-Y', 'ndpx', '-T', 'fields', '-e', 'ndpx.crc.status', '-E', 'occurrence=a', '-E', 'aggregator=;']).split('\n').filter(Boolean).flatMap((l) => l.split(';')).length;
  t.equal(decoded, frames, 'tshark and ndp inspect count the same frames');
  t.match(verbose, /not a whole frame|truncated frame/, 'cut frames flagged as malformed');
});
