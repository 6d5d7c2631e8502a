/**
 * The AWS IoT Jobs door (issue 9): `$aws/things/{thing}/jobs/{get,start-next}` and
 * `.../jobs/{jobId|$next}/{get,update}` answered on `.../accepted|rejected` (and, through
 * `jobs-notifier.ts`, `notify` and `notify-next`), on top of the job engine: jobs are
 * Updraft's (`job-view.ts`, `thing-jobs.ts`), and a status update is written as the
 * device's report in its shadow (`job-report.ts`) so the execution tracker records it with
 * the same transition table as for Updraft's agent.
 * Shapes and codes: https://docs.aws.amazon.com/iot/latest/developerguide/jobs-mqtt-api.html
 */
import type { InboundMessage, Sender } from '../broker/message-bus.ts';
import { UpdraftError, asUpdraftError, publicMessage } from '../errors.ts';
import type { EventBus } from '../events/event-bus.ts';
import { deadlineOf } from '../jobs/deadlines.ts';
import { canTransition, isTerminal } from '../jobs/execution-state.ts';
import type { ExecutionTracker } from '../jobs/execution-tracker.ts';
import { mutateExecution } from '../jobs/execution-writer.ts';
import { specOf } from '../jobs/job-spec.ts';
import { AwsJobsError, parseAwsJobsBody, salvageJobsClientToken, type AwsJobsRejection, type AwsJobsRequestBody } from '../protocol/aws-jobs-messages.ts';
import { awsJobsAnswerTopic, parseAwsJobsRequest, type AwsJobsRequest } from '../protocol/aws-topics.ts';
import type { JsonObject } from '../protocol/json.ts';
import { KeyedQueue } from '../shadow/keyed-queue.ts';
import type { ShadowReplica } from '../shadow/replica.ts';
import type { ExecutionStatus, StateStore } from '../store/state-store.ts';
import type { Logger } from '../util/logger.ts';
import type { AwsThings } from './aws-things.ts';
import { reportFor } from './job-report.ts';
import { awsIdOf, executionOf, isPending, reportedStatusDetails, rollbackStateOf, stateOf, summaryOf, type JobView } from './job-view.ts';
import { AwsJobsNotifier } from './jobs-notifier.ts';
import { mayActFor } from './thing-access.ts';
import { ThingJobs } from './thing-jobs.ts';

/** What the door needs. */
export interface JobsDoorDeps {
  store: StateStore;
  replica: ShadowReplica;
  tracker: ExecutionTracker;
  events: EventBus;
  things: AwsThings;
  /** Publishes an answer or notification. */
  publish: (topic: string, payload: string) => Promise<void>;
  /** False when nobody subscribes to `topic` (the embedded broker knows): notifications are skipped. */
  wanted?: (topic: string) => boolean;
  logger: Logger;
  /** Milliseconds since the epoch (tests). */
  now?: () => number;
  /** How long a request waits for a command's sending to be recorded; default 5 s. */
  sendWaitMs?: number;
}

/** Requests waiting (all things) before new ones get RequestThrottled. */
const MAX_PENDING = 100_000;

/** How long a request waits for the rollout to record a command sent (`JobView.sendPending`) before answering with what it has. */
const DEFAULT_SEND_WAIT_MS = 5_000;

/** The AWS Jobs device API over Updraft's job engine. */
export class AwsJobsDoor {
  private readonly deps: JobsDoorDeps;
  private readonly queue = new KeyedQueue(MAX_PENDING);
  private readonly jobs: ThingJobs;
  private readonly notifier: AwsJobsNotifier;
  /** Requests waiting for a command's sending to be recorded: released at stop. */
  private readonly waiting = new Set<() => void>();

  constructor(deps: JobsDoorDeps) {
    this.deps = deps;
    this.jobs = new ThingJobs({ store: deps.store, replica: deps.replica });
    const { events, things, publish, logger, now } = deps;
    this.notifier = new AwsJobsNotifier({ events, things, jobs: this.jobs, publish, wanted: deps.wanted ?? (() => true), logger, ...(now ? { now } : {}) });
  }

  /** Starts announcing changes of the next job (notify, notify-next). */
  async start(): Promise<void> {
    await this.notifier.start();
  }

  /** Stops announcing and waits for requests under way. */
  async stop(): Promise<void> {
    await this.notifier.stop();
    for (const release of this.waiting) release();
    await this.queue.drain();
  }

