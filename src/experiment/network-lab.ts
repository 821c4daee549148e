/**
 * A two-host network made of Linux network namespaces, for loss experiments on a kernel without
 * netem: a "server" namespace and a "client" namespace joined by a veth pair, with an nftables table
 * in the client namespace that drops or corrupts the data frames arriving from the server.
 *
 * Why nftables and not tc: this kernel has no netem (FACTS.md), and nftables' `numgen random` plus a
 * payload `set` statement give seeded-free but exact, counted loss and corruption on one hop.
 *
 * What is hit: only UDP datagrams from the server's data port whose frame TYP (UDP payload byte 3)
 * is SEGMENT, i.e. sample data. Control frames (handshake, credits, bye) pass untouched, so a lab
 * measures what data loss does to training, not whether a handshake survives.
 *
 * Rates have a resolution of 1/10,000 (`numgen random mod 10000 < round(P * 10000)`): nft compares
 * integers, so 0.05 % is the smallest non-zero rate and e.g. 0.123456 becomes 0.1235.
 * Corruption sets UDP payload byte 6 (the frame's first payload byte, the transport header's
 * version, which is 1 in every valid SEGMENT) to 0xFF, so the frame's CRC-16 fails; it applies to the
 * frames that survived the drop rule. nft's random generator is not seedable: network runs are
 * reproducible in rate and counts only, not in which frames were hit.
 *
 * Requires root (CAP_NET_ADMIN and CAP_SYS_ADMIN), `ip` (iproute2) and `nft` (nftables). Without
 * them `NetworkLab.create` throws `NDP_ERR_NETNS_UNAVAILABLE`.
 */
import { execFile, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { NdpError } from '../protocol/errors.js';
import { DEFAULT_PORTS, TYP } from '../protocol/registry.js';

const execFileAsync = promisify(execFile);

/** Name prefix of every namespace a lab creates: `ndpx-<pid>-<n>-srv` / `-cli`. */
export const LAB_NAMESPACE_PREFIX = 'ndpx-';
/** Denominator of nft's integer random draw: rates are rounded to 1/RATE_RESOLUTION. */
export const RATE_RESOLUTION = 10_000;
/** Offset (bytes) into the UDP payload of the frame's TYP field. */
const TYP_OFFSET = 3;
/** Offset (bytes) into the UDP payload that corruption overwrites: first payload byte of the frame. */
export const CORRUPT_OFFSET = 6;
/** The value corruption writes; the transport header version is 1, so this always breaks the CRC. */
export const CORRUPT_VALUE = 0xff;
/** The UDP header is 8 bytes; nft's `@th` offsets count bits from the start of the UDP header. */
const UDP_HEADER_BITS = 64;
const NFT_TABLE = 'ndp_lab';

export interface NetworkLabOptions {
  /** Fraction of data frames from the server dropped on arrival at the client. Defaults to 0. */
  readonly dropRate?: number;
  /** Fraction of the surviving data frames whose CRC is broken on arrival. Defaults to 0. */
  readonly corruptRate?: number;
  /** The server's UDP data port (source port of the frames to hit). Defaults to the registry's UDP port (7400). */
  readonly dataPort?: number;
  /** Address block `10.<a>.<b>.0/30` for the veth pair. Defaults to 10.208.0.0/30 (namespaces are private, so every lab can use it). */
  readonly subnet?: readonly [number, number];
}

/** What the nftables counters saw, exactly. */
export interface LabCounters {
  /** Data frames from the server that reached the client namespace's input hook. */
  readonly seen: number;
  readonly dropped: number;
  readonly corrupted: number;
}

export type LabSide = 'server' | 'client';

/** Labs alive in this process, removed on exit even when the process is interrupted. */
const liveLabs = new Set<NetworkLab>();
let exitHookInstalled = false;
let labCounter = 0;

function closeAllSync(): void {
  for (const lab of liveLabs) lab.closeSync();
}

/** On SIGINT/SIGTERM: remove the labs, then die of the same signal as the process would have. */
function onSignal(signal: NodeJS.Signals): void {
  closeAllSync();
  process.removeListener('SIGINT', onSignal);
  process.removeListener('SIGTERM', onSignal);
  process.kill(process.pid, signal);
}

function installExitHook(): void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    // 'exit' handlers must be synchronous: spawnSync is the only way to still delete namespaces here.
    process.on('exit', closeAllSync);
  }
  // Only while a lab is alive, so the process's own signal behaviour is untouched otherwise.
  if (process.listeners('SIGINT').includes(onSignal)) return;
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}

