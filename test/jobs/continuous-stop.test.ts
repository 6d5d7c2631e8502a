/**
 * A continuous job that is canceled (or aborted) takes no more devices from that moment: not
 * one coming online before the engine's next tick, not one being added as the cancel commits,
 * not one a scan adds while another instance cancels it. Real parts (SQLite store, replica,
 * tracker, engine) with a fake clock.
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { eventually } from '../helpers/cli.ts';
import { startRolloutFixture, type RolloutFixture } from './rollout-fixture.ts';

describe('a continuous job stopped while devices join it', () => {
  let f: RolloutFixture;
  let jobId: string;
  beforeEach(async () => {
    f = await startRolloutFixture();
    await f.addArtifact('2.0.0');
    await f.fleet('c', 2, '1.0.0', { tags: ['grp'] });
    jobId = (await f.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { query: 'tags = grp' }, type: 'continuous' })).job.jobId;
    await f.tick();
  });
  afterEach(() => f.close());

  /** The embedded broker's presence notice, then time for the engine to look the device up. */
  const comesOnline = async (deviceId: string) => {
    f.events.emit('device.presence', { deviceId, online: true });
    for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
  };
  const open = async () => {
    const c = (await f.rollouts.jobs.view(jobId)).counts;
    return c.QUEUED + c.IN_PROGRESS;
  };

  it('a device coming online just after the cancel is not added', async () => {
    // a second continuous job, made after it, still running: the engine looks at the jobs in
    // the order it learned them, so the device's execution in this one says the engine is done
    // with the arrival (no wait that a slow machine could cut short)
    const witness = (await f.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { query: 'tags = grp' }, type: 'continuous' })).job.jobId;
    await f.tick();
    await f.rollouts.jobs.cancel(jobId);
    await f.registry.register({ deviceId: 'c100', tags: ['grp'] });
    await comesOnline('c100');
    await eventually(async () => ((await f.store.getExecution(witness, 'c100')) ? true : undefined), 5_000, 'the running job took the device');
    await f.tick();
    assert.equal(await f.store.getExecution(jobId, 'c100'), undefined);
    assert.equal(await open(), 0, 'nothing left QUEUED in the canceled job');
  });

  it('a device being added as the cancel commits ends CANCELED', async () => {
    await f.registry.register({ deviceId: 'c100', tags: ['grp'] });
    // the cancel commits, and passes over the job's executions, while the join is on its way
    const add = f.store.addExecutions.bind(f.store);
    f.store.addExecutions = async (rows) => {
      if (rows.some((r) => r.deviceId === 'c100')) await f.rollouts.jobs.cancel(jobId);
      return add(rows);
    };
    await comesOnline('c100');
    const e = await eventually(async () => {
      const cur = await f.store.getExecution(jobId, 'c100');
      return cur?.status === 'CANCELED' ? cur : undefined;
    }, 5_000, 'the execution added to the canceled job ended CANCELED');
    assert.equal(e.details.error, 'job canceled');
    assert.equal(e.dispatchedAt, undefined);
    await f.tick();
    assert.equal(await open(), 0);
  });

  it("a device a scan adds while another instance cancels the job ends CANCELED, and nothing is sent", async () => {
    await f.registry.register({ deviceId: 'c100', tags: ['grp'] });
    const add = f.store.addExecutions.bind(f.store);
    f.store.addExecutions = async (rows) => {
      if (rows.some((r) => r.deviceId === 'c100')) {
        // another instance's cancel: its status committed before these rows, its pass over them done
        const job = await f.job(jobId);
        assert.ok(await f.store.updateJob({ ...job, status: 'CANCELED', version: (job.version ?? 1) + 1 }));
      }
      return add(rows);
    };
    f.advance(61_000); // the next scan
    await f.tick();
    const e = await f.execution(jobId, 'c100');
    assert.equal(e.status, 'CANCELED');
    assert.equal(e.dispatchedAt, undefined);
    assert.equal(await f.desired('c100'), undefined, 'no command sent');
    assert.equal(await open(), 0);
  });
});
