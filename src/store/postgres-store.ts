/**
 * The production StateStore on PostgreSQL (docs/design.md §7), through node-postgres (`pg`).
 *
 * Concurrency control is in SQL, so any number of Updraft instances can share one database
 * without losing an update: creates are `INSERT ... ON CONFLICT DO NOTHING` and conditional
 * writes are `UPDATE ... WHERE version = $expected`; under READ COMMITTED PostgreSQL
 * re-checks that WHERE against the newest committed row after waiting for a concurrent
 * writer, so exactly one of two racing writers wins and the other sees `false`.
 *
 * Writes are group committed (`postgres-group-commit.ts`); reads go to any pooled
 * connection and see every write whose promise has resolved. Migrations run on start
 * (`postgres-migrations.ts`), under an advisory lock so instances starting together migrate once.
 */
import pg from 'pg';
import { UpdraftError } from '../errors.ts';
import { redactUrl } from '../util/redact-url.ts';
import { silentLogger, type Logger } from '../util/logger.ts';
import { migratePostgres, PG_MIGRATIONS } from './postgres-migrations.ts';
import { guardCheckedOut, mapPgError, PgGroupCommit, rowsAsJson, type PgBulkKind } from './postgres-group-commit.ts';
import { PgReadBatch } from './postgres-read-batch.ts';
import { ABANDONED_AFTER_MS, JOB_CHUNK, assertDistinctDevices, createJobInPieces, type JobCreationSteps } from './job-creation.ts';
import type {
  ArtifactRecord,
  CountPage,
  DeviceCertificateRecord,
  DeviceRecord,
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
  ShadowRecord,
  SoftwareCount,
  StateStore,
  RevokedEntry,
} from './state-store.ts';
import { ACTIVE_JOB_SQL, ACTIVE_JOB_STATUSES, REVOKED_PAGE, IdempotencyKeyTaken, artifactCursor, checkMembersChange, checkFailureCursor, countPage, isStandingFailure, idPage, OUTCOME_STATUSES, pageOf, stateText, timeCursor, type FailureCursor, type FailureRecord, type GroupMembersChange, type OutcomeRecord } from './state-store.ts';
import { JOB_EXISTS, compatibilityColumn, jobLogPage, jobLogParams, rowMappers, toCertificate, toJobLog, toJobLogSummary, type ArtifactRowOf, type CertificateRow, type DeviceRowOf, type ExecutionRowOf, type GroupRowOf, type JobLogRow, type JobRowOf, type ShadowRowOf } from './rows.ts';

/** Dependencies and tuning of a PostgresStore. */
export interface PostgresStoreDeps {
  /** `postgres://user:password@host:5432/db` (any libpq-style URL node-postgres accepts). */
  url: string;
  logger?: Logger;
  /** Pooled connections (one of them writes at a time; the others serve reads). */
  poolSize?: number;
  /** Most writes committed in one transaction. */
  maxBatch?: number;
  /**
   * Longest a statement may run, locks waited for included, before PostgreSQL cancels it
   * (its `statement_timeout`), and longest a request waits for a pooled connection or a new
   * one. Without them a database that hangs (a lock another instance holds, a network
   * partition, a failover) holds every request that reaches it, and each device's next
   * packets behind its request, for ever; with them the request fails (500 for a statement,
   * 503 for a connection; the device retries), nothing is acknowledged that was not
   * committed, and the store serves again as soon as the database does. Migrations have
   * their own bound (migrationTimeoutMs): another instance may hold their lock, or build an
   * index, for longer.
   */
  statementTimeoutMs?: number;
  connectTimeoutMs?: number;
  /**
   * Longest a query waits for its answer on an open connection (node-postgres's
   * `query_timeout`, client side), the artifact locks' connection included. A database that
   * goes silent (a partition that drops packets, a stuck server) never receives the query, so
   * its statement_timeout never starts; past this the query fails UNAVAILABLE (503, the
   * device retries) and its connection is closed, so the next one opens a fresh session.
   * Default: statementTimeoutMs plus 5 s, so a slow statement is cancelled by the server
   * first, with its own error (none when statementTimeoutMs is 0). Not the migrations'.
   */
  queryTimeoutMs?: number;
  /**
   * Longest stop() waits for PostgreSQL to let its connections go (the goodbye of each, the
   * reads in flight) before it closes those left at once: a silent database (a partition, a
   * stuck server) never answers the goodbye, and a server's stop would wait for ever.
   * Default 5 s.
   */
  closeTimeoutMs?: number;
  /**
   * The schema migrations' bound, per step (the wait for their lock, each migration): a step
   * waiting this long for a lock (another instance migrating, a long transaction on a table
   * they change: `lock_timeout`) or running this long (`statement_timeout`) is cancelled by
   * PostgreSQL, and one not answered this plus 5 s (a silent database: client side) fails
   * too, so a start never waits for ever. Generous, as migrations may legitimately take
   * minutes on a large database: default 10 minutes.
   */
  migrationTimeoutMs?: number;
  /** False: a database holding an older schema is refused rather than migrated (`olderSchemaRefused`). */
  migrateExisting?: boolean;
  /**
   * How often, while the store runs, it looks for job creations an instance left unfinished
   * (it died) and removes what they wrote; 0: only at start. Default one minute.
   */
  abandonedSweepMs?: number;
}

const DEFAULTS = { poolSize: 10, maxBatch: 1_000, statementTimeoutMs: 30_000, connectTimeoutMs: 30_000, closeTimeoutMs: 5_000, migrationTimeoutMs: 600_000, abandonedSweepMs: 60_000 };

/**
 * How much longer than the statement timeout a query waits for its answer by default
 * (queryTimeoutMs): the server's cancellation of a statement has to reach us too.
 */
const QUERY_TIMEOUT_MARGIN_MS = 5_000;

/**
 * node-postgres's errors for its own timeouts: `query_timeout` fails a query with 'Query read
 * timeout' (lib/client.js), `connectionTimeoutMillis` a new connection with 'timeout expired'
 * (a pooled one's is wrapped in pg-pool's 'Connection terminated due to connection timeout').
 * Neither carries a code, so errors.ts's isUnreachable() does not know them.
 */
const QUERY_TIMEOUT = 'Query read timeout';
const CONNECT_TIMEOUT = 'timeout expired';
/** pg-pool's, for a new connection its own timer ended (the client's error is its cause, not always CONNECT_TIMEOUT). */
const POOL_CONNECT_TIMEOUT = 'Connection terminated due to connection timeout';
/** pg-pool's, for a request that waited connectTimeoutMs for a pooled connection, every one busy. */
const POOL_CHECKOUT_TIMEOUT = 'timeout exceeded when trying to connect';

/**
 * The database server's clock in ms since the epoch, in SQL: job creation markers are stamped
 * and judged by it, so an instance whose own clock is off neither removes another's creation
 * too early nor keeps a dead one (cluster/cluster-clock.ts tells the same story for jobs).
 */
const DB_NOW_MS = '(extract(epoch FROM clock_timestamp()) * 1000)::bigint';

// pg hands back json/jsonb and arrays parsed, booleans as booleans, and BIGINT columns as strings
// (node-postgres keeps 64-bit exact); every value we store fits a double
type ShadowRow = ShadowRowOf<unknown, string, boolean>;
type ArtifactRow = ArtifactRowOf<string>;
type JobRow = JobRowOf<unknown, string>;
type ExecutionRow = ExecutionRowOf<unknown, string>;
type GroupRow = GroupRowOf<string>;
type DeviceRow = DeviceRowOf<unknown, string, boolean>;
const { toShadow, toArtifact, toJob, toExecution, toFailure, toOutcome, toGroup, toDevice } = rowMappers<unknown, string, boolean>({
  json: (v) => v,
  num: (v) => Number(v),
  bool: (v) => v,
});

const SHADOW_COLS = 'device_id, name, version, deleted, state, metadata, timestamp';
const EXEC_COLS = 'job_id, device_id, status, details, queued_at, updated_at, version, wave, attempt, dispatched_at, due_at';
/** The columns an insert writes: EXEC_COLS and `failed_at`, which the store derives from the record (`failedAt`). */
const EXEC_INSERT_COLS = `${EXEC_COLS}, failed_at`;

/** listJobExecutions's query: a page of `limit` + 1 (exported for the plan checks of test/store). */
export function jobExecutionsQuery(jobId: string, options: { status?: ExecutionStatus[]; after?: string; limit: number }): { sql: string; args: unknown[] } {
  const limit = options.limit;
  const args: unknown[] = [limit + 1, jobId];
  let cursor = '';
  if (options.after !== undefined) {
    args.push(options.after);
    cursor = ` AND device_id > $${args.length}`;
  }
  // by status: one range of executions_job_status_device (job_id, status, device_id) per
  // status, each in device order, merged. With status = ANY($n) the planner walked the
  // primary key and filtered every execution of the job when the status was common in the
  // fleet but rare in the job (QA: 50,000-80,000 rows, 25-115 ms a page at 200,000), even
  // with the index there
  const ofStatus = (status: ExecutionStatus) => {
    args.push(status);
    return `SELECT ${EXEC_COLS} FROM executions WHERE job_id = $2 AND status = $${args.length}${cursor} ORDER BY device_id LIMIT $1`;
  };
  const statuses = [...new Set(options.status ?? [])];
  const sql =
    statuses.length === 0
      ? `SELECT ${EXEC_COLS} FROM executions WHERE job_id = $2${cursor} ORDER BY device_id LIMIT $1`
      : statuses.length === 1
        ? ofStatus(statuses[0]!)
        : `SELECT ${EXEC_COLS} FROM (${statuses.map((st) => `(${ofStatus(st)})`).join(' UNION ALL ')}) page ORDER BY device_id LIMIT $1`;
  return { sql, args };
}

/**
 * listFailedBelowAttempt's query, of parameters limit + 1, job, attemptBelow, maxWave [, after]
 * (exported for the plan checks of test/store): a range of executions_failed_device, in
 * device order. status = 'FAILED' written out, not bound: the planner proves the partial
 * index applies from the query's text (a generic plan cannot)
 */
export function failedBelowAttemptSql(after: boolean): string {
  return `SELECT ${EXEC_COLS} FROM executions WHERE job_id = $2 AND status = 'FAILED' AND attempt < $3 AND wave <= $4${after ? ' AND device_id > $5' : ''} ORDER BY device_id LIMIT $1`;
}

/**
 * listRecentFailures's query, of parameters limit[, the cursor's failed_at, job id, device id]
 * (exported for the plan checks of test/store): executions_failed_recent read backwards, the
 * latest to fail first, stopping at the limit; with a cursor, from the entry after it (the row
 * comparison is the index scan's condition, a seek), not walked over the rows before it as an
 * OFFSET was. `failed_at IS NOT NULL` written out, as the index's condition is. The job's
 * existence is checked on each row read (JOB_EXISTS, `OFFSET 0`: a subquery the planner keeps
 * as it is, not a join): the planner counts `failed_at IS NOT NULL` and the cursor's comparison
 * as independent, so when failures are few among the executions it expects a handful of rows
 * after the cursor, and with a join it read every failure after it and sorted them (799 for
 * 100 in test/store/execution-plans.test.ts); with a check per row, reading in the index's
 * order and stopping at the limit is its cheapest plan whatever it expects
 */
