/**
 * Execution providers for the training session: which are usable here, and `auto`'s choice.
 * A provider counts as available only when a probe session actually runs on it (the WebGPU EP is
 * bundled everywhere but needs a Vulkan adapter; CUDA needs the provider library ONNX Runtime's
 * installer fetches).
 */
import ort from 'onnxruntime-node';
import { NdpError } from '../../src/protocol/errors.js';
import { Graph } from './graph.js';
import { encodeModel } from './onnx-encoder.js';

export const DEVICES = ['auto', 'cpu', 'webgpu', 'cuda'] as const;
export type Device = (typeof DEVICES)[number];
export type ConcreteDevice = Exclude<Device, 'auto'>;

/** Runs a 2×2 MatMul on the provider; resolves to undefined when it works, else the reason. */
export async function probeDevice(device: ConcreteDevice): Promise<string | undefined> {
  if (device === 'cpu') return undefined;
  const listed = ort.listSupportedBackends().find((b) => b.name === device);
  if (listed === undefined) return `onnxruntime-node ${ort.env.versions.common} does not list a ${device} backend`;
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
    const reason = await probeDevice(candidate);
    if (reason === undefined) return { device: candidate, notes: [...notes, `auto picked ${candidate}`] };
    notes.push(`${candidate} unavailable: ${reason}`);
  }
  return { device: 'cpu', notes: [...notes, 'auto picked cpu'] };
}
