/**
 * Stored rows to records, one set of rules for both stores: which columns are optional, and
 * which defaults read back as absent so that a record round-trips exactly. The drivers hand
 * columns back in their own types (SQLite: JSON as text, integers as numbers, booleans as
 * 0/1; PostgreSQL: JSON and arrays parsed, bigints as strings, booleans as booleans); a
 * store's `Codec` says how to read them.
 */
import type { Compatibility } from '../protocol/compatibility.ts';
import type { ArtifactRecord, DeviceCertificateRecord, DeviceRecord, ExecutionRecord, ExecutionStatus, FailureRecord, GroupRecord, OutcomeRecord, JobLogRecord, JobLogSummary, JobRecord, JobStatus, Page, ShadowRecord } from './state-store.ts';

/**
 * An execution whose job has a row, as an SQL condition on `executions` (one lookup in the
 * jobs' primary key per row read). A job created in pieces writes its executions first and
 * its row last (job-creation.ts). Until then, and after a crash cut the creation until the
 * store cleans it up, those executions are nobody's: this hides the executions of a job
 * creation still running or abandoned from the reads that show a device's jobs or pick its work.
 */
export const JOB_EXISTS = 'EXISTS (SELECT 1 FROM jobs j WHERE j.job_id = executions.job_id)';

/** How a driver returns JSON (`J`), integer (`N`) and boolean (`B`) columns. */
export interface Codec<J, N, B> {
  json(value: J): unknown;
  num(value: N): number;
  bool(value: B): boolean;
}

export interface ShadowRowOf<J, N, B> { device_id: string; name: string; version: N; deleted: B; state: J; metadata: J; timestamp: N }
export interface ArtifactRowOf<N> { name: string; version: string; sha256: string; size: N; created_at: N; signature: string | null; compatibility: string | null }

/** The artifacts.compatibility column of a record: JSON, or null when it constrains nothing. */
export function compatibilityColumn(a: ArtifactRecord): string | null {
  return a.compatibility && (a.compatibility.deviceTypes || a.compatibility.requires !== undefined) ? JSON.stringify(a.compatibility) : null;
}
export interface JobRowOf<J, N> {
  job_id: string;
  artifact_name: string;
  artifact_version: string;
  status: string;
  created_at: N;
  description: string | null;
  spec: J | null;
  progress: J | null;
  updated_at: N | null;
  version: N | null;
}
export interface ExecutionRowOf<J, N> {
  job_id: string;
  device_id: string;
  status: string;
  details: J;
  queued_at: N;
  updated_at: N;
  version: N;
  wave: number;
  attempt: number;
  dispatched_at: N | null;
  due_at: N | null;
}
/** A group's row without its members (rows of group_members; the old list column stays '[]'). */
export interface GroupRowOf<N> { name: string; kind: string; query: string | null; description: string | null; created_at: N; updated_at: N; version: N; size: N }
export interface DeviceRowOf<J, N, B> { device_id: string; attributes: J; tags: J; secret_hash: string | null; broker_hash: string | null; revoked: B; created_at: N; updated_at: N; version: N }

