/**
 * A device whose FAILURE of its job was on its way when the job was aborted (it failed before
 * the stay reached it) failed: its execution ends FAILED with its reason, whether the abort
 * had marked it (downloading: waiting for the stop's confirmation) or ended it CANCELED
 * already (its command sent, nothing reported: taken back unanswered), and with the abort's
 * rollback it is rolled back as every failed device is. A FAILURE that is the stop (the
 * agent's "superseded by job <id>.cancel"), or one sent after the device answered its stay,
 * ends it CANCELED as before. Real parts (SQLite store, replica, tracker, engine), fake clock.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startRolloutFixture, type RolloutFixture } from './rollout-fixture.ts';

describe('a FAILURE on its way as the job is aborted with rollback', () => {
  let f: RolloutFixture;
  before(async () => {
    f = await startRolloutFixture({ builds: ['1.0.0', '2.0.0'] });
  });
  after(() => f.close());

  it('ends FAILED with its reason and is rolled back; the stop confirmed, or answered first, ends CANCELED', async () => {
    const [a, b, downloading, silent, stopper, answered] = await f.fleet('ab', 6);
    const jobId = (await f.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { devices: [a!, b!, downloading!, silent!, stopper!, answered!] }, abort: { rules: [{ type: 'FAILED', thresholdPercent: 50, minFinished: 2 }], rollback: true } })).job.jobId;
    await f.tick();
    for (const d of [downloading!, stopper!, answered!]) await f.report(d, { name: 'fw', version: '1.0.0', jobId, status: 'DOWNLOADING', progress: 0.4 });
    assert.equal((await f.execution(jobId, silent!)).dispatchedAt !== undefined, true, 'the silent device has its command');
    await f.complete(a!, 'FAILURE');
    await f.complete(b!, 'FAILURE');
    await f.tick();
    assert.equal((await f.job(jobId)).status, 'ABORTED');
    // the abort: the downloading devices marked and told to stay, the silent one CANCELED
    for (const d of [downloading!, stopper!, answered!]) {
      const e = await f.execution(jobId, d);
      assert.deepEqual([e.status, e.details.cancelRequested, (await f.desired(d))?.jobId], ['IN_PROGRESS', true, `${jobId}.cancel`], d);
    }
    assert.deepEqual([(await f.execution(jobId, silent!)).status, (await f.desired(silent!))?.jobId], ['CANCELED', `${jobId}.cancel`]);

    // their failures, sent before the stay reached them, come in now
    f.advance(1000);
    await f.report(downloading!, { name: 'fw', version: '1.0.0', jobId, status: 'FAILURE', error: 'checksum mismatch' });
    await f.report(silent!, { name: 'fw', version: '1.0.0', jobId, status: 'FAILURE', error: 'signature refused: unknown key' });
    for (const [d, error] of [[downloading!, 'checksum mismatch'], [silent!, 'signature refused: unknown key']] as const) {
      const e = await f.execution(jobId, d);
      assert.deepEqual([e.status, e.details.error, e.details.deviceError, e.dueAt], ['FAILED', error, undefined, undefined], `${d}: the device failed, with its reason`);
      assert.deepEqual(e.details.rollback, { to: '1.0.0', at: f.clock.now }, `${d}: rolled back as every failed device`);
      const asked = await f.desired(d);
      assert.deepEqual([asked?.jobId, asked?.version], [`${jobId}.rollback`, '1.0.0'], `${d}: asked for what it ran before`);
    }

    // the agent's confirmation of the stop is the cancellation: not failed, not rolled back
    await f.report(stopper!, { name: 'fw', version: '1.0.0', jobId, status: 'FAILURE', error: `superseded by job ${jobId}.cancel` });
    const stopped = await f.execution(jobId, stopper!);
    assert.deepEqual([stopped.status, stopped.details.deviceError, stopped.details.rollback], ['CANCELED', `superseded by job ${jobId}.cancel`, undefined]);
    assert.equal((await f.desired(stopper!))?.jobId, `${jobId}.cancel`);

    // a device that answered its stay before its FAILURE came had heard of the cancel
    await f.report(answered!, { name: 'fw', version: '1.0.0', jobId: `${jobId}.cancel`, status: 'SUCCESS' });
    await f.report(answered!, { name: 'fw', version: '1.0.0', jobId, status: 'FAILURE', error: 'download interrupted' });
    const heard = await f.execution(jobId, answered!);
    assert.deepEqual([heard.status, heard.details.deviceError, heard.details.rollback], ['CANCELED', 'download interrupted', undefined]);

    // a repeat of a recorded FAILURE changes nothing; the stop's CANCELED confirmed by the
    // device is not turned FAILED by a later report either
    const version = (await f.execution(jobId, downloading!)).version;
    await f.report(downloading!, { name: 'fw', version: '1.0.0', jobId, status: 'FAILURE', error: 'checksum mismatch' });
    assert.equal((await f.execution(jobId, downloading!)).version, version);
    await f.report(stopper!, { name: 'fw', version: '1.0.0', jobId, status: 'FAILURE', error: 'disk full' });
    assert.equal((await f.execution(jobId, stopper!)).status, 'CANCELED');

    const counts = (await f.rollouts.jobs.view(jobId)).counts;
    assert.deepEqual([counts.FAILED, counts.CANCELED], [4, 2], 'the job counts the four devices that failed');
    assert.equal((await f.job(jobId)).status, 'ABORTED');
  });

  it('a canceled job (no rollback): the FAILURE is recorded FAILED and nothing is retried', async () => {
    const [d] = await f.fleet('cn', 1);
    const jobId = (await f.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { devices: [d!] }, retries: { limit: 2 } })).job.jobId;
    await f.report(d!, { name: 'fw', version: '1.0.0', jobId, status: 'VERIFYING' });
    await f.rollouts.jobs.cancel(jobId);
    assert.equal((await f.desired(d!))?.jobId, `${jobId}.cancel`);
    await f.report(d!, { name: 'fw', version: '1.0.0', jobId, status: 'FAILURE', error: 'signature refused' });
    const e = await f.execution(jobId, d!);
    assert.deepEqual([e.status, e.attempt ?? 1, e.details.error, e.details.rollback], ['FAILED', 1, 'signature refused', undefined]);
    assert.equal((await f.desired(d!))?.jobId, `${jobId}.cancel`, 'the stay stands');
  });
});
