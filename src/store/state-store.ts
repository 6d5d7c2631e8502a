/**
 * The durable store behind the replica, the artifact catalogue and the jobs
 * (STYLE.md habit 2). The embedded implementation is SQLite (`sqlite-store.ts`); a
 * PostgreSQL one will satisfy the same interface and the same contract suite
 * (`test/store/state-store.contract.ts`).
 *
 * Every write resolves only after it is durably committed: the replica acknowledges a
 * request only after that (docs/design.md §2). Conditional writes (`expectedVersion`) are the
 * concurrency control, so several writers never lose an update.
 */
import { UpdraftError } from '../errors.ts';
import type { Compatibility } from '../protocol/compatibility.ts';
import type { JsonObject } from '../protocol/json.ts';

/**
 * A shadow state's JSON text, made where the update measured it (`applyUpdate` counts the
 * document's bytes against its limit), for the store's write of that record: the same state
 * is not serialized twice on the hottest path (the measuring, `stateSize`, was 1.5% of the
 * server's busy time in a profiled fleet update; the store's JSON.stringify of the same state
 * costs about as much). Keyed by the state object, which nothing changes once the
 * update made it; taken once, so a record kept in a cache keeps no text.
 */
const stateTexts = new WeakMap<object, string>();

/** Remembers `text`, the JSON of `state`, for the store's write (`stateText`). */
export function rememberStateText(state: ShadowRecord['state'], text: string): void {
  stateTexts.set(state, text);
}

/** The JSON text of `state`: the one remembered for it, taken, or serialized now. */
export function stateText(state: ShadowRecord['state']): string {
  const text = stateTexts.get(state);
  if (text === undefined) return JSON.stringify(state);
  stateTexts.delete(state);
  return text;
}

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
  /** Ed25519 signature made when it was added, `<keyId>:<base64>` (`signing/manifest-signer.ts`); absent for unsigned ones. */
  signature?: string;
  /** What it may be installed on (`protocol/compatibility.ts`); absent: anything. */
  compatibility?: Compatibility;
}

/**
 * A job's own state. SCHEDULED waits for its start time; PAUSED waits for an operator
 * (paused by hand, or a wave below its success threshold or needing approval); COMPLETED,
 * CANCELED and ABORTED are final (`jobs/job-state.ts` has the legal moves).
 */
export type JobStatus = 'SCHEDULED' | 'IN_PROGRESS' | 'PAUSED' | 'COMPLETED' | 'CANCELED' | 'ABORTED';
/** Jobs not finished: the rollout engine looks at them, and they may still send their artifact to devices. */
export const ACTIVE_JOB_STATUSES: readonly JobStatus[] = ['SCHEDULED', 'IN_PROGRESS', 'PAUSED'];
/** The same, as an SQL list (both stores). */
export const ACTIVE_JOB_SQL = ACTIVE_JOB_STATUSES.map((s) => `'${s}'`).join(', ');

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
  /** The rollout specification (targets, plan, abort rules, timeouts, retries); fixed at creation. Absent for legacy jobs. */
  spec?: JsonObject;
  /** The rollout engine's durable progress (current wave, rate epoch, pause reason...). */
  progress?: JsonObject;
  /** Milliseconds since the epoch of the last change by `updateJob`. */
  updatedAt?: number;
  /** Row version for `updateJob`; absent means 1. */
  version?: number;
}

/** Per-device execution states (docs/design.md §4); the legal moves are in `jobs/execution-state.ts`. */
export type ExecutionStatus = 'QUEUED' | 'IN_PROGRESS' | 'SUCCEEDED' | 'FAILED' | 'TIMED_OUT' | 'REJECTED' | 'CANCELED' | 'REMOVED';

/** The execution states that are a failure: the overview's failing devices, `listRecentFailures`. */
export const FAILURE_STATUSES: readonly ExecutionStatus[] = ['FAILED', 'TIMED_OUT', 'REJECTED'];

/**
 * The execution states that are an outcome: a success (a late one stays TIMED_OUT) or a
 * failure. Not QUEUED or IN_PROGRESS (none yet), nor CANCELED or REMOVED (none ever): what
 * `listLatestOutcomesOfDevices` reads.
 */
export const OUTCOME_STATUSES: readonly ExecutionStatus[] = ['SUCCEEDED', ...FAILURE_STATUSES];

/**
 * Whether `e` is a failure that stands: in a failure state (FAILURE_STATUSES) without a success
 * that came late (`details.lateSuccess`: a TIMED_OUT execution stays TIMED_OUT when the
 * device's SUCCESS arrives after the deadline). The stores keep, per execution, when it became
 * one (`failed_at`, indexed for `listRecentFailures`), derived from every record they write.
 */
