/**
 * The PostgreSQL schema, as migrations applied in order on start and tracked in the table
 * `updraft_migrations` (one row per applied migration). Append new ones; never change what a
 * shipped one makes: existing databases already ran it. (How one runs may change: the index
 * builds of 5, 8, 13 and 15 became concurrent steps, making the same indexes.)
 *
 * A migration is SQL run in one transaction with its record, or an index step
 * (`concurrentIndex`, `dropIndexConcurrently`): statements run one by one outside a
 * transaction, so that building an index does not hold the table's writes (a CREATE INDEX
 * holds a SHARE lock until its transaction ends: 0.1-0.5 s per 200,000 executions, seconds
 * at millions); its record is written once they all succeeded. Each begins by dropping what
 * an interrupted build left (an invalid index), so a step cut short is simply run again.
 *
 * Key columns are `COLLATE "C"`: listings page by `device_id > cursor`, and the cursor
 * order must be byte order, as in the embedded store, whatever the database's locale.
 */
import type pg from 'pg';
import { UpdraftError } from '../errors.ts';
import { olderSchemaRefused } from './state-store.ts';

/** Statements run one at a time outside a transaction (CREATE INDEX CONCURRENTLY cannot run in one). */
export interface PgIndexStep {
  readonly outsideTransaction: readonly string[];
}

/** A migration: SQL applied in one transaction with its record, or an index step. */
export type PgMigration = string | PgIndexStep;

/**
 * Builds index `name` (`definition`: `ON table (...) [WHERE ...]`; `unique`: a UNIQUE one) without holding the table's
 * writes: CONCURRENTLY, after dropping what an earlier, interrupted build of it left (an
 * invalid index, which a CREATE of the same name would refuse).
 */
export function concurrentIndex(name: string, definition: string, options: { unique?: boolean } = {}): PgIndexStep {
  return { outsideTransaction: [`DROP INDEX CONCURRENTLY IF EXISTS ${name}`, `CREATE ${options.unique ? 'UNIQUE ' : ''}INDEX CONCURRENTLY ${name} ${definition}`] };
}

/** Drops index `name`, if there, without holding the table's writes. */
export function dropIndexConcurrently(name: string): PgIndexStep {
  return { outsideTransaction: [`DROP INDEX CONCURRENTLY IF EXISTS ${name}`] };
}

/** A migration's SQL, as one text (to read or search it). */
export function migrationSql(m: PgMigration): string {
  return typeof m === 'string' ? m : m.outsideTransaction.join(';\n');
}

