/**
 * The PostgreSQL store against a database that hangs (the connection open, nothing answered:
 * a partition that drops packets, a stuck server), as opposed to one that refuses: a real
 * PostgreSQL behind a TCP relay that can stop forwarding bytes both ways, keeping its sockets
 * open, and go on again. A read, a write through the group commit and an artifact lock fail
 * UNAVAILABLE within the store's query timeout (short here) instead of waiting for ever, and
 * the store serves again, on a fresh connection, once the database answers. The migrations,
 * which may wait for another instance's lock, are not cut by that timeout. A stop ends on a
 * server whose backends are frozen (SIGSTOP: a relay cannot hold a close, as its own side of
 * the socket answers it), closing the connections it does not let go.
 */
import assert from 'node:assert/strict';
import { after, afterEach, beforeEach, describe, it } from 'node:test';
import pg from 'pg';
import { UpdraftError } from '../../src/errors.ts';
import { MIGRATION_LOCK } from '../../src/store/postgres-migrations.ts';
import { PostgresStore, type PostgresStoreDeps } from '../../src/store/postgres-store.ts';
import type { ShadowRecord } from '../../src/store/state-store.ts';
import { createLogger } from '../../src/util/logger.ts';
import { startTestPostgres, unavailable } from '../helpers/postgres.ts';
import { startRelay, type TcpRelay } from '../helpers/tcp-relay.ts';

/** The store's failure for a query nobody answered: UNAVAILABLE, saying so. */
function noAnswer(ms: number) {
  return (err: unknown) => {
    assert.ok(err instanceof UpdraftError, `an UpdraftError, got ${String(err)}`);
    assert.equal(err.code, 'UNAVAILABLE', err.message);
    assert.match(err.message, new RegExp(`did not answer a query within ${ms} ms`));
    return true;
  };
}

function shadow(deviceId: string, version: number): ShadowRecord {
  return { deviceId, name: '', version, deleted: false, state: { reported: { v: version } }, metadata: {}, timestamp: 1 };
}

/** Whether another session has asked for the migration lock (a start waiting for it asks again and again). */
const ASKED_FOR_LOCK = "SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND query LIKE 'SELECT pg_try_advisory_lock%'";

