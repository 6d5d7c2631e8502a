/**
 * A cancel whose stay (the take-back of the command a device was sent) the replica refuses for
 * now (429: its requests in flight at their bound, as when a big cancel writes hundreds of
 * stays at once): the device did not confirm within the grace, and at its end the command is
 * taken back, instead of the execution ending CANCELED with the canceled build still desired
 * (a device offline meanwhile would install it on coming back). Real parts (SQLite store,
 * replica, tracker, engine) with a fake clock; the replica is kept busy by another device's
 * update whose answers the broker connection has not taken yet (the fixture's bus, held).
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { CANCEL_GRACE_MS } from '../../src/jobs/deadlines.ts';
import { RETRACT_RETRY_MS } from '../../src/jobs/pending-retract.ts';
import type { JsonObject } from '../../src/protocol/json.ts';
import { startRolloutFixture, type RolloutFixture } from './rollout-fixture.ts';

describe('a canceled command the replica cannot take back for now', () => {
  let f: RolloutFixture;
  beforeEach(async () => {
    f = await startRolloutFixture({ builds: ['1.0.0', '2.0.0'], maxPending: 1 });
  });
  afterEach(() => f.close());

  /** A job of one device, its command sent, canceled while another device's update holds the replica's only place. */
  const canceledWhileReplicaBusy = async () => {
    const [d, busy] = await f.fleet('c', 2);
    const jobId = (await f.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { devices: [d!] } })).job.jobId;
    assert.equal((await f.desired(d!))?.jobId, jobId, 'the command was sent');
    const release = f.occupyReplica(busy!);
    await f.rollouts.jobs.cancel(jobId);
    assert.equal((await f.desired(d!))?.jobId, jobId, 'the replica refused the stay: the device is still asked for the canceled build');
    return {
      d: d!,
      jobId,
      free: release,
    };
  };

  const assertStay = async (d: string, jobId: string, why: string) => {
    const asked = await f.desired(d);
    assert.deepEqual([asked?.jobId, asked?.version], [`${jobId}.cancel`, '1.0.0'], why);
  };

  it('is taken back when the grace ends', async () => {
    const { d, jobId, free } = await canceledWhileReplicaBusy();
    await free();
    f.advance(CANCEL_GRACE_MS);
    await f.tick();
    await assertStay(d, jobId, 'the device, coming back, is asked to stay on 1.0.0');
    const e = await f.execution(jobId, d);
    assert.deepEqual([e.status, e.dueAt, e.details.retractPending], ['CANCELED', undefined, undefined], 'ended, nothing due');
    // the agent runs what it is asked: the stay, not the canceled build
    await f.complete(d, 'SUCCESS', '1.0.0');
    assert.equal(((await f.store.getShadow(d, ''))?.state.reported?.software as JsonObject | undefined)?.version, '1.0.0');
    assert.equal((await f.execution(jobId, d)).details.lateSuccess, undefined);
  });

  it('still refused when the grace ends: ends CANCELED owing the take-back, done once the replica takes it', async () => {
    const { d, jobId, free } = await canceledWhileReplicaBusy();
    f.advance(CANCEL_GRACE_MS);
    await f.tick();
    let e = await f.execution(jobId, d);
    assert.deepEqual([e.status, e.details.retractPending], ['CANCELED', jobId], 'ended, the take-back still owed');
    assert.equal((await f.desired(d))?.jobId, jobId);
    await free();
    f.advance(RETRACT_RETRY_MS);
    await f.tick();
    await assertStay(d, jobId, 'taken back a few seconds later');
    e = await f.execution(jobId, d);
    assert.deepEqual([e.status, e.dueAt, e.details.retractPending], ['CANCELED', undefined, undefined], 'done with: nothing due');
    const version = (await f.store.getShadow(d, ''))?.version;
    f.advance(RETRACT_RETRY_MS);
    await f.tick();
    assert.equal((await f.store.getShadow(d, ''))?.version, version, 'the shadow is not written again');
  });
});
