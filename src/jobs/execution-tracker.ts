/**
 * Drives job executions from what devices report (pattern step 8): every committed shadow
 * update whose `reported.software` names a job moves that job's execution for the device
 * along the transition table. Reported is the truth: a SUCCESS whose version is not the
 * job's version is a failure. A report about another attempt than the current one is
 * stale and ignored; a FAILURE of a device asked to stop is its cancellation. Each report
 * also moves the execution's deadline (`deadlines.ts`); a failure may start a retry.
 *
 * Job completion is the rollout engine's business (one count per job per tick), not the
 * tracker's: checking every execution after each report would be quadratic.
 */
import { isDeepStrictEqual } from 'node:util';
import { asUpdraftError } from '../errors.ts';
import type { EventBus, UpdraftEvents } from '../events/event-bus.ts';
import { isJsonObject, type JsonObject } from '../protocol/json.ts';
import { installedByJob, isCalledOff, parseReportedSoftware, type ReportedSoftware } from '../protocol/software.ts';
import { KeyedQueue } from '../shadow/keyed-queue.ts';
import type { ExecutionRecord, ExecutionStatus, JobRecord, StateStore } from '../store/state-store.ts';
import type { Logger } from '../util/logger.ts';
import { parseAgentJobId, type ParsedAgentJobId } from './agent-job-id.ts';
import { deadlineOf, sameWait } from './deadlines.ts';
import { canTransition, executionStatusFor, isTerminal } from './execution-state.ts';
import { forgetAllExecutions, forgetJobExecutions, mutateExecution } from './execution-writer.ts';
import { deletedSince, jobDeletions, noteJobDeleted } from './job-deletions.ts';
import { specOf } from './job-spec.ts';
import { OPEN_JOB_STATUSES, openExecutions } from './open-executions.ts';
import { owedRetract } from './pending-retract.ts';
import { retryIfAllowed } from './retry-policy.ts';
import { UnrecordedReports, type OwedExecution } from './unrecorded-reports.ts';

const PAGE = 500;

/** What the tracker needs. */
export interface TrackerDeps {
  store: StateStore;
  events: EventBus;
  logger: Logger;
  /** Milliseconds since the epoch (injectable for tests). */
  now?: () => number;
}

/** Listens to shadow updates and records execution outcomes. */
export class ExecutionTracker {
  private readonly deps: TrackerDeps;
  private readonly queue = new KeyedQueue(1_000_000);
  /**
   * Jobs by id, for their immutable fields only (jobId, artifact, the spec's rules): a stored
   * job carries its spec and progress, and parsing them on every device report made a
   * rollout quadratic. Its status is not kept up to date here: what depends on it (a retry)
   * reads it again (retryIfAllowed). The spec is kept without its targets, which can list 100,000 devices.
   */
  private readonly jobCache = new Map<string, JobRecord>();
  private unsubscribe: (() => void) | undefined;
  private offDeleted: (() => void) | undefined;
  private offDisruption: (() => void) | undefined;
  /**
   * Executions whose write failed after the report was acknowledged, tried again until they
   * are written (unrecorded-reports.ts): only a failure costs anything here, not the hot path.
   */
  readonly unrecorded: UnrecordedReports;

  constructor(deps: TrackerDeps) {
    this.deps = deps;
    this.unrecorded = new UnrecordedReports({ retry: (o) => this.retry(o), scan: (stopped) => this.scan(stopped), logger: deps.logger });
  }

  async start(): Promise<void> {
    this.unsubscribe = this.deps.events.on('shadow.updated', (e) => this.onShadowUpdated(e));
    // the executions written through this store are remembered (execution-writer.ts), and jobs
    // in jobCache: neither of a deleted job (jobIdentity gives only jobs that exist), nor what
    // a read or write in flight answers after this (job-deletions.ts)
    this.offDeleted = this.deps.events.on('job.deleted', ({ jobId }) => {
      noteJobDeleted(this.deps.store);
      forgetJobExecutions(this.deps.store, jobId);
      this.jobCache.delete(jobId);
    });
    // a database that may have gone back: executions and jobs remembered from it may be gone or
    // older there (the replica drops its shadows the same way)
    this.offDisruption = this.deps.store.onDisruption?.(() => {
      forgetAllExecutions(this.deps.store);
      this.jobCache.clear();
    });
  }

