/**
 * How an Updraft job appears to an AWS IoT Jobs client (issue 9), computed from what
 * Updraft stores: the device's current update command (`desired.software` of its classic
 * shadow, written by the rollout engine when the device's turn comes) and the job's
 * execution record. Executions the rollout has not dispatched yet are not shown: the
 * rollout plan (waves, rate) decides when a device sees a job, as it does for agents.
 *
 * Ids: attempt n of job J is AWS job `J` with `executionNumber` n (AWS re-runs keep the job
 * id); a rollback (`J.rollback`) is a job of its own, executionNumber 1, whose status comes
 * from the device's reports, since no execution record is its own: the door keeps its
 * version and start time in J's record (`details.awsRollback`). Once replaced by another
 * command, a rollback that finished is read from J's record (`pastRollbackView`): its
 * outcome as the tracker recorded it (`details.control`), its version, start and last
 * statusDetails from `details.awsRollback`, as AWS keeps a finished execution. A stay
 * command (`<id>.cancel`) is no job: the thing has nothing pending.
 *
 * `startedAt` is when the execution left QUEUED (`details.startedAt`: written by the door for
 * a Jobs API request, by the tracker at a device's first report), as AWS's
 * JobExecution.startedAt: not when the command was sent.
 */
import { isJsonObject, type JsonObject } from '../protocol/json.ts';
import { statusDetailsOf, type AwsJobExecution, type AwsJobExecutionState, type AwsJobExecutionSummary, type AwsJobStatus } from '../protocol/aws-jobs-messages.ts';
import { parseDesiredSoftware, parseReportedSoftware, type DesiredSoftware } from '../protocol/software.ts';
import { agentJobId, parseAgentJobId } from '../jobs/agent-job-id.ts';
import type { ExecutionRecord, ShadowRecord } from '../store/state-store.ts';

/** One job execution as an AWS client sees it. */
export interface JobView {
  thing: string;
  /** The AWS job id (`J`, or the control command's id). */
  jobId: string;
  /** The id the device's reports carry in `reported.software.jobId`. */
  agentJobId: string;
  executionNumber: number;
  status: AwsJobStatus;
  statusDetails?: Record<string, string>;
  versionNumber: number;
  /** Seconds since the epoch. */
  queuedAt: number;
  startedAt?: number;
  lastUpdatedAt: number;
  /** The software of the command, when this is the device's current command. */
  software?: DesiredSoftware;
  /** True when this is the device's current command. */
  current: boolean;
  /**
   * True while the command is written but its execution does not record it sent yet: the
   * rollout's dispatch write, which moves `versionNumber`, is still to come.
   */
  sendPending?: boolean;
}

/** What the door keeps about a rollback in its job's execution record (`details.awsRollback`). */
export interface RollbackState {
  /** The rollback's device-side id (`J.rollback`): a state about another command is not its own. */
  jobId: string;
  /** Its `versionNumber`: 1 when sent, one more at each update through the Jobs API. */
  version: number;
  /** When an update through the Jobs API took it out of QUEUED, ms since the epoch. */
  startedAt?: number;
  /** Its statusDetails after the last update through the Jobs API (the shadow holds them only until the next command). */
  statusDetails?: Record<string, string>;
}

/** The door's state of rollback `agentId` kept in `details`, if any. */
export function rollbackStateOf(recorded: JsonObject, agentId: string): RollbackState | undefined {
  const s = recorded.awsRollback;
  if (!isJsonObject(s) || s.jobId !== agentId || typeof s.version !== 'number') return undefined;
  const state: RollbackState = { jobId: agentId, version: s.version };
  if (typeof s.startedAt === 'number') state.startedAt = s.startedAt;
  const details = statusDetailsOf(s.statusDetails);
  if (details) state.statusDetails = details;
  return state;
}

/**
 * The outcome of rollback `agentId` as the tracker recorded it in its job's record
 * (`details.control`, at the device's SUCCESS or FAILURE report), if it finished.
 */
function rollbackOutcomeOf(details: JsonObject, agentId: string): { status: AwsJobStatus; at: number } | undefined {
  const c = details.control;
  if (!isJsonObject(c) || c.jobId !== agentId || typeof c.at !== 'number') return undefined;
  if (c.status === 'SUCCESS') return { status: 'SUCCEEDED', at: c.at };
  if (c.status === 'FAILURE') return { status: 'FAILED', at: c.at };
  return undefined;
}

