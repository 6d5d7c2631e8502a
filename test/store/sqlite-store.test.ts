import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { UpdraftError } from '../../src/errors.ts';
import type { ShadowRecord } from '../../src/store/state-store.ts';
import { SQLITE_MIGRATIONS, SqliteStore } from '../../src/store/sqlite-store.ts';
import { checkDeletionsInMs, checkMigratedCounts, checkMigratedRecentFailures, RECENT_FAILURES_SEED, checkMigratedRevocations, REVOKED_CERTIFICATES_SEED, checkMigratedLatestOutcomes, LATEST_OUTCOMES_SEED, checkMigratedDeletions, DELETIONS_IN_SECONDS_SEED, deletionsSeed, checkMigratedGroups, stateStoreContract } from './state-store.contract.ts';

async function tempDir(): Promise<string> {
  return fs.mkdtemp(path.join(os.tmpdir(), 'updraft-sqlite-'));
}

stateStoreContract('SqliteStore', async () => {
  const dir = await tempDir();
  // a directory that does not exist yet: start() creates it
  const file = path.join(dir, 'data', 'updraft.db');
  return {
    store: new SqliteStore({ path: file }),
    reopen: async () => new SqliteStore({ path: file }),
    cleanup: () => fs.rm(dir, { recursive: true, force: true }),
    exec: async (sql) => {
      const raw = new Database(file);
      try {
        raw.exec(sql);
      } finally {
        raw.close();
      }
    },
  };
});

function shadow(deviceId: string, version: number, desired: ShadowRecord['state']['desired'] = {}): ShadowRecord {
  return { deviceId, name: '', version, deleted: false, state: { desired }, metadata: {}, timestamp: 100 };
}

function isConfig(pathPart: string, reason: RegExp): (err: unknown) => boolean {
  return (err) => {
    assert.ok(err instanceof UpdraftError, `expected an UpdraftError, got ${String(err)}`);
    assert.equal(err.code, 'CONFIG');
    assert.ok(err.message.includes(pathPart), `message names the path: ${err.message}`);
    assert.match(err.message, reason);
    assert.ok(!err.message.includes('\n'), 'one line');
    return true;
  };
}

/** The database file at the schema the migration containing `marker` found: every one before it applied. */
function databaseBefore(file: string, marker: string): Database.Database {
  const before = SQLITE_MIGRATIONS.findIndex((m) => m.includes(marker));
  assert.ok(before > 0, `a migration contains ${marker}`);
  const raw = new Database(file);
  for (const sql of SQLITE_MIGRATIONS.slice(0, before)) raw.exec(sql);
  raw.pragma(`user_version = ${before}`);
  return raw;
}