  private nowMs(): number {
    return this.deps.now ? this.deps.now() : Date.now();
  }

  /** Handles one request on a Jobs topic; never throws (answers on `.../rejected`); resolves once answered. */
  handle(msg: InboundMessage): Promise<void> {
    const req = parseAwsJobsRequest(msg.topic);
    if (!req || !mayActFor(msg.sender, req.thing)) return Promise.resolve();
    this.deps.things.mark(req.thing);
    if ('invalid' in req) {
      return this.publishJson(req.rejectTopic, this.rejection(new AwsJobsError('InvalidTopic', `Invalid topic: ${msg.topic}`), salvageJobsClientToken(msg.payload)));
    }
    return this.queue
      .run(req.thing, () => this.answer(req, msg.payload, msg.sender))
      .catch((err: unknown) => {
        // the queue refuses only when full (TOO_MANY_REQUESTS: RequestThrottled); answer() never throws
        const e = err instanceof AwsJobsError ? err : awsJobsErrorOf(asUpdraftError(err));
        return this.publishJson(awsJobsAnswerTopic(req, 'rejected'), this.rejection(e, salvageJobsClientToken(msg.payload)));
      });
  }

  private async answer(req: AwsJobsRequest, payload: Buffer, sender: Sender): Promise<void> {
    let body: AwsJobsRequestBody = {};
    try {
      body = parseAwsJobsBody(payload, req);
      await this.refuseUnregistered(req.thing, sender);
      const accepted = await this.run(req, body, sender);
      if (body.clientToken !== undefined) accepted.clientToken = body.clientToken;
      await this.publishJson(awsJobsAnswerTopic(req, 'accepted'), accepted);
    } catch (err) {
      const e = err instanceof AwsJobsError ? err : awsJobsErrorOf(asUpdraftError(err));
      if (e.code === 'InternalError') this.deps.logger.error('jobs request failed', { thing: req.thing, op: req.op, error: asUpdraftError(err).message });
      await this.publishJson(awsJobsAnswerTopic(req, 'rejected'), this.rejection(e, body.clientToken ?? salvageJobsClientToken(payload)));
    }
  }

  /**
   * ResourceNotFound for an operator's (or the server's) request about a thing no registered
   * device is, as AWS answers for a thing that does not exist and as the shadow door refuses
   * it (404): answered with an empty pending list, a mistyped name would look like a thing
   * with nothing to do. A device's request is not checked: it acts for itself or for the
   * things an operator listed for it (`awsThings`), which need not be registered.
   */
  private async refuseUnregistered(thing: string, sender: Sender): Promise<void> {
    if (sender.kind === 'device' || (await this.deps.store.getDevice(thing)) !== undefined) return;
    throw new AwsJobsError('ResourceNotFound', `Thing ${thing} is not registered: no device has that id; register it with: updraft device register ${thing}`);
  }