/** When the rollout sent rollback commands for this execution (`details.rollback.at`), ms. */
function rollbackSentAt(details: JsonObject): number | undefined {
  const r = details.rollback;
  return isJsonObject(r) && typeof r.to === 'string' && typeof r.at === 'number' ? r.at : undefined;
}

/** How an earlier attempt ended, as the retry policy keeps it in `details.attempts` (jobs/retry-policy.ts). */
interface AttemptOutcome {
  status: 'FAILED' | 'TIMED_OUT';
  /** When it ended (the retry was queued), ms since the epoch. */
  at: number;
  /** The record's version then: the attempt's last (absent from outcomes kept before it was recorded). */
  version?: number;
  /** When its command was recorded sent, ms (absent from outcomes kept before it was recorded). */
  sentAt?: number;
  /** When it left QUEUED (`details.startedAt` then), ms. */
  startedAt?: number;
  /** Its statusDetails as they stood when it ended (`details.statusDetails` then). */
  statusDetails?: Record<string, string>;
}

/**
 * The outcome of attempt `attempt`, when it ended FAILED or TIMED_OUT and the record moved on
 * to a later attempt (its retry). Not an attempt of an earlier device under the same id
 * (`deviceDeletedAt`): a new device never ran it.
 */
function attemptOutcome(details: JsonObject, attempt: number): AttemptOutcome | undefined {
  const past = Array.isArray(details.attempts) ? details.attempts : [];
  const o = past.find((a): a is JsonObject => isJsonObject(a) && a.attempt === attempt);
  if (!o || (o.status !== 'FAILED' && o.status !== 'TIMED_OUT') || typeof o.at !== 'number' || o.deviceDeletedAt !== undefined) return undefined;
  const outcome: AttemptOutcome = { status: o.status, at: o.at };
  if (typeof o.version === 'number') outcome.version = o.version;
  if (typeof o.sentAt === 'number') outcome.sentAt = o.sentAt;
  if (typeof o.startedAt === 'number') outcome.startedAt = o.startedAt;
  const statusDetails = statusDetailsOf(o.statusDetails);
  if (statusDetails) outcome.statusDetails = statusDetails;
  return outcome;
}

/** When the execution left QUEUED through the Jobs API (`details.startedAt`), ms, if recorded. */
function startedAtOf(details: JsonObject): number | undefined {
  return typeof details.startedAt === 'number' ? details.startedAt : undefined;
}

const secs = (ms: number) => Math.floor(ms / 1000);

/** The device's current command (`desired.software`), or undefined when none is desired. */
export function currentCommand(shadow: ShadowRecord | undefined): DesiredSoftware | undefined {
  const desired = shadow && !shadow.deleted ? shadow.state.desired?.software : undefined;
  if (!isJsonObject(desired)) return undefined;
  try {
    return parseDesiredSoftware(desired);
  } catch {
    return undefined;
  }
}

/**
 * True for a "stay" command (`<id>.cancel`: run what you run, i.e. stop): for an AWS client
 * that is no job at all but a cancellation, which AWS shows by taking the job off the
 * pending list (notify-next without an execution).
 */
export function isStayCommand(agentId: string): boolean {
  return parseAgentJobId(agentId)?.control === 'cancel';
}

/** The AWS job id and execution number of a device-side job id. */
export function awsIdOf(agentId: string): { jobId: string; executionNumber: number; control: boolean; baseJobId: string } {
  const parsed = parseAgentJobId(agentId);
  if (!parsed) return { jobId: agentId, executionNumber: 1, control: true, baseJobId: agentId };
  if (parsed.control) return { jobId: agentId, executionNumber: 1, control: true, baseJobId: parsed.jobId };
  return { jobId: parsed.jobId, executionNumber: parsed.attempt, control: false, baseJobId: parsed.jobId };
}

/** The status a device's reports give a command that has no execution record of its own. */
function reportedStatus(shadow: ShadowRecord, agentId: string): AwsJobStatus {
  const reported = parseReportedSoftware(shadow.state.reported?.software);
  if (reported?.jobId !== agentId) return 'QUEUED';
  if (reported.status === 'SUCCESS') return 'SUCCEEDED';
  if (reported.status === 'FAILURE') return 'FAILED';
  return reported.status === 'IDLE' ? 'QUEUED' : 'IN_PROGRESS';
}

