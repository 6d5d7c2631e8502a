/**
 * Retention of finished jobs (`jobs.retentionDays`). A job's records (its executions, one row
 * per device: a weekly rollout to a million devices adds 52 million a year, their counts, its
 * devices' logs) otherwise stay for ever. Every `everyMs`, the instance that leads rollouts
 * (the engine's lease: one instance, so two never delete the same jobs) deletes the finished
 * jobs (COMPLETED, CANCELED, ABORTED) whose last change is older than `days`, as
 * `updraft job delete` does (`JobService.delete`: the same refusals, events and webhook
 * clean-up), at most `perPass` a pass: each deletion removes its executions in pieces
 * (`StateStore.deleteJob`), so a pass never holds the store long, and a backlog (retention
 * set on a store of years) is worked off over a few passes. Off (no timer at all) with
 * `days` 0: deleting an operator's records must be asked for.
 */
import { UpdraftError, asUpdraftError } from '../errors.ts';
import type { StateStore } from '../store/state-store.ts';
import type { Logger } from '../util/logger.ts';
import { PeriodicPass } from '../util/periodic-pass.ts';
import type { JobService } from './job-service.ts';

/** What the sweep needs. */
export interface JobRetentionDeps {
  store: Pick<StateStore, 'listFinishedBefore'>;
  jobs: Pick<JobService, 'delete'>;
  /** True on the instance that drives rollouts (RolloutEngine.isLeader): the only one that deletes. */
  isLeader: () => boolean;
  /** Days a finished job is kept after its last change; 0: for ever (nothing runs). */
  days: number;
  logger: Logger;
  /** Milliseconds since the epoch: the clock job times are written by (the cluster's, with PostgreSQL). */
  now?: () => number;
  /** Between two passes, in ms; default 10 minutes. */
  everyMs?: number;
  /** Most jobs deleted by one pass; default 5. */
  perPass?: number;
}

/** Defaults of the sweep's tuning. */
export const RETENTION_DEFAULTS = { everyMs: 10 * 60_000, perPass: 5 } as const;

const DAY_MS = 86_400_000;
/** How long a job refused by a pass (its devices still finishing) is left before it is tried again. */
const HELD_MS = 60 * 60_000;
/** Most such jobs remembered (a pass reads this many more, so that they do not block the others). */
const MAX_HELD = 100;

/** Deletes finished jobs past their retention, on the instance leading rollouts. */
export class JobRetention {
  private readonly deps: JobRetentionDeps;
  /**
   * The passes' timer. From stop() on (`stopping`), a pass under way ends after the job it is
   * deleting: a pass of `perPass` jobs of a million executions each takes minutes, and stop()
   * waits for it.
   */
  private readonly timer: PeriodicPass;
  /** Jobs a pass could not delete (CONFLICT), until when they are left alone. */
  private readonly held = new Map<string, number>();

  constructor(deps: JobRetentionDeps) {
    this.deps = deps;
    this.timer = new PeriodicPass(() => this.pass(), deps.everyMs ?? RETENTION_DEFAULTS.everyMs, (err) =>
      deps.logger.warn('finished jobs past their retention not deleted; the next pass tries again', { error: asUpdraftError(err).message }),
    );
  }

  async start(): Promise<void> {
    if (this.deps.days > 0) this.timer.start();
  }

  async stop(): Promise<void> {
    await this.timer.stop();
  }

  private get stopping(): boolean {
    return this.timer.stopping;
  }

  private now(): number {
    return this.deps.now ? this.deps.now() : Date.now();
  }

  /**
   * One pass: deletes up to `perPass` finished jobs last changed more than `days` ago, the
   * oldest first; nothing on an instance that does not lead rollouts, or with `days` 0, and
   * no further job once stop() was called (one being deleted is finished: the store deletes
   * its executions in pieces it does not stop between). Resolves with the ids deleted.
   */
  async pass(): Promise<string[]> {
    const { days, jobs, store, logger } = this.deps;
    if (days <= 0 || this.stopping || !this.deps.isLeader()) return [];
    const now = this.now();
    for (const [jobId, until] of this.held) if (until <= now) this.held.delete(jobId);
    const perPass = this.deps.perPass ?? RETENTION_DEFAULTS.perPass;
    const candidates = await store.listFinishedBefore(now - days * DAY_MS, perPass + this.held.size);
    const deleted: string[] = [];
    for (const job of candidates) {
      if (deleted.length >= perPass || this.stopping || !this.deps.isLeader()) break;
      if (this.held.has(job.jobId)) continue;
      try {
        await jobs.delete(job.jobId);
        deleted.push(job.jobId);
      } catch (err) {
        if (err instanceof UpdraftError && err.code === 'NOT_FOUND') continue; // deleted meanwhile (an operator)
        if (!(err instanceof UpdraftError && err.code === 'CONFLICT')) throw err;
        // its devices still finishing with it (a stop, an install, a take-back owed): later
        this.held.set(job.jobId, now + HELD_MS);
        if (this.held.size > MAX_HELD) this.held.delete(this.held.keys().next().value!);
        logger.info('finished job past its retention kept for now', { jobId: job.jobId, reason: err.message });
      }
    }
    if (deleted.length > 0) logger.info('finished jobs past their retention deleted', { jobs: deleted.length, retentionDays: days, jobIds: deleted.join(',') });
    return deleted;
  }
}
