/**
 * Test traffic over real loopback sockets (UDP with node:dgram, WebSocket with ws), with a pcap tap
 * on each endpoint, the way the transports call it. Frames come from the protocol module; some are
 * corrupted, one is dropped and repaired, one duplicated, on purpose. The receiving side keeps its
 * own statistics like an endpoint does, so tests can compare them with `ndp inspect` and tshark.
 */
import { createSocket, type Socket } from 'node:dgram';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';
import { PcapWriter, type PcapWriterOptions } from '../../src/capture/pcap-writer.js';
import type { Endpoint } from '../../src/capture/tap.js';
import { decodeControl, encodeControl, type ControlMessage } from '../../src/protocol/control.js';
import { encodeFrame, readFrameAt } from '../../src/protocol/frame.js';
import { Reassembler } from '../../src/protocol/reassembler.js';
import { CONTROL, DST, SEGMENT_FLAG, SRC, TYP } from '../../src/protocol/registry.js';
import { encodeSampleBody } from '../../src/protocol/sample-body.js';
import { segmentSample, writeSegment } from '../../src/protocol/segmenter.js';
import { readTransportHeader } from '../../src/protocol/transport-header.js';

/** What the receiving endpoint (the trainer side) counted, as a client's stats would. */
export interface ReceiverStats {
  frames: number;
  badCrc: number;
  segments: number;
  retransmitted: number;
  samplesDelivered: number;
  control: Record<string, number>;
}

/** What the test sent on purpose, per session. */
export interface SessionTruth {
  readonly session: number;
  readonly transport: 'udp' | 'ws';
  samples: number;
  /** Frames sent with a CRC made wrong on purpose (data and control). */
  corrupted: number;
  retransmissions: number;
  duplicates: number;
  /** Every NDP frame either side sent, good or not. */
  framesSent: number;
  lastSeq: number;
}

export interface LoopbackRun {
  readonly serverPcap: string;
  readonly clientPcap: string;
  readonly serverWriter: PcapWriter;
  readonly clientWriter: PcapWriter;
  readonly truth: SessionTruth[];
  readonly receiver: ReceiverStats;
  /** Every server endpoint, as `ndp inspect` writes them (`[v6]:port`). */
  readonly servers: string[];
  readonly wsServer: Endpoint;
}

function control(message: Record<string, unknown>, from: number): Uint8Array {
  return encodeFrame({ src: from, dst: DST.CONTROL, typ: TYP.CONTROL, payload: encodeControl(message as unknown as ControlMessage) });
}

/** A copy of a frame with one payload byte flipped: its CRC no longer matches. */
function corrupt(frame: Uint8Array): Uint8Array {
  const bad = frame.slice();
  bad[bad.length - 3] = bad[bad.length - 3]! ^ 0x5a;
  return bad;
}

function tokens(n: number, seed: number): Int32Array {
  return Int32Array.from({ length: n }, (_, i) => (seed * 7919 + i * 104729) % 151_000);
}

function endpointOf(socket: Socket): Endpoint {
  const a = socket.address();
  return { address: a.address, port: a.port };
}

/** Records what the receiving endpoint sees, the way client stats count it. */
class Receiver {
  readonly stats: ReceiverStats = { frames: 0, badCrc: 0, segments: 0, retransmitted: 0, samplesDelivered: 0, control: {} };
  private readonly reassembler = new Reassembler();

  accept(bytes: Uint8Array): void {
    for (let at = 0; at < bytes.length; ) {
      const read = readFrameAt(bytes, at);
      if (read === undefined) throw new Error('test traffic holds a partial frame');
      at = read.end;
      const { frame } = read;
      this.stats.frames++;
      if (!frame.crcOk) {
        this.stats.badCrc++;
        continue;
      }
      if (frame.typ === TYP.SEGMENT) {
        const { header, fragment } = readTransportHeader(frame.payload);
        this.stats.segments++;
        if (header.flags & SEGMENT_FLAG.RETRANSMIT) this.stats.retransmitted++;
        if (this.reassembler.accept(header, fragment).status === 'complete') this.stats.samplesDelivered++;
      } else if (frame.typ === TYP.CONTROL) {
        const t = String(decodeControl(frame.payload).t);
        this.stats.control[t] = (this.stats.control[t] ?? 0) + 1;
      }
    }
  }
}

/** Sends and waits until the peer got `count` datagrams in total. */
async function until(predicate: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !predicate(); i++) await new Promise((r) => setTimeout(r, 5));
  if (!predicate()) throw new Error('loopback traffic did not arrive within 2.5 s');
}

