/**
 * Retries (docs/design.md §4): a FAILED or TIMED_OUT execution of an active job goes back to
 * QUEUED as a new attempt while the job's retry limit allows. The attempt number changes the
 * device-side job id (`agent-job-id.ts`), so the agent, which never applies a job id twice,
 * takes it as new. The outcome of every attempt stays in `details.attempts`.
 *
 * A device reinstated after a revocation is taken back the same way: the executions that
 * ended REMOVED because it was revoked (before their command was sent) are queued again as
 * their next attempt, in the jobs still active (`requeueReinstated`).
 */
import type { EventBus } from '../events/event-bus.ts';
import { isJsonObject, type JsonObject } from '../protocol/json.ts';
import type { ReportedSoftware } from '../protocol/software.ts';
import type { ExecutionRecord, JobRecord, StateStore } from '../store/state-store.ts';
import { parseAgentJobId } from './agent-job-id.ts';
import { canRetry } from './execution-state.ts';
import { mutateExecution } from './execution-writer.ts';
import { specOf } from './job-spec.ts';
import { isJobFinal } from './job-state.ts';
import { owedRetract, RETRACT_PENDING, RETRACT_RETRY_MS, withoutRetractPending } from './pending-retract.ts';

/**
 * Requeues `e` as its next attempt if the job's retry policy allows and the job is active;
 * resolves with the new record, if any: QUEUED, or SUCCEEDED in place of the retry of a
 * timed-out attempt whose own SUCCESS came in meanwhile (`succeededAfterTimeout`). `job`
 * gives the rules (its spec); its status may be stale (the tracker caches jobs), so the
 * store's is read, before the retry and after it.
 * `retractPending`: the timed-out attempt's command, whose retract failed for now, that the
 * retry still owes the device (pending-retract.ts).
 */
export async function retryIfAllowed(deps: { store: StateStore; events: EventBus }, job: JobRecord, e: ExecutionRecord, now: number, retractPending?: string): Promise<ExecutionRecord | undefined> {
  const spec = specOf(job);
  if (!spec || isJobFinal(job.status)) return undefined;
  if (!canRetry(e.status) || !spec.retries.on.includes(e.status as 'FAILED' | 'TIMED_OUT')) return undefined;
  if ((e.attempt ?? 1) > spec.retries.limit) return undefined;
  // the device was deleted (decommission marks its finished executions): no attempt for a device
  // that is gone, whose next one the send path would only end REMOVED (a timeout finished after
  // the deletion turned TIMED_OUT into REMOVED, moving the job's waves and abort figures)
  if (e.details.deviceDeletedAt !== undefined) return undefined;
  // an install left to finish by a cancel, which then fails, is not retried
  if (!(await isActive(deps.store, job.jobId))) return undefined;
  return requeue(deps, e, now, false, retractPending);
}

/** Why the engine ends a revoked device's queued execution REMOVED (`rollout-engine.ts`). */
export const DEVICE_REVOKED = 'the device was revoked';

/**
 * After `deviceId` is reinstated: its executions that ended REMOVED because it was revoked,
 * in jobs still active, queued again as their next attempt. Resolves with their job ids.
 */
export async function requeueReinstated(deps: { store: StateStore; events: EventBus }, deviceId: string, now: number): Promise<string[]> {
  const requeued: string[] = [];
  for (const e of await deps.store.listExecutions({ deviceId })) {
    if (e.status !== 'REMOVED' || e.details.error !== DEVICE_REVOKED) continue;
    if (!(await isActive(deps.store, e.jobId))) continue;
    if (await requeue(deps, e, now)) requeued.push(e.jobId);
  }
  return requeued;
}

/**
 * An active continuous job's execution left by a device that was deleted (`details.deviceDeletedAt`,
 * `fleet/decommission.ts`), for the device registered since under the same id: a new device,
 * queued again as the execution's next attempt (a device-side job id it never saw). The earlier
 * device's outcome stays in `details.attempts`; what it ran before the job (`previous`) is not
 * the new device's and goes. Resolves with the new record, or undefined.
 */
export function requeueForNewDevice(deps: { store: StateStore; events: EventBus }, e: ExecutionRecord, now: number): Promise<ExecutionRecord | undefined> {
  if (e.details.deviceDeletedAt === undefined) return Promise.resolve(undefined);
  return requeue(deps, e, now, true);
}

