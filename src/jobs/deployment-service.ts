/**
 * Deployments (pattern step 3), `POST /api/v1/deployments` and `updraft deploy`: a thin
 * wrapper over a rollout job with a single wave, everyone at once, no timeouts and no
 * retries. The first commands are written through the replica (the same path as a request
 * on `state/{id}/update`) before the call resolves.
 */
import { UpdraftError } from '../errors.ts';
import type { ExecutionRecord, IdempotencyClaim, JobRecord, StateStore } from '../store/state-store.ts';
import { createOnce, type CreatedOnce } from './idempotent-creation.ts';
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

/** What a deployment answers: its job, its first executions, how many in all. */
export interface Deployment {
  job: JobRecord;
  executions: ExecutionRecord[];
  total: number;
}

/** Executions returned with a deployment at most (the job view pages through all). */
const MAX_LISTED = 1000;

/** Creates single-wave jobs. */
export class DeploymentService {
  private readonly deps: { store: StateStore; jobs: JobService };

  constructor(deps: { store: StateStore; jobs: JobService }) {
    this.deps = deps;
  }

  /**
   * `deploy` holding the client's Idempotency-Key (`claim`): the job that holds the key already
   * is answered instead, nothing created (`replayed`; idempotent-creation.ts).
   */
  deployWithKey(req: DeployRequest, claim: IdempotencyClaim | undefined): Promise<CreatedOnce<Deployment>> {
    return createOnce(this.deps.store, claim, (c) => this.deploy(req, c), (jobId) => this.answer(jobId));
  }

  /** Deploys; BAD_REQUEST for an empty or malformed target list or a description over 1000 characters, NOT_FOUND for unregistered devices or a missing artifact. */
  async deploy(req: DeployRequest, claim?: IdempotencyClaim): Promise<Deployment> {
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
    const view = await this.deps.jobs.createFromSpec(req.artifact, spec, req.description, undefined, claim);
    const page = await this.deps.store.listJobExecutions(view.job.jobId, { limit: MAX_LISTED });
    return { job: view.job, executions: page.items, total: view.total };
  }

  /** A deployment's job as its creation answered it (its executions as they are now). */
  private async answer(jobId: string): Promise<Deployment> {
    const view = await this.deps.jobs.view(jobId);
    const page = await this.deps.store.listJobExecutions(jobId, { limit: MAX_LISTED });
    return { job: view.job, executions: page.items, total: view.total };
  }
}