async function udpSession(family: 'udp4' | 'udp6', host: string, session: number, serverTap: PcapWriter, clientTap: PcapWriter, receiver: Receiver): Promise<{ truth: SessionTruth; server: Endpoint }> {
  const server = createSocket(family);
  const client = createSocket(family);
  try {
    server.bind(0, host);
    client.bind(0, host);
    await Promise.all([once(server, 'listening'), once(client, 'listening')]);
    const s = endpointOf(server);
    const c = endpointOf(client);
    const truth: SessionTruth = { session, transport: 'udp', samples: 0, corrupted: 0, retransmissions: 0, duplicates: 0, framesSent: 0, lastSeq: 0 };
    let serverGot = 0;
    let clientGot = 0;
    server.on('message', (msg) => {
      serverTap.udp(c, s, msg);
      serverGot++;
    });
    client.on('message', (msg) => {
      clientTap.udp(s, c, msg);
      receiver.accept(msg);
      clientGot++;
    });
    let serverSent = 0;
    let clientSent = 0;
    const toClient = async (frame: Uint8Array): Promise<void> => {
      serverTap.udp(s, c, frame);
      truth.framesSent++;
      serverSent++;
      server.send(frame, c.port, c.address);
      await until(() => clientGot >= serverSent);
    };
    const toServer = async (frame: Uint8Array): Promise<void> => {
      clientTap.udp(c, s, frame);
      truth.framesSent++;
      clientSent++;
      client.send(frame, s.port, s.address);
      await until(() => serverGot >= clientSent);
    };

    await toServer(control({ t: CONTROL.SUBSCRIBE, nonce: 1, params: { epochs: 1 } }, SRC.TRAINER));
    await toClient(control({ t: CONTROL.ACCEPT, nonce: 1, session, samplesPerEpoch: 6 }, SRC.CONTROL));
    let seq = 0;
    const kept = new Map<number, { input: Parameters<typeof writeSegment>[2]; index: number }>();
    const datagram = 300;
    for (let sample = 0; sample < 6; sample++) {
      const body = encodeSampleBody({ tokens: tokens(10 + sample * 45, sample) });
      const input = { body, src: sample % 2 === 0 ? SRC.TEXT_CORPUS : SRC.CODE_REPO, dst: DST.EMBEDDING, session, seq, epoch: 0, position: sample, sample: 100 + sample, source: 0 };
      const segmented = segmentSample(input, { datagram });
      for (const [index, frame] of segmented.frames.entries()) {
        const frameSeq = seq + index;
        kept.set(frameSeq, { input, index });
        if (frameSeq === 3) {
          truth.corrupted++;
          await toClient(corrupt(frame));
        } else if (frameSeq !== 7) {
          // seq 7 is "lost on the way": never sent, repaired after the NACK below.
          await toClient(frame);
          if (frameSeq === 10) {
            truth.duplicates++;
            await toClient(frame);
          }
        }
      }
      seq = segmented.nextSeq;
      truth.samples++;
    }
    truth.lastSeq = seq - 1;
    await toServer(control({ t: CONTROL.NACK, session, ranges: [[3, 3], [7, 7]] }, SRC.TRAINER));
    for (const lost of [3, 7]) {
      const k = kept.get(lost)!;
      const out = new Uint8Array(datagram);
      const end = writeSegment(out, 0, { ...k.input, flags: SEGMENT_FLAG.RETRANSMIT }, k.index, datagram);
      truth.retransmissions++;
      await toClient(out.subarray(0, end));
    }
    await toServer(control({ t: CONTROL.CREDIT, session, ack: seq, window: 64 }, SRC.TRAINER));
    truth.corrupted++;
    await toServer(corrupt(control({ t: CONTROL.HEARTBEAT, session, time: 12345 }, SRC.TRAINER)));
    await toClient(control({ t: CONTROL.END, session, nextSeq: seq, cursor: { epoch: 1, position: 0 }, counters: { frames: seq } }, SRC.CONTROL));
    return { truth, server: s };
  } finally {
    server.close();
    client.close();
  }
}