export function isStandingFailure(e: ExecutionRecord): boolean {
  const late = e.details.lateSuccess;
  return FAILURE_STATUSES.includes(e.status) && (late === undefined || late === null);
}

/** What `deleteJob` did. */
export interface JobDeletion {
  /** The job as it was, without its spec; absent when there is no such job. */
  job?: JobRecord;
  /** True when it was deleted. */
  deleted: boolean;
  /** A finished job held back by its executions: how many are not finished or still owe a command's take-back. */
  unfinished?: number;
}

/**
 * A creation's claim of a client's Idempotency-Key (draft-ietf-httpapi-idempotency-key-header;
 * `http/idempotency-key.ts`): the key, and a digest of the request it first came with.
 */
export interface IdempotencyClaim {
  key: string;
  /** SHA-256 (hex) of the route and the canonical request body. */
  fingerprint: string;
}

/** What holds an Idempotency-Key: a job, or a job still being created in pieces (`inProgress`). */
export interface KeyHolder extends IdempotencyClaim {
  jobId: string;
  inProgress: boolean;
}

/** `createJob`'s refusal of a key another job or creation holds; nothing of the job was written. */
export class IdempotencyKeyTaken extends UpdraftError {
  readonly holder: KeyHolder;

  constructor(holder: KeyHolder) {
    super('CONFLICT', `Idempotency-Key ${holder.key} is held by job ${holder.jobId}${holder.inProgress ? ', still being created' : ''}`);
    this.holder = holder;
  }
}

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
  /** Rollout wave, 0 (the canary) first; absent means 0 (and 0 reads back as absent). */
  wave?: number;
  /** Attempt number; a retry increments it; absent means 1 (and 1 reads back as absent). */
  attempt?: number;
  /** Milliseconds since the epoch when the update command was written to the device's desired state. */
  dispatchedAt?: number;
  /** Milliseconds since the epoch when the server must look at this execution again (a timeout); indexed. */
  dueAt?: number;
}

/**
 * An execution whose failure stands, as `listRecentFailures` lists it: with when it became
 * one, the time the list is ordered by (not `updatedAt`, which later writes such as a report move).
 */
export interface FailureRecord extends ExecutionRecord {
  /** When it became a failure that stands (`failed_at`), ms since the epoch. */
  failedAt: number;
}

/**
 * An execution with an outcome, as `listLatestOutcomesOfDevices` reads it: with when it became
 * a failure that stands (`failed_at`), when it is one (`isStandingFailure`); absent otherwise.
 */
export interface OutcomeRecord extends ExecutionRecord {
  /** When it became a failure that stands (`failed_at`), ms since the epoch; absent for a success, a late one too. */
  failedAt?: number;
}

/**
 * Where the next page of `listRecentFailures` starts: the last failure read (a FailureRecord
 * is one). The page is the failures strictly after it in the list's order, wherever it is now.
 */
export interface FailureCursor {
  failedAt: number;
  jobId: string;
  deviceId: string;
}

/** Refuses (BAD_REQUEST) a cursor of `listRecentFailures` that is no failure's key. */
export function checkFailureCursor(after: FailureCursor): void {
  if (!Number.isSafeInteger(after.failedAt) || typeof after.jobId !== 'string' || typeof after.deviceId !== 'string') {
    throw new UpdraftError('BAD_REQUEST', `a cursor of the recent failures is {failedAt: integer, jobId, deviceId}, got ${JSON.stringify(after)}`);
  }
}

/** A device's log of a failed job (`protocol/job-log.ts`): one per job and device, a later attempt's replacing it. */
export interface JobLogRecord {
  /** The job (its id without an attempt suffix). */
  jobId: string;
  deviceId: string;
  /** The job id the device saw (`<jobId>.<attempt>`, `<jobId>.rollback`, ...). */
  agentJobId: string;
  /** When the server received it, ms since the epoch. */
  receivedAt: number;
  /** Oldest first. */
  lines: string[];
  /** Lines the agent dropped between the first ones and the latest. */
  dropped: number;
}

/** A job log without its lines, for lists. */
export interface JobLogSummary extends Omit<JobLogRecord, 'lines'> {
  /** How many lines it holds. */
  lineCount: number;
}

/** A device group: static (listed members) or dynamic (members are the devices a query selects). */
export interface GroupRecord {
  /** Unique name (letters, digits, `_ . : -`). */
  name: string;
  kind: 'static' | 'dynamic';
  /**
   * Members of a static group, in device id order (empty for a dynamic one). Read whole only
   * by `getGroup`: a static group lists up to 100,000, so every other read leaves the list
   * out (`[]`) and counts it (`size`), and members are paged with `listGroupMembers`.
   */
  devices: string[];
  /** How many members a static group has (0 for a dynamic one); set on every read. */
  size?: number;
  /** The query of a dynamic group (`jobs/query/`). */
  query?: string;
  description?: string;
  /** Milliseconds since the epoch. */
  createdAt: number;
  updatedAt: number;
  /** Row version for conditional updates; 1 when created. */
  version: number;
}

