/**
 * Deployments (pattern step 3), `POST /api/v1/deployments` and `updraft deploy`: a thin
 * wrapper over a rollout job with a single wave, everyone at once, no timeouts and no
 * retries. The first commands are written through the replica (the same path as a request
 * on `state/{id}/update`) before the call resolves.
 */
import { UpdraftError } from '../errors.ts';
import type { ExecutionRecord, JobRecord, StateStore } from '../store/state-store.ts';
import { deploymentSpec } from './job-spec.ts';
import type { JobService } from './job-service.ts';
import { isValidId } from '../protocol/topics.ts';
import { descriptionProblem } from '../protocol/known-fields.ts';

/** A deployment request. */
export interface DeployRequest {
  devices: string[];
  /** `name@version`. */
  artifact: string;
  description?: string;
  /** Install even on devices that run a higher version. */
  allowDowngrade?: boolean;
}

/** Executions returned with a deployment at most (the job view pages through all). */
const MAX_LISTED = 1000;

/** Creates single-wave jobs. */
export class DeploymentService {
  private readonly deps: { store: StateStore; jobs: JobService };

  constructor(deps: { store: StateStore; jobs: JobService }) {
    this.deps = deps;
  }

  /** Deploys; BAD_REQUEST for an empty or malformed target list or a description over 1000 characters, NOT_FOUND for unregistered devices or a missing artifact. */
  async deploy(req: DeployRequest): Promise<{ job: JobRecord; executions: ExecutionRecord[]; total: number }> {
    if (!Array.isArray(req.devices) || req.devices.length === 0) throw new UpdraftError('BAD_REQUEST', 'devices must list at least one device id');
    const devices = [...new Set(req.devices)];
    for (const d of devices) {
      if (typeof d !== 'string' || !isValidId(d)) throw new UpdraftError('BAD_REQUEST', `"${String(d)}" is not a valid device id`);
    }
    // a job's bound and message (jobs/job-spec.ts): a deployment is a job, and its
    // description is shown in every job list and kept with the job
    const description = descriptionProblem(req.description);
    if (description) throw new UpdraftError('BAD_REQUEST', description);
    const spec = { ...deploymentSpec(devices), allowDowngrade: req.allowDowngrade === true };
    const view = await this.deps.jobs.createFromSpec(req.artifact, spec, req.description);
    const page = await this.deps.store.listJobExecutions(view.job.jobId, { limit: MAX_LISTED });
    return { job: view.job, executions: page.items, total: view.total };
  }
}
