/**
 * The default installer: two slots on disk (A/B) and a `current` symlink that is switched
 * atomically, so the device always has one complete, runnable version (pattern step 7).
 *
 *   <dir>/slots/a/{artifact, manifest.json}
 *   <dir>/slots/b/{artifact, manifest.json}
 *   <dir>/current -> slots/a
 *
 * A slot's `manifest.json` is written last (atomically, after the artifact is fsynced), so a
 * slot with a manifest is complete. Installing writes the inactive slot (checking size and
 * SHA-256 against the command as it copies: a changed file is refused), points `current` at
 * it (temporary symlink renamed over `current`), runs the health check, and points `current`
 * back when the check fails. `recover` finishes or undoes an install a crash interrupted.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { chmod, mkdir, open, readFile, readlink, rename, rm, symlink } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { UpdraftError, asUpdraftError } from '../errors.ts';
import type { DesiredSoftware } from '../protocol/software.ts';
import { silentLogger, type Logger } from '../util/logger.ts';
import { syncDir, writeFileAtomic } from '../util/atomic-file.ts';
import { timerMsProblem } from './agent-options-check.ts';
import { forgetCheck, killLeftoverCheck, recordCheck } from './check-record.ts';
import { hashFile } from './file-hash.ts';
import { runHealthCheck } from './health-check.ts';
import type { InstallContext, InstalledSoftware, Installer, RecoveryResult } from './installer.ts';

/** Options of the slot installer. */
export interface SlotInstallerOptions {
  /** Install directory: holds `slots/a`, `slots/b` and the `current` symlink. */
  dir: string;
  /**
   * Health-check command (run with `/bin/sh -c` in `dir`, env `UPDRAFT_SLOT` = the new slot's
   * directory, `UPDRAFT_VERSION` = the new version). Exit 0 keeps the new software.
   */
  healthCheck?: string;
  /** The health check fails after this many ms (default 60 000), from 1 to 2147483647 (about 24.8 days, a timer's longest). */
  healthCheckTimeoutMs?: number;
  /** Version reported while nothing was installed yet (default: none, the agent reports `0.0.0`). */
  initialVersion?: string;
  /** Name reported with `initialVersion`. */
  initialName?: string;
  logger?: Logger;
}

/** Defaults of the optional settings. */
export const SLOT_INSTALLER_DEFAULTS = { healthCheckTimeoutMs: 60_000 } as const;

/** One of the two slots. */
export type Slot = 'a' | 'b';

/** `slots/<x>/manifest.json`: what a complete slot holds. */
export interface SlotManifest {
  name: string;
  version: string;
  sha256: string;
  size: number;
  /** ISO time of installation. */
  installedAt: string;
  /** Set when the slot failed its health check: why. Such a slot is never switched to again. */
  rejected?: string;
  /**
   * The job whose health check rejected it. Recovery takes `rejected` as the outcome of that
   * job only: another job for the same build (a retry, a new deployment) installs it again.
   */
  rejectedBy?: string;
  /**
   * Written with the slot when there is a health check, removed once it passed: a slot still
   * marked was switched to without a passed check (a crash during it). A restart whose agent
   * lost its state (and with it the job's INSTALLING phase) still checks it again.
   */
  unchecked?: true;
  /**
   * The job that installed the slot, whose outcome a restart that checks it again reports.
   * Absent in manifests written before it was recorded (read as unknown: no outcome reported).
   */
  jobId?: string;
}

/** File name of the artifact inside a slot (`$UPDRAFT_SLOT/artifact`). */
export const ARTIFACT_FILE = 'artifact';
const MANIFEST_FILE = 'manifest.json';
/** `<dir>/.health-check.json`: the health check that runs (`check-record.ts`), gone once it ended. */
const CHECK_RECORD_FILE = '.health-check.json';

/** A/B slot installer with atomic switch, health check and rollback. */
export class SlotInstaller implements Installer {
  private readonly opts: SlotInstallerOptions;
  private readonly log: Logger;

