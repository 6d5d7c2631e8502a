/**
 * A job's states and their legal moves (STYLE.md habit 7). COMPLETED, CANCELED and ABORTED
 * are final.
 */
import { UpdraftError } from '../errors.ts';
import type { JobStatus } from '../store/state-store.ts';

const MOVES: Record<JobStatus, readonly JobStatus[]> = {
  SCHEDULED: ['IN_PROGRESS', 'PAUSED', 'CANCELED'],
  IN_PROGRESS: ['PAUSED', 'COMPLETED', 'CANCELED', 'ABORTED'],
  PAUSED: ['SCHEDULED', 'IN_PROGRESS', 'COMPLETED', 'CANCELED', 'ABORTED'],
  COMPLETED: [],
  CANCELED: [],
  ABORTED: [],
};

/** True for states a job never leaves. */
export function isJobFinal(status: JobStatus): boolean {
  return MOVES[status].length === 0;
}

/** What an operator asks of a job, by the state it moves the job to. */
const ASKED: Partial<Record<JobStatus, string>> = { PAUSED: 'paused', IN_PROGRESS: 'resumed', CANCELED: 'canceled' };

/**
 * Throws CONFLICT when the move is illegal, in an operator's words: the job is already there,
 * has finished, or is not paused. It said `job J is IN_PROGRESS; it cannot become
 * IN_PROGRESS` to a resume of a running job (QA).
 */
export function assertJobMove(jobId: string, from: JobStatus, to: JobStatus): void {
  if (MOVES[from].includes(to)) return;
  const asked = ASKED[to] ?? `moved to ${to}`;
  if (from === to && to !== 'IN_PROGRESS') throw new UpdraftError('CONFLICT', `job ${jobId} is ${from} already`);
  if (isJobFinal(from)) throw new UpdraftError('CONFLICT', `job ${jobId} has finished (${from}): it cannot be ${asked}`);
  if (to === 'IN_PROGRESS') throw new UpdraftError('CONFLICT', `job ${jobId} is ${from}, not paused: only a paused job resumes`);
  throw new UpdraftError('CONFLICT', `job ${jobId} is ${from}; it cannot be ${asked}`);
}

