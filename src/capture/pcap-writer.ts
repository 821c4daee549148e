/**
 * A CaptureTap that writes what a transport sends and receives as a classic libpcap file
 * (https://www.tcpdump.org/manpages/pcap-savefile.5.html), link type LINKTYPE_RAW (101: each packet
 * starts with its IPv4 or IPv6 header), microsecond timestamps, little-endian. tcpdump, tshark and
 * Wireshark open it as it is.
 *
 * Encapsulation (README "Debugging with packet captures"):
 * - a UDP datagram → one IPv4/IPv6 + UDP packet with the real addresses and ports, checksums filled in;
 * - a WebSocket connection → a synthesized TCP connection between the real addresses and ports: the
 *   handshake, an HTTP Upgrade exchange, one binary WebSocket frame per message (masked from the
 *   client), and the closing FINs (see websocket-synth.ts).
 *
 * Bounded: `maxBytes` per file (then stop, or rotate to numbered files keeping `maxFiles`), and
 * `snaplen` bytes kept of each packet. Packets buffer in memory up to `bufferBytes` and reach the
 * disk on a full buffer, every `flushIntervalMs`, and on close().
 */
import { closeSync, openSync, rmSync, writeSync } from 'node:fs';
import type { CaptureTap, Endpoint } from './tap.js';
import { parseIpAddress, sameFamily, type IpAddress } from './ip-address.js';
import { MAX_IP_PAYLOAD, UDP_HEADER_BYTES, tcpPacket, udpPacket } from './ip-packet.js';
import { WebSocketSynth, type SynthSegment } from './websocket-synth.js';

export const PCAP_MAGIC_MICROS = 0xa1b2c3d4;
export const LINKTYPE_RAW = 101;
export const PCAP_GLOBAL_HEADER_BYTES = 24;
export const PCAP_RECORD_HEADER_BYTES = 16;
/** The largest snap length readers accept for ordinary link types (libpcap's MAXIMUM_SNAPLEN). */
export const MAX_SNAPLEN = 262144;

export type PcapLimitAction = 'stop' | 'rotate';

export interface PcapWriterOptions {
  /** Largest size of one file in bytes, headers included. Defaults to 1 GiB. */
  readonly maxBytes?: number;
  /** At `maxBytes`: 'stop' writing (later packets are counted in `stats.droppedAtLimit`) or 'rotate'. Defaults to 'stop'. */
  readonly onLimit?: PcapLimitAction;
  /** Files kept when rotating; the oldest is deleted. Defaults to 10. */
  readonly maxFiles?: number;
  /** Bytes kept of each packet (longer ones are cut, their original length recorded). Defaults to 262144. */
  readonly snaplen?: number;
  /** Bytes held in memory before they are written. Defaults to 1 MiB. */
  readonly bufferBytes?: number;
  /** Longest time a packet waits in memory, in milliseconds. Defaults to 1000. */
  readonly flushIntervalMs?: number;
  /** Called once, when the first packet is left out at the size limit ('stop'). Defaults to none. */
  readonly onLimitReached?: ((writer: PcapWriter) => void) | undefined;
}

export interface PcapWriterStats {
  /** Packets written (or buffered to be written), over all files. */
  packets: number;
  /** Bytes of all files written, headers included. */
  bytes: number;
  /** Packets cut to the snap length. */
  truncated: number;
  /** Packets not written because the size limit was reached ('stop'), or larger than a whole file may be. */
  droppedAtLimit: number;
  /** Datagrams too large for one IP packet (cannot happen with real UDP sockets). */
  droppedOversize: number;
  /** Files opened so far. */
  files: number;
}

const DEFAULTS = {
  maxBytes: 1 << 30,
  onLimit: 'stop' as PcapLimitAction,
  maxFiles: 10,
  snaplen: MAX_SNAPLEN,
  bufferBytes: 1 << 20,
  flushIntervalMs: 1000,
  onLimitReached: undefined as ((writer: PcapWriter) => void) | undefined,
};

function checkInteger(name: string, value: number, min: number, max = Number.MAX_SAFE_INTEGER): void {
  if (!Number.isInteger(value) || value < min || value > max) throw new RangeError(`${name} must be an integer ${min}..${max}, got ${value}`);
}