  async stop(): Promise<void> {
    this.unsubscribe?.();
    this.offDeleted?.();
    this.offDisruption?.();
    await this.unrecorded.stop();
    await this.queue.drain();
  }

  /** Resolves when every report received so far is recorded (tests, shutdown). */
  idle(): Promise<void> {
    return this.queue.drain();
  }

  private now(): number {
    return this.deps.now ? this.deps.now() : Date.now();
  }

  private onShadowUpdated(e: UpdraftEvents['shadow.updated']): void {
    if (e.current.name !== '') return;
    if (e.request.state.desired?.software !== undefined) this.supersede(e);
    if (e.request.state.reported?.software === undefined) return;
    void this.apply(e.current.deviceId, e.current.state.reported?.software);
  }

  /**
   * A device asked for another job's build before it reported an outcome of the job it was
   * asked for (a second deploy while it was offline, say) will never run the first: that
   * execution ends CANCELED, superseded, instead of waiting for ever (a job without a timeout
   * would never finish, and its build could never be deleted). A device that had started it
   * calls it off, or finishes an install under way; its later reports about it change nothing.
   */
  private supersede(e: UpdraftEvents['shadow.updated']): void {
    const idOf = (software: unknown) => (software && typeof software === 'object' && typeof (software as JsonObject).jobId === 'string' ? ((software as JsonObject).jobId as string) : undefined);
    const before = idOf(e.previous && !e.previous.deleted ? e.previous.state.desired?.software : undefined);
    if (before === undefined) return;
    const now = idOf(e.current.state.desired?.software);
    const old = parseAgentJobId(before);
    const next = now === undefined ? undefined : parseAgentJobId(now);
    // only another job's command supersedes: not a cleared desired state (a cancel or a
    // timeout of the job itself, handled where it is written), not a control command (a
    // cancel's stay, a rollback), not another attempt, cancel or rollback of the same job
    if (!old || old.control || !next || next.jobId === old.jobId) return;
    const deviceId = e.current.deviceId;
    const reason = `superseded: the device was asked for job ${next.jobId} before it finished this one`;
    const superseded = { attempt: old.attempt, reason };
    // what the device had reported when it was asked for the other job
    const reportedThen = e.current.state.reported?.software;
    void this.queue
      .run(`${old.jobId}/${deviceId}`, () => this.cancelSuperseded(old.jobId, deviceId, superseded, reportedThen))
      .catch((err: unknown) => {
        this.deps.logger.error('superseded execution not recorded; tried again until it is', { jobId: old.jobId, deviceId, error: asUpdraftError(err).message });
        this.unrecorded.owe(old.jobId, deviceId, { superseded });
      });
  }

  /**
   * Ends attempt `attempt` of `jobId` on `deviceId` CANCELED, superseded, unless it has ended or
   * moved on to another attempt. `before` is the device's reported software when it was asked
   * for the other job: an outcome of this attempt there (SUCCESS, FAILURE) came before the
   * supersede, and ends the execution instead. It is recorded already unless its write failed
   * (owed, unrecorded-reports.ts): the supersede then took its place, and a SUCCESS the device
   * reported while it was still asked for this job ended CANCELED with a lateSuccess.
   */
  private async cancelSuperseded(jobId: string, deviceId: string, superseded: { attempt: number; reason: string }, before?: unknown): Promise<void> {
    const reported = parseReportedSoftware(before);
    const ran = reported?.jobId !== undefined && isOutcome(reported) ? parseAgentJobId(reported.jobId) : undefined;
    const outcome = ran && !ran.control && ran.jobId === jobId && ran.attempt === superseded.attempt ? reported : undefined;
    const job = outcome ? await this.jobIdentity(jobId) : undefined;
    const now = this.now();
    const written = await mutateExecution(
      this.deps,
      { jobId, deviceId },
      (cur) => {
        if (isTerminal(cur.status) || (cur.attempt ?? 1) !== superseded.attempt) return undefined;
        const to = outcome && executionStatusFor(outcome.status);
        const ended = job && outcome && to ? this.transition(job, cur, to, outcome, now) : undefined;
        return ended ?? { status: 'CANCELED', details: { ...cur.details, error: superseded.reason }, dueAt: undefined };
      },
      now,
    );
    if (job && written?.status === 'FAILED') await retryIfAllowed(this.deps, job, written, now);
  }