export function recentFailuresSql(after: boolean): string {
  return `SELECT ${EXEC_COLS}, failed_at FROM executions WHERE failed_at IS NOT NULL${after ? ' AND (failed_at, job_id, device_id) < ($2, $3, $4)' : ''} AND ${JOB_EXISTS.slice(0, -1)} OFFSET 0) ORDER BY failed_at DESC, job_id DESC, device_id DESC LIMIT $1`;
}

/**
 * revocationStamp's query, of parameter now (exported for the plan checks of test/store): an
 * index-only scan of device_certificates_revoked_expiry (not_after and revoked_at are in it)
 */
export const REVOCATION_STAMP_SQL = 'SELECT COUNT(*) AS n, MIN(not_after) AS first, MAX(revoked_at) AS last FROM device_certificates WHERE revoked_at IS NOT NULL AND not_after > $1';

/**
 * listLatestOutcomesOfDevices's query, of parameters device ids and rows per device:
 * executions_device_outcomes read backwards for each, which holds the executions with an
 * outcome only (OUTCOME_STATUSES, written out as the index's condition is, for the planner to
 * prove the index fits), so those without one are never read (exported for the plan checks of test/store).
 * With `failed_at` (the row is read from the table anyway): when a standing failure came, by
 * which the overview orders a device's outcomes.
 */
export const LATEST_OUTCOMES_SQL = `SELECT ${prefixed('e', EXEC_COLS)}, e.failed_at FROM unnest($1::text[]) AS d (device_id)
  CROSS JOIN LATERAL (SELECT ${EXEC_COLS}, failed_at FROM executions WHERE executions.device_id = d.device_id COLLATE "C" AND status IN (${OUTCOME_STATUSES.map((x) => `'${x}'`).join(', ')}) AND ${JOB_EXISTS} ORDER BY queued_at DESC, job_id DESC LIMIT $2) AS e`;

/**
 * The rows of `rowsAsJson` (`executionParams`, columns in EXEC_INSERT_COLS order) taken apart
 * server-side: every execution of a batch in one statement.
 */
const EXEC_ROWS = `(SELECT r->>0, r->>1, r->>2, r->3, (r->>4)::bigint, (r->>5)::bigint, (r->>6)::bigint, (r->>7)::int, (r->>8)::int, (r->>9)::bigint, (r->>10)::bigint, (r->>11)::bigint
  FROM jsonb_array_elements($1::jsonb) AS r) AS v`;
/** Positions of JSON text in `executionParams`. */
const EXEC_JSON = [3];
const DEVICE_COLS = 'device_id, attributes, tags, secret_hash, broker_hash, revoked, created_at, updated_at, version';
const ARTIFACT_COLS = 'name, version, sha256, size, created_at, signature, compatibility';
const JOB_COLS = 'job_id, artifact_name, artifact_version, status, created_at, description, spec, progress, updated_at, version';
const JOB_COLS_NO_SPEC = JOB_COLS.replace(' spec,', ' NULL AS spec,');
/** Most keys in one query of getJobs and getExecutions (as a batch of point reads, postgres-read-batch.ts). */
const READ_CHUNK = 1_000;
/** JOB_COLS of `jobs j` (getJobs), and without the spec. */
const JOB_READ_COLS = prefixed('j', JOB_COLS);
const JOB_READ_COLS_NO_SPEC = JOB_READ_COLS.replace(' j.spec,', ' NULL AS spec,');
const GROUP_COLS = 'name, kind, devices, query, description, created_at, updated_at, version, size';
/** A group without its members (rows of group_members), counted: `size`. */
const GROUP_HEAD_COLS = GROUP_COLS.replace(' devices,', '');
/** The members of a static group (a dynamic group's list is empty) as rows. */
const ADD_GROUP_MEMBERS = 'INSERT INTO group_members (name, device_id) SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING';

// The writes of a fleet update, as bulk writes (postgres-group-commit.ts): the rows of a
// batch taken apart from one JSON parameter (`rowsAsJson`). Their text has the default
// collation, the keys "C": the comparisons name theirs.
/** A row's key within its table, from its key columns (device and name, job and device). */
const rowKey = (a: unknown, b: unknown) => `${String(a)}\u0000${String(b)}`;

/** Creates a shadow. Row: device_id, name, version, deleted, state, metadata, timestamp. */
const SHADOW_INSERT: PgBulkKind = {
  table: 'shadows',
  many: `INSERT INTO shadows (${SHADOW_COLS})
    SELECT r->>0, r->>1, (r->>2)::bigint, (r->>3)::boolean, r->4, r->5, (r->>6)::bigint FROM jsonb_array_elements($1::jsonb) AS r
    ON CONFLICT (device_id, name) DO NOTHING RETURNING device_id, name`,
  jsonColumns: [4, 5],
  keyOf: (r) => rowKey(r.device_id, r.name),
  one: async (c, row) => (await c.query(`INSERT INTO shadows (${SHADOW_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (device_id, name) DO NOTHING`, row)).rowCount === 1,
};

/** Updates a shadow from an expected version. Row: device_id, name, expected, version, deleted, state, metadata, timestamp. */
const SHADOW_UPDATE: PgBulkKind = {
  table: 'shadows',
  many: `UPDATE shadows s SET version = v.version, deleted = v.deleted, state = v.state, metadata = v.metadata, timestamp = v.timestamp
    FROM (SELECT r->>0, r->>1, (r->>2)::bigint, (r->>3)::bigint, (r->>4)::boolean, r->5, r->6, (r->>7)::bigint FROM jsonb_array_elements($1::jsonb) AS r)
      AS v (device_id, name, expected, version, deleted, state, metadata, timestamp)
    WHERE s.device_id = v.device_id COLLATE "C" AND s.name = v.name COLLATE "C" AND s.version = v.expected
    RETURNING s.device_id, s.name`,
  jsonColumns: [5, 6],
  keyOf: (r) => rowKey(r.device_id, r.name),
  one: async (c, [deviceId, name, expected, ...values]) =>
    (await c.query('UPDATE shadows SET version = $1, deleted = $2, state = $3, metadata = $4, timestamp = $5 WHERE device_id = $6 AND name = $7 AND version = $8', [...values, deviceId, name, expected]))
      .rowCount === 1,
};

/**
 * Updates an execution from the previous row version. Row: job_id, device_id, expected, then
 * the columns set, then `failedAt` of the record (when it is a failure that stands, else
 * null): failed_at keeps the time it became one while it stays one, is set by the write that
 * makes it one, and cleared by one that ends it. Unchanged (NULL to NULL) by a phase report,
 * which so stays a HOT update.
 */
const EXECUTION_UPDATE: PgBulkKind = {
  table: 'executions',
  many: `UPDATE executions e SET status = v.status, details = v.details, queued_at = v.queued_at, updated_at = v.updated_at, version = v.version,
      wave = v.wave, attempt = v.attempt, dispatched_at = v.dispatched_at, due_at = v.due_at, failed_at = CASE WHEN v.failed_at IS NULL THEN NULL ELSE COALESCE(e.failed_at, v.failed_at) END
    FROM (SELECT r->>0, r->>1, (r->>2)::bigint, r->>3, r->4, (r->>5)::bigint, (r->>6)::bigint, (r->>7)::bigint, (r->>8)::int, (r->>9)::int, (r->>10)::bigint, (r->>11)::bigint, (r->>12)::bigint
        FROM jsonb_array_elements($1::jsonb) AS r)
      AS v (job_id, device_id, expected, status, details, queued_at, updated_at, version, wave, attempt, dispatched_at, due_at, failed_at)
    WHERE e.job_id = v.job_id COLLATE "C" AND e.device_id = v.device_id COLLATE "C" AND e.version = v.expected
    RETURNING e.job_id, e.device_id`,
  jsonColumns: [4],
  keyOf: (r) => rowKey(r.job_id, r.device_id),
  one: async (c, [jobId, deviceId, expected, ...set]) =>
    (
      await c.query(
        `UPDATE executions SET status = $1, details = $2, queued_at = $3, updated_at = $4, version = $5, wave = $6, attempt = $7, dispatched_at = $8, due_at = $9,
           failed_at = CASE WHEN $10::bigint IS NULL THEN NULL ELSE COALESCE(failed_at, $10::bigint) END
         WHERE job_id = $11 AND device_id = $12 AND version = $13`,
        [...set, jobId, deviceId, expected],
      )
    ).rowCount === 1,
};

/**
 * Lists the devices with tombstones that are neither registered nor in deleted_devices (deleted
 * by an earlier release during a rolling upgrade), at their last tombstone's time (seconds, in
 * ms). Reads the tombstones through shadows_tombstones (postgres-migrations.ts), not every
 * shadow: it runs in a write batch of the group commit, which waits for it. Exported for the
 * plan check (test/store/tombstone-listing-plan.test.ts).
 */
export const UNRECORDED_DELETIONS_SQL = `INSERT INTO deleted_devices (device_id, deleted_at)
  SELECT device_id, MAX(timestamp) * 1000 FROM shadows s
  WHERE deleted AND NOT EXISTS (SELECT 1 FROM devices d WHERE d.device_id = s.device_id)
    AND NOT EXISTS (SELECT 1 FROM deleted_devices x WHERE x.device_id = s.device_id)
  GROUP BY device_id
  ON CONFLICT (device_id) DO NOTHING`;

