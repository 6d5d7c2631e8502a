/**
 * The PostgreSQL StateStore against a real PostgreSQL started for this file (initdb in a
 * temp dir, free port): the shared contract, then what only several writers on one
 * database can show.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import pg from 'pg';
import { UpdraftError } from '../../src/errors.ts';
import { createLogger } from '../../src/util/logger.ts';
import { ABANDONED_AFTER_MS } from '../../src/store/job-creation.ts';
import { MIGRATION_LOCK, migratePostgres, migrationSql, PG_MIGRATIONS } from '../../src/store/postgres-migrations.ts';
import { PostgresStore, redactPostgresUrl } from '../../src/store/postgres-store.ts';
import type { ShadowRecord } from '../../src/store/state-store.ts';
import { TombstoneRetention } from '../../src/shadow/tombstone-retention.ts';
import { startTestPostgres, unavailable } from '../helpers/postgres.ts';
import { checkDeletionsInMs, checkMigratedCounts, checkMigratedRecentFailures, RECENT_FAILURES_SEED, checkMigratedRevocations, REVOKED_CERTIFICATES_SEED, checkMigratedLatestOutcomes, LATEST_OUTCOMES_SEED, checkMigratedDeletions, DELETIONS_IN_SECONDS_SEED, deletionsSeed, checkMigratedGroups, stateStoreContract } from './state-store.contract.ts';

const started = await startTestPostgres();

if (!started.ok) {
  const message = unavailable(started, 'PostgresStore tests');
  it('PostgresStore', (t) => t.skip(message));
} else {
  const server = started.server;
  after(() => server.stop());

  stateStoreContract('PostgresStore', async () => {
    const url = await server.createDatabase();
    return {
      store: new PostgresStore({ url }),
      reopen: async () => new PostgresStore({ url }),
      cleanup: () => server.dropDatabase(url),
      exec: async (sql) => {
        const raw = new pg.Client({ connectionString: url });
        await raw.connect();
        try {
          await raw.query(sql);
        } finally {
          await raw.end();
        }
      },
    };
  });

  describe('PostgresStore specifics', () => {
    const stores: PostgresStore[] = [];
    const open = (url: string, extra: Partial<ConstructorParameters<typeof PostgresStore>[0]> = {}) => {
      const s = new PostgresStore({ url, ...extra });
      stores.push(s);
      return s;
    };
    after(async () => {
      for (const s of stores) await s.stop();
    });

    it("a certificate recorded while its device's deletion is uncommitted waits for it, and is recorded revoked", async () => {
      const url = await server.createDatabase();
      const store = open(url);
      await store.start();
      await store.createDevice({ deviceId: 'd1', attributes: {}, tags: [], secretHash: 'a'.repeat(64), revoked: false, createdAt: 1, updatedAt: 1, version: 1 });
      const now = Date.now();
      // deleteDevice's statements in a transaction held open before its COMMIT
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      try {
        await c.query('BEGIN');
        await c.query('DELETE FROM devices WHERE device_id = $1 AND version = $2', ['d1', 1]);
        await c.query('UPDATE device_certificates SET revoked_at = $1 WHERE device_id = $2 AND revoked_at IS NULL AND not_after > $1', [now, 'd1']);
        // a renewal records the certificate it just issued meanwhile: it is done, or waits on the deletion's lock
        let done = false;
        const recorded = store.recordDeviceCertificate({ serial: '1a2b', deviceId: 'd1', issuer: 'f'.repeat(64), issuerSubject: 'CN=x', issuedAt: now, notAfter: now + 86_400_000 }).finally(() => (done = true));
        for (;;) {
          if (done) break;
          if (Number((await c.query("SELECT count(*) AS n FROM pg_locks WHERE NOT granted")).rows[0].n) > 0) break;
          await new Promise((r) => setTimeout(r, 20));
        }
        await c.query('COMMIT');
        await recorded;
      } finally {
        await c.end();
      }
      assert.equal(await store.getDevice('d1'), undefined, 'the device is deleted');
      assert.deepEqual((await store.listRevokedCertificates(now)).map((r) => r.serial), ['1a2b'], 'its certificate, recorded during the deletion, is revoked');
    });

    it('survives its sessions being ended under write load (a failover): the writes in flight fail UNAVAILABLE, the next ones succeed', async () => {
      const url = await server.createDatabase();
      const store = open(url);
      await store.start();
      const admin = new pg.Client({ connectionString: url });
      await admin.connect();
      const shadow = (deviceId: string, version: number): ShadowRecord => ({ deviceId, name: '', version, deleted: false, state: { reported: { v: version } }, metadata: {}, timestamp: 1 });
      const failures: string[] = [];
      try {
        // rounds of 200 writes, each with every session of the store ended while they commit,
        // until the ending has hit a commit in flight (a checked-out connection with no
        // 'error' listener once took the process with it)
        for (let round = 0; round < 40 && failures.length === 0; round++) {
          const writes = Array.from({ length: 200 }, (_, i) => store.putShadow(shadow(`fo-${round}-${i}`, 1), 0).catch((err: unknown) => void failures.push(String((err as UpdraftError).code))));
          await new Promise((resolve) => setImmediate(resolve));
          await admin.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()");
          await Promise.all(writes);
        }
        assert.ok(failures.length > 0, 'an ended session hit a commit in flight');
        // a session ended under it (57P01, or the connection cut) is the database not answering, not a fault of the write
        assert.ok(failures.every((c) => c === 'UNAVAILABLE'), failures.join(','));
        // and it serves again
        assert.equal(await store.putShadow(shadow('fo-after', 1), 0), true);
        assert.equal((await store.getShadow('fo-after', ''))?.version, 1);
      } finally {
        await admin.end();
      }
    });

    it('records applied migrations in updraft_migrations, and a restart applies none twice', async () => {
      const url = await server.createDatabase();
      await open(url).start();
      await open(url).start(); // a second instance: migrations already there
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      try {
        const { rows } = await c.query<{ version: number }>('SELECT version FROM updraft_migrations ORDER BY version');
        assert.deepEqual(rows.map((r) => r.version), PG_MIGRATIONS.map((_, i) => i + 1));
      } finally {
        await c.end();
      }
    });

    it('migrates once when several instances start at the same time', async () => {
      const url = await server.createDatabase();
      await Promise.all([open(url).start(), open(url).start(), open(url).start()]);
      const s = open(url);
      await s.start();
      assert.equal(await s.putShadow(shadow('a', 1), 0), true);
    });

    /**
     * A new database at the schema the migration containing `marker` found (every one before
     * it applied, as an earlier release left it), with `seed` run in it.
     */
    const databaseBefore = async (marker: string, seed: string): Promise<string> => {
      const url = await server.createDatabase();
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      try {
        const before = PG_MIGRATIONS.findIndex((m) => migrationSql(m).includes(marker));
        assert.ok(before > 0, `a migration contains ${marker}`);
        await migratePostgres(c, url, { migrations: PG_MIGRATIONS.slice(0, before) });
        await c.query(seed);
      } finally {
        await c.end();
      }
      return url;
    };

    it('fills in the execution counts of a database migrated from before they were kept', async () => {
      // a job's executions, from before counts were kept
      const url = await databaseBefore(
        'CREATE TABLE execution_counts',
        `INSERT INTO executions (job_id, device_id, status, details, queued_at, updated_at, version, wave, dispatched_at) VALUES
          ('j', 'a', 'QUEUED', '{}', 1, 1, 1, 0, NULL), ('j', 'b', 'QUEUED', '{}', 1, 1, 1, 0, 5), ('j', 'c', 'SUCCEEDED', '{}', 1, 1, 1, 1, 5), ('k', 'a', 'QUEUED', '{}', 1, 1, 1, 0, NULL)`,
      );
      const store = open(url);
      await store.start();
      await checkMigratedCounts(store);
    });

    it('gives the members of existing static groups rows of their own when it migrates', async () => {
      const url = await databaseBefore(
        'CREATE TABLE group_members',
        `INSERT INTO device_groups (name, kind, devices, query, description, created_at, updated_at, version) VALUES
          ('eu', 'static', '["a","b"]', NULL, NULL, 1, 1, 1), ('old', 'dynamic', '[]', 'tags = old', NULL, 1, 1, 1)`,
      );
      const store = open(url);
      await store.start();
      await checkMigratedGroups(store);
    });

    it("lists the devices deleted before deletions were recorded when it migrates, by their tombstones", async () => {
      const url = await databaseBefore('CREATE TABLE deleted_devices', deletionsSeed((b) => (b ? 'true' : 'false')));
      const store = open(url);
      await store.start();
      await checkMigratedDeletions(store);
    });

    it('makes deletion times the first fill wrote in seconds milliseconds when it migrates', async () => {
      const url = await databaseBefore('UPDATE deleted_devices SET deleted_at', DELETIONS_IN_SECONDS_SEED);
      const store = open(url);
      await store.start();
      await checkDeletionsInMs(store);
    });

    it('lists the failures written before the newest failures had an index when it migrates', async () => {
      const url = await databaseBefore('ADD COLUMN IF NOT EXISTS failed_at', RECENT_FAILURES_SEED);
      const store = open(url);
      await store.start();
      await checkMigratedRecentFailures(store);
    });

    it("checks the CRL's revocations by the index that replaced device_certificates_revoked when it migrates", async () => {
      const url = await databaseBefore('device_certificates_revoked_expiry', REVOKED_CERTIFICATES_SEED);
      const store = open(url);
      await store.start();
      await checkMigratedRevocations(store);
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      try {
        const { rows } = await c.query<{ indexname: string; indexdef: string }>("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'device_certificates' AND indexname LIKE 'device_certificates_revoked%'");
        assert.deepEqual(rows.map((r) => r.indexname), ['device_certificates_revoked_expiry'], 'the new index there, the one it replaces dropped');
        assert.match(rows[0]!.indexdef, /\(not_after, revoked_at\) WHERE \(revoked_at IS NOT NULL\)$/, rows[0]!.indexdef);
      } finally {
        await c.end();
      }
    });

    it("reads each device's newest outcomes from the index of the outcomes alone when it migrates", async () => {
      const url = await databaseBefore('executions_device_outcomes', LATEST_OUTCOMES_SEED);
      const store = open(url);
      await store.start();
      await checkMigratedLatestOutcomes(store);
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      try {
        const { rows } = await c.query<{ indexdef: string }>("SELECT indexdef FROM pg_indexes WHERE tablename = 'executions' AND indexname = 'executions_device_outcomes'");
        assert.equal(rows.length, 1, 'the index there');
        assert.match(rows[0]!.indexdef, /\(device_id, queued_at, job_id\) WHERE \(status = ANY \(ARRAY\['SUCCEEDED'::text, 'FAILED'::text, 'TIMED_OUT'::text, 'REJECTED'::text\]\)\)$/, rows[0]!.indexdef);
      } finally {
        await c.end();
      }
    });

    it("lists a deletion an earlier release's instance made after the migration, and the sweep then removes its tombstones after the retention", async () => {
      const url = await server.createDatabase();
      const store = open(url);
      await store.start();
      // as an instance of the earlier release deletes a device: its registration and shadows
      // go (tombstones, stamped in seconds), and nothing is written to deleted_devices
      await store.createDevice({ deviceId: 'kept', attributes: {}, tags: [], revoked: false, createdAt: 1, updatedAt: 1, version: 1 });
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      const now = Date.now();
      const seconds = Math.floor(now / 1000);
      try {
        await c.query(`INSERT INTO shadows (device_id, name, version, deleted, state, metadata, timestamp) VALUES
          ('old-del', '', 3, true, '{}', '{}', $1), ('old-del', 'wifi', 2, true, '{}', '{}', $2), ('kept', 'x', 2, true, '{}', '{}', $2)`, [seconds - 10, seconds]);
      } finally {
        await c.end();
      }
      const logger = createLogger({ level: 'silent' });
      const sweep = (offsetMs: number) => new TombstoneRetention({ store, isLeader: () => true, hours: 48, logger, now: () => now + offsetMs }).pass();
      // the sweep's first pass lists it (deleted at its last tombstone, in ms: within 48 hours)
      assert.deepEqual(await sweep(47 * 3_600_000), { devices: 0, tombstones: 0 });
      assert.equal(await store.listUnrecordedDeletions(), 0, 'listed by that pass, and only old-del: the registered device is not');
      assert.deepEqual(await sweep(49 * 3_600_000), { devices: 1, tombstones: 2 });
      assert.deepEqual(await store.listShadowTombstones('old-del'), []);
      assert.deepEqual((await store.listShadowTombstones('kept')).map((t) => t.name), ['x']);
    });

    it('removes at start job creations nobody touched for a while, not those in progress', async () => {
      const url = await server.createDatabase();
      await open(url).start();
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      try {
        // as an instance that died leaves one (old), and as another instance writing one now has it (fresh)
        await c.query('INSERT INTO job_creations (job_id, touched_at) VALUES ($1, $2), ($3, $4)', ['dead', Date.now() - ABANDONED_AFTER_MS - 1000, 'live', Date.now()]);
        await c.query(`INSERT INTO executions (job_id, device_id, status, details, queued_at, updated_at, version) VALUES
          ('dead', 'a', 'QUEUED', '{}', 1, 1, 1), ('dead', 'b', 'QUEUED', '{}', 1, 1, 1), ('live', 'a', 'QUEUED', '{}', 1, 1, 1)`);
      } finally {
        await c.end();
      }
      const store = open(url);
      await store.start();
      assert.deepEqual(await store.countExecutions('dead'), []);
      assert.deepEqual((await store.listExecutions({ deviceId: 'a' })).map((e) => e.jobId), ['live']);
      assert.deepEqual(await store.countExecutions('live'), [{ wave: 0, status: 'QUEUED', count: 1, dispatched: 0 }]);
      // a creation in progress holds its id
      await assert.rejects(store.createJob({ jobId: 'live', artifactName: 'fw', artifactVersion: '1', status: 'IN_PROGRESS', createdAt: 1 }, []), (err: unknown) => err instanceof UpdraftError && err.code === 'CONFLICT');
    });

    it('removes, while it runs, a creation that goes stale after its start (an instance restarted at once after a crash), within a sweep period; not one in progress; no more once stopped', async () => {
      const url = await server.createDatabase();
      const lines: string[] = [];
      const store = open(url, { abandonedSweepMs: 20, logger: createLogger({ level: 'warn', format: 'json', write: (line) => lines.push(line) }) });
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      const markers = async () => (await c.query<{ job_id: string }>('SELECT job_id FROM job_creations ORDER BY job_id')).rows.map((r) => r.job_id);
      const executionsOf = async (jobId: string) => Number((await c.query<{ n: string }>('SELECT count(*) AS n FROM executions WHERE job_id = $1', [jobId])).rows[0]!.n);
      const countsOf = async (jobId: string) => Number((await c.query<{ n: string }>('SELECT count(*) AS n FROM execution_counts WHERE job_id = $1', [jobId])).rows[0]!.n);
      // nobody touched it for a while, by the database's clock
      const stale = (jobId: string) => c.query(`UPDATE job_creations SET touched_at = (extract(epoch FROM clock_timestamp()) * 1000)::bigint - $2::bigint WHERE job_id = $1`, [jobId, ABANDONED_AFTER_MS + 1000]);
      const waitFor = async (what: string, done: () => Promise<boolean>) => {
        // generous: the sweep runs every 20 ms; the bound only keeps a failing test from hanging
        for (const deadline = Date.now() + 20_000; !(await done()); ) {
          if (Date.now() > deadline) assert.fail(`${what}: not within 20 s`);
          await new Promise((r) => setTimeout(r, 20));
        }
      };
      try {
        await store.start();
        // as a crash leaves it (the first piece of 'cut' committed, the instance killed, and this
        // one started at once), and as another instance creating a job right now has it ('live'):
        // both markers fresh, the executions' counts kept by the triggers
        await c.query(`INSERT INTO job_creations (job_id, touched_at) VALUES ('cut', (extract(epoch FROM clock_timestamp()) * 1000)::bigint), ('live', (extract(epoch FROM clock_timestamp()) * 1000)::bigint)`);
        await c.query(`INSERT INTO executions (job_id, device_id, status, details, queued_at, updated_at, version)
          SELECT 'cut', 'd' || i, 'QUEUED', '{}'::jsonb, 1, 1, 1 FROM generate_series(1, 50) AS i UNION ALL SELECT 'live', 'd1', 'QUEUED', '{}'::jsonb, 1, 1, 1`);
        await store.createJob({ jobId: 'real', artifactName: 'fw', artifactVersion: '1', status: 'IN_PROGRESS', createdAt: 1 }, [{ jobId: 'real', deviceId: 'd1', status: 'QUEUED', details: {}, queuedAt: 2, updatedAt: 2, version: 1 }]);
        // the device shows the job that exists, nothing of the two without a row
        assert.deepEqual((await store.listDeviceExecutions('d1', { limit: 10 })).items.map((e) => e.jobId), ['real']);
        assert.deepEqual((await store.listUndispatchedOfDevice('d1')).map((e) => e.jobId), ['real']);
        // sweeps go by (a fresh marker is 10 minutes from stale: whenever this runs, none is due)
        await new Promise((r) => setTimeout(r, 200));
        assert.deepEqual(await markers(), ['cut', 'live']);
        assert.equal(await executionsOf('cut'), 50);

        await stale('cut');
        await waitFor('the abandoned creation removed', async () => (await markers()).length === 1);
        assert.deepEqual(await markers(), ['live'], 'the creation in progress is left alone');
        assert.equal(await executionsOf('cut'), 0);
        assert.equal(await countsOf('cut'), 0);
        assert.equal(await executionsOf('live'), 1);
        assert.ok(lines.some((l) => l.includes('removed a job whose creation was interrupted') && l.includes('"jobId":"cut"')), lines.join('\n'));

        // a sweep that fails is logged, and the next one goes on
        await c.query('ALTER TABLE job_creations RENAME TO job_creations_away');
        await waitFor('the failed sweep logged', async () => lines.some((l) => l.includes('cannot remove abandoned job creations')));
        await c.query('ALTER TABLE job_creations_away RENAME TO job_creations');
        await stale('live');
        await waitFor('the next sweep removing the creation gone stale', async () => (await markers()).length === 0);
        assert.equal(await executionsOf('live'), 0);

        // stopped: no more sweeps
        await store.stop();
        await c.query(`INSERT INTO job_creations (job_id, touched_at) VALUES ('after', 1)`);
        await new Promise((r) => setTimeout(r, 200));
        assert.deepEqual(await markers(), ['after']);
      } finally {
        await c.end();
      }
    });

    it('refuses a database from a newer schema with a CONFIG error', async () => {
      const url = await server.createDatabase();
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      await c.query('CREATE TABLE updraft_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now()); INSERT INTO updraft_migrations (version) VALUES (999)');
      await c.end();
      await assert.rejects(open(url).start(), (err: unknown) => err instanceof UpdraftError && err.code === 'CONFIG' && /schema version 999/.test(err.message));
    });

    it('with migrateExisting false (a command beside running servers), refuses a database of an older schema and leaves it as it is; sets up a new one', async () => {
      const url = await server.createDatabase();
      const first = open(url);
      await first.start();
      await first.stop();
      const c = new pg.Client({ connectionString: url });
      await c.connect();
      try {
        const latest = (await c.query<{ v: number }>('SELECT max(version) AS v FROM updraft_migrations')).rows[0]!.v;
        await c.query('DELETE FROM updraft_migrations WHERE version = $1', [latest]); // as the previous Updraft left it
        await assert.rejects(open(url, { migrateExisting: false }).start(), (err: unknown) => err instanceof UpdraftError && err.code === 'CONFIG' && err.message.includes(`has schema version ${latest - 1}, older than this Updraft's (${latest})`));
        assert.equal((await c.query<{ v: number }>('SELECT max(version) AS v FROM updraft_migrations')).rows[0]!.v, latest - 1, 'not migrated');
      } finally {
        await c.end();
      }
      const fresh = open(await server.createDatabase(), { migrateExisting: false });
      await fresh.start();
      assert.equal(await fresh.getDevice('x'), undefined, 'a new database is set up');
      await fresh.stop();
    });

    it('reports an unreachable server as a CONFIG error without the password', async () => {
      const store = new PostgresStore({ url: 'postgres://u:hunter2@127.0.0.1:1/none' });
      await assert.rejects(store.start(), (err: unknown) => err instanceof UpdraftError && err.code === 'CONFIG' && !err.message.includes('hunter2') && err.message.includes('***'));
      assert.equal(redactPostgresUrl('postgres://u:pw@h/db'), 'postgres://u:***@h/db');
      // node-postgres also takes the password as a query parameter
      assert.equal(redactPostgresUrl('postgres://u@h/db?sslmode=require&password=pw&sslpassword=k'), 'postgres://u@h/db?sslmode=require&password=***&sslpassword=***');
    });

    it('throws UNAVAILABLE for reads, writes and artifact locks once its PostgreSQL server is stopped; a write refused stays its own error', { skip: process.env.UPDRAFT_TEST_POSTGRES_URL ? 'UPDRAFT_TEST_POSTGRES_URL: a server the tests did not start cannot be stopped' : false }, async () => {
      // a server of its own: the file's server serves the other tests
      const own = await startTestPostgres();
      if (!own.ok) throw new Error(own.reason);
      try {
        const s = open(await own.server.createDatabase());
        await s.start();
        assert.equal(await s.putShadow(shadow('dev-1', 1), 0), true);
        const group = { name: 'g', kind: 'static' as const, devices: [], createdAt: 1, updatedAt: 1, version: 1 };
        await s.createGroup(group);
        await assert.rejects(s.createGroup(group), (err: unknown) => err instanceof UpdraftError && err.code === 'CONFLICT', "a refusal of the store's own");

        await own.server.stop(); // its sessions are ended, its port refuses
        const unavailable = (err: unknown) => err instanceof UpdraftError && err.code === 'UNAVAILABLE' && err.status === 503 && /PostgreSQL/.test(err.message);
        await assert.rejects(s.getShadow('dev-1', ''), unavailable, 'a read');
        await assert.rejects(s.getSetting('x'), unavailable, 'a read on the pool');
        await assert.rejects(s.putShadow(shadow('dev-1', 2), 1), unavailable, 'a bulk write');
        await assert.rejects(s.putSetting('x', 'y'), unavailable, 'a write');
        await assert.rejects(s.withArtifactLock('fw', '1.0.0', 'delete', async () => 1), unavailable, 'an artifact lock');
      } finally {
        await own.server.stop().catch(() => undefined);
      }
    });

    it('lets exactly one of two instances win each conditional write, under contention', async () => {
      const url = await server.createDatabase();
      const a = open(url);
      const b = open(url);
      await Promise.all([a.start(), b.start()]);
      // 20 shadows, each raced by both instances from every version 0..9: a lost update would
      // show as two winners for one version
      const devices = Array.from({ length: 20 }, (_, i) => `d${i}`);
      let wins = 0;
      for (let v = 0; v < 10; v++) {
        const results = await Promise.all(devices.flatMap((d) => [a.putShadow(shadow(d, v + 1, { by: 'a' }), v), b.putShadow(shadow(d, v + 1, { by: 'b' }), v)]));
        for (let i = 0; i < devices.length; i++) {
          assert.equal(Number(results[2 * i]) + Number(results[2 * i + 1]), 1, `exactly one winner for ${devices[i]} at version ${v + 1}`);
        }
        wins += results.filter(Boolean).length;
      }
      assert.equal(wins, devices.length * 10);
      for (const d of devices) assert.equal((await a.getShadow(d, ''))?.version, 10);
      // the same for execution updates, which also go in bulk statements
      const job = { jobId: 'race', artifactName: 'fw', artifactVersion: '2.0.0', status: 'IN_PROGRESS' as const, createdAt: 1 };
      const exec = (deviceId: string, version: number, by: string) => ({ jobId: 'race', deviceId, status: 'IN_PROGRESS' as const, details: { by }, queuedAt: 1, updatedAt: version, version });
      await a.createJob(job, devices.map((d) => exec(d, 1, 'none')));
      for (let v = 2; v <= 6; v++) {
        const results = await Promise.all(devices.flatMap((d) => [a.updateExecution(exec(d, v, 'a')), b.updateExecution(exec(d, v, 'b'))]));
        for (let i = 0; i < devices.length; i++) {
          assert.equal(Number(results[2 * i]) + Number(results[2 * i + 1]), 1, `exactly one winner for execution ${devices[i]} at version ${v}`);
        }
      }
      for (const d of devices) assert.equal((await b.getExecution('race', d))?.version, 6);
    });

    it('writes a batch of shadow and execution writes in bulk statements, without falling back to one by one', async () => {
      const url = await server.createDatabase();
      const lines: string[] = [];
      const s = open(url, { logger: createLogger({ level: 'debug', write: (line) => lines.push(line) }) });
      await s.start();
      const ids = Array.from({ length: 30 }, (_, i) => `bulk-${i}`);
      const job = { jobId: 'job-1', artifactName: 'fw', artifactVersion: '2.0.0', status: 'IN_PROGRESS' as const, createdAt: 1 };
      await s.createJob(job, ids.map((deviceId) => ({ jobId: 'job-1', deviceId, status: 'QUEUED' as const, details: {}, queuedAt: 1, updatedAt: 1, version: 1 })));
      assert.ok((await Promise.all(ids.map((id) => s.putShadow(shadow(id, 1), 0)))).every(Boolean));
      const written = await Promise.all(
        ids.flatMap((deviceId) => [
          s.putShadow(shadow(deviceId, 2, { v: '2' }), 1),
          s.updateExecution({ jobId: 'job-1', deviceId, status: 'IN_PROGRESS', details: { phase: 'installing' }, queuedAt: 1, updatedAt: 2, version: 2, wave: 0, attempt: 1, dispatchedAt: 2, dueAt: 60 }),
        ]),
      );
      assert.ok(written.every(Boolean));
      assert.deepEqual(lines.filter((l) => /batch aborted/.test(l)), [], 'no statement of the batch failed');
      assert.equal((await s.getShadow('bulk-29', ''))?.state.desired?.['v'], '2');
      assert.deepEqual((await s.listExecutions({ jobId: 'job-1' })).map((e) => [e.status, e.dueAt]), ids.map(() => ['IN_PROGRESS', 60]));
    });

    it('gives a write the database refuses its own error without failing its batch', async () => {
      const url = await server.createDatabase();
      const s = open(url);
      await s.start();
      // JSONB cannot hold \u0000: that one write fails, its neighbours in the same batch commit
      const results = await Promise.allSettled([s.putShadow(shadow('ok-1', 1), 0), s.putShadow(shadow('bad', 1, { x: 'a\u0000b' }), 0), s.putShadow(shadow('ok-2', 1), 0)]);
      assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'rejected', 'fulfilled']);
      const reason = (results[1] as PromiseRejectedResult).reason;
      assert.ok(reason instanceof UpdraftError && reason.code === 'BAD_REQUEST', String(reason));
      assert.ok(await s.getShadow('ok-1', ''));
      assert.ok(await s.getShadow('ok-2', ''));
      assert.equal(await s.getShadow('bad', ''), undefined);
    });

    it('fails reads and writes held by a lock after statementTimeoutMs instead of waiting for ever, changes nothing, and serves again once the lock is gone', async () => {
      const url = await server.createDatabase();
      const s = open(url, { statementTimeoutMs: 300 });
      await s.start();
      assert.equal(await s.putShadow(shadow('dev-1', 1, { v: '1' }), 0), true);
      // another session (an instance, an operator's migration) holds the table
      const locker = new pg.Client({ connectionString: url });
      await locker.connect();
      try {
        await locker.query('BEGIN');
        await locker.query('LOCK TABLE shadows IN ACCESS EXCLUSIVE MODE');
        // an answer of the database (57014), not a failure to reach it: INTERNAL, as any SQL error
        const timedOut = (err: unknown) => err instanceof UpdraftError && err.code === 'INTERNAL' && /statement timeout/.test(err.message);
        await assert.rejects(s.getShadow('dev-1', ''), timedOut);
        await assert.rejects(s.putShadow(shadow('dev-1', 2, { v: '2' }), 1), timedOut);
      } finally {
        await locker.query('ROLLBACK');
        await locker.end();
      }
      assert.deepEqual((await s.getShadow('dev-1', ''))?.state.desired, { v: '1' }, 'the write that timed out changed nothing');
      assert.equal(await s.putShadow(shadow('dev-1', 2, { v: '2' }), 1), true, 'and the store writes again');
    });

    it('runs its migrations without the statement timeout', async () => {
      const url = await server.createDatabase();
      // an instance migrating holds the migration lock longer than the newcomer's statement timeout
      const holder = new pg.Client({ connectionString: url });
      await holder.connect();
      const newcomer = open(url, { statementTimeoutMs: 200 });
      try {
        await holder.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK.toString()]);
        const starting = newcomer.start();
        await new Promise((r) => setTimeout(r, 600)); // three times its statement timeout
        await holder.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK.toString()]);
        await starting;
        assert.equal(await newcomer.putShadow(shadow('dev-1', 1), 0), true);
      } finally {
        await holder.end();
      }
    });
  });
}

function shadow(deviceId: string, version: number, desired: Record<string, string> = {}): ShadowRecord {
  return { deviceId, name: '', version, deleted: false, state: { desired }, metadata: {}, timestamp: 100 };
}
