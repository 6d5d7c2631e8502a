/** The API's answers, as far as the pages read them (src/http/openapi.ts has the full shapes). */

export type ExecutionStatus = 'QUEUED' | 'IN_PROGRESS' | 'SUCCEEDED' | 'FAILED' | 'TIMED_OUT' | 'REJECTED' | 'CANCELED' | 'REMOVED';
export type JobStatus = 'SCHEDULED' | 'IN_PROGRESS' | 'PAUSED' | 'COMPLETED' | 'CANCELED' | 'ABORTED';

export const EXECUTION_STATES: ExecutionStatus[] = ['QUEUED', 'IN_PROGRESS', 'SUCCEEDED', 'FAILED', 'TIMED_OUT', 'REJECTED', 'CANCELED', 'REMOVED'];

export interface Page<T> {
  items: T[];
  next?: string;
}

export interface Software {
  name?: string;
  version?: string;
  status?: string;
  error?: string;
  jobId?: string;
  progress?: number;
}

export interface FleetOverview {
  devices: { registered: number; revoked: number; online: number; reporting: number };
  versions: { name: string | null; version: string | null; devices: number }[];
  jobs: Record<JobStatus, number>;
  /** One row per device whose latest outcome in recent jobs is a failure, naming that job. */
  failing: { deviceId: string; jobId: string; jobDescription?: string; artifact: string; status: ExecutionStatus; reason: string | null; failedAt?: number /* absent from an older server (before 2026-12-07) */; updatedAt: number }[];
  generatedAt: number;
}

export interface RecentEvent {
  seq: number;
  at: number;
  type: string;
  deviceId?: string;
  jobId?: string;
  status: string;
  previousStatus?: string;
  reason?: string;
}

export interface FoundDevice {
  deviceId: string;
  tags: string[];
  attributes: Record<string, string | number | boolean>;
  revoked: boolean;
  online: boolean;
  reported: Software | null;
  desired: Software | null;
}

export interface SearchPage extends Page<FoundDevice> {
  scanned: number;
}

/** `GET /api/v1/fleet/search/count`: how many devices a search matches; `exact` false: at least `total`. */
export interface SearchCount {
  total: number;
  exact: boolean;
  scanned: number;
}

export interface DeviceView {
  deviceId: string;
  device: { deviceId: string; attributes: Record<string, unknown>; tags: string[]; revoked: boolean; createdAt: number };
  online: boolean;
  shadow: { state: { desired?: Record<string, unknown>; reported?: Record<string, unknown>; delta?: Record<string, unknown> }; version: number; timestamp: number } | null;
  /** Its logs of failed attempts, one per job at most, without their lines, newest first (at most 100). */
  jobLogs: JobLogSummary[];
}

export interface Execution {
  jobId: string;
  deviceId: string;
  status: ExecutionStatus;
  /** `waiting`: the device's install gate put the install off (IN_PROGRESS, VERIFYING); `timedOut`, `retryNotSent`: a SUCCEEDED execution that ended in place of its retry. */
  details: { error?: string; agentStatus?: string; version?: string; progress?: number; waiting?: { reason: string; count: number; nextCheckInSeconds: number }; lateSuccess?: { version: string; at: number }; timedOut?: { at: number | null; error?: string }; retryNotSent?: { attempt: number; at: number } };
  wave?: number;
  attempt?: number;
  queuedAt: number;
  updatedAt: number;
  artifact?: string | null;
  /** `GET /api/v1/devices/<id>/history` only: the log its failed attempt left, if any (without its lines). */
  log?: { agentJobId: string; receivedAt: number; lineCount: number };
}

/** `GET /api/v1/jobs/<id>/logs`: a device's log of a failed attempt, without its lines. */
export interface JobLogSummary {
  jobId: string;
  deviceId: string;
  /** The job id as the device saw it (`<jobId>`, `<jobId>.<attempt>`, `<jobId>.rollback`, ...). */
  agentJobId: string;
  /** When the server received it, ms since the epoch. */
  receivedAt: number;
  /** Lines the device dropped between the first ones and the latest (a long job). */
  dropped: number;
  lineCount: number;
}

/** `GET /api/v1/jobs/<id>/logs/<deviceId>`: the log with its lines, oldest first. */
export interface JobLog extends Omit<JobLogSummary, 'lineCount'> {
  lines: string[];
}

export interface DeviceEvent {
  at: number;
  kind: string;
  jobId?: string;
  artifact?: string | null;
  status: string;
  reason?: string;
}