/** Migrations; index i is schema version i + 1. */
export const PG_MIGRATIONS: readonly PgMigration[] = [
  `
  CREATE TABLE shadows (
    device_id TEXT COLLATE "C" NOT NULL,
    name      TEXT COLLATE "C" NOT NULL,
    version   BIGINT NOT NULL,
    deleted   BOOLEAN NOT NULL,
    state     JSONB NOT NULL,
    metadata  JSONB NOT NULL,
    timestamp BIGINT NOT NULL,
    PRIMARY KEY (device_id, name)
  );
  CREATE INDEX shadows_classic ON shadows (device_id) WHERE name = '' AND NOT deleted;

  CREATE TABLE artifacts (
    seq        BIGSERIAL NOT NULL,
    name       TEXT COLLATE "C" NOT NULL,
    version    TEXT COLLATE "C" NOT NULL,
    sha256     TEXT NOT NULL,
    size       BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (name, version)
  );

  CREATE TABLE jobs (
    job_id           TEXT COLLATE "C" PRIMARY KEY,
    artifact_name    TEXT NOT NULL,
    artifact_version TEXT NOT NULL,
    status           TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    description      TEXT
  );

  CREATE TABLE executions (
    job_id     TEXT COLLATE "C" NOT NULL,
    device_id  TEXT COLLATE "C" NOT NULL,
    status     TEXT NOT NULL,
    details    JSONB NOT NULL,
    queued_at  BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    version    BIGINT NOT NULL,
    PRIMARY KEY (job_id, device_id)
  );
  CREATE INDEX executions_device ON executions (device_id, queued_at);

  CREATE TABLE devices (
    device_id   TEXT COLLATE "C" PRIMARY KEY,
    attributes  JSONB NOT NULL,
    tags        JSONB NOT NULL,
    secret_hash TEXT,
    revoked     BOOLEAN NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    version     BIGINT NOT NULL
  );
  `,
  // rollouts (jobs/): job specs and progress, waves, attempts and timeouts of executions, groups
  `
  ALTER TABLE jobs ADD COLUMN spec JSONB;
  ALTER TABLE jobs ADD COLUMN progress JSONB;
  ALTER TABLE jobs ADD COLUMN updated_at BIGINT;
  ALTER TABLE jobs ADD COLUMN version BIGINT;
  CREATE INDEX jobs_created ON jobs (created_at DESC, job_id DESC);
  CREATE INDEX jobs_status ON jobs (status);

  ALTER TABLE executions ADD COLUMN wave INTEGER NOT NULL DEFAULT 0;
  ALTER TABLE executions ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1;
  ALTER TABLE executions ADD COLUMN dispatched_at BIGINT;
  ALTER TABLE executions ADD COLUMN due_at BIGINT;
  -- the scheduler's two scans: work waiting for its wave, and deadlines
  CREATE INDEX executions_undispatched ON executions (job_id, wave, device_id) WHERE status = 'QUEUED' AND dispatched_at IS NULL;
  CREATE INDEX executions_due ON executions (due_at) WHERE due_at IS NOT NULL;
  CREATE INDEX executions_job_status ON executions (job_id, status, wave);

  CREATE TABLE device_groups (
    name        TEXT COLLATE "C" PRIMARY KEY,
    kind        TEXT NOT NULL,
    devices     JSONB NOT NULL,
    query       TEXT,
    description TEXT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    version     BIGINT NOT NULL
  );
  `,
  `
  -- the Ed25519 signature recorded when an artifact is added (<keyId>:<base64>)
  ALTER TABLE artifacts ADD COLUMN signature TEXT;
  `,
  `
  -- the device secret in Mosquitto's password-file format, for an external broker
  ALTER TABLE devices ADD COLUMN broker_hash TEXT;
  `,
  // issue 7: the rollout engine counts a job's executions by wave and status, and how many
  // were dispatched, at every early tick; with dispatched_at in the index the count reads
  // the index alone (8x faster over 100,000 executions in SQLite). Replaces the index of that
  // name of migration 2 (a transaction's DROP INDEX and CREATE INDEX until it became a step)
  concurrentIndex('executions_job_status', 'ON executions (job_id, status, wave, dispatched_at)'),
  `
  -- issue 7: a job's execution counts kept up to date by triggers, in the same transaction as
  -- the writes, so counting reads a handful of rows instead of the job's executions (220-400 ms
  -- over 1,000,000 executions at every early tick of the rollout engine, whose ticks were
  -- spaced out accordingly, which slowed refilling the in-flight window).
  -- Statement triggers with transition tables: a bulk write of 1,000 executions adds one row
  -- per (wave, status) it touched, not 1,000 updates of the same row. The counts are sharded
  -- by backend so that instances writing the same job at once do not queue (or deadlock) on
  -- one hot row; a count is the sum over its shards, and a shard may go negative.
  -- Writes are held off while the counts are filled in, so that none is missed.
  LOCK TABLE executions IN SHARE ROW EXCLUSIVE MODE;
  CREATE TABLE execution_counts (
    job_id     TEXT COLLATE "C" NOT NULL,
    wave       INTEGER NOT NULL,
    status     TEXT NOT NULL,
    dispatched BOOLEAN NOT NULL,
    shard      SMALLINT NOT NULL,
    count      BIGINT NOT NULL,
    PRIMARY KEY (job_id, wave, status, dispatched, shard)
  );
  INSERT INTO execution_counts (job_id, wave, status, dispatched, shard, count)
    SELECT job_id, wave, status, dispatched_at IS NOT NULL, 0, COUNT(*) FROM executions GROUP BY 1, 2, 3, 4;
  CREATE FUNCTION updraft_count_executions() RETURNS trigger LANGUAGE plpgsql AS $$
  BEGIN
    -- each branch names only the transition tables its trigger has (a statement is planned
    -- when first run); the rows are ordered, so two transactions lock those they share in one order
    IF TG_OP = 'INSERT' THEN
      INSERT INTO execution_counts (job_id, wave, status, dispatched, shard, count)
        SELECT job_id, wave, status, dispatched_at IS NOT NULL, pg_backend_pid() % 16, COUNT(*) FROM new_rows
        GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
        ON CONFLICT (job_id, wave, status, dispatched, shard) DO UPDATE SET count = execution_counts.count + EXCLUDED.count;
    ELSIF TG_OP = 'UPDATE' THEN
      INSERT INTO execution_counts (job_id, wave, status, dispatched, shard, count)
        SELECT job_id, wave, status, dispatched, pg_backend_pid() % 16, SUM(n)
        FROM (
          SELECT job_id, wave, status, dispatched_at IS NOT NULL AS dispatched, 1 AS n FROM new_rows
          UNION ALL
          SELECT job_id, wave, status, dispatched_at IS NOT NULL, -1 FROM old_rows
        ) c
        -- a progress report changes none of these: nothing to write
        GROUP BY 1, 2, 3, 4 HAVING SUM(n) <> 0 ORDER BY 1, 2, 3, 4
        ON CONFLICT (job_id, wave, status, dispatched, shard) DO UPDATE SET count = execution_counts.count + EXCLUDED.count;
    ELSE
      INSERT INTO execution_counts (job_id, wave, status, dispatched, shard, count)
        SELECT job_id, wave, status, dispatched_at IS NOT NULL, pg_backend_pid() % 16, -COUNT(*) FROM old_rows
        GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
        ON CONFLICT (job_id, wave, status, dispatched, shard) DO UPDATE SET count = execution_counts.count + EXCLUDED.count;
    END IF;
    RETURN NULL;
  END $$;
  CREATE TRIGGER executions_count_insert AFTER INSERT ON executions REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION updraft_count_executions();
  CREATE TRIGGER executions_count_update AFTER UPDATE ON executions REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION updraft_count_executions();
  CREATE TRIGGER executions_count_delete AFTER DELETE ON executions REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION updraft_count_executions();
  `,
  `
  -- issue 7: a job of many devices is created in pieces (store/job-creation.ts); a row here
  -- marks a creation in progress, so that what a crash left of it can be removed
  CREATE TABLE job_creations (
    job_id     TEXT COLLATE "C" PRIMARY KEY,
    touched_at BIGINT NOT NULL
  );
  `,
  // issue 7: the rollout engine looks up the unsent work of every device that comes online
  // while a job is active; by this index alone, not the device's whole history of jobs
  concurrentIndex('executions_device_undispatched', "ON executions (device_id) WHERE status = 'QUEUED' AND dispatched_at IS NULL"),
  `
  -- the members of static groups, one row each, beside the group's list: a continuous job
  -- that targets a group asks whether each device coming online is a member (one index
  -- lookup instead of reading a list of up to 100,000)
  CREATE TABLE group_members (
    name      TEXT COLLATE "C" NOT NULL,
    device_id TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (name, device_id)
  );
  INSERT INTO group_members (name, device_id)
    SELECT g.name, m.value FROM device_groups g, jsonb_array_elements_text(g.devices) m(value) WHERE g.kind = 'static';
  `,
  `
  -- group_members is now the only list of a static group's members: a change writes the
  -- rows it names instead of rewriting a list of up to 100,000; the list column, filled into
  -- it by the migration above, stays '[]'. The members are counted in size, kept by each
  -- change (a continuous job reads the group at every device that comes online)
  ALTER TABLE device_groups ADD COLUMN size INTEGER NOT NULL DEFAULT 0;
  UPDATE device_groups g SET devices = '[]'::jsonb, size = (SELECT COUNT(*) FROM group_members m WHERE m.name = g.name);
  `,
  `
  -- what a build may be installed on (protocol/compatibility.ts), as JSON: {deviceTypes, requires}
  ALTER TABLE artifacts ADD COLUMN compatibility TEXT;
  `,
  `
  -- settings every instance on this database shares (the signing key's certificate)
  CREATE TABLE settings (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at BIGINT NOT NULL
  );
  `,
  `
  -- devices' logs of failed jobs (protocol/job-log.ts): one per job and device, at most
  -- jobs.maxLogsPerJob per job
  CREATE TABLE job_logs (
    job_id       TEXT COLLATE "C" NOT NULL,
    device_id    TEXT COLLATE "C" NOT NULL,
    agent_job_id TEXT NOT NULL,
    received_at  BIGINT NOT NULL,
    dropped      INTEGER NOT NULL,
    line_count   INTEGER NOT NULL,
    lines        TEXT NOT NULL,
    PRIMARY KEY (job_id, device_id)
  );
  `,
  // a device's logs, for its history (GET /api/v1/devices/{id}/history)
  concurrentIndex('job_logs_device', 'ON job_logs (device_id, received_at)'),
  // the failed executions of a job that may still be owed a retry (attempt below the job's
  // limit), without reading those that reached it: on a big job with many terminal failures
  // the engine read them all at a wave's end, before an abort and at a continuous job's start.
  // Partial: only FAILED rows are in it, and only they are looked up by attempt
  concurrentIndex('executions_failed_attempt', "ON executions (job_id, attempt, device_id) WHERE status = 'FAILED'"),
  // a job's executions of one state in device order (listJobExecutions by status: the job view,
  // the engine's scans of what is unfinished or failed), without reading the job's others
  concurrentIndex('executions_job_status_device', 'ON executions (job_id, status, device_id)'),
  // replaces executions_failed_attempt (next step): the failed executions of a job owed a
  // retry, in device order, attempt and wave read from the index. With attempt second the
  // planner, estimating most rows below the limit, walked the primary key for the ORDER BY
  // and read the whole job when every failure had used up its retries (QA: 80,000 executions,
  // 344 ms cold); here a page reads the job's failures only, in order, and stops at its end
  concurrentIndex('executions_failed_device', "ON executions (job_id, device_id, attempt, wave) WHERE status = 'FAILED'"),
  dropIndexConcurrently('executions_failed_attempt'),
  `
  -- devices deleted, and when: their shadows' tombstones are removed after
  -- shadow.tombstoneRetentionHours (shadow/tombstone-retention.ts) by this list, without
  -- reading the shadows of the devices still registered. Filled with the devices deleted
  -- before it (tombstones of unregistered ids), at their last deletion (a shadow's timestamp
  -- is in seconds, deleted_at in ms): one read of the
  -- shadows, which holds no write of them
  CREATE TABLE deleted_devices (
    device_id  TEXT COLLATE "C" PRIMARY KEY,
    deleted_at BIGINT NOT NULL
  );
  CREATE INDEX deleted_devices_at ON deleted_devices (deleted_at, device_id);
  INSERT INTO deleted_devices (device_id, deleted_at)
    SELECT device_id, MAX(timestamp) * 1000 FROM shadows s
    WHERE deleted AND NOT EXISTS (SELECT 1 FROM devices d WHERE d.device_id = s.device_id)
    GROUP BY device_id;
  `,
  `
  -- a client's Idempotency-Key (http/idempotency-key.ts) is held by the job its request
  -- created, from the write that makes the job exist, so a retry (on any instance) finds it
  -- and creates nothing; by a creation in pieces (job_creations) from its first piece, so a
  -- retry meanwhile is told to wait. A deleted job frees its key. Columns without a default:
  -- added without rewriting the table
  ALTER TABLE jobs ADD COLUMN idempotency_key TEXT COLLATE "C";
  ALTER TABLE jobs ADD COLUMN request_fingerprint TEXT;
  ALTER TABLE job_creations ADD COLUMN idempotency_key TEXT COLLATE "C";
  ALTER TABLE job_creations ADD COLUMN request_fingerprint TEXT;
  `,
  // unique: two requests with one key never both create (the store checks under the key's lock first)
  concurrentIndex('jobs_idempotency_key', 'ON jobs (idempotency_key) WHERE idempotency_key IS NOT NULL', { unique: true }),
  concurrentIndex('job_creations_idempotency_key', 'ON job_creations (idempotency_key) WHERE idempotency_key IS NOT NULL', { unique: true }),
  `
  -- the fill of deleted_devices as first written (until 2026-12-06) took its shadows'
  -- timestamps, in seconds, for times in ms: each such deletion read as of 1970 and its
  -- tombstones went at the first sweep, not 48 hours after. Seconds are below 1e11 (ms of 1973)
  UPDATE deleted_devices SET deleted_at = deleted_at * 1000 WHERE deleted_at < 100000000000;
  `,
  // the tombstones (deleted shadows) alone: the daily listing of deletions no release recorded
  // (listUnrecordedDeletions, run in a write batch of the group commit) read every shadow of
  // the fleet, states and all, to find them, holding the leader's writes meanwhile. On device_id
  // only, with `deleted` in the predicate (shadows_classic's already is): no column a shadow
  // write changes is indexed, so those writes stay HOT updates
  concurrentIndex('shadows_tombstones', 'ON shadows (device_id) WHERE deleted'),
  `
  -- every device certificate Updraft issues, one row each (2026-12-06): a deleted device's are
  -- revoked (revoked_at, in deleteDevice's transaction), and an external Mosquitto's crlfile
  -- lists them until they expire (pki/revocation-list.ts). issuer: the SHA-256 fingerprint of
  -- the issuing CA's certificate. Expired rows are pruned (pruneExpiredCertificates). A new
  -- table: its indexes are made with it, holding nothing
  CREATE TABLE device_certificates (
    serial         TEXT COLLATE "C" PRIMARY KEY,
    device_id      TEXT COLLATE "C" NOT NULL,
    issuer         TEXT NOT NULL,
    issuer_subject TEXT NOT NULL,
    issued_at      BIGINT NOT NULL,
    not_after      BIGINT NOT NULL,
    revoked_at     BIGINT
  );
  CREATE INDEX device_certificates_device ON device_certificates (device_id) WHERE revoked_at IS NULL;
  CREATE INDEX device_certificates_revoked ON device_certificates (not_after) WHERE revoked_at IS NOT NULL;
  CREATE INDEX device_certificates_expiry ON device_certificates (not_after);
  `,
  // the fleet's newest failures across jobs (listRecentFailures, the dashboard's overview),
  // read backwards and stopping at the page's end (2026-12-07); until then the overview read
  // each recent job's first 20 failures by device id and missed the newest on a big fleet.
  // failed_at: when the execution became a failure that stands (isStandingFailure: FAILED,
  // TIMED_OUT, REJECTED without a late success), written by the store from every record; NULL
  // otherwise. Not updated_at: indexing it would make every write that changes nothing indexed
  // but it (an IN_PROGRESS phase report) a non-HOT update, and a late success (the execution
  // stays TIMED_OUT) would move its row to the top. Partial: only the failures are in it.
  // One step, outside a transaction, each statement safe to run again: the column (nullable,
  // no default: no rewrite), the failures already there since their last change (one UPDATE
  // of the failed rows, in its own transaction), then the index built concurrently
  {
    outsideTransaction: [
      'ALTER TABLE executions ADD COLUMN IF NOT EXISTS failed_at BIGINT',
      "UPDATE executions SET failed_at = updated_at WHERE failed_at IS NULL AND status IN ('FAILED', 'TIMED_OUT', 'REJECTED') AND COALESCE(details->'lateSuccess', 'null'::jsonb) = 'null'::jsonb",
      ...concurrentIndex('executions_failed_recent', 'ON executions (failed_at, job_id, device_id) WHERE failed_at IS NOT NULL').outsideTransaction,
    ],
  },
  // replaces device_certificates_revoked (next step): the CRL's change check (revocationStamp:
  // the count, earliest not_after and latest revoked_at of the revoked certificates not
  // expired) as an index-only scan (2026-12-07); the index it replaces held not_after only, so
  // each row was read from the table for revoked_at. No serial: listRevokedEntries pages by
  // serial on the primary key here (the embedded store's index has it, for its pages by not_after)
  concurrentIndex('device_certificates_revoked_expiry', 'ON device_certificates (not_after, revoked_at) WHERE revoked_at IS NOT NULL'),
  dropIndexConcurrently('device_certificates_revoked'),
  // each device's newest executions with an outcome (listLatestOutcomesOfDevices, the
  // overview's candidates) read from the outcomes alone (2026-12-07): on executions_device the
  // executions without one (canceled, queued...) newer than the outcomes were each read and
  // filtered out. The condition is OUTCOME_STATUSES written out, term for term as the query's
  // (for the planner to prove the index fits it). job_id: the query's order (queued_at,
  // job_id), no sort. No HOT update lost: status is already indexed (executions_job_status,
  // executions_job_status_device), queued_at (executions_device), job_id and device_id (the key)
  concurrentIndex('executions_device_outcomes', "ON executions (device_id, queued_at, job_id) WHERE status IN ('SUCCEEDED', 'FAILED', 'TIMED_OUT', 'REJECTED')"),
];