/** The PostgreSQL StateStore. */
export class PostgresStore implements StateStore {
  private readonly deps: PostgresStoreDeps;
  private readonly logger: Logger;
  private pool: pg.Pool | undefined;
  private writes: PgGroupCommit | undefined;
  private stopped = false;
  /** Set by stop(): the sweep of abandoned creations ends at its next step. */
  private closing = false;
  /** The next sweep of abandoned creations, and the one running (never two at once). */
  private sweepTimer: NodeJS.Timeout | undefined;
  private sweeping: Promise<void> | undefined;
  /** The connection of the artifact locks (`withArtifactLock`), once one was taken. */
  private locks: Promise<pg.Client> | undefined;
  /** The client of `locks` once connected: a query it leaves unanswered closes it (`lockQuery`). */
  private lockClient: pg.Client | undefined;
  /**
   * Every connected client of the store (the pool's, the artifact locks'), each with its end,
   * until it ends: stop() closes at once those a silent database does not let go.
   */
  private readonly connections = new Map<pg.Client, Promise<void>>();
  /** onDisruption's listeners. */
  private readonly disruptionListeners = new Set<(reason: string) => void>();
  // point reads of one tick in one query (postgres-read-batch.ts)
  private readonly shadowReads = new PgReadBatch<ShadowRow & { i?: string }, ShadowRecord>({
    query: (sql, params) => this.read(sql, params),
    sql: `SELECT k.i, ${prefixed('s', SHADOW_COLS)} FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS k (device_id, name, i)
      JOIN shadows s ON s.device_id = k.device_id COLLATE "C" AND s.name = k.name COLLATE "C"`,
    single: `SELECT ${SHADOW_COLS} FROM shadows WHERE device_id = $1 AND name = $2`,
    toRecord: toShadow,
  });
  // a take-back (retractCommand: a cancel's, a timeout's) looks up the build each device runs:
  // a cancel of a job sent to a page of devices asked for as many artifacts in one tick
  private readonly artifactReads = new PgReadBatch<ArtifactRow & { i?: string }, ArtifactRecord>({
    query: (sql, params) => this.read(sql, params),
    sql: `SELECT k.i, ${prefixed('a', ARTIFACT_COLS)} FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS k (name, version, i)
      JOIN artifacts a ON a.name = k.name COLLATE "C" AND a.version = k.version COLLATE "C"`,
    single: `SELECT ${ARTIFACT_COLS} FROM artifacts WHERE name = $1 AND version = $2`,
    toRecord: toArtifact,
  });
  private readonly deviceReads = new PgReadBatch<DeviceRow & { i?: string }, DeviceRecord>({
    query: (sql, params) => this.read(sql, params),
    sql: `SELECT k.i, ${prefixed('d', DEVICE_COLS)} FROM unnest($1::text[]) WITH ORDINALITY AS k (device_id, i)
      JOIN devices d ON d.device_id = k.device_id COLLATE "C"`,
    single: `SELECT ${DEVICE_COLS} FROM devices WHERE device_id = $1`,
    toRecord: toDevice,
  });

  constructor(deps: PostgresStoreDeps) {
    this.deps = deps;
    this.logger = deps.logger ?? silentLogger;
  }

  private get statementTimeoutMs(): number {
    return this.deps.statementTimeoutMs ?? DEFAULTS.statementTimeoutMs;
  }

  private get connectTimeoutMs(): number {
    return this.deps.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs;
  }

  /** PostgresStoreDeps.queryTimeoutMs, or its default; 0: none. */
  private get queryTimeoutMs(): number {
    if (this.deps.queryTimeoutMs !== undefined) return this.deps.queryTimeoutMs;
    return this.statementTimeoutMs > 0 ? this.statementTimeoutMs + QUERY_TIMEOUT_MARGIN_MS : 0;
  }

  /** node-postgres's option for queryTimeoutMs (absent for none: its 0 is the default, none, anyway). */
  private queryTimeout(): { query_timeout?: number } {
    return this.queryTimeoutMs > 0 ? { query_timeout: this.queryTimeoutMs } : {};
  }

  /** Where the store is, without the password (for messages and logs). */
  get where(): string {
    return redactPostgresUrl(this.deps.url);
  }

  /** Connects and applies pending migrations. */
  async start(): Promise<void> {
    if (this.pool) return;
    await this.migrate();
    const pool = new pg.Pool({
      connectionString: this.deps.url,
      max: this.deps.poolSize ?? DEFAULTS.poolSize,
      statement_timeout: this.statementTimeoutMs,
      connectionTimeoutMillis: this.connectTimeoutMs,
      // client side: a silent database never receives the query, so its statement_timeout
      // never starts. A query that times out fails its caller, and its connection is released
      // with the error (pg-pool's query(); the group commit's release(broken), as its ROLLBACK
      // times out too): pg-pool closes a connection released with an error, so the next
      // query opens a fresh session
      ...this.queryTimeout(),
    });
    pool.on('connect', (client) => this.track(client));
    // an idle pooled connection that dies (server restart) must not crash the process
    // a connection the database ended for being idle reports its end again ('Connection
    // terminated unexpectedly'): neither is a disruption
    const endedIdleClients = new WeakSet<object>();
    pool.on('error', (err, client) => {
      if (client && endedIdleClients.has(client)) return;
      this.logger.warn('idle PostgreSQL connection lost', { error: err.message });
      if (endedIdle(err)) {
        if (client) endedIdleClients.add(client);
        return;
      }
      this.disrupted(`a pooled connection was lost: ${err.message}`);
    });
    this.pool = pool;
    this.writes = new PgGroupCommit({ pool, logger: this.logger, maxBatch: this.deps.maxBatch ?? DEFAULTS.maxBatch, where: this.where });
    this.stopped = false;
    this.closing = false;
    await this.sweep();
    this.scheduleSweep();
  }

  /**
   * Applies pending migrations on a connection of their own, with their own bound
   * (migrationTimeoutMs) instead of the pool's: they may wait for another instance's lock
   * (pg_try_advisory_lock, asked again until then), or build an index, for minutes.
   */
  private async migrate(): Promise<void> {
    const timeoutMs = this.deps.migrationTimeoutMs ?? DEFAULTS.migrationTimeoutMs;
    const migrating = new pg.Pool({
      connectionString: this.deps.url,
      max: 1,
      connectionTimeoutMillis: this.connectTimeoutMs,
      // the server's bounds first, with their own errors; this one for a database gone silent
      query_timeout: timeoutMs + QUERY_TIMEOUT_MARGIN_MS,
    });
    // its connection, idle between its release and end(), may die unheard: not to crash the process
    migrating.on('error', () => {});
    try {
      const client = await migrating.connect();
      // a connection lost during the migrations must fail them, not end the process
      const guard = guardCheckedOut(client);
      let failed: unknown;
      try {
        // the statement timeout a second later, so a step that waited for a lock says so
        await client.query(`SET lock_timeout = ${timeoutMs}; SET statement_timeout = ${timeoutMs + 1_000}`);
        const from = await migratePostgres(client, this.where, { existing: this.deps.migrateExisting !== false, lockWaitMs: timeoutMs });
        this.logger.debug('state store opened', { url: this.where, schemaVersion: PG_MIGRATIONS.length, migratedFrom: from });
      } catch (err) {
        failed = err;
        throw err;
      } finally {
        // released with an error, the connection is closed: a silent one at once (pg's end()
        // with a query unanswered), and its session, when it ends, takes the lock with it
        client.release(guard.end() ?? (timeoutIn(failed) === QUERY_TIMEOUT ? (failed as Error) : undefined));
      }
    } catch (err) {
      throw this.migrationFault(err, timeoutMs);
    } finally {
      await migrating.end().catch(() => {});
    }
  }

  /** Why the migrations (and so the start) failed, in words saying what to do. */
  private migrationFault(err: unknown, timeoutMs: number): UpdraftError {
    if (err instanceof UpdraftError) return err;
    const code = (err as { code?: unknown }).code;
    const bound = `${timeoutMs} ms (postgres.migrationTimeoutSeconds)`;
    if (timeoutIn(err) === QUERY_TIMEOUT) {
      return new UpdraftError('UNAVAILABLE', `Cannot open the PostgreSQL state store ${this.where}: it did not answer a step of the schema migrations within ${timeoutMs + QUERY_TIMEOUT_MARGIN_MS} ms (a network partition or a stuck server); each migration is applied whole or not at all: start again once it answers`, { cause: err });
    }
    if (code === '55P03') {
      return new UpdraftError('UNAVAILABLE', `Cannot open the PostgreSQL state store ${this.where}: the schema migrations waited ${bound} for a lock (another instance migrating, or a long transaction on a table they change), and gave up on that step (each migration is applied whole or not at all): start again once it ends, or give them longer`, { cause: err });
    }
    if (code === '57014') {
      return new UpdraftError('UNAVAILABLE', `Cannot open the PostgreSQL state store ${this.where}: a step of the schema migrations ran longer than ${bound} and PostgreSQL cancelled it (${(err as Error).message}), nothing of it applied: give them longer (a large database), or start again`, { cause: err });
    }
    return new UpdraftError('CONFIG', `Cannot open the PostgreSQL state store ${this.where}: ${(err as Error).message}; check --db and that the server is up`, { cause: err });
  }

  /**
   * Stops the sweep of abandoned creations, commits pending writes, then closes the
   * connections, those PostgreSQL does not let go within closeTimeoutMs at once. Safe to call twice.
   */
  async stop(): Promise<void> {
    const pool = this.pool;
    if (!pool) return;
    this.closing = true;
    clearTimeout(this.sweepTimer);
    this.sweepTimer = undefined;
    await this.sweeping;
    await this.writes?.drain();
    this.pool = undefined;
    this.writes = undefined;
    this.stopped = true;
    const locks = this.locks;
    this.locks = undefined;
    this.lockClient = undefined;
    // client.end() waits for the server to close its side after the goodbye: a silent one never
    // does (a partition, a stuck server), and pool.end() waits for the reads in flight
    const goodbyes = Promise.all([pool.end(), locks?.then((c) => c.end()).catch(() => undefined)]).then(() => Promise.all(this.connections.values()));
    const closeTimeoutMs = this.deps.closeTimeoutMs ?? DEFAULTS.closeTimeoutMs;
    if (await settlesWithin(goodbyes, closeTimeoutMs)) return;
    const silent = [...this.connections.keys()];
    this.logger.warn(
      `PostgreSQL at ${this.where} did not let ${silent.length} connection(s) go within ${closeTimeoutMs} ms of the stop (a network partition or a stuck server): closed without its answer`,
    );
    for (const client of silent) client.connection.stream.destroy();
    // each ends with its socket (a read in flight on it fails); pool.end() is not waited for
    await Promise.all(this.connections.values());
  }

  /** Keeps `client` in `connections` until it ends. */
  onDisruption(listener: (reason: string) => void): () => void {
    this.disruptionListeners.add(listener);
    return () => this.disruptionListeners.delete(listener);
  }

  private disrupted(reason: string): void {
    for (const l of this.disruptionListeners) l(reason);
  }

  private track(client: pg.Client): void {
    this.connections.set(
      client,
      new Promise((resolve) =>
        client.once('end', () => {
          this.connections.delete(client);
          resolve();
        }),
      ),
    );
  }

  getShadow(deviceId: string, name: string): Promise<ShadowRecord | undefined> {
    return this.shadowReads.get([deviceId, name]);
  }

  async putShadow(record: ShadowRecord, expectedVersion: number): Promise<boolean> {
    // serialised now: the caller may mutate `record` before the batch runs
    const { deviceId, name } = record;
    const values = [record.version, record.deleted, stateText(record.state), JSON.stringify(record.metadata), record.timestamp];
    // a tombstone is a row too, so expectedVersion 0 over it conflicts and versions are never reused
    if (expectedVersion === 0) return this.bulk(SHADOW_INSERT, rowKey(deviceId, name), [deviceId, name, ...values]);
    return this.bulk(SHADOW_UPDATE, rowKey(deviceId, name), [deviceId, name, expectedVersion, ...values]);
  }

  async listShadows(options: { after?: string; limit: number }): Promise<Page<ShadowRecord>> {
    const limit = checkLimit(options.limit);
    const where = options.after === undefined ? '' : 'AND device_id > $2';
    const params: unknown[] = options.after === undefined ? [limit + 1] : [limit + 1, options.after];
    const rows = await this.read<ShadowRow>(`SELECT ${SHADOW_COLS} FROM shadows WHERE name = '' AND NOT deleted ${where} ORDER BY device_id LIMIT $1`, params);
    return pageOf(rows.map(toShadow), limit, (s) => s.deviceId);
  }