/** How many executions of a job are in one state in one wave. */
export interface ExecutionCount {
  wave: number;
  status: ExecutionStatus;
  count: number;
  /** How many of them have been sent their command (dispatchedAt set). */
  dispatched: number;
}

/** Classic shadows reporting the same software: its fields as reported (JSON strings, else null). */
export interface SoftwareCount {
  name: string | null;
  version: string | null;
  status: string | null;
  devices: number;
}

/** Counts over one page of rows; `next` (a device id) when more rows may follow. */
export interface CountPage<T> {
  counts: T;
  next?: string;
}

/**
 * A page of counts: another may follow when the page was full; the cursor is the last row
 * counted (device ids are ASCII, ID_PATTERN: JavaScript's string order is the database's).
 */
export function countPage<T>(counts: T, rows: readonly { devices: number | string; last: string }[], limit: number): CountPage<T> {
  let seen = 0;
  let last = '';
  for (const r of rows) {
    seen += Number(r.devices); // PostgreSQL's COUNT is a bigint, read as a string
    if (r.last > last) last = r.last;
  }
  return seen >= limit ? { counts, next: last } : { counts };
}

/** A device certificate Updraft issued (`StateStore.recordDeviceCertificate`). */
export interface DeviceCertificateRecord {
  /** Serial number, lower-case hex as node:crypto's X509Certificate gives it. */
  serial: string;
  deviceId: string;
  /** SHA-256 fingerprint (hex) of the issuing CA's certificate. */
  issuer: string;
  /** The issuing CA's subject, for people. */
  issuerSubject: string;
  /** When it was issued and when it expires (ms). */
  issuedAt: number;
  notAfter: number;
  /** When it was revoked (ms): set when its device was deleted. */
  revokedAt?: number;
}

/** What a CRL entry needs of a revoked certificate (`StateStore.listRevokedEntries`). */
export type RevokedEntry = Pick<DeviceCertificateRecord, 'serial' | 'issuer' | 'notAfter'> & { revokedAt: number };

/** Rows per page of `listRevokedEntries`: a few ms of the thread each on SQLite. */
export const REVOKED_PAGE = 5_000;

/** A registered device: identity, attributes and tags (for groups and queries), credential. */
export interface DeviceRecord {
  deviceId: string;
  /** Free-form attributes, e.g. `{ region: 'eu', model: 'x2' }`. */
  attributes: Record<string, string | number | boolean>;
  tags: string[];
  /** SHA-256 (hex) of the device secret; absent for devices that authenticate by certificate only. */
  secretHash?: string;
  /**
   * The same secret as an external Mosquitto's password file stores it (`$7$` PBKDF2-SHA512,
   * what `mosquitto_passwd` writes), so `updraft broker mosquitto-config` can admit the
   * device; absent for devices registered before it was kept (rotate their secret).
   */
  brokerHash?: string;
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

/** A page of ids from `limit + 1` rows in id order: the id is its own cursor. */
export function idPage(ids: string[], limit: number): Page<string> {
  return ids.length > limit ? { items: ids.slice(0, limit), next: ids[limit - 1]! } : { items: ids };
}

/** Members to add to and remove from a static group (`changeGroupMembers`), in one go. */
export interface GroupMembersChange {
  add: string[];
  remove: string[];
  updatedAt: number;
  /** Most members the group may have after the change; above it nothing is written. */
  maxMembers: number;
}

/**
 * A command run beside running servers (`updraft backup`, `broker mosquitto-config --offline`,
 * an offline key rotation given the database) opens the store without migrating one that
 * holds an older schema: a newer CLI would change the schema under servers that do not know
 * the new one. A new (empty) database is set up, as before a first start.
 */
export function olderSchemaRefused(where: string, current: number, latest: number): UpdraftError {
  return new UpdraftError('CONFIG', `State database ${where} has schema version ${current}, older than this Updraft's (${latest}), and this command does not migrate it under the servers that use it: run it with the Updraft the servers run, or upgrade the servers first (their start migrates it)`);
}

/**
 * What refuses a change of members, for both stores: NOT_FOUND without a group, CONFLICT for
 * a dynamic one, BAD_REQUEST when the group would pass the bound (`size` after the change).
 */
export function checkMembersChange(name: string, kind: string | undefined, size: number | undefined, change: GroupMembersChange): void {
  if (kind === undefined) throw new UpdraftError('NOT_FOUND', `group ${name} does not exist; list groups with: updraft group list`);
  if (kind !== 'static') throw new UpdraftError('CONFLICT', `group ${name} is dynamic: its members are what its query selects`);
  if ((size ?? 0) > change.maxMembers) throw new UpdraftError('BAD_REQUEST', `a static group holds at most ${change.maxMembers} devices; use a dynamic group`);
}

/** The durable store. Implementations: SQLite (embedded), PostgreSQL (production). */
export interface StateStore {
  /** Opens connections and applies schema migrations. */
  start(): Promise<void>;
  /**
   * The database server's clock, in ms since the epoch: what the instances sharing a store
   * keep their job clocks to (cluster/cluster-clock.ts). Only a store that instances share
   * (PostgreSQL) has it; the embedded one has one instance, whose own clock is the clock.
   */
  databaseTime?(): Promise<number>;
  /** Flushes pending writes and releases every resource. */
  stop(): Promise<void>;
  /**
   * Calls `listener` when the database may no longer hold what it held (its server restarted or
   * was failed over to a replica that may be behind, or the database was replaced by a restore):
   * what was cached from it must be dropped, since versions can go back and climb again to a
   * number a cached record carries, with other content, which a conditional write would then
   * take for current. Only a store that outlives such events under a running instance
   * (PostgreSQL) has it; the embedded one is restored with the instance stopped.
   */
  onDisruption?(listener: (reason: string) => void): () => void;