/**
 * `e` (as read) back to QUEUED as its next attempt, the outcome of this one kept (or ended
 * SUCCEEDED: `succeededAfterTimeout`); undefined when it changed meanwhile or its job
 * stopped. `newDevice`: the attempt was another device's.
 * `retractPending`: a command the device must still be told to drop (pending-retract.ts); a
 * retract `e` owes already goes with it too.
 */
async function requeue(deps: { store: StateStore; events: EventBus }, e: ExecutionRecord, now: number, newDevice = false, retractPending?: string): Promise<ExecutionRecord | undefined> {
  const retried = await mutateExecution(
    deps,
    e,
    (cur) => {
      if (cur.status !== e.status || (cur.attempt ?? 1) !== (e.attempt ?? 1)) return undefined;
      if (newDevice && cur.details.deviceDeletedAt === undefined) return undefined;
      if (!newDevice) {
        const succeeded = succeededAfterTimeout(cur);
        if (succeeded) return succeeded;
      }
      const attempt = cur.attempt ?? 1;
      const past = Array.isArray(cur.details.attempts) ? cur.details.attempts : [];
      // the record's version as the attempt ended: the AWS Jobs door shows it as the attempt's own
      // versionNumber (aws/job-view.ts), the retry's writes moving the record on from it
      const outcome: JsonObject = { attempt, status: cur.status, at: now, version: cur.version };
      // and how it stood, which the retry's record no longer says: the door answers a
      // DescribeJobExecution of the attempt with them while the retry is not sent (aws/job-view.ts)
      if (cur.dispatchedAt !== undefined) outcome.sentAt = cur.dispatchedAt;
      if (typeof cur.details.startedAt === 'number') outcome.startedAt = cur.details.startedAt;
      if (cur.details.statusDetails !== undefined) outcome.statusDetails = cur.details.statusDetails;
      if (typeof cur.details.error === 'string') outcome.error = cur.details.error;
      // the device's answer to this attempt's stay (a timeout's, answered before the retry was queued)
      if (cur.details.control !== undefined) outcome.control = cur.details.control;
      if (newDevice) outcome.deviceDeletedAt = cur.details.deviceDeletedAt!;
      const details: JsonObject = { attempts: [...past, outcome] };
      if (cur.details.previous !== undefined && !newDevice) details.previous = cur.details.previous;
      // still due, so that a later tick tries the retract again until it is done or the
      // retry's own command replaces it (no deadline of its own: its command is not sent)
      const owed = retractPending ?? owedRetract(cur);
      if (owed !== undefined) details[RETRACT_PENDING] = owed;
      return { status: 'QUEUED', attempt: attempt + 1, details, dispatchedAt: undefined, dueAt: owed !== undefined ? now + RETRACT_RETRY_MS : undefined };
    },
    now,
  );
  if (!retried) return undefined;
  // not a retry: the attempt succeeded (succeededAfterTimeout), whatever became of the job since
  if (retried.status === 'SUCCEEDED') return retried;
  // The caller read the job as active before this write. A cancel or an abort committed in
  // between has already passed over the job's unfinished executions, when this one was
  // still FAILED: it would stay QUEUED for a job that sends nothing more. Read the job again
  // now that the retry is committed (a stop committed later finds it QUEUED and ends it) and
  // take a retry of a stopped job back: the execution ends as the attempt that failed, still
  // due if it was (a timeout whose command is not taken back yet keeps its mark).
  if (await isActive(deps.store, e.jobId)) return retried;
  await mutateExecution(
    deps,
    retried,
    (cur) => {
      if (cur.status !== 'QUEUED' || cur.attempt !== retried.attempt || cur.dispatchedAt !== undefined) return undefined;
      // the device's answer to that attempt's stay, filed on the retry's record of it while the
      // retry stood (execution-tracker.ts, controlOfAttempt): back where it is kept once the
      // attempt is the execution's own again, or the take-back would drop it
      const details: JsonObject = { ...e.details };
      const control = outcomeOf(cur, e.attempt ?? 1)?.control;
      if (control !== undefined) details.control = control;
      return { status: e.status, attempt: e.attempt, details, dueAt: e.dueAt };
    },
    now,
  );
  return undefined;
}