export interface Artifact {
  name: string;
  version: string;
  sha256: string;
  size: number;
  createdAt: number;
  signature?: string;
  signatureStatus?: 'valid' | 'invalid' | 'previous_key' | 'unsigned';
  /** What it may be installed on (device types, the versions it installs over); absent: anything. */
  compatibility?: { deviceTypes?: string[]; requires?: string };
}

export interface Job {
  jobId: string;
  artifactName: string;
  artifactVersion: string;
  status: JobStatus;
  createdAt: number;
  /** Its last change, ms since the epoch. */
  updatedAt?: number;
  description?: string;
  spec?: JobSpec;
  progress?: { wave?: number; total?: number; pause?: { reason: string; wave: number; message: string }; windowClosed?: { since: number; opensAt?: number }; storageHeldSince?: number; heldBy?: string; abortReason?: string; finishedAt?: number; startedAt?: number };
}

/** A job's rollout specification as `GET /api/v1/jobs/<id>` returns it (src/jobs/job-spec.ts: defaults filled in; absent for legacy jobs). */
export interface JobSpec {
  type?: 'snapshot' | 'continuous';
  targets?: { devices?: string[]; groups?: string[]; query?: string };
  plan?: {
    waves?: { count?: number; percent?: number; successThreshold?: number; requireApproval?: boolean }[];
    maxPerMinute?: number;
    maxInFlight?: number;
    rampUp?: { initialPerMinute: number; factor: number };
    startAt?: number;
    windows?: { start: string; minutes: number; days?: string[] }[];
    timeZone?: string;
  };
  abort?: { rules?: { type: string; thresholdPercent: number; minFinished?: number }[]; rollback?: boolean };
  timeouts?: { inProgressSeconds?: number; stepSeconds?: number };
  retries?: { limit: number; on?: string[] };
  allowDowngrade?: boolean;
}

export interface JobView {
  job: Job;
  counts: Record<ExecutionStatus, number>;
  waves: { wave: number; counts: Record<ExecutionStatus, number> }[];
  total: number;
  percentDone: number;
}

export interface JobTimeline {
  from: number;
  to: number;
  bucketMs: number;
  buckets: { at: number; succeeded: number; failed: number }[];
}

export interface Group {
  name: string;
  kind: 'static' | 'dynamic';
}

/** `GET /api/v1/keys`. */
export interface KeysView {
  signing: {
    keyId: string;
    algorithm: string;
    publicKey: string;
    /** The offline root's certificate of the key, when one is installed. */
    certificate: { rootKeyId: string; keyId: string; serial: number; expiresAt: number } | null;
  };
  /** `rotations`: the root's rotations from the first root on (none when it was never replaced). */
  root: { keyId: string; publicKey: string; rotations: { previousRootKeyId: string; rootKeyId: string }[] } | null;
  url: { kid: string; createdAt: string; active: boolean; activeFrom?: string }[];
  /** The device CA (PEM) and its subject as agents report an issuer (`reported.agent.certificateIssuer`). */
  ca: string;
  caSubject?: string;
  /** During a CA rollover, the CA it replaced (its device certificates still accepted) and its subject; null without one. */
  previousCa?: string | null;
  previousCaSubject?: string | null;
}

/** `GET /api/v1/metrics` (JSON), as far as the Security page reads it: expiries in seconds since the epoch (src/http/metrics.ts). */
export interface TlsMetrics {
  tls: {
    caExpiresAt: number;
    previousCaExpiresAt?: number | null;
    /** Devices this instance renewed from a previous-CA certificate onto the current CA since it started. */
    devicesMovedOffPreviousCa?: number;
    /** null: not served by this instance. */
    mqttCertificateExpiresAt: number | null;
    httpCertificateExpiresAt: number | null;
  };
}

/** `POST /api/v1/jobs/preview`: what a job would do, nothing created. */
export interface JobPreview {
  artifact: string;
  type: 'snapshot' | 'continuous';
  total: number;
  waves: { wave: number; devices: number; first: string[] }[];
  startsAt: number;
  minSendMinutes?: number;
  /** Of the first `scanned` targets, those the engine would skip by what they reported. */
  skipped?: { scanned: number; downgrade: number; incompatible: number; first: { deviceId: string; error: string }[] };
  /** With windows in each device's own time: targets whose agents would install at once (older, or never connected). */
  installAtOnce?: { count: number; first: string[] };
  /** What in the spec is likely a mistake, one sentence each. */
  warnings?: string[];
}
