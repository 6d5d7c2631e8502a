/**
 * The plans of the stores' listings of a job's executions (by status, and the failed ones
 * owed a retry) and of the fleet's newest failures, on real databases: the query a
 * store runs (its exported builder) explained, on PostgreSQL over enough rows, analyzed,
 * for the planner to choose as it would on a fleet; on SQLite (no statistics) as it is. What
 * the listings return is the contract's (state-store.contract.ts); here, which index reads it.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import pg from 'pg';
import type { ExecutionStatus } from '../../src/store/state-store.ts';
import { failedBelowAttemptSql as pgFailedBelowAttempt, jobExecutionsQuery as pgJobExecutions, LATEST_OUTCOMES_SQL as pgLatestOutcomes, PostgresStore, recentFailuresSql as pgRecentFailures, REVOCATION_STAMP_SQL as pgRevocationStamp } from '../../src/store/postgres-store.ts';
import { failedBelowAttemptSql as sqliteFailedBelowAttempt, jobExecutionsQuery as sqliteJobExecutions, LATEST_OUTCOMES_SQL as sqliteLatestOutcomes, recentFailuresSql as sqliteRecentFailures, REVOCATION_STAMP_SQL as sqliteRevocationStamp, REVOKED_ENTRIES_SQL as sqliteRevokedEntries, SqliteStore } from '../../src/store/sqlite-store.ts';
import { startTestPostgres, unavailable } from '../helpers/postgres.ts';

/** A job of 60,000 executions, in the states `status` says (of i, 1 to 60,000), at attempt `attempt`. */
const ROWS = 60_000;
const SEED = (job: string, status: (i: string) => string, attempt = '1') => `
  INSERT INTO executions (job_id, device_id, status, details, queued_at, updated_at, version, wave, attempt)
  SELECT '${job}', 'dev-' || lpad(i::text, 6, '0'), ${status('i')}, '{}', 1, 1, 1, i % 3, ${attempt} FROM generate_series(1, ${ROWS}) i`;

/** The listings by status checked: one status and several, first page and further. */
const LISTINGS: { status: ExecutionStatus[]; after?: string }[] = [
  { status: ['TIMED_OUT'] },
  { status: ['TIMED_OUT'], after: 'dev-012000' },
  { status: ['TIMED_OUT', 'REJECTED'] },
  { status: ['TIMED_OUT', 'FAILED', 'REJECTED'], after: 'dev-030000' },
];

/** The nodes of a PostgreSQL JSON plan that read the executions table. */
function executionScans(plan: unknown): Record<string, unknown>[] {
  const scans: Record<string, unknown>[] = [];
  const walk = (node: unknown): void => {
    if (Array.isArray(node)) return node.forEach(walk);
    if (node && typeof node === 'object') {
      const o = node as Record<string, unknown>;
      if (o['Relation Name'] === 'executions') scans.push(o);
      Object.values(o).forEach(walk);
    }
  };
  walk(plan);
  return scans;
}

const started = await startTestPostgres();