  async countReportedSoftware(options: { after?: string; limit: number }): Promise<CountPage<SoftwareCount[]>> {
    const limit = checkLimit(options.limit);
    const text = (field: string) => `CASE WHEN jsonb_typeof(state #> '{reported,software,${field}}') = 'string' THEN state #>> '{reported,software,${field}}' END`;
    // a page of shadows by device id (the shadows_classic index), grouped; JSON read by PostgreSQL
    const rows = await this.read<{ sw_name: string | null; sw_version: string | null; sw_status: string | null; devices: string; last: string }>(
      `SELECT sw_name, sw_version, sw_status, COUNT(*) AS devices, MAX(device_id) AS last FROM (
        SELECT device_id, ${text('name')} AS sw_name, ${text('version')} AS sw_version, ${text('status')} AS sw_status
        FROM shadows WHERE name = '' AND NOT deleted AND device_id > $1 ORDER BY device_id LIMIT $2
      ) page GROUP BY sw_name, sw_version, sw_status`,
      [options.after ?? '', limit],
    );
    return countPage(
      rows.map((r) => ({ name: r.sw_name, version: r.sw_version, status: r.sw_status, devices: Number(r.devices) })),
      rows,
      limit,
    );
  }

  async createDevice(record: DeviceRecord): Promise<void> {
    const params = deviceParams(record);
    await this.write(async (c) => {
      const r = await c.query(`INSERT INTO devices (${DEVICE_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (device_id) DO NOTHING`, params);
      if (r.rowCount !== 1) throw new UpdraftError('CONFLICT', `device ${record.deviceId} is already registered`);
    });
  }

  getDevice(deviceId: string): Promise<DeviceRecord | undefined> {
    return this.deviceReads.get([deviceId]);
  }

  async deleteDevice(deviceId: string, version: number, deletedAt = Date.now()): Promise<boolean> {
    return this.write(async (c) => {
      if ((await c.query('DELETE FROM devices WHERE device_id = $1 AND version = $2', [deviceId, version])).rowCount !== 1) return false;
      await c.query('INSERT INTO deleted_devices (device_id, deleted_at) VALUES ($1, $2) ON CONFLICT (device_id) DO UPDATE SET deleted_at = EXCLUDED.deleted_at', [deviceId, deletedAt]);
      // in the same transaction: a deleted device's certificates are never left unrevoked. All of
      // them, whatever their notAfter: by deletedAt (this instance's clock) a clock ahead left
      // those expiring within its lead unrevoked, still admitted (QA 2026-12-07); which are
      // listed is the CRL's business (pki/revocation-list.ts listedAfter), and an expired one
      // revoked costs nothing (its row is pruned as before)
      await c.query('UPDATE device_certificates SET revoked_at = $1 WHERE device_id = $2 AND revoked_at IS NULL', [deletedAt, deviceId]);
      return true;
    });
  }

  async listUnrecordedDeletions(): Promise<number> {
    return this.write(async (c) => (await c.query(UNRECORDED_DELETIONS_SQL)).rowCount ?? 0);
  }

  async expireDeletedDevices(before: number, limit: number): Promise<{ devices: string[]; tombstones: number }> {
    checkLimit(limit);
    return this.write(async (c) => {
      // the records first, locked, so that two instances never remove the same ones twice
      const gone = await c.query<{ device_id: string; deleted_at: string }>(
        `DELETE FROM deleted_devices WHERE device_id IN (SELECT device_id FROM deleted_devices WHERE deleted_at < $1 ORDER BY deleted_at, device_id LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING device_id, deleted_at`,
        [before, limit],
      );
      // oldest deletion first, as listed
      const devices = gone.rows.sort((a, b) => Number(a.deleted_at) - Number(b.deleted_at) || (a.device_id < b.device_id ? -1 : 1)).map((r) => r.device_id);
      if (devices.length === 0) return { devices, tombstones: 0 };
      // an id registered again keeps its shadows' versions: only its record went
      const removed = await c.query('DELETE FROM shadows s WHERE s.device_id = ANY($1::text[]) AND s.deleted AND NOT EXISTS (SELECT 1 FROM devices d WHERE d.device_id = s.device_id)', [devices]);
      return { devices, tombstones: removed.rowCount ?? 0 };
    });
  }

  async listShadowNames(deviceId: string): Promise<string[]> {
    const rows = await this.read<{ name: string }>('SELECT name FROM shadows WHERE device_id = $1 AND NOT deleted ORDER BY name COLLATE "C"', [deviceId]);
    return rows.map((r) => r.name);
  }

  async listShadowTombstones(deviceId: string): Promise<{ name: string; version: number; timestamp: number }[]> {
    const rows = await this.read<{ name: string; version: string | number; timestamp: string | number }>('SELECT name, version, timestamp FROM shadows WHERE device_id = $1 AND deleted ORDER BY timestamp, name COLLATE "C"', [deviceId]);
    return rows.map((r) => ({ name: r.name, version: Number(r.version), timestamp: Number(r.timestamp) }));
  }

  async removeShadowTombstone(deviceId: string, name: string, version: number): Promise<boolean> {
    return this.write(async (c) => (await c.query('DELETE FROM shadows WHERE device_id = $1 AND name = $2 AND deleted AND version = $3', [deviceId, name, version])).rowCount === 1);
  }

  async updateDevice(record: DeviceRecord): Promise<boolean> {
    const d = record;
    // created_at never changes
    const params = [JSON.stringify(d.attributes), JSON.stringify(d.tags), d.secretHash ?? null, d.brokerHash ?? null, d.revoked, d.updatedAt, d.version, d.deviceId, d.version - 1];
    return this.write(async (c) => {
      const r = await c.query('UPDATE devices SET attributes = $1, tags = $2, secret_hash = $3, broker_hash = $4, revoked = $5, updated_at = $6, version = $7 WHERE device_id = $8 AND version = $9', params);
      return r.rowCount === 1;
    });
  }

  async listDevices(options: { after?: string; limit: number; revokedOnly?: boolean }): Promise<Page<DeviceRecord>> {
    const limit = checkLimit(options.limit);
    const conditions = [...(options.after === undefined ? [] : ['device_id > $2']), ...(options.revokedOnly ? ['revoked'] : [])];
    const where = conditions.length === 0 ? '' : `WHERE ${conditions.join(' AND ')}`;
    const params: unknown[] = options.after === undefined ? [limit + 1] : [limit + 1, options.after];
    const rows = await this.read<DeviceRow>(`SELECT ${DEVICE_COLS} FROM devices ${where} ORDER BY device_id LIMIT $1`, params);
    return pageOf(rows.map(toDevice), limit, (d) => d.deviceId);
  }

  async recordDeviceCertificate(r: DeviceCertificateRecord): Promise<void> {
    await this.write(async (c) => {
      // a certificate whose device is gone by now (deleted while it was issued) is recorded revoked
      const present = (await c.query('SELECT 1 FROM devices WHERE device_id = $1 FOR KEY SHARE', [r.deviceId])).rowCount === 1;
      await c.query(
        'INSERT INTO device_certificates (serial, device_id, issuer, issuer_subject, issued_at, not_after, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7::bigint) ON CONFLICT (serial) DO NOTHING',
        [r.serial, r.deviceId, r.issuer, r.issuerSubject, r.issuedAt, r.notAfter, present ? null : Date.now()],
      );
    });
  }

  async listRevokedCertificates(nowMs: number): Promise<DeviceCertificateRecord[]> {
    const rows = await this.read<CertificateRow>('SELECT serial, device_id, issuer, issuer_subject, issued_at, not_after, revoked_at FROM device_certificates WHERE revoked_at IS NOT NULL AND not_after > $1 ORDER BY serial', [nowMs]);
    return rows.map(toCertificate);
  }

  async listRevokedEntries(nowMs: number): Promise<RevokedEntry[]> {
    // pages by serial (the primary key): each a short query, and the rows of one page parsed at a time
    const out: RevokedEntry[] = [];
    let after = '';
    for (;;) {
      const rows = await this.read<{ serial: string; issuer: string; not_after: string; revoked_at: string }>(
        'SELECT serial, issuer, not_after, revoked_at FROM device_certificates WHERE serial > $2 AND revoked_at IS NOT NULL AND not_after > $1 ORDER BY serial LIMIT $3',
        [nowMs, after, REVOKED_PAGE],
      );
      for (const r of rows) out.push({ serial: r.serial, issuer: r.issuer, notAfter: Number(r.not_after), revokedAt: Number(r.revoked_at) });
      if (rows.length < REVOKED_PAGE) return out;
      after = rows[rows.length - 1]!.serial;
    }
  }

  async revocationStamp(nowMs: number): Promise<string> {
    const [r] = await this.read<{ n: string; first: string | null; last: string | null }>(REVOCATION_STAMP_SQL, [nowMs]);
    return `${r!.n}:${r!.first ?? ''}:${r!.last ?? ''}`;
  }

  async pruneExpiredCertificates(before: number, limit: number): Promise<number> {
    checkLimit(limit);
    return this.write(async (c) => (await c.query('DELETE FROM device_certificates WHERE serial IN (SELECT serial FROM device_certificates WHERE not_after < $1 ORDER BY not_after LIMIT $2 FOR UPDATE SKIP LOCKED)', [before, limit])).rowCount ?? 0);
  }

  async countDevices(options: { after?: string; limit: number }): Promise<CountPage<{ registered: number; revoked: number }>> {
    const limit = checkLimit(options.limit);
    const rows = await this.read<{ devices: string; revoked: string; last: string }>(
      `SELECT COUNT(*) AS devices, COUNT(*) FILTER (WHERE revoked) AS revoked, MAX(device_id) AS last FROM (
        SELECT device_id, revoked FROM devices WHERE device_id > $1 ORDER BY device_id LIMIT $2
      ) page HAVING COUNT(*) > 0`,
      [options.after ?? '', limit],
    );
    return countPage({ registered: Number(rows[0]?.devices ?? 0), revoked: Number(rows[0]?.revoked ?? 0) }, rows, limit);
  }

  async putArtifact(record: ArtifactRecord): Promise<void> {
    const params = [record.name, record.version, record.sha256, record.size, record.createdAt, record.signature ?? null, compatibilityColumn(record)];
    await this.write(async (c) => {
      const r = await c.query(`INSERT INTO artifacts (${ARTIFACT_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (name, version) DO NOTHING`, params);
      if (r.rowCount !== 1) throw new UpdraftError('CONFLICT', `Artifact ${record.name}@${record.version} already exists; publish a new version instead`);
    });
  }

  getArtifact(name: string, version: string): Promise<ArtifactRecord | undefined> {
    return this.artifactReads.get([name, version]);
  }