  private async run(req: AwsJobsRequest, body: AwsJobsRequestBody, sender: Sender): Promise<JsonObject> {
    const timestamp = Math.floor(this.nowMs() / 1000);
    if (req.op === 'get') {
      const view = await this.current(req.thing);
      const pending = view && isPending(view) ? [summaryOf(view)] : [];
      return {
        inProgressJobs: view?.status === 'IN_PROGRESS' ? pending : [],
        queuedJobs: view?.status === 'QUEUED' ? pending : [],
        timestamp,
      } as unknown as JsonObject;
    }
    if (req.op === 'start-next') {
      let view = await this.current(req.thing);
      if (!view || !isPending(view)) return { timestamp };
      // only a QUEUED execution is started; an IN_PROGRESS one is returned unchanged (AWS)
      if (view.status === 'QUEUED') {
        refuseRollbackStepTimer(view, body);
        view = await this.report(view, 'IN_PROGRESS', body, sender);
      }
      return { execution: executionOf(view, await this.jobs.documentOf(view)), timestamp } as unknown as JsonObject;
    }
    if (req.op === 'describe') {
      const view = req.jobId === '$next' ? await this.current(req.thing) : await this.find(req.thing, req.jobId);
      if (req.jobId === '$next' && (!view || !isPending(view))) return { timestamp };
      if (!view || (body.executionNumber !== undefined && body.executionNumber !== view.executionNumber)) throw notFound(req.thing, req.jobId);
      const doc = body.includeJobDocument === false ? undefined : await this.jobs.documentOf(view);
      return { execution: executionOf(view, doc), timestamp } as unknown as JsonObject;
    }
    // update
    const view = await this.find(req.thing, req.jobId);
    if (!view || (body.executionNumber !== undefined && body.executionNumber !== view.executionNumber)) throw notFound(req.thing, req.jobId);
    if (body.status === undefined) throw new AwsJobsError('InvalidRequest', 'Missing required parameter: status');
    if (body.expectedVersion !== undefined && body.expectedVersion !== view.versionNumber) {
      throw new AwsJobsError('VersionMismatch', `Version mismatch: expected ${body.expectedVersion}, the execution is at ${view.versionNumber}`, stateOf(view));
    }
    // InvalidStateTransition, as AWS's ErrorResponse gives it for "an attempt to change a request in
    // state SUCCESS to state IN_PROGRESS", and as its service model lists for UpdateJobExecution
    // (InvalidStateTransitionException; TerminalStateException is DescribeJobExecution's, whose
    // TerminalStateReached AWS documents for "a command to describe a job" in a terminal state):
    // https://docs.aws.amazon.com/iot/latest/developerguide/jobs-api.html#jobs-mqtt-error-response
    if (isTerminal(view.status as ExecutionStatus)) {
      throw new AwsJobsError('InvalidStateTransition', `Cannot change the status of job execution ${req.jobId} on ${req.thing} from ${view.status} to ${body.status}: ${view.status} is a terminal state`, stateOf(view));
    }
    if (!view.current) throw new AwsJobsError('InvalidStateTransition', `Job ${req.jobId} is no longer the current job of ${req.thing}`, stateOf(view));
    if (!canTransition(view.status as ExecutionStatus, body.status as ExecutionStatus)) {
      throw new AwsJobsError('InvalidStateTransition', `Cannot change the status of job execution ${req.jobId} from ${view.status} to ${body.status}`, stateOf(view));
    }
    refuseRollbackStepTimer(view, body);
    const after = await this.report(view, body.status, body, sender);
    const out: JsonObject = { timestamp };
    if (body.includeJobExecutionState === true) out.executionState = stateOf(after) as unknown as JsonObject;
    if (body.includeJobDocument === true) {
      const doc = await this.jobs.documentOf(after);
      if (doc) out.jobDocument = doc;
    }
    return out;
  }

  /** The thing's current job, once its sending is recorded (`settled`). */
  private async current(thing: string): Promise<JobView | undefined> {
    return this.settled(await this.jobs.current(thing), () => this.jobs.current(thing));
  }

  /** A job of the thing by AWS job id, once its sending is recorded (`settled`). */
  private async find(thing: string, jobId: string): Promise<JobView | undefined> {
    return this.settled(await this.jobs.find(thing, jobId), () => this.jobs.find(thing, jobId));
  }

  /**
   * `view`, or, while its command is written but the rollout has not recorded it sent
   * (`sendPending`), the view read again once it has (its `execution.changed`, also relayed
   * from the instance that sent it), waiting at most `sendWaitMs`. The rollout's dispatch
   * write moves `versionNumber`, and, after a device's start, writes the execution again:
   * answered before it, a start-next (or a get) would tell a version the execution has left
   * by the time the device sends it as expectedVersion (VersionMismatch), as the notifier
   * once announced too early (it waits for the same write). The window is the time between
   * the two writes of the rollout, milliseconds unless the store stalls; a request that
   * waited the whole bound is answered with what it has (logged).
   */
  private async settled(view: JobView | undefined, read: () => Promise<JobView | undefined>): Promise<JobView | undefined> {
    if (!view?.sendPending) return view;
    const { baseJobId } = awsIdOf(view.agentJobId);
    const deadline = this.nowMs() + (this.deps.sendWaitMs ?? DEFAULT_SEND_WAIT_MS);
    this.deps.logger.debug('jobs request waits for the rollout to record the command sent', { thing: view.thing, jobId: view.jobId });
    let release: () => void = () => {};
    let changed = false;
    // listening before reading again: a write between the read and the wait is not missed
    const off = this.deps.events.on('execution.changed', (e) => {
      if (e.current.jobId !== baseJobId || e.current.deviceId !== view.thing) return;
      changed = true;
      release();
    });
    try {
      for (;;) {
        changed = false;
        const again = await read();
        if (!again?.sendPending) return again;
        const left = deadline - this.nowMs();
        if (left <= 0) break;
        if (changed) continue;
        let timer: NodeJS.Timeout | undefined;
        await new Promise<void>((resolve) => {
          release = resolve;
          this.waiting.add(resolve);
          timer = setTimeout(resolve, left);
        });
        clearTimeout(timer);
        this.waiting.delete(release);
        if (!changed) break; // the bound, or the door stopping
      }
      this.deps.logger.warn('jobs request answered before the rollout recorded the command sent: its versionNumber moves when it does', { thing: view.thing, jobId: view.jobId });
      return (await read()) ?? view;
    } finally {
      off();
    }
  }

