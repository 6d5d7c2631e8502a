/**
 * The embedded StateStore: one SQLite file through better-sqlite3 (STYLE.md habit 2).
 *
 * Durability: WAL mode; every write promise resolves only after its transaction committed
 * AND the WAL was fsynced (docs/design.md §2: acknowledge only what is on disk). SQLite's own
 * per-commit fsync (synchronous=FULL) would block the event loop, better-sqlite3 being
 * synchronous, so commits run with synchronous=NORMAL and the store fdatasyncs the WAL itself
 * on libuv's thread pool before acknowledging (`afterDurable`).
 * Throughput: writes are *group committed*: queued, then executed in order inside ONE
 * transaction on the next `setImmediate`, and the batches committed while an fsync runs share
 * the next one. Because a batch runs statement by statement in arrival order, two writes to
 * the same key in one batch behave exactly as if they ran one after the other.
 *
 * Reads are synchronous better-sqlite3 reads on the same connection; a write's promise
 * resolves only after its commit, so a read issued after that sees it.
 */
import fs, { open, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import Database from 'better-sqlite3';
import { UpdraftError, asUpdraftError } from '../errors.ts';
import { silentLogger, type Logger } from '../util/logger.ts';
import { rememberLru } from '../util/lru.ts';
import { JOB_CHUNK, assertDistinctDevices, createJobInPieces, type JobCreationSteps } from './job-creation.ts';
import type {
  ArtifactRecord,
  CountPage,
  DeviceCertificateRecord,
  ExecutionCount,
  ExecutionRecord,
  ExecutionStatus,
  GroupRecord,
  IdempotencyClaim,
  JobDeletion,
  JobLogRecord,
  JobLogSummary,
  JobRecord,
  JobStatus,
  KeyHolder,
  Page,
  DeviceRecord,
  RevokedEntry,
  ShadowRecord,
  SoftwareCount,
  StateStore,
} from './state-store.ts';
import { sqliteInUse } from './sqlite-in-use.ts';
import { ACTIVE_JOB_SQL, ACTIVE_JOB_STATUSES, REVOKED_PAGE, IdempotencyKeyTaken, artifactCursor, checkFailureCursor, isStandingFailure, OUTCOME_STATUSES, checkMembersChange, olderSchemaRefused, countPage, idPage, pageOf, stateText, timeCursor, type FailureCursor, type FailureRecord, type GroupMembersChange, type OutcomeRecord } from './state-store.ts';
import { JOB_EXISTS, compatibilityColumn, jobLogPage, jobLogParams, rowMappers, toCertificate, toJobLog, toJobLogSummary, type ArtifactRowOf, type CertificateRow, type DeviceRowOf, type ExecutionRowOf, type GroupRowOf, type JobLogRow, type JobRowOf, type ShadowRowOf } from './rows.ts';

/** Dependencies and tuning of a SqliteStore. */
export interface SqliteStoreDeps {
  /** The database file; its parent directory is created on start. */
  path: string;
  logger?: Logger;
  /** Pending writes above which the queue is committed at once instead of on the next setImmediate. */
  maxPendingWrites?: number;
  /** How long a statement waits for a lock held by another connection, in milliseconds. */
  busyTimeoutMs?: number;
  /**
   * Remove job creations a crash interrupted when opening (default true): right for the
   * server, the file's one user. False for a command that reads the file beside a server
   * that may be running (`broker mosquitto-config --offline`): a creation in progress there
   * is not interrupted, and removing it would fail that job's creation.
   */
  recoverCreations?: boolean;
  /** False: a file holding an older schema is refused rather than migrated (`olderSchemaRefused`). */
  migrateExisting?: boolean;
  /**
   * True for a server: the file must not be open in another process (another server on the
   * same data directory, which would drive rollouts beside this one and remove its job
   * creations as interrupted); refused with CONFIG when it is (`sqliteInUse`).
   */
  soleUser?: boolean;
}

const DEFAULTS = { maxPendingWrites: 10_000, busyTimeoutMs: 5_000 };

/** The last group commit: how long it held the event loop, when it ended, how many writes it took. */
export interface CommitRecord {
  ms: number;
  end: number;
  writes: number;
}

/** A batch of this many writes or more means many writers at once (commitDelay). */
const LOADED_BATCH = 8;
/** Under such load, commits are at least this far apart (ms). */
const LOADED_INTERVAL_MS = 8;

/**
 * How long the next batch waits before it commits (ms; below 1 means at once, by
 * `setImmediate`). A commit holds the event loop while SQLite writes the batch's pages to
 * the WAL, so the store waits as long as the last commit took (at least half the time stays
 * for the work that fills the next batch).
 *
 * A batch of `LOADED_BATCH` writes or more means many writers at once (a fleet update: each
 * device's report, each execution): the next commit then waits until `LOADED_INTERVAL_MS`
 * after the last. Their writes share pages (indexes, execution counts, the job's rows), and a
 * page changed by several writes of one batch is written to the WAL once, not once per
 * commit; each commit also costs its own WAL fsync. In profiles of a 5,000-device update the
 * store's work per update fell from 600-665 µs to 441-466 µs (8 ms and 16 ms measured alike,
 * 4 ms in between), for at most 8 ms more per write under that load. A lone writer on a
 * quiet store (one write at a time, each awaited: a script, a job created in pieces) makes
 * batches of one and never waits for the interval. Never more than 20 ms.
 */
export function commitDelay(last: CommitRecord, now: number): number {
  const spacing = last.writes >= LOADED_BATCH ? Math.max(last.ms, LOADED_INTERVAL_MS) : last.ms;
  return Math.min(20, last.end + spacing - now);
}

/** Device records kept from reads (about 530 bytes each, measured: 10.7 MB at 20,000): a fleet update's devices in flight, and more. */
const DEVICE_READS_KEPT = 20_000;

/** A device record no reader can change: the store hands the same one to every reader. */
function frozenDevice(d: DeviceRecord): DeviceRecord {
  Object.freeze(d.attributes);
  Object.freeze(d.tags);
  return Object.freeze(d);
}

/** SQLite's page cache, KiB (per connection; the server opens one). */
const PAGE_CACHE_KIB = 65_536;

/**
 * Schema migrations, applied in order and tracked with `PRAGMA user_version` (= the number
 * applied). Append new ones; never edit a shipped one, existing databases already ran it.
 */
export const SQLITE_MIGRATIONS: readonly string[] = [
  `
  CREATE TABLE shadows (
    device_id TEXT NOT NULL,
    name      TEXT NOT NULL,
    version   INTEGER NOT NULL,
    deleted   INTEGER NOT NULL,
    state     TEXT NOT NULL,
    metadata  TEXT NOT NULL,
    timestamp INTEGER NOT NULL,
    PRIMARY KEY (device_id, name)
  ) WITHOUT ROWID;
  -- the device listing pages over existing classic shadows only
  CREATE INDEX shadows_classic ON shadows (device_id) WHERE name = '' AND deleted = 0;

  CREATE TABLE artifacts (
    name       TEXT NOT NULL,
    version    TEXT NOT NULL,
    sha256     TEXT NOT NULL,
    size       INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (name, version)
  );

  CREATE TABLE jobs (
    job_id           TEXT PRIMARY KEY NOT NULL,
    artifact_name    TEXT NOT NULL,
    artifact_version TEXT NOT NULL,
    status           TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    description      TEXT
  );

  CREATE TABLE executions (
    job_id     TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    status     TEXT NOT NULL,
    details    TEXT NOT NULL,
    queued_at  INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    version    INTEGER NOT NULL,
    PRIMARY KEY (job_id, device_id)
  ) WITHOUT ROWID;
  CREATE INDEX executions_device ON executions (device_id, queued_at);
  `,
  `
  CREATE TABLE devices (
    device_id   TEXT PRIMARY KEY NOT NULL,
    attributes  TEXT NOT NULL,
    tags        TEXT NOT NULL,
    secret_hash TEXT,
    revoked     INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    version     INTEGER NOT NULL
  ) WITHOUT ROWID;
  `,
  // rollouts (jobs/): job specs and progress, waves, attempts and timeouts of executions, groups
  `
  ALTER TABLE jobs ADD COLUMN spec TEXT;
  ALTER TABLE jobs ADD COLUMN progress TEXT;
  ALTER TABLE jobs ADD COLUMN updated_at INTEGER;
  ALTER TABLE jobs ADD COLUMN version INTEGER;
  CREATE INDEX jobs_created ON jobs (created_at DESC, job_id DESC);
  CREATE INDEX jobs_status ON jobs (status);

  ALTER TABLE executions ADD COLUMN wave INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE executions ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1;
  ALTER TABLE executions ADD COLUMN dispatched_at INTEGER;
  ALTER TABLE executions ADD COLUMN due_at INTEGER;
  -- the scheduler's two scans: work waiting for its wave, and deadlines
  CREATE INDEX executions_undispatched ON executions (job_id, wave, device_id) WHERE status = 'QUEUED' AND dispatched_at IS NULL;
  CREATE INDEX executions_due ON executions (due_at) WHERE due_at IS NOT NULL;
  CREATE INDEX executions_job_status ON executions (job_id, status, wave);

  CREATE TABLE device_groups (
    name        TEXT PRIMARY KEY NOT NULL,
    kind        TEXT NOT NULL,
    devices     TEXT NOT NULL,
    query       TEXT,
    description TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    version     INTEGER NOT NULL
  ) WITHOUT ROWID;
  `,
  `
  -- issue 5: the Ed25519 signature recorded when an artifact is added (<keyId>:<base64>)
  ALTER TABLE artifacts ADD COLUMN signature TEXT;
  `,
  `
  -- issue 6: the device secret in Mosquitto's password-file format, for an external broker
  ALTER TABLE devices ADD COLUMN broker_hash TEXT;
  `,
  `
  -- issue 7: the rollout engine counts a job's executions by wave and status, and how many
  -- were dispatched, at every early tick; with dispatched_at in the index the count reads
  -- the index alone (8x faster over 100,000 executions in SQLite)
  DROP INDEX executions_job_status;
  CREATE INDEX executions_job_status ON executions (job_id, status, wave, dispatched_at);
  `,
  `
  -- issue 7: a job's execution counts kept up to date by triggers, in the same transaction as
  -- the writes, so counting reads a handful of rows instead of the job's executions (100 ms
  -- over 1,000,000 executions, blocking the event loop at every early tick of the rollout
  -- engine; the ticks were spaced out accordingly, which slowed refilling the in-flight window)
  CREATE TABLE execution_counts (
    job_id     TEXT NOT NULL,
    wave       INTEGER NOT NULL,
    status     TEXT NOT NULL,
    dispatched INTEGER NOT NULL,
    count      INTEGER NOT NULL,
    PRIMARY KEY (job_id, wave, status, dispatched)
  ) WITHOUT ROWID;
  INSERT INTO execution_counts (job_id, wave, status, dispatched, count)
    SELECT job_id, wave, status, dispatched_at IS NOT NULL, COUNT(*) FROM executions GROUP BY 1, 2, 3, 4;
  -- no insert trigger: createJob and addExecutions count what they insert, one write per
  -- (wave, status). They insert inside a savepoint, where a statement that fires a trigger
  -- is journaled page by page: job creation took 3 times as long (measured)
  -- only when a counted column changes: a progress report (details) costs nothing here
  CREATE TRIGGER executions_count_update AFTER UPDATE OF job_id, wave, status, dispatched_at ON executions
    WHEN OLD.job_id IS NOT NEW.job_id OR OLD.wave IS NOT NEW.wave OR OLD.status IS NOT NEW.status OR (OLD.dispatched_at IS NULL) <> (NEW.dispatched_at IS NULL)
  BEGIN
    UPDATE execution_counts SET count = count - 1
      WHERE job_id = OLD.job_id AND wave = OLD.wave AND status = OLD.status AND dispatched = (OLD.dispatched_at IS NOT NULL);
    INSERT INTO execution_counts (job_id, wave, status, dispatched, count) VALUES (NEW.job_id, NEW.wave, NEW.status, NEW.dispatched_at IS NOT NULL, 1)
      ON CONFLICT (job_id, wave, status, dispatched) DO UPDATE SET count = count + 1;
  END;
  CREATE TRIGGER executions_count_delete AFTER DELETE ON executions BEGIN
    UPDATE execution_counts SET count = count - 1
      WHERE job_id = OLD.job_id AND wave = OLD.wave AND status = OLD.status AND dispatched = (OLD.dispatched_at IS NOT NULL);
  END;
  `,
  `
  -- issue 7: a job of many devices is created in pieces (store/job-creation.ts); a row here
  -- marks a creation in progress, so that what a crash left of it can be removed
  CREATE TABLE job_creations (
    job_id     TEXT PRIMARY KEY NOT NULL,
    touched_at INTEGER NOT NULL
  ) WITHOUT ROWID;
  `,
  `
  -- issue 7: the rollout engine looks up the unsent work of every device that comes online
  -- while a job is active; by this index alone, not the device's whole history of jobs
  CREATE INDEX executions_device_undispatched ON executions (device_id) WHERE status = 'QUEUED' AND dispatched_at IS NULL;
  `,
  `
  -- shadows become an ordinary (rowid) table. WITHOUT ROWID keeps each row inside the
  -- primary key's B-tree, which SQLite advises only for rows under about a twentieth of a
  -- page; a shadow is the document (up to 8 KiB by default) and its metadata, and above
  -- about 1 KB a row spills into overflow pages. Measured with 20,000 shadows, per size of
  -- state + metadata (read + conditional update / point read / listing / file):
  --   800 B: same speed (88 µs, 11 → 9 µs, 91 → 68 ms), same size
  --   1.5 KB: 179 → 107 µs, 41 → 14 µs, 555 → 121 ms, 90 → 40 MB
  --   6 KB: 262 → 173 µs, 64 → 23 µs, 840 → 245 ms, 168 → 118 MB
  -- SQLite's way to change a table's kind: build the new one, copy, drop, rename.
  CREATE TABLE shadows_rowid (
    device_id TEXT NOT NULL,
    name      TEXT NOT NULL,
    version   INTEGER NOT NULL,
    deleted   INTEGER NOT NULL,
    state     TEXT NOT NULL,
    metadata  TEXT NOT NULL,
    timestamp INTEGER NOT NULL,
    PRIMARY KEY (device_id, name)
  );
  INSERT INTO shadows_rowid (device_id, name, version, deleted, state, metadata, timestamp)
    SELECT device_id, name, version, deleted, state, metadata, timestamp FROM shadows ORDER BY device_id, name;
  DROP TABLE shadows;
  ALTER TABLE shadows_rowid RENAME TO shadows;
  CREATE INDEX shadows_classic ON shadows (device_id) WHERE name = '' AND deleted = 0;
  `,
  `
  -- the members of static groups, one row each, beside the group's list: a continuous job
  -- that targets a group asks whether each device coming online is a member, and finding it
  -- in a list of 100,000 (a 2 MB row read and parsed) took 11-15 ms per device (measured)
  CREATE TABLE group_members (
    name      TEXT NOT NULL,
    device_id TEXT NOT NULL,
    PRIMARY KEY (name, device_id)
  ) WITHOUT ROWID;
  INSERT INTO group_members (name, device_id)
    SELECT g.name, m.value FROM device_groups g, json_each(g.devices) m WHERE g.kind = 'static';
  `,
  `
  -- group_members is now the only list of a static group's members: a change writes the
  -- rows it names, where rewriting a list of 100,000 held the server for 200 ms (measured);
  -- the list column, filled into it by the migration above, stays '[]'. The members are
  -- counted in size, kept by each change: a count of 100,000 rows takes 3 ms, and a
  -- continuous job reads the group at every device that comes online
  ALTER TABLE device_groups ADD COLUMN size INTEGER NOT NULL DEFAULT 0;
  UPDATE device_groups SET devices = '[]', size = (SELECT COUNT(*) FROM group_members m WHERE m.name = device_groups.name);
  `,
  `
  -- what a build may be installed on (protocol/compatibility.ts), as JSON: {deviceTypes, requires}
  ALTER TABLE artifacts ADD COLUMN compatibility TEXT;
  `,
  `
  -- settings every instance on this store shares (the signing key's certificate)
  CREATE TABLE settings (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at INTEGER NOT NULL
  ) WITHOUT ROWID;
  `,
  `
  -- devices' logs of failed jobs (protocol/job-log.ts): one per job and device, at most
  -- jobs.maxLogsPerJob per job; lines as a JSON array
  CREATE TABLE job_logs (
    job_id       TEXT NOT NULL,
    device_id    TEXT NOT NULL,
    agent_job_id TEXT NOT NULL,
    received_at  INTEGER NOT NULL,
    dropped      INTEGER NOT NULL,
    line_count   INTEGER NOT NULL,
    lines        TEXT NOT NULL,
    PRIMARY KEY (job_id, device_id)
  ) WITHOUT ROWID;
  `,
  `
  -- a device's logs, for its history (GET /api/v1/devices/{id}/history)
  CREATE INDEX job_logs_device ON job_logs (device_id, received_at);
  `,
  `
  -- the failed executions of a job that may still be owed a retry (attempt below the job's
  -- limit), without reading those that reached it: on a big job with many terminal failures
  -- the engine read them all at a wave's end, before an abort and at a continuous job's start.
  -- Partial: only FAILED rows are in it, and only they are looked up by attempt
  CREATE INDEX executions_failed_attempt ON executions (job_id, attempt, device_id) WHERE status = 'FAILED';
  `,
  `
  -- a job's executions of one state in device order (listJobExecutions by status), without
  -- reading the job's others
  CREATE INDEX executions_job_status_device ON executions (job_id, status, device_id);
  `,
  `
  -- the failed executions of a job owed a retry, in device order, attempt and wave read from
  -- the index: a page reads the job's failures in order and stops at its end, where by
  -- (job_id, attempt, device_id) each page read and sorted every failure still owed one
  CREATE INDEX executions_failed_device ON executions (job_id, device_id, attempt, wave) WHERE status = 'FAILED';
  DROP INDEX executions_failed_attempt;
  `,
  `
  -- devices deleted, and when: their shadows' tombstones are removed after
  -- shadow.tombstoneRetentionHours (shadow/tombstone-retention.ts) by this list, without
  -- reading the shadows of the devices still registered. Filled with the devices deleted
  -- before it (tombstones of unregistered ids), at their last deletion (a shadow's timestamp
  -- is in seconds, deleted_at in ms)
  CREATE TABLE deleted_devices (
    device_id  TEXT PRIMARY KEY NOT NULL,
    deleted_at INTEGER NOT NULL
  ) WITHOUT ROWID;
  CREATE INDEX deleted_devices_at ON deleted_devices (deleted_at, device_id);
  INSERT INTO deleted_devices (device_id, deleted_at)
    SELECT device_id, MAX(timestamp) * 1000 FROM shadows s
    WHERE deleted = 1 AND NOT EXISTS (SELECT 1 FROM devices d WHERE d.device_id = s.device_id)
    GROUP BY device_id;
  `,
  `
  -- a client's Idempotency-Key (http/idempotency-key.ts) is held by the job its request
  -- created, from the write that makes the job exist, so a retry finds it and creates nothing;
  -- by a creation in pieces (job_creations) from its first piece, so a retry meanwhile is told
  -- to wait. Unique: two requests with one key never both create. A deleted job frees its key
  ALTER TABLE jobs ADD COLUMN idempotency_key TEXT;
  ALTER TABLE jobs ADD COLUMN request_fingerprint TEXT;
  CREATE UNIQUE INDEX jobs_idempotency_key ON jobs (idempotency_key) WHERE idempotency_key IS NOT NULL;
  ALTER TABLE job_creations ADD COLUMN idempotency_key TEXT;
  ALTER TABLE job_creations ADD COLUMN request_fingerprint TEXT;
  CREATE UNIQUE INDEX job_creations_idempotency_key ON job_creations (idempotency_key) WHERE idempotency_key IS NOT NULL;
  `,
  `
  -- the fill of deleted_devices as first written (until 2026-12-06) took its shadows'
  -- timestamps, in seconds, for times in ms: each such deletion read as of 1970 and its
  -- tombstones went at the first sweep, not 48 hours after. Seconds are below 1e11 (ms of 1973)
  UPDATE deleted_devices SET deleted_at = deleted_at * 1000 WHERE deleted_at < 100000000000;
  `,
  `
  -- every device certificate Updraft issues, one row each (2026-12-06): a deleted device's are
  -- revoked (revoked_at), and an external Mosquitto's crlfile lists them until they expire
  -- (pki/revocation-list.ts). issuer: the SHA-256 fingerprint of the issuing CA's certificate.
  -- Expired rows are pruned (pruneExpiredCertificates)
  CREATE TABLE device_certificates (
    serial         TEXT PRIMARY KEY NOT NULL,
    device_id      TEXT NOT NULL,
    issuer         TEXT NOT NULL,
    issuer_subject TEXT NOT NULL,
    issued_at      INTEGER NOT NULL,
    not_after      INTEGER NOT NULL,
    revoked_at     INTEGER
  ) WITHOUT ROWID;
  CREATE INDEX device_certificates_device ON device_certificates (device_id) WHERE revoked_at IS NULL;
  CREATE INDEX device_certificates_revoked ON device_certificates (not_after) WHERE revoked_at IS NOT NULL;
  CREATE INDEX device_certificates_expiry ON device_certificates (not_after);
  `,
  `
  -- the fleet's newest failures across jobs (listRecentFailures, the dashboard's overview),
  -- read newest first and stopping at the page's end (2026-12-07). Until then the overview read
  -- each recent job's first 20 failures by device id, and missed the newest on a big fleet.
  -- failed_at: when the execution became a failure that stands (isStandingFailure: FAILED,
  -- TIMED_OUT, REJECTED without a late success), written by the store from every record; NULL
  -- otherwise. Not updated_at: a late success (the execution stays TIMED_OUT) or a report about
  -- a failed execution would move it to the top. Partial: only the failures are in it.
  -- The failures already there: since their last change
  ALTER TABLE executions ADD COLUMN failed_at INTEGER;
  UPDATE executions SET failed_at = updated_at WHERE status IN ('FAILED', 'TIMED_OUT', 'REJECTED') AND json_extract(details, '$.lateSuccess') IS NULL;
  CREATE INDEX executions_failed_recent ON executions (failed_at, job_id, device_id) WHERE failed_at IS NOT NULL;
  `,
  `
  -- the CRL's change check (revocationStamp: the count, earliest not_after and latest
  -- revoked_at of the revoked certificates not expired) read from the index alone (2026-12-07):
  -- device_certificates_revoked held not_after (and the key) only, so each of its rows was
  -- looked up for revoked_at, on the server's thread: 41 ms at 100,000 revoked, ~0.4 s at
  -- 1,000,000. serial (the key, which every entry holds anyway) before revoked_at: the pages of
  -- listRevokedEntries go by (not_after, serial), in this index's order as in the one it replaces
  CREATE INDEX device_certificates_revoked_expiry ON device_certificates (not_after, serial, revoked_at) WHERE revoked_at IS NOT NULL;
  DROP INDEX device_certificates_revoked;
  `,
  `
  -- each device's newest executions with an outcome (listLatestOutcomesOfDevices, the
  -- overview's candidates) read from the outcomes alone (2026-12-07): on executions_device the
  -- executions without one (canceled, queued...) newer than the outcomes were each read and
  -- skipped, on the server's thread: 229 ms for 20 devices of 6,000 canceled executions each.
  -- The condition is OUTCOME_STATUSES written out, term for term as the query's (a partial
  -- index needs it there). job_id: the query's order (queued_at, job_id), no sort
  CREATE INDEX executions_device_outcomes ON executions (device_id, queued_at, job_id) WHERE status IN ('SUCCEEDED', 'FAILED', 'TIMED_OUT', 'REJECTED');
  `,
];

/** The JSON string at `path` of a shadow's state, else NULL (a number, an object, absent). */
function jsonText(path: string): string {
  return `CASE WHEN json_type(state, '${path}') = 'text' THEN json_extract(state, '${path}') END`;
}

function jobExists(jobId: string): UpdraftError {
  return new UpdraftError('CONFLICT', `Job ${jobId} already exists`);
}

/** The job, or (with `creations`) the creation in pieces, holding Idempotency-Key `key`. */
function keyHolder(s: Statements, key: string, creations: boolean): KeyHolder | undefined {
  const job = s.jobKeyHolder.get(key);
  if (job) return { key, fingerprint: job.request_fingerprint, jobId: job.job_id, inProgress: false };
  const creation = creations ? s.creationKeyHolder.get(key) : undefined;
  return creation ? { key, fingerprint: creation.request_fingerprint, jobId: creation.job_id, inProgress: true } : undefined;
}

/** IdempotencyKeyTaken when a job (or, with `creations`, a creation in pieces) holds `claim`'s key. */
function assertKeyFree(s: Statements, claim: IdempotencyClaim | undefined, creations: boolean): void {
  const holder = claim && keyHolder(s, claim.key, creations);
  if (holder) throw new IdempotencyKeyTaken(holder);
}

function insertJobRow(s: Statements, jobId: string, params: unknown[]): void {
  try {
    s.insertJob.run(...params);
  } catch (err) {
    if (isConstraint(err)) throw jobExists(jobId);
    throw err;
  }
}

// SQLite hands back JSON as text, integers as numbers and booleans as 0/1
type ShadowRow = ShadowRowOf<string, number, number>;
type ArtifactRow = ArtifactRowOf<number>;
type JobRow = JobRowOf<string, number>;
type GroupRow = GroupRowOf<number>;
type DeviceRow = DeviceRowOf<string, number, number>;
type ExecutionRow = ExecutionRowOf<string, number>;
const { toShadow, toArtifact, toJob, toExecution, toFailure, toOutcome, toGroup, toDevice } = rowMappers<string, number, number>({
  json: (v) => JSON.parse(v),
  num: (v) => v,
  bool: (v) => v !== 0,
});

type Stmt<R = unknown> = Database.Statement<unknown[], R>;

/** Every statement, prepared once in start(). */
interface Statements {
  getShadow: Stmt<ShadowRow>;
  insertShadow: Stmt;
  updateShadow: Stmt;
  countSoftware: Stmt<{ sw_name: string | null; sw_version: string | null; sw_status: string | null; devices: number; last: string }>;
  countDevices: Stmt<{ devices: number; revoked: number; last: string }>;
  listShadowsFirst: Stmt<ShadowRow>;
  listShadowsAfter: Stmt<ShadowRow>;
  insertArtifact: Stmt;
  getArtifact: Stmt<ArtifactRow>;
  activeJobsOfArtifact: Stmt<{ job_id: string }>;
  deleteArtifact: Stmt;
  countArtifactsWithBlob: Stmt<{ n: number }>;
  insertJob: Stmt;
  getJob: Stmt<JobRow>;
  getJobHead: Stmt<JobRow>;
  insertExecution: Stmt;
  getExecution: Stmt<ExecutionRow>;
  /** The UPDATEs of an execution (updateExecution), by the list of columns they set. */
  executionUpdates: Map<string, Stmt>;
  executionsByJob: Stmt<ExecutionRow>;
  executionsByDevice: Stmt<ExecutionRow>;
  deviceExecutionsPage: Stmt<ExecutionRow>;
  deviceExecutionsAfter: Stmt<ExecutionRow>;
  undispatchedOfDevice: Stmt<ExecutionRow>;
  executionsAll: Stmt<ExecutionRow>;
  insertDevice: Stmt;
  getDevice: Stmt<DeviceRow>;
  updateDevice: Stmt;
  deleteDevice: Stmt;
  recordCertificate: Stmt;
  revokeCertificates: Stmt;
  revokedCertificates: Stmt<CertificateRow>;
  revokedEntries: Stmt<{ serial: string; issuer: string; not_after: number; revoked_at: number }>;
  revocationStamp: Stmt<{ n: number; first: number | null; last: number | null }>;
  expiredCertificates: Stmt;
  recordDeletion: Stmt;
  deletedBefore: Stmt<{ device_id: string; deleted_at: number }>;
  removeDeletedTombstones: Stmt;
  forgetDeletion: Stmt;
  listShadowNames: Stmt<{ name: string }>;
  listTombstones: Stmt<{ name: string; version: number; timestamp: number }>;
  removeTombstone: Stmt;
  listDevicesFirst: Stmt<DeviceRow>;
  listDevicesAfter: Stmt<DeviceRow>;
  listRevokedDevices: Stmt<DeviceRow>;
  updateJob: Stmt;
  insertExecutionIfNew: Stmt;
  nextUndispatched: Stmt<ExecutionRow>;
  dueExecutions: Stmt<ExecutionRow>;
  countExecutions: Stmt<{ wave: number; status: string; count: number; dispatched: number }>;
  addToCount: Stmt;
  getCreation: Stmt<{ job_id: string }>;
  listCreations: Stmt<{ job_id: string }>;
  insertCreation: Stmt;
  claimCreationKey: Stmt;
  claimJobKey: Stmt;
  jobKeyHolder: Stmt<{ job_id: string; request_fingerprint: string }>;
  creationKeyHolder: Stmt<{ job_id: string; request_fingerprint: string }>;
  touchCreation: Stmt;
  deleteCreation: Stmt;
  deleteJobExecutions: Stmt;
  deleteJobExecutionsPiece: Stmt;
  deleteJobCounts: Stmt;
  deleteJob: Stmt;
  deleteJobLogsOf: Stmt;
  countUnfinished: Stmt<{ n: number }>;
  finishedBefore: Stmt<JobRow>;
  insertGroup: Stmt;
  getGroupHead: Stmt<GroupRow>;
  changeGroup: Stmt;
  deleteGroup: Stmt;
  listGroups: Stmt<GroupRow>;
  addGroupMembers: Stmt;
  removeGroupMembers: Stmt;
  deleteGroupMembers: Stmt;
  listAllGroupMembers: Stmt<{ device_id: string }>;
  listGroupMembers: Stmt<{ device_id: string }>;
  isGroupMember: Stmt<{ one: number }>;
  getSetting: Stmt<{ value: string }>;
  putSetting: Stmt;
  addSetting: Stmt;
  deleteSetting: Stmt;
  listSettings: Stmt<{ key: string; value: string }>;
  putJobLog: Stmt;
  getJobLog: Stmt<JobLogRow>;
  listJobLogs: Stmt<JobLogRow>;
  listDeviceJobLogs: Stmt<JobLogRow>;
}

/** One queued write: `run` executes inside the batch transaction; settled after the commit. */
interface PendingWrite {
  run: () => unknown;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
}

type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

/** The SQLite StateStore with group commit. */
export class SqliteStore implements StateStore {
  private readonly deps: SqliteStoreDeps;
  private readonly logger: Logger;
  private db: Database.Database | undefined;
  private stmts: Statements | undefined;
  private queue: PendingWrite[] = [];
  private scheduled: { cancel: () => void } | undefined;
  /** Devices read lately, as committed (getDevice); this process is the file's only user. */
  private readonly devices = new Map<string, DeviceRecord>();
  /** The last commit, for the adaptive batching window (commitDelay). */
  private lastCommit: CommitRecord = { ms: 0, end: 0, writes: 0 };
  /** The WAL file, fsynced before writes are acknowledged; undefined when not in WAL mode. */
  private walPath: string | undefined;
  private walHandle: FileHandle | undefined;
  /** Acknowledgements of committed batches waiting for the next fsync of the WAL. */
  private unsynced: (() => void)[] = [];
  private unsyncedFailures: ((err: unknown) => void)[] = [];
  private syncing: Promise<void> | undefined;
  private stopped = false;

  constructor(deps: SqliteStoreDeps) {
    this.deps = deps;
    this.logger = deps.logger ?? silentLogger;
  }

  /** Opens the file (creating its directory), sets WAL + synchronous=FULL and migrates the schema. */
  async start(): Promise<void> {
    if (this.db) return;
    const file = this.deps.path;
    let db: Database.Database | undefined;
    try {
      await fs.mkdir(path.dirname(file), { recursive: true });
      if (this.deps.soleUser && sqliteInUse(file)) {
        throw new UpdraftError('CONFIG', `State database ${file} is open in another process: another server on this data directory, or a command such as updraft backup; one server per data directory (stop the other, or give this one its own --data-dir)`);
      }
      // `timeout` is SQLite's busy_timeout: wait for another connection's lock instead of failing
      db = new Database(file, { timeout: this.deps.busyTimeoutMs ?? DEFAULTS.busyTimeoutMs });
      // a file of a newer Updraft is refused before anything is written to it (switching to WAL
      // rewrites the header): it goes back to the Updraft it came from as it was
      refuseNewer(db, file);
      const mode = db.pragma('journal_mode = WAL', { simple: true });
      // FULL: with WAL, NORMAL may lose the last commits on power loss, and we acknowledge on commit
      // WAL: commits skip SQLite's own fsync (NORMAL) and the store fsyncs the WAL itself, off
      // the event loop, before acknowledging (see afterDurable); otherwise FULL
      db.pragma(mode === 'wal' ? 'synchronous = NORMAL' : 'synchronous = FULL');
      // a 64 MiB page cache instead of SQLite's 2 MiB: a fleet update reads each device's
      // registration, shadow and execution, and with 15,000 devices the small cache sent most
      // of those reads to the kernel (12% of the server's CPU, measured)
      db.pragma(`cache_size = -${PAGE_CACHE_KIB}`);
      this.walPath = mode === 'wal' ? `${file}-wal` : undefined;
      if (mode !== 'wal') this.logger.warn('SQLite WAL mode unavailable; writes still durable but slower', { path: file, journalMode: mode });
      const from = migrate(db, file, this.deps.migrateExisting !== false);
      this.stmts = prepare(db);
      // a job whose creation a crash interrupted: this process is the file's only user
      for (const { job_id: jobId } of this.deps.recoverCreations === false ? [] : this.stmts.listCreations.all()) {
        const removed = db.transaction(() => this.removeCreation(this.stmts!, jobId))();
        this.logger.warn('removed a job whose creation was interrupted, or the rest of a deleted one', { jobId, executions: removed });
      }
      this.db = db;
      this.stopped = false;
      this.logger.debug('state store opened', { path: file, schemaVersion: SQLITE_MIGRATIONS.length, migratedFrom: from });
    } catch (err) {
      db?.close();
      if (err instanceof UpdraftError) throw err;
      throw new UpdraftError('CONFIG', `Cannot open the state database ${file}: ${openFailureReason(err)}`, { cause: err });
    }
  }

  /** Commits pending writes, then closes the file. Safe to call twice. */
  async stop(): Promise<void> {
    if (!this.db) return;
    this.flush();
    await this.syncing;
    await this.walHandle?.close();
    this.walHandle = undefined;
    this.db.close();
    this.db = undefined;
    this.stmts = undefined;
    this.devices.clear(); // the file may change before this store opens it again
    this.stopped = true;
  }

  async getShadow(deviceId: string, name: string): Promise<ShadowRecord | undefined> {
    const row = this.statements().getShadow.get(deviceId, name);
    return row && toShadow(row);
  }

  async putShadow(record: ShadowRecord, expectedVersion: number): Promise<boolean> {
    // serialised now: the caller may mutate `record` before the batch runs
    const { deviceId, name } = record;
    const values = [record.version, record.deleted ? 1 : 0, stateText(record.state), JSON.stringify(record.metadata), record.timestamp];
    return this.enqueue(() => {
      const s = this.statements();
      // a tombstone is a row too, so expectedVersion 0 over it conflicts and versions are never reused
      const result = expectedVersion === 0 ? s.insertShadow.run(deviceId, name, ...values) : s.updateShadow.run(...values, deviceId, name, expectedVersion);
      return result.changes === 1;
    });
  }

  async listShadows(options: { after?: string; limit: number }): Promise<Page<ShadowRecord>> {
    const { after, limit } = options;
    if (!Number.isInteger(limit) || limit < 1) throw new UpdraftError('BAD_REQUEST', `limit must be a positive integer, got ${limit}`);
    const s = this.statements();
    // one row more than asked tells whether another page exists
    const rows = after === undefined ? s.listShadowsFirst.all(limit + 1) : s.listShadowsAfter.all(after, limit + 1);
    const items = rows.slice(0, limit).map(toShadow);
    const last = items[items.length - 1];
    return rows.length > limit && last ? { items, next: last.deviceId } : { items };
  }

  async countReportedSoftware(options: { after?: string; limit: number }): Promise<CountPage<SoftwareCount[]>> {
    const { limit } = options;
    checkLimit(limit);
    const rows = this.statements().countSoftware.all(options.after ?? '', limit);
    const counts = rows.map((r) => ({ name: r.sw_name, version: r.sw_version, status: r.sw_status, devices: r.devices }));
    return countPage(counts, rows, limit);
  }

  async createDevice(record: DeviceRecord): Promise<void> {
    const params = deviceParams(record);
    await this.enqueue(() => {
      try {
        this.statements().insertDevice.run(...params);
      } catch (err) {
        if (isConstraint(err)) throw new UpdraftError('CONFLICT', `device ${record.deviceId} is already registered`);
        throw err;
      }
    });
  }

  /**
   * A registered device, from the recent reads when there (`devices`). A device is read at
   * each connect, each command sent and each download, a few seconds apart during an
   * update; each read of the row cost 25 µs of the server's thread on average, up to 12 ms
   * behind a WAL fsync (measured in a 5,000-device update). The record returned is frozen:
   * it is shared by every reader until the device changes.
   */
  async getDevice(deviceId: string): Promise<DeviceRecord | undefined> {
    const known = this.devices.get(deviceId);
    if (known) return known;
    const row = this.statements().getDevice.get(deviceId);
    if (!row) return undefined;
    const device = frozenDevice(toDevice(row));
    // the oldest read goes first: an update reads a device again within seconds
    rememberLru(this.devices, deviceId, device, DEVICE_READS_KEPT);
    return device;
  }

  async deleteDevice(deviceId: string, version: number, deletedAt = Date.now()): Promise<boolean> {
    return this.enqueue(() => {
      // forgotten inside the commit, as in updateDevice: the next read finds no row
      this.devices.delete(deviceId);
      const s = this.statements();
      if (s.deleteDevice.run(deviceId, version).changes !== 1) return false;
      s.recordDeletion.run(deviceId, deletedAt);
      // in the same transaction: a deleted device's certificates are never left unrevoked. All of
      // them, whatever their notAfter (as postgres-store.ts: a clock ahead left some unrevoked)
      s.revokeCertificates.run(deletedAt, deviceId);
      return true;
    });
  }

  async expireDeletedDevices(before: number, limit: number): Promise<{ devices: string[]; tombstones: number }> {
    checkLimit(limit);
    return this.enqueue(() => {
      const s = this.statements();
      const devices: string[] = [];
      let tombstones = 0;
      for (const d of s.deletedBefore.all(before, limit)) {
        // an id registered again keeps its shadows' versions: its list entry just goes
        tombstones += s.removeDeletedTombstones.run(d.device_id, d.device_id).changes;
        s.forgetDeletion.run(d.device_id, d.deleted_at);
        devices.push(d.device_id);
      }
      return { devices, tombstones };
    });
  }

  async listShadowNames(deviceId: string): Promise<string[]> {
    return this.statements().listShadowNames.all(deviceId).map((r) => r.name);
  }

  async listShadowTombstones(deviceId: string): Promise<{ name: string; version: number; timestamp: number }[]> {
    return this.statements().listTombstones.all(deviceId).map((r) => ({ name: r.name, version: r.version, timestamp: r.timestamp }));
  }

  async removeShadowTombstone(deviceId: string, name: string, version: number): Promise<boolean> {
    return this.enqueue(() => this.statements().removeTombstone.run(deviceId, name, version).changes === 1);
  }

  async updateDevice(record: DeviceRecord): Promise<boolean> {
    const d = record;
    const params = [JSON.stringify(d.attributes), JSON.stringify(d.tags), d.secretHash ?? null, d.brokerHash ?? null, d.revoked ? 1 : 0, d.updatedAt, d.version, d.deviceId, d.version - 1];
    return this.enqueue(() => {
      // forgotten inside the commit: the first read after it (a revocation's next CONNECT or
      // download) reads the row; a read before it was of the committed row, as without a cache
      this.devices.delete(d.deviceId);
      return this.statements().updateDevice.run(...params).changes === 1;
    });
  }

  async listDevices(options: { after?: string; limit: number; revokedOnly?: boolean }): Promise<Page<DeviceRecord>> {
    const { after, limit } = options;
    if (!Number.isInteger(limit) || limit < 1) throw new UpdraftError('BAD_REQUEST', `limit must be a positive integer, got ${limit}`);
    const s = this.statements();
    const rows = options.revokedOnly ? s.listRevokedDevices.all(after ?? '', limit + 1) : after === undefined ? s.listDevicesFirst.all(limit + 1) : s.listDevicesAfter.all(after, limit + 1);
    const items = rows.slice(0, limit).map(toDevice);
    const last = items[items.length - 1];
    return rows.length > limit && last ? { items, next: last.deviceId } : { items };
  }

  async countDevices(options: { after?: string; limit: number }): Promise<CountPage<{ registered: number; revoked: number }>> {
    const { limit } = options;
    checkLimit(limit);
    const rows = this.statements().countDevices.all(options.after ?? '', limit);
    const counts = { registered: rows[0]?.devices ?? 0, revoked: rows[0]?.revoked ?? 0 };
    return countPage(counts, rows, limit);
  }

  async recordDeviceCertificate(r: DeviceCertificateRecord): Promise<void> {
    await this.enqueue(() => {
      this.statements().recordCertificate.run(r.serial, r.deviceId, r.issuer, r.issuerSubject, r.issuedAt, r.notAfter, r.deviceId, Date.now());
    });
  }

  async listRevokedCertificates(nowMs: number): Promise<DeviceCertificateRecord[]> {
    return this.statements().revokedCertificates.all(nowMs).map(toCertificate);
  }

  async listRevokedEntries(nowMs: number): Promise<RevokedEntry[]> {
    // keyset pages on the partial index (not_after, then the key serial), the event loop let go
    // between pages: one .all() of 100,000 rows held it 0.5-1.2 s, of 1,000,000 7-8 s (QA 2026-12-07)
    const out: RevokedEntry[] = [];
    let cursor = { notAfter: nowMs, serial: '' };
    for (;;) {
      const rows = this.statements().revokedEntries.all(nowMs, cursor.notAfter, cursor.serial, REVOKED_PAGE);
      for (const r of rows) out.push({ serial: r.serial, issuer: r.issuer, notAfter: r.not_after, revokedAt: r.revoked_at });
      if (rows.length < REVOKED_PAGE) return out;
      const end = rows[rows.length - 1]!;
      cursor = { notAfter: end.not_after, serial: end.serial };
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  async revocationStamp(nowMs: number): Promise<string> {
    const r = this.statements().revocationStamp.get(nowMs)!;
    return `${r.n}:${r.first ?? ''}:${r.last ?? ''}`;
  }

  async pruneExpiredCertificates(before: number, limit: number): Promise<number> {
    checkLimit(limit);
    return this.enqueue(() => this.statements().expiredCertificates.run(before, limit).changes);
  }

  async putArtifact(record: ArtifactRecord): Promise<void> {
    const params = [record.name, record.version, record.sha256, record.size, record.createdAt, record.signature ?? null, compatibilityColumn(record)];
    await this.enqueue(() => {
      try {
        this.statements().insertArtifact.run(...params);
      } catch (err) {
        if (isConstraint(err)) throw new UpdraftError('CONFLICT', `Artifact ${record.name}@${record.version} already exists; publish a new version instead`);
        throw err;
      }
    });
  }

  async getArtifact(name: string, version: string): Promise<ArtifactRecord | undefined> {
    const row = this.statements().getArtifact.get(name, version);
    return row && toArtifact(row);
  }

  async listArtifacts(options: { name?: string; after?: string; limit: number }): Promise<Page<ArtifactRecord>> {
    const { limit, name, after } = options;
    checkLimit(limit);
    const where: string[] = [];
    const args: unknown[] = [];
    if (name !== undefined) {
      where.push('name = ?');
      args.push(name);
    }
    if (after !== undefined) {
      const c = artifactCursor(after);
      where.push('(created_at < ? OR (created_at = ? AND rowid < ?))');
      args.push(c.at, c.at, c.seq);
    }
    // rowid breaks ties between artifacts created in the same millisecond: later insert first
    const sql = `SELECT rowid AS seq, ${ARTIFACT_COLS} FROM artifacts ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at DESC, rowid DESC LIMIT ?`;
    const rows = this.database().prepare<unknown[], ArtifactRow & { seq: number }>(sql).all(...args, limit + 1);
    const page = pageOf(rows, limit, (r) => `${r.created_at}:${r.seq}`);
    return { ...page, items: page.items.map(toArtifact) };
  }

  async deleteArtifact(name: string, version: string): Promise<{ deleted?: ArtifactRecord; activeJobs: string[] }> {
    return this.enqueueAtomic((s) => {
      const activeJobs = s.activeJobsOfArtifact.all(name, version).map((r) => r.job_id);
      if (activeJobs.length > 0) return { activeJobs };
      const row = s.getArtifact.get(name, version);
      if (!row) return { activeJobs };
      s.deleteArtifact.run(name, version);
      return { deleted: toArtifact(row), activeJobs };
    });
  }

  async countArtifactsWithBlob(sha256: string): Promise<number> {
    return this.statements().countArtifactsWithBlob.get(sha256)?.n ?? 0;
  }

  async createJob(job: JobRecord, executions: ExecutionRecord[], claim?: IdempotencyClaim): Promise<void> {
    if (executions.length > JOB_CHUNK) return createJobInPieces(this.jobCreation, job, executions, claim);
    assertDistinctDevices(job.jobId, executions);
    const jobParams = jobRowParams(job);
    await this.enqueue(() => {
      const s = this.statements();
      if (s.getCreation.get(job.jobId)) throw jobExists(job.jobId);
      assertKeyFree(s, claim, true);
      // a savepoint (nested transaction) so a failure undoes this job only, not the whole batch
      this.database().transaction(() => {
        insertJobRow(s, job.jobId, jobParams);
        if (claim) s.claimJobKey.run(claim.key, claim.fingerprint, job.jobId);
        this.insertExecutions(s, executions);
      })();
    });
  }

  async findIdempotencyKey(key: string): Promise<KeyHolder | undefined> {
    return keyHolder(this.statements(), key, true);
  }

  /** The steps of a job created in pieces (job-creation.ts), each one write of the group commit. */
  private readonly jobCreation: JobCreationSteps = {
    begin: (jobId, claim) =>
      this.enqueueAtomic((s) => {
        if (s.getJob.get(jobId) || s.getCreation.get(jobId)) throw jobExists(jobId);
        assertKeyFree(s, claim, true);
        s.insertCreation.run(jobId, Date.now());
        if (claim) s.claimCreationKey.run(claim.key, claim.fingerprint, jobId);
      }),
    insert: (jobId, executions) =>
      this.enqueueAtomic((s) => {
        this.insertExecutions(s, executions);
        s.touchCreation.run(Date.now(), jobId);
      }),
    finish: (job, claim) => {
      const jobParams = jobRowParams(job);
      return this.enqueueAtomic((s) => {
        // its own marker holds the key: only a job may hold it besides
        assertKeyFree(s, claim, false);
        if (s.deleteCreation.run(job.jobId).changes !== 1) throw new UpdraftError('INTERNAL', `The creation of job ${job.jobId} was abandoned meanwhile`);
        insertJobRow(s, job.jobId, jobParams);
        if (claim) s.claimJobKey.run(claim.key, claim.fingerprint, job.jobId);
      });
    },
    abandon: async (jobId) => {
      // in pieces, as it was written: deleting a million executions in one write would hold
      // the event loop for seconds (the marker goes last, so a crash meanwhile is cleaned up at start)
      while ((await this.enqueue(() => this.statements().deleteJobExecutionsPiece.run(jobId, jobId, JOB_CHUNK).changes)) > 0);
      await this.enqueue(() => {
        this.removeCreation(this.statements(), jobId);
      });
    },
  };

  /** Inserts executions of a new job and counts them; BAD_REQUEST when a device is in the job already (call in a savepoint). */
  private insertExecutions(s: Statements, executions: readonly ExecutionRecord[]): void {
    for (const e of executions) {
      try {
        s.insertExecution.run(...executionParams(e));
      } catch (err) {
        if (isConstraint(err)) throw new UpdraftError('BAD_REQUEST', `device ${e.deviceId} is listed twice in job ${e.jobId}`);
        throw err;
      }
    }
    this.countInserted(executions);
  }

  /**
   * Removes what an unfinished creation wrote; returns how many executions. One statement,
   * however many: at start, before anything else runs, and at the end of `abandon`, which
   * removes the executions in pieces first.
   */
  private removeCreation(s: Statements, jobId: string): number {
    const removed = s.deleteJobExecutions.run(jobId).changes;
    s.deleteJobCounts.run(jobId);
    s.deleteCreation.run(jobId);
    return removed;
  }

  async getJob(jobId: string, options: { omitSpec?: boolean } = {}): Promise<JobRecord | undefined> {
    const s = this.statements();
    const row = (options.omitSpec ? s.getJobHead : s.getJob).get(jobId);
    return row && toJob(row);
  }

  async getExecution(jobId: string, deviceId: string): Promise<ExecutionRecord | undefined> {
    const row = this.statements().getExecution.get(jobId, deviceId);
    return row && toExecution(row);
  }

  // point reads in the process: no round trip to save, the same statements as getJob and getExecution
  async getJobs(jobIds: readonly string[], options: { omitSpec?: boolean } = {}): Promise<Map<string, JobRecord>> {
    const s = this.statements();
    const read = options.omitSpec ? s.getJobHead : s.getJob;
    const jobs = new Map<string, JobRecord>();
    for (const jobId of new Set(jobIds)) {
      const row = read.get(jobId);
      if (row) jobs.set(jobId, toJob(row));
    }
    return jobs;
  }

  async getExecutions(keys: readonly { jobId: string; deviceId: string }[]): Promise<(ExecutionRecord | undefined)[]> {
    const read = this.statements().getExecution;
    return keys.map((k) => {
      const row = read.get(k.jobId, k.deviceId);
      return row && toExecution(row);
    });
  }

  async updateExecution(record: ExecutionRecord, changed?: ReadonlySet<keyof ExecutionRecord>): Promise<boolean> {
    const r = record;
    // only the columns that changed, when the caller says which: SQLite rewrites the entries
    // of an index whose columns are SET, changed or not, and an execution has five (a fleet
    // update's three writes per device cost 60 µs with every column, 45 µs with those that
    // changed, in a scratch benchmark)
    const columns = changed && !changed.has('jobId') && !changed.has('deviceId') ? EXECUTION_UPDATE_COLUMNS.filter((c) => c.always || (c.from ?? [c.field]).some((f) => changed.has(f))) : EXECUTION_UPDATE_COLUMNS;
    const params = [...columns.flatMap((c) => (c.set ? (c.value(r) as unknown[]) : [c.value(r)])), r.jobId, r.deviceId, r.version - 1];
    return this.enqueue(() => this.executionUpdate(columns).run(...params).changes === 1);
  }

  /** The UPDATE of these execution columns, prepared once per set of columns. */
  private executionUpdate(columns: readonly ExecutionColumn[]): Stmt {
    const s = this.statements();
    const which = columns.map((c) => c.column).join(', ');
    let stmt = s.executionUpdates.get(which);
    if (!stmt) {
      stmt = this.database().prepare(`UPDATE executions SET ${columns.map((c) => c.set ?? `${c.column} = ?`).join(', ')} WHERE job_id = ? AND device_id = ? AND version = ?`);
      s.executionUpdates.set(which, stmt);
    }
    return stmt;
  }

  async listExecutions(filter: { jobId?: string; deviceId?: string }): Promise<ExecutionRecord[]> {
    const s = this.statements();
    const { jobId, deviceId } = filter;
    if (jobId !== undefined && deviceId !== undefined) {
      const row = s.getExecution.get(jobId, deviceId);
      return row ? [toExecution(row)] : [];
    }
    if (jobId !== undefined) return s.executionsByJob.all(jobId).map(toExecution);
    if (deviceId !== undefined) return s.executionsByDevice.all(deviceId).map(toExecution);
    return s.executionsAll.all().map(toExecution);
  }

  async withArtifactLock<T>(_name: string, _version: string, _kind: 'create' | 'delete', fn: () => Promise<T>): Promise<{ ran: true; value: T }> {
    // one process owns the file: ArtifactService's own guard is the whole lock
    return { ran: true, value: await fn() };
  }

  async listDeviceExecutions(deviceId: string, options: { after?: string; limit: number }): Promise<Page<ExecutionRecord>> {
    const { limit, after } = options;
    checkLimit(limit);
    const s = this.statements();
    let rows: ExecutionRow[];
    if (after === undefined) rows = s.deviceExecutionsPage.all(deviceId, limit + 1);
    else {
      const c = timeCursor(after);
      rows = s.deviceExecutionsAfter.all(deviceId, c.at, c.at, c.jobId, limit + 1);
    }
    return pageOf(rows.map(toExecution), limit, (e) => `${e.queuedAt}:${e.jobId}`);
  }

  async updateJob(job: JobRecord & { version: number }): Promise<boolean> {
    const params = [job.status, job.description ?? null, job.progress ? JSON.stringify(job.progress) : null, job.updatedAt ?? null, job.version, job.jobId, job.version - 1];
    return this.enqueue(() => this.statements().updateJob.run(...params).changes === 1);
  }

  async listJobs(options: { status?: JobStatus[]; after?: string; limit: number; omitSpec?: boolean }): Promise<Page<JobRecord>> {
    const { limit, status, after } = options;
    checkLimit(limit);
    const where: string[] = [];
    const args: unknown[] = [];
    if (status && status.length > 0) {
      where.push(`status IN (${status.map(() => '?').join(', ')})`);
      args.push(...status);
    }
    if (after !== undefined) {
      const c = timeCursor(after);
      where.push('(created_at < ? OR (created_at = ? AND job_id < ?))');
      args.push(c.at, c.at, c.jobId);
    }
    const sql = `SELECT ${options.omitSpec ? JOB_COLS_NO_SPEC : JOB_COLS} FROM jobs ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at DESC, job_id DESC LIMIT ?`;
    const rows = this.database().prepare<unknown[], JobRow>(sql).all(...args, limit + 1);
    return pageOf(rows.map(toJob), limit, (j) => `${j.createdAt}:${j.jobId}`);
  }

  async addExecutions(executions: ExecutionRecord[]): Promise<number> {
    const rows = executions.map(executionParams);
    if (rows.length === 0) return 0;
    return this.enqueue(() => {
      const s = this.statements();
      let added = 0;
      this.database().transaction(() => {
        // only to jobs that exist, read in the write (one writer: a deletion is before or after it)
        const exists = new Map<string, boolean>();
        const live = (jobId: string) => {
          let known = exists.get(jobId);
          if (known === undefined) exists.set(jobId, (known = s.getJobHead.get(jobId) !== undefined));
          return known;
        };
        const inserted: ExecutionRecord[] = [];
        rows.forEach((row, i) => {
          const e = executions[i]!;
          if (live(e.jobId) && s.insertExecutionIfNew.run(...row).changes === 1) inserted.push(e);
        });
        this.countInserted(inserted);
        added = inserted.length;
      })();
      return added;
    });
  }

  /** Adds executions just inserted to execution_counts (which triggers keep for updates and deletes). */
  private countInserted(executions: readonly ExecutionRecord[]): void {
    const buckets = new Map<string, { jobId: string; wave: number; status: string; dispatched: number; count: number }>();
    for (const e of executions) {
      const wave = e.wave ?? 0;
      const dispatched = e.dispatchedAt !== undefined ? 1 : 0;
      const key = `${e.jobId}\u0000${wave}\u0000${e.status}\u0000${dispatched}`;
      const b = buckets.get(key);
      if (b) b.count++;
      else buckets.set(key, { jobId: e.jobId, wave, status: e.status, dispatched, count: 1 });
    }
    const add = this.statements().addToCount;
    for (const b of buckets.values()) add.run(b.jobId, b.wave, b.status, b.dispatched, b.count);
  }

  async listJobExecutions(jobId: string, options: { status?: ExecutionStatus[]; after?: string; limit: number }): Promise<Page<ExecutionRecord>> {
    const { limit } = options;
    checkLimit(limit);
    const { sql, args } = jobExecutionsQuery(jobId, options);
    const rows = this.database().prepare<unknown[], ExecutionRow>(sql).all(...args);
    const items = rows.slice(0, limit).map(toExecution);
    const last = items[items.length - 1];
    return rows.length > limit && last ? { items, next: last.deviceId } : { items };
  }

  async listFailedBelowAttempt(jobId: string, options: { attemptBelow: number; maxWave: number; after?: string; limit: number }): Promise<Page<ExecutionRecord>> {
    const { attemptBelow, maxWave, after, limit } = options;
    checkLimit(limit);
    const sql = failedBelowAttemptSql(after !== undefined);
    const args: unknown[] = [jobId, attemptBelow, maxWave, ...(after !== undefined ? [after] : []), limit + 1];
    const rows = this.database().prepare<unknown[], ExecutionRow>(sql).all(...args);
    const items = rows.slice(0, limit).map(toExecution);
    const last = items[items.length - 1];
    return rows.length > limit && last ? { items, next: last.deviceId } : { items };
  }

  async nextUndispatched(jobId: string, maxWave: number, limit: number): Promise<ExecutionRecord[]> {
    checkLimit(limit);
    return this.statements().nextUndispatched.all(jobId, maxWave, limit).map(toExecution);
  }

  async listUndispatchedOfDevice(deviceId: string): Promise<ExecutionRecord[]> {
    return this.statements().undispatchedOfDevice.all(deviceId).map(toExecution);
  }

  async listDueExecutions(now: number, limit: number): Promise<ExecutionRecord[]> {
    checkLimit(limit);
    return this.statements().dueExecutions.all(now, limit).map(toExecution);
  }

  async listRecentFailures(limit: number, after?: FailureCursor): Promise<FailureRecord[]> {
    checkLimit(limit);
    if (after) checkFailureCursor(after);
    const args = after ? [after.failedAt, after.jobId, after.deviceId, limit] : [limit];
    return this.database().prepare<unknown[], ExecutionRow & { failed_at: number }>(recentFailuresSql(after !== undefined)).all(...args).map(toFailure);
  }

  // point reads in the process (executions_device_outcomes, backwards: the outcomes only)
  async listLatestOutcomesOfDevices(deviceIds: readonly string[], perDevice: number): Promise<Map<string, OutcomeRecord[]>> {
    checkLimit(perDevice);
    const read = this.database().prepare<unknown[], ExecutionRow & { failed_at: number | null }>(LATEST_OUTCOMES_SQL);
    const out = new Map<string, OutcomeRecord[]>();
    for (const deviceId of new Set(deviceIds)) {
      const rows = read.all(deviceId, perDevice);
      if (rows.length > 0) out.set(deviceId, rows.map(toOutcome));
    }
    return out;
  }

  async deleteJob(jobId: string): Promise<JobDeletion> {
    const outcome = await this.enqueueAtomic((s): JobDeletion => {
      const row = s.getJobHead.get(jobId);
      if (!row) return { deleted: false };
      const job = toJob(row);
      if ((ACTIVE_JOB_STATUSES as readonly string[]).includes(job.status)) return { job, deleted: false };
      const unfinished = s.countUnfinished.get(jobId, jobId)?.n ?? 0;
      if (unfinished > 0) return { job, deleted: false, unfinished };
      // the job is gone for every reader from here; the marker says its executions are to go
      s.deleteJob.run(jobId);
      s.deleteJobLogsOf.run(jobId);
      s.insertCreation.run(jobId, Date.now());
      return { job, deleted: true };
    });
    if (outcome.deleted) {
      // in pieces, as an abandoned creation's; what a failure or a crash leaves, the marker's clean-up at start removes
      await this.jobCreation.abandon(jobId).catch((err: unknown) => this.logger.warn('job deleted; its executions are removed at the next start', { jobId, error: asUpdraftError(err).message }));
    }
    return outcome;
  }

  async listFinishedBefore(before: number, limit: number): Promise<JobRecord[]> {
    checkLimit(limit);
    return this.statements().finishedBefore.all(before, limit).map(toJob);
  }

  async countExecutions(jobId: string): Promise<ExecutionCount[]> {
    return this.statements()
      .countExecutions.all(jobId)
      .map((r) => ({ wave: r.wave, status: r.status as ExecutionStatus, count: r.count, dispatched: r.dispatched }));
  }

  async createGroup(group: GroupRecord): Promise<void> {
    const devices = JSON.stringify(group.devices);
    // the members are rows of group_members; the list column stays '[]' (SQLITE_MIGRATIONS)
    const params = [group.name, group.kind, '[]', group.query ?? null, group.description ?? null, group.createdAt, group.updatedAt, group.version, new Set(group.devices).size];
    // the group and its member rows together
    await this.enqueueAtomic((s) => {
      try {
        s.insertGroup.run(...params);
      } catch (err) {
        if (isConstraint(err)) throw new UpdraftError('CONFLICT', `group ${group.name} already exists`);
        throw err;
      }
      s.addGroupMembers.run(group.name, devices);
    });
  }

  async getGroup(name: string, options: { omitDevices?: boolean } = {}): Promise<GroupRecord | undefined> {
    const s = this.statements();
    const row = s.getGroupHead.get(name);
    if (!row || options.omitDevices) return row && toGroup(row);
    return { ...toGroup(row), devices: s.listAllGroupMembers.all(name).map((m) => m.device_id) };
  }

  async changeGroupMembers(name: string, change: GroupMembersChange): Promise<GroupRecord> {
    const add = JSON.stringify(change.add);
    const remove = JSON.stringify(change.remove);
    // one savepoint: a change that would pass the bound is undone whole
    return this.enqueueAtomic((s) => {
      const head = s.getGroupHead.get(name);
      checkMembersChange(name, head?.kind, head?.size, change);
      const removed = s.removeGroupMembers.run(name, remove).changes;
      const added = s.addGroupMembers.run(name, add).changes;
      s.changeGroup.run(change.updatedAt, added - removed, name);
      const changed = toGroup(s.getGroupHead.get(name)!);
      checkMembersChange(name, changed.kind, changed.size, change);
      return changed;
    });
  }

  async listGroupMembers(name: string, options: { after?: string; limit: number }): Promise<Page<string>> {
    const rows = this.statements().listGroupMembers.all(name, options.after ?? '', options.limit + 1);
    return idPage(rows.map((r) => r.device_id), options.limit);
  }

  async deleteGroup(name: string): Promise<boolean> {
    return this.enqueueAtomic((s) => {
      s.deleteGroupMembers.run(name);
      return s.deleteGroup.run(name).changes === 1;
    });
  }

  async isGroupMember(name: string, deviceId: string): Promise<boolean> {
    return this.statements().isGroupMember.get(name, deviceId) !== undefined;
  }

  async listGroups(): Promise<GroupRecord[]> {
    return this.statements().listGroups.all().map(toGroup);
  }

  async getSetting(key: string): Promise<string | undefined> {
    return this.statements().getSetting.get(key)?.value;
  }

  async putSetting(key: string, value: string): Promise<void> {
    await this.enqueue(() => {
      this.statements().putSetting.run(key, value, Date.now());
    });
  }

  async addSetting(key: string, value: string): Promise<boolean> {
    return this.enqueue(() => this.statements().addSetting.run(key, value, Date.now()).changes === 1);
  }

  async deleteSetting(key: string): Promise<boolean> {
    return this.enqueue(() => this.statements().deleteSetting.run(key).changes === 1);
  }

  async listSettings(prefix: string): Promise<{ key: string; value: string }[]> {
    return this.statements().listSettings.all(prefix, prefix);
  }

  async putJobLog(record: JobLogRecord, maxPerJob: number): Promise<boolean> {
    const params = jobLogParams(record);
    return this.enqueue(() => this.statements().putJobLog.run(...params, record.jobId, record.deviceId, record.jobId, maxPerJob).changes === 1);
  }

  async getJobLog(jobId: string, deviceId: string): Promise<JobLogRecord | undefined> {
    const row = this.statements().getJobLog.get(jobId, deviceId);
    return row && toJobLog(row);
  }

  async listJobLogs(jobId: string, options: { after?: string; limit: number }): Promise<Page<JobLogSummary>> {
    return jobLogPage(this.statements().listJobLogs.all(jobId, options.after ?? '', options.limit + 1), options.limit);
  }

  async listDeviceJobLogs(deviceId: string, limit: number, jobIds?: readonly string[]): Promise<JobLogSummary[]> {
    if (jobIds === undefined) return this.statements().listDeviceJobLogs.all(deviceId, limit).map(toJobLogSummary);
    if (jobIds.length === 0) return [];
    const sql = `SELECT job_id, device_id, agent_job_id, received_at, dropped, line_count FROM job_logs WHERE device_id = ? AND job_id IN (${jobIds.map(() => '?').join(', ')}) ORDER BY received_at DESC LIMIT ?`;
    return this.database().prepare<unknown[], JobLogRow>(sql).all(deviceId, ...jobIds, limit).map(toJobLogSummary);
  }

  /**
   * Queues a write of several statements that go in together or not at all: a savepoint
   * (nested transaction) of its own, so a failure undoes this write only, not its batch.
   */
  private enqueueAtomic<T>(run: (s: Statements) => T): Promise<T> {
    return this.enqueue(() => this.database().transaction(() => run(this.statements()))());
  }

  /** Queues a write for the next group commit; resolves with `run`'s result after the commit. */
  private enqueue<T>(run: () => T): Promise<T> {
    if (!this.db) return Promise.reject(this.notOpen());
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ run, resolve: resolve as (value: unknown) => void, reject });
      if (this.queue.length >= (this.deps.maxPendingWrites ?? DEFAULTS.maxPendingWrites)) {
        // a bound on memory and on latency: a flood commits now instead of growing the queue
        this.flush();
      } else {
        this.scheduled ??= this.scheduleFlush();
      }
    });
  }

  /** When the next batch commits (commitDelay): at once when idle, later under load. */
  private scheduleFlush(): { cancel: () => void } {
    const wait = commitDelay(this.lastCommit, performance.now());
    if (wait < 1) {
      const immediate = setImmediate(() => this.flush());
      return { cancel: () => clearImmediate(immediate) };
    }
    const timer = setTimeout(() => this.flush(), wait);
    return { cancel: () => clearTimeout(timer) };
  }

  /** Runs every queued write in one transaction, then settles each caller with its own outcome. */
  private flush(): void {
    this.scheduled?.cancel();
    this.scheduled = undefined;
    const batch = this.queue;
    this.queue = [];
    if (batch.length === 0) return;
    const db = this.database();
    const outcomes: Outcome[] = [];
    const started = performance.now();
    try {
      // IMMEDIATE takes the write lock up front, so no statement inside meets SQLITE_BUSY
      db.transaction(() => {
        for (const write of batch) {
          try {
            outcomes.push({ ok: true, value: write.run() });
          } catch (err) {
            // disk full, I/O error...: SQLite already rolled the whole transaction back
            if (!db.inTransaction) throw err;
            // anything else failed as one statement (or one savepoint) and undid only itself
            outcomes.push({ ok: false, error: err });
          }
        }
      }).immediate();
      this.lastCommit = { ms: performance.now() - started, end: performance.now(), writes: batch.length };
    } catch (err) {
      const failure = new UpdraftError('INTERNAL', `Commit of ${batch.length} writes to ${this.deps.path} failed: ${errorMessage(err)}`, { cause: err });
      this.logger.error('group commit failed', { path: this.deps.path, writes: batch.length, error: errorMessage(err) });
      for (const write of batch) write.reject(failure);
      return;
    }
    this.afterDurable(
      () =>
        batch.forEach((write, i) => {
          const outcome = outcomes[i]!;
          if (outcome.ok) write.resolve(outcome.value);
          else write.reject(asUpdraftError(outcome.error));
        }),
      (err) => {
        const failure = new UpdraftError('INTERNAL', `fsync of ${this.walPath} failed; ${batch.length} writes may not be durable: ${errorMessage(err)}`, { cause: err });
        for (const write of batch) write.reject(failure);
      },
    );
  }

  /**
   * Settles a committed batch once it is on disk. In WAL mode one fdatasync of the WAL, run on
   * libuv's thread pool, makes every batch committed before it durable: the event loop keeps
   * serving devices while the disk syncs, and batches committed meanwhile share the next sync
   * (group fsync). The acknowledgement still comes only after the data is on disk.
   */
  private afterDurable(ack: () => void, fail: (err: unknown) => void): void {
    if (!this.walPath) return ack();
    this.unsynced.push(ack);
    this.unsyncedFailures.push(fail);
    this.syncing ??= this.syncLoop();
  }

  private async syncLoop(): Promise<void> {
    while (this.unsynced.length > 0) {
      const acks = this.unsynced;
      const fails = this.unsyncedFailures;
      this.unsynced = [];
      this.unsyncedFailures = [];
      try {
        this.walHandle ??= await open(this.walPath!, 'r');
        await this.walHandle.datasync();
      } catch (err) {
        this.logger.error('WAL fsync failed', { path: this.walPath, error: errorMessage(err) });
        for (const f of fails) f(err);
        continue;
      }
      for (const a of acks) a();
    }
    this.syncing = undefined;
  }

  private database(): Database.Database {
    if (!this.db) throw this.notOpen();
    return this.db;
  }

  private statements(): Statements {
    if (!this.stmts) throw this.notOpen();
    return this.stmts;
  }

  private notOpen(): UpdraftError {
    return new UpdraftError('INTERNAL', `State store ${this.deps.path} is ${this.stopped ? 'stopped' : 'not started'}; call start() first`);
  }
}

