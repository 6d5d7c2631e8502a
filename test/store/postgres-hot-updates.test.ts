/**
 * On PostgreSQL, an execution's write that changes no indexed column is a HOT update (heap-only
 * tuple: the row's new version on its page, no new entry in any index). An IN_PROGRESS phase
 * report changes only `details` and `updated_at`: executions_failed_recent indexes `failed_at`,
 * not `updated_at`, so these writes stay HOT with the index there (the review of c262bcc, whose
 * index on updated_at made every one of them a non-HOT update: 0 of 600, against 144 without it).
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import pg from 'pg';
import { PostgresStore } from '../../src/store/postgres-store.ts';
import type { ExecutionRecord } from '../../src/store/state-store.ts';
import { startTestPostgres, unavailable } from '../helpers/postgres.ts';

const started = await startTestPostgres();

describe('PostgreSQL HOT updates of executions', () => {
  if (!started.ok) {
    const message = unavailable(started, 'PostgreSQL HOT update check');
    it('stays HOT', (t) => t.skip(message));
    return;
  }
  const server = started.server;
  after(() => server.stop());

  /** The table's update counters, once the store's sessions have reported at least `upd` (statistics are flushed by each session after its transactions, not at once). */
  async function counters(raw: pg.Client, upd: number): Promise<{ upd: number; hot: number }> {
    const deadline = Date.now() + 30_000;
    for (;;) {
      await raw.query('SELECT pg_stat_clear_snapshot()');
      const { rows } = await raw.query<{ upd: string; hot: string }>("SELECT n_tup_upd AS upd, n_tup_hot_upd AS hot FROM pg_stat_user_tables WHERE relname = 'executions'");
      const now = { upd: Number(rows[0]!.upd), hot: Number(rows[0]!.hot) };
      if (now.upd >= upd || Date.now() > deadline) return now;
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  it('keeps IN_PROGRESS phase reports HOT updates with executions_failed_recent there', async () => {
    const url = await server.createDatabase();
    const store = new PostgresStore({ url });
    await store.start();
    const raw = new pg.Client({ connectionString: url });
    await raw.connect();
    try {
      const { rows: idx } = await raw.query<{ indexdef: string }>("SELECT indexdef FROM pg_indexes WHERE indexname = 'executions_failed_recent'");
      assert.equal(idx.length, 1, 'the index of the newest failures is there');
      const n = 200;
      const execs: ExecutionRecord[] = Array.from({ length: n }, (_, i) => ({ jobId: 'j', deviceId: `d-${i}`, status: 'IN_PROGRESS', details: { phase: 'DOWNLOADING' }, queuedAt: 1, updatedAt: 1, version: 1 }));
      await store.createJob({ jobId: 'j', artifactName: 'fw', artifactVersion: '1', status: 'IN_PROGRESS', createdAt: 1 }, execs);
      await raw.query('VACUUM executions');
      // each execution: three phase reports per round (status unchanged, no step timeout); a
      // first round, then VACUUM (as autovacuum would), so the pages have room as in a fleet's
      // steady state; the second round counted
      const phases = ['DOWNLOADING', 'INSTALLING', 'VERIFYING'];
      let version = 1;
      const round = async () => {
        for (const phase of phases) {
          version++;
          await Promise.all(execs.map((e, i) => store.updateExecution({ ...e, details: { phase, percent: 50 }, updatedAt: 1000 * version + i, version })));
        }
      };
      await round();
      await raw.query('VACUUM executions');
      const base = await counters(raw, phases.length * n);
      await round();
      await store.stop();
      const end = await counters(raw, base.upd + phases.length * n);
      const upd = end.upd - base.upd;
      const hot = end.hot - base.hot;
      assert.equal(upd, phases.length * n, `the second round's ${phases.length * n} updates counted (${upd})`);
      assert.ok(hot > 0, `phase reports are HOT updates with the index on failed_at: ${hot} of ${upd} (0 with c262bcc's index on updated_at)`);
    } finally {
      await store.stop().catch(() => undefined);
      await raw.end();
    }
  });
});
