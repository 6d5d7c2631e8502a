/**
 * The PostgreSQL migrations' index steps (concurrentIndex), on a real PostgreSQL started for
 * this file: a database left by an earlier release (every migration before an index step
 * applied) is started on by PostgresStore. The step is applied once and recorded; what an
 * interrupted build left is repaired; writes to the table go on while it builds; and a second
 * instance starting meanwhile waits for it without a deadlock.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import pg from 'pg';
import { migratePostgres, migrationSql, PG_MIGRATIONS } from '../../src/store/postgres-migrations.ts';
import { PostgresStore } from '../../src/store/postgres-store.ts';
import { startTestPostgres, unavailable } from '../helpers/postgres.ts';

const started = await startTestPostgres();

if (!started.ok) {
  const message = unavailable(started, 'PostgreSQL migration tests');
  it('PostgreSQL index steps', (t) => t.skip(message));
} else {
  const server = started.server;
  after(() => server.stop());

  describe('PostgreSQL index steps (CREATE INDEX CONCURRENTLY)', () => {
    const INDEX = 'executions_failed_device';
    // the step that builds it, an index step
    const step = PG_MIGRATIONS.findIndex((m) => migrationSql(m).includes(`CREATE INDEX CONCURRENTLY ${INDEX} `));
    const clients: pg.Client[] = [];
    const stores: PostgresStore[] = [];
    after(async () => {
      for (const s of stores) await s.stop();
      for (const c of clients) await c.end().catch(() => {});
    });
    const connect = async (url: string) => {
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      clients.push(c);
      return c;
    };
    const open = (url: string) => {
      const s = new PostgresStore({ url });
      stores.push(s);
      return s;
    };
    /** A database as the release before the step left it, with executions in it. */
    const databaseBeforeStep = async (): Promise<{ url: string; admin: pg.Client }> => {
      assert.ok(step > 0, 'an index step builds the index');
      const url = await server.createDatabase();
      const admin = await connect(url);
      await migratePostgres(admin, url, { migrations: PG_MIGRATIONS.slice(0, step) });
      await admin.query(`INSERT INTO executions (job_id, device_id, status, details, queued_at, updated_at, version, attempt)
        SELECT 'j', 'd' || i, CASE WHEN i % 3 = 0 THEN 'FAILED' ELSE 'SUCCEEDED' END, '{}', 1, 1, 1, 1 + i % 2 FROM generate_series(1, 300) i`);
      return { url, admin };
    };
    const indexOf = async (c: pg.Client) =>
      (await c.query<{ oid: number; valid: boolean; def: string }>('SELECT i.indexrelid::int AS oid, i.indisvalid AS valid, pg_get_indexdef(i.indexrelid) AS def FROM pg_index i WHERE i.indexrelid = $1::regclass', [INDEX])).rows[0];
    const versions = async (c: pg.Client) => (await c.query<{ version: number }>('SELECT version FROM updraft_migrations ORDER BY version')).rows.map((r) => r.version);
    /** Waits until a session other than `c`'s runs a statement matching `like` while waiting for a lock. */
    const waitingOnLock = async (c: pg.Client, like: string) => {
      for (;;) {
        const { rows } = await c.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND query LIKE $1 AND wait_event_type = 'Lock'", [like]);
        if (rows[0]!.n > 0) return;
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    /** Starts `store` in the background: its outcome, once there is one. */
    const starting = (store: PostgresStore) => {
      const state: { settled?: string; done: Promise<void> } = { done: Promise.resolve() };
      state.done = store.start().then(
        () => void (state.settled = 'started'),
        (err: unknown) => void (state.settled = `failed: ${(err as Error).message}`),
      );
      return state;
    };

    it('applies an index step once, records it, and does not build it again at the next start', async () => {
      const { url, admin } = await databaseBeforeStep();
      const first = open(url);
      await first.start();
      assert.deepEqual(await versions(admin), PG_MIGRATIONS.map((_, i) => i + 1));
      const built = await indexOf(admin);
      assert.ok(built?.valid, 'built and valid');
      assert.equal((await admin.query<{ r: string | null }>("SELECT to_regclass('executions_failed_attempt') AS r")).rows[0]!.r, null, 'the index it replaces dropped by the next step');
      assert.match(built.def, /^CREATE INDEX executions_failed_device ON public\.executions USING btree \(job_id, device_id, attempt, wave\) WHERE \(status = 'FAILED'::text\)$/);
      await first.stop();
      await open(url).start();
      assert.equal((await indexOf(admin))?.oid, built.oid, 'the same index: not dropped and built again');
      assert.deepEqual(await versions(admin), PG_MIGRATIONS.map((_, i) => i + 1));
    });

    it('repairs at the next start an invalid index an interrupted build left', async () => {
      const { url, admin } = await databaseBeforeStep();
      // an interrupted CREATE INDEX CONCURRENTLY leaves its index, invalid: here one that
      // failed on duplicates (several FAILED rows of job j) under the step's index name
      await assert.rejects(admin.query(`CREATE UNIQUE INDEX CONCURRENTLY ${INDEX} ON executions (job_id) WHERE status = 'FAILED'`), (err: unknown) => (err as { code?: string }).code === '23505');
      assert.equal((await indexOf(admin))?.valid, false, 'left invalid');
      await open(url).start();
      const repaired = await indexOf(admin);
      assert.ok(repaired?.valid, 'valid');
      assert.match(repaired.def, /^CREATE INDEX executions_failed_device ON public\.executions USING btree \(job_id, device_id, attempt, wave\) WHERE \(status = 'FAILED'::text\)$/, 'the step\'s index, not what was left');
      assert.deepEqual(await versions(admin), PG_MIGRATIONS.map((_, i) => i + 1));
    });

    it('lets writes to the table through while an index step waits for a transaction to end (a plain CREATE INDEX queues them)', async () => {
      const { url, admin } = await databaseBeforeStep();
      // a write in progress: the index build must wait for its transaction to end
      const held = await connect(url);
      await held.query('BEGIN');
      await held.query(`INSERT INTO executions (job_id, device_id, status, details, queued_at, updated_at, version) VALUES ('j', 'held', 'QUEUED', '{}', 1, 1, 1)`);
      const store = open(url);
      const start = starting(store);
      try {
        await waitingOnLock(admin, `%CREATE INDEX%${INDEX}%`);
        // another instance writes meanwhile; its bound is only there to fail rather than hang
        // when queued behind the build's lock
        const writer = await connect(url);
        await writer.query("SET lock_timeout = '10s'");
        await writer.query(`INSERT INTO executions (job_id, device_id, status, details, queued_at, updated_at, version) VALUES ('j', 'new', 'FAILED', '{}', 1, 1, 1)`);
        assert.equal((await writer.query("UPDATE executions SET status = 'FAILED', version = 2 WHERE job_id = 'j' AND device_id = 'd1'")).rowCount, 1);
        assert.equal(start.settled, undefined, 'the migration is still running');
        await waitingOnLock(admin, `%CREATE INDEX%${INDEX}%`);
      } finally {
        await held.query('COMMIT');
      }
      await start.done;
      assert.equal(start.settled, 'started');
      assert.ok((await indexOf(admin))?.valid);
      // the writes made during the build are in the index: found by it
      await admin.query('SET enable_seqscan = off');
      const { rows } = await admin.query<{ device_id: string }>("SELECT device_id FROM executions WHERE job_id = 'j' AND status = 'FAILED' AND attempt < 3 AND device_id IN ('new', 'd1') ORDER BY device_id");
      assert.deepEqual(rows.map((r) => r.device_id), ['d1', 'new']);
    });

    it('a second instance starting while the first builds an index waits for it, without a deadlock, and both start', async () => {
      const { url, admin } = await databaseBeforeStep();
      const held = await connect(url);
      await held.query('BEGIN');
      await held.query(`INSERT INTO executions (job_id, device_id, status, details, queued_at, updated_at, version) VALUES ('j', 'held', 'QUEUED', '{}', 1, 1, 1)`);
      const a = starting(open(url));
      let b: ReturnType<typeof starting>;
      try {
        await waitingOnLock(admin, `%CREATE INDEX%${INDEX}%`);
        // the second asks for the migration lock while the first holds it. Were it waiting
        // inside a statement, its snapshot would be one the build then waits for, while it
        // waits for the build's lock: PostgreSQL's deadlock detector fails one of the starts
        b = starting(open(url));
        for (;;) {
          const { rows } = await admin.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid <> pg_backend_pid() AND query LIKE 'SELECT pg_%advisory_lock(%'");
          if (rows[0]!.n > 0) break;
          await new Promise((r) => setTimeout(r, 20));
        }
      } finally {
        await held.query('COMMIT');
      }
      await Promise.all([a.done, b.done]);
      assert.deepEqual([a.settled, b.settled], ['started', 'started']);
      assert.ok((await indexOf(admin))?.valid);
      assert.deepEqual(await versions(admin), PG_MIGRATIONS.map((_, i) => i + 1));
    });
  });
}