  async listArtifacts(options: { name?: string; after?: string; limit: number }): Promise<Page<ArtifactRecord>> {
    const limit = checkLimit(options.limit);
    const where: string[] = [];
    const args: unknown[] = [limit + 1];
    if (options.name !== undefined) {
      args.push(options.name);
      where.push(`name = $${args.length}`);
    }
    if (options.after !== undefined) {
      const c = artifactCursor(options.after);
      args.push(c.at, c.seq);
      where.push(`(created_at, seq) < ($${args.length - 1}, $${args.length})`);
    }
    // seq breaks ties between artifacts created in the same millisecond: later insert first
    const rows = await this.read<ArtifactRow & { seq: string }>(`SELECT seq, ${ARTIFACT_COLS} FROM artifacts ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at DESC, seq DESC LIMIT $1`, args);
    const page = pageOf(rows, limit, (r) => `${r.created_at}:${r.seq}`);
    return { ...page, items: page.items.map(toArtifact) };
  }

  async deleteArtifact(name: string, version: string): Promise<{ deleted?: ArtifactRecord; activeJobs: string[] }> {
    return this.write(async (c) => {
      // every check before the first write: a write that throws must have written nothing
      const active = await c.query<{ job_id: string }>(`SELECT job_id FROM jobs WHERE artifact_name = $1 AND artifact_version = $2 AND status IN (${ACTIVE_JOB_SQL}) ORDER BY created_at LIMIT 10`, [name, version]);
      const activeJobs = active.rows.map((r) => r.job_id);
      if (activeJobs.length > 0) return { activeJobs };
      const gone = await c.query<ArtifactRow>(`DELETE FROM artifacts WHERE name = $1 AND version = $2 RETURNING ${ARTIFACT_COLS}`, [name, version]);
      return gone.rows[0] ? { deleted: toArtifact(gone.rows[0]), activeJobs } : { activeJobs };
    });
  }

  /**
   * A session-level advisory lock on the artifact, held while `fn` runs (a large job is written
   * for seconds, in pieces): shared for a creation, exclusive for a deletion, tried without
   * waiting. The locks of an instance live on one connection of their own, outside the pool
   * (a pooled one held by each of many concurrent creations would starve their own writes).
   * An instance that dies, or loses that connection, loses its locks with the session.
   */
  async withArtifactLock<T>(name: string, version: string, kind: 'create' | 'delete', fn: () => Promise<T>): Promise<{ ran: true; value: T } | { ran: false }> {
    if (!this.pool) throw this.notOpen();
    const key = `updraft-artifact:${name}@${version}`;
    const [lock, unlock] = kind === 'create' ? ['pg_try_advisory_lock_shared', 'pg_advisory_unlock_shared'] : ['pg_try_advisory_lock', 'pg_advisory_unlock'];
    let client: pg.Client;
    let got: boolean;
    try {
      client = await this.lockConnection();
      got = (await this.lockQuery<{ ok: boolean }>(client, `SELECT ${lock}(hashtextextended($1, 0)) AS ok`, [key])).rows[0]?.ok === true;
    } catch (err) {
      throw this.fault(err);
    }
    if (!got) return { ran: false };
    try {
      return { ran: true, value: await fn() };
    } finally {
      // a lost connection took its locks with it
      await this.lockQuery(client, `SELECT ${unlock}(hashtextextended($1, 0))`, [key]).catch(() => undefined);
    }
  }

  /** The connection that holds this instance's artifact locks, opened when first needed and again after it is lost. */
  private lockConnection(): Promise<pg.Client> {
    if (this.locks) return this.locks;
    const client = new pg.Client({
      connectionString: this.deps.url,
      statement_timeout: this.statementTimeoutMs,
      connectionTimeoutMillis: this.connectTimeoutMs,
      // its queries never wait (pg_try_advisory_lock): no answer is a silent database (lockQuery)
      ...this.queryTimeout(),
    });
    const connected = client.connect().then(() => client);
    const forget = () => {
      if (this.locks === connected) this.locks = undefined;
      if (this.lockClient === client) this.lockClient = undefined;
    };
    void connected.then(() => {
      this.track(client);
      if (this.locks === connected) this.lockClient = client;
    }, () => undefined);
    // ended for being idle, it reports its end again ('Connection terminated unexpectedly'): not a disruption either
    let idleEnded = false;
    client.on('error', (err) => {
      if (idleEnded) return;
      this.logger.warn('PostgreSQL connection of the artifact locks lost: the deletions and job creations in progress here are no longer guarded against other instances', { error: err.message });
      forget();
      if (endedIdle(err)) idleEnded = true;
      else this.disrupted(`the artifact locks' connection was lost: ${err.message}`);
    });
    client.on('end', forget);
    connected.catch(forget);
    this.locks = connected;
    return connected;
  }

  /**
   * A query on the artifact locks' connection. One left unanswered within queryTimeoutMs
   * closes that connection at once (not with the goodbye a silent server never answers) and
   * forgets it, so the next lock opens a fresh session; PostgreSQL frees the old session's
   * locks when it ends it (once the close reaches it, or by its TCP keepalive).
   */
  private async lockQuery<R extends pg.QueryResultRow>(client: pg.Client, sql: string, params: unknown[]): Promise<pg.QueryResult<R>> {
    try {
      return await client.query<R>(sql, params);
    } catch (err) {
      if (timeoutIn(err) === QUERY_TIMEOUT && this.lockClient === client) {
        this.lockClient = undefined;
        this.locks = undefined;
        this.logger.warn(
          `PostgreSQL did not answer the artifact locks' connection within ${this.queryTimeoutMs} ms (a network partition or a stuck server): closed; the deletions and job creations in progress here are no longer guarded against other instances, and the next one opens a new connection`,
        );
        void client.end().catch(() => undefined);
        client.connection.stream.destroy();
      }
      throw err;
    }
  }

  async countArtifactsWithBlob(sha256: string): Promise<number> {
    const rows = await this.read<{ n: string }>('SELECT COUNT(*) AS n FROM artifacts WHERE sha256 = $1', [sha256]);
    return Number(rows[0]?.n ?? 0);
  }

  async createJob(job: JobRecord, executions: ExecutionRecord[], claim?: IdempotencyClaim): Promise<void> {
    if (executions.length > JOB_CHUNK) return createJobInPieces(this.jobCreation, job, executions, claim);
    assertDistinctDevices(job.jobId, executions);
    const jobParams = jobRowParams(job);
    await this.write(async (c) => {
      // every check before the first write: a write that throws must have written nothing
      await lockJobId(c, job.jobId);
      if (await creationMarked(c, job.jobId)) throw jobExists(job.jobId);
      await assertKeyFree(c, claim, true);
      await insertJobRow(c, job.jobId, jobParams);
      if (claim) await claimJobKey(c, job.jobId, claim);
      await insertExecutions(c, executions);
    });
  }

  async findIdempotencyKey(key: string): Promise<KeyHolder | undefined> {
    const rows = await this.read<{ job_id: string; request_fingerprint: string; in_progress: boolean }>(
      'SELECT job_id, request_fingerprint, false AS in_progress FROM jobs WHERE idempotency_key = $1 UNION ALL SELECT job_id, request_fingerprint, true FROM job_creations WHERE idempotency_key = $1',
      [key],
    );
    // a job before a creation (finish drops the marker with the job row's write: never both, but)
    const row = rows.find((r) => !r.in_progress) ?? rows[0];
    return row ? { key, fingerprint: row.request_fingerprint, jobId: row.job_id, inProgress: row.in_progress } : undefined;
  }

  /** The steps of a job created in pieces (job-creation.ts), each one write of the group commit. */
  private readonly jobCreation: JobCreationSteps = {
    begin: (jobId, claim) =>
      this.write(async (c) => {
        await lockJobId(c, jobId);
        const taken = await c.query('SELECT 1 FROM jobs WHERE job_id = $1 UNION ALL SELECT 1 FROM job_creations WHERE job_id = $1', [jobId]);
        if (taken.rowCount) throw jobExists(jobId);
        await assertKeyFree(c, claim, true);
        await c.query(`INSERT INTO job_creations (job_id, touched_at, idempotency_key, request_fingerprint) VALUES ($1, ${DB_NOW_MS}, $2, $3)`, [jobId, claim?.key ?? null, claim?.fingerprint ?? null]);
      }),
    insert: (jobId, executions) =>
      this.write(async (c) => {
        // a device of an earlier piece: refused before writing (a unique violation would abort the batch)
        const ids = executions.map((e) => e.deviceId);
        const twice = await c.query<{ device_id: string }>('SELECT device_id FROM executions WHERE job_id = $1 AND device_id = ANY($2::text[]) LIMIT 1', [jobId, ids]);
        if (twice.rows[0]) throw new UpdraftError('BAD_REQUEST', `device ${twice.rows[0].device_id} is listed twice in job ${jobId}`);
        await insertExecutions(c, executions);
        await c.query(`UPDATE job_creations SET touched_at = ${DB_NOW_MS} WHERE job_id = $1`, [jobId]);
      }),
    finish: (job, claim) => {
      const jobParams = jobRowParams(job);
      return this.write(async (c) => {
        await lockJobId(c, job.jobId);
        if (!(await creationMarked(c, job.jobId))) throw new UpdraftError('INTERNAL', `The creation of job ${job.jobId} was abandoned meanwhile`);
        // its own marker holds the key: only a job may hold it besides
        await assertKeyFree(c, claim, false);
        await insertJobRow(c, job.jobId, jobParams);
        if (claim) await claimJobKey(c, job.jobId, claim);
        await c.query('DELETE FROM job_creations WHERE job_id = $1', [job.jobId]);
      });
    },
    abandon: async (jobId) => {
      // in pieces too: one transaction deleting a million rows would hold the group commit
      for (;;) {
        // a store stopping leaves the rest, marker included, to the next sweep
        if (this.closing) throw this.notOpen();
        const deleted = await this.write(async (c) => {
          const r = await c.query('DELETE FROM executions WHERE job_id = $1 AND device_id IN (SELECT device_id FROM executions WHERE job_id = $1 LIMIT $2)', [jobId, JOB_CHUNK]);
          return r.rowCount ?? 0;
        });
        if (deleted === 0) break;
      }
      await this.write(async (c) => {
        await c.query('DELETE FROM execution_counts WHERE job_id = $1', [jobId]);
        await c.query('DELETE FROM job_creations WHERE job_id = $1', [jobId]);
      });
    },
  };

