/**
 * Temporary directories and things to stop, released together after a suite: what the
 * Mosquitto tests each wrote out (a `dirs` list, a `stops` list, a `tmp` maker and an `after`
 * that stops in reverse order, then deletes).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

/** Directories made for a suite and what to stop after it. */
export class Scratch {
  private readonly dirs: string[] = [];
  private readonly stops: (() => Promise<unknown>)[] = [];

  /** A new temporary directory named `prefix...`, deleted by `release`. */
  readonly tmp = async (prefix: string): Promise<string> => {
    const d = await mkdtemp(path.join(os.tmpdir(), prefix));
    this.dirs.push(d);
    return d;
  };

  /** `stop` is run by `release`, the latest first; its failure is ignored. */
  onRelease(stop: () => Promise<unknown>): void {
    this.stops.push(stop);
  }

  /** Stops what was registered (latest first), then deletes the directories. */
  async release(): Promise<void> {
    for (const s of this.stops.splice(0).reverse()) await s().catch(() => {});
    for (const d of this.dirs.splice(0)) await rm(d, { recursive: true, force: true });
  }
}
