/**
 * One desired build per device, in the order the jobs were made: a newer job's command
 * supersedes an older one's, and an older job's later wave does not overwrite a newer job's
 * command the device has not finished (a hotfix over a slow rollout). Real parts (SQLite
 * store, replica, tracker, engine) with a fake clock.
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { startRolloutFixture, type RolloutFixture } from './rollout-fixture.ts';

describe('a newer job on a device before an older job reaches it', () => {
  let f: RolloutFixture;
  beforeEach(async () => {
    f = await startRolloutFixture();
    for (const v of ['1.0.0', '2.0.0', '2.1.0']) await f.addArtifact(v);
  });
  afterEach(() => f.close());

  const create = async (artifact: string, body: Record<string, unknown>) => (await f.rollouts.jobs.create({ artifact, ...body })).job.jobId;

  /** A slow rollout of fw@2.0.0 to d001-d003: its canary d001 done, waiting for approval of its second wave. */
  const slowRollout = async (extra: Record<string, unknown> = {}) => {
    const ids = await f.fleet('d', 3);
    const slow = await create('fw@2.0.0', { targets: { devices: ids }, plan: { waves: [{ count: 1, requireApproval: true }, { percent: 100 }] }, ...extra });
    await f.complete('d001');
    await f.tick();
    assert.equal((await f.job(slow)).status, 'PAUSED', 'waits for approval of its second wave');
    f.advance(60_000);
    return slow;
  };

  it("is not overwritten by the older job's later wave: the older job's execution ends CANCELED naming it", async () => {
    // an ANY abort rule: the skipped device is no failure of the slow rollout
    const slow = await slowRollout({ abort: { rules: [{ type: 'ANY', thresholdPercent: 1, minFinished: 1 }] } });
    const hotfix = await create('fw@2.1.0', { targets: { devices: ['d003'] } });
    assert.equal((await f.desired('d003'))?.jobId, hotfix);
    await f.rollouts.jobs.resume(slow); // the approval
    await f.tick();
    await f.tick();
    assert.equal((await f.desired('d002'))?.jobId, slow, 'the second wave goes out');
    const asked = await f.desired('d003');
    assert.deepEqual([asked?.jobId, asked?.version], [hotfix, '2.1.0'], "the hotfix's command stands");
    const skipped = await f.execution(slow, 'd003');
    assert.equal(skipped.status, 'CANCELED');
    assert.equal(skipped.details.error, `not sent: the device was asked for job ${hotfix}, created after this one, and has not finished it; that job's command stands`);
    assert.equal(skipped.dispatchedAt, undefined);
    assert.equal((await f.execution(hotfix, 'd003')).status, 'QUEUED', 'the hotfix is untouched');
    // the device comes back and runs the hotfix; the slow rollout finishes without it
    await f.complete('d003');
    await f.complete('d002');
    await f.tick();
    await f.tick();
    assert.equal((await f.execution(hotfix, 'd003')).status, 'SUCCEEDED');
    assert.equal((await f.job(hotfix)).status, 'COMPLETED');
    const view = await f.rollouts.jobs.view(slow);
    assert.equal(view.job.status, 'COMPLETED', 'not aborted: a skipped device is not a failure');
    assert.deepEqual([view.counts.SUCCEEDED, view.counts.CANCELED, view.total, view.percentDone], [2, 1, 3, 100]);
    assert.equal((await f.desired('d003'))?.version, '2.1.0');
  });

  it('does not let a canary wave whose devices all kept a newer job\'s command pass its threshold with nothing to judge', async () => {
    const ids = await f.fleet('c', 3);
    const startAt = f.clock.now + 60_000;
    const rollout = await create('fw@2.0.0', { targets: { devices: ids }, plan: { startAt, waves: [{ count: 1, successThreshold: 100 }, { percent: 100 }] } });
    f.advance(1_000);
    const hotfix = await create('fw@2.1.0', { targets: { devices: ['c001'] } }); // the canary's device
    f.advance(60_000);
    await f.tick();
    await f.tick();
    assert.equal((await f.execution(rollout, 'c001')).status, 'CANCELED', "the hotfix's command stands");
    const job = await f.job(rollout);
    assert.equal(job.status, 'PAUSED', 'the canary proved nothing: the rollout waits');
    assert.match(String((job.progress as { pause?: { message?: string } }).pause?.message), /^wave 1 finished with no device updated \(1 ended without an install/);
    for (const d of ['c002', 'c003']) assert.notEqual((await f.desired(d))?.jobId, rollout, `${d} not sent the build`);
    assert.equal((await f.desired('c001'))?.jobId, hotfix);
  });

  it("supersedes an older job's command still pending: the last asked wins in the order the jobs were made", async () => {
    const [d] = await f.fleet('o', 1);
    const older = await create('fw@2.0.0', { targets: { devices: [d!] } });
    f.advance(1_000);
    const newer = await create('fw@2.1.0', { targets: { devices: [d!] } });
    await f.tick();
    assert.equal((await f.desired(d!))?.jobId, newer);
    const e = await f.execution(older, d!);
    assert.equal(e.status, 'CANCELED');
    assert.match(String(e.details.error), new RegExp(`^superseded: the device was asked for job ${newer}`));
  });

  it('sends once the device has finished the newer job (here, failed it)', async () => {
    const slow = await slowRollout();
    const hotfix = await create('fw@2.1.0', { targets: { devices: ['d003'] } });
    await f.complete('d003', 'FAILURE'); // rolled itself back: runs 1.0.0
    assert.equal((await f.execution(hotfix, 'd003')).status, 'FAILED');
    await f.rollouts.jobs.resume(slow);
    await f.tick();
    await f.tick();
    assert.equal((await f.desired('d003'))?.jobId, slow, "the older job's wave reaches it");
    assert.equal((await f.execution(slow, 'd003')).status, 'QUEUED');
  });
});
