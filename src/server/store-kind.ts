/**
 * Which state store the server of a data directory last started with, recorded in the
 * directory (`store.json`: the kind only, 'sqlite' or 'postgres', never the URL, which may
 * hold a password). The offline commands that read the store with the server stopped (`ca
 * drop-previous` counts its devices, `ca rollover` records the new CA) are given the store by
 * --db or --config; without them they read the directory's `updraft.db`. A directory that ran
 * on SQLite, then moved to PostgreSQL, keeps its old `updraft.db`: drop-previous counted in
 * that stale file ("0 devices on the previous CA") and dropped while devices on PostgreSQL
 * were still on it (review of a896f56). The record tells them the file is not the store.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { UpdraftError } from '../errors.ts';
import { writeFileAtomic } from '../util/atomic-file.ts';

/** The record's name in the data directory (copied by backups: a restored directory says the same). */
export const STORE_KIND_FILE = 'store.json';

/** The kinds of state store: the embedded SQLite file, or PostgreSQL (--db). */
export type StoreKind = 'sqlite' | 'postgres';

/** Records, at a server's start, which store it runs on (atomically: a crash leaves the old record or the new one). */
export async function recordStoreKind(dataDir: string, kind: StoreKind): Promise<void> {
  await writeFileAtomic(path.join(dataDir, STORE_KIND_FILE), `${JSON.stringify({ store: kind })}\n`, 0o644);
}

/** The store the server of `dataDir` last started with; undefined when none recorded one (no start since 2026-12-06) or the record is unreadable. */
export async function readStoreKind(dataDir: string): Promise<StoreKind | undefined> {
  const text = await readFile(path.join(dataDir, STORE_KIND_FILE), 'utf8').catch(() => undefined);
  if (text === undefined) return undefined;
  try {
    const kind = (JSON.parse(text) as { store?: unknown }).store;
    return kind === 'sqlite' || kind === 'postgres' ? kind : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Why an offline command given no PostgreSQL store (no --db, --config or UPDRAFT_DB naming one)
 * must not read `dataDir`'s `updraft.db`: its server last started on PostgreSQL. Undefined
 * when nothing recorded says so.
 */
export async function unnamedPostgres(dataDir: string): Promise<string | undefined> {
  if ((await readStoreKind(dataDir)) !== 'postgres') return undefined;
  return `the server of ${dataDir} last started on PostgreSQL (${STORE_KIND_FILE}), so its updraft.db, if any, is not the store it uses`;
}

/**
 * Refuses (CONFIG, one line) an offline reader of `dataDir`'s store given no PostgreSQL store
 * (`db` empty: no --db, --config or UPDRAFT_DB naming one) when its server last started on
 * PostgreSQL: the store readers (adapters.ts createStateStoreBesideServer) and `updraft
 * backup`, which copied the stale `updraft.db` as if it were the database.
 */
export async function refuseUnnamedPostgres(db: string, dataDir: string): Promise<void> {
  if (db) return;
  const postgres = await unnamedPostgres(dataDir);
  if (postgres !== undefined) throw new UpdraftError('CONFIG', `${postgres}; give the store the server uses with --db <url> or --config <file>`);
}
