/** Runs the real `updraft` command (bin/updraft.js) as a child process. */
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import type { Readable } from 'node:stream';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bin/updraft.js');

/** Output and exit code of a finished command. */
export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** How long a run may take before it is killed and the test fails (a hang guard, not a speed check). */
const RUN_TIMEOUT_MS = 300_000;

/** Options of a run to completion; `timeoutMs` (default 5 minutes) kills a run that hangs and rejects, naming it. */
export interface RunOptions {
  cwd?: string;
  env?: Record<string, string>;
  timeoutMs?: number;
  /** How long a child that never reported the end of loading may stay silent, parked on a futex for the last span, before it counts as a start hang (default 60 s; the helper's own test shortens it). */
  startHangMs?: number;
}

/** Runs `updraft ...args` to completion. */
export function runCli(args: string[], opts: RunOptions = {}): Promise<CliResult> {
  return runNode([BIN, ...args], opts);
}

/**
 * How long a child may stay silent before it can count as hung in Node's module loader (see
 * `runNode`), and the span at its end over which its main thread must sit parked on a futex
 * using no CPU.
 */
const START_HANG_MS = 60_000;
const START_HANG_SAMPLE_MS = 10_000;

/**
 * Runs `node ...argv` (this Node) to completion. A run that has not ended within
 * `opts.timeoutMs` is killed (SIGKILL) and the promise rejects with its output so far and the
 * state of each of its threads (from /proc): a command that hung held the whole test file until
 * the runner's own limit, saying nothing of which command it was (review, 2026-12-06).
 *
 * One hang is not ours and is run again, once: `bin/updraft.js` loads the TypeScript sources
 * through tsx's `register()`, whose hooks run on Node's loader thread, and a short-lived Node 20
 * child now and then never gets past loading (the main thread waits on a futex for the loader
 * thread's answer for ever; cf. DataDog/dd-trace-js#9422, which kills such children). It was
 * seen once across the CI runs so far: a command that only parses its flags printed nothing for 300 s
 * (CI, 2026-12-06). Only a child that provably never got past loading is run again: an `updraft`
 * child gets `UPDRAFT_LOADED_FD=3` and bin/updraft.js writes a byte to fd 3 once main.ts is
 * loaded and the command has started; a command that did its work silently and then hung (at
 * exit, or a futex deadlock of ours) must fail, not run twice with its hang hidden (review of
 * 35021fa). A child that wrote no such byte and printed nothing for `START_HANG_MS`, and whose
 * main thread sat in a futex wait using no CPU over the last `START_HANG_SAMPLE_MS` of it (the
 * samples start at `START_HANG_MS - span`; an event loop waits in epoll, not on a futex; a busy
 * command uses CPU), is killed, its threads' state written to stderr, and the command run once
 * more. Any other hang, or a second one, fails the test as before. A child that is not bin/updraft.js
 * gets no `UPDRAFT_LOADED_FD` (its own children, forked with IPC on fd 3, would write into that)
 * but may write to fd 3 itself.
 */
export async function runNode(argv: string[], opts: RunOptions = {}): Promise<CliResult> {
  const first = await runNodeOnce(argv, opts, true);
  if (first !== 'start-hang') return first;
  return (await runNodeOnce(argv, opts, false)) as CliResult;
}

function runNodeOnce(argv: string[], opts: RunOptions, watchStart: boolean): Promise<CliResult | 'start-hang'> {
  const timeoutMs = opts.timeoutMs ?? RUN_TIMEOUT_MS;
  const shown = argv[0] === BIN ? `updraft ${argv.slice(1).join(' ')}` : `node ${argv.join(' ')}`;
  return new Promise((resolve, reject) => {
    // its own process group: at the timeout the whole group is killed, grandchildren too
    // fd 3: bin/updraft.js reports there that loading is over (see runNode)
    const env = { ...process.env, ...opts.env, ...(argv.includes(BIN) ? { UPDRAFT_LOADED_FD: '3' } : {}) };
    const child = spawn(process.execPath, argv, { cwd: opts.cwd, env, detached: true, stdio: ['pipe', 'pipe', 'pipe', 'pipe'] });
    const loadedPipe = child.stdio[3] as Readable;
    let loaded = false;
    loadedPipe.on('data', () => {
      loaded = true;
      loadedPipe.destroy(); // a grandchild holding it open must not hold 'close'
    });
    loadedPipe.on('error', () => {}); // a child that closed it early: no byte, nothing else
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    let startHang = false;
    let threads = '';
    const fail = () =>
      reject(new Error(`${shown.slice(0, 300)} did not end within ${timeoutMs} ms (killed); stdout: ${stdout.slice(-2000)}; stderr: ${stderr.slice(-2000)}; threads: ${threads}`));
    const killGroup = () => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        child.kill('SIGKILL'); // the group is gone: the child alone, if it still runs
      }
      // 'close' waits for every holder of the pipes: a grandchild (a broker the command
      // started, a reload command's shell) would hold them on, and the guard with them
      child.stdout.destroy();
      child.stderr.destroy();
      loadedPipe.destroy();
    };
    const ended = () => child.exitCode !== null || child.signalCode !== null;
    const timer = setTimeout(() => {
      clearTimeout(startTimer);
      timedOut = true;
      threads = threadStates(child.pid!);
      killGroup();
      // a child that had exited by itself already, its grandchild holding the pipes: no 'exit' comes any more
      if (ended()) fail();
    }, timeoutMs);
    // the start-hang watch: from START_HANG_MS - span, a sample each second over the span
    let parkedSince: { cpu: number; at: number } | undefined;
    const sample = () => {
      if (ended() || loaded || stdout !== '' || stderr !== '') return;
      const main = parkedMain(child.pid!);
      if (main === undefined || (parkedSince !== undefined && main.cpu !== parkedSince.cpu)) parkedSince = undefined;
      else parkedSince ??= { cpu: main.cpu, at: Date.now() };
      if (parkedSince !== undefined && Date.now() - parkedSince.at >= span) {
        clearTimeout(timer);
        startHang = true;
        process.stderr.write(`# ${shown.slice(0, 200)}: no output for ${startHangMs} ms, loading never reported over, main thread parked on a futex with no CPU for the last ${span} ms (Node's module loader); killed and run once more. threads: ${threadStates(child.pid!)}\n`);
        killGroup();
        return;
      }
      startTimer = setTimeout(sample, Math.min(1000, span / 4));
    };
    const startHangMs = opts.startHangMs ?? START_HANG_MS;
    const span = Math.min(START_HANG_SAMPLE_MS, startHangMs / 2);
    let startTimer = watchStart && startHangMs < timeoutMs ? setTimeout(sample, startHangMs - span) : undefined;
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', (err) => {
      clearTimeout(timer);
      clearTimeout(startTimer);
      reject(err);
    });
    child.on('exit', () => {
      if (timedOut) fail();
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      clearTimeout(startTimer);
      if (startHang) resolve('start-hang');
      else if (!timedOut) resolve({ code, stdout, stderr });
    });
  });
}