describe('PostgreSQL plans of a job\'s executions', () => {
  if (!started.ok) {
    const message = unavailable(started, 'PostgreSQL plan checks');
    it('plans', (t) => t.skip(message));
    return;
  }
  const server = started.server;
  let store: PostgresStore | undefined;
  let admin: pg.Client | undefined;
  after(async () => {
    await store?.stop();
    await admin?.end();
    await server.stop();
  });
  const ready = (async () => {
    const url = await server.createDatabase();
    store = new PostgresStore({ url });
    await store.start();
    admin = new pg.Client({ connectionString: url });
    await admin.connect();
    // 'rare': a status few of its executions are in; 'common': the same status, in every one
    // of its executions, so that fleet-wide it looks common to the planner
    await admin.query(SEED('rare', (i) => `CASE WHEN ${i} % 6000 = 0 THEN 'TIMED_OUT' ELSE 'SUCCEEDED' END`));
    await admin.query(SEED('common', () => `'TIMED_OUT'`));
    // 'exhausted': every 20th failed, each at its third attempt (a retry limit of 2 used up)
    await admin.query(SEED('exhausted', (i) => `CASE WHEN ${i} % 20 = 0 THEN 'FAILED' ELSE 'SUCCEEDED' END`, `CASE WHEN i % 20 = 0 THEN 3 ELSE 1 END`));
    await admin.query('ANALYZE executions');
    return admin;
  })();
  /** The indexes the plan of `sql` reads. */
  const indexesOf = async (c: pg.Client, sql: string, args: unknown[]) => {
    const { rows } = await c.query<{ 'QUERY PLAN': unknown }>(`EXPLAIN (FORMAT JSON) ${sql}`, args);
    const names = new Set<string>();
    const walk = (node: unknown): void => {
      if (Array.isArray(node)) return node.forEach(walk);
      if (node && typeof node === 'object') {
        const o = node as Record<string, unknown>;
        if (typeof o['Index Name'] === 'string') names.add(o['Index Name']);
        Object.values(o).forEach(walk);
      }
    };
    walk(rows[0]!['QUERY PLAN']);
    return [...names].sort();
  };

  it('lists the newest failures of the fleet from executions_failed_recent (by failed_at), newest first without a sort', async () => {
    const c = await ready;
    // 'recent': a job whose every 50th execution failed, latest on the highest device ids
    // (failed_at, as the store writes it: when it became a failure; NULL for the others)
    await c.query(`INSERT INTO executions (job_id, device_id, status, details, queued_at, updated_at, version, failed_at)
      SELECT 'recent', 'dev-' || lpad(i::text, 6, '0'), CASE WHEN i % 50 = 0 THEN 'FAILED' ELSE 'SUCCEEDED' END, '{}', 1, i, 1, CASE WHEN i % 50 = 0 THEN i END FROM generate_series(1, ${ROWS}) i`);
    await c.query("INSERT INTO jobs (job_id, artifact_name, artifact_version, status, created_at) VALUES ('recent', 'fw', '1', 'COMPLETED', 1)");
    await c.query('ANALYZE executions');
    assert.ok((await indexesOf(c, pgRecentFailures(false), [20])).includes('executions_failed_recent'), 'read from the index of the failed rows');
    const { rows } = await c.query<{ 'QUERY PLAN': unknown }>(`EXPLAIN (FORMAT JSON) ${pgRecentFailures(false)}`, [20]);
    assert.ok(!JSON.stringify(rows[0]!['QUERY PLAN']).includes('"Node Type":"Sort"'), `no sort: ${JSON.stringify(rows[0]!['QUERY PLAN'])}`);
    // a further page, from after a cursor (until 2026-12-07 an OFFSET, the index walked over
    // the rows skipped): the row comparison is the scan's index condition, a seek, and the scan
    // reads the page's rows alone, none read and filtered out
    const cursor = [40_000, 'recent', 'dev-040000'];
    const seek = await c.query<{ 'QUERY PLAN': unknown }>(`EXPLAIN (ANALYZE, FORMAT JSON) ${pgRecentFailures(true)}`, [100, ...cursor]);
    const scans = executionScans(seek.rows[0]!['QUERY PLAN']);
    const plan = JSON.stringify(seek.rows[0]!['QUERY PLAN']);
    assert.deepEqual(scans.map((n) => [n['Index Name'], n['Scan Direction'], /^\(?ROW\(failed_at, job_id, device_id\) < ROW\(/.test(String(n['Index Cond'])), n['Actual Rows'], n['Rows Removed by Filter'] ?? 0]), [['executions_failed_recent', 'Backward', true, 100, 0]], `a backward index scan of executions_failed_recent from the cursor, 100 rows read: ${plan}`);
    assert.ok(!plan.includes('"Node Type":"Sort"'), `no sort: ${plan}`);
    const newest = await store!.listRecentFailures(3);
    assert.deepEqual(newest.map((e) => `${e.deviceId}@${e.failedAt}`), ['dev-060000@60000', 'dev-059950@59950', 'dev-059900@59900'], 'the newest failures of the job that exists, with when each failed');
    assert.deepEqual((await store!.listRecentFailures(2, newest[2])).map((e) => e.deviceId), ['dev-059850', 'dev-059800'], 'the next page, after the cursor');
  });

  it("reads each device's newest executions with an outcome from executions_device_outcomes (the overview's candidates)", async () => {
    const c = await ready;
    const { rows } = await c.query<{ 'QUERY PLAN': unknown }>(`EXPLAIN (FORMAT JSON) ${pgLatestOutcomes}`, [['dev-000050', 'dev-000100'], 5]);
    const plan = JSON.stringify(rows[0]!['QUERY PLAN']);
    // until 2026-12-07 executions_device, the status filtered on each row read
    assert.ok(/"Node Type":"Index (Only )?Scan"[^{}]*"Index Name":"executions_device_outcomes"/.test(plan), `an index scan of executions_device_outcomes: ${plan}`);
  });

  it("reads only the outcomes of a device with 2,000 canceled executions after its failure, none of those canceled", async () => {
    const c = await ready;
    // 'busy' failed job 'b-0' (queued at 1), then was canceled from 2,000 jobs queued after it
    await c.query(`INSERT INTO jobs (job_id, artifact_name, artifact_version, status, created_at) SELECT 'b-' || i, 'fw', i::text, 'CANCELED', i FROM generate_series(0, 2000) i`);
    await c.query(`INSERT INTO executions (job_id, device_id, status, details, queued_at, updated_at, version)
      SELECT 'b-' || i, 'busy', CASE WHEN i = 0 THEN 'FAILED' ELSE 'CANCELED' END, '{}', i + 1, i + 1, 1 FROM generate_series(0, 2000) i`);
    await c.query('ANALYZE executions');
    const { rows } = await c.query<{ 'QUERY PLAN': unknown }>(`EXPLAIN (ANALYZE, FORMAT JSON) ${pgLatestOutcomes}`, [['busy'], 5]);
    const plan = JSON.stringify(rows[0]!['QUERY PLAN']);
    const scans = executionScans(rows[0]!['QUERY PLAN']);
    // the index's condition is the query's: no row of the 2,000 canceled read, none filtered out
    // (on executions_device: 'Rows Removed by Filter': 2000)
    assert.deepEqual(scans.map((n) => [n['Index Name'], n['Actual Rows'], n['Rows Removed by Filter'] ?? 0]), [['executions_device_outcomes', 1, 0]], `one row read, from executions_device_outcomes: ${plan}`);
    const outcomes = await store!.listLatestOutcomesOfDevices(['busy'], 5);
    assert.deepEqual(outcomes.get('busy')?.map((e) => `${e.jobId}:${e.status}`), ['b-0:FAILED'], 'its failure, behind the 2,000 canceled');
  });

  it("checks the CRL's revocations (revocationStamp) by an index-only scan of device_certificates_revoked_expiry", async () => {
    const c = await ready;
    // 60,000 certificates, every third revoked, expiring over the next 60,000 s
    const now = 1_800_000_000_000;
    await c.query(`INSERT INTO device_certificates (serial, device_id, issuer, issuer_subject, issued_at, not_after, revoked_at)
      SELECT md5(i::text), 'dev-' || i, 'ca', 'CN=ca', 1, ${now} + i * 1000, CASE WHEN i % 3 = 0 THEN ${now} - i END FROM generate_series(1, ${ROWS}) i`);
    await c.query('VACUUM ANALYZE device_certificates'); // the visibility map an index-only scan relies on, as autovacuum keeps it
    const { rows } = await c.query<{ 'QUERY PLAN': unknown }>(`EXPLAIN (FORMAT JSON) ${pgRevocationStamp}`, [now]);
    const plan = JSON.stringify(rows[0]!['QUERY PLAN']);
    assert.ok(plan.includes('"Node Type":"Index Only Scan"') && plan.includes('"Index Name":"device_certificates_revoked_expiry"'), `an index-only scan of device_certificates_revoked_expiry: ${plan}`);
    assert.equal(await store!.revocationStamp(now), `${ROWS / 3}:${now + 3000}:${now - 3}`, 'the stamp: count, earliest notAfter, latest revokedAt');
  });

  it('lists a job\'s executions by status from executions_job_status_device, not by walking the job in the primary key', async () => {
    const c = await ready;
    for (const listing of LISTINGS) {
      const { sql, args } = pgJobExecutions('rare', { ...listing, limit: 100 });
      const indexes = await indexesOf(c, sql, args);
      // (a status's own partial index, executions_failed_device for FAILED, is as good)
      assert.ok(indexes.includes('executions_job_status_device') && !indexes.includes('executions_pkey'), `${JSON.stringify(listing)}: ${indexes.join(', ')}`);
    }
    // and what it lists: the job's TIMED_OUT executions, in device order
    const page = await store!.listJobExecutions('rare', { status: ['TIMED_OUT', 'REJECTED'], limit: 4, after: 'dev-006000' });
    assert.deepEqual(page.items.map((e) => e.deviceId), ['dev-012000', 'dev-018000', 'dev-024000', 'dev-030000']);
    assert.equal(page.next, 'dev-030000');
  });

  it('lists the failed executions owed a retry from executions_failed_device, not by walking the job in the primary key', async () => {
    const c = await ready;
    // a wave's end in a job whose every failure used up its retries: nothing is owed
    assert.deepEqual(await indexesOf(c, pgFailedBelowAttempt(false), [501, 'exhausted', 3, 2]), ['executions_failed_device']);
    assert.deepEqual(await indexesOf(c, pgFailedBelowAttempt(true), [501, 'exhausted', 3, 2, 'dev-030000']), ['executions_failed_device']);
    assert.deepEqual((await store!.listFailedBelowAttempt('exhausted', { attemptBelow: 3, maxWave: 2, limit: 500 })).items, []);
    const owed = await store!.listFailedBelowAttempt('exhausted', { attemptBelow: 4, maxWave: 2, limit: 2, after: 'dev-000020' });
    assert.deepEqual(owed.items.map((e) => e.deviceId), ['dev-000040', 'dev-000060']);
  });
});

describe('SQLite plans of a job\'s executions', () => {
  let dir: string | undefined;
  let store: SqliteStore | undefined;
  let raw: Database.Database | undefined;
  after(async () => {
    raw?.close();
    await store?.stop();
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  });
  const ready = (async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'updraft-plans-'));
    const file = path.join(dir, 'updraft.db');
    store = new SqliteStore({ path: file });
    await store.start();
    raw = new Database(file);
    return raw;
  })();
  /** What SQLite's plan of `sql` says of each step. */
  const planOf = (db: Database.Database, sql: string, args: unknown[]) => (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...args) as { detail: string }[]).map((r) => r.detail);

  it('lists a job\'s executions by status from executions_job_status_device, not by walking the job in the primary key', async () => {
    const db = await ready;
    for (const listing of LISTINGS) {
      const { sql, args } = sqliteJobExecutions('rare', { ...listing, limit: 100 });
      const plan = planOf(db, sql, args);
      const reads = plan.filter((d) => /^(SEARCH|SCAN) executions/.test(d));
      assert.ok(reads.length > 0 && reads.every((d) => d.includes('USING INDEX executions_job_status_device (job_id=? AND status=?')), `${JSON.stringify(listing)}: ${plan.join(' | ')}`);
    }
  });

  it('lists the newest failures of the fleet from executions_failed_recent (by failed_at), backwards, without a sort', async () => {
    const db = await ready;
    const plan = planOf(db, sqliteRecentFailures(false), [20]);
    // failed_at IS NOT NULL: a range of the index (failed_at > NULL), all of it
    assert.deepEqual(plan.filter((d) => /executions/.test(d)), ['SEARCH executions USING INDEX executions_failed_recent (failed_at>?)'], plan.join(' | '));
    assert.ok(!plan.some((d) => d.includes('TEMP B-TREE')), `in the index's order, not sorted: ${plan.join(' | ')}`);
    // a further page, from after a cursor (until 2026-12-07 an OFFSET, the index walked over the
    // rows skipped): the row value bounds the range, a seek to the cursor
    const seek = planOf(db, sqliteRecentFailures(true), [40_000, 'recent', 'dev-040000', 100]);
    assert.deepEqual(seek.filter((d) => /executions/.test(d)), ['SEARCH executions USING INDEX executions_failed_recent (failed_at>? AND (failed_at,job_id,device_id)<(?,?,?))'], seek.join(' | '));
    assert.ok(!seek.some((d) => d.includes('TEMP B-TREE')), `in the index's order, not sorted: ${seek.join(' | ')}`);
  });

  it("reads a device's newest executions with an outcome from executions_device_outcomes, backwards, without a sort (the overview's candidates)", async () => {
    const db = await ready;
    const plan = planOf(db, sqliteLatestOutcomes, ['dev-000050', 5]);
    // until 2026-12-07 executions_device, the status checked on each row read
    assert.deepEqual(plan.filter((d) => /^(SEARCH|SCAN) executions/.test(d)), ['SEARCH executions USING INDEX executions_device_outcomes (device_id=?)'], plan.join(' | '));
    assert.ok(!plan.some((d) => d.includes('TEMP B-TREE')), `in the index's order, not sorted: ${plan.join(' | ')}`);
  });

  it("reads only the outcomes of a device with 2,000 canceled executions after its failure, none of those canceled", async () => {
    const db = await ready;
    // 'busy' failed job 'b-0' (queued at 1), then was canceled from 2,000 jobs queued after it
    db.exec(`WITH RECURSIVE n (i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
      INSERT INTO jobs (job_id, artifact_name, artifact_version, status, created_at) SELECT 'b-' || i, 'fw', i, 'CANCELED', i FROM n`);
    db.exec(`WITH RECURSIVE n (i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
      INSERT INTO executions (job_id, device_id, status, details, queued_at, updated_at, version)
      SELECT 'b-' || i, 'busy', CASE WHEN i = 0 THEN 'FAILED' ELSE 'CANCELED' END, '{}', i + 1, i + 1, 1 FROM n`);
    const plan = planOf(db, sqliteLatestOutcomes, ['busy', 5]);
    assert.deepEqual(plan.filter((d) => /^(SEARCH|SCAN) executions/.test(d)), ['SEARCH executions USING INDEX executions_device_outcomes (device_id=?)'], plan.join(' | '));
    // what that range is: the index's entries (its b-tree's cells, counted by dbstat), one per
    // execution with an outcome, of the 2,001 executions: none of the canceled is in it to read
    const entries = (db.prepare("SELECT coalesce(sum(ncell), 0) AS n FROM dbstat WHERE name = 'executions_device_outcomes' AND pagetype = 'leaf'").get() as { n: number }).n;
    const executions = (db.prepare("SELECT count(*) AS n FROM executions WHERE device_id = 'busy'").get() as { n: number }).n;
    assert.deepEqual([entries, executions], [1, 2001], 'the index holds the failure alone of the device\'s 2,001 executions');
    const outcomes = await store!.listLatestOutcomesOfDevices(['busy'], 5);
    assert.deepEqual(outcomes.get('busy')?.map((e) => `${e.jobId}:${e.status}`), ['b-0:FAILED'], 'its failure, behind the 2,000 canceled');
  });

  it("checks the CRL's revocations (revocationStamp) from device_certificates_revoked_expiry alone, and pages the revoked entries in its order", async () => {
    const db = await ready;
    const stamp = planOf(db, sqliteRevocationStamp, [1_800_000_000_000]);
    // until 2026-12-07 'USING INDEX device_certificates_revoked': each row looked up for revoked_at
    assert.deepEqual(stamp, ['SEARCH device_certificates USING COVERING INDEX device_certificates_revoked_expiry (not_after>?)'], stamp.join(' | '));
    const page = planOf(db, sqliteRevokedEntries, [1_800_000_000_000, 1_800_000_000_000, '', 5000]);
    assert.deepEqual(page, ['SEARCH device_certificates USING INDEX device_certificates_revoked_expiry (not_after>?)'], `a range of the revoked ones, in (not_after, serial) order, not sorted: ${page.join(' | ')}`);
  });

  it('lists the failed executions owed a retry from executions_failed_device in device order, without a sort', async () => {
    const db = await ready;
    assert.deepEqual(planOf(db, sqliteFailedBelowAttempt(false), ['j', 3, 2, 501]), ['SEARCH executions USING INDEX executions_failed_device (job_id=?)']);
    assert.deepEqual(planOf(db, sqliteFailedBelowAttempt(true), ['j', 3, 2, 'dev-030000', 501]), ['SEARCH executions USING INDEX executions_failed_device (job_id=? AND device_id>?)']);
  });
});