/** `capture.pcap` → `capture.1.pcap`, `capture.2.pcap`, … (the first file keeps the given name). */
export function rotatedPath(path: string, index: number): string {
  if (index === 0) return path;
  const dot = path.lastIndexOf('.');
  const slash = Math.max(path.lastIndexOf('/'), path.lastIndexOf('\\'));
  return dot > slash + 1 ? `${path.slice(0, dot)}.${index}${path.slice(dot)}` : `${path}.${index}`;
}

interface Connection {
  readonly client: Endpoint;
  readonly server: Endpoint;
  synth: WebSocketSynth;
}

function key(a: Endpoint, b: Endpoint): string {
  return `${a.address}|${a.port}|${b.address}|${b.port}`;
}

export class PcapWriter implements CaptureTap {
  readonly stats: PcapWriterStats = { packets: 0, bytes: 0, truncated: 0, droppedAtLimit: 0, droppedOversize: 0, files: 0 };
  private readonly options: typeof DEFAULTS;
  private fd: number | undefined;
  private fileIndex = 0;
  private fileBytes = 0;
  private stopped = false;
  /** Set while a new file replays handshakes: a record that does not fit then is dropped, not rotated again. */
  private rotating = false;
  private pending: Uint8Array[] = [];
  private pendingBytes = 0;
  private readonly connections = new Map<string, Connection>();
  private readonly addresses = new Map<string, IpAddress>();
  private readonly timer: NodeJS.Timeout;

  /** Opens (truncates) `path` and writes the pcap header. Throws if the file cannot be created. */
  constructor(readonly path: string, options: PcapWriterOptions = {}) {
    this.options = { ...DEFAULTS, ...options };
    checkInteger('maxBytes', this.options.maxBytes, PCAP_GLOBAL_HEADER_BYTES + PCAP_RECORD_HEADER_BYTES + 1);
    checkInteger('maxFiles', this.options.maxFiles, 1);
    checkInteger('snaplen', this.options.snaplen, 1, MAX_SNAPLEN);
    checkInteger('bufferBytes', this.options.bufferBytes, 0);
    checkInteger('flushIntervalMs', this.options.flushIntervalMs, 1);
    if (this.options.onLimit !== 'stop' && this.options.onLimit !== 'rotate') throw new RangeError(`onLimit must be 'stop' or 'rotate', got '${String(this.options.onLimit)}'`);
    this.openFile();
    this.timer = setInterval(() => this.flush(), this.options.flushIntervalMs);
    this.timer.unref();
  }

  /** The files written so far that still exist, oldest first. */
  get files(): string[] {
    const first = Math.max(0, this.fileIndex - this.options.maxFiles + 1);
    const out: string[] = [];
    for (let i = first; i <= this.fileIndex; i++) out.push(rotatedPath(this.path, i));
    return out;
  }

  udp(from: Endpoint, to: Endpoint, payload: Uint8Array): void {
    if (this.fd === undefined) return;
    if (UDP_HEADER_BYTES + payload.length > MAX_IP_PAYLOAD) {
      this.stats.droppedOversize++;
      return;
    }
    const [src, dst] = sameFamily(this.ip(from.address), this.ip(to.address));
    this.record(udpPacket(src, from.port, dst, to.port, payload));
  }

  wsOpen(client: Endpoint, server: Endpoint): void {
    if (this.fd === undefined) return;
    const connection = { client, server, synth: new WebSocketSynth(`${server.address}:${server.port}`) };
    this.connections.set(key(client, server), connection);
    this.segments(connection, connection.synth.open());
  }

  wsMessage(from: Endpoint, to: Endpoint, payload: Uint8Array): void {
    if (this.fd === undefined) return;
    let connection = this.connections.get(key(from, to));
    let fromClient = true;
    if (connection === undefined) {
      connection = this.connections.get(key(to, from));
      fromClient = false;
    }
    if (connection === undefined) {
      // A tap attached after the connection opened: the sender of the first message seen is taken as the client.
      this.wsOpen(from, to);
      connection = this.connections.get(key(from, to));
      fromClient = true;
      if (connection === undefined) return;
    }
    this.segments(connection, connection.synth.message(fromClient, payload));
  }

  wsClose(client: Endpoint, server: Endpoint): void {
    const id = key(client, server);
    const connection = this.connections.get(id) ?? this.connections.get(key(server, client));
    if (connection === undefined || this.fd === undefined) return;
    this.segments(connection, connection.synth.close());
    this.connections.delete(id);
    this.connections.delete(key(server, client));
  }

