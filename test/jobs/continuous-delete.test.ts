/**
 * A continuous job canceled and deleted (`updraft job delete`, `DELETE /api/v1/jobs/:id`) while
 * the leader is adding devices to it (a scan of the registry, or a device coming online) leaves
 * nothing of it behind: no execution row of a job that no longer exists, and no command sent to
 * a device for it. The same on SQLite and PostgreSQL: real store, replica, tracker and engine
 * (the fixture's), fake clock; the cancel and the delete land between the leader's read of the
 * job and its write of the devices' rows (the store's addExecutions, wrapped to run them first).
 */
import assert from 'node:assert/strict';
import { after, afterEach, beforeEach, describe, it } from 'node:test';
import pg from 'pg';
import { PostgresStore } from '../../src/store/postgres-store.ts';
import type { ExecutionRecord, StateStore } from '../../src/store/state-store.ts';
import { eventually } from '../helpers/cli.ts';
import { startTestPostgres, unavailable, type TestPostgres } from '../helpers/postgres.ts';
import { startRolloutFixture, type RolloutFixture } from './rollout-fixture.ts';

const started = await startTestPostgres();
const server: TestPostgres | undefined = started.ok ? started.server : undefined;
const skip = started.ok ? undefined : unavailable(started, 'continuous job delete tests (PostgreSQL)');
after(() => server?.stop());

const stores: { name: string; store: () => Promise<StateStore | undefined> }[] = [{ name: 'SQLite', store: async () => undefined }];
if (server) stores.push({ name: 'PostgreSQL', store: async () => new PostgresStore({ url: await server.createDatabase() }) });
else it('a continuous job canceled and deleted while devices are being added to it (PostgreSQL)', (t) => t.skip(skip));

for (const { name, store } of stores) {
  describe(`a continuous job canceled and deleted while devices are being added to it (${name})`, { timeout: 60_000 }, () => {
    let f: RolloutFixture | undefined;
    let jobId: string;
    beforeEach(async () => {
      f = await startRolloutFixture({ builds: ['2.0.0'], store: await store() });
      // one device in the job from the start, finished: nothing holds the deletion back
      const [c1] = await f.fleet('c', 1, '1.0.0', { tags: ['grp'] });
      jobId = (await f.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { query: 'tags = grp' }, type: 'continuous' })).job.jobId;
      await f.tick();
      await f.complete(c1!);
      assert.equal((await f.execution(jobId, c1!)).status, 'SUCCEEDED');
    });
    afterEach(async () => {
      await f?.close();
      f = undefined;
    });

    /** Runs `before` once, ahead of the first write of a row of the job for c100. */
    const beforeAdding = (fx: RolloutFixture, before: () => Promise<void>) => {
      const add = fx.store.addExecutions.bind(fx.store);
      let done = false;
      fx.store.addExecutions = async (rows: ExecutionRecord[]) => {
        if (!done && rows.some((r) => r.jobId === jobId && r.deviceId === 'c100')) {
          done = true;
          await before();
        }
        return add(rows);
      };
    };

    /** Nothing of the job is left: no row, no count, no command. */
    const assertGone = async (fx: RolloutFixture) => {
      assert.equal(await fx.store.getJob(jobId), undefined, 'the job is deleted');
      assert.equal(await fx.store.getExecution(jobId, 'c100'), undefined, 'no execution left for a job that no longer exists');
      assert.deepEqual(await fx.store.listExecutions({ jobId }), []);
      assert.deepEqual(await fx.store.countExecutions(jobId), []);
      assert.equal(await fx.desired('c100'), undefined, 'no command sent to the device for a deleted job');
    };

    it("the leader's scan: another instance cancels and deletes the job before the scan writes the device's row", async () => {
      const fx = f!;
      await fx.registry.register({ deviceId: 'c100', tags: ['grp'] });
      beforeAdding(fx, async () => {
        // another instance's cancel (its pass over the job's executions finds nothing open), then its delete
        const job = await fx.job(jobId);
        assert.ok(await fx.store.updateJob({ ...job, status: 'CANCELED', version: (job.version ?? 1) + 1 }));
        await fx.rollouts.jobs.delete(jobId);
      });
      fx.advance(61_000); // the next scan
      await fx.tick();
      await assertGone(fx);
      fx.advance(61_000);
      await fx.tick();
      await assertGone(fx);
    });

    it('a device coming online: the job is canceled and deleted before its row is written', async () => {
      const fx = f!;
      // a second continuous job, made after it and still running: its row for the device says
      // the engine is done with the arrival (the engine looks at the jobs in the order it learned them)
      const witness = (await fx.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { query: 'tags = grp' }, type: 'continuous' })).job.jobId;
      await fx.tick();
      await fx.registry.register({ deviceId: 'c100', tags: ['grp'] });
      beforeAdding(fx, async () => {
        await fx.rollouts.jobs.cancel(jobId);
        await fx.rollouts.jobs.delete(jobId);
      });
      fx.events.emit('device.presence', { deviceId: 'c100', online: true });
      await eventually(async () => ((await fx.store.getExecution(witness, 'c100')) ? true : undefined), 10_000, 'the running job took the device');
      await assertGone(fx);
    });
  });
}

describe('PostgreSQL: addExecutions against a deletion of the job in flight', { timeout: 60_000 }, () => {
  it('waits for the deletion to commit and adds nothing; a job not deleted takes its rows', async (t) => {
    if (skip) return t.skip(skip);
    const url = await server!.createDatabase();
    const store = new PostgresStore({ url });
    await store.start();
    const deleter = new pg.Client({ connectionString: url });
    await deleter.connect();
    const watcher = new pg.Client({ connectionString: url });
    await watcher.connect();
    try {
      const job = (jobId: string) => ({ jobId, artifactName: 'fw', artifactVersion: '2.0.0', status: 'CANCELED' as const, createdAt: 1 });
      const row = (jobId: string, deviceId: string): ExecutionRecord => ({ jobId, deviceId, status: 'QUEUED', details: {}, queuedAt: 1, updatedAt: 1, version: 1 });
      await store.createJob(job('gone'), []);
      await store.createJob(job('kept'), []);
      // the deletion's transaction, not committed yet (deleteJob: the row locked, then deleted)
      await deleter.query('BEGIN');
      await deleter.query(`SELECT job_id FROM jobs WHERE job_id = 'gone' FOR UPDATE`);
      await deleter.query(`DELETE FROM jobs WHERE job_id = 'gone'`);
      let added: number | undefined;
      const adding = store.addExecutions([row('gone', 'd1'), row('kept', 'd1')]).then((n) => (added = n));
      // until the add has either finished or waits for the deletion's lock
      await eventually(async () => {
        if (added !== undefined) return true;
        const r = await watcher.query<{ n: string }>(`SELECT count(*) AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()`);
        return Number(r.rows[0]!.n) > 0 ? true : undefined;
      }, 20_000, 'the add finished or waits');
      await deleter.query('COMMIT');
      await adding;
      assert.equal(added, 1, "only the row of the job that still exists is added");
      assert.equal(await store.getExecution('gone', 'd1'), undefined, 'no row of the deleted job');
      assert.deepEqual(await store.countExecutions('gone'), []);
      assert.equal((await store.getExecution('kept', 'd1'))?.status, 'QUEUED');
    } finally {
      await deleter.end().catch(() => {});
      await watcher.end().catch(() => {});
      await store.stop();
    }
  });
});
