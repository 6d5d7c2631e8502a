/**
 * Picks each adapter from its configuration URL (docs/design.md §7): the state store from `db`,
 * artifact storage from `blob`. Empty means the embedded default in the data directory;
 * the rest of the system sees only the StateStore and BlobStore seams.
 */
import path from 'node:path';
import type { BlobStore } from '../artifacts/blob-store.ts';
import { LocalBlobStore } from '../artifacts/local-blob-store.ts';
import { S3BlobStore } from '../artifacts/s3-blob-store.ts';
import { parseS3Url } from '../artifacts/s3-url.ts';
import type { UpdraftConfig } from '../config/schema.ts';
import { UpdraftError } from '../errors.ts';
import { PostgresStore } from '../store/postgres-store.ts';
import { SqliteStore } from '../store/sqlite-store.ts';
import type { StateStore } from '../store/state-store.ts';
import type { Logger } from '../util/logger.ts';
import { refuseUnnamedPostgres } from './store-kind.ts';

/** PostgreSQL when `db` is set, else the SQLite file `<dataDir>/updraft.db`. */
export function createStateStore(config: Pick<UpdraftConfig, 'db'> & Partial<Pick<UpdraftConfig, 'postgres'>>, dataDir: string, logger: Logger, options: { besideServer?: boolean } = {}): StateStore {
  // a command run beside servers leaves their schema (olderSchemaRefused) and, on the file,
  // their job creations be
  if (config.db) return new PostgresStore({ url: config.db, logger, ...postgresBounds(config.postgres), ...(options.besideServer ? { migrateExisting: false } : {}) });
  return new SqliteStore({ path: path.join(dataDir, 'updraft.db'), logger, ...(options.besideServer ? { recoverCreations: false, migrateExisting: false } : { soleUser: true }) });
}

/**
 * The store an offline command reads beside the servers (their schema and job creations left
 * alone). Given no PostgreSQL store, refused (CONFIG) when the data directory's server last
 * started on PostgreSQL: its `updraft.db`, if any, is a stale file left from its SQLite days
 * (server/store-kind.ts). Every offline reader of the store opens it here.
 */
export async function createStateStoreBesideServer(config: Pick<UpdraftConfig, 'db'> & Partial<Pick<UpdraftConfig, 'postgres'>>, dataDir: string, logger: Logger): Promise<StateStore> {
  await refuseUnnamedPostgres(config.db, dataDir);
  return createStateStore(config, dataDir, logger, { besideServer: true });
}

/** The `postgres.*` settings as PostgresStore's options (its defaults where none is given). */
function postgresBounds(settings: Partial<UpdraftConfig['postgres']> | undefined): { statementTimeoutMs?: number; connectTimeoutMs?: number; migrationTimeoutMs?: number } {
  return {
    // the query timeout follows, 5 s longer (PostgresStoreDeps.queryTimeoutMs)
    ...(settings?.queryTimeoutSeconds !== undefined ? { statementTimeoutMs: settings.queryTimeoutSeconds * 1000 } : {}),
    ...(settings?.connectTimeoutSeconds !== undefined ? { connectTimeoutMs: settings.connectTimeoutSeconds * 1000 } : {}),
    ...(settings?.migrationTimeoutSeconds !== undefined ? { migrationTimeoutMs: settings.migrationTimeoutSeconds * 1000 } : {}),
  };
}

/** S3 when `blob` is set, else the directory `<dataDir>/artifacts`. */
export function createBlobStore(config: Pick<UpdraftConfig, 'blob' | 'db'>, dataDir: string, logger?: Logger): BlobStore {
  if (config.blob) return new S3BlobStore(parseS3Url(config.blob));
  // the embedded store holds the data directory alone (updraft.db): nothing else uploads into
  // it. With --db, server.lock is shared (data-dir-lock.ts): another instance pointed at the
  // same directory (unsupported, but not prevented) may be uploading, and a file it writes to
  // is touched as the bytes come
  return new LocalBlobStore({ dir: path.join(dataDir, 'artifacts'), ...(config.db ? { leftoverAgeMs: 15 * 60_000 } : {}), ...(logger ? { logger } : {}) });
}

export { parseS3Url };
