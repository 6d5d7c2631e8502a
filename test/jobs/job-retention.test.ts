/**
 * `jobs.retentionDays`: the instance leading rollouts deletes finished jobs whose last change is
 * older than that, a few a pass, the oldest first, as `updraft job delete` would (one whose
 * devices are still finishing with it is left, without holding the others back); the other
 * instances delete nothing; 0 (the default) keeps every job. Two rollout fixtures on one
 * private PostgreSQL with real advisory leases and a fake clock (no waiting), and a real server
 * on SQLite reading the setting, with a job's times moved back in its store.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { PostgresAdvisoryLease } from '../../src/cluster/postgres-advisory-lease.ts';
import { JobRetention } from '../../src/jobs/job-retention.ts';
import { PostgresStore } from '../../src/store/postgres-store.ts';
import type { ExecutionRecord, JobRecord, StateStore } from '../../src/store/state-store.ts';
import { silentLogger } from '../../src/util/logger.ts';
import { startTestPostgres, unavailable, type TestPostgres } from '../helpers/postgres.ts';
import { startTestServer } from '../helpers/server.ts';
import { startRolloutFixture, type RolloutFixture } from './rollout-fixture.ts';

const DAY = 86_400_000;

/** A finished job written straight into the store, last changed at `at`, with one finished execution. */
async function finishedJob(store: StateStore, jobId: string, at: number, status: JobRecord['status'] = 'COMPLETED', execution: Partial<ExecutionRecord> = {}): Promise<string> {
  await store.createJob({ jobId, artifactName: 'fw', artifactVersion: '2.0.0', status, createdAt: at - 1000, updatedAt: at, version: 3 }, [
    { jobId, deviceId: 'd001', status: 'SUCCEEDED', details: {}, queuedAt: at - 1000, updatedAt: at, version: 2, dispatchedAt: at - 900, ...execution },
  ]);
  return jobId;
}