  /**
   * Records what a device reports in `reported.software` (also used on start and before a
   * timeout, to catch up with reports committed to the shadow but not yet to the execution).
   */
  apply(deviceId: string, reportedSoftware: unknown): Promise<void> {
    return this.enqueue(deviceId, reportedSoftware, false);
  }

  /**
   * Records again what a device's shadow reports (`reported.software`, read back from the
   * store: the rollout engine's catch-up when it takes the lead), as a report the execution
   * may hold already: one that changes nothing but the report's times writes nothing (QA:
   * each lease taken moved `lastReportAt` and `updatedAt` of every open execution to that
   * moment). One that changes the row (a report the shadow got and the execution did not)
   * has `reportedAt`, when the report was written to the shadow (if known and not later than
   * now), for its `lastReportAt`; its step timer and startedAt count from now (see record).
   */
  reapply(deviceId: string, reportedSoftware: unknown, reportedAt?: number): Promise<void> {
    return this.enqueue(deviceId, reportedSoftware, true, reportedAt);
  }

  /** `record` in the execution's queue (`apply`, `reapply`); a write that fails is owed and tried again from the shadow. */
  private enqueue(deviceId: string, reportedSoftware: unknown, again: boolean, reportedAt?: number): Promise<void> {
    const reported = parseReportedSoftware(reportedSoftware);
    if (!reported?.jobId) return Promise.resolve();
    const agentId = reported.jobId;
    const parsed = parseAgentJobId(agentId);
    // one queue per execution: reports of one device about one job are applied in order
    return this.queue
      .run(`${parsed?.jobId ?? agentId}/${deviceId}`, () => this.record(agentId, deviceId, reported, again, reportedAt))
      .catch((err: unknown) => {
        this.deps.logger.error('execution not recorded; tried again until it is', { jobId: agentId, deviceId, error: asUpdraftError(err).message });
        // acknowledged already (the shadow holds it): derived again from the shadow later
        if (parsed) this.unrecorded.owe(parsed.jobId, deviceId, isOutcome(reported) ? { outcome: reportedSoftware } : {});
      });
  }

  /**
   * One more try of what an execution is owed (unrecorded-reports.ts), in the execution's
   * queue, so that it is ordered with the reports arriving meanwhile. Idempotent, as a report
   * applied twice is (a duplicate changes nothing, a finished execution does not move): a
   * supersede still standing (the device's command is not the job's again) and the outcome
   * whose write failed (the last word of its attempt: a device moved on to another job's
   * reports since no longer holds it in its shadow) are written in the order they came (an
   * outcome reported before the device was asked for the other job ends the execution with it,
   * and the supersede then changes nothing), then what the shadow reports now about the job
   * (newer than any report whose write failed, which it replaces).
   */
  private retry(o: OwedExecution): Promise<void> {
    return this.queue.run(`${o.jobId}/${o.deviceId}`, async () => {
      const stored = await this.deps.store.getShadow(o.deviceId, '');
      const shadow = stored && !stored.deleted ? stored : undefined;
      if (o.outcome !== undefined && o.outcomeFirst) await this.recordSoftware(o.deviceId, o.outcome);
      if (o.superseded) {
        const asked = shadow?.state.desired?.software;
        const askedId = isJsonObject(asked) && typeof asked.jobId === 'string' ? parseAgentJobId(asked.jobId) : undefined;
        // the job's own command is back on the device (asked again since): nothing superseded
        if (askedId?.jobId !== o.jobId) await this.cancelSuperseded(o.jobId, o.deviceId, o.superseded);
      }
      if (o.outcome !== undefined && !o.outcomeFirst) await this.recordSoftware(o.deviceId, o.outcome);
      const now = shadow?.state.reported?.software;
      const nowId = parseReportedSoftware(now)?.jobId;
      if (nowId !== undefined && parseAgentJobId(nowId)?.jobId === o.jobId) await this.recordSoftware(o.deviceId, now);
    });
  }

  /** Records `reportedSoftware` (the shadow's `reported.software`) in the caller's queue; rejects when it cannot be written. */
  private async recordSoftware(deviceId: string, reportedSoftware: unknown): Promise<void> {
    const reported = parseReportedSoftware(reportedSoftware);
    if (reported?.jobId) await this.record(reported.jobId, deviceId, reported, true);
  }

