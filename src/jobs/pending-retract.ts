/**
 * A timed-out attempt's command still to be taken back once its retry is queued
 * (`details.retractPending`, the device-side job id of that command).
 *
 * The timeout takes the command back before it queues the retry (rollout-engine.ts, expire).
 * When that retract fails for now (429, 5xx: the replica overloaded or unreachable, the
 * database), the retry is queued all the same (a retry held back could be lost to the job
 * completing meanwhile), and the command must still be taken back: until the retry is sent,
 * whose command replaces it, a device coming back would install the attempt that timed out,
 * outside the job's pauses, rate and windows, and for good if the job stops first.
 *
 * It is retried until it is done, through the deadline index, rather than by each way the job
 * can end the unsent retry: the mark goes with the execution (its `dueAt` kept) whatever ends
 * it (a cancel, an abort, a retry taken back as the job stops, a refusal or removal at
 * dispatch, another instance's stop, a crash), and the next tick on whichever instance leads
 * tries the retract again, the same way a TIMED_OUT row awaiting its retract is finished
 * (STYLE.md habit 7). Only sending the retry, the retract done (or refused for good), or the
 * execution ending SUCCEEDED in place of the retry (retry-policy.ts: the device finished a
 * command of the job, on its build) ends it.
 */
import type { JsonObject } from '../protocol/json.ts';
import type { ExecutionRecord } from '../store/state-store.ts';
import { isTerminal } from './execution-state.ts';

/**
 * How long a retract that failed for now waits before it is tried again (ms): not at every
 * tick, so that executions stuck on a replica that is down do not fill every batch of due
 * executions ahead of real timeouts (the deadline index is read earliest first).
 */
export const RETRACT_RETRY_MS = 5_000;

/** The key of the mark in an execution's details. */
export const RETRACT_PENDING = 'retractPending';

/**
 * The device-side job id whose command `e` still owes a retract, if any. Once the retry's own
 * command is out (dispatched and not ended), that command has replaced it: nothing is owed.
 */
export function owedRetract(e: Pick<ExecutionRecord, 'status' | 'dispatchedAt' | 'details'>): string | undefined {
  const id = e.details[RETRACT_PENDING];
  if (typeof id !== 'string') return undefined;
  return e.dispatchedAt !== undefined && !isTerminal(e.status) ? undefined : id;
}

/** `details` without the mark (the same object when it has none). */
export function withoutRetractPending(details: JsonObject): JsonObject {
  if (details[RETRACT_PENDING] === undefined) return details;
  const { [RETRACT_PENDING]: _, ...rest } = details;
  return rest;
}

/** True when a retract failed only for now (retry later), not for good (a shadow that cannot take it). */
export function isTransient(err: { status: number }): boolean {
  return err.status >= 500 || err.status === 429;
}
