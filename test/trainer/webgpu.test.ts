import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../..', import.meta.url));
/** The repo's own software-Vulkan setup (Mesa lavapipe), so CI tests the webgpu path without a GPU. */
const lavapipe = `${root}.ci/software-vulkan.sh`;

/** Environment under which Dawn finds a Vulkan device: the caller's when it has one, else lavapipe (software). */
function vulkanEnv(): { env?: NodeJS.ProcessEnv; reason?: string } {
  if (process.env.VK_ICD_FILENAMES !== undefined) return { env: process.env };
  if (!existsSync(lavapipe)) return { reason: `no Vulkan device configured and ${lavapipe} not found` };
  const r = spawnSync('bash', [lavapipe], { encoding: 'utf8', timeout: 300_000 });
  if (r.status !== 0) return { reason: `.ci/software-vulkan.sh failed (needs root and Debian's package mirror): ${(r.stderr ?? '').trim().split('\n').at(-1) ?? ''}` };
  const env = { ...process.env };
  for (const m of r.stdout.matchAll(/(\w+)=(\S+)/g)) env[m[1] as string] = m[2];
  return { env };
}

const setup = vulkanEnv();
t.test('webgpu (Dawn on lavapipe when there is no GPU): every node on the WebGPU EP, same step as cpu', { skip: setup.reason ?? false }, async (t) => {
  const r = spawnSync(process.execPath, [fileURLToPath(new URL('./webgpu-probe.js', import.meta.url))], { env: setup.env, encoding: 'utf8', timeout: 500_000, maxBuffer: 256 << 20 });
  t.equal(r.status, 0, r.status === 0 ? 'probe exited 0' : `probe failed: ${(r.stderr ?? '').slice(-600)}`);
  const placed = (r.stderr.match(/All nodes placed on \[WebGpuExecutionProvider\]/g) ?? []).length;
  t.equal(placed, 2, 'the gradient graph and the update graph run entirely on the WebGPU EP');
  const out = JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '{}') as { cpu: number; webgpu: number; maxParamDiff: number };
  t.ok(Math.abs(out.cpu - out.webgpu) < 1e-4, `loss cpu ${out.cpu} vs webgpu ${out.webgpu}`);
  t.ok(out.maxParamDiff < 1e-4, `updated LoRA matrices agree to ${out.maxParamDiff.toExponential(2)}`);
});
