/**
 * Retries (DESIGN.md §4): a FAILED or TIMED_OUT execution of an active job goes back to
 * QUEUED as a new attempt while the job's retry limit allows. The attempt number changes the
 * device-side job id (`agent-job-id.ts`), so the agent, which never applies a job id twice,
 * takes it as new. The outcome of every attempt stays in `details.attempts`.
 */
import type { EventBus } from '../events/event-bus.ts';
import type { JsonObject } from '../protocol/json.ts';
import type { ExecutionRecord, JobRecord, StateStore } from '../store/state-store.ts';
import { canRetry } from './execution-state.ts';
import { mutateExecution } from './execution-writer.ts';
import { specOf } from './job-spec.ts';
import { isJobFinal } from './job-state.ts';

/** Requeues `e` as its next attempt if the job's retry policy allows; resolves with the new record, if any. */
export async function retryIfAllowed(deps: { store: StateStore; events: EventBus }, job: JobRecord, e: ExecutionRecord, now: number): Promise<ExecutionRecord | undefined> {
  const spec = specOf(job);
  if (!spec || isJobFinal(job.status)) return undefined;
  if (!canRetry(e.status) || !spec.retries.on.includes(e.status as 'FAILED' | 'TIMED_OUT')) return undefined;
  if ((e.attempt ?? 1) > spec.retries.limit) return undefined;
  return mutateExecution(
    deps,
    e,
    (cur) => {
      if (cur.status !== e.status || (cur.attempt ?? 1) !== (e.attempt ?? 1)) return undefined;
      const attempt = cur.attempt ?? 1;
      const past = Array.isArray(cur.details.attempts) ? cur.details.attempts : [];
      const outcome: JsonObject = { attempt, status: cur.status, at: now };
      if (typeof cur.details.error === 'string') outcome.error = cur.details.error;
      const details: JsonObject = { attempts: [...past, outcome] };
      if (cur.details.previous !== undefined) details.previous = cur.details.previous;
      return { status: 'QUEUED', attempt: attempt + 1, details, dispatchedAt: undefined, dueAt: undefined };
    },
    now,
  );
}
