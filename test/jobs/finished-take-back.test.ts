/**
 * A take-back (a stay, `<job>.cancel`) is never written over a command the device has already
 * reported finishing (SUCCESS or FAILURE of that very command id): the agent never applies a
 * job id twice, so there is nothing left to stop, and the stay would stand pending over a
 * device that finished. retractOwed checked it already (20aa0b5); here the timeout's take-back
 * tried again after the replica refused it, and a cancel processed just after the device's
 * SUCCESS reached its shadow, before the execution recorded it. Real parts (SQLite store,
 * replica, tracker, engine) with a fake clock.
 */
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { RETRACT_RETRY_MS } from '../../src/jobs/pending-retract.ts';
import { eventually } from '../helpers/cli.ts';
import { startRolloutFixture, type RolloutFixture } from './rollout-fixture.ts';

describe('a take-back of a command the device reported finishing', () => {
  let f: RolloutFixture | undefined;
  afterEach(async () => {
    await f?.close();
    f = undefined;
  });

  it("a timeout's take-back tried again after the replica refused it: the device reported the attempt's SUCCESS meanwhile, nothing is written", async () => {
    const fx = (f = await startRolloutFixture({ builds: ['1.0.0', '2.0.0'], maxPending: 1 }));
    const [d, busy] = await fx.fleet('t', 2);
    // no retry: the timed-out row stays due until its command is taken back
    const jobId = (await fx.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { devices: [d!] }, timeouts: { inProgressSeconds: 60 } })).job.jobId;
    assert.equal((await fx.desired(d!))?.jobId, jobId, 'the command was sent');
    // the replica's only place taken by another device's update: the take-back is refused (429)
    const free = fx.occupyReplica(busy!);
    fx.advance(61_000);
    await fx.tick();
    const timedOut = await fx.execution(jobId, d!);
    assert.equal(timedOut.status, 'TIMED_OUT');
    assert.ok(timedOut.dueAt !== undefined, 'due again: the take-back failed for now');
    assert.equal((await fx.desired(d!))?.jobId, jobId, 'not taken back yet');
    await free();
    // the device comes back having installed the build, and says so
    await fx.report(d!, { name: 'fw', version: '2.0.0', jobId, status: 'SUCCESS' });
    assert.equal((await fx.execution(jobId, d!)).details.lateSuccess !== undefined, true, 'its success is kept beside the timeout');
    const version = (await fx.store.getShadow(d!, ''))?.version;
    fx.advance(RETRACT_RETRY_MS);
    await fx.tick();
    const asked = await fx.desired(d!);
    assert.deepEqual([asked?.jobId, asked?.version], [jobId, '2.0.0'], 'the device that finished the command is not told to stay');
    assert.equal((await fx.store.getShadow(d!, ''))?.version, version, 'the shadow is not written');
    const e = await fx.execution(jobId, d!);
    assert.deepEqual([e.status, e.dueAt], ['TIMED_OUT', undefined], 'nothing is due any more');
  });

  /**
   * Commits `software` to the device's shadow with its answers held (the tracker hears of it
   * only once they are sent: a slow broker, or the report taken by another instance), cancels
   * the job while they are held, then lets them go; resolves once everything is recorded.
   */
  async function cancelAfterHeldReport(fx: RolloutFixture, d: string, jobId: string, software: { name: string; version: string; status: string; error?: string }): Promise<void> {
    const release = fx.bus.hold();
    const reporting = fx.replica.update({ deviceId: d, name: '' }, { state: { reported: { software: { ...software, jobId } } } }, { kind: 'device', id: d });
    await eventually(async () => ((await fx.store.getShadow(d, ''))?.state.reported?.software as { status?: string } | undefined)?.status === software.status || undefined, 5_000, `the ${software.status} committed`);
    let canceled = false;
    const canceling = fx.rollouts.jobs.cancel(jobId).then(() => (canceled = true));
    // until the cancel is done, or has marked the execution (what it writes before it takes the
    // command back; the shadow's writes then wait for the held update ahead of them)
    await eventually(async () => canceled || (await fx.store.getExecution(jobId, d))?.details.cancelRequested === true || undefined, 5_000, 'the cancel done or under way');
    release();
    await reporting;
    await canceling;
    await fx.tracker.idle();
    await fx.rollouts.engine.settled();
  }

  it("a cancel processed after the device's SUCCESS reached its shadow, before its execution recorded it: no stay, the execution ends SUCCEEDED", async () => {
    const fx = (f = await startRolloutFixture({ builds: ['1.0.0', '2.0.0'] }));
    const [d] = await fx.fleet('c', 1);
    const jobId = (await fx.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { devices: [d!] } })).job.jobId;
    await fx.report(d!, { name: 'fw', version: '1.0.0', jobId, status: 'DOWNLOADING', progress: 0.5 });
    assert.equal((await fx.execution(jobId, d!)).status, 'IN_PROGRESS');
    await cancelAfterHeldReport(fx, d!, jobId, { name: 'fw', version: '2.0.0', status: 'SUCCESS' });
    const asked = await fx.desired(d!);
    assert.deepEqual([asked?.jobId, asked?.version], [jobId, '2.0.0'], 'the device that finished the command is not told to stay');
    assert.equal((await fx.execution(jobId, d!)).status, 'SUCCEEDED');
  });

  it('the same before any report of the device was recorded (its execution QUEUED, the command sent): the execution ends SUCCEEDED, not CANCELED', async () => {
    const fx = (f = await startRolloutFixture({ builds: ['1.0.0', '2.0.0'] }));
    const [d] = await fx.fleet('q', 1);
    const jobId = (await fx.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { devices: [d!] } })).job.jobId;
    const sent = await fx.execution(jobId, d!);
    assert.deepEqual([sent.status, sent.dispatchedAt !== undefined, sent.details.agentStatus], ['QUEUED', true, undefined], 'the command sent, nothing reported yet');
    await cancelAfterHeldReport(fx, d!, jobId, { name: 'fw', version: '2.0.0', status: 'SUCCESS' });
    const asked = await fx.desired(d!);
    assert.deepEqual([asked?.jobId, asked?.version], [jobId, '2.0.0'], 'the device that finished the command is not told to stay');
    const e = await fx.execution(jobId, d!);
    assert.deepEqual([e.status, e.details.lateSuccess], ['SUCCEEDED', undefined], 'its update counted as done');
    assert.equal((await fx.job(jobId)).status, 'CANCELED');
  });

  it('a FAILURE of the command reported before the cancel ends the execution FAILED with its reason (the device failed: no stop), QUEUED or not', async () => {
    const fx = (f = await startRolloutFixture({ builds: ['1.0.0', '2.0.0'] }));
    const [q, p] = await fx.fleet('fq', 2);
    const jobId = (await fx.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { devices: [q!, p!] } })).job.jobId;
    await fx.report(p!, { name: 'fw', version: '1.0.0', jobId, status: 'DOWNLOADING', progress: 0.5 });
    assert.deepEqual([(await fx.execution(jobId, q!)).status, (await fx.execution(jobId, p!)).status], ['QUEUED', 'IN_PROGRESS']);
    const release = fx.bus.hold();
    const failure = { name: 'fw', version: '1.0.0', jobId, status: 'FAILURE', error: 'checksum mismatch' };
    const reporting = [q!, p!].map((d) => fx.replica.update({ deviceId: d, name: '' }, { state: { reported: { software: failure } } }, { kind: 'device', id: d }));
    for (const d of [q!, p!]) await eventually(async () => ((await fx.store.getShadow(d, ''))?.state.reported?.software as { status?: string } | undefined)?.status === 'FAILURE' || undefined, 5_000, 'the FAILURE committed');
    let canceled = false;
    const canceling = fx.rollouts.jobs.cancel(jobId).then(() => (canceled = true));
    await eventually(async () => canceled || ((await fx.store.getExecution(jobId, q!))?.details.cancelRequested === true && (await fx.store.getExecution(jobId, p!))?.details.cancelRequested === true) || undefined, 5_000, 'the cancel done or under way');
    release();
    await Promise.all(reporting);
    await canceling;
    await fx.tracker.idle();
    await fx.rollouts.engine.settled();
    for (const d of [q!, p!]) {
      const asked = await fx.desired(d);
      assert.equal(asked?.jobId, jobId, 'the device that finished the command is not told to stay');
      const e = await fx.execution(jobId, d);
      // until 2026-12-06 CANCELED, the job's reason in error and 'checksum mismatch' in deviceError
      assert.deepEqual([e.status, e.details.error, e.details.deviceError], ['FAILED', 'checksum mismatch', undefined], d);
    }
  });
});