/** A /proc stat file's state and CPU ticks (utime + stime), read after the name's last ')' (a name may hold spaces and parentheses). */
function procStat(file: string): { state: string; cpu: number } {
  const stat = readFileSync(file, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // from field 3 (state) on
  return { state: f[0]!, cpu: Number(f[11]) + Number(f[12]) };
}

/** The main thread of `pid` when it waits on a futex: its CPU ticks so far (utime + stime). */
function parkedMain(pid: number): { cpu: number } | undefined {
  try {
    const wchan = readFileSync(`/proc/${pid}/task/${pid}/wchan`, 'utf8');
    if (!wchan.startsWith('futex')) return undefined;
    return { cpu: procStat(`/proc/${pid}/stat`).cpu };
  } catch {
    return undefined; // gone, or no /proc (not Linux): no start-hang watch
  }
}

/** Each thread of `pid`: name, state, kernel wait channel, CPU ticks (for a hang's report). */
function threadStates(pid: number): string {
  try {
    return readdirSync(`/proc/${pid}/task`)
      .map((tid) => {
        const dir = `/proc/${pid}/task/${tid}`;
        const { state, cpu } = procStat(`${dir}/stat`);
        const comm = readFileSync(`${dir}/comm`, 'utf8').trim();
        return `${tid}/${comm} ${state} ${readFileSync(`${dir}/wchan`, 'utf8') || '-'} cpu=${cpu}`;
      })
      .join(', ');
  } catch (err) {
    return `(unavailable: ${(err as Error).message})`;
  }
}

/** A long-running `updraft` process (server, agent) and its output so far. */
export interface CliProcess {
  child: ChildProcess;
  output(): string;
  /** Resolves with the first match of `re` in the combined output. */
  waitFor(re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** Sends a signal and waits for the exit code. */
  kill(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Starts `updraft ...args` in the background. */
export function startCli(args: string[], opts: { cwd?: string; env?: Record<string, string> } = {}): CliProcess {
  const child = spawn(process.execPath, [BIN, ...args], { cwd: opts.cwd, env: { ...process.env, ...opts.env } });
  let out = '';
  const listeners = new Set<() => void>();
  const onData = (d: Buffer) => {
    out += d.toString();
    for (const l of listeners) l();
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  return {
    child,
    output: () => out,
    waitFor(re, timeoutMs = 30_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const m = out.match(re);
          if (m) {
            listeners.delete(check);
            clearTimeout(timer);
            resolve(m);
          }
        };
        const timer = setTimeout(() => {
          listeners.delete(check);
          reject(new Error(`no ${re} in output within ${timeoutMs} ms:\n${out}`));
        }, timeoutMs);
        listeners.add(check);
        void exited.then(() => {
          if (listeners.has(check)) {
            listeners.delete(check);
            clearTimeout(timer);
            reject(new Error(`process exited before ${re}:\n${out}`));
          }
        });
        check();
      });
    },
    async kill(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

/** Polls `fn` until it returns a value (not undefined); a hang guard, not a speed check. `what` names the condition in the error (a function: read at the failure). */
export async function eventually<T>(fn: () => Promise<T | undefined>, timeoutMs = 30_000, what: string | (() => string) = 'condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    // `what` as a function: said as things are when it fails, not as they were when the wait began
    if (Date.now() > deadline) throw new Error(`${typeof what === 'function' ? what() : what} not reached within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