  /**
   * Too many executions owed to remember each: every open execution with its command out is
   * derived again from its device's shadow, as the rollout engine's catch-up at start does.
   * Ends at the next page once `stopped()` (a stop waits for it: the next start's catch-up
   * records what is left), where it went through every open job first.
   */
  private async scan(stopped: () => boolean): Promise<void> {
    for await (const { executions: sent } of openExecutions(this.deps.store, { jobStatuses: OPEN_JOB_STATUSES, pageSize: PAGE, omitSpec: true, stopped })) {
      const shadows = await Promise.all(sent.map((e) => this.deps.store.getShadow(e.deviceId, '')));
      await Promise.all(
        sent.map((e, n) => {
          const shadow = shadows[n];
          const reported = shadow && !shadow.deleted ? shadow.state.reported?.software : undefined;
          const id = parseReportedSoftware(reported)?.jobId;
          if (id === undefined || parseAgentJobId(id)?.jobId !== e.jobId) return undefined;
          return this.queue.run(`${e.jobId}/${e.deviceId}`, () => this.recordSoftware(e.deviceId, reported));
        }),
      );
    }
  }

  /**
   * A job's immutable fields and rules (its spec without its targets), cached: for whoever
   * needs a job's timeouts or retries per device message. Its status may be stale: read the
   * job again for that.
   */
  async jobIdentity(jobId: string): Promise<JobRecord | undefined> {
    const cached = this.jobCache.get(jobId);
    if (cached) return cached;
    const mark = jobDeletions(this.deps.store);
    const found = await this.deps.store.getJob(jobId);
    // an unknown id may be created later: only remember jobs that exist
    if (!found) return undefined;
    const { targets: _targets, ...rules } = found.spec ?? {};
    const job: JobRecord = found.spec ? { ...found, spec: rules } : found;
    // read before a deletion whose event came meanwhile: given to this caller, not remembered
    if (deletedSince(this.deps.store, mark)) return job;
    if (this.jobCache.size >= 1000) this.jobCache.delete(this.jobCache.keys().next().value!);
    this.jobCache.set(jobId, job);
    return job;
  }

  /** `again`: a report read back from the shadow (a retry, a scan), which the row may hold already. */
  private async record(agentId: string, deviceId: string, reported: ReportedSoftware, again = false, reportedAt?: number): Promise<void> {
    // job ids are UUIDs (no dot): a dotted id is an attempt or a control command, never
    // looked up as a job itself (that was a store read missed per report of a retry)
    const parsed = parseAgentJobId(agentId);
    if (!parsed) return; // a job id this server never issued
    const job = await this.jobIdentity(parsed.jobId);
    if (!job) return;
    const { attempt, control } = parsed;
    const now = this.now();
    // the report's own time (read back from the shadow), never later than now: its
    // lastReportAt (and a late success's date) only. The step timer's phaseStartedAt, startedAt
    // and a missing dispatchedAt stay `now`: the shadow's time is its replica's clock in whole
    // seconds, and one behind put the phase start before the command was sent, so the step
    // deadline came forward and the new leader timed the execution out at its first tick
    // (review of e78f42a). Counted from when the report is recorded, no deadline comes earlier
    // than it did before the catch-up took the report's time; the row is still written only
    // when it changes, and says when the device reported
    const at = reportedAt !== undefined && reportedAt < now ? reportedAt : now;
    if (control) return this.recordControl(job, deviceId, agentId, parsed, reported, now);
    const to = executionStatusFor(reported.status);
    if (!to) return;
    const written = await mutateExecution(
      this.deps,
      { jobId: job.jobId, deviceId },
      (cur) => {
        // a late report about an earlier attempt (or an attempt not sent yet) changes nothing,
        // but the success of an earlier attempt is kept with that attempt (earlierSuccess)
        if ((cur.attempt ?? 1) !== attempt) return attempt < (cur.attempt ?? 1) ? earlierSuccess(job, cur, attempt, to, reported, at) : undefined;
        const change = this.transition(job, cur, to, reported, now, at);
        // a report the row holds already, read again from the shadow: not a new report (its
        // lastReportAt, and the step timer's phaseStartedAt, stay the device's). Only what the
        // report would write is compared, all of it: a new wait (waiting.count) or AWS
        // statusDetails differing alone is a newer report and written
        if (again && change && sameRecord(cur, change)) return undefined;
        return change;
      },
      now,
    );
    // the cached job's status may be stale: retryIfAllowed reads the stored one
    if (written?.status === 'FAILED') await retryIfAllowed(this.deps, job, written, now);
  }

