/**
 * The live JavaScript heap per connected device of the embedded server, without the bench's
 * noise (its `rss_kb_per_device` counts RSS growth, garbage included): an in-process server,
 * N devices registered, then connected by `updraft sim --mode connected` in another process;
 * the heap after forced garbage collections before and after they connect, divided by N.
 *
 *   node --expose-gc --import tsx bench/heap-per-device.ts [devices, default 3000]
 *
 * Used in the thirty-sixth session to find what the day's broker changes added per connection
 * (docs/benchmarks-history.md). Compare commits by running it in a clone of each.
 */
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startTestServer } from '../test/helpers/server.ts';

const repo = path.dirname(path.dirname(fileURLToPath(import.meta.url)));
const n = Number(process.argv[2] ?? 3000);
const gc = (globalThis as { gc?: () => void }).gc;
if (!gc || !Number.isInteger(n) || n < 1) {
  console.error('usage: node --expose-gc --import tsx bench/heap-per-device.ts [devices]');
  process.exit(2);
}

/** Heap and RSS after four full collections. */
async function settled(): Promise<{ heap: number; rss: number }> {
  for (let i = 0; i < 4; i++) {
    gc!();
    await new Promise((r) => setTimeout(r, 50));
  }
  const m = process.memoryUsage();
  return { heap: m.heapUsed, rss: m.rss };
}

const ts = await startTestServer();
try {
  const devices: { deviceId: string; secret: string }[] = [];
  for (let i = 0; i < n; i++) {
    const deviceId = `m-${i}`;
    devices.push({ deviceId, secret: (await ts.server.registry.register({ deviceId, tags: ['sim'] })).secret });
  }
  const file = path.join(ts.dataDir, 'devices.json');
  await writeFile(file, JSON.stringify(devices));
  await new Promise((r) => setTimeout(r, 1000));
  const before = await settled();
  const sim = spawn(process.execPath, ['--import', 'tsx', 'src/cli/main.ts', 'sim', '--devices-file', file, '--broker', ts.mqttUrl, '--server', ts.httpUrl, '--data-dir', ts.dataDir, '--mode', 'connected', '--connect-rate', '2000'], { cwd: repo, stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    await new Promise<void>((resolve, reject) => {
      let out = '';
      sim.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (/sim: ready/.test(out)) resolve();
      });
      sim.once('exit', (code) => reject(new Error(`updraft sim exited (${code}) before its devices connected`)));
    });
    await new Promise((r) => setTimeout(r, 3000)); // the devices' first reports settle
    const after = await settled();
    const kb = (bytes: number) => Math.round((bytes / 1024 / n) * 100) / 100;
    console.log(JSON.stringify({ devices: n, heap_kb_per_device: kb(after.heap - before.heap), rss_kb_per_device: kb(after.rss - before.rss) }));
  } finally {
    sim.kill('SIGTERM');
    if (sim.exitCode === null) await new Promise((r) => sim.once('exit', r));
  }
} finally {
  await ts.close();
}
