/** Runs the real `updraft` command (bin/updraft.js) as a child process. */
import { spawn, type ChildProcess } from 'node:child_process';
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
}

/** Runs `updraft ...args` to completion. */
export function runCli(args: string[], opts: RunOptions = {}): Promise<CliResult> {
  return runNode([BIN, ...args], opts);
}

/**
 * Runs `node ...argv` (this Node) to completion. A run that has not ended within
 * `opts.timeoutMs` is killed (SIGKILL) and the promise rejects with its output so far: a
 * command that hung held the whole test file until the runner's own limit, saying nothing of
 * which command it was (review, 2026-12-06).
 */
export function runNode(argv: string[], opts: RunOptions = {}): Promise<CliResult> {
  const timeoutMs = opts.timeoutMs ?? RUN_TIMEOUT_MS;
  const shown = argv[0] === BIN ? `updraft ${argv.slice(1).join(' ')}` : `node ${argv.join(' ')}`;
  return new Promise((resolve, reject) => {
    // its own process group: at the timeout the whole group is killed, grandchildren too
    const child = spawn(process.execPath, argv, { cwd: opts.cwd, env: { ...process.env, ...opts.env }, detached: true });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    const fail = () => reject(new Error(`${shown.slice(0, 300)} did not end within ${timeoutMs} ms (killed); stdout: ${stdout.slice(-2000)}; stderr: ${stderr.slice(-2000)}`));
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        child.kill('SIGKILL'); // the group is gone: the child alone, if it still runs
      }
      // 'close' waits for every holder of the pipes: a grandchild (a broker the command
      // started, a reload command's shell) would hold them on, and the guard with them
      child.stdout.destroy();
      child.stderr.destroy();
      // a child that had exited by itself already, its grandchild holding the pipes: no 'exit' comes any more
      if (child.exitCode !== null || child.signalCode !== null) fail();
    }, timeoutMs);
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('exit', () => {
      if (timedOut) fail();
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      if (!timedOut) resolve({ code, stdout, stderr });
    });
  });
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

/** Polls `fn` until it returns a value (not undefined); a hang guard, not a speed check. */
export async function eventually<T>(fn: () => Promise<T | undefined>, timeoutMs = 30_000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`${what} not reached within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