  /** The shadow, including a tombstone if it was deleted; undefined if it never existed. */
  getShadow(deviceId: string, name: string): Promise<ShadowRecord | undefined>;
  /**
   * Writes `record` if the stored version equals `expectedVersion` (0: no row yet).
   * Resolves true after a durable commit, false on a version conflict (nothing written).
   */
  putShadow(record: ShadowRecord, expectedVersion: number): Promise<boolean>;
  /** Existing (not deleted) classic shadows ordered by device id, after the cursor. */
  listShadows(options: { after?: string; limit: number }): Promise<Page<ShadowRecord>>;
  /** The names of a device's existing (not deleted) shadows, '' for the classic one, in name order. */
  listShadowNames(deviceId: string): Promise<string[]>;
  /** A device's shadow tombstones (deleted shadows' rows: name, version, deletion time), oldest deletion first. */
  listShadowTombstones(deviceId: string): Promise<{ name: string; version: number; timestamp: number }[]>;
  /** Removes the tombstone of a device's shadow `name` if it still is one at `version`; true when removed. */
  removeShadowTombstone(deviceId: string, name: string, version: number): Promise<boolean>;
  /**
   * Up to `limit` existing classic shadows after the cursor (by device id), counted per
   * reported software (`state.reported.software` name, version and status) in the database:
   * the fleet's versions without reading every shadow into the process.
   */
  countReportedSoftware(options: { after?: string; limit: number }): Promise<CountPage<SoftwareCount[]>>;

  /** Registers a device; throws UpdraftError CONFLICT if the id is taken. */
  createDevice(record: DeviceRecord): Promise<void>;
  /**
   * Removes a device's registration if its version is still `version`: resolves false when
   * it changed or is gone (nothing removed). Its shadows, executions and group memberships
   * are the caller's (`fleet/decommission.ts`). The deletion is recorded with `deletedAt` (ms;
   * default now), in the same transaction, for `expireDeletedDevices`, and every recorded
   * certificate of the device not yet revoked is revoked at `deletedAt`, whatever its notAfter
   * (a clock ahead left those expiring within its lead unrevoked: QA 2026-12-07).
   * `listRevokedCertificates` lists them.
   */
  deleteDevice(deviceId: string, version: number, deletedAt?: number): Promise<boolean>;
  /**
   * Up to `limit` recorded deletions older than `before` (ms), oldest first: each device's
   * shadow tombstones are removed unless the id is registered again, and its record goes
   * (a later deletion of the id, recorded meanwhile, stays). What was done: the devices
   * whose record went, and how many tombstones were removed (`shadow/tombstone-retention.ts`).
   */
  expireDeletedDevices(before: number, limit: number): Promise<{ devices: string[]; tombstones: number }>;
  /**
   * Lists the deletions no `deleteDevice` recorded: devices with tombstones and no
   * registration that `deleted_devices` lacks, at their last tombstone's time (ms). Those are
   * deletions by an instance of an earlier release on the same database during a rolling
   * upgrade (the migration listed those before it). One read of the shadows' tombstones:
   * PostgreSQL only, where several instances share a database; resolves how many were listed.
   * Absent on SQLite, which one server at a time opens.
   */
  listUnrecordedDeletions?(): Promise<number>;
  getDevice(deviceId: string): Promise<DeviceRecord | undefined>;
  /** Writes `record` if the stored row version equals `record.version - 1`; false on conflict. */
  updateDevice(record: DeviceRecord): Promise<boolean>;
  /**
   * Registered devices ordered by id, after the cursor; with `revokedOnly`, the revoked ones
   * only (selected in the database: an instance behind an external broker reads them at start,
   * registry/revoked-devices.ts, and read every device to find them, a thousand pages for a
   * million devices).
   */
  listDevices(options: { after?: string; limit: number; revokedOnly?: boolean }): Promise<Page<DeviceRecord>>;
  /** Up to `limit` registered devices after the cursor (by id), counted in the database: how many, and how many revoked. */
  countDevices(options: { after?: string; limit: number }): Promise<CountPage<{ registered: number; revoked: number }>>;

