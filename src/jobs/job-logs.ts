/**
 * Devices' logs of failed jobs (`protocol/job-log.ts`): a device sends its log of a failed
 * attempt on `state/{id}/job-log`, answered on `.../accepted` or `.../rejected` (clientToken
 * echoed). The log is kept with the job, one per device (a later attempt's replaces it), and
 * read through `GET /api/v1/jobs/{id}/logs/{deviceId}` (`updraft job log`).
 *
 * What is refused, and why:
 * - a log for another device's topic: the topic ACL drops it before it gets here, and a
 *   device sender is checked again (403);
 * - malformed or over the limits (400, 413: the agent bounds its logs, so a larger one is not
 *   from an agent of ours);
 * - about a job this device has no execution of (404: a log is evidence about an execution,
 *   and an unknown one would be storage anyone with a device credential could fill);
 * - when the job keeps `maxPerJob` logs of other devices already (409): the first devices'
 *   logs tell what goes wrong, and a job of a million devices failing everywhere must not
 *   put a million logs into the store. The agent drops a log refused with a 4xx.
 */
import { answerDeviceRequest, requestBody } from '../broker/device-request.ts';
import { routeRequests, type InboundMessage, type MessageBus } from '../broker/message-bus.ts';
import { UpdraftError } from '../errors.ts';
import type { EventBus } from '../events/event-bus.ts';
import { JOB_LOG_MAX_REQUEST_BYTES, parseJobLogUpload } from '../protocol/job-log.ts';
import { readClientToken } from '../protocol/shadow-messages.ts';
import { jobLogAnswerTopic, parseJobLogTopic } from '../protocol/topics.ts';
import type { StateStore } from '../store/state-store.ts';
import { ThrottledLog } from '../util/log-throttle.ts';
import type { Logger } from '../util/logger.ts';
import { parseAgentJobId } from './agent-job-id.ts';

/** What the service needs. */
export interface JobLogDeps {
  store: StateStore;
  events: EventBus;
  /** Where answers are published. */
  publish: (topic: string, payload: string) => Promise<void>;
  logger: Logger;
  /** Logs kept per job (`jobs.maxLogsPerJob`); 0 keeps none. */
  maxPerJob: number;
  /** Milliseconds since the epoch (tests). */
  now?: () => number;
}

/** Keeps devices' logs of failed jobs. */
export class JobLogService {
  private readonly deps: JobLogDeps;
  /** Logs refused for a spent budget: one line a minute with the count (`suppressed`). */
  private readonly budgetSpent: ThrottledLog;

  constructor(deps: JobLogDeps) {
    this.deps = deps;
    this.budgetSpent = new ThrottledLog(deps.logger, 60_000, () => this.now(), ['jobId']);
  }

  private now(): number {
    return this.deps.now ? this.deps.now() : Date.now();
  }

  /** Handles one upload; never throws (answers on the rejected topic instead); resolves once answered. */
  handle(msg: InboundMessage): Promise<void> {
    const parsed = parseJobLogTopic(msg.topic);
    if (!parsed) return Promise.resolve();
    const { deviceId } = parsed;
    const d = this.deps;
    const o = { deviceId, msg, rejectedTopic: jobLogAnswerTopic(deviceId, 'rejected'), what: 'job log', refusedLevel: 'info' as const, quiet: (e: UpdraftError) => e.code === 'CONFLICT', publish: d.publish, logger: d.logger, nowSeconds: () => Math.floor(this.now() / 1000) };
    return answerDeviceRequest(o, () => this.answer(deviceId, msg));
  }

  private async answer(deviceId: string, msg: InboundMessage): Promise<void> {
    if (msg.sender.kind === 'device' && msg.sender.id !== deviceId) throw new UpdraftError('FORBIDDEN', "a device may send its own job logs only");
    const body = requestBody(msg.payload, JOB_LOG_MAX_REQUEST_BYTES, 'job log');
    const clientToken = readClientToken(body);
    const upload = parseJobLogUpload(body);
    const parsed = parseAgentJobId(upload.jobId);
    const jobId = parsed?.jobId;
    const execution = jobId === undefined ? undefined : await this.deps.store.getExecution(jobId, deviceId);
    if (!execution) throw new UpdraftError('NOT_FOUND', `job ${upload.jobId} has no execution on device ${deviceId}: its log is not kept`);
    const receivedAt = this.now();
    // the log of a take-back (`.cancel`, `.rollback`) is kept while the job holds fewer than half
    // its logs: after an abort every device that had installed refuses the take-back as a
    // downgrade and sends its log, and those filled the job's budget (947 of 1,000 in a soak),
    // so the logs of real failures that came after were refused
    const control = parsed?.control !== undefined;
    const max = control ? Math.floor(this.deps.maxPerJob / 2) : this.deps.maxPerJob;
    const kept = max > 0 && (await this.deps.store.putJobLog({ jobId: execution.jobId, deviceId, agentJobId: upload.jobId, receivedAt, lines: upload.lines, dropped: upload.dropped }, max));
    if (!kept) {
      const why = max > 0 ? `keeps the logs of ${max} devices already` : 'keeps no logs';
      // expected once a job fails widely (every device that installed refuses an abort's
      // take-back and sends its log): one line a minute with the count, not one per device
      // (an abort in a soak wrote 480 INFO lines; a million-device job would write a million)
      this.budgetSpent.info('job logs not kept: their job keeps its share of logs already (jobs.maxLogsPerJob; the first devices\' logs tell what went wrong)', { jobId: execution.jobId, deviceId, takeBack: control, kept: max });
      throw new UpdraftError('CONFLICT', `job ${execution.jobId} ${why} (jobs.maxLogsPerJob${control ? ", half of it for the logs of a take-back's attempt" : ''}): this one is not kept`);
    }
    this.deps.events.emit('job.log', { jobId: execution.jobId, deviceId, agentJobId: upload.jobId, lineCount: upload.lines.length });
    const accepted: Record<string, unknown> = { jobId: upload.jobId, lines: upload.lines.length, timestamp: Math.floor(receivedAt / 1000) };
    if (clientToken !== undefined) accepted.clientToken = clientToken;
    await this.deps.publish(jobLogAnswerTopic(deviceId, 'accepted'), JSON.stringify(accepted));
  }
}

/** A MessageBus that hands job logs to `service` and every other request on. */
export function withJobLogs(bus: MessageBus, service: JobLogService): MessageBus {
  return routeRequests(bus, (msg, next) => (parseJobLogTopic(msg.topic) ? service.handle(msg) : next(msg)));
}
