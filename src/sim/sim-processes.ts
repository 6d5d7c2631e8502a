/**
 * `updraft sim --processes N`: one simulated fleet split over N simulator processes.
 *
 * One process cannot hold every device of a large fleet: each connected device keeps an MQTT
 * connection open (a file descriptor; a process here may not open more than 20,000), and one
 * Node process uses one core. The parent forks N children of the same command; child k runs
 * the k-th contiguous slice of the devices, from a file of its own (`--devices-file`, so no
 * child parses the whole fleet), with its share of the concurrency and of the connect rate
 * (shares that add up to the totals), and with each device's random sequence taken from its
 * index in the whole fleet (`--first-index`), so outcomes do not depend on how the fleet is
 * split. Children report their counters over the IPC channel a few times a second; the parent
 * adds them up and speaks for the fleet (its `sim: ready` line comes once every child is ready).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { UpdraftError } from '../errors.ts';
import type { SimDevice, SimStats, SimulatedFleet } from './fleet-simulator.ts';
import { trustFlag, type TrustAnchor } from './sim-trust.ts';
import { wholeNumber } from '../util/number-text.ts';

/**
 * Variables of the parent's environment a child is not given: every `UPDRAFT_*` one (the
 * operator token UPDRAFT_TOKEN, a device's UPDRAFT_DEVICE_PASSWORD, and the server settings
 * among which UPDRAFT_DB's PostgreSQL password, the webhook secrets, the TLS keys and the
 * broker URL), AWS's (UPDRAFT_BLOB's S3 credentials: AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN...)
 * and PostgreSQL's password (PGPASSWORD, read by pg). A child runs devices only: all it takes
 * (the broker, its devices file, the key file, its shares) is on its command line, and it asks
 * the server nothing; an environment inherited whole handed it the token the command says it
 * never has (review of 665f770), readable in /proc/<pid>/environ for the child's lifetime.
 */
const NOT_FOR_CHILDREN = /^(UPDRAFT_|AWS_|PGPASSWORD$)/;

/** `env` less what a child is not given (`NOT_FOR_CHILDREN`): PATH, HOME, NODE_OPTIONS, DEBUG... stay. */
export function childEnvironment(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(env).filter(([name]) => !NOT_FOR_CHILDREN.test(name)));
}

/** How often a child sends its counters. */
export const SHARD_REPORT_MS = 250;

/** What a child sends its parent: `owed?` asks whether the server owes a device a command (`SimOptions.commandOwed`). */
export type ShardMessage =
  | { kind: 'ready' }
  | { kind: 'report'; stats: SimStats; installs: number; settled: number; requests: { reports: number; gets: number } }
  | { kind: 'owed?'; id: number; deviceId: string; jobId: string; since: number };

/** The parent's answer to `owed?`: `owed`, or why it could not ask (`error`). */
export type ParentMessage = { kind: 'owed'; id: number; owed: boolean } | { kind: 'owed'; id: number; error: string };

/** Which slice of the fleet a child runs: the `index`-th of `count`. */
export interface Shard {
  index: number;
  count: number;
}

/** Parses the hidden `--first-index <n>` of a child: a non-negative integer. */
export function parseFirstIndex(value: string): number {
  const n = wholeNumber(value, 0, Number.MAX_SAFE_INTEGER);
  if (n === undefined) throw new UpdraftError('BAD_REQUEST', `--first-index must be a non-negative integer, got ${value}`);
  return n;
}

/** The contiguous slice of `items` that shard `index` of `count` runs, and where it starts (sizes differ by one at most). */
export function sliceOf<T>(items: T[], shard: Shard): { first: number; items: T[] } {
  const first = Math.floor((shard.index * items.length) / shard.count);
  const end = Math.floor(((shard.index + 1) * items.length) / shard.count);
  return { first, items: items.slice(first, end) };
}

/**
 * `total` split over `count` shards exactly: the shares sum to `total` and differ by one at
 * most, so the fleet's connect rate and concurrency hold as with one process (rounded up, 2/s
 * over 4 processes connected 4/s). A share of 0 is refused: the command refuses a total below
 * `count` first.
 */
export function sharesOf(total: number, count: number): number[] {
  if (total < count) throw new UpdraftError('BAD_REQUEST', `${total} cannot be split over ${count} processes: each takes at least 1`);
  return Array.from({ length: count }, (_, k) => Math.floor(((k + 1) * total) / count) - Math.floor((k * total) / count));
}

interface ChildState {
  proc: ChildProcess;
  report?: Extract<ShardMessage, { kind: 'report' }>;
  exited: boolean;
}