/** The statusDetails the device last reported for `agentId`, if any, as AWS bounds them. */
export function reportedStatusDetails(shadow: ShadowRecord | undefined, agentId: string): Record<string, string> | undefined {
  const sw = shadow?.state.reported?.software;
  if (!isJsonObject(sw) || sw.jobId !== agentId) return undefined;
  return statusDetailsOf(sw.statusDetails);
}

/** The view of the device's current command; `execution` is the record of its job, if any. */
export function currentJobView(thing: string, shadow: ShadowRecord, software: DesiredSoftware, execution: ExecutionRecord | undefined): JobView {
  const id = awsIdOf(software.jobId);
  const exec = execution && !id.control && (execution.attempt ?? 1) === id.executionNumber ? execution : undefined;
  // the record moved on to a retry not sent yet: the record is the retry's, this attempt's end
  // is kept with its outcome
  const past = execution && !id.control && (execution.attempt ?? 1) > id.executionNumber ? attemptOutcome(execution.details, id.executionNumber) : undefined;
  // this attempt having FAILED, it is over, whatever the device reports since (read from its
  // report, it was QUEUED, startable, once the report moved off it). One that TIMED_OUT is not
  // over for its device in the same way: its command, not taken back yet (the replica refused
  // for now: jobs/pending-retract.ts), is still what the device is asked for, and it may still
  // carry it out: its status is the device's reports' (docs/aws-compatibility.md)
  const failedAt = past?.status === 'FAILED' ? past.at : undefined;
  // a rollback's own state (the door moves it at each update: the base job's record does not
  // move with the rollback's reports); a command with no record at all has the shadow's version
  const rollback = id.control && execution ? (rollbackStateOf(execution.details, software.jobId) ?? { jobId: software.jobId, version: 1 }) : undefined;
  // a rollback's sending and recorded end, as its view will show them once replaced (pastRollbackView)
  const sentAt = rollback ? rollbackSentAt(execution!.details) : undefined;
  const ended = rollback ? rollbackOutcomeOf(execution!.details, software.jobId) : undefined;
  // a rollback that ended is as its end was recorded, whatever the device reports since (read
  // from its report, it was QUEUED, startable, again once the report moved off it)
  const status: AwsJobStatus = exec ? exec.status : failedAt !== undefined ? 'FAILED' : ended ? ended.status : reportedStatus(shadow, software.jobId);
  const view: JobView = {
    thing,
    jobId: id.jobId,
    agentJobId: software.jobId,
    executionNumber: id.executionNumber,
    status,
    // an attempt that FAILED or TIMED_OUT keeps the version it ended at (for a FAILED one, the
    // device's last update's), not the retry's record's, which the retry's own writes move (the
    // owed take-back, tried again every few seconds, among them): the expectedVersion it is
    // checked against
    versionNumber: rollback?.version ?? past?.version ?? execution?.version ?? shadow.version,
    queuedAt: secs(exec?.dispatchedAt ?? exec?.queuedAt ?? sentAt ?? shadow.timestamp * 1000),
    lastUpdatedAt: exec ? secs(exec.updatedAt) : failedAt !== undefined ? secs(failedAt) : ended && ended.status === status ? secs(ended.at) : shadow.timestamp,
    software,
    current: true,
  };
  // sent by the rollout, which records it (dispatchedAt) right after: until then the version is not the one to announce
  if (exec && exec.status === 'QUEUED' && exec.dispatchedAt === undefined) view.sendPending = true;
  const startedAt = rollback ? rollback.startedAt : exec ? startedAtOf(exec.details) : undefined;
  if (status !== 'QUEUED' && startedAt !== undefined) view.startedAt = secs(startedAt);
  const details = reportedStatusDetails(shadow, software.jobId);
  if (details) view.statusDetails = details;
  return view;
}

/** The view of an execution that is not (or no longer) the device's current command. */
export function pastJobView(thing: string, execution: ExecutionRecord): JobView {
  const attempt = execution.attempt ?? 1;
  const view: JobView = {
    thing,
    jobId: execution.jobId,
    agentJobId: agentJobId(execution.jobId, attempt),
    executionNumber: attempt,
    status: execution.status,
    versionNumber: execution.version,
    queuedAt: secs(execution.dispatchedAt ?? execution.queuedAt),
    lastUpdatedAt: secs(execution.updatedAt),
    current: false,
  };
  const startedAt = startedAtOf(execution.details);
  if (startedAt !== undefined && execution.status !== 'QUEUED') view.startedAt = secs(startedAt);
  // recorded by the tracker with the report: the shadow holds them only until the next job
  const details = statusDetailsOf(execution.details.statusDetails);
  if (details) view.statusDetails = details;
  return view;
}

