/**
 * Server-side timeouts (docs/design.md §4: devices that go silent do not stay IN_PROGRESS
 * forever). An execution's `dueAt` is the earliest of: the in-progress timeout counted from
 * when the command was sent, the step timeout counted from when the device entered its
 * current phase, and the grace given to a device asked to stop. Stored and indexed, so one
 * scheduler scan finds every expired execution, after a restart too.
 *
 * A device whose install gate put the install off (`details.waiting`, from
 * `reported.software.waiting`) gets, on top of the step timeout, the time until it asks its
 * gate again, counted from its last report: it is waiting for its owner's conditions (a
 * battery, a parked vehicle), not stuck. The in-progress timeout bounds the whole wait.
 */
import type { JsonObject } from '../protocol/json.ts';
import { parseInstallWait, type InstallWait } from '../protocol/software.ts';
import type { ExecutionRecord } from '../store/state-store.ts';
import type { JobSpec } from './job-spec.ts';

/** The install wait an execution's details record, if any. */
export function waitOf(details: JsonObject): InstallWait | undefined {
  return details.waiting === undefined ? undefined : parseInstallWait(details.waiting);
}

/** True when `recorded` (an execution's `details.waiting`) is the wait `reported` again. */
export function sameWait(recorded: unknown, reported: InstallWait): boolean {
  const r = parseInstallWait(recorded);
  return r !== undefined && r.count === reported.count && r.reason === reported.reason;
}

/** How long a device asked to stop (cancel) may take to confirm before it is recorded CANCELED. */
export const CANCEL_GRACE_MS = 5 * 60_000;

/** The deadline of a non-terminal execution, or undefined when none applies. */
export function deadlineOf(spec: JobSpec | undefined, e: Pick<ExecutionRecord, 'status' | 'dispatchedAt' | 'details'>): number | undefined {
  const candidates: number[] = [];
  const t = spec?.timeouts;
  if (t?.inProgressSeconds !== undefined && e.dispatchedAt !== undefined) candidates.push(e.dispatchedAt + t.inProgressSeconds * 1000);
  const phaseStartedAt = e.details.phaseStartedAt;
  if (t?.stepSeconds !== undefined && e.status === 'IN_PROGRESS' && typeof phaseStartedAt === 'number') candidates.push(phaseStartedAt + stepMs(t.stepSeconds, e.details));
  const cancelBy = e.details.cancelBy;
  if (typeof cancelBy === 'number') candidates.push(cancelBy);
  // a device's own step timer (AWS Jobs `stepTimeoutInMinutes`, set by the aws/ jobs door)
  const stepDeadlineAt = e.details.stepDeadlineAt;
  if (typeof stepDeadlineAt === 'number' && e.status !== 'QUEUED') candidates.push(stepDeadlineAt);
  return candidates.length === 0 ? undefined : Math.min(...candidates);
}

/** Why an execution expired, for its `details.error`. */
export function timeoutReason(spec: JobSpec | undefined, e: Pick<ExecutionRecord, 'status' | 'dispatchedAt' | 'details'>, now: number): string {
  const t = spec?.timeouts;
  const phaseStartedAt = e.details.phaseStartedAt;
  if (t?.stepSeconds !== undefined && e.status === 'IN_PROGRESS' && typeof phaseStartedAt === 'number' && phaseStartedAt + stepMs(t.stepSeconds, e.details) <= now) {
    const wait = waitOf(e.details);
    if (wait) return `step timeout: the device's install gate put the install off (${wait.reason}; ${wait.count} time${wait.count === 1 ? '' : 's'}), and it did not report within ${wait.nextCheckInSeconds + t.stepSeconds} s of that`;
    return `step timeout: no progress past ${String(e.details.agentStatus ?? 'its phase')} within ${t.stepSeconds} s`;
  }
  const stepDeadlineAt = e.details.stepDeadlineAt;
  if (typeof stepDeadlineAt === 'number' && stepDeadlineAt <= now) return 'step timeout: the device\'s stepTimeoutInMinutes expired';
  if (t?.inProgressSeconds !== undefined) return `in-progress timeout: not finished within ${t.inProgressSeconds} s of the command`;
  return 'timed out';
}

/** The step timeout of an execution in ms, with the time its device said it waits for its install gate. */
function stepMs(stepSeconds: number, details: JsonObject): number {
  return (stepSeconds + (waitOf(details)?.nextCheckInSeconds ?? 0)) * 1000;
}
