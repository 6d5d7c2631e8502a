/**
 * The PostgreSQL store's bounds as server settings (`postgres.*`: a config file key, an
 * environment variable and a flag each), validated with the other settings and applied by a
 * real server to its store: against a real PostgreSQL behind a TCP relay that stops
 * answering, a request fails within the bound set, not the default.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import pg from 'pg';
import { UpdraftError } from '../../src/errors.ts';
import { MIGRATION_LOCK } from '../../src/store/postgres-migrations.ts';
import { loadConfig } from '../../src/config/load-config.ts';
import { startTestPostgres, unavailable } from '../helpers/postgres.ts';
import { startRelay } from '../helpers/tcp-relay.ts';
import { startTestServer } from '../helpers/server.ts';

const DB = 'postgres://u:secret@127.0.0.1:5432/updraft';

/** loadConfig's refusal, as its message. */
function refusal(sources: Parameters<typeof loadConfig>[0]): string {
  try {
    loadConfig(sources);
  } catch (err) {
    assert.ok(err instanceof UpdraftError && err.code === 'CONFIG', String(err));
    return err.message;
  }
  assert.fail('taken');
}

/** The settings loaded from a config file holding db and `postgres`. */
async function fromFile(postgres: Record<string, number>): Promise<ReturnType<typeof loadConfig>> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-pgset-'));
  try {
    const file = path.join(dir, 'updraft.json');
    await writeFile(file, JSON.stringify({ db: DB, postgres }));
    return loadConfig({ file });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

describe('postgres.queryTimeoutSeconds', () => {
  it('defaults to 30 s, and is read from a file, UPDRAFT_DB_QUERY_TIMEOUT and --db-query-timeout', async () => {
    assert.equal(loadConfig({ flags: { db: DB } }).postgres.queryTimeoutSeconds, 30);
    assert.equal(loadConfig({ env: { UPDRAFT_DB: DB, UPDRAFT_DB_QUERY_TIMEOUT: '45' } }).postgres.queryTimeoutSeconds, 45);
    assert.equal(loadConfig({ flags: { db: DB, 'db-query-timeout': '7' } }).postgres.queryTimeoutSeconds, 7);
    assert.equal((await fromFile({ queryTimeoutSeconds: 12 })).postgres.queryTimeoutSeconds, 12);
  });

  it('is refused out of 1 to 3600 s, not in digits, or without db', () => {
    assert.match(refusal({ flags: { db: DB, 'db-query-timeout': '0' } }), /postgres\.queryTimeoutSeconds \(flag --db-query-timeout\) must be at least 1, got 0/);
    assert.match(refusal({ flags: { db: DB, 'db-query-timeout': '3601' } }), /postgres\.queryTimeoutSeconds \(flag --db-query-timeout\) must be at most 3600, got 3601/);
    assert.match(refusal({ env: { UPDRAFT_DB: DB, UPDRAFT_DB_QUERY_TIMEOUT: '30s' } }), /postgres\.queryTimeoutSeconds \(env UPDRAFT_DB_QUERY_TIMEOUT\) must be an integer written in decimal digits, got "30s"/);
    assert.match(
      refusal({ flags: { 'db-query-timeout': '10' } }),
      /postgres\.queryTimeoutSeconds \(flag --db-query-timeout\) is set but db is empty: the embedded SQLite store has no such bound; set db \(--db postgres:\/\/\.\.\.\), or leave it out/,
    );
  });
});

describe('postgres.connectTimeoutSeconds', () => {
  it('defaults to 30 s, and is read from a file, UPDRAFT_DB_CONNECT_TIMEOUT and --db-connect-timeout', async () => {
    assert.equal(loadConfig({ flags: { db: DB } }).postgres.connectTimeoutSeconds, 30);
    assert.equal(loadConfig({ env: { UPDRAFT_DB: DB, UPDRAFT_DB_CONNECT_TIMEOUT: '5' } }).postgres.connectTimeoutSeconds, 5);
    assert.equal(loadConfig({ flags: { db: DB, 'db-connect-timeout': '2' } }).postgres.connectTimeoutSeconds, 2);
    assert.equal((await fromFile({ connectTimeoutSeconds: 9 })).postgres.connectTimeoutSeconds, 9);
  });

  it('is refused out of 1 to 3600 s, or without db (with the other postgres setting given, both named)', () => {
    assert.match(refusal({ flags: { db: DB, 'db-connect-timeout': '0' } }), /postgres\.connectTimeoutSeconds \(flag --db-connect-timeout\) must be at least 1, got 0/);
    assert.match(refusal({ env: { UPDRAFT_DB: DB, UPDRAFT_DB_CONNECT_TIMEOUT: '1.5' } }), /postgres\.connectTimeoutSeconds \(env UPDRAFT_DB_CONNECT_TIMEOUT\) must be an integer written in decimal digits, got "1\.5"/);
    assert.match(
      refusal({ flags: { 'db-query-timeout': '10' }, env: { UPDRAFT_DB_CONNECT_TIMEOUT: '3' } }),
      /postgres\.queryTimeoutSeconds \(flag --db-query-timeout\) and postgres\.connectTimeoutSeconds \(env UPDRAFT_DB_CONNECT_TIMEOUT\) are set but db is empty: .* or leave them out/,
    );
  });
});

describe('postgres.migrationTimeoutSeconds', () => {
  it('defaults to 600 s, and is read from a file, UPDRAFT_DB_MIGRATION_TIMEOUT and --db-migration-timeout; refused out of 1 to 86400 s or without db', async () => {
    assert.equal(loadConfig({ flags: { db: DB } }).postgres.migrationTimeoutSeconds, 600);
    assert.equal(loadConfig({ env: { UPDRAFT_DB: DB, UPDRAFT_DB_MIGRATION_TIMEOUT: '3600' } }).postgres.migrationTimeoutSeconds, 3600);
    assert.equal(loadConfig({ flags: { db: DB, 'db-migration-timeout': '86400' } }).postgres.migrationTimeoutSeconds, 86400);
    assert.equal((await fromFile({ migrationTimeoutSeconds: 1200 })).postgres.migrationTimeoutSeconds, 1200);
    assert.match(refusal({ flags: { db: DB, 'db-migration-timeout': '0' } }), /postgres\.migrationTimeoutSeconds \(flag --db-migration-timeout\) must be at least 1, got 0/);
    assert.match(refusal({ flags: { db: DB, 'db-migration-timeout': '86401' } }), /postgres\.migrationTimeoutSeconds \(flag --db-migration-timeout\) must be at most 86400, got 86401/);
    assert.match(refusal({ env: { UPDRAFT_DB_MIGRATION_TIMEOUT: '60' } }), /postgres\.migrationTimeoutSeconds \(env UPDRAFT_DB_MIGRATION_TIMEOUT\) is set but db is empty/);
  });
});

const started = await startTestPostgres();
if (!started.ok) {
  const message = unavailable(started, 'PostgreSQL store settings tests');
  it('the PostgreSQL store settings on a real server', (t) => t.skip(message));
} else {
  const pgServer = started.server;
  after(() => pgServer.stop());

  it('a server with --db-migration-timeout 1 refuses to start while another instance holds the migrations\' lock, saying why', { timeout: 120_000 }, async () => {
    const url = await pgServer.createDatabase();
    const holder = new pg.Client({ connectionString: url });
    await holder.connect();
    try {
      await holder.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK.toString()]);
      // without the setting the server waits for the lock (600 s), and the test fails by its timeout
      await assert.rejects(startTestServer({ flags: { db: url, 'db-migration-timeout': '1' } }), (err: unknown) => {
        assert.ok(err instanceof UpdraftError && err.code === 'UNAVAILABLE', String(err));
        assert.match(err.message, /the schema migrations waited 1000 ms \(postgres\.migrationTimeoutSeconds\) for a lock/);
        return true;
      });
    } finally {
      await holder.end();
    }
  });

  it('a server with --db-connect-timeout 1 fails a request needing a new connection PostgreSQL does not answer within 1 s', { timeout: 120_000 }, async () => {
    const u = new URL(await pgServer.createDatabase());
    const relay = await startRelay({ host: u.hostname, port: Number(u.port) });
    u.host = `127.0.0.1:${relay.port}`;
    const ts = await startTestServer({ flags: { db: u.toString(), 'db-query-timeout': '1', 'db-connect-timeout': '1' } });
    try {
      const devices = async () => {
        const r = await fetch(`${ts.httpUrl}/api/v1/devices`, { headers: { authorization: `Bearer ${ts.token}` } });
        return { status: r.status, body: (await r.json()) as { error?: { code: string; message: string } } };
      };
      assert.equal((await devices()).status, 200);
      // the connections open are closed (the database restarts), then nothing is answered: a
      // request has a new connection to open, which hangs. One that finds a pooled connection
      // left fails by the query timeout instead and closes it, so the next needs a new one
      await relay.down();
      await relay.up();
      relay.hang();
      const seen: string[] = [];
      for (let i = 0; i < 12; i++) {
        const r = await devices();
        assert.equal(r.status, 503, JSON.stringify(r.body));
        seen.push(r.body.error!.message);
        if (!/did not answer a query within 6000 ms|Connection terminated|not queryable/.test(r.body.error!.message)) break;
      }
      // the default would be 30000 ms
      assert.match(seen.at(-1)!, /^PostgreSQL at postgres:\/\/.* did not answer a new connection within 1000 ms$/, seen.join('\n'));
      relay.resume();
      assert.equal((await devices()).status, 200);
    } finally {
      relay.resume();
      await ts.close();
      await relay.stop();
    }
  });

  it('a server with --db-query-timeout 1 fails a request PostgreSQL leaves unanswered within 1 + 5 s, and serves once it answers', { timeout: 120_000 }, async () => {
    const u = new URL(await pgServer.createDatabase());
    const relay = await startRelay({ host: u.hostname, port: Number(u.port) });
    u.host = `127.0.0.1:${relay.port}`;
    const ts = await startTestServer({ flags: { db: u.toString(), 'db-query-timeout': '1' } });
    try {
      const devices = () => fetch(`${ts.httpUrl}/api/v1/devices`, { headers: { authorization: `Bearer ${ts.token}` } });
      assert.equal((await devices()).status, 200);
      relay.hang();
      const r = await devices();
      const body = (await r.json()) as { error: { code: string; message: string } };
      assert.equal(r.status, 503, JSON.stringify(body));
      assert.equal(body.error.code, 'UNAVAILABLE');
      // the statement timeout set, and the query timeout 5 s more (the default would be 35000 ms)
      assert.match(body.error.message, /^PostgreSQL at postgres:\/\/.* did not answer a query within 6000 ms \(a network partition or a stuck server\)$/);
      relay.resume();
      assert.equal((await devices()).status, 200);
    } finally {
      relay.resume();
      await ts.close();
      await relay.stop();
    }
  });
}