  /**
   * The change a report makes to `cur`, or undefined when it changes nothing. `reportAt`: when
   * the device reported (`now` unless read back from its shadow), for its lastReportAt and a
   * late success; timers (phase start, startedAt, dispatchedAt) always count from `now`.
   */
  private transition(job: JobRecord, cur: ExecutionRecord, reportedTo: ExecutionStatus, reported: ReportedSoftware, now: number, reportAt = now): Partial<ExecutionRecord> | undefined {
    let to = reportedTo;
    const details: JsonObject = { ...cur.details, agentStatus: reported.status, version: reported.version, lastReportAt: reportAt };
    delete details.progress;
    delete details.error;
    if (reported.progress !== undefined) details.progress = reported.progress;
    if (reported.error !== undefined) details.error = reported.error;
    // an AWS device's statusDetails as they stand after this report (the shadow keeps them
    // only until the next job's first report): a finished execution still answers with them
    delete details.statusDetails;
    if (reported.statusDetails !== undefined) details.statusDetails = reported.statusDetails;
    // the step timer counts from the phase's start, and again from each new "not now" of the
    // device's install gate (and from the end of a wait): a device waiting for its gate is not
    // stuck; the same wait applied twice (a repeated report) does not restart it
    delete details.waiting;
    const wait = reported.status === 'VERIFYING' ? reported.waiting : undefined; // a verified build waits, nothing else
    if (wait) details.waiting = { ...wait };
    const waitChanged = wait ? !sameWait(cur.details.waiting, wait) : cur.details.waiting !== undefined;
    if (cur.details.agentStatus !== reported.status || waitChanged) details.phaseStartedAt = now;
    // when the device began this attempt (its first report), as AWS's JobExecution.startedAt:
    // the AWS door read it for its own devices only (a053990), an Updraft agent's had none
    if (cur.status === 'QUEUED') details.startedAt = now;
    // a SUCCESS repeated after the device moved on names the version the job installed
    // (`jobVersion`): the job succeeded, what runs now is another build (QA, 2026-12-06: a
    // restored database's command re-sent; the execution ended FAILED, "runs X, not Y")
    if (to === 'SUCCEEDED' && installedByJob(reported) !== job.artifactVersion) {
      to = 'FAILED';
      details.error = reported.jobVersion !== undefined ? `device reported SUCCESS of a job that installed ${reported.jobVersion}, not ${job.artifactVersion}` : `device reported SUCCESS but runs ${reported.version}, not ${job.artifactVersion}`;
    }
    // the device stopped because it was asked to: that is the cancellation, not a failure.
    // Its reason is the job's (the operator's cancel, the abort's rule), as for every other
    // execution the stop ended; the device's own words ("superseded by job <id>.cancel")
    // stay beside it. A FAILURE with a reason of its own (a checksum mismatch, a failed
    // health check) from a device that had not answered the stay is no stop: it failed before
    // the stay reached it, its report on the way as the job was canceled or aborted, and the
    // execution ends FAILED with that reason, also when the stop has ended it CANCELED
    // without a word from the device meanwhile (`failedAfterStop`)
    if (to === 'FAILED' && cur.details.cancelRequested === true) {
      if (!stoppedOnRequest(cur, reported)) {
        if (cur.status === 'CANCELED') return failedAfterStop(cur, details);
      } else {
        to = 'CANCELED';
        if (typeof cur.details.cancelReason === 'string') {
          if (reported.error !== undefined) details.deviceError = reported.error;
          details.error = cur.details.cancelReason;
        }
      }
    } else if (to === 'FAILED' && reported.error !== undefined && isCalledOff(reported.error)) {
      // the device called the job off because a server asked it to (a newer command, desired
      // software cleared, a cancel it heard before), and no stop is recorded here: one this
      // database lost (a restore, a failover that lost writes: the agent answers a command it
      // heard canceled so), a clear written by hand, a supersede recorded after the report.
      // CANCELED in the device's words, not FAILED: a failure counts against the job's abort
      // rule, and its retry sends the command again, installing what was called off (review,
      // 2026-12-06). A FAILURE without a reason stays a failure here
      to = 'CANCELED';
    }
    if (cur.status === to && to !== 'IN_PROGRESS') return undefined; // duplicate report: already recorded
    if ((cur.status === 'TIMED_OUT' || cur.status === 'CANCELED') && to === 'SUCCEEDED') return lateSuccess(cur, reported, reportAt);
    if (!canTransition(cur.status, to)) {
      if (!isTerminal(cur.status) || cur.status !== to) this.deps.logger.debug('report ignored: illegal execution transition', { jobId: cur.jobId, deviceId: cur.deviceId, from: cur.status, to });
      return undefined;
    }
    const dispatchedAt = cur.dispatchedAt ?? now;
    if (isTerminal(to)) {
      delete details.cancelBy;
      return { status: to, details, dispatchedAt, dueAt: undefined };
    }
    return { status: to, details, dispatchedAt, dueAt: deadlineOf(specOf(job), { status: to, dispatchedAt, details }) };
  }