  /** Throws UpdraftError CONFIG when `healthCheckTimeoutMs` is out of range. */
  constructor(opts: SlotInstallerOptions) {
    // a timer holds at most 2^31-1 ms: a longer timeout fired at once and rolled back every update
    const problem = opts.healthCheckTimeoutMs === undefined ? undefined : timerMsProblem('healthCheckTimeoutMs', opts.healthCheckTimeoutMs);
    if (problem !== undefined) throw new UpdraftError('CONFIG', `invalid SlotInstaller options: ${problem}`);
    this.opts = opts;
    this.log = (opts.logger ?? silentLogger).child('slot-installer');
  }

  /** Directory of a slot. */
  slotDir(slot: Slot): string {
    return path.join(this.opts.dir, 'slots', slot);
  }

  /** The slot `current` points to, or undefined on a fresh install directory. */
  async activeSlot(): Promise<Slot | undefined> {
    let target: string;
    try {
      target = await readlink(this.currentLink());
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw err;
    }
    const slot = path.basename(target);
    if (slot !== 'a' && slot !== 'b') throw new UpdraftError('INSTALL', `${this.currentLink()} points to ${target}, not to a slot; repair the install directory`);
    return slot;
  }

  /** The manifest of a slot, or undefined when the slot is empty or incomplete. */
  async readManifest(slot: Slot): Promise<SlotManifest | undefined> {
    try {
      return JSON.parse(await readFile(path.join(this.slotDir(slot), MANIFEST_FILE), 'utf8')) as SlotManifest;
    } catch (err) {
      if (isNotFound(err) || err instanceof SyntaxError) return undefined;
      throw err;
    }
  }

  async current(): Promise<InstalledSoftware | undefined> {
    const slot = await this.activeSlot();
    const manifest = slot && (await this.readManifest(slot));
    if (manifest) {
      const unchecked = manifest.unchecked ? { unchecked: true, ...(typeof manifest.jobId === 'string' ? { jobId: manifest.jobId } : {}) } : {};
      return { name: manifest.name, version: manifest.version, sha256: manifest.sha256, size: manifest.size, ...unchecked };
    }
    if (this.opts.initialVersion === undefined) return undefined;
    const initial: InstalledSoftware = { version: this.opts.initialVersion };
    if (this.opts.initialName !== undefined) initial.name = this.opts.initialName;
    return initial;
  }

  async install(file: string, sw: DesiredSoftware, ctx: InstallContext): Promise<void> {
    const log = this.jobLog(ctx);
    const previous = await this.activeSlot();
    const target: Slot = previous === 'a' ? 'b' : 'a';
    try {
      await this.writeSlot(target, file, sw, ctx.signal);
    } catch (err) {
      await rm(this.slotDir(target), { recursive: true, force: true }).catch(() => {});
      if (err instanceof UpdraftError && err.code === 'INTEGRITY') throw err;
      throw new UpdraftError('INSTALL', `cannot write slot ${target}: ${asUpdraftError(err).message}`, { cause: err });
    }
    try {
      await this.switchTo(target);
    } catch (err) {
      throw new UpdraftError('INSTALL', `cannot switch ${this.currentLink()} to slot ${target}: ${asUpdraftError(err).message}`, { cause: err });
    }
    log.info('switched', { slot: target, version: sw.version });
    await this.checkOrRollBack(target, previous, sw, ctx.signal, log);
  }

  /** Where an install's lines go: the job's logger (into the job's log too) when the agent gives one. */
  private jobLog(ctx: InstallContext): Logger {
    return ctx.logger ? ctx.logger.child('slot-installer') : this.log;
  }

