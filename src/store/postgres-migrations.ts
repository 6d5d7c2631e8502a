/**
 * The PostgreSQL schema, as migrations applied in order on start and tracked in the table
 * `updraft_migrations` (one row per applied migration). Append new ones; never edit a
 * shipped one: existing databases already ran it.
 *
 * Key columns are `COLLATE "C"`: listings page by `device_id > cursor`, and the cursor
 * order must be byte order, as in the embedded store, whatever the database's locale.
 */
import type pg from 'pg';
import { UpdraftError } from '../errors.ts';

/** Migrations; index i is schema version i + 1. */
export const PG_MIGRATIONS: readonly string[] = [
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
  `
  -- issue 7: the rollout engine counts a job's executions by wave and status, and how many
  -- were dispatched, at every early tick; with dispatched_at in the index the count reads
  -- the index alone (8x faster over 100,000 executions in SQLite)
  DROP INDEX executions_job_status;
  CREATE INDEX executions_job_status ON executions (job_id, status, wave, dispatched_at);
  `,
];

/** Advisory lock key held while migrating, so instances starting together migrate once. */
const MIGRATION_LOCK = 0x75706472_6d6967n; // "updr" "mig"

/** Applies the migrations not yet applied; returns the schema version found. */
export async function migratePostgres(client: pg.PoolClient, where: string): Promise<number> {
  await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK.toString()]);
  try {
    await client.query('CREATE TABLE IF NOT EXISTS updraft_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())');
    const { rows } = await client.query<{ v: number | null }>('SELECT max(version) AS v FROM updraft_migrations');
    const current = rows[0]?.v ?? 0;
    if (current > PG_MIGRATIONS.length) {
      throw new UpdraftError('CONFIG', `State database ${where} has schema version ${current}, newer than this Updraft (${PG_MIGRATIONS.length}); upgrade Updraft`);
    }
    for (let v = current; v < PG_MIGRATIONS.length; v++) {
      // DDL is transactional in PostgreSQL: a migration and its bookkeeping row commit together
      await client.query('BEGIN');
      try {
        await client.query(PG_MIGRATIONS[v]!);
        await client.query('INSERT INTO updraft_migrations (version) VALUES ($1)', [v + 1]);
        await client.query('COMMIT');
      } catch (err) {
        await client.query('ROLLBACK');
        throw err;
      }
    }
    return current;
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK.toString()]);
  }
}
