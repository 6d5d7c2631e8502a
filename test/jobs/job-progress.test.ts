/**
 * What a job's progress record says of it (`progress`: when it started, its current wave's
 * start, its count of devices), whatever way it got where it is. Real parts (SQLite store,
 * replica, tracker, engine) with a fake clock.
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import type { RolloutProgress } from '../../src/jobs/rollout-engine.ts';
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
});