  /** Writes an AWS status as the device's report, waits for the tracker, returns the new view. */
  private async report(view: JobView, status: NonNullable<AwsJobsRequestBody['status']>, body: AwsJobsRequestBody, sender: Sender): Promise<JobView> {
    const { store, replica, tracker } = this.deps;
    const shadow = await store.getShadow(view.thing, '');
    const software = view.software!;
    const reported = reportFor(status, view.agentJobId, software, shadow?.state.reported?.software, body.statusDetails);
    const request = { state: { reported: { software: reported } }, clientToken: 'updraft-aws-jobs' };
    // the device's own report, on its behalf: it may not write desired.software this way
    await replica.update({ deviceId: view.thing, name: '' }, request, sender.kind === 'device' ? sender : { kind: 'device', id: view.thing }).catch((err: unknown) => {
      throw refusedReport(err);
    });
    await tracker.idle();
    const { baseJobId, control } = awsIdOf(view.agentJobId);
    if (control) await this.recordRollbackUpdate(view, baseJobId, reportedStatusDetails(await store.getShadow(view.thing, ''), view.agentJobId));
    else await this.recordUpdate(view, baseJobId, status !== 'IN_PROGRESS' ? undefined : body.cancelStepTimer ? 'cancel' : body.stepTimeoutInMinutes);
    // read after the door's own write: the versionNumber answered is the one the next update is checked against
    return (await this.jobs.current(view.thing)) ?? view;
  }

  /**
   * What an update through the Jobs API records beside the report, in one write: when the
   * execution left QUEUED (AWS's startedAt, the device's start, not the command's sending),
   * and AWS `stepTimeoutInMinutes` (the execution ends TIMED_OUT unless updated again in time;
   * `'cancel'`, sent as -1, takes the timer an earlier update set away).
   */
  private async recordUpdate(view: JobView, baseJobId: string, minutes: number | 'cancel' | undefined): Promise<void> {
    // the job's rules (its timeouts), cached: a spec read per device message can be megabytes
    const job = minutes === undefined ? undefined : await this.deps.tracker.jobIdentity(baseJobId);
    const spec = job ? specOf(job) : undefined;
    const now = this.nowMs();
    await mutateExecution(this.deps, { jobId: baseJobId, deviceId: view.thing }, (cur) => {
      // the attempt the device updated only: one that timed out while its command could not be
      // taken back is still desired, and the retry queued since is another attempt, not sent (no
      // deadline of its own), whose due time may be the retract it still owes
      // (jobs/pending-retract.ts); its step timer, kept, would also bound the retry once started
      if ((cur.attempt ?? 1) !== view.executionNumber) return undefined;
      const started = view.status === 'QUEUED' && cur.status !== 'QUEUED' && cur.details.startedAt === undefined;
      // a cancel changes something only where a timer is set
      const timer = minutes !== undefined && !isTerminal(cur.status) && (minutes !== 'cancel' || cur.details.stepDeadlineAt !== undefined);
      if (!started && !timer) return undefined;
      const details = { ...cur.details };
      if (started) details.startedAt = now;
      if (!timer) return { details };
      if (typeof minutes === 'number') details.stepDeadlineAt = now + minutes * 60_000;
      else delete details.stepDeadlineAt;
      return { details, dueAt: deadlineOf(spec, { status: cur.status, dispatchedAt: cur.dispatchedAt, details }) };
    }, now);
  }

