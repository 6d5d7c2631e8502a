/**
 * The durable store behind the replica, the artifact catalogue and the jobs
 * (STYLE.md habit 2). The embedded implementation is SQLite (`sqlite-store.ts`); a
 * PostgreSQL one will satisfy the same interface and the same contract suite
 * (`test/store/state-store.contract.ts`).
 *
 * Every write resolves only after it is durably committed: the replica acknowledges a
 * request only after that (DESIGN.md §2). Conditional writes (`expectedVersion`) are the
 * concurrency control, so several writers never lose an update.
 */
import type { JsonObject } from '../protocol/json.ts';

/** One shadow as stored. A deleted shadow keeps its row (a tombstone) so versions are never reused. */
export interface ShadowRecord {
  deviceId: string;
  /** '' for the classic shadow, else the named shadow's name. */
  name: string;
  /** Strictly increasing per shadow; 0 only for a shadow that never existed. */
  version: number;
  /** True after a delete: the shadow does not exist, but its version survives. */
  deleted: boolean;
  state: { desired?: JsonObject; reported?: JsonObject };
  metadata: { desired?: JsonObject; reported?: JsonObject };
  /** Seconds since the epoch of the last accepted change. */
  timestamp: number;
}

/** One stored software build. Content-addressed: `sha256` is also the blob key. */
export interface ArtifactRecord {
  name: string;
  version: string;
  sha256: string;
  size: number;
  /** Milliseconds since the epoch. */
  createdAt: number;
}

/** A job's own state. */
export type JobStatus = 'IN_PROGRESS' | 'COMPLETED' | 'CANCELED';

/** An update job: one artifact, a set of target devices. */
export interface JobRecord {
  /** Globally unique (UUID v4). */
  jobId: string;
  artifactName: string;
  artifactVersion: string;
  status: JobStatus;
  /** Milliseconds since the epoch. */
  createdAt: number;
  description?: string;
}

/** Per-device execution states (DESIGN.md §4); the legal moves are in `jobs/execution-state.ts`. */
export type ExecutionStatus = 'QUEUED' | 'IN_PROGRESS' | 'SUCCEEDED' | 'FAILED' | 'TIMED_OUT' | 'REJECTED' | 'CANCELED' | 'REMOVED';

/** One job on one device. */
export interface ExecutionRecord {
  jobId: string;
  deviceId: string;
  status: ExecutionStatus;
  /** The agent's last reported phase, progress, error and version for this job. */
  details: JsonObject;
  /** Milliseconds since the epoch. */
  queuedAt: number;
  /** Milliseconds since the epoch of the last change. */
  updatedAt: number;
  /** Row version for conditional updates; 1 when created. */
  version: number;
}

/** A registered device: identity, attributes and tags (for groups and queries), credential. */
export interface DeviceRecord {
  deviceId: string;
  /** Free-form attributes, e.g. `{ region: 'eu', model: 'x2' }`. */
  attributes: Record<string, string | number | boolean>;
  tags: string[];
  /** SHA-256 (hex) of the device secret; absent for devices that authenticate by certificate only. */
  secretHash?: string;
  /** A revoked device is refused at CONNECT and at download. */
  revoked: boolean;
  /** Milliseconds since the epoch. */
  createdAt: number;
  updatedAt: number;
  /** Row version for conditional updates; 1 when created. */
  version: number;
}

/** Page of a listing: `next` is the cursor of the following page, absent on the last one. */
export interface Page<T> {
  items: T[];
  next?: string;
}

/** The durable store. Implementations: SQLite (embedded), PostgreSQL (production). */
export interface StateStore {
  /** Opens connections and applies schema migrations. */
  start(): Promise<void>;
  /** Flushes pending writes and releases every resource. */
  stop(): Promise<void>;

  /** The shadow, including a tombstone if it was deleted; undefined if it never existed. */
  getShadow(deviceId: string, name: string): Promise<ShadowRecord | undefined>;
  /**
   * Writes `record` if the stored version equals `expectedVersion` (0: no row yet).
   * Resolves true after a durable commit, false on a version conflict (nothing written).
   */
  putShadow(record: ShadowRecord, expectedVersion: number): Promise<boolean>;
  /** Existing (not deleted) classic shadows ordered by device id, after the cursor. */
  listShadows(options: { after?: string; limit: number }): Promise<Page<ShadowRecord>>;

  /** Registers a device; throws UpdraftError CONFLICT if the id is taken. */
  createDevice(record: DeviceRecord): Promise<void>;
  getDevice(deviceId: string): Promise<DeviceRecord | undefined>;
  /** Writes `record` if the stored row version equals `record.version - 1`; false on conflict. */
  updateDevice(record: DeviceRecord): Promise<boolean>;
  /** Registered devices ordered by id, after the cursor. */
  listDevices(options: { after?: string; limit: number }): Promise<Page<DeviceRecord>>;

  /** Adds an artifact; throws UpdraftError CONFLICT if name@version exists. */
  putArtifact(record: ArtifactRecord): Promise<void>;
  getArtifact(name: string, version: string): Promise<ArtifactRecord | undefined>;
  /** All artifacts, newest first. */
  listArtifacts(): Promise<ArtifactRecord[]>;

  /** Creates a job and its executions in one transaction; CONFLICT if the job id exists. */
  createJob(job: JobRecord, executions: ExecutionRecord[]): Promise<void>;
  getJob(jobId: string): Promise<JobRecord | undefined>;
  /** Sets a job's status. */
  setJobStatus(jobId: string, status: JobStatus): Promise<void>;
  getExecution(jobId: string, deviceId: string): Promise<ExecutionRecord | undefined>;
  /**
   * Writes `record` if the stored row version equals `record.version - 1`.
   * Resolves true after commit, false on conflict.
   */
  updateExecution(record: ExecutionRecord): Promise<boolean>;
  /** Executions of one job, or of one device (newest first), or both filters. */
  listExecutions(filter: { jobId?: string; deviceId?: string }): Promise<ExecutionRecord[]>;
}