/**
 * A timed-out attempt whose own SUCCESS came in after its TIMED_OUT was written and before
 * its retry is queued (`details.lateSuccess` without an `attempt`: the tracker's `lateSuccess`,
 * only ever on the job's version): the execution ends SUCCEEDED instead of the retry, as if
 * the report had beaten the deadline; undefined for any other row. The timeout writes
 * TIMED_OUT, takes the command back, then queues the retry in a write of its own, and the
 * retry's details used to keep nothing of such a success: it was lost. Why SUCCEEDED rather
 * than the retry, with the success kept in `details.attempts` as one reported once the retry
 * stands (execution-tracker.ts, `earlierSuccess`): nothing was sent for the retry yet, and
 * the device runs the job's build after the very command this attempt sent, so a retry would
 * only cost a command and a place in the rate and the waves, and then end SUCCEEDED on the
 * device's "already running it", or, the device offline, TIMED_OUT again or CANCELED with the
 * job: the job would count a device as not updated that is. The deadline that passed first
 * stays beside it (`details.timedOut`). Without a retry to queue (none allowed, the job
 * stopped) the execution stays TIMED_OUT with its `lateSuccess`, as AWS IoT Jobs keeps a
 * terminal execution.
 */
function succeededAfterTimeout(cur: ExecutionRecord): Partial<ExecutionRecord> | undefined {
  const late = cur.details.lateSuccess;
  if (cur.status !== 'TIMED_OUT' || !isJsonObject(late) || late.attempt !== undefined) return undefined;
  const details: JsonObject = { ...cur.details, agentStatus: 'SUCCESS', version: late.version ?? null, lastReportAt: late.at ?? null };
  const timedOut: JsonObject = { at: cur.dueAt ?? null };
  if (typeof cur.details.error === 'string') timedOut.error = cur.details.error;
  details.timedOut = timedOut;
  for (const k of ['lateSuccess', 'error', 'progress', 'waiting', 'cancelBy']) delete details[k];
  return succeeded(details);
}

/**
 * A queued retry ended SUCCEEDED with nothing sent (RolloutEngine.dispatch): the device's
 * reported software shows the SUCCESS of its earlier attempt `attempt` on the job's build
 * (`succeededAttemptOf`), as `version`; the success stays in `details.attempts`.
 */
export function succeededUnsent(cur: ExecutionRecord, attempt: number, version: string, now: number): Partial<ExecutionRecord> {
  return succeeded({ ...cur.details, agentStatus: 'SUCCESS', version, retryNotSent: { attempt, at: now } });
}

/**
 * The write that ends an execution SUCCEEDED in place of its retry (`succeededAfterTimeout`,
 * `succeededUnsent`): no take-back owed (pending-retract.ts) and nothing due. The command a
 * failed retract left desired is an attempt of this job, on the build the device reports it
 * runs after finishing it: taken back later, it left the device of a SUCCEEDED execution told
 * to call the job off (a stay, `<job>.cancel`).
 */
function succeeded(details: JsonObject): Partial<ExecutionRecord> {
  return { status: 'SUCCEEDED', details: withoutRetractPending(details), dueAt: undefined };
}

/**
 * The earlier attempt of `job` whose SUCCESS on the job's build the device's reported software
 * (`reported`, as it stands) shows, when the execution is at `attempt` > 1 (a retry); else
 * undefined. Such a device runs the job's build after a command of this job and has run
 * nothing since: the success of a timed-out attempt that came in once its retry was queued
 * (offline with the build, its reports held back). The engine ends that retry SUCCEEDED at its
 * turn and sends nothing (RolloutEngine.dispatch): the command would only have the agent
 * answer "already running the desired software", or, the device offline by then, time out
 * again for a device that is updated.
 */
export function succeededAttemptOf(job: JobRecord, attempt: number, reported: ReportedSoftware | undefined): number | undefined {
  if (attempt <= 1 || reported?.status !== 'SUCCESS' || reported.jobId === undefined) return undefined;
  const asked = parseAgentJobId(reported.jobId);
  if (!asked || asked.control || asked.jobId !== job.jobId || asked.attempt >= attempt) return undefined;
  if (reported.version !== job.artifactVersion || (reported.name !== undefined && reported.name !== job.artifactName)) return undefined;
  return asked.attempt;
}

/** The outcome `details.attempts` keeps of an earlier attempt, if any. */
function outcomeOf(e: ExecutionRecord, attempt: number): JsonObject | undefined {
  const past = Array.isArray(e.details.attempts) ? e.details.attempts : [];
  return past.find((a): a is JsonObject => isJsonObject(a) && a.attempt === attempt);
}

/** Whether the job is active now, as stored (read without its spec). */
async function isActive(store: StateStore, jobId: string): Promise<boolean> {
  const current = await store.getJob(jobId, { omitSpec: true });
  return current !== undefined && !isJobFinal(current.status);
}