function labClosed(lab: NetworkLab): void {
  liveLabs.delete(lab);
  if (liveLabs.size > 0) return;
  process.removeListener('SIGINT', onSignal);
  process.removeListener('SIGTERM', onSignal);
}

async function run(argv: readonly string[], input?: string): Promise<string> {
  const [file, ...args] = argv;
  if (file === undefined) throw new Error('empty command');
  if (input === undefined) {
    const { stdout } = await execFileAsync(file, args, { encoding: 'utf8' });
    return stdout;
  }
  return new Promise((resolve, reject) => {
    const child = execFile(file, args, { encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err !== null) reject(Object.assign(err, { stderr }));
      else resolve(stdout);
    });
    child.stdin?.end(input);
  });
}

function describe(err: unknown): string {
  const e = err as { stderr?: string; message?: string; code?: string };
  const detail = (e.stderr ?? '').trim() || e.message || String(err);
  return e.code === 'ENOENT' ? `command not found (${detail})` : detail;
}

function checkRate(name: string, rate: number): void {
  if (!Number.isFinite(rate) || rate < 0 || rate > 1) {
    throw new NdpError('NDP_ERR_EXPERIMENT_BAD_OPTION', `${name} must be a fraction in [0, 1], got ${rate}`);
  }
}

/** The nft threshold for a rate: `numgen random mod RATE_RESOLUTION < threshold`. */
export function rateThreshold(rate: number): number {
  return Math.round(rate * RATE_RESOLUTION);
}

/** The nftables ruleset text a lab installs in the client namespace (exported for tests and docs). */
export function labRuleset(dropRate: number, corruptRate: number, dataPort: number): string {
  const match = `udp sport ${dataPort} @th,${UDP_HEADER_BITS + TYP_OFFSET * 8},8 ${TYP.SEGMENT}`;
  // nft refuses `< 10000` against `mod 10000` (out of range), so rate 1 is a rule without a draw.
  const draw = (rate: number): string =>
    rateThreshold(rate) >= RATE_RESOLUTION ? '' : ` numgen random mod ${RATE_RESOLUTION} < ${rateThreshold(rate)}`;
  const rules = [`${match} counter comment "seen"`];
  if (rateThreshold(dropRate) > 0) rules.push(`${match}${draw(dropRate)} counter drop comment "dropped"`);
  if (rateThreshold(corruptRate) > 0) {
    rules.push(`${match}${draw(corruptRate)} counter @th,${UDP_HEADER_BITS + CORRUPT_OFFSET * 8},8 set ${CORRUPT_VALUE} comment "corrupted"`);
  }
  return [
    `table inet ${NFT_TABLE} {`,
    '  chain input {',
    '    type filter hook input priority 0; policy accept;',
    ...rules.map((r) => `    ${r}`),
    '  }',
    '}',
    '',
  ].join('\n');
}

/** Deletes namespaces left behind by labs whose process no longer exists (e.g. killed with SIGKILL). */
export async function removeStaleLabs(): Promise<string[]> {
  let listing: string;
  try {
    listing = await run(['ip', 'netns', 'list']);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const line of listing.split('\n')) {
    const name = line.split(' ')[0] ?? '';
    const m = new RegExp(`^${LAB_NAMESPACE_PREFIX}(\\d+)-`).exec(name);
    if (m === null) continue;
    const pid = Number(m[1]);
    if (pid === process.pid || processAlive(pid)) continue;
    try {
      await run(['ip', 'netns', 'del', name]);
      removed.push(name);
    } catch {
      // Another process removed it first: fine.
    }
  }
  return removed;
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as { code?: string }).code === 'EPERM';
  }
}

/** A server namespace and a client namespace joined by a veth pair, with loss rules on the client side. */
export class NetworkLab {
  private closed = false;

  private constructor(
    readonly serverNamespace: string,
    readonly clientNamespace: string,
    /** Address of the server end of the veth pair, reachable from the client namespace. */
    readonly serverAddress: string,
    readonly clientAddress: string,
    readonly dropRate: number,
    readonly corruptRate: number,
    readonly dataPort: number,
  ) {}

