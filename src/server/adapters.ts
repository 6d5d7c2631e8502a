/**
 * Picks each adapter from its configuration URL (DESIGN.md §7): the state store from `db`,
 * artifact storage from `blob`. Empty means the embedded default in the data directory;
 * the rest of the system sees only the StateStore and BlobStore seams.
 */
import path from 'node:path';
import type { BlobStore } from '../artifacts/blob-store.ts';
import { LocalBlobStore } from '../artifacts/local-blob-store.ts';
import { S3BlobStore, type S3BlobStoreOptions } from '../artifacts/s3-blob-store.ts';
import type { UpdraftConfig } from '../config/schema.ts';
import { UpdraftError } from '../errors.ts';
import { PostgresStore } from '../store/postgres-store.ts';
import { SqliteStore } from '../store/sqlite-store.ts';
import type { StateStore } from '../store/state-store.ts';
import type { Logger } from '../util/logger.ts';

/** PostgreSQL when `db` is set, else the SQLite file `<dataDir>/updraft.db`. */
export function createStateStore(config: Pick<UpdraftConfig, 'db'>, dataDir: string, logger: Logger, options: { besideServer?: boolean } = {}): StateStore {
  if (config.db) return new PostgresStore({ url: config.db, logger });
  // a command run beside a server on the same file leaves the server's job creations be
  return new SqliteStore({ path: path.join(dataDir, 'updraft.db'), logger, ...(options.besideServer ? { recoverCreations: false } : {}) });
}

/** S3 when `blob` is set, else the directory `<dataDir>/artifacts`. */
export function createBlobStore(config: Pick<UpdraftConfig, 'blob'>, dataDir: string): BlobStore {
  if (config.blob) return new S3BlobStore(parseS3Url(config.blob));
  return new LocalBlobStore({ dir: path.join(dataDir, 'artifacts') });
}

/**
 * `s3://bucket[/prefix]?endpoint=http://minio:9000&region=eu-west-1&pathStyle=true&create=true`.
 * Credentials are not part of the URL: the AWS SDK's chain (AWS_ACCESS_KEY_ID and
 * AWS_SECRET_ACCESS_KEY, a profile, an instance role) provides them.
 */
export function parseS3Url(url: string): S3BlobStoreOptions {
  const u = new URL(url);
  if (u.protocol !== 's3:' || !u.hostname) throw new UpdraftError('CONFIG', `blob must look like s3://bucket[/prefix]?endpoint=..., got ${url}`);
  const q = u.searchParams;
  const known = new Set(['endpoint', 'region', 'pathStyle', 'create']);
  const unknown = [...q.keys()].filter((k) => !known.has(k));
  if (unknown.length) throw new UpdraftError('CONFIG', `blob URL has unknown parameters ${unknown.join(', ')}; known: ${[...known].join(', ')}`);
  const prefix = decodeURIComponent(u.pathname.replace(/^\/+/, ''));
  const endpoint = q.get('endpoint') ?? undefined;
  const flag = (name: string) => {
    const v = q.get(name);
    if (v === null) return undefined;
    if (v !== 'true' && v !== 'false') throw new UpdraftError('CONFIG', `blob URL parameter ${name} must be true or false, got ${v}`);
    return v === 'true';
  };
  const pathStyle = flag('pathStyle');
  const create = flag('create');
  return {
    bucket: u.hostname,
    prefix: prefix && !prefix.endsWith('/') ? `${prefix}/` : prefix,
    ...(endpoint ? { endpoint } : {}),
    ...(q.get('region') ? { region: q.get('region')! } : {}),
    ...(pathStyle !== undefined ? { forcePathStyle: pathStyle } : {}),
    ...(create !== undefined ? { createBucket: create } : {}),
  };
}
