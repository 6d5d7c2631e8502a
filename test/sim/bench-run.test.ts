/**
 * `npm run bench` (bench/run.ts) when a part fails under it: it fails at once, says why on one
 * line, and leaves no process or temporary directory behind. A tiny fleet, and the bench
 * stopped as soon as its simulator starts: seconds, not a benchmark.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { eventually, runNode } from '../helpers/cli.ts';
import { freePort } from '../helpers/free-port.ts';

const RUN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bench/run.ts');

/** A process's parent and command line, from /proc (Linux); undefined once it has ended. */
function procInfo(pid: number): { ppid: number; args: string[] } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    return { ppid, args: readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0') };
  } catch {
    return undefined;
  }
}

/** The live children of `pid` running `updraft <command>`. */
function updraftChildren(pid: number, command: 'server' | 'sim'): { pid: number; args: string[] }[] {
  const out: { pid: number; args: string[] }[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const info = procInfo(Number(entry));
    if (info?.ppid !== pid) continue;
    const bin = info.args.findIndex((a) => a.endsWith('updraft.js'));
    if (bin >= 0 && info.args[bin + 1] === command) out.push({ pid: Number(entry), args: info.args });
  }
  return out;
}

/** Whether `pid` runs (a zombie, exited but not yet reaped by its parent, does not). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

type Proc = { pid: number; args: string[] };

/**
 * Starts a 20-device bench (with `args`), waits for its server and simulator, and hands them
 * to `act`, which returns any more processes and directories to watch; then waits (at most
 * `waitMs`) for the bench to end, and reports which of them it left. Whatever is still
 * running at the end is killed.
 */
async function benchUntil(args: string[], act: (bench: { pid: number; server: Proc; sim: Proc }) => Promise<{ pids?: number[]; dirs?: string[] } | void>, waitMs = 60_000) {
  const out = await mkdtemp(path.join(os.tmpdir(), 'updraft-bench-run-test-'));
  // its own process group, as a shell's job: Ctrl-C's SIGINT goes to the whole group
  const proc = spawn(process.execPath, ['--import', 'tsx', RUN, '--sizes', '20', '--store-shadows', '0', '--out', out, ...args], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (d) => (stdout += d));
  proc.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => proc.on('close', (code, signal) => resolve({ code, signal })));
  const pids: number[] = [proc.pid!];
  const dirs: string[] = [];
  try {
    const sim = await eventually(async () => updraftChildren(proc.pid!, 'sim')[0], 120_000, 'the simulator started');
    const server = updraftChildren(proc.pid!, 'server')[0]!;
    pids.push(server.pid, sim.pid);
    dirs.push(server.args[server.args.indexOf('--data-dir') + 1]!);
    const more = await act({ pid: proc.pid!, server, sim });
    pids.push(...(more?.pids ?? []));
    dirs.push(...(more?.dirs ?? []));
    const t0 = Date.now();
    const timeout = new Promise<undefined>((resolve) => {
      const timer = setTimeout(resolve, waitMs);
      void exited.then(() => clearTimeout(timer));
    });
    const end = await Promise.race([exited, timeout]);
    // what the bench left, seen before this function's own cleanup below
    const left = { processes: pids.slice(1).filter(alive), dirs: dirs.filter((d) => existsSync(d)) };
    return { end, seconds: (Date.now() - t0) / 1000, stdout, stderr, left };
  } finally {
    // a bench that failed the test: nothing of it stays
    for (const pid of pids.reverse()) if (alive(pid)) process.kill(pid, 'SIGKILL');
    for (const dir of [out, ...dirs]) await rm(dir, { recursive: true, force: true });
  }
}

describe('bench run', () => {
  it('the server dying before the simulator is ready fails the run at once, blaming the server', async () => {
    const r = await benchUntil([], async ({ server }) => void process.kill(server.pid, 'SIGKILL'));
    assert.ok(r.end, `the bench still ran ${r.seconds} s after its server died:\n${r.stderr}`);
    assert.equal(r.end.code, 1, r.stderr);
    // the line names the phase it failed in
    assert.match(r.stderr, /^bench: error: \[1,5\] 20 connected: updraft server exited unexpectedly \(signal SIGKILL\)$/m);
    assert.deepEqual(r.left, { processes: [], dirs: [] }, 'the simulator stopped, the data dir removed');
  });

  it('a failure outside a server names its phase too: the store scenario on a PostgreSQL that cannot be reached', async () => {
    const out = await mkdtemp(path.join(os.tmpdir(), 'updraft-bench-run-test-'));
    try {
      // nothing listens there: creating the store's database fails at once
      const db = `postgres://postgres@127.0.0.1:${await freePort()}/postgres`;
      const r = await runNode(['--import', 'tsx', RUN, '--external', '--db', db, '--sizes', '0', '--store-shadows', '10', '--out', out]);
      assert.equal(r.code, 1, r.stderr);
      assert.match(r.stderr, /^bench: error: \[4\] store: connect ECONNREFUSED 127\.0\.0\.1:\d+$/m);
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  });

  for (const [signal, code, group] of [['SIGTERM', 143, false], ['SIGINT', 130, false], ['SIGINT', 130, true]] as const) {
    it(`${signal} to ${group ? 'the process group (Ctrl-C)' : 'the bench alone'} stops the server, the simulator and its processes, and removes their directories, then exits ${code}`, async () => {
      const r = await benchUntil(['--sim-processes', '2'], async ({ pid, sim }) => {
        // the simulator's own processes, and the directory it gave them their devices in
        const shards = await eventually(async () => {
          const found = updraftChildren(sim.pid, 'sim');
          return found.length === 2 ? found : undefined;
        }, 60_000, "the simulator's processes started");
        const devicesFile = shards[0]!.args[shards[0]!.args.indexOf('--devices-file') + 1]!;
        // to the bench alone, as `timeout`, a CI cancel or `kill` do; or to all, as Ctrl-C does
        process.kill(group ? -pid : pid, signal);
        return { pids: shards.map((s) => s.pid), dirs: [path.dirname(devicesFile)] };
      });
      assert.ok(r.end, `the bench still ran ${r.seconds} s after ${signal}:\n${r.stderr}`);
      assert.deepEqual(r.left, { processes: [], dirs: [] }, 'nothing left running, no directory left');
      assert.deepEqual(r.end, { code, signal: null }, r.stderr);
      assert.match(r.stderr, new RegExp(`^bench: ${signal}: stopping`, 'm'));
    });
  }
});