/** The options of the parent. */
export interface SimProcessesOptions {
  devices: SimDevice[];
  processes: number;
  /** `updraft sim` options every child takes as they are (broker, mode, rates, seed...). */
  childArgs: string[];
  /**
   * What the devices trust: the key the parent read or fetched once, handed to every child in
   * a file beside its devices file (`--root-key` or `--signing-key`), so that no child asks
   * the server again (nor needs the operator token, kept from its environment too:
   * `childEnvironment`); or the explicit opt-out.
   */
  trust: TrustAnchor | { allowUnsigned: true };
  /** Connect rate of the whole fleet, and its concurrency (cycling only): each child takes its share (`sharesOf`). */
  concurrency?: number;
  connectRate: number;
  /**
   * Cycling: answers a child's `owed?` (`SimOptions.commandOwed`). The parent asks the server
   * for its children, which are given no operator token (`childEnvironment`); without it a
   * child's devices are done at the first visit with no command after a failure.
   */
  commandOwed?: (deviceId: string, jobId: string, since: number) => Promise<boolean>;
  /** The `updraft` entry script, and the node flags to run it with. */
  entry?: string;
  execArgv?: string[];
}

/** A fleet simulated by several child processes, seen as one. */
export class SimProcesses implements SimulatedFleet {
  private readonly opts: SimProcessesOptions;
  private readonly children: ChildState[] = [];
  private dir: string | undefined;
  /** The children's devices files: each child writes its devices' state into its own as it stops. */
  private files: string[] = [];
  /** The devices' state, read from the children's files once they stopped. */
  private final: SimDevice[] | undefined;
  private stopping = false;
  /** Every child was ready: from then on a child's exit fails the simulation through `failed`. */
  private running = false;
  private listeners: (() => boolean)[] = [];
  private failure: ((err: Error) => void) | undefined;
  /** Rejects when a child exits, after start and before stop (race it against waits). */
  readonly failed: Promise<never>;

  constructor(opts: SimProcessesOptions) {
    if (!Number.isInteger(opts.processes) || opts.processes < 2) throw new UpdraftError('BAD_REQUEST', '--processes must be an integer of at least 2 here');
    if (opts.processes > opts.devices.length) throw new UpdraftError('BAD_REQUEST', `--processes ${opts.processes} is more than the ${opts.devices.length} devices`);
    this.opts = opts;
    this.failed = new Promise<never>((_, reject) => (this.failure = reject));
    this.failed.catch(() => undefined); // observed by whoever races it
  }

  get stats(): SimStats {
    const sum: SimStats = { connected: 0, refused: 0, gaveUp: 0, finished: 0, succeeded: 0, failed: 0, outcomes: 0, crashes: 0, offlinePeriods: 0, connects: 0, idleVisits: 0 };
    for (const c of this.children) {
      if (!c.report) continue;
      for (const k of Object.keys(sum) as (keyof SimStats)[]) sum[k] += c.report.stats[k];
      // a child's last report was sent while its devices were online: once it exited, none is
      // (the summary after a stop said "connected": 200 where one process says 0)
      if (c.exited) {
        sum.connected -= c.report.stats.connected;
        sum.refused -= c.report.stats.refused;
      }
    }
    return sum;
  }

  get installs(): number {
    return this.children.reduce((n, c) => n + (c.report?.installs ?? 0), 0);
  }

  get settled(): number {
    return this.children.reduce((n, c) => n + (c.report?.settled ?? 0), 0);
  }

  requestsSent(): { reports: number; gets: number } {
    const out = { reports: 0, gets: 0 };
    for (const c of this.children) {
      out.reports += c.report?.requests.reports ?? 0;
      out.gets += c.report?.requests.gets ?? 0;
    }
    return out;
  }

