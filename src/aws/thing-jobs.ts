/**
 * A thing's jobs as AWS Jobs clients see them (issue 9), read from the store: its current
 * command as a job, any of its dispatched executions by job id, and job documents with a
 * freshly signed URL. Shared by the jobs door (requests) and the notifier (notify-next).
 */
import type { JsonObject } from '../protocol/json.ts';
import type { ShadowReplica } from '../shadow/replica.ts';
import type { StateStore } from '../store/state-store.ts';
import { jobDocument } from './job-document.ts';
import { parseAgentJobId } from '../jobs/agent-job-id.ts';
import { awsIdOf, currentCommand, currentJobView, isStayCommand, pastJobView, pastRollbackView, unsentRetryView, type JobView } from './job-view.ts';

/** Reads a thing's jobs. */
export class ThingJobs {
  private readonly deps: { store: StateStore; replica: ShadowReplica };

  constructor(deps: { store: StateStore; replica: ShadowReplica }) {
    this.deps = deps;
  }

  /**
   * The thing's current command as a job, if it has one. None for a stay command, nor for a
   * command of which the thing has no execution record (of its job, for a rollback): its job
   * was deleted, executions and all (the command stays in the shadow, finished; as AWS's
   * DeleteJob takes a job's executions away), or it is no job's. Shown from the shadow
   * alone, it would be QUEUED again, and startable, as soon as the device's report was about
   * anything else (its software reported afresh, or cleared).
   */
  async current(thing: string): Promise<JobView | undefined> {
    const shadow = await this.deps.store.getShadow(thing, '');
    const software = currentCommand(shadow);
    if (!shadow || !software || isStayCommand(software.jobId)) return undefined;
    const id = awsIdOf(software.jobId);
    const execution = await this.deps.store.getExecution(id.baseJobId, thing);
    if (!execution) return undefined;
    return currentJobView(thing, shadow, software, execution);
  }

  /** A job of the thing by AWS job id: its current command, or an execution record. */
  async find(thing: string, jobId: string): Promise<JobView | undefined> {
    const current = await this.current(thing);
    if (current?.jobId === jobId) return current;
    const parsed = parseAgentJobId(jobId);
    if (parsed?.control === 'rollback') {
      // a rollback has no record of its own: its job's keeps its outcome
      const base = await this.deps.store.getExecution(parsed.jobId, thing);
      return base ? pastRollbackView(thing, jobId, base) : undefined;
    }
    const execution = await this.deps.store.getExecution(jobId, thing);
    if (!execution) return undefined;
    // an execution the rollout has not dispatched is not the thing's yet; a retry not sent
    // yet shows the attempt before it, as it ended (job-view.ts unsentRetryView)
    return execution.dispatchedAt !== undefined ? pastJobView(thing, execution) : unsentRetryView(thing, execution);
  }

  /** The job document of a view: only the current command has one (with a fresh URL). */
  async documentOf(view: JobView): Promise<JsonObject | undefined> {
    if (!view.software) return undefined;
    return jobDocument(view.software, await this.deps.replica.command(view.thing, view.software));
  }
}