  /**
   * Records a device certificate Updraft issued (one row each, by serial), before it is handed
   * out: what the CRL of an external Mosquitto lists once the device is deleted
   * (pki/revocation-list.ts). A serial recorded already is left as it is; one whose device is
   * no longer registered (deleted while it was issued) is recorded revoked, at the time of recording.
   */
  recordDeviceCertificate(record: DeviceCertificateRecord): Promise<void>;
  /**
   * The certificates revoked (`revokedAt` set by `deleteDevice`) whose notAfter is later than
   * `nowMs`, by serial: the entries of the CRL (made with `nowMs` a day back: pki/revocation-list.ts listedAfter). Revoked-but-registered devices are not here:
   * the acl denies them, and `device reinstate` re-admits their certificates.
   */
  listRevokedCertificates(nowMs: number): Promise<DeviceCertificateRecord[]>;
  /**
   * The same certificates as `listRevokedCertificates`, only what a CRL entry needs, read in
   * pages of `REVOKED_PAGE` with the event loop free between them (SQLite reads block the
   * thread: one read of 100,000 rows held it 0.5-1.2 s, QA 2026-12-07). In no set order.
   */
  listRevokedEntries(nowMs: number): Promise<RevokedEntry[]>;
  /**
   * A stamp of the revoked certificates whose notAfter is later than `nowMs` (those
   * `listRevokedEntries` gives), from one aggregate query on an index: their count, earliest notAfter and latest
   * revokedAt. It changes whenever that set changes, so a CRL kept for a stamp needs no reread
   * of the rows while the stamp is the same: `revoked_at` is only ever set (deleteDevice,
   * recordDeviceCertificate), never cleared, so the set grows only by rows gaining it, which
   * raises the count; it shrinks only by expiry (and pruneExpiredCertificates, which deletes
   * expired rows, earliest notAfter first), and rows leave in notAfter order: the earliest go,
   * so the earliest notAfter moves up, even when an addition at the same moment keeps the
   * count (an added row expires after `nowMs`, later than every row that left). The latest
   * revokedAt also moves with an addition revoked after every earlier one. The one case it could
   * miss needs instances' clocks apart, a prune by the one ahead removing one of two rows with
   * the same notAfter, and a revocation in the same moment not later than the latest: the next
   * change of the set is seen.
   */
  revocationStamp(nowMs: number): Promise<string>;
  /** Deletes up to `limit` rows of certificates expired before `before` (ms), revoked or not; resolves how many. */
  pruneExpiredCertificates(before: number, limit: number): Promise<number>;

  /** Adds an artifact; throws UpdraftError CONFLICT if name@version exists. */
  putArtifact(record: ArtifactRecord): Promise<void>;
  getArtifact(name: string, version: string): Promise<ArtifactRecord | undefined>;
  /**
   * A page of artifacts (only `name`'s when given), newest first: by `createdAt`, then the later
   * insert first. `after` is a `next` cursor (`artifactCursor`): a position, so an artifact
   * added or deleted between two pages neither repeats nor hides another. What needs them all
   * pages through (`allArtifacts`).
   */
  listArtifacts(options: { name?: string; after?: string; limit: number }): Promise<Page<ArtifactRecord>>;
  /**
   * Deletes an artifact's record, unless a job that is not finished (SCHEDULED, IN_PROGRESS,
   * PAUSED) installs it: then nothing is deleted and `activeJobs` names up to 10 of them.
   * `deleted` is the record deleted, absent when there was none.
   */
  deleteArtifact(name: string, version: string): Promise<{ deleted?: ArtifactRecord; activeJobs: string[] }>;
  /**
   * Runs `fn` holding a lock on artifact name@version that every instance sharing the store
   * sees: `create` while a job for it is being created (several may hold it at once), `delete`
   * while it is being deleted (alone). When the other kind holds it, `fn` is not run and the
   * answer is `{ ran: false }`. A store with one user (SQLite: one process owns the file) runs
   * `fn` at once; its process guards itself (`ArtifactService`).
   */
  withArtifactLock<T>(name: string, version: string, kind: 'create' | 'delete', fn: () => Promise<T>): Promise<{ ran: true; value: T } | { ran: false }>;
  /** How many artifact records name the bytes with this SHA-256 (blobs are shared by content). */
  countArtifactsWithBlob(sha256: string): Promise<number>;