describe('the retention of finished jobs', () => {
  let pg: TestPostgres | undefined;
  let skip: string | undefined;
  const fixtures: RolloutFixture[] = [];

  before(async () => {
    const started = await startTestPostgres();
    if (!started.ok) skip = unavailable(started, 'job retention test (PostgreSQL)');
    else pg = started.server;
  });
  after(async () => {
    for (const f of fixtures) await f.close();
    await pg?.stop();
  });

  it('is swept by the instance leading rollouts only: the oldest first, a few a pass, one still finishing left without holding the others back', async (t) => {
    if (skip) return t.skip(skip);
    const url = await pg!.createDatabase();
    const instance = async (builds: string[] = []) => {
      const f = await startRolloutFixture({ builds, store: new PostgresStore({ url }), lease: new PostgresAdvisoryLease({ url, name: 'rollouts', logger: silentLogger }), retentionDays: 7 });
      fixtures.push(f);
      return f;
    };
    const lead = await instance(['2.0.0']);
    const other = await instance();
    assert.equal(lead.rollouts.engine.isLeader, true);
    assert.equal(other.rollouts.engine.isLeader, false);

    // a real rollout, completed now
    const devices = await lead.fleet('d', 2);
    const real = (await lead.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { devices } })).job.jobId;
    for (const d of devices) await lead.complete(d);
    await lead.tick();
    assert.equal((await lead.job(real)).status, 'COMPLETED');
    const t0 = lead.clock.now;
    // older finished jobs; the oldest of all canceled with a device still being stopped
    const old = [];
    for (let i = 0; i < 10; i++) old.push(await finishedJob(lead.store, `old-${i}-${randomUUID()}`, t0 - 30 * DAY + i * 60_000, i % 2 ? 'ABORTED' : 'COMPLETED'));
    const stopping = await finishedJob(lead.store, `stopping-${randomUUID()}`, t0 - 31 * DAY, 'CANCELED', { status: 'IN_PROGRESS', details: { cancelRequested: true }, dueAt: t0 + 365 * DAY });
    // kept: finished within the week (6 days before the clock moved on below), and one paused for a month
    const recent = await finishedJob(lead.store, `recent-${randomUUID()}`, t0 + 2 * DAY);
    const paused = await finishedJob(lead.store, `paused-${randomUUID()}`, t0 - 30 * DAY, 'PAUSED');

    for (const f of [lead, other]) f.advance(8 * DAY);
    assert.deepEqual(await other.rollouts.retention.pass(), [], 'an instance not leading rollouts deletes nothing');
    assert.equal((await lead.store.getJob(old[0]!))?.jobId, old[0]);

    assert.deepEqual(await lead.rollouts.retention.pass(), old.slice(0, 4), 'five looked at, the one still finishing left');
    assert.deepEqual(await lead.rollouts.retention.pass(), old.slice(4, 9), 'five deleted: the one left takes no place');
    assert.deepEqual(await lead.rollouts.retention.pass(), [old[9], real]);
    assert.deepEqual(await lead.rollouts.retention.pass(), []);

    for (const jobId of [...old, real]) {
      assert.equal(await other.store.getJob(jobId), undefined, jobId);
      assert.deepEqual(await other.store.listExecutions({ jobId }), [], `${jobId}'s executions`);
    }
    for (const jobId of [stopping, recent, paused]) assert.equal((await lead.store.getJob(jobId))?.jobId, jobId, `${jobId} kept`);
    assert.equal((await lead.store.listExecutions({ jobId: stopping })).length, 1);
  });

  it('reads jobs.retentionDays from the configuration: a real server deletes a job past it, and keeps every job at 0 (the default)', async () => {
    const kept = await startTestServer();
    const swept = await startTestServer({ flags: { 'job-retention-days': 2 } });
    try {
      const now = Date.now();
      for (const ts of [kept, swept]) {
        await finishedJob(ts.server.store, 'old-job', now - 3 * DAY);
        await finishedJob(ts.server.store, 'new-job', now - DAY);
      }
      assert.deepEqual(await kept.server.rollouts.retention.pass(), []);
      assert.deepEqual(await swept.server.rollouts.retention.pass(), ['old-job']);
      const status = async (url: string, token: string, jobId: string) => (await fetch(`${url}/api/v1/jobs/${jobId}`, { headers: { authorization: `Bearer ${token}` } })).status;
      assert.deepEqual(await Promise.all(['old-job', 'new-job'].map((j) => status(swept.httpUrl, swept.token, j))), [404, 200]);
      assert.deepEqual(await Promise.all(['old-job', 'new-job'].map((j) => status(kept.httpUrl, kept.token, j))), [200, 200]);
    } finally {
      await kept.close();
      await swept.close();
    }
  });
});

describe('a retention pass under way when the server stops', () => {
  it('ends after the job it is deleting: stop() does not wait for the rest of the pass', async () => {
    const f = await startRolloutFixture({ retentionDays: 7 });
    try {
      const old: string[] = [];
      for (let i = 0; i < 3; i++) old.push(await finishedJob(f.store, `old-${i}-${randomUUID()}`, f.clock.now - 30 * DAY + i * 60_000));
      let stopped: Promise<void> | undefined;
      // the fixture's own JobService, stopped in the middle of the pass's first deletion
      const retention: JobRetention = new JobRetention({
        store: f.store,
        jobs: {
          delete: async (jobId) => {
            stopped ??= retention.stop();
            return f.rollouts.jobs.delete(jobId);
          },
        },
        isLeader: () => f.rollouts.engine.isLeader,
        days: 7,
        logger: silentLogger,
        now: () => f.clock.now,
        everyMs: 2 ** 31 - 1,
      });
      await retention.start();
      assert.deepEqual(await retention.pass(), [old[0]], 'the job under way is finished, no other begun');
      await stopped;
      for (const jobId of old.slice(1)) assert.equal((await f.store.getJob(jobId))?.jobId, jobId, `${jobId} kept for a later pass`);
      assert.deepEqual(await retention.pass(), [], 'a pass once stopped deletes nothing');
    } finally {
      await f.close();
    }
  });
});
