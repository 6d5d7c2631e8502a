/**
 * What a job's progress record says of it (`progress`: when it started, its current wave's
 * start, its count of devices), whatever way it got where it is. Real parts (SQLite store,
 * replica, tracker, engine) with a fake clock.
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import type { RolloutProgress } from '../../src/jobs/rollout-engine.ts';
import { eventually } from '../helpers/cli.ts';
import { startRolloutFixture, type RolloutFixture } from './rollout-fixture.ts';

describe("a job's progress record", () => {
  let f: RolloutFixture;
  beforeEach(async () => {
    f = await startRolloutFixture();
    await f.addArtifact('2.0.0');
  });
  afterEach(() => f.close());

  const progress = async (jobId: string) => (await f.job(jobId)).progress as unknown as RolloutProgress;

  it('records the start of a scheduled job paused before its startAt and resumed after it', async () => {
    const ids = await f.fleet('d', 3);
    const startAt = f.clock.now + 60_000;
    const jobId = (await f.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { devices: ids }, plan: { startAt } })).job.jobId;
    assert.equal((await f.job(jobId)).status, 'SCHEDULED');
    await f.rollouts.jobs.pause(jobId);
    f.advance(120_000);
    await f.tick();
    assert.equal((await f.job(jobId)).status, 'PAUSED');
    const resumedAt = f.clock.now;
    assert.equal((await f.rollouts.jobs.resume(jobId)).job.status, 'IN_PROGRESS');
    await f.tick();
    const p = await progress(jobId);
    assert.deepEqual([p.startedAt, p.waveStartedAt, p.rateEpoch], [resumedAt, resumedAt, resumedAt], 'started when resumed');
    assert.equal((await f.desired('d001'))?.version, '2.0.0');
  });

  it('a scheduled job paused and resumed before its startAt waits for it, and records its start then', async () => {
    const ids = await f.fleet('d', 1);
    const startAt = f.clock.now + 60_000;
    const jobId = (await f.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { devices: ids }, plan: { startAt } })).job.jobId;
    await f.rollouts.jobs.pause(jobId);
    f.advance(10_000);
    assert.equal((await f.rollouts.jobs.resume(jobId)).job.status, 'SCHEDULED');
    assert.equal((await progress(jobId)).startedAt, undefined);
    f.advance(50_000);
    await f.tick();
    const p = await progress(jobId);
    assert.deepEqual([(await f.job(jobId)).status, p.startedAt, p.waveStartedAt], ['IN_PROGRESS', startAt, startAt]);
  });

  it('a canceled continuous job counts every device it took, also the last ones', async () => {
    await f.fleet('c', 2, '1.0.0', { tags: ['grp'] });
    const jobId = (await f.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { query: 'tags = grp' }, type: 'continuous' })).job.jobId;
    await f.tick();
    assert.equal((await progress(jobId)).total, 2);
    await f.registry.register({ deviceId: 'c003', tags: ['grp'] });
    f.advance(61_000);
    await f.tick(); // the look at the registry takes c003; the count follows a tick behind
    assert.equal((await f.rollouts.jobs.view(jobId)).total, 3);
    await f.rollouts.jobs.cancel(jobId);
    assert.equal((await progress(jobId)).total, 3, 'nothing advances a canceled job: counted as it stops');
    await f.tick();
    assert.equal((await progress(jobId)).total, 3);
  });

  it('an aborted continuous job counts a device that joined as it stopped', async () => {
    const ids = await f.fleet('c', 2, '1.0.0', { tags: ['grp'] });
    const jobId = (await f.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { query: 'tags = grp' }, type: 'continuous', abort: { rules: [{ type: 'FAILED', thresholdPercent: 50, minFinished: 1 }] } })).job.jobId;
    await f.tick();
    await f.complete(ids[0]!, 'FAILURE');
    await f.registry.register({ deviceId: 'c003', tags: ['grp'] });
    // the abort (at the tick) commits while the device coming online is being added
    const add = f.store.addExecutions.bind(f.store);
    f.store.addExecutions = async (rows) => {
      if (rows.some((r) => r.deviceId === 'c003')) await f.tick();
      return add(rows);
    };
    f.events.emit('device.presence', { deviceId: 'c003', online: true });
    await eventually(async () => ((await f.store.getExecution(jobId, 'c003'))?.status === 'CANCELED' ? true : undefined), 5_000, 'the device that joined as the job stopped ended CANCELED');
    assert.equal((await f.job(jobId)).status, 'ABORTED');
    await eventually(async () => ((await progress(jobId)).total === 3 ? true : undefined), 5_000, 'the aborted job counts 3 devices');
  });
});