  /**
   * Creates a job and its executions in one transaction; CONFLICT if the job id exists. With
   * `claim`, the job holds the client's Idempotency-Key from the same write that makes it
   * exist (a job of many devices: from its first piece, as a creation in progress):
   * IdempotencyKeyTaken, having left nothing of the job, when another job or creation holds
   * the key (`findIdempotencyKey`).
   */
  createJob(job: JobRecord, executions: ExecutionRecord[], claim?: IdempotencyClaim): Promise<void>;
  /**
   * The job holding Idempotency-Key `key`, or the creation in progress that will (`inProgress`);
   * undefined when none does. A deleted job frees its key, a failed creation never took it.
   */
  findIdempotencyKey(key: string): Promise<KeyHolder | undefined>;
  /** A job; `omitSpec` leaves its spec out (it can run to megabytes: see `listJobs`). */
  getJob(jobId: string, options?: { omitSpec?: boolean }): Promise<JobRecord | undefined>;
  getExecution(jobId: string, deviceId: string): Promise<ExecutionRecord | undefined>;
  /**
   * The jobs of `jobIds` read together (PostgreSQL: one query per 1,000 ids, where `getJob`
   * in turn is a round trip each), by job id; an id without a job is absent. `omitSpec` as
   * for `getJob`.
   */
  getJobs(jobIds: readonly string[], options?: { omitSpec?: boolean }): Promise<Map<string, JobRecord>>;
  /**
   * The executions of `keys` read together (PostgreSQL: one query per 1,000 keys), in the
   * order of `keys`, undefined where there is none.
   */
  getExecutions(keys: readonly { jobId: string; deviceId: string }[]): Promise<(ExecutionRecord | undefined)[]>;
  /**
   * Writes `record` if the stored row version equals `record.version - 1`.
   * Resolves true after commit, false on conflict. `changed`, when given, names every field
   * that differs from the row at `record.version - 1` (`updatedAt` and `version` always do):
   * a store may then write those columns only (SQLite then leaves the other indexes alone).
   */
  updateExecution(record: ExecutionRecord, changed?: ReadonlySet<keyof ExecutionRecord>): Promise<boolean>;
  /** Executions of one job, or of one device (newest first), or both filters. */
  listExecutions(filter: { jobId?: string; deviceId?: string }): Promise<ExecutionRecord[]>;
  /**
   * A page of one device's executions, newest first (by `queuedAt`, then job id): its history,
   * which grows with every job that ever targeted it. `after` is the `next` of the page before.
   * Only those of jobs that exist: a job created in pieces has executions before its row
   * (job-creation.ts), and a crash may leave them until they are removed.
   */
  listDeviceExecutions(deviceId: string, options: { after?: string; limit: number }): Promise<Page<ExecutionRecord>>;