  /**
   * Removes job creations an instance left unfinished: their markers nobody touched for
   * ABANDONED_AFTER_MS, by the database's clock. At start, and every `abandonedSweepMs` while
   * the store runs: an instance restarted at once (systemd, Kubernetes) finds the marker of the
   * creation its crash cut still fresh, and with a sweep at start only, its executions stayed
   * until some instance started 10 minutes later (QA: 5,000 of a job that does not exist).
   *
   * Why 10 minutes, not less: the instances share the table, and any of them may be creating a
   * job right now. A live creation touches its marker with every piece it commits, and a piece
   * that cannot commit fails within statementTimeoutMs (30 s), failing the creation, which
   * then removes itself; so a marker untouched for 10 minutes belongs to an instance that died.
   * Nothing else tells a dead instance from a slow one, and removing a live creation's pieces
   * under it would lose the job it is writing.
   */
  private async removeAbandonedCreations(): Promise<void> {
    const stale = await this.read<{ job_id: string }>(`SELECT job_id FROM job_creations WHERE touched_at < ${DB_NOW_MS} - $1::bigint`, [ABANDONED_AFTER_MS]);
    for (const { job_id: jobId } of stale) {
      await this.jobCreation.abandon(jobId);
      this.logger.warn('removed a job whose creation was interrupted, or the rest of a deleted one', { jobId });
    }
  }

  /** One sweep of abandoned creations; a failure is logged (the next sweep tries again), never thrown. */
  private async sweep(): Promise<void> {
    try {
      await this.removeAbandonedCreations();
    } catch (err) {
      if (!this.closing) this.logger.warn('cannot remove abandoned job creations; the next sweep tries again', { error: (err as Error).message });
    }
  }

  /** Sweeps `abandonedSweepMs` after the last sweep ended (so sweeps never overlap), until stop(). */
  private scheduleSweep(): void {
    const every = this.deps.abandonedSweepMs ?? DEFAULTS.abandonedSweepMs;
    if (every <= 0 || this.closing) return;
    this.sweepTimer = setTimeout(() => {
      this.sweepTimer = undefined;
      this.sweeping = this.sweep().finally(() => {
        this.sweeping = undefined;
        this.scheduleSweep();
      });
    }, every);
    // the sweep alone must not keep the process alive
    this.sweepTimer.unref();
  }

  async getJob(jobId: string, options: { omitSpec?: boolean } = {}): Promise<JobRecord | undefined> {
    const rows = await this.read<JobRow>(`SELECT ${options.omitSpec ? JOB_COLS_NO_SPEC : JOB_COLS} FROM jobs WHERE job_id = $1`, [jobId]);
    return rows[0] && toJob(rows[0]);
  }

  async getExecution(jobId: string, deviceId: string): Promise<ExecutionRecord | undefined> {
    const rows = await this.read<ExecutionRow>(`SELECT ${EXEC_COLS} FROM executions WHERE job_id = $1 AND device_id = $2`, [jobId, deviceId]);
    return rows[0] && toExecution(rows[0]);
  }

  async getJobs(jobIds: readonly string[], options: { omitSpec?: boolean } = {}): Promise<Map<string, JobRecord>> {
    const jobs = new Map<string, JobRecord>();
    const ids = [...new Set(jobIds)];
    for (let start = 0; start < ids.length; start += READ_CHUNK) {
      const rows = await this.read<JobRow>(
        `SELECT ${options.omitSpec ? JOB_READ_COLS_NO_SPEC : JOB_READ_COLS} FROM unnest($1::text[]) AS k (job_id) JOIN jobs j ON j.job_id = k.job_id COLLATE "C"`,
        [ids.slice(start, start + READ_CHUNK)],
      );
      for (const row of rows) jobs.set(row.job_id, toJob(row));
    }
    return jobs;
  }

  async getExecutions(keys: readonly { jobId: string; deviceId: string }[]): Promise<(ExecutionRecord | undefined)[]> {
    const found: (ExecutionRecord | undefined)[] = new Array(keys.length).fill(undefined);
    for (let start = 0; start < keys.length; start += READ_CHUNK) {
      const chunk = keys.slice(start, start + READ_CHUNK);
      const rows = await this.read<ExecutionRow & { i: string }>(
        `SELECT k.i, ${prefixed('e', EXEC_COLS)} FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS k (job_id, device_id, i)
          JOIN executions e ON e.job_id = k.job_id COLLATE "C" AND e.device_id = k.device_id COLLATE "C"`,
        [chunk.map((k) => k.jobId), chunk.map((k) => k.deviceId)],
      );
      for (const row of rows) found[start + Number(row.i) - 1] = toExecution(row);
    }
    return found;
  }

  async updateExecution(record: ExecutionRecord): Promise<boolean> {
    const r = record;
    return this.bulk(EXECUTION_UPDATE, rowKey(r.jobId, r.deviceId), [
      r.jobId,
      r.deviceId,
      r.version - 1,
      r.status,
      JSON.stringify(r.details),
      r.queuedAt,
      r.updatedAt,
      r.version,
      r.wave ?? 0,
      r.attempt ?? 1,
      r.dispatchedAt ?? null,
      r.dueAt ?? null,
      failedAt(r),
    ]);
  }

  async listExecutions(filter: { jobId?: string; deviceId?: string }): Promise<ExecutionRecord[]> {
    const { jobId, deviceId } = filter;
    let rows: ExecutionRow[];
    if (jobId !== undefined && deviceId !== undefined) {
      rows = await this.read<ExecutionRow>(`SELECT ${EXEC_COLS} FROM executions WHERE job_id = $1 AND device_id = $2`, [jobId, deviceId]);
    } else if (jobId !== undefined) {
      rows = await this.read<ExecutionRow>(`SELECT ${EXEC_COLS} FROM executions WHERE job_id = $1 ORDER BY device_id`, [jobId]);
    } else if (deviceId !== undefined) {
      rows = await this.read<ExecutionRow>(`SELECT ${EXEC_COLS} FROM executions WHERE device_id = $1 ORDER BY queued_at DESC, job_id DESC`, [deviceId]);
    } else {
      rows = await this.read<ExecutionRow>(`SELECT ${EXEC_COLS} FROM executions ORDER BY queued_at DESC, job_id, device_id`, []);
    }
    return rows.map(toExecution);
  }

  async updateJob(job: JobRecord & { version: number }): Promise<boolean> {
    const params = [job.status, job.description ?? null, json(job.progress), job.updatedAt ?? null, job.version, job.jobId, job.version - 1];
    return this.write(async (c) => {
      // a job created without a version has version 1; no spec: it is fixed at creation (StateStore.updateJob)
      const r = await c.query(
        'UPDATE jobs SET status = $1, description = $2, progress = $3, updated_at = $4, version = $5 WHERE job_id = $6 AND COALESCE(version, 1) = $7',
        params,
      );
      return r.rowCount === 1;
    });
  }

  async listJobs(options: { status?: JobStatus[]; after?: string; limit: number; omitSpec?: boolean }): Promise<Page<JobRecord>> {
    const limit = checkLimit(options.limit);
    const where: string[] = [];
    const args: unknown[] = [limit + 1];
    if (options.status && options.status.length > 0) {
      args.push(options.status);
      where.push(`status = ANY($${args.length}::text[])`);
    }
    if (options.after !== undefined) {
      const c = timeCursor(options.after);
      args.push(c.at, c.jobId);
      where.push(`(created_at, job_id) < ($${args.length - 1}, $${args.length})`);
    }
    const rows = await this.read<JobRow>(`SELECT ${options.omitSpec ? JOB_COLS_NO_SPEC : JOB_COLS} FROM jobs ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at DESC, job_id DESC LIMIT $1`, args);
    return pageOf(rows.map(toJob), limit, (j) => `${j.createdAt}:${j.jobId}`);
  }

  async listDeviceExecutions(deviceId: string, options: { after?: string; limit: number }): Promise<Page<ExecutionRecord>> {
    const limit = checkLimit(options.limit);
    const args: unknown[] = [deviceId, limit + 1];
    let where = 'device_id = $1';
    if (options.after !== undefined) {
      const c = timeCursor(options.after);
      args.push(c.at, c.jobId);
      where += ' AND (queued_at, job_id) < ($3, $4)';
    }
    const rows = await this.read<ExecutionRow>(`SELECT ${EXEC_COLS} FROM executions WHERE ${where} AND ${JOB_EXISTS} ORDER BY queued_at DESC, job_id DESC LIMIT $2`, args);
    return pageOf(rows.map(toExecution), limit, (e) => `${e.queuedAt}:${e.jobId}`);
  }

  async addExecutions(executions: ExecutionRecord[]): Promise<number> {
    if (executions.length === 0) return 0;
    const jobIds = [...new Set(executions.map((e) => e.jobId))];
    return this.write(async (c) => {
      // only to jobs that exist, locked until the commit: a deletion in flight (deleteJob takes
      // the row FOR UPDATE) is waited for, and its job then found gone; one that comes later
      // waits for these rows and finds them. KEY SHARE: a cancel's update of the row is not held up
      const live = await c.query<{ job_id: string }>('SELECT job_id FROM jobs WHERE job_id = ANY($1::text[]) FOR KEY SHARE', [jobIds]);
      const exists = new Set(live.rows.map((r) => r.job_id));
      const kept = exists.size === jobIds.length ? executions : executions.filter((e) => exists.has(e.jobId));
      if (kept.length === 0) return 0;
      const r = await c.query(`INSERT INTO executions (${EXEC_INSERT_COLS}) SELECT * FROM ${EXEC_ROWS} ON CONFLICT (job_id, device_id) DO NOTHING`, [executionRows(kept)]);
      return r.rowCount ?? 0;
    });
  }

  async listJobExecutions(jobId: string, options: { status?: ExecutionStatus[]; after?: string; limit: number }): Promise<Page<ExecutionRecord>> {
    const limit = checkLimit(options.limit);
    const { sql, args } = jobExecutionsQuery(jobId, options);
    const rows = await this.read<ExecutionRow>(sql, args);
    return pageOf(rows.map(toExecution), limit, (e) => e.deviceId);
  }

  async listFailedBelowAttempt(jobId: string, options: { attemptBelow: number; maxWave: number; after?: string; limit: number }): Promise<Page<ExecutionRecord>> {
    const limit = checkLimit(options.limit);
    const args: unknown[] = [limit + 1, jobId, options.attemptBelow, options.maxWave];
    if (options.after !== undefined) args.push(options.after);
    const rows = await this.read<ExecutionRow>(failedBelowAttemptSql(options.after !== undefined), args);
    return pageOf(rows.map(toExecution), limit, (e) => e.deviceId);
  }

  async nextUndispatched(jobId: string, maxWave: number, limit: number): Promise<ExecutionRecord[]> {
    checkLimit(limit);
    const rows = await this.read<ExecutionRow>(
      `SELECT ${EXEC_COLS} FROM executions WHERE job_id = $1 AND status = 'QUEUED' AND dispatched_at IS NULL AND wave <= $2 ORDER BY wave, device_id LIMIT $3`,
      [jobId, maxWave, limit],
    );
    return rows.map(toExecution);
  }

  async listUndispatchedOfDevice(deviceId: string): Promise<ExecutionRecord[]> {
    const rows = await this.read<ExecutionRow>(`SELECT ${EXEC_COLS} FROM executions WHERE device_id = $1 AND status = 'QUEUED' AND dispatched_at IS NULL AND ${JOB_EXISTS}`, [deviceId]);
    return rows.map(toExecution);
  }

