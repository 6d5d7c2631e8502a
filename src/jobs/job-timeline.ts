/**
 * Completions over time for a job's chart: finished executions (by the time they last
 * changed) counted into equal time buckets from the job's start to its end (or now). Reads
 * the job's finished executions a page at a time, so memory stays flat at any job size;
 * the answer is a few dozen numbers.
 */
import type { ExecutionStatus, JobRecord, StateStore } from '../store/state-store.ts';

/** One bucket of the chart. */
export interface TimelineBucket {
  /** Start of the bucket, milliseconds since the epoch. */
  at: number;
  succeeded: number;
  /** FAILED, TIMED_OUT and REJECTED. */
  failed: number;
}

/** The chart's data. */
export interface JobTimeline {
  jobId: string;
  from: number;
  to: number;
  bucketMs: number;
  buckets: TimelineBucket[];
}

const FINISHED: ExecutionStatus[] = ['SUCCEEDED', 'FAILED', 'TIMED_OUT', 'REJECTED'];
const PAGE = 1000;

/** Buckets the job's finished executions; `buckets` from 1 to 500. */
export async function jobTimeline(store: StateStore, job: JobRecord, buckets: number, now: number): Promise<JobTimeline> {
  const progress = (job.progress ?? {}) as { startedAt?: unknown; finishedAt?: unknown };
  const from = typeof progress.startedAt === 'number' ? progress.startedAt : job.createdAt;
  const finishedAt = typeof progress.finishedAt === 'number' ? progress.finishedAt : undefined;
  // a finished job's chart ends when it finished; a running one's now
  const end = finishedAt ?? (isFinal(job) ? (job.updatedAt ?? now) : now);
  const to = Math.max(end, from + 1000);
  const bucketMs = Math.max(1, Math.ceil((to - from) / buckets));
  const out: TimelineBucket[] = Array.from({ length: buckets }, (_, i) => ({ at: from + i * bucketMs, succeeded: 0, failed: 0 }));
  let after: string | undefined;
  do {
    const page = await store.listJobExecutions(job.jobId, { status: FINISHED, limit: PAGE, ...(after !== undefined ? { after } : {}) });
    for (const e of page.items) {
      const i = Math.min(buckets - 1, Math.max(0, Math.floor((e.updatedAt - from) / bucketMs)));
      if (e.status === 'SUCCEEDED') out[i]!.succeeded++;
      else out[i]!.failed++;
    }
    after = page.next;
  } while (after !== undefined);
  return { jobId: job.jobId, from, to, bucketMs, buckets: out };
}

function isFinal(job: JobRecord): boolean {
  return job.status === 'COMPLETED' || job.status === 'CANCELED' || job.status === 'ABORTED';
}
