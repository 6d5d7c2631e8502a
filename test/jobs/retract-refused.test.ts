/**
 * What the engine writes to a device's shadow after a job ends badly, when the shadow will not
 * take it: a timed-out command whose stay does not fit the document, a failed device deleted
 * before its job aborts with rollback. Neither may stall the engine or the rest of the fleet.
 * Real parts (SQLite store, replica, tracker, engine) with a fake clock.
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { UpdraftError } from '../../src/errors.ts';
import { decommissionDevice } from '../../src/fleet/decommission.ts';
import { mutateExecution } from '../../src/jobs/execution-writer.ts';
import { startRolloutFixture, type RolloutFixture } from './rollout-fixture.ts';

describe('a shadow that refuses what a job ending badly writes', () => {
  let f: RolloutFixture;
  beforeEach(async () => {
    f = await startRolloutFixture({ builds: ['1.0.0', '2.0.0'] });
  });
  afterEach(() => f.close());

  it("a timed-out command whose stay the full document cannot hold is cleared instead, and the timeout is done with", async () => {
    const [d] = await f.fleet('t', 1);
    const jobId = (await f.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { devices: [d!] }, timeouts: { inProgressSeconds: 60 } })).job.jobId;
    assert.equal((await f.desired(d!))?.jobId, jobId, 'the command was sent');
    // the device fills its document to the byte: the command fits, a stay (its job id 7 bytes longer) does not
    const fits = async (n: number) =>
      f.replica.update({ deviceId: d!, name: '' }, { state: { reported: { pad: 'x'.repeat(n) } } }, { kind: 'device', id: d! }).then(
        () => true,
        (err: unknown) => {
          if (err instanceof UpdraftError && err.code === 'TOO_LARGE') return false;
          throw err;
        },
      );
    let lo = 0;
    let hi = 8192;
    while (lo < hi) {
      const mid = Math.ceil((lo + hi) / 2);
      if (await fits(mid)) lo = mid;
      else hi = mid - 1;
    }
    assert.ok(await fits(lo), 'the document is full');
    f.advance(61_000);
    await f.tick();
    const e = await f.execution(jobId, d!);
    assert.equal(e.status, 'TIMED_OUT');
    assert.equal(await f.desired(d!), undefined, 'the timed-out command is taken back: cleared, since no stay fits');
    assert.equal(e.dueAt, undefined, 'nothing left due: the next ticks do not take it up again');
  });

  it('a failed device deleted before the abort is skipped, and the other failed devices are rolled back', async () => {
    const ids = await f.fleet('d', 4);
    const jobId = (await f.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { devices: ids }, abort: { rules: [{ type: 'FAILED', thresholdPercent: 50, minFinished: 3 }], rollback: true } })).job.jobId;
    await f.tick();
    const [gone, ...others] = ids;
    await f.complete(gone!, 'FAILURE');
    await decommissionDevice({ store: f.store, registry: f.registry, replica: f.replica, events: f.events, now: () => f.clock.now }, gone!);
    await f.complete(others[0]!, 'FAILURE');
    await f.complete(others[1]!, 'FAILURE');
    await f.tick();
    assert.equal((await f.job(jobId)).status, 'ABORTED');
    assert.deepEqual((await f.execution(jobId, gone!)).details.rollback, { to: null, skipped: 'the device was deleted', at: f.clock.now });
    for (const id of others.slice(0, 2)) {
      assert.equal((await f.desired(id))?.jobId, `${jobId}.rollback`, `${id} is rolled back`);
      assert.deepEqual((await f.execution(jobId, id)).details.rollback, { to: '1.0.0', at: f.clock.now });
    }
    assert.equal((await f.store.getShadow(gone!, ''))?.deleted ?? true, true, 'the deleted device got no shadow back');
  });

  it('a device deleted while its timeout was unfinished (a crash after the TIMED_OUT) gets no new attempt', async () => {
    const [d] = await f.fleet('x', 1);
    const jobId = (await f.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { devices: [d!] }, timeouts: { inProgressSeconds: 60 }, retries: { limit: 2 } })).job.jobId;
    assert.equal((await f.desired(d!))?.jobId, jobId, 'the command was sent');
    f.advance(61_000);
    // what the engine's timeout writes first (the row stays due until its command is taken back), and then the process died
    await mutateExecution(f, { jobId, deviceId: d! }, (cur) => ({ status: 'TIMED_OUT', details: { ...cur.details, error: 'timed out' } }), f.clock.now);
    assert.notEqual((await f.execution(jobId, d!)).dueAt, undefined, 'still due');
    await decommissionDevice({ store: f.store, registry: f.registry, replica: f.replica, events: f.events, now: () => f.clock.now }, d!);
    await f.tick();
    const e = await f.execution(jobId, d!);
    assert.deepEqual([e.status, e.attempt ?? 1, e.dueAt], ['TIMED_OUT', 1, undefined], 'its outcome stands; nothing is due');
  });
});