  /**
   * Writes a job's status, description, progress and updatedAt if the stored row version
   * equals `job.version - 1`; false on conflict. The spec is fixed at creation and is not
   * written: a job's list of devices can run to megabytes, and the rollout engine saves a
   * job's progress at every tick that sends commands.
   */
  updateJob(job: JobRecord & { version: number }): Promise<boolean>;
  /**
   * Jobs newest first (createdAt, then jobId, descending), optionally only some states;
   * `after` is a `next` cursor. `omitSpec` leaves each spec out: it can run to megabytes and
   * never changes, so a caller that polls (the rollout engine, 4 times a second) keeps it.
   */
  listJobs(options: { status?: JobStatus[]; after?: string; limit: number; omitSpec?: boolean }): Promise<Page<JobRecord>>;
  /**
   * Adds executions to existing jobs, skipping any (jobId, deviceId) that exists and any of a
   * job that does not exist (deleted: a continuous job's scan or join still on its way when
   * the job was canceled and deleted would leave rows of no job, one of them sent); resolves
   * with how many were added. Atomic against `deleteJob`: a deletion committed first leaves
   * nothing added, one committed after finds the rows (and refuses while they are unfinished).
   */
  addExecutions(executions: ExecutionRecord[]): Promise<number>;
  /** A page of one job's executions ordered by device id, optionally only some states; `next` is a device id. */
  listJobExecutions(jobId: string, options: { status?: ExecutionStatus[]; after?: string; limit: number }): Promise<Page<ExecutionRecord>>;
  /**
   * A page of one job's FAILED executions whose attempt is below `attemptBelow`, in waves up to
   * `maxWave`, ordered by device id (`next` is a device id): those a retry may still be owed
   * (rollout-engine.ts). Those at the retry limit are not read: an index on the failed rows'
   * attempts (`executions_failed_attempt`) finds the few below it among many terminal failures.
   */
  listFailedBelowAttempt(jobId: string, options: { attemptBelow: number; maxWave: number; after?: string; limit: number }): Promise<Page<ExecutionRecord>>;
  /** Up to `limit` QUEUED executions of a job not yet dispatched, in waves up to `maxWave`, lowest wave then device id first. */
  nextUndispatched(jobId: string, maxWave: number, limit: number): Promise<ExecutionRecord[]>;
  /**
   * A device's QUEUED executions whose command was not sent yet, of any job (what a device
   * that comes online may be sent first); read from an index of those alone, so a device's
   * history of finished jobs costs nothing here. Only those of jobs that exist, as above.
   */
  listUndispatchedOfDevice(deviceId: string): Promise<ExecutionRecord[]>;
  /** Up to `limit` executions whose `dueAt` is at or before `now`, earliest first. */
  listDueExecutions(now: number, limit: number): Promise<ExecutionRecord[]>;
  /**
   * Up to `limit` executions whose failure stands (`isStandingFailure`: FAILED, TIMED_OUT or
   * REJECTED, without a late success), of any job that exists, the latest to fail first (when
   * each became a failure, then job id and device id, descending): the fleet's newest
   * failures, for the dashboard's overview (fleet/fleet-overview.ts). The stores keep when an
   * execution became a failure (`failed_at`): set by the write that makes it one, kept by the
   * later writes that leave it one (a report, the details of a stop), cleared by one that ends
   * it (a retry queues it, a late success arrives). Read from an index of those rows alone
   * (`executions_failed_recent`), newest first, stopping at `limit`. Only `failed_at` is
   * indexed, not `updated_at`: a write that changes neither (an IN_PROGRESS phase report) stays
   * a HOT update on PostgreSQL. Each record carries its `failedAt`. `after` (a cursor: the
   * last record of the page before) starts the next page strictly after it in that order,
   * a seek in the index: a failure that leaves the list (or joins it) between two pages shifts
   * no row past the reader. Until 2026-12-07 an offset paged, and a failure leaving between
   * two reads shifted the next page by one row: one failure was never read.
   */
  listRecentFailures(limit: number, after?: FailureCursor): Promise<FailureRecord[]>;
  /**
   * Up to `perDevice` executions with an outcome (in OUTCOME_STATUSES) of each of `deviceIds`,
   * newest first (by `queuedAt`, then job id, as `listDeviceExecutions`), of jobs that exist,
   * read together (PostgreSQL: one query); a device without any is absent. What the overview
   * reads to decide each candidate device by its own newest outcome: the executions without
   * one (queued, in progress, canceled) are skipped, however many are newer. Read from
   * `executions_device_outcomes` backwards, a partial index of the outcomes alone: a device's
   * executions without an outcome cost nothing to skip. A failure that stands carries its
   * `failedAt` (`failed_at`, read with the row: the overview orders a device's outcomes by
   * when each came, and a report since moves `updatedAt`, not that; until 2026-12-07 it had none).
   */
  listLatestOutcomesOfDevices(deviceIds: readonly string[], perDevice: number): Promise<Map<string, OutcomeRecord[]>>;
  /** Counts of a job's executions per wave and state (only non-zero ones). */
  countExecutions(jobId: string): Promise<ExecutionCount[]>;
  /**
   * Deletes a finished job (not in ACTIVE_JOB_STATUSES) and everything kept under its id: its
   * row and its devices' logs in one write, which is when it no longer exists for any reader,
   * then its executions in pieces of JOB_CHUNK and their counts (as an abandoned creation's,
   * job-creation.ts: a `job_creations` row marks what is left, so a crash or a failure
   * meanwhile is finished by the same clean-up). Nothing is deleted while the job is active,
   * nor while some of its executions are not finished (QUEUED, IN_PROGRESS: a stop or an
   * install still under way) or still owe a command's take-back (a deadline set, `dueAt`):
   * deleting those would leave a command on a device that nothing takes back. Resolves with
   * the job as it was (without its spec; absent when there is none), whether it was deleted,
   * and, when its executions held it back, how many.
   */
  deleteJob(jobId: string): Promise<JobDeletion>;
  /**
   * Up to `limit` finished jobs (not in ACTIVE_JOB_STATUSES) whose last change (`updatedAt`,
   * else `createdAt`) is before `before`, the oldest change first, without their specs: what
   * the retention sweep deletes (`jobs/job-retention.ts`).
   */
  listFinishedBefore(before: number, limit: number): Promise<JobRecord[]>;