  /**
   * The outcome of a stay (cancel) or rollback command, kept beside the execution's own
   * outcome. A stay is about one attempt (`<device job id>.cancel`): a timed-out attempt's,
   * answered once its retry is queued (the timeout takes the command back, then queues the
   * retry), is kept with that attempt's outcome in `details.attempts`, not on the retry, which
   * had no control command. A rollback is about the job as it ended, its current attempt.
   */
  private async recordControl(job: JobRecord, deviceId: string, agentId: string, parsed: ParsedAgentJobId, reported: ReportedSoftware, now: number): Promise<void> {
    if (reported.status !== 'SUCCESS' && reported.status !== 'FAILURE') return;
    const control: JsonObject = { jobId: agentId, status: reported.status, version: reported.version, at: now };
    if (reported.error !== undefined) control.error = reported.error;
    await mutateExecution(
      this.deps,
      { jobId: job.jobId, deviceId },
      (cur) => {
        if (parsed.control === 'cancel' && parsed.attempt !== (cur.attempt ?? 1)) return controlOfAttempt(cur, parsed.attempt, control);
        if (sameControl(cur.details.control, control)) return undefined;
        return { details: { ...cur.details, control } };
      },
      now,
    );
  }
}

/** True for a report that ends its attempt (or answers a control command): the last word, kept when its write fails. */
function isOutcome(reported: ReportedSoftware): boolean {
  return reported.status === 'SUCCESS' || reported.status === 'FAILURE';
}

/**
 * True when `change` would leave `cur` as it is, but for the report's own times (lastReportAt,
 * and phaseStartedAt, which moves only with a phase or wait that the details show anyway): the
 * same status and every other detail equal (phase, version, progress, error, waiting,
 * statusDetails, ...).
 */
function sameRecord(cur: ExecutionRecord, change: Partial<ExecutionRecord>): boolean {
  if (change.status !== undefined && change.status !== cur.status) return false;
  if (change.details === undefined) return true;
  const { lastReportAt: _a, phaseStartedAt: _b, ...next } = change.details;
  const { lastReportAt: _c, phaseStartedAt: _d, ...held } = cur.details;
  return isDeepStrictEqual(next, held);
}

/** True when `recorded` is the answer `control` again (a repeated report). */
function sameControl(recorded: unknown, control: JsonObject): boolean {
  return isJsonObject(recorded) && recorded.jobId === control.jobId && recorded.status === control.status;
}

/**
 * The answer to a stay about an earlier attempt than the execution's, kept with that
 * attempt's outcome (`details.attempts`); undefined when the execution has no such past
 * attempt (nothing to keep it with) or holds this answer already.
 */
function controlOfAttempt(cur: ExecutionRecord, attempt: number, control: JsonObject): Partial<ExecutionRecord> | undefined {
  const past = Array.isArray(cur.details.attempts) ? cur.details.attempts : [];
  const i = past.findIndex((a) => isJsonObject(a) && a.attempt === attempt);
  const outcome = past[i];
  if (!isJsonObject(outcome) || sameControl(outcome.control, control)) return undefined;
  const attempts = [...past];
  attempts[i] = { ...outcome, control };
  return { details: { ...cur.details, attempts } };
}