  async recover(sw: DesiredSoftware, ctx: InstallContext): Promise<RecoveryResult> {
    const log = this.jobLog(ctx);
    const active = await this.activeSlot();
    if (active && matches(await this.readManifest(active), sw)) {
      // the crash came after the switch: the health check never finished
      const other: Slot = active === 'a' ? 'b' : 'a';
      const fallback = usable(await this.readManifest(other)) ? other : undefined;
      return this.finish(active, fallback, sw, ctx.signal, log);
    }
    const target: Slot = active === 'a' ? 'b' : 'a';
    const manifest = await this.readManifest(target);
    if (manifest && matches(manifest, sw) && (manifest.rejected === undefined || manifest.rejectedBy === sw.jobId)) {
      // this job's own check rejected it before the crash: that is its outcome. A slot an
      // earlier job rejected (the same build, a check since fixed) is discarded below, and
      // this job installs as if nothing had begun
      if (manifest.rejected !== undefined) return { outcome: 'rolled-back', reason: manifest.rejected };
      // the slot was completely written before the crash: finish the install
      const actual = await hashFile(path.join(this.slotDir(target), ARTIFACT_FILE)).catch(() => undefined);
      if (actual?.sha256 === sw.sha256 && actual.size === sw.size) {
        await this.switchTo(target);
        log.info('switched after a restart: the slot was written before it', { slot: target, version: sw.version });
        return this.finish(target, active, sw, ctx.signal, log);
      }
    }
    // a half-written slot, or one an earlier job rejected: discard it, the old software runs, nothing was changed
    await rm(this.slotDir(target), { recursive: true, force: true });
    return { outcome: 'not-started' };
  }

  private async finish(slot: Slot, fallback: Slot | undefined, sw: DesiredSoftware, signal: AbortSignal | undefined, log: Logger): Promise<RecoveryResult> {
    try {
      await this.checkOrRollBack(slot, fallback, sw, signal, log);
      return { outcome: 'installed' };
    } catch (err) {
      return { outcome: 'rolled-back', reason: asUpdraftError(err).message };
    }
  }

  /** Health-checks `slot` (already current); on failure points `current` back to `previous` and throws. */
  private async checkOrRollBack(slot: Slot, previous: Slot | undefined, sw: DesiredSoftware, signal: AbortSignal | undefined, log: Logger): Promise<void> {
    if (this.opts.healthCheck === undefined) return this.markChecked(slot);
    // a check that a crash left running (in its own process group, it outlives the agent) is
    // killed first: two at once can fail each other. It is recorded while it runs for that
    const record = path.join(this.opts.dir, CHECK_RECORD_FILE);
    await killLeftoverCheck(record, log);
    let recording: Promise<void> | undefined;
    try {
      try {
        await runHealthCheck({
          logger: log,
          command: this.opts.healthCheck,
          cwd: this.opts.dir,
          env: { UPDRAFT_SLOT: this.slotDir(slot), UPDRAFT_VERSION: sw.version },
          timeoutMs: this.opts.healthCheckTimeoutMs ?? SLOT_INSTALLER_DEFAULTS.healthCheckTimeoutMs,
          ...(signal ? { signal } : {}),
          onSpawn: (pgid) => {
            recording = recordCheck(record, pgid).catch((err: unknown) => log.warn('cannot record the running health check', { error: asUpdraftError(err).message }));
          },
        });
      } finally {
        await recording;
        await forgetCheck(record).catch(() => {});
      }
    } catch (err) {
      const reason = asUpdraftError(err).message;
      await this.switchTo(previous);
      // the line names the slot left (with the version it held) and the one back in use: it
      // said `slot=a version=2.0.0`, the slot rolled back to beside the version rejected (QA)
      const moved = { from: slot, to: previous ?? 'none', version: sw.version };
      if (signal?.aborted) {
        // a check cut short by stop() (the only abort once installing: a job is called off
        // before it installs) says nothing about the software: recover() checks it again at
        // the next start. Not a warning: it was logged `WARN rolled back` at every stop (QA)
        log.info('health check stopped with the agent: back on the previous slot until the next start checks the version again', moved);
      } else {
        await this.markRejected(slot, reason, sw.jobId);
        log.warn('rolled back', { ...moved, reason });
      }
      throw new UpdraftError('HEALTH_CHECK', reason, { cause: err });
    }
    await this.markChecked(slot);
  }