/** Advisory lock key held while migrating, so instances starting together migrate once. */
export const MIGRATION_LOCK = 0x75706472_6d6967n; // "updr" "mig"

/**
 * node-postgres's error for a query its `query_timeout` gave up on (lib/client.js): the
 * database did not answer, and will not answer a ROLLBACK or an unlock either. The session is
 * closed instead (by the caller), which rolls back and frees the lock once the close reaches it.
 */
const NO_ANSWER = 'Query read timeout';

function unanswered(err: unknown): boolean {
  return err instanceof Error && err.message === NO_ANSWER;
}

/** What migratePostgres may be told. */
export interface MigrateOptions {
  /** False: a database of an older schema is refused (`olderSchemaRefused`) rather than migrated. */
  existing?: boolean;
  /** How long to wait for the migration lock (another instance migrating); default 600 s. */
  lockWaitMs?: number;
  /** The migrations (PG_MIGRATIONS; tests set up a database of an earlier schema with fewer). */
  migrations?: readonly PgMigration[];
}

/** The error of a migration lock still held by another session after lockWaitMs: PostgreSQL's lock_not_available. */
export class MigrationLockBusy extends Error {
  readonly code = '55P03';
}

/** How often a start waiting for the migration lock asks for it again. */
const LOCK_POLL_MS = 100;

