/**
 * `npm run bench`: runs every CPU benchmark in bench/ one after another, each in its own process so
 * one benchmark's heap and JIT state do not colour the next. Each prints its table and writes
 * bench/results/<name>.json. The GPU benchmarks (gpu-lora, torch-vs-webgpu) need a GPU machine
 * (see README "GPU check") and run only with `--gpu`.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const CPU_BENCHES = ['crc16', 'frame', 'data-loading', 'server-throughput', 'end-to-end', 'pcap-writer'];
const GPU_BENCHES = ['gpu-lora', 'torch-vs-webgpu'];

const names = process.argv.includes('--gpu') ? [...CPU_BENCHES, ...GPU_BENCHES] : CPU_BENCHES;
let failed = 0;
for (const name of names) {
  const script = fileURLToPath(new URL(`./${name}.js`, import.meta.url));
  process.stdout.write(`\n=== bench/${name} ===\n`);
  const result = spawnSync(process.execPath, [script], { stdio: 'inherit' });
  if (result.status !== 0) {
    failed++;
    process.stderr.write(`bench/${name} exited with ${result.status ?? result.signal}\n`);
  }
}
process.exitCode = failed === 0 ? 0 : 1;