/** The file's schema version; CONFIG if a newer Updraft wrote it. */
function refuseNewer(db: Database.Database, file: string): number {
  const current = Number(db.pragma('user_version', { simple: true }));
  if (current > SQLITE_MIGRATIONS.length) {
    throw new UpdraftError('CONFIG', `State database ${file} has schema version ${current}, newer than this Updraft (${SQLITE_MIGRATIONS.length}); upgrade Updraft or restore a backup`);
  }
  return current;
}

/** Applies the migrations not yet applied, each in its own transaction; returns the version found. */
function migrate(db: Database.Database, file: string, existing: boolean): number {
  const current = refuseNewer(db, file);
  if (!existing && current > 0 && current < SQLITE_MIGRATIONS.length) throw olderSchemaRefused(file, current, SQLITE_MIGRATIONS.length);
  for (let v = current; v < SQLITE_MIGRATIONS.length; v++) {
    db.transaction(() => {
      db.exec(SQLITE_MIGRATIONS[v]!);
      // user_version lives in the file header and commits with the migration itself
      db.pragma(`user_version = ${v + 1}`);
    }).immediate();
  }
  return current;
}

function prepare(db: Database.Database): Statements {
  const p = <R = unknown>(sql: string): Stmt<R> => db.prepare<unknown[], R>(sql);
  const shadowCols = 'device_id, name, version, deleted, state, metadata, timestamp';
  const execCols = EXEC_COLS;
  const deviceCols = 'device_id, attributes, tags, secret_hash, broker_hash, revoked, created_at, updated_at, version';
  return {
    getShadow: p<ShadowRow>(`SELECT ${shadowCols} FROM shadows WHERE device_id = ? AND name = ?`),
    insertShadow: p(`INSERT INTO shadows (${shadowCols}) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (device_id, name) DO NOTHING`),
    updateShadow: p('UPDATE shadows SET version = ?, deleted = ?, state = ?, metadata = ?, timestamp = ? WHERE device_id = ? AND name = ? AND version = ?'),
    // a page of shadows by device id (the shadows_classic index), grouped; JSON read in SQLite
    countSoftware: p(`SELECT sw_name, sw_version, sw_status, COUNT(*) AS devices, MAX(device_id) AS last FROM (
        SELECT device_id, ${jsonText('$.reported.software.name')} AS sw_name, ${jsonText('$.reported.software.version')} AS sw_version,
          ${jsonText('$.reported.software.status')} AS sw_status
        FROM shadows WHERE name = '' AND deleted = 0 AND device_id > ? ORDER BY device_id LIMIT ?
      ) GROUP BY sw_name, sw_version, sw_status`),
    countDevices: p(`SELECT COUNT(*) AS devices, COALESCE(SUM(revoked), 0) AS revoked, MAX(device_id) AS last FROM (
        SELECT device_id, revoked FROM devices WHERE device_id > ? ORDER BY device_id LIMIT ?
      ) HAVING COUNT(*) > 0`),
    listShadowsFirst: p<ShadowRow>(`SELECT ${shadowCols} FROM shadows WHERE name = '' AND deleted = 0 ORDER BY device_id LIMIT ?`),
    listShadowsAfter: p<ShadowRow>(`SELECT ${shadowCols} FROM shadows WHERE name = '' AND deleted = 0 AND device_id > ? ORDER BY device_id LIMIT ?`),
    insertArtifact: p('INSERT INTO artifacts (name, version, sha256, size, created_at, signature, compatibility) VALUES (?, ?, ?, ?, ?, ?, ?)'),
    getArtifact: p<ArtifactRow>('SELECT name, version, sha256, size, created_at, signature, compatibility FROM artifacts WHERE name = ? AND version = ?'),
    activeJobsOfArtifact: p<{ job_id: string }>(`SELECT job_id FROM jobs WHERE artifact_name = ? AND artifact_version = ? AND status IN (${ACTIVE_JOB_SQL}) ORDER BY created_at LIMIT 10`),
    deleteArtifact: p('DELETE FROM artifacts WHERE name = ? AND version = ?'),
    countArtifactsWithBlob: p<{ n: number }>('SELECT COUNT(*) AS n FROM artifacts WHERE sha256 = ?'),
    insertJob: p(`INSERT INTO jobs (${JOB_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
    getJob: p<JobRow>(`SELECT ${JOB_COLS} FROM jobs WHERE job_id = ?`),
    getJobHead: p<JobRow>(`SELECT ${JOB_COLS_NO_SPEC} FROM jobs WHERE job_id = ?`),
    insertExecution: p(`INSERT INTO executions (${execCols}, failed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
    getExecution: p<ExecutionRow>(`SELECT ${execCols} FROM executions WHERE job_id = ? AND device_id = ?`),
    executionUpdates: new Map(),
    executionsByJob: p<ExecutionRow>(`SELECT ${execCols} FROM executions WHERE job_id = ? ORDER BY device_id`),
    // of jobs that exist: a job created in pieces has executions before its row (job-creation.ts)
    undispatchedOfDevice: p<ExecutionRow>(`SELECT ${execCols} FROM executions WHERE device_id = ? AND status = 'QUEUED' AND dispatched_at IS NULL AND ${JOB_EXISTS}`),
    executionsByDevice: p<ExecutionRow>(`SELECT ${execCols} FROM executions WHERE device_id = ? ORDER BY queued_at DESC, job_id DESC`),
    deviceExecutionsPage: p<ExecutionRow>(`SELECT ${execCols} FROM executions WHERE device_id = ? AND ${JOB_EXISTS} ORDER BY queued_at DESC, job_id DESC LIMIT ?`),
    deviceExecutionsAfter: p<ExecutionRow>(
      `SELECT ${execCols} FROM executions WHERE device_id = ? AND (queued_at < ? OR (queued_at = ? AND job_id < ?)) AND ${JOB_EXISTS} ORDER BY queued_at DESC, job_id DESC LIMIT ?`,
    ),
    executionsAll: p<ExecutionRow>(`SELECT ${execCols} FROM executions ORDER BY queued_at DESC, job_id, device_id`),
    insertDevice: p(`INSERT INTO devices (${deviceCols}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`),
    getDevice: p<DeviceRow>(`SELECT ${deviceCols} FROM devices WHERE device_id = ?`),
    // created_at never changes
    deleteDevice: p('DELETE FROM devices WHERE device_id = ? AND version = ?'),
    // a certificate whose device is gone by now (deleted while it was issued) is recorded revoked
    recordCertificate: p('INSERT INTO device_certificates (serial, device_id, issuer, issuer_subject, issued_at, not_after, revoked_at) VALUES (?, ?, ?, ?, ?, ?, CASE WHEN EXISTS (SELECT 1 FROM devices WHERE device_id = ?) THEN NULL ELSE ? END) ON CONFLICT (serial) DO NOTHING'),
    revokeCertificates: p('UPDATE device_certificates SET revoked_at = ? WHERE device_id = ? AND revoked_at IS NULL'),
    revokedCertificates: p<CertificateRow>('SELECT serial, device_id, issuer, issuer_subject, issued_at, not_after, revoked_at FROM device_certificates WHERE revoked_at IS NOT NULL AND not_after > ? ORDER BY serial'),
    // (not_after, serial): the partial index's key (a WITHOUT ROWID table's index holds the primary key)
    revokedEntries: p(REVOKED_ENTRIES_SQL),
    revocationStamp: p(REVOCATION_STAMP_SQL),
    expiredCertificates: p('DELETE FROM device_certificates WHERE serial IN (SELECT serial FROM device_certificates WHERE not_after < ? ORDER BY not_after LIMIT ?)'),
    recordDeletion: p('INSERT INTO deleted_devices (device_id, deleted_at) VALUES (?, ?) ON CONFLICT (device_id) DO UPDATE SET deleted_at = excluded.deleted_at'),
    deletedBefore: p<{ device_id: string; deleted_at: number }>('SELECT device_id, deleted_at FROM deleted_devices WHERE deleted_at < ? ORDER BY deleted_at, device_id LIMIT ?'),
    removeDeletedTombstones: p('DELETE FROM shadows WHERE device_id = ? AND deleted = 1 AND NOT EXISTS (SELECT 1 FROM devices WHERE device_id = ?)'),
    forgetDeletion: p('DELETE FROM deleted_devices WHERE device_id = ? AND deleted_at = ?'),
    listShadowNames: p<{ name: string }>('SELECT name FROM shadows WHERE device_id = ? AND deleted = 0 ORDER BY name'),
    listTombstones: p<{ name: string; version: number; timestamp: number }>('SELECT name, version, timestamp FROM shadows WHERE device_id = ? AND deleted = 1 ORDER BY timestamp, name'),
    removeTombstone: p('DELETE FROM shadows WHERE device_id = ? AND name = ? AND deleted = 1 AND version = ?'),
    updateDevice: p('UPDATE devices SET attributes = ?, tags = ?, secret_hash = ?, broker_hash = ?, revoked = ?, updated_at = ?, version = ? WHERE device_id = ? AND version = ?'),
    listDevicesFirst: p<DeviceRow>(`SELECT ${deviceCols} FROM devices ORDER BY device_id LIMIT ?`),
    listDevicesAfter: p<DeviceRow>(`SELECT ${deviceCols} FROM devices WHERE device_id > ? ORDER BY device_id LIMIT ?`),
    listRevokedDevices: p<DeviceRow>(`SELECT ${deviceCols} FROM devices WHERE revoked = 1 AND device_id > ? ORDER BY device_id LIMIT ?`),
    // a job created without a version has version 1
    // no spec: it is fixed at creation (StateStore.updateJob)
    updateJob: p('UPDATE jobs SET status = ?, description = ?, progress = ?, updated_at = ?, version = ? WHERE job_id = ? AND COALESCE(version, 1) = ?'),
    insertExecutionIfNew: p(`INSERT INTO executions (${execCols}, failed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (job_id, device_id) DO NOTHING`),
    nextUndispatched: p<ExecutionRow>(
      `SELECT ${execCols} FROM executions WHERE job_id = ? AND status = 'QUEUED' AND dispatched_at IS NULL AND wave <= ? ORDER BY wave, device_id LIMIT ?`,
    ),
    dueExecutions: p<ExecutionRow>(`SELECT ${execCols} FROM executions WHERE due_at IS NOT NULL AND due_at <= ? ORDER BY due_at LIMIT ?`),
    countExecutions: p<{ wave: number; status: string; count: number; dispatched: number }>(
      'SELECT wave, status, SUM(count) AS count, SUM(CASE WHEN dispatched THEN count ELSE 0 END) AS dispatched FROM execution_counts WHERE job_id = ? GROUP BY wave, status HAVING SUM(count) > 0 ORDER BY wave, status',
    ),
    addToCount: p(
      'INSERT INTO execution_counts (job_id, wave, status, dispatched, count) VALUES (?, ?, ?, ?, ?) ON CONFLICT (job_id, wave, status, dispatched) DO UPDATE SET count = count + excluded.count',
    ),
    getCreation: p<{ job_id: string }>('SELECT job_id FROM job_creations WHERE job_id = ?'),
    listCreations: p<{ job_id: string }>('SELECT job_id FROM job_creations'),
    insertCreation: p('INSERT INTO job_creations (job_id, touched_at) VALUES (?, ?)'),
    claimCreationKey: p('UPDATE job_creations SET idempotency_key = ?, request_fingerprint = ? WHERE job_id = ?'),
    claimJobKey: p('UPDATE jobs SET idempotency_key = ?, request_fingerprint = ? WHERE job_id = ?'),
    jobKeyHolder: p<{ job_id: string; request_fingerprint: string }>('SELECT job_id, request_fingerprint FROM jobs WHERE idempotency_key = ?'),
    creationKeyHolder: p<{ job_id: string; request_fingerprint: string }>('SELECT job_id, request_fingerprint FROM job_creations WHERE idempotency_key = ?'),
    touchCreation: p('UPDATE job_creations SET touched_at = ? WHERE job_id = ?'),
    deleteCreation: p('DELETE FROM job_creations WHERE job_id = ?'),
    deleteJobExecutions: p('DELETE FROM executions WHERE job_id = ?'),
    deleteJobExecutionsPiece: p('DELETE FROM executions WHERE job_id = ? AND device_id IN (SELECT device_id FROM executions WHERE job_id = ? LIMIT ?)'),
    deleteJobCounts: p('DELETE FROM execution_counts WHERE job_id = ?'),
    deleteJob: p('DELETE FROM jobs WHERE job_id = ?'),
    deleteJobLogsOf: p('DELETE FROM job_logs WHERE job_id = ?'),
    // a job's executions not finished (their counts), and its finished ones that still owe a
    // take-back (a deadline: read from the deadline index, not from the job's million rows)
    countUnfinished: p<{ n: number }>(
      `SELECT (SELECT COALESCE(SUM(count), 0) FROM execution_counts WHERE job_id = ? AND status IN ('QUEUED', 'IN_PROGRESS'))
        + (SELECT COUNT(*) FROM executions INDEXED BY executions_due WHERE due_at IS NOT NULL AND job_id = ? AND status NOT IN ('QUEUED', 'IN_PROGRESS')) AS n`,
    ),
    finishedBefore: p<JobRow>(`SELECT ${JOB_COLS_NO_SPEC} FROM jobs WHERE status NOT IN (${ACTIVE_JOB_SQL}) AND COALESCE(updated_at, created_at) < ? ORDER BY COALESCE(updated_at, created_at), job_id LIMIT ?`),
    insertGroup: p(`INSERT INTO device_groups (${GROUP_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`),
    getGroupHead: p<GroupRow>(`SELECT ${GROUP_HEAD_COLS} FROM device_groups WHERE name = ?`),
    changeGroup: p('UPDATE device_groups SET updated_at = ?, version = version + 1, size = size + ? WHERE name = ?'),
    deleteGroup: p('DELETE FROM device_groups WHERE name = ?'),
    listGroups: p<GroupRow>(`SELECT ${GROUP_HEAD_COLS} FROM device_groups ORDER BY name`),
    // the members of a static group, given as a JSON array (a dynamic group's is empty)
    addGroupMembers: p('INSERT OR IGNORE INTO group_members (name, device_id) SELECT ?, value FROM json_each(?)'),
    removeGroupMembers: p('DELETE FROM group_members WHERE name = ? AND device_id IN (SELECT value FROM json_each(?))'),
    deleteGroupMembers: p('DELETE FROM group_members WHERE name = ?'),
    listAllGroupMembers: p<{ device_id: string }>('SELECT device_id FROM group_members WHERE name = ? ORDER BY device_id'),
    listGroupMembers: p<{ device_id: string }>('SELECT device_id FROM group_members WHERE name = ? AND device_id > ? ORDER BY device_id LIMIT ?'),
    isGroupMember: p<{ one: number }>('SELECT 1 AS one FROM group_members WHERE name = ? AND device_id = ?'),
    getSetting: p<{ value: string }>('SELECT value FROM settings WHERE key = ?'),
    putSetting: p('INSERT INTO settings (key, value, updated_at) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at'),
    addSetting: p('INSERT INTO settings (key, value, updated_at) VALUES (?, ?, ?) ON CONFLICT (key) DO NOTHING'),
    deleteSetting: p('DELETE FROM settings WHERE key = ?'),
    listSettings: p<{ key: string; value: string }>('SELECT key, value FROM settings WHERE substr(key, 1, length(?)) = ? ORDER BY key'),
    // a device that sent a log for the job replaces it; another is kept while the job has fewer than the bound
    putJobLog: p(
      `INSERT INTO job_logs (job_id, device_id, agent_job_id, received_at, dropped, line_count, lines)
       SELECT ?, ?, ?, ?, ?, ?, ?
       WHERE EXISTS (SELECT 1 FROM job_logs WHERE job_id = ? AND device_id = ?) OR (SELECT COUNT(*) FROM job_logs WHERE job_id = ?) < ?
       ON CONFLICT (job_id, device_id) DO UPDATE SET agent_job_id = excluded.agent_job_id, received_at = excluded.received_at, dropped = excluded.dropped, line_count = excluded.line_count, lines = excluded.lines`,
    ),
    getJobLog: p<JobLogRow>('SELECT job_id, device_id, agent_job_id, received_at, dropped, line_count, lines FROM job_logs WHERE job_id = ? AND device_id = ?'),
    listJobLogs: p<JobLogRow>('SELECT job_id, device_id, agent_job_id, received_at, dropped, line_count FROM job_logs WHERE job_id = ? AND device_id > ? ORDER BY device_id LIMIT ?'),
    listDeviceJobLogs: p<JobLogRow>('SELECT job_id, device_id, agent_job_id, received_at, dropped, line_count FROM job_logs WHERE device_id = ? ORDER BY received_at DESC LIMIT ?'),
  };
}

const EXEC_COLS = 'job_id, device_id, status, details, queued_at, updated_at, version, wave, attempt, dispatched_at, due_at';

/** listJobExecutions's query: a page of `limit` + 1 (exported for the plan checks of test/store). */
export function jobExecutionsQuery(jobId: string, options: { status?: ExecutionStatus[]; after?: string; limit: number }): { sql: string; args: unknown[] } {
  const { limit, after } = options;
  const cursor = after !== undefined ? ' AND device_id > ?' : '';
  const statuses = [...new Set(options.status ?? [])];
  let sql: string;
  const args: unknown[] = [];
  if (statuses.length === 0) {
    sql = `SELECT ${EXEC_COLS} FROM executions WHERE job_id = ?${cursor} ORDER BY device_id LIMIT ?`;
    args.push(jobId, ...(after !== undefined ? [after] : []), limit + 1);
  } else {
    // one range of executions_job_status_device per status, each in device order, merged.
    // Named: SQLite (no statistics) took the primary key with status IN (...), a read of
    // every execution of the job for a state few of them are in
    const ofStatus = (status: ExecutionStatus) => {
      args.push(jobId, status, ...(after !== undefined ? [after] : []), limit + 1);
      return `SELECT * FROM (SELECT ${EXEC_COLS} FROM executions INDEXED BY executions_job_status_device WHERE job_id = ? AND status = ?${cursor} ORDER BY device_id LIMIT ?)`;
    };
    sql = statuses.length === 1 ? ofStatus(statuses[0]!) : `SELECT * FROM (${statuses.map(ofStatus).join(' UNION ALL ')}) ORDER BY device_id LIMIT ?`;
    if (statuses.length > 1) args.push(limit + 1);
  }
  return { sql, args };
}

/**
 * listFailedBelowAttempt's query, of parameters job, attemptBelow, maxWave[, after], limit + 1
 * (exported for the plan checks of test/store): a range of executions_failed_device, in
 * device order, attempt and wave filtered in the index. Named: SQLite (no statistics) took
 * the primary key's range, a read of the job's every execution. status = 'FAILED' written
 * out, not bound: a partial index needs its condition in the query
 */
export function failedBelowAttemptSql(after: boolean): string {
  return `SELECT ${EXEC_COLS} FROM executions INDEXED BY executions_failed_device WHERE job_id = ? AND status = 'FAILED' AND attempt < ? AND wave <= ?${after ? ' AND device_id > ?' : ''} ORDER BY device_id LIMIT ?`;
}

/**
 * listRecentFailures's query, of parameters [the cursor's failed_at, job id, device id,] limit
 * (exported for the plan checks of test/store): executions_failed_recent read backwards, the
 * latest to fail first, stopping at the limit; with a cursor, from the entry after it (a seek
 * on the row value, SQLite >= 3.15: the plan's range is `(failed_at,job_id,device_id)<(?,?,?)`),
 * not walked over the rows before it as an OFFSET was. `failed_at IS NOT NULL` written out, as
 * the index's condition is: a partial index needs its condition in the query, term for term.
 * Named, as the other partial-index reads here are (SQLite takes it unnamed too today; without
 * statistics, an index added later could change its choice)
 */
export function recentFailuresSql(after: boolean): string {
  return `SELECT ${EXEC_COLS}, failed_at FROM executions INDEXED BY executions_failed_recent WHERE failed_at IS NOT NULL${after ? ' AND (failed_at, job_id, device_id) < (?, ?, ?)' : ''} AND ${JOB_EXISTS} ORDER BY failed_at DESC, job_id DESC, device_id DESC LIMIT ?`;
}

/**
 * listLatestOutcomesOfDevices's query, of parameters device id and rows (exported for the plan
 * checks of test/store): executions_device_outcomes read backwards, newest first, stopping at
 * the limit; it holds the executions with an outcome only, so those without one are never read.
 * OUTCOME_STATUSES written out, as the index's condition is: a partial index needs its condition
 * in the query, term for term. Named: a status condition could draw SQLite (no statistics) to
 * an index led by status. With `failed_at` (the row is read from the table anyway): when a
 * standing failure came, by which the overview orders a device's outcomes
 */
export const LATEST_OUTCOMES_SQL = `SELECT ${EXEC_COLS}, failed_at FROM executions INDEXED BY executions_device_outcomes WHERE device_id = ? AND status IN (${OUTCOME_STATUSES.map((x) => `'${x}'`).join(', ')}) AND ${JOB_EXISTS} ORDER BY queued_at DESC, job_id DESC LIMIT ?`;

/**
 * revocationStamp's query, of parameter now (exported for the plan checks of test/store): a
 * range of device_certificates_revoked_expiry, read from the index alone (not_after and
 * revoked_at are in it), no row looked up
 */
export const REVOCATION_STAMP_SQL = 'SELECT COUNT(*) AS n, MIN(not_after) AS first, MAX(revoked_at) AS last FROM device_certificates WHERE revoked_at IS NOT NULL AND not_after > ?';

/**
 * A page of listRevokedEntries, of parameters now, the cursor's not_after and serial, and the
 * page's size (exported for the plan checks of test/store): a range of
 * device_certificates_revoked_expiry in its order (not_after, serial), no sort
 */
export const REVOKED_ENTRIES_SQL = 'SELECT serial, issuer, not_after, revoked_at FROM device_certificates WHERE revoked_at IS NOT NULL AND not_after > ? AND (not_after, serial) > (?, ?) ORDER BY not_after, serial LIMIT ?';

const ARTIFACT_COLS = 'name, version, sha256, size, created_at, signature, compatibility';
const JOB_COLS = 'job_id, artifact_name, artifact_version, status, created_at, description, spec, progress, updated_at, version';
const JOB_COLS_NO_SPEC = JOB_COLS.replace(' spec,', ' NULL AS spec,');
const GROUP_COLS = 'name, kind, devices, query, description, created_at, updated_at, version, size';
/** A group without its members (rows of group_members), counted: `size`. */
const GROUP_HEAD_COLS = GROUP_COLS.replace(' devices,', '');

/** A column an execution's update may set (the key, job and device, never changes): its field and its value in a record. */
interface ExecutionColumn {
  field: keyof ExecutionRecord;
  column: string;
  value: (e: ExecutionRecord) => unknown;
  /** Set by every update (`updatedAt`, `version`). */
  always?: true;
  /** Set when one of these changed, rather than `field` (a column derived from fields). */
  from?: readonly (keyof ExecutionRecord)[];
  /** The assignment, when not `column = ?`: its parameters are `value`'s, an array. */
  set?: string;
}

/** Every column an update may set, in one fixed order (one statement per set of columns), valued as `executionParams` writes them. */
const EXECUTION_UPDATE_COLUMNS: readonly ExecutionColumn[] = [
  { field: 'status', column: 'status', value: (e) => e.status },
  { field: 'details', column: 'details', value: (e) => JSON.stringify(e.details) },
  { field: 'queuedAt', column: 'queued_at', value: (e) => e.queuedAt },
  { field: 'updatedAt', column: 'updated_at', value: (e) => e.updatedAt, always: true },
  { field: 'version', column: 'version', value: (e) => e.version, always: true },
  { field: 'wave', column: 'wave', value: (e) => e.wave ?? 0 },
  { field: 'attempt', column: 'attempt', value: (e) => e.attempt ?? 1 },
  { field: 'dispatchedAt', column: 'dispatched_at', value: (e) => e.dispatchedAt ?? null },
  { field: 'dueAt', column: 'due_at', value: (e) => e.dueAt ?? null },
  // when it became a failure that stands: kept while it stays one, from this write when it
  // becomes one, NULL when it is none (a retry queued it, a late success came)
  { field: 'status', column: 'failed_at', from: ['status', 'details'], set: 'failed_at = CASE WHEN ? IS NULL THEN NULL ELSE COALESCE(failed_at, ?) END', value: (e) => [failedAt(e), failedAt(e)] },
];

/** The `failed_at` of `e` written anew (an insert; an update keeps an earlier one): when it became a failure that stands, else null. */
function failedAt(e: ExecutionRecord): number | null {
  return isStandingFailure(e) ? e.updatedAt : null;
}

/** Column order of `EXEC_COLS`, then `failed_at` (the inserts'). */
function executionParams(e: ExecutionRecord): unknown[] {
  return [e.jobId, e.deviceId, e.status, JSON.stringify(e.details), e.queuedAt, e.updatedAt, e.version, e.wave ?? 0, e.attempt ?? 1, e.dispatchedAt ?? null, e.dueAt ?? null, failedAt(e)];
}

/** Column order of `JOB_COLS`. */
function jobRowParams(j: JobRecord): unknown[] {
  return [
    j.jobId,
    j.artifactName,
    j.artifactVersion,
    j.status,
    j.createdAt,
    j.description ?? null,
    j.spec ? JSON.stringify(j.spec) : null,
    j.progress ? JSON.stringify(j.progress) : null,
    j.updatedAt ?? null,
    j.version ?? null,
  ];
}

function checkLimit(limit: number): void {
  if (!Number.isInteger(limit) || limit < 1) throw new UpdraftError('BAD_REQUEST', `limit must be a positive integer, got ${limit}`);
}

/** Column order of `deviceCols`. */
function deviceParams(d: DeviceRecord): unknown[] {
  return [d.deviceId, JSON.stringify(d.attributes), JSON.stringify(d.tags), d.secretHash ?? null, d.brokerHash ?? null, d.revoked ? 1 : 0, d.createdAt, d.updatedAt, d.version];
}

function isConstraint(err: unknown): boolean {
  return err instanceof Database.SqliteError && err.code.startsWith('SQLITE_CONSTRAINT');
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Why the file could not be opened, in words an operator can act on. */
function openFailureReason(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  switch (code) {
    case 'ENOTDIR':
    case 'EEXIST':
      return 'a component of its directory is a regular file, not a directory';
    case 'EACCES':
    case 'EPERM':
    case 'SQLITE_CANTOPEN':
    case 'SQLITE_READONLY':
      return `permission denied or not writable (${errorMessage(err)}); check the data directory's owner and mode`;
    case 'SQLITE_BUSY':
    case 'SQLITE_LOCKED':
      return 'it is locked by another process; stop the other Updraft server using this data directory';
    case 'SQLITE_NOTADB':
    case 'SQLITE_CORRUPT':
      return `it is not a valid SQLite database (${errorMessage(err)}); move it away or restore a backup`;
    default:
      return errorMessage(err);
  }
}