/**
 * The view of the attempt before a retry not sent yet (`execution` QUEUED at attempt n > 1,
 * not dispatched), when the thing's command is no longer that attempt's: an attempt that
 * TIMED_OUT whose command was taken back (a stay), or one replaced by another job's command.
 * It is answered as it ended, from the outcome the retry policy keeps (`details.attempts`):
 * its status, its versionNumber then, its end as lastUpdatedAt. AWS's DescribeJobExecution
 * without an executionNumber returns "the latest job execution", which would be the retry,
 * QUEUED; but Updraft shows a thing no execution the rollout has not sent it (it is on no
 * pending list, start-next does not start it, and its versionNumber moves when it is sent),
 * so the latest the thing was sent is this attempt, as a FAILED attempt whose command is
 * still current is answered (`currentJobView`). Before, the thing was answered
 * ResourceNotFound about a job it had run and that would be sent again. Undefined for any
 * other record (one sent, an ended one, a first attempt, an outcome not kept).
 */
export function unsentRetryView(thing: string, execution: ExecutionRecord): JobView | undefined {
  const attempt = execution.attempt ?? 1;
  if (execution.status !== 'QUEUED' || execution.dispatchedAt !== undefined || attempt <= 1) return undefined;
  const past = attemptOutcome(execution.details, attempt - 1);
  if (!past) return undefined;
  const view: JobView = {
    thing,
    jobId: execution.jobId,
    agentJobId: agentJobId(execution.jobId, attempt - 1),
    executionNumber: attempt - 1,
    status: past.status,
    versionNumber: past.version ?? execution.version,
    queuedAt: secs(past.sentAt ?? execution.queuedAt),
    lastUpdatedAt: secs(past.at),
    current: false,
  };
  if (past.startedAt !== undefined) view.startedAt = secs(past.startedAt);
  if (past.statusDetails) view.statusDetails = past.statusDetails;
  return view;
}

/**
 * The view of rollback `agentId` (`J.rollback`) once it is no longer the device's command,
 * from J's record: only a rollback that finished (its SUCCESS or FAILURE recorded) has one.
 * One replaced before it finished has none: the device was asked for another command, and
 * its last status lived in the shadow's report only.
 */
export function pastRollbackView(thing: string, agentId: string, execution: ExecutionRecord): JobView | undefined {
  const ended = rollbackOutcomeOf(execution.details, agentId);
  if (!ended) return undefined;
  const state = rollbackStateOf(execution.details, agentId);
  const view: JobView = {
    thing,
    jobId: agentId,
    agentJobId: agentId,
    executionNumber: 1,
    status: ended.status,
    versionNumber: state?.version ?? 1,
    queuedAt: secs(rollbackSentAt(execution.details) ?? ended.at),
    lastUpdatedAt: secs(ended.at),
    current: false,
  };
  if (state?.startedAt !== undefined) view.startedAt = secs(state.startedAt);
  if (state?.statusDetails) view.statusDetails = state.statusDetails;
  return view;
}

/** True for QUEUED and IN_PROGRESS: the execution is on the thing's pending list. */
export function isPending(view: JobView): boolean {
  return view.status === 'QUEUED' || view.status === 'IN_PROGRESS';
}

/** `JobExecutionSummary` of a view. */
export function summaryOf(view: JobView): AwsJobExecutionSummary {
  const s: AwsJobExecutionSummary = { jobId: view.jobId, queuedAt: view.queuedAt, lastUpdatedAt: view.lastUpdatedAt, versionNumber: view.versionNumber, executionNumber: view.executionNumber };
  if (view.startedAt !== undefined) s.startedAt = view.startedAt;
  return s;
}

/** `JobExecutionState` of a view. */
export function stateOf(view: JobView): AwsJobExecutionState {
  const s: AwsJobExecutionState = { status: view.status, versionNumber: view.versionNumber };
  if (view.statusDetails) s.statusDetails = view.statusDetails;
  return s;
}

/** `JobExecution` of a view, with the job document when given. */
export function executionOf(view: JobView, jobDocument: JsonObject | undefined): AwsJobExecution {
  const e: AwsJobExecution = { ...summaryOf(view), thingName: view.thing, status: view.status };
  if (view.statusDetails) e.statusDetails = view.statusDetails;
  if (jobDocument) e.jobDocument = jobDocument;
  return e;
}