  /** Creates a group with its members; throws UpdraftError CONFLICT if the name is taken. */
  createGroup(group: GroupRecord): Promise<void>;
  /** A group with its whole member list; `omitDevices` leaves the list out (`devices` is empty): it can hold 100,000. */
  getGroup(name: string, options?: { omitDevices?: boolean }): Promise<GroupRecord | undefined>;
  /**
   * Adds and removes members of a static group in one transaction (a device in both lists
   * ends a member), raising its version; resolves with the group without its list. Writes
   * only the rows named, whatever the group's size. Throws as `checkMembersChange` says, and
   * then writes nothing.
   */
  changeGroupMembers(name: string, change: GroupMembersChange): Promise<GroupRecord>;
  /** A page of a static group's members in device id order (none for a dynamic or unknown group). */
  listGroupMembers(name: string, options: { after?: string; limit: number }): Promise<Page<string>>;
  /** Deletes a group; false if there was none. */
  deleteGroup(name: string): Promise<boolean>;
  /** All groups ordered by name, without their member lists (`size` counts them). */
  listGroups(): Promise<GroupRecord[]>;
  /** Whether `deviceId` is among the members a static group lists (one lookup, whatever the group's size). */
  isGroupMember(name: string, deviceId: string): Promise<boolean>;

  /**
   * Keeps a device's log of a job, replacing the one it sent for that job before. When the job
   * keeps `maxPerJob` logs of other devices already, nothing is written and it returns false.
   */
  putJobLog(record: JobLogRecord, maxPerJob: number): Promise<boolean>;
  /** A device's log of a job, or undefined. */
  getJobLog(jobId: string, deviceId: string): Promise<JobLogRecord | undefined>;
  /** A page of a job's logs, without their lines, in device id order. */
  listJobLogs(jobId: string, options: { after?: string; limit: number }): Promise<Page<JobLogSummary>>;
  /** A device's logs, one per job at most, without their lines, newest first (at most `limit`); only those of `jobIds` when given. */
  listDeviceJobLogs(deviceId: string, limit: number, jobIds?: readonly string[]): Promise<JobLogSummary[]>;

  /** A setting shared by every instance on this store (`signing/shared-certificate.ts`), or undefined. */
  getSetting(key: string): Promise<string | undefined>;
  /** Writes a shared setting (last write wins: callers check what they replace). */
  putSetting(key: string, value: string): Promise<void>;
  /** Writes a shared setting only where `key` has none: false (nothing written) when it has one. */
  addSetting(key: string, value: string): Promise<boolean>;
  /** Removes a shared setting: false when there was none. */
  deleteSetting(key: string): Promise<boolean>;
  /** The shared settings whose keys start with `prefix`, by key. */
  listSettings(prefix: string): Promise<{ key: string; value: string }[]>;
}

/**
 * A cursor "<time>:<jobId>" of lists newest first, the `next` of their pages: jobs by
 * `createdAt`, a device's executions by `queuedAt`.
 */
export function timeCursor(after: string): { at: number; jobId: string } {
  const m = /^(\d+):(.+)$/.exec(after);
  if (!m) throw new UpdraftError('BAD_REQUEST', `after must be a cursor returned as next, got ${after}`);
  return { at: Number(m[1]), jobId: m[2]! };
}

/**
 * The cursor "<createdAt>:<seq>" of the artifact list, the `next` of its pages: the last
 * artifact's creation time and its insertion number (SQLite's rowid, PostgreSQL's seq), which
 * break ties between artifacts created in the same millisecond.
 */
export function artifactCursor(after: string): { at: number; seq: number } {
  const m = /^(\d{1,16}):(\d{1,16})$/.exec(after);
  const at = Number(m?.[1]);
  const seq = Number(m?.[2]);
  // a number past 2^53 would be compared rounded (or refused by PostgreSQL as out of range)
  if (!m || !Number.isSafeInteger(at) || !Number.isSafeInteger(seq)) throw new UpdraftError('BAD_REQUEST', `after must be a cursor returned as next, got ${after.slice(0, 64)}`);
  return { at, seq };
}

/** Every artifact (only `name`'s when given), newest first, read a page at a time: for what needs them all (backup, prune). */
export async function allArtifacts(store: Pick<StateStore, 'listArtifacts'>, name?: string): Promise<ArtifactRecord[]> {
  const out: ArtifactRecord[] = [];
  let after: string | undefined;
  do {
    const page = await store.listArtifacts({ limit: 1000, ...(name !== undefined ? { name } : {}), ...(after !== undefined ? { after } : {}) });
    out.push(...page.items);
    after = page.next;
  } while (after !== undefined);
  return out;
}

/** A page of `rows` read with one row more than `limit`, which tells whether another page exists; `cursor` names its last item. */
export function pageOf<T>(rows: T[], limit: number, cursor: (item: T) => string): Page<T> {
  const items = rows.slice(0, limit);
  const last = items[items.length - 1];
  return rows.length > limit && last !== undefined ? { items, next: cursor(last) } : { items };
}
