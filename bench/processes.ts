/** Child processes of the benchmarks: the server and the simulator, each in its own process. */
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { mustUndo } from './teardown.ts';

const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../bin/updraft.js');

/** An `updraft` child that exited before the bench stopped it: the message is one line, its output's end is `tail`. */
export class ChildExited extends Error {
  constructor(
    message: string,
    /** The end of the child's output (stdout and stderr): a crash's reason is there. */
    readonly tail: string,
    /** Its exit code, or null when a signal ended it. */
    readonly code: number | null,
  ) {
    super(message);
    this.name = 'ChildExited';
  }
}

/** A running `updraft` child. */
export interface Child {
  proc: ChildProcess;
  waitFor(re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  /** Resident set size in bytes, from /proc (Linux). */
  rss(): number;
  /** CPU time used so far (user + system) by the process and its live children (`sim --processes`), in seconds, from /proc (Linux). */
  cpuSeconds(): number;
  /** Rejects with a ChildExited if the process exits before stop(): race it against waits. */
  died(): Promise<never>;
  /** Stops the process (SIGTERM, SIGKILL after 15 s); rejects with its ChildExited if it had exited on its own before. */
  stop(): Promise<void>;
}

/**
 * The Node.js settings the server and the simulator run with, as `npm start` and the
 * deployment guide run the server: a young generation of 32 MiB semi-spaces instead of
 * 16 lets more of a fleet update's short-lived objects die young: in profiles of
 * 5,000-device updates the collector's share of the server was 4.5-9.4% (five runs)
 * against 10.3-10.4% (three) with the default, for up to 32 MiB more (docs/deployment.md).
 */
export const NODE_TUNING = ['--max-semi-space-size=32'];

/**
 * The simulator's young generation is larger still (a later flag wins): its memory stands for
 * the devices', not the server's, and its garbage collection is CPU the server under test
 * does not get. In profiles of the twelfth session of 2026-12-02, 128 MiB semi-spaces cut
 * the simulator's collector from 127 to 52 us per connected update (5,000 devices) and from
 * 320 to 207 us per cycling device (10,000), for about 200 MiB more of simulator memory.
 */
export const SIM_TUNING = ['--max-semi-space-size=128'];

/**
 * Spawns `updraft ...args` with NODE_TUNING; extra node flags (e.g. --cpu-prof) go before the
 * script. With `nice`, the process and every thread and child it makes run at that niceness
 * (nice(1) execs node, so the pid is node's: /proc figures and profile names still match).
 */
export function spawnUpdraft(args: string[], nodeFlags: string[] = [], opts: { nice?: number } = {}): Child {
  const node = [process.execPath, ...NODE_TUNING, ...nodeFlags, BIN, ...args];
  const [command, ...argv] = opts.nice ? ['nice', '-n', String(opts.nice), ...node] : node;
  const proc = spawn(command!, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const listeners = new Set<() => void>();
  const onData = (d: Buffer) => {
    out += d.toString();
    if (out.length > 1 << 20) out = out.slice(-(1 << 19)); // keep the tail: a long run logs a lot
    for (const l of listeners) l();
  };
  proc.stdout!.on('data', onData);
  proc.stderr!.on('data', onData);
  const exited = new Promise<void>((resolve) => proc.on('close', () => resolve()));
  // stop() was called while the process ran: its exit from then on is expected
  let stopping = false;
  const died = new Promise<never>((_, reject) => {
    proc.on('close', (code, signal) => {
      if (!stopping) reject(new ChildExited(`updraft ${args[0]} exited unexpectedly (${signal ? `signal ${signal}` : `code ${code}`})`, out.slice(-4000), code));
    });
  });
  died.catch(() => undefined); // observed by whoever races it
  const child: Child = {
    proc,
    waitFor(re, timeoutMs = 120_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const m = out.match(re);
          if (!m) return;
          listeners.delete(check);
          clearTimeout(timer);
          resolve(m);
        };
        const timer = setTimeout(() => reject(new Error(`timed out waiting for ${re}; output tail:\n${out.slice(-2000)}`)), timeoutMs);
        listeners.add(check);
        void exited.then(() => listeners.has(check) && reject(new Error(`process exited before ${re}:\n${out.slice(-2000)}`)));
        check();
      });
    },
    rss: () => procRss(proc.pid!),
    cpuSeconds: () => procTreeCpuSeconds(proc.pid!),
    died: () => died,
    async stop() {
      if (!stopping && proc.exitCode === null && proc.signalCode === null) {
        stopping = true;
        // not SIGINT: at Ctrl-C the child has had the group's, and `updraft sim` takes one
        // SIGINT only (process.once), a second killing it before it removed its directory
        proc.kill('SIGTERM');
      }
      const timer = stopping ? setTimeout(() => proc.kill('SIGKILL'), 15_000) : undefined;
      await exited;
      clearTimeout(timer);
      // it had exited on its own before: the figures taken meanwhile are not to be trusted
      if (!stopping) await died;
    },
  };
  // a bench that fails or is stopped by a signal stops it (run.ts); so does the bench's exit:
  // left running, a server keeps its ports and data dir, a simulator its fleet's connections
  const forget = mustUndo(
    () => child.stop(),
    () => proc.kill('SIGTERM'),
  );
  proc.on('close', forget);
  return child;
}

/** The live child processes of `pid` and their command lines, from /proc (Linux). */
export function childrenOf(pid: number): { pid: number; args: string[] }[] {
  const out: { pid: number; args: string[] }[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (Number(statFields(entry)[1]) === pid) out.push({ pid: Number(entry), args: readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0') });
    } catch {
      // ended meanwhile
    }
  }
  return out;
}

/** Resident memory of process `pid`, in bytes, from /proc (Linux). */
export function procRss(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) * 1024;
}

/** Fields of /proc/<pid>/stat after the parenthesized name (the state is [0]). */
function statFields(pid: number | string): string[] {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/** CPU time process `pid` used so far (user + system), in seconds, from /proc (Linux). */
export function procCpuSeconds(pid: number): number {
  // fields 14 and 15 of /proc/<pid>/stat: utime, stime in clock ticks
  const fields = statFields(pid);
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/**
 * CPU time of `pid` and of its live descendants, in seconds: a simulator split over processes
 * (`updraft sim --processes`) works in its children, whose time the parent's own counters
 * only include once they have exited.
 */
export function procTreeCpuSeconds(pid: number): number {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const ppid = Number(statFields(entry)[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)]);
    } catch {
      // ended meanwhile
    }
  }
  let total = 0;
  const todo = [pid];
  while (todo.length > 0) {
    const p = todo.pop()!;
    try {
      total += procCpuSeconds(p);
    } catch {
      continue; // ended meanwhile
    }
    todo.push(...(children.get(p) ?? []));
  }
  return total;
}
