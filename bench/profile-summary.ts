/**
 * Where a process's time went during one scenario (`npm run bench -- --profile`): its
 * `--cpu-prof` profile cut to the scenario's window and its samples sorted into the system's
 * parts, so the bench prints what dominates instead of leaving a profile to read by hand.
 *
 * A profile's timestamps are microseconds of the monotonic clock, the one
 * `process.hrtime` reads in every process of the machine, so the bench marks a window with
 * `monotonicUs()` and the server's profile is cut to it. Each sample counts for its leaf
 * frame's part (self time). A native frame (no script) counts for the JavaScript frame that
 * called it, except those named below: system calls and the garbage collector. Idle samples
 * are left out: shares are of the time the thread was busy.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';

/** Microseconds of the monotonic clock, the clock of `--cpu-prof` timestamps. */
export function monotonicUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

/** A scenario's window in the server's and the simulator's profiles. */
export interface ProfileWindow {
  scenario: string;
  serverPid: number;
  simPid: number;
  fromUs: number;
  toUs: number;
  updates: number;
}

/** One part's share of a process's busy time in a window, and its time per update. */
export interface PartShare {
  part: string;
  share: number;
  usPerUpdate: number;
}

interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number }; children?: number[] }[];
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}

/** Native frames with a part of their own: time in the kernel or the collector, not in our code. */
const NATIVE_PARTS: Record<string, string> = {
  writev: 'socket writes (system calls)',
  writeBuffer: 'socket writes (system calls)',
  writeUtf8String: 'socket writes (system calls)',
  writeLatin1String: 'socket writes (system calls)',
  close: 'connections (accept, close)',
  fdatasync: 'store',
  fsync: 'store',
  '(garbage collector)': 'garbage collection',
  '(program)': 'V8, unattributed',
};

/** The part a script belongs to, by its URL. */
export function partOf(url: string): string {
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)?.[1];
  if (pkg) {
    if (['better-sqlite3', 'pg', 'pg-protocol', 'pg-pool'].includes(pkg)) return 'store';
    if (pkg === 'mqtt-packet' || pkg === 'bl') return 'MQTT packets (encoding, parsing)';
    if (['aedes', 'mqemitter', 'qlobber', 'fastparallel', 'fastfifo', 'reusify', 'retimer', 'aedes-persistence', 'aedes-packet', 'hyperid', 'end-of-stream'].includes(pkg)) return 'MQTT broker (aedes)';
    if (pkg === 'mqtt') return 'MQTT client (mqtt.js)';
    return `library: ${pkg}`;
  }
  const src = /\/src\/([^/]+)\//.exec(url)?.[1];
  if (src) {
    if (src === 'store') return 'store';
    if (src === 'shadow') return 'replica (shadows)';
    if (src === 'jobs' || src === 'aws') return 'jobs and rollouts';
    if (src === 'http' || src === 'artifacts' || src === 'credentials') return 'HTTP (downloads, API)';
    if (src === 'broker') return 'MQTT broker (aedes)';
    if (src === 'agent' || src === 'sim') return 'agent and simulator';
    return 'Updraft, other';
  }
  if (url.startsWith('node:_http') || url.startsWith('node:internal/http') || url === 'node:http') return 'HTTP (downloads, API)';
  if (url.startsWith('node:internal/crypto') || url === 'node:crypto') return 'crypto (signatures, hashes)';
  if (url.startsWith('node:')) return 'Node.js core (streams, sockets, timers)';
  return 'other';
}

/** A script's URL from its package or from `src/`: `node_modules/debug/src/common.js`, `src/shadow/replica.ts`. */
export function shortUrl(url: string): string {
  const i = url.lastIndexOf('/node_modules/');
  if (i >= 0) return url.slice(i + 1);
  return url.replace(/^.*\/src\//, 'src/');
}

/** One function's self time in a window: where exactly a part's time went. */
export interface FunctionShare {
  fn: string;
  part: string;
  share: number;
  usPerUpdate: number;
}

/** How many functions `summarizeProfile` names, most self time first. */
const TOP_FUNCTIONS = 15;

/** The largest profile `dir` holds for process `pid` (its main thread's). */
export function profileOf(dir: string, pid: number): string | undefined {
  const mine = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile') && f.split('.')[3] === String(pid));
  return mine.map((f) => path.join(dir, f)).sort((a, b) => statSync(b).size - statSync(a).size)[0];
}

/** The parts of `file`'s busy time between `fromUs` and `toUs`, largest first. */
export function summarizeProfile(file: string, fromUs: number, toUs: number, updates: number): { busySeconds: number; parts: PartShare[]; top: FunctionShare[] } {
  const p = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const partOfNode = new Map<number, string>();
  const part = (id: number): string => {
    const known = partOfNode.get(id);
    if (known) return known;
    const n = byId.get(id)!;
    const name = n.callFrame.functionName;
    let found: string;
    if (n.callFrame.url) found = partOf(n.callFrame.url);
    else if (NATIVE_PARTS[name]) found = NATIVE_PARTS[name]!;
    else found = parent.has(id) ? part(parent.get(id)!) : 'V8, unattributed';
    partOfNode.set(id, found);
    return found;
  };
  const totals = new Map<string, number>();
  // self time by function (name, script and line), the same function's nodes summed
  const byFunction = new Map<string, { part: string; us: number }>();
  const where = (id: number): string => {
    const { functionName, url, lineNumber } = byId.get(id)!.callFrame;
    return url ? `${functionName || '(anonymous)'} ${shortUrl(url)}:${lineNumber + 1}` : functionName;
  };
  let busy = 0;
  let t = p.startTime;
  for (let i = 0; i < p.samples.length; i++) {
    t += p.timeDeltas[i]!;
    if (t < fromUs || t > toUs) continue;
    const id = p.samples[i]!;
    if (byId.get(id)!.callFrame.functionName === '(idle)') continue;
    // a sample stands for the time until the next one
    const d = p.timeDeltas[i + 1] ?? 0;
    busy += d;
    const k = part(id);
    totals.set(k, (totals.get(k) ?? 0) + d);
    const fn = where(id);
    const f = byFunction.get(fn) ?? byFunction.set(fn, { part: k, us: 0 }).get(fn)!;
    f.us += d;
  }
  const shareOf = (us: number) => Math.round((1000 * us) / Math.max(1, busy)) / 10;
  const perUpdate = (us: number) => Math.round(us / Math.max(1, updates));
  const parts = [...totals]
    .sort((a, b) => b[1] - a[1])
    .map(([name, us]) => ({ part: name, share: shareOf(us), usPerUpdate: perUpdate(us) }));
  const top = [...byFunction]
    .sort((a, b) => b[1].us - a[1].us)
    .slice(0, TOP_FUNCTIONS)
    .map(([fn, f]) => ({ fn, part: f.part, share: shareOf(f.us), usPerUpdate: perUpdate(f.us) }));
  return { busySeconds: Math.round(busy / 1e4) / 100, parts, top };
}
