/**
 * A timeout writes TIMED_OUT, takes the command back, then queues the retry in a write of its
 * own. The SUCCESS of the timed-out attempt (on the job's build: the device had it, its
 * reports held back) that arrives in between ends the execution SUCCEEDED instead of the
 * retry (retry-policy.ts, requeue): it used to be written as a late success on the TIMED_OUT
 * row, then dropped by the retry's write, which kept nothing of it.
 *
 * Real PostgreSQL under the fixture's parts (store, replica, tracker, engine; fake clock). The
 * engine is held between the two writes by the database itself: a second connection holds the
 * artifacts table locked, and the timeout's retract reads the catalogue (the build the device
 * runs, for its stay command) after the TIMED_OUT commit and before the retry's write.
 */
import assert from 'node:assert/strict';
import { after, afterEach, describe, it } from 'node:test';
import pg from 'pg';
import { PostgresStore } from '../../src/store/postgres-store.ts';
import { eventually } from '../helpers/cli.ts';
import { startTestPostgres, unavailable } from '../helpers/postgres.ts';
import { startRolloutFixture, type RolloutFixture } from './rollout-fixture.ts';

const started = await startTestPostgres();

if (!started.ok) {
  const message = unavailable(started, 'success-before-retry tests');
  it('a success between a timeout and its retry', (t) => t.skip(message));
} else {
  const server = started.server;

  describe('the SUCCESS of a timed-out attempt between the TIMED_OUT and its retry (PostgreSQL, fake clock)', { timeout: 30_000 }, () => {
    let f: RolloutFixture | undefined;
    let locker: pg.Client | undefined;
    after(() => server.stop());
    afterEach(async () => {
      await locker?.end().catch(() => {});
      locker = undefined;
      await f?.close();
      f = undefined;
    });

    /**
     * True while a query of another session waits for a lock on the artifacts table. Asked on a
     * connection outside the locker's transaction: a transaction keeps its first look at
     * pg_stat_activity until it ends.
     */
    const engineHeld = async (url: string) => {
      const watcher = new pg.Client({ connectionString: url });
      await watcher.connect();
      try {
        const r = await watcher.query<{ n: string }>(`SELECT count(*) AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%FROM artifacts WHERE%'`);
        return Number(r.rows[0]!.n) > 0 ? true : undefined;
      } finally {
        await watcher.end();
      }
    };

    it('ends the execution SUCCEEDED; no retry is queued or sent', async () => {
      const url = await server.createDatabase();
      f = await startRolloutFixture({ builds: ['1.0.0', '2.0.0'], store: new PostgresStore({ url }) });
      const [d] = await f.fleet('w', 1);
      const jobId = (await f.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { devices: [d!] }, timeouts: { inProgressSeconds: 60 }, retries: { limit: 1 } })).job.jobId;
      assert.equal((await f.desired(d!))?.jobId, jobId, 'the first attempt was sent');
      f.advance(61_000);

      // hold the engine in the timeout's retract, after the TIMED_OUT commit
      locker = new pg.Client({ connectionString: url });
      await locker.connect();
      await locker.query('BEGIN');
      await locker.query('LOCK TABLE artifacts IN ACCESS EXCLUSIVE MODE');
      const ticking = f.rollouts.engine.tick();
      await eventually(() => engineHeld(url), 20_000, 'the engine waiting in the retract');
      const held = await f.store.getExecution(jobId, d!);
      assert.deepEqual([held?.status, held?.attempt ?? 1], ['TIMED_OUT', 1], 'held between the TIMED_OUT and the retry');

      // the device had the build before the timeout (offline, its reports held back): its SUCCESS of attempt 1 arrives now
      await f.replica.update({ deviceId: d!, name: '' }, { state: { reported: { software: { name: 'fw', version: '2.0.0', jobId, status: 'SUCCESS' } } } }, { kind: 'device', id: d! });
      await f.tracker.idle();
      const successAt = f.clock.now;
      const between = await f.store.getExecution(jobId, d!);
      assert.deepEqual([between?.status, between?.details.lateSuccess], ['TIMED_OUT', { version: '2.0.0', at: successAt }], 'recorded on the TIMED_OUT row');

      await locker.query('ROLLBACK');
      await ticking;
      await f.tracker.idle();
      await f.rollouts.engine.settled();

      const e = await f.execution(jobId, d!);
      assert.deepEqual([e.status, e.attempt ?? 1, e.dispatchedAt !== undefined, e.dueAt], ['SUCCEEDED', 1, true, undefined], 'the attempt that timed out succeeded: no retry');
      assert.deepEqual([e.details.agentStatus, e.details.version, e.details.error, e.details.lateSuccess], ['SUCCESS', '2.0.0', undefined, undefined]);
      assert.deepEqual(e.details.timedOut, { at: held!.dueAt!, error: 'in-progress timeout: not finished within 60 s of the command' }, 'the deadline that passed first is kept beside it');
      assert.equal(e.details.lastReportAt, successAt);

      // nothing more is sent for the job, which completes
      f.advance(1_000);
      await f.tick();
      assert.notEqual((await f.desired(d!))?.jobId, `${jobId}.2`, 'no retry sent');
      assert.equal((await f.execution(jobId, d!)).status, 'SUCCEEDED');
      assert.equal((await f.job(jobId)).status, 'COMPLETED');
    });
  });
}
