/**
 * Creating a job of many devices in pieces, the same way in both stores.
 *
 * One transaction for a job of 1,000,000 devices held SQLite's event loop 8 s (MQTT, HTTP
 * and every other write waited), and PostgreSQL's group commit, which writes one
 * transaction at a time, would queue every write of the instance behind it. A job above
 * JOB_CHUNK executions is written in pieces of JOB_CHUNK instead, each committed on its
 * own between other writes, and the job row comes last: until it is written the job does
 * not exist, and nobody can name its executions. A row in `job_creations` marks a creation
 * in progress; a failure removes what was written, and a crash is cleaned up when a store
 * starts (SQLite: every marker, the file has one user; PostgreSQL: markers nobody touched
 * for ABANDONED_AFTER_MS, another instance may be creating a job right now, and every
 * minute while it runs too: an instance restarted at once finds its own marker still fresh).
 * Until the job row is written, the reads of a device's jobs and of its work skip them.
 *
 * A job's deletion (StateStore.deleteJob) is the same in reverse: the job row goes first, with
 * a marker here in the same write, then `abandon` removes its executions in pieces, their
 * counts and the marker; a crash or a failure meanwhile is cleaned up as an abandoned creation.
 */
import { UpdraftError } from '../errors.ts';
import type { ExecutionRecord, IdempotencyClaim, JobRecord } from './state-store.ts';

/** Executions per piece: 25-45 ms of SQLite writing, one statement on PostgreSQL. */
export const JOB_CHUNK = 5_000;

/** A creation marker untouched this long, by the database's clock, belongs to an instance that died (PostgreSQL). */
export const ABANDONED_AFTER_MS = 10 * 60_000;

/** What a store does for one step of a job created in pieces. */
export interface JobCreationSteps {
  /**
   * Marks `jobId` as being created, holding `claim`'s key; CONFLICT if a job, or a creation,
   * has that id; IdempotencyKeyTaken if one holds the key.
   */
  begin(jobId: string, claim?: IdempotencyClaim): Promise<void>;
  /**
   * Writes one piece of executions (and their counts), and touches the marker; BAD_REQUEST,
   * writing nothing, when a device of the piece is in the job already (listed twice).
   */
  insert(jobId: string, executions: ExecutionRecord[]): Promise<void>;
  /**
   * In one transaction: drops the marker (gone: the creation was abandoned, INTERNAL) and writes
   * the job row, with `claim`'s key; IdempotencyKeyTaken, writing nothing, if a job holds it
   * already (a race the key's lock in `begin` should make impossible: a backstop).
   */
  finish(job: JobRecord, claim?: IdempotencyClaim): Promise<void>;
  /** Removes an unfinished creation: its executions, their counts and the marker. */
  abandon(jobId: string): Promise<void>;
}

/** Refuses a job that lists a device twice, before anything is written. */
export function assertDistinctDevices(jobId: string, executions: readonly ExecutionRecord[]): void {
  const seen = new Set<string>();
  for (const e of executions) {
    if (seen.has(e.deviceId)) throw new UpdraftError('BAD_REQUEST', `device ${e.deviceId} is listed twice in job ${jobId}`);
    seen.add(e.deviceId);
  }
}

/**
 * Creates `job` and its executions piece by piece; on failure nothing of it remains. The
 * marker holds `claim`'s key from the first write, so a second request with the key finds the
 * creation in progress rather than starting another.
 */
export async function createJobInPieces(steps: JobCreationSteps, job: JobRecord, executions: readonly ExecutionRecord[], claim?: IdempotencyClaim): Promise<void> {
  await steps.begin(job.jobId, claim);
  try {
    for (let i = 0; i < executions.length; i += JOB_CHUNK) {
      // twice in one piece here, in two pieces by the store (a Set of a million ids took 0.8 s)
      const piece = executions.slice(i, i + JOB_CHUNK);
      assertDistinctDevices(job.jobId, piece);
      await steps.insert(job.jobId, piece);
    }
    await steps.finish(job, claim);
  } catch (err) {
    // if this fails too, the marker stays and a sweep removes the rest once it is stale
    await steps.abandon(job.jobId).catch(() => undefined);
    throw err;
  }
}
