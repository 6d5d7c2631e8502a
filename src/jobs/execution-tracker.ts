/**
 * Drives job executions from what devices report (pattern step 8): every committed shadow
 * update whose `reported.software` names a job moves that job's execution for the device
 * along the transition table. Reported is the truth: a SUCCESS whose version is not the
 * job's version is a failure.
 */
import { asUpdraftError } from '../errors.ts';
import type { EventBus, UpdraftEvents } from '../events/event-bus.ts';
import { parseReportedSoftware, type ReportedSoftware } from '../protocol/software.ts';
import { KeyedQueue } from '../shadow/keyed-queue.ts';
import type { ExecutionRecord, StateStore } from '../store/state-store.ts';
import type { Logger } from '../util/logger.ts';
import { canTransition, executionStatusFor, isTerminal } from './execution-state.ts';

/** Listens to shadow updates and records execution outcomes. */
export class ExecutionTracker {
  private readonly deps: { store: StateStore; events: EventBus; logger: Logger };
  private readonly queue = new KeyedQueue(1_000_000);
  private unsubscribe: (() => void) | undefined;
  /** Jobs whose completion check is scheduled: one check per job per tick window, not one per device. */
  private readonly completionChecks = new Map<string, NodeJS.Timeout>();

  constructor(deps: { store: StateStore; events: EventBus; logger: Logger }) {
    this.deps = deps;
  }

  async start(): Promise<void> {
    this.unsubscribe = this.deps.events.on('shadow.updated', (e) => this.onShadowUpdated(e));
  }

  async stop(): Promise<void> {
    this.unsubscribe?.();
    await this.queue.drain();
    for (const [jobId, timer] of this.completionChecks) {
      clearTimeout(timer);
      await this.completeJobIfDone(jobId);
    }
    this.completionChecks.clear();
  }

  /** Resolves when every report received so far is recorded (tests, shutdown). */
  idle(): Promise<void> {
    return this.queue.drain();
  }

  private onShadowUpdated(e: UpdraftEvents['shadow.updated']): void {
    if (e.current.name !== '' || e.request.state.reported?.software === undefined) return;
    const reported = parseReportedSoftware(e.current.state.reported?.software);
    if (!reported?.jobId) return;
    const jobId = reported.jobId;
    this.queue
      .run(`${jobId}/${e.current.deviceId}`, () => this.record(jobId, e.current.deviceId, reported))
      .catch((err: unknown) => this.deps.logger.error('execution not recorded', { jobId, deviceId: e.current.deviceId, error: asUpdraftError(err).message }));
  }

  private async record(jobId: string, deviceId: string, reported: ReportedSoftware): Promise<void> {
    const { store } = this.deps;
    const job = await store.getJob(jobId);
    if (!job) return; // a job id this server never issued: nothing to track
    let to = executionStatusFor(reported.status);
    if (!to) return;
    const details: ExecutionRecord['details'] = { agentStatus: reported.status, version: reported.version };
    if (reported.progress !== undefined) details.progress = reported.progress;
    if (reported.error !== undefined) details.error = reported.error;
    if (to === 'SUCCEEDED' && reported.version !== job.artifactVersion) {
      to = 'FAILED';
      details.error = `device reported SUCCESS but runs ${reported.version}, not ${job.artifactVersion}`;
    }
    for (let attempt = 0; attempt < 5; attempt++) {
      const current = await store.getExecution(jobId, deviceId);
      if (!current) return;
      if (current.status === to && to !== 'IN_PROGRESS') return; // duplicate report: already recorded
      if (!canTransition(current.status, to)) {
        this.deps.logger.warn('report ignored: illegal execution transition', { jobId, deviceId, from: current.status, to });
        return;
      }
      const next: ExecutionRecord = { ...current, status: to, details, updatedAt: Date.now(), version: current.version + 1 };
      if (await store.updateExecution(next)) {
        this.deps.events.emit('execution.changed', { previous: current, current: next });
        if (isTerminal(to)) this.scheduleCompletionCheck(jobId);
        return;
      }
    }
  }

  /**
   * Checking a job's every execution after each device finishes is quadratic in the fleet
   * size; coalescing the checks of a job into one per 200 ms keeps it linear.
   */
  private scheduleCompletionCheck(jobId: string): void {
    if (this.completionChecks.has(jobId)) return;
    const timer = setTimeout(() => {
      this.completionChecks.delete(jobId);
      this.completeJobIfDone(jobId).catch((err: unknown) => this.deps.logger.error('job completion check failed', { jobId, error: asUpdraftError(err).message }));
    }, 200);
    timer.unref();
    this.completionChecks.set(jobId, timer);
  }

  private async completeJobIfDone(jobId: string): Promise<void> {
    const executions = await this.deps.store.listExecutions({ jobId });
    if (executions.every((x) => isTerminal(x.status))) await this.deps.store.setJobStatus(jobId, 'COMPLETED');
  }
}
