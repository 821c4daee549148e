/**
 * Execution providers for the training session: which are usable here, and `auto`'s choice.
 * A provider counts as available only when a probe session actually runs on it (the WebGPU EP is
 * bundled everywhere but needs a Vulkan adapter; CUDA needs the provider library ONNX Runtime's
 * installer fetches).
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import ort from 'onnxruntime-node';
import { NdpError } from '../../src/protocol/errors.js';
import { Graph } from './graph.js';
import { encodeModel } from './onnx-encoder.js';

export const DEVICES = ['auto', 'cpu', 'webgpu', 'cuda'] as const;
export type Device = (typeof DEVICES)[number];
export type ConcreteDevice = Exclude<Device, 'auto'>;

/** Runs a 2×2 MatMul on the provider in this process; resolves to undefined when it works, else the reason. */
export async function probeDeviceInProcess(device: ConcreteDevice): Promise<string | undefined> {
  const g = new Graph('float32');
  const x = g.input('x', 'float32', [2, 2]);
  g.output(g.matmul(x, x), 'y');
  try {
    const session = await ort.InferenceSession.create(encodeModel(g).model, { executionProviders: [device], logSeverityLevel: 3 });
    await session.run({ x: new ort.Tensor('float32', new Float32Array([1, 2, 3, 4]), [2, 2]) });
    await session.release();
    return undefined;
  } catch (err) {
    // ONNX Runtime prefixes its source location and the failed check; the last clause is the reason.
    const first = (err as Error).message.split('\n')[0] ?? '';
    const reason = first.split(/ was false\. |\] /).pop() ?? first;
    return `${device} execution provider failed to start: ${reason}`;
  }
}

/** Default time a device probe may take (Dawn's Vulkan start-up, shader compilation). */
export const DEVICE_PROBE_TIMEOUT_MS = 60_000;

/**
 * Whether `device` works here. GPU providers are probed in a child process: a failing provider makes
 * ONNX Runtime and Dawn print native errors on stderr, which would bury `ndp train`'s own message.
 */
export async function probeDevice(device: ConcreteDevice, timeoutMs = DEVICE_PROBE_TIMEOUT_MS): Promise<string | undefined> {
  if (device === 'cpu') return undefined;
  const listed = ort.listSupportedBackends().find((b) => b.name === device);
  if (listed === undefined) return `onnxruntime-node ${ort.env.versions.common} does not list a ${device} backend`;
  if (device === 'cuda' && !listed.bundled) {
    // The CUDA provider is a separate library that ONNX Runtime's installer downloads next to the binding.
    const dir = dirname(createRequire(import.meta.url).resolve('onnxruntime-node/package.json'));
    if (!existsSync(join(dir, 'bin', 'napi-v6', process.platform, process.arch, 'libonnxruntime_providers_cuda.so'))) {
      return 'cuda execution provider not installed (onnxruntime-node\'s installer fetches it; this install has no libonnxruntime_providers_cuda.so)';
    }
  }
  const script = fileURLToPath(new URL('./device-probe.js', import.meta.url));
  const r = spawnSync(process.execPath, [script, device], { encoding: 'utf8', timeout: timeoutMs });
  if (r.error !== undefined) return `${device} probe failed: ${r.error.message}`;
  const line = r.stdout.trim().split('\n').at(-1) ?? '';
  try {
    const answer = JSON.parse(line) as { reason?: string };
    return answer.reason;
  } catch {
    return `${device} probe ended without an answer (exit ${r.status ?? r.signal}): ${r.stderr.trim().split('\n').at(-1) ?? ''}`;
  }
}

/** Resolves `auto` (cuda, then webgpu, then cpu) and refuses an explicit device that does not work. */
export async function resolveDevice(device: string): Promise<{ device: ConcreteDevice; notes: string[] }> {
  if (!(DEVICES as readonly string[]).includes(device)) throw new NdpError('NDP_ERR_BAD_TRAIN_OPTION', `unknown device '${device}' (${DEVICES.join(', ')})`);
  if (device !== 'auto') {
    const reason = await probeDevice(device as ConcreteDevice);
    if (reason !== undefined) throw new NdpError('NDP_ERR_DEVICE_UNAVAILABLE', reason);
    return { device: device as ConcreteDevice, notes: [] };
  }
  const notes: string[] = [];
  for (const candidate of ['cuda', 'webgpu'] as const) {
    // lavapipe (Mesa's software Vulkan, used to test the webgpu path) is far slower than the cpu EP.
    if (candidate === 'webgpu' && /lvp/.test(process.env.VK_ICD_FILENAMES ?? '')) {
      notes.push('webgpu skipped: VK_ICD_FILENAMES selects lavapipe, a software Vulkan device (--device webgpu uses it anyway)');
      continue;
    }
    const reason = await probeDevice(candidate);
    if (reason === undefined) return { device: candidate, notes: [...notes, `auto picked ${candidate}`] };
    notes.push(`${candidate} unavailable: ${reason}`);
  }
  return { device: 'cpu', notes: [...notes, 'auto picked cpu'] };
}