const started = await startTestPostgres();
if (!started.ok) {
  const message = unavailable(started, 'PostgresStore hang tests');
  it('PostgresStore against a database that hangs', (t) => t.skip(message));
} else {
  const server = started.server;
  after(() => server.stop());

  // generous: without the query timeout these calls never end, and the test fails by timing out
  const TEST = { timeout: 60_000 };
  // one pooled connection, so "a fresh connection" is one more the relay accepted; connecting
  // is given long, so a failure within the test is the query timeout's, as its message says
  const TIMEOUTS = { poolSize: 1, statementTimeoutMs: 300, queryTimeoutMs: 600, connectTimeoutMs: 30_000 };

  describe('PostgresStore against a database that hangs', () => {
    let relay: TcpRelay;
    let relayed: string;
    const stores: PostgresStore[] = [];
    const open = async (deps: Partial<PostgresStoreDeps> = {}) => {
      const s = new PostgresStore({ url: relayed, ...TIMEOUTS, ...deps });
      stores.push(s);
      await s.start();
      return s;
    };

    // each test on a database and a relay of its own: one that failed leaves nothing to the next
    beforeEach(async () => {
      const u = new URL(await server.createDatabase());
      relay = await startRelay({ host: u.hostname, port: Number(u.port) });
      u.host = `127.0.0.1:${relay.port}`;
      relayed = u.toString();
    });
    afterEach(async () => {
      relay.resume();
      for (const s of stores.splice(0)) await s.stop();
      await relay.stop();
    });

    it('a read on a connection nobody answers fails UNAVAILABLE; once the database answers, a fresh connection serves', TEST, async () => {
      const store = await open();
      assert.equal(await store.putShadow(shadow('dev-1', 1), 0), true);
      assert.equal((await store.getShadow('dev-1', ''))?.version, 1); // the pool's connection, open and idle
      const before = relay.connections;
      relay.hang();
      await assert.rejects(store.getShadow('dev-1', ''), noAnswer(600));
      relay.resume();
      assert.equal((await store.getShadow('dev-1', ''))?.version, 1);
      assert.ok(relay.connections > before, 'the silent connection was closed, a new one opened');
    });

    it('writes through the group commit fail UNAVAILABLE, one alone or several in a batch, none committed; once the database answers, they succeed', TEST, async () => {
      // two pooled connections, both open and idle: one for each commit below (a new one
      // would wait for the connect timeout instead)
      const store = await open({ poolSize: 2 });
      assert.equal(await store.putShadow(shadow('dev-0', 1), 0), true);
      await Promise.all([store.listShadows({ limit: 10 }), store.countDevices({ limit: 10 })]);
      const before = relay.connections;
      relay.hang();
      // one write (its own transaction), then three in one batch (one transaction for all)
      await assert.rejects(store.putShadow(shadow('dev-1', 1), 0), noAnswer(600));
      const batch = await Promise.allSettled(['dev-2', 'dev-3', 'dev-4'].map((d) => store.putShadow(shadow(d, 1), 0)));
      for (const write of batch) {
        assert.equal(write.status, 'rejected');
        noAnswer(600)(write.reason);
      }
      relay.resume();
      // nothing was committed: each creation is still a creation
      for (const d of ['dev-1', 'dev-2', 'dev-3', 'dev-4']) assert.equal(await store.putShadow(shadow(d, 1), 0), true, d);
      assert.equal((await store.getShadow('dev-4', ''))?.version, 1);
      assert.ok(relay.connections > before, 'the silent connection was closed, a new one opened');
    });

    it('a request that finds every pooled connection busy and none answered fails UNAVAILABLE within the connect timeout, saying so', TEST, async () => {
      const store = await open({ queryTimeoutMs: 5_000, connectTimeoutMs: 300 });
      assert.equal(await store.putShadow(shadow('dev-1', 1), 0), true);
      relay.hang();
      // the one connection held by a query nobody answers; the next request waits for it
      const held = store.listShadows({ limit: 10 });
      await assert.rejects(store.countDevices({ limit: 10 }), (err: unknown) => {
        assert.ok(err instanceof UpdraftError && err.code === 'UNAVAILABLE', String(err));
        assert.match(err.message, /^no connection to PostgreSQL at postgres:\/\/.* came free within 300 ms \(every one busy: a slow or silent database\)$/);
        return true;
      });
      await assert.rejects(held, noAnswer(5_000));
      relay.resume();
      assert.equal((await store.getShadow('dev-1', ''))?.version, 1);
    });

    it('the default query timeout is the statement timeout and 5 s more', TEST, async () => {
      const store = await open({ queryTimeoutMs: undefined });
      assert.equal(await store.putShadow(shadow('dev-1', 1), 0), true);
      relay.hang();
      await assert.rejects(store.getShadow('dev-1', ''), noAnswer(5_300));
      relay.resume();
      assert.equal((await store.getShadow('dev-1', ''))?.version, 1);
    });

    it('an artifact lock on a connection nobody answers fails UNAVAILABLE and is said; the next one opens a fresh connection', TEST, async () => {
      const lines: string[] = [];
      const store = await open({ logger: createLogger({ level: 'warn', format: 'json', write: (line) => lines.push(line) }) });
      assert.deepEqual(await store.withArtifactLock('fw', '1.0.0', 'create', async () => 'first'), { ran: true, value: 'first' });
      const before = relay.connections;
      relay.hang();
      let ran = false;
      await assert.rejects(
        store.withArtifactLock('fw', '1.0.0', 'delete', async () => (ran = true)),
        noAnswer(600),
      );
      assert.equal(ran, false);
      assert.equal(lines.filter((l) => l.includes("did not answer the artifact locks' connection within 600 ms")).length, 1, lines.join('\n'));
      relay.resume();
      assert.deepEqual(await store.withArtifactLock('fw', '1.0.0', 'delete', async () => 'again'), { ran: true, value: 'again' });
      assert.ok(relay.connections > before, 'a new connection for the locks');
    });

    it('the migrations wait for another instance\'s lock longer than the query timeout, and the store starts once it is released', TEST, async () => {
      const url = await server.createDatabase();
      const holder = new pg.Client({ connectionString: url });
      await holder.connect();
      try {
        await holder.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK.toString()]);
        const newcomer = new PostgresStore({ url, statementTimeoutMs: 100, queryTimeoutMs: 200 });
        stores.push(newcomer);
        let settled: string | undefined;
        const starting = newcomer.start().then(
          () => void (settled = 'started'),
          (err: unknown) => void (settled = `failed: ${(err as Error).message}`),
        );
        // the newcomer waits for the lock; then for five times its query timeout
        for (;;) {
          const { rows } = await holder.query<{ n: number }>(ASKED_FOR_LOCK);
          if (rows[0]!.n > 0 || settled) break;
          await new Promise((r) => setTimeout(r, 20));
        }
        await new Promise((r) => setTimeout(r, 1_000));
        assert.equal(settled, undefined, 'still waiting for the lock');
        await holder.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK.toString()]);
        await starting;
        assert.equal(settled, 'started');
        assert.equal(await newcomer.putShadow(shadow('dev-1', 1), 0), true);
      } finally {
        await holder.end();
      }
    });
  });

  describe('PostgresStore migrations bounded', () => {
    /** Runs `fn` while another session, `holder`, holds the migration lock (another instance migrating). */
    const whileLocked = async (url: string, fn: (holder: pg.Client) => Promise<void>) => {
      const holder = new pg.Client({ connectionString: url });
      await holder.connect();
      try {
        await holder.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK.toString()]);
        await fn(holder);
      } finally {
        await holder.end();
      }
    };
    const startFailure = (pattern: RegExp) => (err: unknown) => {
      assert.ok(err instanceof UpdraftError, String(err));
      assert.equal(err.code, 'UNAVAILABLE', err.message);
      assert.match(err.message, pattern);
      return true;
    };

    it('a start waiting longer than migrationTimeoutMs for the migration lock fails, saying why; once free, it starts', { timeout: 60_000 }, async () => {
      const url = await server.createDatabase();
      const store = new PostgresStore({ url, migrationTimeoutMs: 500 });
      await whileLocked(url, async () => {
        // without the bound this waits for ever, and the test fails by its timeout
        await assert.rejects(
          store.start(),
          startFailure(/^Cannot open the PostgreSQL state store postgres:\/\/\S+: the schema migrations waited 500 ms \(postgres\.migrationTimeoutSeconds\) for a lock \(another instance migrating, or a long transaction on a table they change\), and gave up on that step \(each migration is applied whole or not at all\): start again once it ends, or give them longer$/),
        );
      });
      await store.start();
      assert.equal(await store.putShadow(shadow('dev-1', 1), 0), true);
      await store.stop();
    });

    it('a start whose migrations PostgreSQL stops answering fails after migrationTimeoutMs + 5 s, saying why; once it answers, a start migrates', { timeout: 60_000 }, async () => {
      const direct = new URL(await server.createDatabase());
      const relay = await startRelay({ host: direct.hostname, port: Number(direct.port) });
      const relayed = new URL(direct);
      relayed.host = `127.0.0.1:${relay.port}`;
      // the server's lock_timeout (3 s) would answer first, were the database not silent
      const store = new PostgresStore({ url: relayed.toString(), migrationTimeoutMs: 3_000 });
      try {
        let failure: unknown;
        await whileLocked(direct.toString(), async (holder) => {
          let settled = false;
          const starting = store.start().then(
            () => void (settled = true),
            (err: unknown) => void ((settled = true), (failure = err)),
          );
          // the store's migrations wait for the lock; then the database goes silent to them
          for (;;) {
            const { rows } = await holder.query<{ n: number }>(ASKED_FOR_LOCK);
            if (rows[0]!.n > 0 || settled) break;
            await new Promise((r) => setTimeout(r, 20));
          }
          relay.hang();
          // without the bound this waits for ever, and the test fails by its timeout
          await starting;
        });
        startFailure(/^Cannot open the PostgreSQL state store postgres:\/\/\S+: it did not answer a step of the schema migrations within 8000 ms \(a network partition or a stuck server\); each migration is applied whole or not at all: start again once it answers$/)(failure);
        relay.resume();
        await store.start();
        assert.equal(await store.putShadow(shadow('dev-1', 1), 0), true);
      } finally {
        relay.resume();
        await store.stop();
        await relay.stop();
      }
    });
  });

  describe('PostgresStore stopping on a stuck server', () => {
    /** The backends serving `url`'s database, other than the asking one. */
    const backendsOf = async (url: string): Promise<number[]> => {
      const admin = new pg.Client({ connectionString: url });
      await admin.connect();
      try {
        const { rows } = await admin.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()');
        return rows.map((r) => r.pid);
      } finally {
        await admin.end();
      }
    };

    it('stop() ends when PostgreSQL does not answer the close: the connections left are closed, said once', { timeout: 60_000 }, async () => {
      const url = await server.createDatabase();
      const lines: string[] = [];
      const store = new PostgresStore({ url, poolSize: 2, closeTimeoutMs: 500, logger: createLogger({ level: 'warn', format: 'json', write: (line) => lines.push(line) }) });
      await store.start();
      // an idle pooled connection, and the artifact locks' one
      assert.equal(await store.putShadow(shadow('dev-1', 1), 0), true);
      assert.deepEqual(await store.withArtifactLock('fw', '1.0.0', 'create', async () => 'held'), { ran: true, value: 'held' });
      const frozen = await backendsOf(url);
      assert.ok(frozen.length >= 2, `the store's backends: ${frozen.join(', ')}`);
      for (const pid of frozen) process.kill(pid, 'SIGSTOP');
      let stopped = false;
      const stopping = store.stop().then(() => void (stopped = true));
      try {
        // without the bound it never ends; given 60 times the bound here, so that the backends
        // are let go (finally) whatever happens
        await Promise.race([stopping, new Promise((r) => setTimeout(r, 30_000).unref())]);
      } finally {
        for (const pid of frozen) process.kill(pid, 'SIGCONT');
      }
      assert.equal(stopped, true, 'stop() ended while PostgreSQL was stuck');
      const warned = lines.filter((l) => l.includes('did not let') && l.includes('within 500 ms of the stop'));
      assert.equal(warned.length, 1, lines.join('\n'));
      // the sockets were closed: the backends, going on, see it and end
      for (;;) {
        const left = (await backendsOf(url)).filter((pid) => frozen.includes(pid));
        if (left.length === 0) break;
        await new Promise((r) => setTimeout(r, 50));
      }
    });

    it('a stop on a server that answers waits for the goodbyes and says nothing', { timeout: 60_000 }, async () => {
      const url = await server.createDatabase();
      const lines: string[] = [];
      const store = new PostgresStore({ url, poolSize: 2, logger: createLogger({ level: 'warn', format: 'json', write: (line) => lines.push(line) }) });
      await store.start();
      assert.equal(await store.putShadow(shadow('dev-1', 1), 0), true);
      assert.deepEqual(await store.withArtifactLock('fw', '1.0.0', 'create', async () => 'held'), { ran: true, value: 'held' });
      await store.stop();
      assert.deepEqual(lines, []);
      assert.deepEqual(await backendsOf(url), [], 'every connection closed when stop() ends');
    });
  });
}