  async listRecentFailures(limit: number, after?: FailureCursor): Promise<FailureRecord[]> {
    checkLimit(limit);
    if (after) checkFailureCursor(after);
    const args = after ? [limit, after.failedAt, after.jobId, after.deviceId] : [limit];
    return (await this.read<ExecutionRow & { failed_at: string }>(recentFailuresSql(after !== undefined), args)).map(toFailure);
  }

  async listLatestOutcomesOfDevices(deviceIds: readonly string[], perDevice: number): Promise<Map<string, OutcomeRecord[]>> {
    checkLimit(perDevice);
    const out = new Map<string, OutcomeRecord[]>();
    const ids = [...new Set(deviceIds)];
    for (let start = 0; start < ids.length; start += READ_CHUNK) {
      for (const row of await this.read<ExecutionRow & { failed_at: string | null }>(LATEST_OUTCOMES_SQL, [ids.slice(start, start + READ_CHUNK), perDevice])) {
        const e = toOutcome(row);
        const held = out.get(e.deviceId);
        if (held) held.push(e);
        else out.set(e.deviceId, [e]);
      }
    }
    // each device's rows newest first, as its subquery read them (a lateral join's order is its rows' per device)
    for (const rows of out.values()) rows.sort((a, b) => b.queuedAt - a.queuedAt || (a.jobId < b.jobId ? 1 : a.jobId > b.jobId ? -1 : 0));
    return out;
  }

  async listDueExecutions(now: number, limit: number): Promise<ExecutionRecord[]> {
    checkLimit(limit);
    const rows = await this.read<ExecutionRow>(`SELECT ${EXEC_COLS} FROM executions WHERE due_at IS NOT NULL AND due_at <= $1 ORDER BY due_at LIMIT $2`, [now, limit]);
    return rows.map(toExecution);
  }

  async deleteJob(jobId: string): Promise<JobDeletion> {
    const outcome = await this.write(async (c): Promise<JobDeletion> => {
      // as a creation of this id would (none can: the row exists), and against another
      // instance's deletion of it; the row locked against any other writer until the commit
      await lockJobId(c, jobId);
      const row = (await c.query<JobRow>(`SELECT ${JOB_COLS_NO_SPEC} FROM jobs WHERE job_id = $1 FOR UPDATE`, [jobId])).rows[0];
      if (!row) return { deleted: false };
      const job = toJob(row);
      if ((ACTIVE_JOB_STATUSES as readonly string[]).includes(job.status)) return { job, deleted: false };
      // its executions not finished (their counts, summed over the shards), and its finished
      // ones that still owe a take-back (a deadline: the deadline index, not the job's rows)
      const counted = await c.query<{ n: string }>(
        `SELECT (SELECT COALESCE(SUM(count), 0) FROM execution_counts WHERE job_id = $1 AND status IN ('QUEUED', 'IN_PROGRESS'))
          + (SELECT COUNT(*) FROM executions WHERE due_at IS NOT NULL AND job_id = $1 AND status NOT IN ('QUEUED', 'IN_PROGRESS')) AS n`,
        [jobId],
      );
      const unfinished = Number(counted.rows[0]?.n ?? 0);
      if (unfinished > 0) return { job, deleted: false, unfinished };
      // the job is gone for every reader from the commit; the marker says its executions are to go
      await c.query('DELETE FROM jobs WHERE job_id = $1', [jobId]);
      await c.query('DELETE FROM job_logs WHERE job_id = $1', [jobId]);
      await c.query(`INSERT INTO job_creations (job_id, touched_at) VALUES ($1, ${DB_NOW_MS}) ON CONFLICT (job_id) DO NOTHING`, [jobId]);
      return { job, deleted: true };
    });
    if (outcome.deleted) {
      // in pieces, as an abandoned creation's; what a failure or a crash leaves, the sweep of stale markers removes
      await this.jobCreation.abandon(jobId).catch((err: unknown) => this.logger.warn('job deleted; its executions are removed by the sweep of abandoned creations', { jobId, error: (err as Error).message }));
    }
    return outcome;
  }

  async listFinishedBefore(before: number, limit: number): Promise<JobRecord[]> {
    const rows = await this.read<JobRow>(
      `SELECT ${JOB_COLS_NO_SPEC} FROM jobs WHERE status NOT IN (${ACTIVE_JOB_SQL}) AND COALESCE(updated_at, created_at) < $1 ORDER BY COALESCE(updated_at, created_at), job_id LIMIT $2`,
      [before, checkLimit(limit)],
    );
    return rows.map(toJob);
  }

  async countExecutions(jobId: string): Promise<ExecutionCount[]> {
    const rows = await this.read<{ wave: number; status: string; count: string; dispatched: string }>(
      // execution_counts: kept by triggers (see PG_MIGRATIONS), summed over its shards
      `SELECT wave, status, SUM(count) AS count, COALESCE(SUM(count) FILTER (WHERE dispatched), 0) AS dispatched FROM execution_counts
       WHERE job_id = $1 GROUP BY wave, status HAVING SUM(count) > 0 ORDER BY wave, status COLLATE "C"`,
      [jobId],
    );
    return rows.map((r) => ({ wave: r.wave, status: r.status as ExecutionStatus, count: Number(r.count), dispatched: Number(r.dispatched) }));
  }

  async createGroup(group: GroupRecord): Promise<void> {
    const g = group;
    // the members are rows of group_members; the list column stays '[]' (PG_MIGRATIONS)
    const params = [g.name, g.kind, '[]', g.query ?? null, g.description ?? null, g.createdAt, g.updatedAt, g.version, new Set(g.devices).size];
    await this.write(async (c) => {
      const r = await c.query(`INSERT INTO device_groups (${GROUP_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (name) DO NOTHING`, params);
      if (r.rowCount !== 1) throw new UpdraftError('CONFLICT', `group ${g.name} already exists`);
      await c.query(ADD_GROUP_MEMBERS, [g.name, g.devices]);
    });
  }

  async getGroup(name: string, options: { omitDevices?: boolean } = {}): Promise<GroupRecord | undefined> {
    const rows = await this.read<GroupRow>(`SELECT ${GROUP_HEAD_COLS} FROM device_groups WHERE name = $1`, [name]);
    if (!rows[0] || options.omitDevices) return rows[0] && toGroup(rows[0]);
    const members = await this.read<{ device_id: string }>('SELECT device_id FROM group_members WHERE name = $1 ORDER BY device_id', [name]);
    // read apart from the head: a change committed in between shows in the list, not the size
    return { ...toGroup(rows[0]), devices: members.map((m) => m.device_id), size: members.length };
  }

  async changeGroupMembers(name: string, change: GroupMembersChange): Promise<GroupRecord> {
    return this.write(async (c) => {
      // the row lock orders concurrent changes of one group
      const head = (await c.query<GroupRow>(`SELECT ${GROUP_HEAD_COLS} FROM device_groups WHERE name = $1 FOR UPDATE`, [name])).rows[0];
      checkMembersChange(name, head?.kind, head && Number(head.size), change);
      // a savepoint of its own: a refusal must undo this write only, and the batch it shares
      // a transaction with commits the other writes' outcomes (postgres-group-commit.ts)
      await c.query('SAVEPOINT group_members_change');
      try {
        const removed = (await c.query('DELETE FROM group_members WHERE name = $1 AND device_id = ANY($2::text[])', [name, change.remove])).rowCount ?? 0;
        const added = (await c.query(ADD_GROUP_MEMBERS, [name, change.add])).rowCount ?? 0;
        const changed = (await c.query<GroupRow>(`UPDATE device_groups SET updated_at = $2, version = version + 1, size = size + $3 WHERE name = $1 RETURNING ${GROUP_HEAD_COLS}`, [name, change.updatedAt, added - removed])).rows[0]!;
        checkMembersChange(name, changed.kind, Number(changed.size), change);
        await c.query('RELEASE SAVEPOINT group_members_change');
        return toGroup(changed);
      } catch (err) {
        await c.query('ROLLBACK TO SAVEPOINT group_members_change');
        throw err;
      }
    });
  }

  async listGroupMembers(name: string, options: { after?: string; limit: number }): Promise<Page<string>> {
    const rows = await this.read<{ device_id: string }>('SELECT device_id FROM group_members WHERE name = $1 AND device_id > $2 ORDER BY device_id LIMIT $3', [name, options.after ?? '', options.limit + 1]);
    return idPage(rows.map((r) => r.device_id), options.limit);
  }

  async deleteGroup(name: string): Promise<boolean> {
    return this.write(async (c) => {
      await c.query('DELETE FROM group_members WHERE name = $1', [name]);
      return (await c.query('DELETE FROM device_groups WHERE name = $1', [name])).rowCount === 1;
    });
  }

  async isGroupMember(name: string, deviceId: string): Promise<boolean> {
    return (await this.read('SELECT 1 FROM group_members WHERE name = $1 AND device_id = $2', [name, deviceId])).length > 0;
  }

  async getSetting(key: string): Promise<string | undefined> {
    return (await this.read<{ value: string }>('SELECT value FROM settings WHERE key = $1', [key]))[0]?.value;
  }

  async putSetting(key: string, value: string): Promise<void> {
    await this.write((c) => c.query('INSERT INTO settings (key, value, updated_at) VALUES ($1, $2, $3) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, updated_at = EXCLUDED.updated_at', [key, value, Date.now()]));
  }

  async addSetting(key: string, value: string): Promise<boolean> {
    return this.write(async (c) => (await c.query('INSERT INTO settings (key, value, updated_at) VALUES ($1, $2, $3) ON CONFLICT (key) DO NOTHING', [key, value, Date.now()])).rowCount === 1);
  }

  async deleteSetting(key: string): Promise<boolean> {
    return this.write(async (c) => (await c.query('DELETE FROM settings WHERE key = $1', [key])).rowCount === 1);
  }

  async listSettings(prefix: string): Promise<{ key: string; value: string }[]> {
    return this.read<{ key: string; value: string }>('SELECT key, value FROM settings WHERE left(key, length($1)) = $1 ORDER BY key COLLATE "C"', [prefix]);
  }

  async putJobLog(record: JobLogRecord, maxPerJob: number): Promise<boolean> {
    // a device that sent a log for the job replaces it; another is kept while the job has fewer
    // than the bound (concurrent uploads to several instances may pass it by a few)
    return this.write(async (c) => {
      const r = await c.query(
        `INSERT INTO job_logs (job_id, device_id, agent_job_id, received_at, dropped, line_count, lines)
         SELECT $1, $2, $3, $4, $5, $6, $7
         WHERE EXISTS (SELECT 1 FROM job_logs WHERE job_id = $1 AND device_id = $2) OR (SELECT count(*) FROM job_logs WHERE job_id = $1) < $8
         ON CONFLICT (job_id, device_id) DO UPDATE SET agent_job_id = EXCLUDED.agent_job_id, received_at = EXCLUDED.received_at, dropped = EXCLUDED.dropped, line_count = EXCLUDED.line_count, lines = EXCLUDED.lines`,
        [...jobLogParams(record), maxPerJob],
      );
      return r.rowCount === 1;
    });
  }

