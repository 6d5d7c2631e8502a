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

/** Throws CONFLICT naming the state when the move is illegal. */
export function assertJobMove(jobId: string, from: JobStatus, to: JobStatus): void {
  if (!MOVES[from].includes(to)) throw new UpdraftError('CONFLICT', `job ${jobId} is ${from}; it cannot become ${to}`);
}