/**
 * A SUCCESS on the job's version reported for an earlier attempt than the execution's: a
 * device that had the build of an attempt that timed out (offline, its reports held back)
 * before the timeout's stay reached it. It is kept with that attempt's outcome in
 * `details.attempts` (`lateSuccess`, as `controlOfAttempt` keeps a stay's answer), not on the
 * execution: while a retry is pending or running the row is the retry's, and a
 * `details.lateSuccess` there would say "then reported SUCCESS" of a retry that may yet
 * succeed itself (copied along by every report of it) or fail. When the execution then ends
 * TIMED_OUT or CANCELED, the writer carries it into `details.lateSuccess`
 * (execution-writer.ts, `withEarlierSuccess`). An execution that ended TIMED_OUT or CANCELED
 * already takes it in `details.lateSuccess` at once, naming the attempt, like any late success.
 */
function earlierSuccess(job: JobRecord, cur: ExecutionRecord, attempt: number, to: ExecutionStatus, reported: ReportedSoftware, now: number): Partial<ExecutionRecord> | undefined {
  if (to !== 'SUCCEEDED' || installedByJob(reported) !== job.artifactVersion) return undefined;
  const success: JsonObject = { version: installedByJob(reported), at: now, attempt };
  const past = Array.isArray(cur.details.attempts) ? cur.details.attempts : [];
  const i = past.findIndex((a) => isJsonObject(a) && a.attempt === attempt);
  const outcome = past[i];
  let details = cur.details;
  if (isJsonObject(outcome) && outcome.lateSuccess === undefined) {
    const attempts = [...past];
    attempts[i] = { ...outcome, lateSuccess: success };
    details = { ...details, attempts };
  }
  if ((cur.status === 'TIMED_OUT' || cur.status === 'CANCELED') && details.lateSuccess === undefined) details = { ...details, lateSuccess: success };
  return details === cur.details ? undefined : { details };
}

/**
 * Whether a report that ends an execution being stopped (its job canceled or aborted) in
 * failure is the device's stop: a FAILURE in the agent's words for a job called off
 * (`isCalledOff`), or any once the device has answered this attempt's stay (`<id>.cancel`,
 * `details.control`: it had heard of the cancel), or once the execution recorded the
 * device's FAILURE already (a repeat). A SUCCESS on another version than the job's never is.
 */
function stoppedOnRequest(cur: ExecutionRecord, reported: ReportedSoftware): boolean {
  if (reported.status !== 'FAILURE') return false;
  if (isCalledOff(reported.error)) return true;
  const control = cur.details.control;
  if (isJsonObject(control) && control.jobId === `${reported.jobId}.cancel`) return true;
  return cur.status === 'CANCELED' && cur.details.agentStatus === 'FAILURE';
}

/**
 * A stopped execution that ended CANCELED before the device said how its attempt ended (its
 * command taken back unanswered, or its stop unconfirmed within the grace), then the device's
 * FAILURE of that attempt with a reason of its own: it failed before the stay reached it, and
 * the execution ends FAILED with that reason, as a SUCCEEDED ends a timeout whose retry was not
 * queued yet (retry-policy.ts): the device's outcome of the very command sent, against the
 * server's verdict of no outcome. The execution's change sets off what a failure does once the
 * job has stopped: the abort's rollback (rollout-engine.ts, rollBackLate), no retry. A retract
 * still owed (`details.retractPending`) stays due.
 */
function failedAfterStop(cur: ExecutionRecord, details: JsonObject): Partial<ExecutionRecord> {
  delete details.cancelBy;
  return { status: 'FAILED', details, dueAt: owedRetract(cur) !== undefined ? cur.dueAt : undefined };
}

/**
 * A device that finished the job after its execution timed out or was canceled (offline with
 * the build, its reports held back): the execution stays as it ended, as AWS IoT Jobs keeps a
 * terminal execution, and the success is kept beside it in `details.lateSuccess`, so
 * `job show` and the dashboard tell that the device runs the job's build. Only a SUCCESS is
 * kept: a later FAILURE is what a device that stops on its stay command reports, and changes
 * nothing it runs (one with a reason of its own ends a stopped execution FAILED instead:
 * `failedAfterStop`). A repeat writes nothing. A TIMED_OUT execution whose retry is not queued
 * yet ends SUCCEEDED instead of that retry (retry-policy.ts, `succeededAfterTimeout`).
 */
function lateSuccess(cur: ExecutionRecord, reported: ReportedSoftware, now: number): Partial<ExecutionRecord> | undefined {
  if (cur.details.lateSuccess !== undefined) return undefined;
  return { details: { ...cur.details, lateSuccess: { version: installedByJob(reported), at: now } } };
}