/** The row-to-record functions of a store whose driver reads columns as `c` says. */
export function rowMappers<J, N, B>(c: Codec<J, N, B>) {
  function toExecution(r: ExecutionRowOf<J, N>): ExecutionRecord {
    const e: ExecutionRecord = {
      jobId: r.job_id,
      deviceId: r.device_id,
      status: r.status as ExecutionStatus,
      details: c.json(r.details) as ExecutionRecord['details'],
      queuedAt: c.num(r.queued_at),
      updatedAt: c.num(r.updated_at),
      version: c.num(r.version),
    };
    // defaults read back as absent, so a record round-trips exactly
    if (r.wave !== 0) e.wave = r.wave;
    if (r.attempt !== 1) e.attempt = r.attempt;
    if (r.dispatched_at !== null) e.dispatchedAt = c.num(r.dispatched_at);
    if (r.due_at !== null) e.dueAt = c.num(r.due_at);
    return e;
  }
  return {
    toShadow(r: ShadowRowOf<J, N, B>): ShadowRecord {
      return {
        deviceId: r.device_id,
        name: r.name,
        version: c.num(r.version),
        deleted: c.bool(r.deleted),
        state: c.json(r.state) as ShadowRecord['state'],
        metadata: c.json(r.metadata) as ShadowRecord['metadata'],
        timestamp: c.num(r.timestamp),
      };
    },
    toArtifact(r: ArtifactRowOf<N>): ArtifactRecord {
      const a: ArtifactRecord = { name: r.name, version: r.version, sha256: r.sha256, size: c.num(r.size), createdAt: c.num(r.created_at) };
      if (r.signature !== null) a.signature = r.signature;
      if (r.compatibility !== null) a.compatibility = JSON.parse(r.compatibility) as Compatibility;
      return a;
    },
    toJob(r: JobRowOf<J, N>): JobRecord {
      const job: JobRecord = { jobId: r.job_id, artifactName: r.artifact_name, artifactVersion: r.artifact_version, status: r.status as JobStatus, createdAt: c.num(r.created_at) };
      if (r.description !== null) job.description = r.description;
      if (r.spec !== null) job.spec = c.json(r.spec) as JobRecord['spec'];
      if (r.progress !== null) job.progress = c.json(r.progress) as JobRecord['progress'];
      if (r.updated_at !== null) job.updatedAt = c.num(r.updated_at);
      if (r.version !== null) job.version = c.num(r.version);
      return job;
    },
    toExecution,
    /** A row of `listRecentFailures`: the execution and its `failed_at`, the time it is ordered by. */
    toFailure(r: ExecutionRowOf<J, N> & { failed_at: N }): FailureRecord {
      return { ...toExecution(r), failedAt: c.num(r.failed_at) };
    },
    /** A row of `listLatestOutcomesOfDevices`: the execution and, when its failure stands, its `failed_at`. */
    toOutcome(r: ExecutionRowOf<J, N> & { failed_at: N | null }): OutcomeRecord {
      const e: OutcomeRecord = toExecution(r);
      if (r.failed_at !== null) e.failedAt = c.num(r.failed_at);
      return e;
    },
    toGroup(r: GroupRowOf<N>): GroupRecord {
      const g: GroupRecord = { name: r.name, kind: r.kind as GroupRecord['kind'], devices: [], size: c.num(r.size), createdAt: c.num(r.created_at), updatedAt: c.num(r.updated_at), version: c.num(r.version) };
      if (r.query !== null) g.query = r.query;
      if (r.description !== null) g.description = r.description;
      return g;
    },
    toDevice(r: DeviceRowOf<J, N, B>): DeviceRecord {
      const d: DeviceRecord = {
        deviceId: r.device_id,
        attributes: c.json(r.attributes) as DeviceRecord['attributes'],
        tags: c.json(r.tags) as string[],
        revoked: c.bool(r.revoked),
        createdAt: c.num(r.created_at),
        updatedAt: c.num(r.updated_at),
        version: c.num(r.version),
      };
      if (r.secret_hash !== null) d.secretHash = r.secret_hash;
      if (r.broker_hash !== null) d.brokerHash = r.broker_hash;
      return d;
    },
  };
}

/** A job_logs row; `lines` is left out of lists. Integers are numbers in SQLite and may be strings in PostgreSQL. */
export interface JobLogRow {
  job_id: string;
  device_id: string;
  agent_job_id: string;
  received_at: number | string;
  dropped: number | string;
  line_count: number | string;
  lines?: string;
}

/** The columns of a job log, in the order the stores insert them (lines as a JSON array). */
export function jobLogParams(r: JobLogRecord): [string, string, string, number, number, number, string] {
  return [r.jobId, r.deviceId, r.agentJobId, r.receivedAt, r.dropped, r.lines.length, JSON.stringify(r.lines)];
}

/** A job log row with its lines. */
export function toJobLog(row: JobLogRow): JobLogRecord {
  return { ...toJobLogHead(row), lines: JSON.parse(row.lines ?? '[]') as string[] };
}

function toJobLogHead(row: JobLogRow): Omit<JobLogRecord, 'lines'> {
  return { jobId: row.job_id, deviceId: row.device_id, agentJobId: row.agent_job_id, receivedAt: Number(row.received_at), dropped: Number(row.dropped) };
}

/** A job log row without its lines. */
export function toJobLogSummary(r: JobLogRow): JobLogSummary {
  return { ...toJobLogHead(r), lineCount: Number(r.line_count) };
}

/** A page of job log summaries from `limit + 1` rows in device id order. */
export function jobLogPage(rows: JobLogRow[], limit: number): Page<JobLogSummary> {
  const items = rows.slice(0, limit).map(toJobLogSummary);
  return rows.length > limit ? { items, next: items[limit - 1]!.deviceId } : { items };
}

/** A row of device_certificates (SQLite gives numbers, PostgreSQL's BIGINT strings). */
export interface CertificateRow {
  serial: string;
  device_id: string;
  issuer: string;
  issuer_subject: string;
  issued_at: number | string;
  not_after: number | string;
  revoked_at: number | string | null;
}

/** The record of a device_certificates row. */
export function toCertificate(r: CertificateRow): DeviceCertificateRecord {
  return {
    serial: r.serial,
    deviceId: r.device_id,
    issuer: r.issuer,
    issuerSubject: r.issuer_subject,
    issuedAt: Number(r.issued_at),
    notAfter: Number(r.not_after),
    ...(r.revoked_at !== null ? { revokedAt: Number(r.revoked_at) } : {}),
  };
}