describe('SqliteStore specifics', () => {
  const dirs: string[] = [];
  const stores: SqliteStore[] = [];
  async function fresh(options: { maxPendingWrites?: number } = {}): Promise<{ file: string; store: SqliteStore }> {
    const dir = await tempDir();
    dirs.push(dir);
    const file = path.join(dir, 'updraft.db');
    const store = new SqliteStore({ path: file, ...options });
    stores.push(store);
    return { file, store };
  }
  after(async () => {
    for (const s of stores) await s.stop();
    for (const d of dirs) await fs.rm(d, { recursive: true, force: true });
  });

  it('does no I/O in the constructor', async () => {
    const dir = await tempDir();
    dirs.push(dir);
    const file = path.join(dir, 'nested', 'updraft.db');
    const store = new SqliteStore({ path: file });
    stores.push(store);
    await assert.rejects(fs.stat(path.dirname(file)), { code: 'ENOENT' });
    await store.start();
    assert.ok((await fs.stat(file)).isFile());
  });

  it('puts the database in WAL mode and records the schema version', async () => {
    const { file, store } = await fresh();
    await store.start();
    const raw = new Database(file, { readonly: true });
    try {
      assert.equal(raw.pragma('journal_mode', { simple: true }), 'wal');
      assert.ok(Number(raw.pragma('user_version', { simple: true })) >= 1);
      const tables = raw.prepare<[], { name: string }>("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").all().map((r) => r.name);
      for (const t of ['artifacts', 'devices', 'executions', 'jobs', 'shadows']) assert.ok(tables.includes(t), `table ${t} exists`);
    } finally {
      raw.close();
    }
  });

  it('lets a second instance on the same file see committed writes, both ways', async () => {
    const { file, store: a } = await fresh();
    const b = new SqliteStore({ path: file });
    stores.push(b);
    await a.start();
    await b.start();
    assert.equal(await a.putShadow(shadow('dev-1', 1, { x: 1 }), 0), true);
    assert.deepEqual(await b.getShadow('dev-1', ''), shadow('dev-1', 1, { x: 1 }));
    // b's conditional write sees a's row
    assert.equal(await b.putShadow(shadow('dev-1', 1, { x: 9 }), 0), false);
    assert.equal(await b.putShadow(shadow('dev-1', 2, { x: 2 }), 1), true);
    assert.deepEqual(await a.getShadow('dev-1', ''), shadow('dev-1', 2, { x: 2 }));
  });

  it('commits at once, in the calling tick, when the queue reaches maxPendingWrites', async () => {
    const { store } = await fresh({ maxPendingWrites: 3 });
    await store.start();
    const first = [store.putShadow(shadow('a', 1), 0), store.putShadow(shadow('b', 1), 0)];
    // below the bound: queued for the next setImmediate, not yet in the database
    assert.equal(await store.getShadow('a', ''), undefined);
    const third = store.putShadow(shadow('c', 1), 0);
    // the third write hit the bound and committed synchronously, before any await
    const seen = store.getShadow('c', '');
    assert.deepEqual(await seen, shadow('c', 1));
    assert.deepEqual(await Promise.all([...first, third]), [true, true, true]);
  });

  it('rejects writes and reads after stop() with a readable error', async () => {
    const { store } = await fresh();
    await store.start();
    await store.stop();
    await assert.rejects(store.putShadow(shadow('a', 1), 0), (err: unknown) => err instanceof UpdraftError && /stopped/.test(err.message));
    await assert.rejects(store.getShadow('a', ''), UpdraftError);
  });

  it('reports a CONFIG error for a path whose parent is a regular file', async () => {
    const dir = await tempDir();
    dirs.push(dir);
    const blocker = path.join(dir, 'not-a-dir');
    await fs.writeFile(blocker, 'x');
    const file = path.join(blocker, 'updraft.db');
    const store = new SqliteStore({ path: file });
    await assert.rejects(store.start(), isConfig(file, /regular file/));
    await store.stop(); // never started: harmless
  });

  it('reports a CONFIG error for a file that is not a database', async () => {
    const { file, store } = await fresh();
    await fs.writeFile(file, 'this is not an SQLite database, just text long enough to have a header '.repeat(10));
    await assert.rejects(store.start(), isConfig(file, /not a valid SQLite database/));
  });

  it('fills in the execution counts of a database migrated from before they were kept', async () => {
    const { file, store } = await fresh();
    // the schema as the previous release left it, with a job's executions in it
    const raw = databaseBefore(file, 'CREATE TABLE execution_counts');
    const insert = raw.prepare('INSERT INTO executions (job_id, device_id, status, details, queued_at, updated_at, version, wave, dispatched_at) VALUES (?, ?, ?, ?, 1, 1, 1, ?, ?)');
    insert.run('j', 'a', 'QUEUED', '{}', 0, null);
    insert.run('j', 'b', 'QUEUED', '{}', 0, 5);
    insert.run('j', 'c', 'SUCCEEDED', '{}', 1, 5);
    insert.run('k', 'a', 'QUEUED', '{}', 0, null);
    raw.close();
    await store.start();
    await checkMigratedCounts(store);
    await store.stop();
  });

  it('rebuilds the shadows of a database from before shadows were a rowid table, keeping every one', async () => {
    const { file, store } = await fresh();
    const raw = databaseBefore(file, 'CREATE TABLE shadows_rowid');
    const tableSql = () => (raw.prepare(`SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = 'shadows'`).get() as { sql: string }).sql;
    assert.match(tableSql(), /WITHOUT ROWID/, 'the old schema');
    const records: ShadowRecord[] = [
      // a document larger than a row of the old table could hold without overflow pages
      { deviceId: 'a', name: '', version: 7, deleted: false, state: { reported: { software: { name: 'fw', version: '1.0.0' }, notes: 'n'.repeat(3000) } }, metadata: { reported: { notes: { timestamp: 5 } } }, timestamp: 5 },
      { deviceId: 'a', name: 'config', version: 2, deleted: false, state: { desired: { mode: 'eco' } }, metadata: { desired: { mode: { timestamp: 3 } } }, timestamp: 3 },
      { deviceId: 'b', name: '', version: 4, deleted: true, state: {}, metadata: {}, timestamp: 9 },
      { deviceId: 'c', name: '', version: 1, deleted: false, state: { reported: { x: 1 } }, metadata: { reported: { x: { timestamp: 1 } } }, timestamp: 1 },
    ];
    const insert = raw.prepare('INSERT INTO shadows (device_id, name, version, deleted, state, metadata, timestamp) VALUES (?, ?, ?, ?, ?, ?, ?)');
    for (const r of records) insert.run(r.deviceId, r.name, r.version, r.deleted ? 1 : 0, JSON.stringify(r.state), JSON.stringify(r.metadata), r.timestamp);
    await store.start();
    assert.doesNotMatch(tableSql(), /WITHOUT ROWID/, 'migrated');
    raw.close();
    for (const r of records) assert.deepEqual(await store.getShadow(r.deviceId, r.name), r);
    // the listing's index came back: existing classic shadows only, in device order
    assert.deepEqual((await store.listShadows({ limit: 10 })).items.map((r) => r.deviceId), ['a', 'c']);
    // and writes stay conditional on the version
    const next = { ...records[3]!, version: 2, state: { reported: { x: 2 } } };
    assert.equal(await store.putShadow(next, 0), false, 'a stale version is refused');
    assert.equal(await store.putShadow(next, 1), true);
    assert.deepEqual(await store.getShadow('c', ''), next);
    await store.stop();
  });

  it('gives the members of existing static groups rows of their own when it migrates', async () => {
    const { file, store } = await fresh();
    const raw = databaseBefore(file, 'CREATE TABLE group_members');
    const insert = raw.prepare('INSERT INTO device_groups (name, kind, devices, query, description, created_at, updated_at, version) VALUES (?, ?, ?, ?, NULL, 1, 1, 1)');
    insert.run('eu', 'static', '["a","b"]', null);
    insert.run('old', 'dynamic', '[]', 'tags = old');
    raw.close();
    await store.start();
    await checkMigratedGroups(store);
    await store.stop();
  });

  it("lists the devices deleted before deletions were recorded when it migrates, by their tombstones", async () => {
    const { file, store } = await fresh();
    const raw = databaseBefore(file, 'CREATE TABLE deleted_devices');
    raw.exec(deletionsSeed((b) => (b ? '1' : '0')));
    raw.close();
    await store.start();
    await checkMigratedDeletions(store);
    await store.stop();
  });

  it('makes deletion times the first fill wrote in seconds milliseconds when it migrates', async () => {
    const { file, store } = await fresh();
    const raw = databaseBefore(file, 'UPDATE deleted_devices SET deleted_at');
    raw.exec(DELETIONS_IN_SECONDS_SEED);
    raw.close();
    await store.start();
    await checkDeletionsInMs(store);
    await store.stop();
  });

  it('lists the failures written before the newest failures had an index when it migrates', async () => {
    const { file, store } = await fresh();
    const raw = databaseBefore(file, 'ALTER TABLE executions ADD COLUMN failed_at');
    raw.exec(RECENT_FAILURES_SEED);
    raw.close();
    await store.start();
    await checkMigratedRecentFailures(store);
    await store.stop();
  });

  it("checks the CRL's revocations by the index that replaced device_certificates_revoked when it migrates", async () => {
    const { file, store } = await fresh();
    const raw = databaseBefore(file, 'device_certificates_revoked_expiry');
    raw.exec(REVOKED_CERTIFICATES_SEED);
    raw.close();
    await store.start();
    await checkMigratedRevocations(store);
    await store.stop();
    const migrated = new Database(file, { readonly: true });
    const indexes = (migrated.prepare("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'device_certificates' ORDER BY name").all() as { name: string }[]).map((r) => r.name);
    migrated.close();
    assert.deepEqual(indexes, ['device_certificates_device', 'device_certificates_expiry', 'device_certificates_revoked_expiry'], 'the new index there, the one it replaces dropped');
  });

  it("reads each device's newest outcomes from the index of the outcomes alone when it migrates", async () => {
    const { file, store } = await fresh();
    const raw = databaseBefore(file, 'executions_device_outcomes');
    raw.exec(LATEST_OUTCOMES_SEED);
    raw.close();
    await store.start();
    await checkMigratedLatestOutcomes(store);
    await store.stop();
    const migrated = new Database(file, { readonly: true });
    const index = migrated.prepare("SELECT sql FROM sqlite_master WHERE type = 'index' AND name = 'executions_device_outcomes'").get() as { sql: string } | undefined;
    migrated.close();
    assert.match(index?.sql ?? '', /ON executions \(device_id, queued_at, job_id\) WHERE status IN \('SUCCEEDED', 'FAILED', 'TIMED_OUT', 'REJECTED'\)$/, `the index there: ${index?.sql}`);
  });

  it('removes at start what a crash left of a job being created in pieces', async () => {
    const { file, store } = await fresh();
    await store.start();
    await store.stop();
    // as a crash leaves it: the marker and a first piece, no job row
    const raw = new Database(file);
    raw.prepare('INSERT INTO job_creations (job_id, touched_at) VALUES (?, ?)').run('half', Date.now());
    const insert = raw.prepare(`INSERT INTO executions (job_id, device_id, status, details, queued_at, updated_at, version) VALUES ('half', ?, 'QUEUED', '{}', 1, 1, 1)`);
    for (const d of ['a', 'b', 'c']) insert.run(d);
    raw.prepare(`INSERT INTO execution_counts (job_id, wave, status, dispatched, count) VALUES ('half', 0, 'QUEUED', 0, 3)`).run();
    raw.close();
    const again = new SqliteStore({ path: file });
    await again.start();
    assert.deepEqual(await again.listExecutions({ deviceId: 'a' }), []);
    assert.deepEqual(await again.countExecutions('half'), []);
    // the id is free again
    await again.createJob({ jobId: 'half', artifactName: 'fw', artifactVersion: '1', status: 'IN_PROGRESS', createdAt: 1 }, []);
    assert.equal((await again.getJob('half'))?.jobId, 'half');
    await again.stop();
  });

  it('leaves a creation in progress alone when opened beside a server (recoverCreations: false)', async () => {
    const { file, store } = await fresh();
    await store.start();
    await store.stop();
    // a server on this file is creating a job in pieces right now
    const raw = new Database(file);
    raw.prepare('INSERT INTO job_creations (job_id, touched_at) VALUES (?, ?)').run('busy', Date.now());
    raw.prepare(`INSERT INTO executions (job_id, device_id, status, details, queued_at, updated_at, version) VALUES ('busy', 'a', 'QUEUED', '{}', 1, 1, 1)`).run();
    raw.close();
    const beside = new SqliteStore({ path: file, recoverCreations: false });
    await beside.start();
    assert.equal((await beside.listExecutions({ deviceId: 'a' })).length, 1, 'the piece written so far stays');
    await beside.stop();
    const check = new Database(file, { readonly: true });
    assert.equal((check.prepare('SELECT count(*) AS n FROM job_creations').get() as { n: number }).n, 1, 'and so does its marker');
    check.close();
  });

  it('reports a CONFIG error for a database from a newer schema', async () => {
    const { file, store } = await fresh();
    const raw = new Database(file);
    raw.pragma('journal_mode = DELETE'); // as a newer Updraft might leave it: refused, it must stay as it is
    raw.pragma('user_version = 999');
    raw.close();
    const before = await fs.readFile(file);
    await assert.rejects(store.start(), isConfig(file, /schema version 999/));
    assert.ok((await fs.readFile(file)).equals(before), 'the refused file is not written (its header kept its journal mode)');
  });

  it('with migrateExisting false (a command beside running servers), refuses a file of an older schema and leaves it as it is; sets up a new one', async () => {
    const { file, store } = await fresh();
    await store.start();
    await store.stop();
    const raw = new Database(file);
    const latest = Number(raw.pragma('user_version', { simple: true }));
    raw.pragma(`user_version = ${latest - 1}`); // as the previous Updraft left it
    raw.close();
    const beside = new SqliteStore({ path: file, migrateExisting: false, recoverCreations: false });
    await assert.rejects(beside.start(), (err: unknown) => err instanceof UpdraftError && err.code === 'CONFIG' && err.message.includes(`has schema version ${latest - 1}, older than this Updraft's (${latest})`));
    const after = new Database(file);
    assert.equal(Number(after.pragma('user_version', { simple: true })), latest - 1, 'not migrated');
    after.close();
    const { file: newFile } = await fresh();
    const first = new SqliteStore({ path: newFile, migrateExisting: false });
    stores.push(first);
    await first.start();
    assert.equal(await first.getDevice('x'), undefined, 'a new file is set up');
  });

  it('as a server (soleUser), refuses a file another connection has open, as a second server on the data directory would; a command beside it (not soleUser) opens it', async () => {
    const { file, store } = await fresh();
    await store.start(); // the first server: its connection holds the file for its whole life
    const second = new SqliteStore({ path: file, soleUser: true });
    await assert.rejects(second.start(), isConfig(file, /is open in another process: another server on this data directory/));
    const beside = new SqliteStore({ path: file, recoverCreations: false, migrateExisting: false });
    stores.push(beside);
    await beside.start();
    await beside.stop();
    await store.stop();
    const again = new SqliteStore({ path: file, soleUser: true });
    stores.push(again);
    await again.start(); // the first one stopped: this one is the file's only user now
  });

  it('reports a CONFIG error when another process holds the file locked', async () => {
    const dir = await tempDir();
    dirs.push(dir);
    const file = path.join(dir, 'updraft.db');
    const holder = new Database(file);
    try {
      // an exclusive lock taken on first write and kept: nobody else can even read
      holder.pragma('locking_mode = EXCLUSIVE');
      holder.exec('CREATE TABLE t (x); INSERT INTO t VALUES (1)');
      const store = new SqliteStore({ path: file, busyTimeoutMs: 50 });
      await assert.rejects(store.start(), isConfig(file, /locked/));
    } finally {
      holder.close();
    }
  });
});