/**
 * Takes the migration lock, asking for it (pg_try_advisory_lock) until lockWaitMs has passed
 * rather than waiting inside one statement (pg_advisory_lock): a statement waiting holds a
 * snapshot, which the instance holding the lock would wait for in a CREATE INDEX
 * CONCURRENTLY (it waits for every older snapshot to end), while the statement waits for its
 * lock: a deadlock, which PostgreSQL ends by failing one of the two starts.
 */
async function takeLock(client: pg.ClientBase, lockWaitMs: number): Promise<void> {
  const deadline = Date.now() + lockWaitMs;
  for (;;) {
    const { rows } = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1) AS ok', [MIGRATION_LOCK.toString()]);
    if (rows[0]?.ok) return;
    const left = deadline - Date.now();
    if (left <= 0) throw new MigrationLockBusy(`the migration lock was held by another session for ${lockWaitMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, Math.min(LOCK_POLL_MS, left)));
  }
}

/** Applies the migrations not yet applied; returns the schema version found. */
export async function migratePostgres(client: pg.ClientBase, where: string, options: MigrateOptions = {}): Promise<number> {
  const migrations = options.migrations ?? PG_MIGRATIONS;
  await takeLock(client, options.lockWaitMs ?? 600_000);
  let silent = false;
  try {
    await client.query('CREATE TABLE IF NOT EXISTS updraft_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())');
    const { rows } = await client.query<{ v: number | null }>('SELECT max(version) AS v FROM updraft_migrations');
    const current = rows[0]?.v ?? 0;
    if (current > migrations.length) {
      throw new UpdraftError('CONFIG', `State database ${where} has schema version ${current}, newer than this Updraft (${migrations.length}); upgrade Updraft`);
    }
    if (options.existing === false && current > 0 && current < migrations.length) throw olderSchemaRefused(where, current, migrations.length);
    for (let v = current; v < migrations.length; v++) {
      const step = migrations[v]!;
      if (typeof step !== 'string') {
        // each statement on its own, outside a transaction; recorded once all succeeded. One
        // that fails (a crash, a timeout) may leave an invalid index: the step's next run drops it
        for (const sql of step.outsideTransaction) await client.query(sql);
        await client.query('INSERT INTO updraft_migrations (version) VALUES ($1)', [v + 1]);
        continue;
      }
      // DDL is transactional in PostgreSQL: a migration and its bookkeeping row commit together
      await client.query('BEGIN');
      try {
        await client.query(step);
        await client.query('INSERT INTO updraft_migrations (version) VALUES ($1)', [v + 1]);
        await client.query('COMMIT');
      } catch (err) {
        if (!unanswered(err)) await client.query('ROLLBACK');
        throw err;
      }
    }
    return current;
  } catch (err) {
    silent = unanswered(err);
    throw err;
  } finally {
    if (!silent) await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK.toString()]);
  }
}