  /** Writes what is buffered to the file. */
  flush(): void {
    if (this.fd === undefined || this.pending.length === 0) return;
    const chunk = Buffer.concat(this.pending, this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    writeSync(this.fd, chunk);
  }

  /** Flushes and closes the file; later calls to the tap are ignored. */
  close(): void {
    clearInterval(this.timer);
    this.closeFile();
    this.stopped = true;
  }

  private ip(address: string): IpAddress {
    let parsed = this.addresses.get(address);
    if (parsed === undefined) {
      parsed = parseIpAddress(address);
      if (this.addresses.size > 1024) this.addresses.clear();
      this.addresses.set(address, parsed);
    }
    return parsed;
  }

  private segments(connection: Connection, segments: SynthSegment[]): void {
    const [client, server] = sameFamily(this.ip(connection.client.address), this.ip(connection.server.address));
    for (const s of segments) {
      const packet = s.fromClient
        ? tcpPacket(client, connection.client.port, server, connection.server.port, s.tcp, s.data)
        : tcpPacket(server, connection.server.port, client, connection.client.port, s.tcp, s.data);
      this.record(packet);
      if (this.fd === undefined) return;
    }
  }

  private record(packet: Uint8Array): void {
    const kept = Math.min(packet.length, this.options.snaplen);
    const recordBytes = PCAP_RECORD_HEADER_BYTES + kept;
    if (this.fileBytes + recordBytes > this.options.maxBytes) {
      if (this.options.onLimit === 'stop' || this.rotating || PCAP_GLOBAL_HEADER_BYTES + recordBytes > this.options.maxBytes) {
        if (this.stats.droppedAtLimit++ === 0) this.options.onLimitReached?.(this);
        return;
      }
      this.rotate();
      // The rotation may have written handshakes for open connections; re-check the room left.
      if (this.fd === undefined || this.fileBytes + recordBytes > this.options.maxBytes) {
        this.stats.droppedAtLimit++;
        return;
      }
    }
    const micros = Math.round((performance.timeOrigin + performance.now()) * 1000);
    const header = Buffer.allocUnsafe(PCAP_RECORD_HEADER_BYTES);
    header.writeUInt32LE(Math.floor(micros / 1e6), 0);
    header.writeUInt32LE(micros % 1e6, 4);
    header.writeUInt32LE(kept, 8);
    header.writeUInt32LE(packet.length, 12);
    if (kept < packet.length) this.stats.truncated++;
    this.push(header);
    this.push(kept < packet.length ? packet.subarray(0, kept) : packet);
    this.fileBytes += recordBytes;
    this.stats.bytes += recordBytes;
    this.stats.packets++;
    if (this.pendingBytes >= this.options.bufferBytes) this.flush();
  }

  private push(bytes: Uint8Array): void {
    this.pending.push(bytes);
    this.pendingBytes += bytes.length;
  }

  private openFile(): void {
    this.fd = openSync(rotatedPath(this.path, this.fileIndex), 'w');
    const header = Buffer.alloc(PCAP_GLOBAL_HEADER_BYTES);
    header.writeUInt32LE(PCAP_MAGIC_MICROS, 0);
    header.writeUInt16LE(2, 4);
    header.writeUInt16LE(4, 6);
    header.writeUInt32LE(this.options.snaplen, 16);
    header.writeUInt32LE(LINKTYPE_RAW, 20);
    this.push(header);
    this.fileBytes = PCAP_GLOBAL_HEADER_BYTES;
    this.stats.bytes += PCAP_GLOBAL_HEADER_BYTES;
    this.stats.files++;
  }

  private closeFile(): void {
    if (this.fd === undefined) return;
    this.flush();
    closeSync(this.fd);
    this.fd = undefined;
  }

  private rotate(): void {
    this.closeFile();
    if (this.stopped) return;
    this.fileIndex++;
    const expired = this.fileIndex - this.options.maxFiles;
    if (expired >= 0) rmSync(rotatedPath(this.path, expired), { force: true });
    this.openFile();
    // Each file stands alone: connections still open start again with a fresh handshake, so
    // Wireshark decodes their WebSocket messages in the new file too.
    this.rotating = true;
    for (const connection of this.connections.values()) {
      connection.synth = new WebSocketSynth(`${connection.server.address}:${connection.server.port}`);
      this.segments(connection, connection.synth.open());
    }
    this.rotating = false;
  }
}