async function wsSession(session: number, serverTap: PcapWriter, clientTap: PcapWriter, receiver: Receiver): Promise<{ truth: SessionTruth; server: Endpoint }> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, handleProtocols: (protocols) => (protocols.has('ndp.v1') ? 'ndp.v1' : false) });
  await once(wss, 'listening');
  const address = wss.address() as AddressInfo;
  const s: Endpoint = { address: address.address, port: address.port };
  const truth: SessionTruth = { session, transport: 'ws', samples: 0, corrupted: 0, retransmissions: 0, duplicates: 0, framesSent: 0, lastSeq: 0 };
  const fromClient: Uint8Array[] = [];
  let clientGot = 0;
  const serverSide = once(wss, 'connection') as Promise<[WebSocket, { socket: { remoteAddress?: string; remotePort?: number } }]>;
  const client = new WebSocket(`ws://127.0.0.1:${s.port}/v1/stream`, 'ndp.v1');
  let c: Endpoint = { address: '127.0.0.1', port: 0 };
  client.on('upgrade', (res) => {
    c = { address: res.socket.localAddress ?? '127.0.0.1', port: res.socket.localPort ?? 0 };
    clientTap.wsOpen(c, s);
  });
  client.on('message', (data: Buffer) => {
    clientTap.wsMessage(s, c, data);
    receiver.accept(data);
    clientGot++;
  });
  const [socket, request] = await serverSide;
  const peer: Endpoint = { address: request.socket.remoteAddress ?? '127.0.0.1', port: request.socket.remotePort ?? 0 };
  serverTap.wsOpen(peer, s);
  socket.on('message', (data: Buffer) => {
    serverTap.wsMessage(peer, s, data);
    fromClient.push(data);
  });
  await once(client, 'open');
  let serverSent = 0;
  const toClient = async (frames: Uint8Array[]): Promise<void> => {
    const message = Buffer.concat(frames);
    serverTap.wsMessage(s, peer, message);
    truth.framesSent += frames.length;
    serverSent++;
    socket.send(message);
    await until(() => clientGot >= serverSent);
  };
  let clientSent = 0;
  const toServer = async (frame: Uint8Array): Promise<void> => {
    clientTap.wsMessage(c, s, frame);
    truth.framesSent++;
    clientSent++;
    client.send(frame);
    await until(() => fromClient.length >= clientSent);
  };
  try {
    await toServer(control({ t: CONTROL.SUBSCRIBE, nonce: 2, params: { epochs: 1 } }, SRC.TRAINER));
    await toClient([control({ t: CONTROL.ACCEPT, nonce: 2, session, samplesPerEpoch: 5 }, SRC.CONTROL)]);
    let seq = 0;
    const datagram = 65_543;
    const messages: Uint8Array[][] = [[], []];
    let repair: Uint8Array | undefined;
    for (let sample = 0; sample < 5; sample++) {
      // Sample 4 is 80 KB: two frames, a message spread over several TCP segments.
      const body = encodeSampleBody({ tokens: tokens(sample === 4 ? 20_000 : 50 + sample * 300, sample + 10) });
      const input = { body, src: SRC.CHAT, dst: DST.LORA, session, seq, epoch: 0, position: sample, sample, source: 0 };
      const segmented = segmentSample(input, { datagram });
      for (const [index, frame] of segmented.frames.entries()) {
        const target = messages[sample < 3 ? 0 : 1]!;
        if (sample === 1) {
          truth.corrupted++;
          target.push(corrupt(frame));
          const out = new Uint8Array(frame.length);
          writeSegment(out, 0, { ...input, flags: SEGMENT_FLAG.RETRANSMIT }, index, datagram);
          repair = out;
        } else {
          target.push(frame);
        }
      }
      seq = segmented.nextSeq;
      truth.samples++;
    }
    truth.lastSeq = seq - 1;
    await toClient(messages[0]!);
    await toServer(control({ t: CONTROL.NACK, session, ranges: [[1, 1]] }, SRC.TRAINER));
    truth.retransmissions++;
    await toClient([repair!, ...messages[1]!]);
    await toServer(control({ t: CONTROL.CREDIT, session, ack: seq, window: 1024 }, SRC.TRAINER));
    await toClient([control({ t: CONTROL.END, session, nextSeq: seq, cursor: { epoch: 1, position: 0 } }, SRC.CONTROL), control({ t: CONTROL.BYE, session, reason: 'complete' }, SRC.CONTROL)]);
    return { truth, server: s };
  } finally {
    clientTap.wsClose(c, s);
    serverTap.wsClose(peer, s);
    client.close();
    await once(client, 'close');
    wss.close();
  }
}

async function hasIpv6Loopback(): Promise<boolean> {
  const probe = createSocket('udp6');
  try {
    probe.bind(0, '::1');
    await once(probe, 'listening');
    return true;
  } catch {
    return false;
  } finally {
    probe.close();
  }
}

/** Runs a UDP session (IPv4), a WebSocket session and, where ::1 exists, a UDP session over IPv6. */
export async function runLoopbackSessions(dir: string, options: PcapWriterOptions = {}): Promise<LoopbackRun> {
  const serverPcap = `${dir}/server.pcap`;
  const clientPcap = `${dir}/client.pcap`;
  const serverWriter = new PcapWriter(serverPcap, options);
  const clientWriter = new PcapWriter(clientPcap, options);
  const receiver = new Receiver();
  const truth: SessionTruth[] = [];
  try {
    const sessions = [await udpSession('udp4', '127.0.0.1', 77, serverWriter, clientWriter, receiver), await wsSession(88, serverWriter, clientWriter, receiver)];
    if (await hasIpv6Loopback()) sessions.push(await udpSession('udp6', '::1', 99, serverWriter, clientWriter, receiver));
    const servers = sessions.map(({ server }) => (server.address.includes(':') ? `[${server.address}]:${server.port}` : `${server.address}:${server.port}`));
    return { serverPcap, clientPcap, serverWriter, clientWriter, truth: sessions.map((s) => s.truth), receiver: receiver.stats, servers, wsServer: sessions[1]!.server };
  } finally {
    serverWriter.close();
    clientWriter.close();
  }
}
