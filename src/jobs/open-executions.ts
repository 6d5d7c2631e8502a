/**
 * The walk over the open executions of open jobs whose update command was sent, a page at a
 * time: one place for its paging (the cursors), the states it reads, what "sent" means and
 * where a stop is heard. The rollout engine's catch-up at start (`recover`), the tracker's scan
 * of every open execution (`ExecutionTracker.scan`) and the re-send after a store disruption
 * (`DisruptionResync`) walk it; each keeps its own work and pacing per page, in its loop.
 */
import type { ExecutionRecord, ExecutionStatus, JobRecord, JobStatus, StateStore } from '../store/state-store.ts';

/** Jobs whose open executions may still hear from a device: active ones, and those being stopped (their stop's pass may be owed). */
export const OPEN_JOB_STATUSES: readonly JobStatus[] = ['SCHEDULED', 'IN_PROGRESS', 'PAUSED', 'CANCELED', 'ABORTED'];

/** Executions not finished: a device may still report on them. */
export const OPEN_EXECUTION_STATUSES: readonly ExecutionStatus[] = ['QUEUED', 'IN_PROGRESS'];

/** What the walk reads. */
export type WalkedStore = Pick<StateStore, 'listJobs' | 'listJobExecutions'>;

/** One page of a job's executions: those of it whose command was sent. */
export interface SentPage {
  job: JobRecord;
  /** The page's executions whose command was sent (none at times: every page read is given). */
  executions: ExecutionRecord[];
  /** Another page of the job's executions follows. */
  more: boolean;
}

/** True when `e`'s command was sent: dispatched, or reported on (an IN_PROGRESS row of a legacy job has no dispatchedAt). */
export function commandSent(e: ExecutionRecord): boolean {
  return e.dispatchedAt !== undefined || e.status !== 'QUEUED';
}

/** How `jobsIn` reads. */
export interface JobsInOptions {
  statuses: readonly JobStatus[];
  /** Jobs read a page. */
  pageSize: number;
  /** Jobs read without their spec (it can run to megabytes). */
  omitSpec?: boolean;
  /** Asked before each page of jobs is read: true ends the walk there. */
  stopped?: () => boolean;
  /** Told each page of jobs as it is read, an empty one too, before its first job is given. */
  onPage?: (jobs: readonly JobRecord[]) => void;
}

/** The jobs in `statuses`, newest first, read a page at a time as they are taken. */
export async function* jobsIn(store: WalkedStore, options: JobsInOptions): AsyncGenerator<JobRecord, void, undefined> {
  const { pageSize, omitSpec, stopped, onPage } = options;
  let after: string | undefined;
  do {
    if (stopped?.()) return;
    const page = await store.listJobs({ status: [...options.statuses], limit: pageSize, ...(omitSpec ? { omitSpec } : {}), ...(after !== undefined ? { after } : {}) });
    onPage?.(page.items);
    yield* page.items;
    after = page.next;
  } while (after !== undefined);
}

/** How `sentExecutionPages` reads. */
export interface SentPagesOptions {
  /** Executions read a page. */
  pageSize: number;
  /** Default OPEN_EXECUTION_STATUSES. */
  executionStatuses?: readonly ExecutionStatus[];
  /** Asked before each page is read: true ends the walk there. */
  stopped?: () => boolean;
}

/**
 * `job`'s executions in `executionStatuses` whose command was sent, a page at a time (every
 * page read is given, one with none sent too). Its result is true when `stopped` ended it.
 */
export async function* sentExecutionPages(store: WalkedStore, job: JobRecord, options: SentPagesOptions): AsyncGenerator<SentPage, boolean, undefined> {
  const { pageSize, stopped } = options;
  const status = [...(options.executionStatuses ?? OPEN_EXECUTION_STATUSES)];
  let after: string | undefined;
  do {
    if (stopped?.()) return true;
    const page = await store.listJobExecutions(job.jobId, { status, limit: pageSize, ...(after !== undefined ? { after } : {}) });
    after = page.next;
    yield { job, executions: page.items.filter(commandSent), more: after !== undefined };
  } while (after !== undefined);
  return false;
}

/** How `openExecutions` walks. */
export interface OpenExecutionsOptions {
  jobStatuses: readonly JobStatus[];
  /** Default OPEN_EXECUTION_STATUSES. */
  executionStatuses?: readonly ExecutionStatus[];
  /** Jobs, and executions, read a page. */
  pageSize: number;
  /** Jobs read without their spec. */
  omitSpec?: boolean;
  /** Asked before each page is read (of executions; of jobs too unless `stopBeforeJobs` is false): true ends the walk there. */
  stopped?: () => boolean;
  /** Whether `stopped` is asked before a page of jobs too (default true); when false a page of jobs is read and its first job told (`onJob`) before it is asked. */
  stopBeforeJobs?: boolean;
  /** Told each page of jobs as it is read (`JobsInOptions.onPage`). */
  onJobs?: (jobs: readonly JobRecord[]) => void;
  /** Told each job as its executions are about to be read, before `stopped` is asked. */
  onJob?: (job: JobRecord) => void;
}

/**
 * The open executions of the jobs in `jobStatuses` whose command was sent, a page of a job's
 * at a time (`sentExecutionPages`), jobs newest first. The caller's work on a page is done
 * before the next page is read; a listing that fails rejects the walk.
 */
export async function* openExecutions(store: WalkedStore, options: OpenExecutionsOptions): AsyncGenerator<SentPage, void, undefined> {
  const { jobStatuses, pageSize, omitSpec, stopped, onJobs, onJob } = options;
  const jobs = jobsIn(store, {
    statuses: jobStatuses,
    pageSize,
    ...(omitSpec !== undefined ? { omitSpec } : {}),
    ...(stopped && options.stopBeforeJobs !== false ? { stopped } : {}),
    ...(onJobs ? { onPage: onJobs } : {}),
  });
  for await (const job of jobs) {
    onJob?.(job);
    if (yield* sentExecutionPages(store, job, { pageSize, ...(options.executionStatuses ? { executionStatuses: options.executionStatuses } : {}), ...(stopped ? { stopped } : {}) })) return;
  }
}