  /** The slot passed its check (or there is none): no restart checks it again. */
  private async markChecked(slot: Slot): Promise<void> {
    const manifest = await this.readManifest(slot).catch(() => undefined);
    if (!manifest?.unchecked) return;
    const { unchecked: _passed, ...checked } = manifest;
    // not fatal: the software passed; a restart that lost its state would only check it again
    await writeFileAtomic(path.join(this.slotDir(slot), MANIFEST_FILE), JSON.stringify(checked, null, 2) + '\n', 0o644).catch((err: unknown) =>
      this.log.warn('cannot mark the slot checked', { slot, error: asUpdraftError(err).message }),
    );
  }

  private async writeSlot(slot: Slot, file: string, sw: DesiredSoftware, signal: AbortSignal | undefined): Promise<void> {
    const dir = this.slotDir(slot);
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true });
    signal?.throwIfAborted();
    const artifact = path.join(dir, ARTIFACT_FILE);
    // hashed as it is copied: what goes into the slot is the build the signed command names,
    // whatever happened to the file since the agent verified it (it may have waited hours for
    // the install gate), at no extra read
    const hash = createHash('sha256');
    let size = 0;
    await pipeline(
      createReadStream(file, signal ? { signal } : {}),
      async function* (chunks: AsyncIterable<Buffer>) {
        for await (const chunk of chunks) {
          size += chunk.length;
          if (size > sw.size) throw new UpdraftError('INTEGRITY', `the file to install is not the verified build: more than the ${sw.size} bytes announced; nothing installed`);
          hash.update(chunk);
          yield chunk;
        }
      },
      createWriteStream(artifact),
    );
    const actual = hash.digest('hex');
    if (size !== sw.size) throw new UpdraftError('INTEGRITY', `the file to install is not the verified build: ${size} bytes, expected ${sw.size}; nothing installed`);
    if (actual !== sw.sha256) throw new UpdraftError('INTEGRITY', `the file to install is not the verified build: sha256 ${actual}, expected ${sw.sha256}; nothing installed`);
    await chmod(artifact, 0o755);
    const handle = await open(artifact, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
    signal?.throwIfAborted();
    const manifest: SlotManifest = { name: sw.name, version: sw.version, sha256: sw.sha256, size: sw.size, installedAt: new Date().toISOString(), jobId: sw.jobId, ...(this.opts.healthCheck !== undefined ? { unchecked: true as const } : {}) };
    // written last: a slot with a manifest is complete
    await writeFileAtomic(path.join(dir, MANIFEST_FILE), JSON.stringify(manifest, null, 2) + '\n', 0o644);
  }

  /** Points `current` at `slot` atomically (temporary symlink renamed over it); undefined removes it. */
  private async switchTo(slot: Slot | undefined): Promise<void> {
    if (slot === undefined) {
      await rm(this.currentLink(), { force: true });
    } else {
      const tmp = path.join(this.opts.dir, `.current.${randomBytes(4).toString('hex')}.tmp`);
      await symlink(path.join('slots', slot), tmp);
      try {
        await rename(tmp, this.currentLink());
      } catch (err) {
        await rm(tmp, { force: true });
        throw err;
      }
    }
    await syncDir(this.opts.dir);
  }

  private async markRejected(slot: Slot, reason: string, jobId: string): Promise<void> {
    const manifest = await this.readManifest(slot).catch(() => undefined);
    if (!manifest) return;
    // no job id: a slot checked again at start whose manifest did not record its job (agent.ts recheckCurrent)
    const rejected: SlotManifest = { ...manifest, rejected: reason, ...(jobId !== '' ? { rejectedBy: jobId } : {}) };
    await writeFileAtomic(path.join(this.slotDir(slot), MANIFEST_FILE), JSON.stringify(rejected, null, 2) + '\n', 0o644).catch((err: unknown) =>
      this.log.warn('cannot mark slot rejected', { slot, error: asUpdraftError(err).message }),
    );
  }

  private currentLink(): string {
    return path.join(this.opts.dir, 'current');
  }
}

function matches(manifest: SlotManifest | undefined, sw: DesiredSoftware): boolean {
  return manifest !== undefined && manifest.version === sw.version && manifest.sha256 === sw.sha256;
}

function usable(manifest: SlotManifest | undefined): boolean {
  return manifest !== undefined && manifest.rejected === undefined;
}

function isNotFound(err: unknown): boolean {
  return (err as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
}