  /**
   * Creates the namespaces, the veth pair and the rules. Names are unique per process and call, so
   * parallel labs (in one process or several) never collide. On any failure everything created so
   * far is removed and `NDP_ERR_NETNS_UNAVAILABLE` is thrown with the system's message.
   */
  static async create(options: NetworkLabOptions = {}): Promise<NetworkLab> {
    const dropRate = options.dropRate ?? 0;
    const corruptRate = options.corruptRate ?? 0;
    checkRate('dropRate', dropRate);
    checkRate('corruptRate', corruptRate);
    const dataPort = options.dataPort ?? DEFAULT_PORTS.udp;
    const [a, b] = options.subnet ?? [208, 0];
    await removeStaleLabs();
    const base = `${LAB_NAMESPACE_PREFIX}${process.pid}-${labCounter++}`;
    const lab = new NetworkLab(`${base}-srv`, `${base}-cli`, `10.${a}.${b}.1`, `10.${a}.${b}.2`, dropRate, corruptRate, dataPort);
    installExitHook();
    liveLabs.add(lab);
    const steps: string[][] = [
      ['ip', 'netns', 'add', lab.serverNamespace],
      ['ip', 'netns', 'add', lab.clientNamespace],
      // Created directly inside the namespaces: no interface ever exists in the root namespace, so
      // fixed interface names cannot collide between labs.
      ['ip', 'link', 'add', 'name', 'ndp0', 'netns', lab.serverNamespace, 'type', 'veth', 'peer', 'name', 'ndp1', 'netns', lab.clientNamespace],
      ['ip', '-n', lab.serverNamespace, 'addr', 'add', `${lab.serverAddress}/30`, 'dev', 'ndp0'],
      ['ip', '-n', lab.clientNamespace, 'addr', 'add', `${lab.clientAddress}/30`, 'dev', 'ndp1'],
      ['ip', '-n', lab.serverNamespace, 'link', 'set', 'ndp0', 'up'],
      ['ip', '-n', lab.clientNamespace, 'link', 'set', 'ndp1', 'up'],
      ['ip', '-n', lab.serverNamespace, 'link', 'set', 'lo', 'up'],
      ['ip', '-n', lab.clientNamespace, 'link', 'set', 'lo', 'up'],
    ];
    try {
      for (const step of steps) await run(step);
      await run(['ip', 'netns', 'exec', lab.clientNamespace, 'nft', '-f', '-'], labRuleset(dropRate, corruptRate, dataPort));
    } catch (err) {
      await lab.close();
      throw new NdpError(
        'NDP_ERR_NETNS_UNAVAILABLE',
        `cannot build a network namespace lab (needs root, iproute2 and nftables): ${describe(err)}`,
        { cause: err },
      );
    }
    return lab;
  }

  /** The argv that runs `argv` inside one side's namespace (`ip netns exec NS …`). */
  command(side: LabSide, argv: readonly string[]): string[] {
    return ['ip', 'netns', 'exec', side === 'server' ? this.serverNamespace : this.clientNamespace, ...argv];
  }

  /** Reads the nftables counters: exact numbers of data frames seen, dropped and corrupted. */
  async counters(): Promise<LabCounters> {
    const json = await run(['ip', 'netns', 'exec', this.clientNamespace, 'nft', '-j', 'list', 'table', 'inet', NFT_TABLE]);
    const found = { seen: 0, dropped: 0, corrupted: 0 };
    const parsed = JSON.parse(json) as { nftables?: Array<{ rule?: { comment?: string; expr?: Array<{ counter?: { packets: number } }> } }> };
    for (const item of parsed.nftables ?? []) {
      const rule = item.rule;
      if (rule === undefined) continue;
      const packets = rule.expr?.find((e) => e.counter !== undefined)?.counter?.packets ?? 0;
      if (rule.comment === 'seen' || rule.comment === 'dropped' || rule.comment === 'corrupted') found[rule.comment] = packets;
    }
    return found;
  }

  /** Deletes both namespaces (which removes the veth pair and the rules). Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    labClosed(this);
    for (const ns of [this.serverNamespace, this.clientNamespace]) {
      try {
        await run(['ip', 'netns', 'del', ns]);
      } catch {
        // Not created (a failed create) or already gone.
      }
    }
  }

  /** Synchronous `close` for the process 'exit' hook. */
  closeSync(): void {
    if (this.closed) return;
    this.closed = true;
    labClosed(this);
    for (const ns of [this.serverNamespace, this.clientNamespace]) spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
  }
}

/** Names of the lab namespaces that currently exist (for tests and diagnostics). */
export async function listLabNamespaces(): Promise<string[]> {
  try {
    const listing = await run(['ip', 'netns', 'list']);
    return listing
      .split('\n')
      .map((l) => l.split(' ')[0] ?? '')
      .filter((n) => n.startsWith(LAB_NAMESPACE_PREFIX));
  } catch {
    return [];
  }
}
