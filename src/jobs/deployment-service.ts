/**
 * Deployments (pattern step 3): creates a job with a globally unique id for an artifact and
 * a set of devices, records one QUEUED execution per device, and writes each device's
 * desired software through the replica, the same path as a request on `state/{id}/update`.
 */
import { randomUUID } from 'node:crypto';
import type { ArtifactService } from '../artifacts/artifact-service.ts';
import { parseArtifactRef } from '../artifacts/artifact-service.ts';
import { UpdraftError } from '../errors.ts';
import type { Sender } from '../broker/message-bus.ts';
import { isValidId } from '../protocol/topics.ts';
import type { DeviceRegistry } from '../registry/device-registry.ts';
import type { ShadowReplica } from '../shadow/replica.ts';
import type { ExecutionRecord, JobRecord, StateStore } from '../store/state-store.ts';

const OPERATOR: Sender = { kind: 'operator', id: 'api' };

/** A deployment request. */
export interface DeployRequest {
  devices: string[];
  /** `name@version`. */
  artifact: string;
  description?: string;
}

/** Creates jobs and sets desired software. */
export class DeploymentService {
  private readonly deps: { store: StateStore; replica: ShadowReplica; artifacts: ArtifactService; registry: DeviceRegistry };

  constructor(deps: { store: StateStore; replica: ShadowReplica; artifacts: ArtifactService; registry: DeviceRegistry }) {
    this.deps = deps;
  }

  /** Deploys; BAD_REQUEST for an empty or malformed target list, NOT_FOUND for unregistered devices or a missing artifact. */
  async deploy(req: DeployRequest): Promise<{ job: JobRecord; executions: ExecutionRecord[] }> {
    const { store, replica, artifacts } = this.deps;
    if (!Array.isArray(req.devices) || req.devices.length === 0) throw new UpdraftError('BAD_REQUEST', 'devices must list at least one device id');
    const devices = [...new Set(req.devices)];
    for (const d of devices) {
      if (typeof d !== 'string' || !isValidId(d)) throw new UpdraftError('BAD_REQUEST', `"${String(d)}" is not a valid device id`);
    }
    const { name, version } = parseArtifactRef(req.artifact);
    const artifact = await artifacts.get(name, version);
    for (const d of devices) {
      const device = await this.deps.registry.get(d);
      if (device.revoked) throw new UpdraftError('CONFLICT', `device ${d} is revoked`);
    }
    const now = Date.now();
    const job: JobRecord = { jobId: randomUUID(), artifactName: name, artifactVersion: version, status: 'IN_PROGRESS', createdAt: now };
    if (req.description) job.description = req.description;
    const executions: ExecutionRecord[] = devices.map((deviceId) => ({ jobId: job.jobId, deviceId, status: 'QUEUED', details: {}, queuedAt: now, updatedAt: now, version: 1 }));
    await store.createJob(job, executions);
    const software = { name, version, sha256: artifact.sha256, size: artifact.size, jobId: job.jobId };
    await Promise.all(devices.map((deviceId) => replica.update({ deviceId, name: '' }, { state: { desired: { software } } }, OPERATOR)));
    return { job, executions };
  }
}