  async getJobLog(jobId: string, deviceId: string): Promise<JobLogRecord | undefined> {
    const row = (await this.read<JobLogRow>('SELECT job_id, device_id, agent_job_id, received_at, dropped, line_count, lines FROM job_logs WHERE job_id = $1 AND device_id = $2', [jobId, deviceId]))[0];
    return row && toJobLog(row);
  }

  async listDeviceJobLogs(deviceId: string, limit: number, jobIds?: readonly string[]): Promise<JobLogSummary[]> {
    if (jobIds !== undefined && jobIds.length === 0) return [];
    const rows =
      jobIds === undefined
        ? await this.read<JobLogRow>('SELECT job_id, device_id, agent_job_id, received_at, dropped, line_count FROM job_logs WHERE device_id = $1 ORDER BY received_at DESC LIMIT $2', [deviceId, limit])
        : await this.read<JobLogRow>('SELECT job_id, device_id, agent_job_id, received_at, dropped, line_count FROM job_logs WHERE device_id = $1 AND job_id = ANY($3::text[]) ORDER BY received_at DESC LIMIT $2', [deviceId, limit, jobIds]);
    return rows.map(toJobLogSummary);
  }

  async listJobLogs(jobId: string, options: { after?: string; limit: number }): Promise<Page<JobLogSummary>> {
    const rows = await this.read<JobLogRow>('SELECT job_id, device_id, agent_job_id, received_at, dropped, line_count FROM job_logs WHERE job_id = $1 AND device_id > $2 ORDER BY device_id LIMIT $3', [jobId, options.after ?? '', options.limit + 1]);
    return jobLogPage(rows, options.limit);
  }

  async listGroups(): Promise<GroupRecord[]> {
    const rows = await this.read<GroupRow>(`SELECT ${GROUP_HEAD_COLS} FROM device_groups ORDER BY name`, []);
    return rows.map(toGroup);
  }

  async databaseTime(): Promise<number> {
    // clock_timestamp(): the time now, not the transaction's start (now())
    const [row] = await this.read<{ ms: number }>('SELECT (extract(epoch FROM clock_timestamp()) * 1000)::float8 AS ms', []);
    return row!.ms;
  }

  /** Runs a read on any pooled connection. */
  private async read<R extends pg.QueryResultRow>(sql: string, params: unknown[]): Promise<R[]> {
    const pool = this.pool;
    if (!pool) throw this.notOpen();
    try {
      return (await pool.query<R>(sql, params)).rows;
    } catch (err) {
      throw this.fault(err);
    }
  }

  /** Queues a write for the next group commit. */
  private write<T>(run: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    if (!this.writes) return Promise.reject(this.notOpen());
    return this.writes.enqueue(run).catch((err: unknown) => Promise.reject(this.fault(err)));
  }

  /** Queues a bulk write (one statement for every write of its kind in the batch). */
  private bulk(kind: PgBulkKind, key: string, row: unknown[]): Promise<boolean> {
    if (!this.writes) return Promise.reject(this.notOpen());
    return this.writes.enqueueBulk(kind, key, row).catch((err: unknown) => Promise.reject(this.fault(err)));
  }

  /**
   * A failure of a store call as an UpdraftError (`mapPgError`); node-postgres's timeouts,
   * also where the group commit wrapped them, as UNAVAILABLE saying so: PostgreSQL did not
   * answer, which passes with nothing changed (the device retries; 503 to the API).
   */
  private fault(err: unknown): UpdraftError {
    switch (timeoutIn(err)) {
      case QUERY_TIMEOUT:
        return new UpdraftError('UNAVAILABLE', `PostgreSQL at ${this.where} did not answer a query within ${this.queryTimeoutMs} ms (a network partition or a stuck server)`, { cause: err });
      case CONNECT_TIMEOUT:
      case POOL_CONNECT_TIMEOUT:
        return new UpdraftError('UNAVAILABLE', `PostgreSQL at ${this.where} did not answer a new connection within ${this.connectTimeoutMs} ms`, { cause: err });
      case POOL_CHECKOUT_TIMEOUT:
        return new UpdraftError('UNAVAILABLE', `no connection to PostgreSQL at ${this.where} came free within ${this.connectTimeoutMs} ms (every one busy: a slow or silent database)`, { cause: err });
      default:
        return mapPgError(err);
    }
  }

  private notOpen(): UpdraftError {
    return new UpdraftError('INTERNAL', `State store ${this.where} is ${this.stopped ? 'stopped' : 'not started'}; call start() first`);
  }
}

/** True when `promise` settles (either way) within `ms`, false when it has not by then. */
async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  try {
    return await Promise.race([promise.then(() => true, () => true), late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Which of node-postgres's timeouts `err` is, or wraps (`cause`, a few levels down); undefined for none. */
function timeoutIn(err: unknown): string | undefined {
  let e: unknown = err;
  for (let depth = 0; depth < 5 && e instanceof Error; depth++) {
    if (!(e instanceof UpdraftError) && [QUERY_TIMEOUT, CONNECT_TIMEOUT, POOL_CONNECT_TIMEOUT, POOL_CHECKOUT_TIMEOUT].includes(e.message)) return e.message;
    e = e.cause;
  }
  return undefined;
}

/** The URL with its password replaced by `***`, for logs and messages. */
export function redactPostgresUrl(url: string): string {
  try {
    new URL(url); // only to tell an unparseable one
    return redactUrl(url);
  } catch {
    return 'postgres://(unparseable URL)';
  }
}

/** `a.x, a.y` from `x, y`. */
function prefixed(alias: string, cols: string): string {
  return cols
    .split(', ')
    .map((c) => `${alias}.${c}`)
    .join(', ');
}

function checkLimit(limit: number): number {
  if (!Number.isInteger(limit) || limit < 1) throw new UpdraftError('BAD_REQUEST', `limit must be a positive integer, got ${limit}`);
  return limit;
}

/** Column order of EXEC_INSERT_COLS. */
function executionParams(e: ExecutionRecord): unknown[] {
  return [e.jobId, e.deviceId, e.status, JSON.stringify(e.details), e.queuedAt, e.updatedAt, e.version, e.wave ?? 0, e.attempt ?? 1, e.dispatchedAt ?? null, e.dueAt ?? null, failedAt(e)];
}

/** The `failed_at` of `e` written anew (an insert; an update keeps an earlier one): when it became a failure that stands, else null. */
function failedAt(e: ExecutionRecord): number | null {
  return isStandingFailure(e) ? e.updatedAt : null;
}

/** Executions as the parameter of EXEC_ROWS. */
function executionRows(executions: readonly ExecutionRecord[]): string {
  return rowsAsJson(executions.map(executionParams), EXEC_JSON);
}

/** Inserts a new job's executions: one statement however many, the rows taken apart server-side. */
async function insertExecutions(c: pg.PoolClient, executions: readonly ExecutionRecord[]): Promise<void> {
  if (executions.length === 0) return;
  await c.query(`INSERT INTO executions (${EXEC_INSERT_COLS}) SELECT * FROM ${EXEC_ROWS}`, [executionRows(executions)]);
}

/**
 * Serializes the writes that create job `jobId` (a whole job, or the start and the end of
 * one written in pieces) until the batch commits, so every check can come before the first
 * write: a job id is either a job or a creation in progress, never both.
 */
async function lockJobId(c: pg.PoolClient, jobId: string): Promise<void> {
  await c.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [`updraft-job:${jobId}`]);
}

function jobExists(jobId: string): UpdraftError {
  return new UpdraftError('CONFLICT', `Job ${jobId} already exists`);
}

/**
 * IdempotencyKeyTaken when a job (or, with `creations`, a creation in pieces) holds `claim`'s
 * key. Under the key's lock until the batch commits: two instances given one key (a client's
 * retry through a load balancer) check and write one after the other, so the second sees the
 * first's job or marker, and never meets the unique index (a violation would fail the batch).
 */
async function assertKeyFree(c: pg.PoolClient, claim: IdempotencyClaim | undefined, creations: boolean): Promise<void> {
  if (!claim) return;
  await c.query('SELECT pg_advisory_xact_lock(hashtextextended($1, 0))', [`updraft-idempotency-key:${claim.key}`]);
  const sql = `SELECT job_id, request_fingerprint, false AS in_progress FROM jobs WHERE idempotency_key = $1${creations ? ' UNION ALL SELECT job_id, request_fingerprint, true FROM job_creations WHERE idempotency_key = $1' : ''}`;
  const row = (await c.query<{ job_id: string; request_fingerprint: string; in_progress: boolean }>(sql, [claim.key])).rows[0];
  if (row) throw new IdempotencyKeyTaken({ key: claim.key, fingerprint: row.request_fingerprint, jobId: row.job_id, inProgress: row.in_progress });
}

/** Records on a job's row, written in the same transaction, the key its request held. */
async function claimJobKey(c: pg.PoolClient, jobId: string, claim: IdempotencyClaim): Promise<void> {
  await c.query('UPDATE jobs SET idempotency_key = $2, request_fingerprint = $3 WHERE job_id = $1', [jobId, claim.key, claim.fingerprint]);
}

/** True while job `jobId` is being created in pieces (job-creation.ts). */
async function creationMarked(c: pg.PoolClient, jobId: string): Promise<boolean> {
  return ((await c.query('SELECT 1 FROM job_creations WHERE job_id = $1', [jobId])).rowCount ?? 0) > 0;
}

/** Writes a job's row; CONFLICT, having written nothing, when the id is taken. */
async function insertJobRow(c: pg.PoolClient, jobId: string, params: unknown[]): Promise<void> {
  const r = await c.query(`INSERT INTO jobs (${JOB_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (job_id) DO NOTHING`, params);
  if (r.rowCount !== 1) throw jobExists(jobId);
}

/** Column order of JOB_COLS. */
function jobRowParams(j: JobRecord): unknown[] {
  return [j.jobId, j.artifactName, j.artifactVersion, j.status, j.createdAt, j.description ?? null, json(j.spec), json(j.progress), j.updatedAt ?? null, j.version ?? null];
}

function json(value: object | undefined): string | null {
  return value ? JSON.stringify(value) : null;
}

/** Column order of DEVICE_COLS. */
function deviceParams(d: DeviceRecord): unknown[] {
  return [d.deviceId, JSON.stringify(d.attributes), JSON.stringify(d.tags), d.secretHash ?? null, d.brokerHash ?? null, d.revoked, d.createdAt, d.updatedAt, d.version];
}

/**
 * A connection the database ended for being idle (`idle_session_timeout`, SQLSTATE 57P05): no
 * sign that the database went back, so no disruption (`onDisruption`). The artifact locks'
 * connection stays open while idle, and a DBA's `idle_session_timeout` ended it after each job
 * creation: every time, the leader re-sent the commands of every open execution
 * (jobs/disruption-resync.ts; review, 2026-12-06).
 */
function endedIdle(err: Error): boolean {
  return (err as Error & { code?: unknown }).code === '57P05';
}