  /** Forks the children and resolves once every one is ready (connected mode: all its devices connected). */
  async start(): Promise<void> {
    const o = this.opts;
    // the devices (with their secrets) go to the children through files only this user reads
    const dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-sim-'));
    this.dir = dir;
    const slices = Array.from({ length: o.processes }, (_, index) => sliceOf(o.devices, { index, count: o.processes }));
    const files = await Promise.all(
      slices.map(async (slice, k) => {
        const file = path.join(dir, `devices-${k}.json`);
        await writeFile(file, JSON.stringify(slice.items), { mode: 0o600 });
        return file;
      }),
    );
    this.files = files;
    let trustArgs = ['--insecure-allow-unsigned'];
    if ('pem' in o.trust) {
      const keyFile = path.join(dir, `${o.trust.kind}-key.pub`);
      await writeFile(keyFile, o.trust.pem, { mode: 0o600 });
      trustArgs = [trustFlag(o.trust.kind), keyFile];
    }
    const entry = o.entry ?? process.argv[1]!;
    const rates = sharesOf(o.connectRate, o.processes);
    const concurrencies = o.concurrency === undefined ? undefined : sharesOf(o.concurrency, o.processes);
    const allReady = slices.map((slice, k) => {
      const shares = ['--connect-rate', String(rates[k]), ...(concurrencies ? ['--concurrency', String(concurrencies[k])] : [])];
      const args = ['sim', ...o.childArgs, ...trustArgs, ...shares, '--devices-file', files[k]!, '--first-index', String(slice.first), ...(o.commandOwed ? ['--ask-parent'] : [])];
      const proc = fork(entry, args, { execArgv: o.execArgv ?? process.execArgv, env: childEnvironment(process.env), stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      const child: ChildState = { proc, exited: false };
      this.children.push(child);
      return new Promise<void>((resolve, reject) => {
        proc.on('message', (msg: ShardMessage) => {
          if (msg.kind === 'ready') {
            resolve();
          } else if (msg.kind === 'owed?') {
            const answer = (m: ParentMessage) => {
              if (proc.connected) proc.send(m);
            };
            o.commandOwed!(msg.deviceId, msg.jobId, msg.since).then(
              (owed) => answer({ kind: 'owed', id: msg.id, owed }),
              (err: Error) => answer({ kind: 'owed', id: msg.id, error: err.message }),
            );
          } else {
            child.report = msg;
            this.listeners = this.listeners.filter((l) => !l());
          }
        });
        proc.on('exit', (code, signal) => {
          child.exited = true;
          if (this.stopping) return;
          const err = new UpdraftError('INTERNAL', `simulator process ${k + 1} of ${o.processes} exited (code ${code}, signal ${signal})`);
          reject(err);
          if (this.running) this.failure?.(err);
        });
      });
    });
    try {
      await Promise.all(allReady);
      this.running = true;
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  whenFinished(n: number): Promise<void> {
    return new Promise((resolve) => {
      const check = () => {
        if (this.settled < n) return false;
        resolve();
        return true;
      };
      if (!check()) this.listeners.push(check);
    });
  }

  /** Stops every child (SIGTERM: each stops its agents) and removes the devices files. */
  async stop(): Promise<void> {
    this.stopping = true;
    await Promise.all(
      this.children.map(async (c) => {
        if (c.exited) return;
        const exited = new Promise<void>((resolve) => c.proc.once('exit', () => resolve()));
        c.proc.kill('SIGTERM');
        const timer = setTimeout(() => c.proc.kill('SIGKILL'), 15_000);
        await exited;
        clearTimeout(timer);
      }),
    );
    if (this.dir) {
      // what each child wrote as it stopped (a child that could not keeps its devices as they came)
      const slices = await Promise.all(this.files.map(async (f) => JSON.parse(await readFile(f, 'utf8')) as SimDevice[])).catch(() => undefined);
      if (slices) this.final = slices.flat();
      await rm(this.dir, { recursive: true, force: true });
    }
    this.dir = undefined;
  }

  /** Once stopped: the devices with the state the children wrote for them. */
  async devicesState(): Promise<SimDevice[]> {
    return this.final ?? this.opts.devices;
  }
}

/**
 * The child's side: sends `ready` once `fleet` started, then its counters every
 * SHARD_REPORT_MS, and stops the fleet when the parent goes away.
 */
export function reportToParent(fleet: SimulatedFleet, stop: () => Promise<void>): { ready(): void; close(): void } {
  const send = (msg: ShardMessage) => {
    if (process.connected) process.send!(msg);
  };
  const report = () => send({ kind: 'report', stats: { ...fleet.stats }, installs: fleet.installs, settled: fleet.settled, requests: fleet.requestsSent() });
  const timer = setInterval(report, SHARD_REPORT_MS);
  // a parent killed without stopping us: do not leave orphaned devices connected
  process.once('disconnect', () => void stop().then(() => process.exit(0)));
  return {
    ready: () => {
      report();
      send({ kind: 'ready' });
    },
    close: () => clearInterval(timer),
  };
}

/**
 * The child's `SimOptions.commandOwed` (`--ask-parent`): each question sent to the parent,
 * which asks the server (`SimProcessesOptions.commandOwed`); rejects with the parent's reason
 * when it could not, or when the parent is gone.
 */
export function askParent(): (deviceId: string, jobId: string, since: number) => Promise<boolean> {
  let next = 0;
  const waiting = new Map<number, { resolve: (owed: boolean) => void; reject: (err: Error) => void }>();
  process.on('message', (m: ParentMessage) => {
    if (m?.kind !== 'owed') return;
    const w = waiting.get(m.id);
    waiting.delete(m.id);
    if ('error' in m) w?.reject(new Error(m.error));
    else w?.resolve(m.owed);
  });
  process.once('disconnect', () => {
    for (const w of waiting.values()) w.reject(new Error('the parent process is gone'));
    waiting.clear();
  });
  return (deviceId, jobId, since) =>
    new Promise((resolve, reject) => {
      if (!process.connected) return reject(new Error('the parent process is gone'));
      const id = next++;
      waiting.set(id, { resolve, reject });
      process.send!({ kind: 'owed?', id, deviceId, jobId, since } satisfies ShardMessage);
    });
}
