#!/usr/bin/env node
/**
 * The `ndp` command: dispatches `ndp <command> [args]` to src/cli/commands/<command>.ts. Each command
 * module exports `run(argv: string[]): Promise<number>` (the exit code) and `usage` (its help text).
 * Modules load lazily so `ndp inspect` does not pay for onnxruntime.
 */
interface CommandModule {
  run(argv: string[]): Promise<number>;
  readonly usage: string;
}

const COMMANDS: Record<string, { summary: string; load: () => Promise<CommandModule> }> = {
  convert: { summary: 'tokenize JSONL / source directories into an .ndp file', load: () => import('./commands/convert.js') },
  inspect: { summary: 'summarize an .ndp / .qubgpu file (or a .pcap), print samples, --reindex a damaged file', load: () => import('./commands/inspect.js') },
  serve: { summary: 'serve .ndp files to trainers over UDP and WebSocket (HTTP control plane, /metrics)', load: () => import('./commands/serve.js') },
  pull: { summary: 'receive a stream from a data server; write samples as JSON lines and the stats', load: () => import('./commands/pull.js') },
  train: { summary: 'train LoRA adapters on batches from a server (or a local .ndp file); adapter in PEFT layout', load: () => import('./commands/train.js') },
  quickstart: { summary: 'the whole pipeline on embedded defaults (what npm start runs): demo data, server, LoRA training over UDP', load: () => import('./commands/quickstart.js') },
  demo: { summary: 'protocol demo: encode, damage, decode and reassemble frames; check the accounting', load: () => import('./commands/demo.js') },
  feed: { summary: 'hand batches to your own PyTorch script (NdpBatchDataset) over the worker channel', load: () => import('./commands/feed.js') },
  experiment: { summary: 'loss-rate experiment: train per (loss rate, seed), report with a computed conclusion', load: () => import('./commands/experiment.js') },
};

function help(): string {
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(12)} ${c.summary}`);
  return `usage: ndp <command> [options]\n\ncommands:\n${lines.join('\n')}\n\nndp <command> --help shows a command's options.`;
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(help() + '\n');
    return name === undefined ? 2 : 0;
  }
  const command = COMMANDS[name];
  if (command === undefined) {
    process.stderr.write(`ndp: unknown command '${name}'\n${help()}\n`);
    return 2;
  }
  const module = await command.load();
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(module.usage + '\n');
    return 0;
  }
  return module.run(rest);
}

// `ndp inspect FILE --samples | head`: the reader left. Stop quietly, as other Unix tools do, instead
// of dying on an unhandled EPIPE with a stack trace; any other stdout error stays fatal.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code !== 'EPIPE') throw err;
  process.exit(process.exitCode ?? 0);
});

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    const e = err as { code?: string; message?: string };
    process.stderr.write(`ndp: ${e.code !== undefined ? `${e.code}: ` : ''}${e.message ?? String(err)}\n`);
    process.exitCode = 1;
  },
);