  /**
   * A rollback (`J.rollback`) has no execution record of its own and its reports do not move
   * J's: its versionNumber and start are kept in J's record (`details.awsRollback`), moved
   * here at each update through the Jobs API, so that expectedVersion means what it says.
   * Its statusDetails as they stand after the update (`statusDetails`, read back from the
   * shadow) are kept there too: once another command replaces the rollback, the shadow's
   * report is about that one, and a DescribeJobExecution of the finished rollback reads them
   * here (`pastRollbackView`).
   */
  private async recordRollbackUpdate(view: JobView, baseJobId: string, statusDetails: Record<string, string> | undefined): Promise<void> {
    const now = this.nowMs();
    await mutateExecution(this.deps, { jobId: baseJobId, deviceId: view.thing }, (cur) => {
      const before = rollbackStateOf(cur.details, view.agentJobId);
      const state: JsonObject = { jobId: view.agentJobId, version: (before?.version ?? 1) + 1 };
      const startedAt = before?.startedAt ?? (view.status === 'QUEUED' ? now : undefined);
      if (startedAt !== undefined) state.startedAt = startedAt;
      if (statusDetails) state.statusDetails = statusDetails;
      return { details: { ...cur.details, awsRollback: state } };
    }, now);
  }

  private rejection(e: AwsJobsError, clientToken: string | undefined): AwsJobsRejection {
    const r: AwsJobsRejection = { code: e.code, message: e.message, timestamp: Math.floor(this.nowMs() / 1000) };
    if (clientToken !== undefined) r.clientToken = clientToken;
    if (e.executionState) r.executionState = e.executionState;
    return r;
  }

  private async publishJson(topic: string, message: object): Promise<void> {
    // e.g. the v1 SDK never subscribes to update answers: nothing to send
    if (this.deps.wanted?.(topic) === false) return;
    try {
      await this.deps.publish(topic, JSON.stringify(message));
    } catch (err) {
      this.deps.logger.warn('jobs answer not published', { topic, error: asUpdraftError(err).message });
    }
  }
}

/**
 * The AWS code of a failure that is not a refusal of the door's own: a moment's overload (a
 * queue full, a shadow that kept changing under the report) is RequestThrottled; anything
 * else is a fault of the server, InternalError, which the SDKs retry as it is.
 */
function awsJobsErrorOf(e: UpdraftError): AwsJobsError {
  return e.code === 'TOO_MANY_REQUESTS' ? new AwsJobsError('RequestThrottled', e.message) : new AwsJobsError('InternalError', publicMessage(e));
}

/**
 * The replica's refusal of the report a status update is written as: a key the shadow
 * refuses (`__proto__`), a document over its size limit. That is the request's fault,
 * InvalidRequest, as AWS answers malformed status details; the same request is refused
 * again, so it is no InternalError for the SDKs to retry. AWS's ErrorCode list is closed
 * (the SDKs parse no other code), so a 403, which has no code of its own there, is
 * InvalidRequest too. Anything else is left to `awsJobsErrorOf`.
 * https://docs.aws.amazon.com/iot/latest/developerguide/jobs-api.html#jobs-mqtt-error-response
 */
function refusedReport(err: unknown): unknown {
  if (!(err instanceof UpdraftError) || !(err.code === 'BAD_REQUEST' || err.code === 'FORBIDDEN' || err.code === 'TOO_LARGE')) return err;
  return new AwsJobsError('InvalidRequest', `The status update cannot be recorded in the thing's shadow, which carries it (reported.software): ${err.message}`);
}

/**
 * `stepTimeoutInMinutes` on a rollback is refused, not dropped: a rollback has no execution
 * record of its own whose deadline the rollout engine watches (its job's ended FAILED or
 * TIMED_OUT), so nothing would end it TIMED_OUT.
 */
function refuseRollbackStepTimer(view: JobView, body: AwsJobsRequestBody): void {
  if (body.stepTimeoutInMinutes === undefined || !awsIdOf(view.agentJobId).control) return;
  throw new AwsJobsError('InvalidRequest', `stepTimeoutInMinutes cannot be set on ${view.jobId}: a rollback has no step timer in Updraft (no server-side timeout applies to it); send the update without it`);
}

function notFound(thing: string, jobId: string): AwsJobsError {
  // a rollback replaced before it finished leaves no state of its own (job-view.ts pastRollbackView)
  const why = awsIdOf(jobId).control && jobId.endsWith('.rollback') ? ' (a rollback that another command replaced before it finished is not kept)' : '';
  return new AwsJobsError('ResourceNotFound', `No job execution exists for job ${jobId} on thing ${thing}${why}`);
}
