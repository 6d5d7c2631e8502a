/**
 * An in-memory installer for the demo and the fleet simulator: it takes a configurable time,
 * fails at a configurable rate (a failed "health check" leaves the old version running, as a
 * real rollback would) and only records the version. Deterministic with a seeded `random`.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { UpdraftError } from '../errors.ts';
import type { DesiredSoftware } from '../protocol/software.ts';
import type { InstallContext, InstalledSoftware, Installer, RecoveryResult } from './installer.ts';

/** Options of the simulated installer. */
export interface SimulatedInstallerOptions {
  /** What runs before the first install (default `{ version: '1.0.0' }`). */
  initial?: InstalledSoftware;
  /** How long an install takes, in ms (default 0). */
  durationMs?: number;
  /** Probability (0..1) that an install fails its health check and rolls back (default 0). */
  failureRate?: number;
  /** Source of randomness in [0, 1) (default Math.random; pass `seededRandom(n)` for repeatable runs). */
  random?: () => number;
}

/** Records installs in memory; never touches the disk. */
export class SimulatedInstaller implements Installer {
  private installed: InstalledSoftware;
  private readonly opts: SimulatedInstallerOptions;
  /** Number of `install` calls so far (succeeded or not). */
  installs = 0;

  constructor(opts: SimulatedInstallerOptions = {}) {
    this.opts = opts;
    this.installed = opts.initial ?? { version: '1.0.0' };
  }

  async current(): Promise<InstalledSoftware> {
    return this.installed;
  }

  async install(_file: string, sw: DesiredSoftware, ctx: InstallContext): Promise<void> {
    this.installs++;
    const duration = this.opts.durationMs ?? 0;
    if (duration > 0) {
      await sleep(duration, undefined, ctx.signal ? { signal: ctx.signal } : {}).catch(() => {
        throw new UpdraftError('INSTALL', 'install aborted: the agent is stopping');
      });
    }
    if ((this.opts.random ?? Math.random)() < (this.opts.failureRate ?? 0)) {
      throw new UpdraftError('HEALTH_CHECK', `simulated health check failure of ${sw.version}; rolled back to ${this.installed.version}`);
    }
    this.installed = { name: sw.name, version: sw.version, sha256: sw.sha256, size: sw.size };
  }

  async recover(): Promise<RecoveryResult> {
    // memory does not survive a crash: nothing was changed
    return { outcome: 'not-started' };
  }
}

/** A small, fast, seeded random generator (mulberry32) returning numbers in [0, 1). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
