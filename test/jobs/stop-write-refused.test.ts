/**
 * One execution write refused (the store failing once) while a job is stopped, or while its
 * command is sent just before a cancel: the stop is still carried out without a restart
 * (docs/rollouts.md, Durability: execution writes that fail are tried again until made).
 * Real parts (SQLite store, replica, tracker, engine) with a fake clock; the refusal is a
 * delegating wrapper over the real store's updateExecution, as in unrecorded-report.test.ts.
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import type { JsonObject } from '../../src/protocol/json.ts';
import type { ExecutionRecord } from '../../src/store/state-store.ts';
import { startRolloutFixture, type RolloutFixture } from './rollout-fixture.ts';

describe('an execution write refused once around a stop', () => {
  let f: RolloutFixture;
  let restore: () => void = () => undefined;
  beforeEach(async () => {
    f = await startRolloutFixture({ builds: ['1.0.0', '2.0.0'] });
  });
  afterEach(async () => {
    restore();
    await f.close();
  });

  /** The store refuses the first updateExecution that `match` picks (SQLITE_FULL); returns what it refused. */
  const refuseOnce = (match: (r: ExecutionRecord) => boolean): { refused: ExecutionRecord[] } => {
    const seen = { refused: [] as ExecutionRecord[] };
    const store = f.store;
    const real = store.updateExecution;
    store.updateExecution = function (this: unknown, r: ExecutionRecord, c?: unknown) {
      if (seen.refused.length === 0 && match(r)) {
        seen.refused.push(r);
        return Promise.reject(Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' }));
      }
      return (real as (...a: unknown[]) => Promise<unknown>).call(this, r, c);
    } as typeof store.updateExecution;
    restore = () => void (store.updateExecution = real);
    return seen;
  };

  /** A job on two devices, waves `count 1` then 100%: the first is sent, the second not yet. */
  const twoWaves = async () => {
    const [sent, unsent] = await f.fleet('d', 2);
    const jobId = (await f.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { devices: [sent!, unsent!] }, plan: { waves: [{ count: 1, successThreshold: 0 }, { percent: 100 }] } })).job.jobId;
    assert.equal((await f.desired(sent!))?.jobId, jobId);
    assert.equal((await f.desired(unsent!))?.jobId, undefined);
    return { sent: sent!, unsent: unsent!, jobId };
  };

  const thirtyMinutes = async () => {
    for (let i = 0; i < 5; i++) {
      f.advance(6 * 60_000);
      await f.tick();
    }
  };

  it('an unsent execution whose CANCELED is refused ends CANCELED at a later tick, and the job can be deleted', async () => {
    const { sent, unsent, jobId } = await twoWaves();
    const seen = refuseOnce((r) => r.deviceId === unsent);
    const view = await f.rollouts.jobs.cancel(jobId);
    assert.equal(seen.refused.length, 1, 'the write was refused');
    assert.equal(view.job.status, 'CANCELED');
    await thirtyMinutes();
    assert.equal((await f.execution(jobId, unsent)).status, 'CANCELED');
    assert.equal((await f.execution(jobId, sent)).status, 'CANCELED');
    await f.rollouts.jobs.delete(jobId);
  });

  it("a sent execution whose stop mark is refused has its command taken back at a later tick, and a late SUCCESS does not end it SUCCEEDED", async () => {
    const { sent, jobId } = await twoWaves();
    const seen = refuseOnce((r) => r.deviceId === sent);
    await f.rollouts.jobs.cancel(jobId);
    assert.equal(seen.refused.length, 1, 'the write was refused');
    await thirtyMinutes();
    const asked = await f.desired(sent);
    assert.deepEqual([asked?.jobId, asked?.version], [`${jobId}.cancel`, '1.0.0'], 'the device is asked to stay on 1.0.0');
    const e = await f.execution(jobId, sent);
    assert.equal(e.status, 'CANCELED');
    // the device comes back and runs what it is asked: the stay
    await f.complete(sent, 'SUCCESS', '1.0.0');
    assert.equal(((await f.store.getShadow(sent, ''))?.state.reported?.software as JsonObject | undefined)?.version, '1.0.0');
    assert.equal((await f.execution(jobId, sent)).status, 'CANCELED');
  });

  it("a command whose 'sent' write was refused is taken back when the job is canceled before the next tick", async () => {
    const [d] = await f.fleet('d', 1);
    const seen = refuseOnce(() => true);
    const jobId = (await f.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { devices: [d!] } })).job.jobId;
    assert.equal(seen.refused.length, 1, "the 'sent' write was refused");
    assert.equal(seen.refused[0]!.dispatchedAt !== undefined, true);
    await f.rollouts.jobs.cancel(jobId);
    await thirtyMinutes();
    const e = await f.execution(jobId, d!);
    assert.equal(e.status, 'CANCELED');
    assert.notEqual((await f.desired(d!))?.jobId, jobId, 'the canceled command is not asked for');
    if ((await f.desired(d!)) !== undefined) await f.complete(d!, 'SUCCESS', '1.0.0');
    assert.equal(((await f.store.getShadow(d!, ''))?.state.reported?.software as JsonObject | undefined)?.version, '1.0.0');
    assert.equal((await f.execution(jobId, d!)).details.lateSuccess, undefined);
  });

  it("a command whose 'sent' write failed after another instance canceled the row unsent is taken back at once", async () => {
    const [d] = await f.fleet('d', 1);
    // the first write (the mark of "sent") finds the row ended CANCELED unsent by another
    // instance's stop, whose read of the shadow came before the command (nothing to take back
    // then), and fails
    const store = f.store;
    const real = store.updateExecution;
    let refused = 0;
    store.updateExecution = async function (this: unknown, r: ExecutionRecord, c?: ReadonlySet<keyof ExecutionRecord>) {
      if (refused === 0) {
        refused++;
        const row = (await store.getExecution(r.jobId, r.deviceId))!;
        assert.equal(await real.call(store, { ...row, status: 'CANCELED', details: { ...row.details, error: 'job canceled' }, version: row.version + 1 }), true);
        throw Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' });
      }
      return real.call(this, r, c);
    } as typeof store.updateExecution;
    restore = () => void (store.updateExecution = real);
    const jobId = (await f.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { devices: [d!] } })).job.jobId;
    assert.equal(refused, 1);
    assert.equal((await f.execution(jobId, d!)).status, 'CANCELED');
    const asked = await f.desired(d!);
    assert.deepEqual([asked?.jobId, asked?.version], [`${jobId}.cancel`, '1.0.0'], 'the command was taken back: the device is asked to stay on 1.0.0');
  });
  it("a command whose 'sent' write was refused is taken back at a later tick when the cancel's take-back and its owed retract both fail", async () => {
    await f.close();
    f = await startRolloutFixture({ builds: ['1.0.0', '2.0.0'], maxPending: 1 });
    const [d, busy] = await f.fleet('d', 2);
    // refused: the mark of "sent", then the write owing the take-back (retractPending) on the CANCELED row
    const store = f.store;
    const real = store.updateExecution;
    const refused: ExecutionRecord[] = [];
    store.updateExecution = function (this: unknown, r: ExecutionRecord, c?: unknown) {
      if ((refused.length === 0 && r.deviceId === d) || (refused.length === 1 && r.details.retractPending !== undefined)) {
        refused.push(r);
        return Promise.reject(Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' }));
      }
      return (real as (...a: unknown[]) => Promise<unknown>).call(this, r, c);
    } as typeof store.updateExecution;
    restore = () => void (store.updateExecution = real);
    const jobId = (await f.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { devices: [d!] } })).job.jobId;
    assert.equal(refused.length, 1, "the 'sent' write was refused");
    assert.equal((await f.desired(d!))?.jobId, jobId, 'the command is on the device');
    // the replica's only place held: the cancel's take-back fails for now (429)
    const free = f.occupyReplica(busy!);
    await f.rollouts.jobs.cancel(jobId);
    assert.equal(refused.length, 2, 'the owed retract was refused');
    assert.equal((await f.execution(jobId, d!)).status, 'CANCELED');
    assert.equal((await f.desired(d!))?.jobId, jobId, 'not taken back yet');
    await free();
    await thirtyMinutes();
    const asked = await f.desired(d!);
    assert.deepEqual([asked?.jobId, asked?.version], [`${jobId}.cancel`, '1.0.0'], 'taken back: the device is asked to stay on 1.0.0');
  });
});
