/**
 * What a process allocated during one scenario (`npm run bench -- --alloc`): the sampling
 * heap profile `alloc-sampler.mjs` writes between two signals, sorted into the system's parts
 * (the same parts as the CPU summary) and its largest allocation sites, in bytes per update.
 *
 * Every allocation the collector later frees counts: allocation is what the garbage collector
 * pays for, so this is where to look when `(garbage collector)` leads a CPU profile. A native
 * frame (a builtin such as `String.prototype.split`, no script) counts for the JavaScript frame
 * that called it, and is named with it.
 */
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { partOf, shortUrl } from './profile-summary.ts';

/** The preload that samples: `node --import <ALLOC_SAMPLER>` with `UPDRAFT_ALLOC_DIR` set. */
export const ALLOC_SAMPLER = new URL('./alloc-sampler.mjs', import.meta.url).href;

/** One part's allocations in a window. */
export interface AllocPart {
  part: string;
  share: number;
  bytesPerUpdate: number;
}

/** One allocation site (a function, or a builtin and its caller). */
export interface AllocSite {
  site: string;
  part: string;
  share: number;
  bytesPerUpdate: number;
}

interface HeapNode {
  callFrame: { functionName: string; url: string; lineNumber: number };
  selfSize: number;
  children?: HeapNode[];
}

/** How many sites `summarizeAllocations` names, most bytes first. */
const TOP_SITES = 15;

/** Starts sampling in each process (the first SIGUSR2 the sampler receives). */
export function startAllocSampling(pids: number[]): void {
  for (const pid of pids) process.kill(pid, 'SIGUSR2');
}

/**
 * Stops sampling in each process and waits for the profiles they write (each process writes
 * its `n`-th profile when told to stop for the `n`-th time); the file of each pid, if written
 * within `timeoutMs`.
 */
export async function stopAllocSampling(pids: number[], dir: string, timeoutMs = 60_000): Promise<Map<number, string>> {
  const before = new Map(pids.map((pid) => [pid, allocFiles(dir, pid).length]));
  for (const pid of pids) process.kill(pid, 'SIGUSR2');
  const found = new Map<number, string>();
  for (const deadline = Date.now() + timeoutMs; found.size < pids.length && Date.now() < deadline; await sleep(100)) {
    for (const pid of pids) {
      const files = allocFiles(dir, pid);
      if (files.length > before.get(pid)!) found.set(pid, files.at(-1)!);
    }
  }
  return found;
}

function allocFiles(dir: string, pid: number): string[] {
  return readdirSync(dir)
    .filter((f) => f.startsWith(`Alloc.${pid}.`) && f.endsWith('.heapprofile'))
    .sort((a, b) => Number(a.split('.')[2]) - Number(b.split('.')[2]))
    .map((f) => path.join(dir, f));
}

/** Bytes allocated per update in `file`, by part and by site, largest first. */
export function summarizeAllocations(file: string, updates: number): { bytesPerUpdate: number; parts: AllocPart[]; top: AllocSite[] } {
  const head = (JSON.parse(readFileSync(file, 'utf8')) as { head: HeapNode }).head;
  const parts = new Map<string, number>();
  const sites = new Map<string, { part: string; bytes: number }>();
  let total = 0;
  const where = (n: HeapNode) => `${n.callFrame.functionName || '(anonymous)'} ${shortUrl(n.callFrame.url)}:${n.callFrame.lineNumber + 1}`;
  const walk = (n: HeapNode, caller: { part: string; site: string } | undefined) => {
    const { url, functionName } = n.callFrame;
    const own = url ? { part: partOf(url), site: where(n) } : { part: caller?.part ?? 'V8, unattributed', site: caller ? `${functionName} ← ${caller.site}` : functionName };
    if (n.selfSize > 0) {
      total += n.selfSize;
      parts.set(own.part, (parts.get(own.part) ?? 0) + n.selfSize);
      const s = sites.get(own.site) ?? sites.set(own.site, { part: own.part, bytes: 0 }).get(own.site)!;
      s.bytes += n.selfSize;
    }
    // a builtin's callees (rare) count for the same JavaScript caller
    for (const c of n.children ?? []) walk(c, url ? own : caller);
  };
  walk(head, undefined);
  const shareOf = (bytes: number) => Math.round((1000 * bytes) / Math.max(1, total)) / 10;
  const perUpdate = (bytes: number) => Math.round(bytes / Math.max(1, updates));
  return {
    bytesPerUpdate: perUpdate(total),
    parts: [...parts].sort((a, b) => b[1] - a[1]).map(([part, bytes]) => ({ part, share: shareOf(bytes), bytesPerUpdate: perUpdate(bytes) })),
    top: [...sites]
      .sort((a, b) => b[1].bytes - a[1].bytes)
      .slice(0, TOP_SITES)
      .map(([site, s]) => ({ site, part: s.part, share: shareOf(s.bytes), bytesPerUpdate: perUpdate(s.bytes) })),
  };
}
