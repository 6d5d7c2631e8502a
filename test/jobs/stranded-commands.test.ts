/**
 * Commands an earlier version left desired after their executions moved on, out of the
 * deadline index today's engine finishes timeouts from: a TIMED_OUT row whose deadline was
 * cleared before its retract (a crash in between), and a timed-out attempt left to its retry
 * (before 4ccd518), which a cancel ended unsent. The first start on such a store takes them
 * back, once (stranded-commands.ts). The rows are written as those versions wrote them; real
 * parts (SQLite store, replica, tracker, engine), fake clock.
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { mutateExecution } from '../../src/jobs/execution-writer.ts';
import { STRANDED_SWEEP_KEY } from '../../src/jobs/stranded-commands.ts';
import type { JsonObject } from '../../src/protocol/json.ts';
import { startRolloutFixture, type RolloutFixture } from './rollout-fixture.ts';

describe('commands an earlier version left on devices after their attempts timed out', () => {
  let f: RolloutFixture;
  beforeEach(async () => {
    f = await startRolloutFixture({ builds: ['1.0.0', '2.0.0'] });
  });
  afterEach(() => f.close());

  it('are taken back at the first start on the store; commands still in flight or finished are left alone', async () => {
    await f.rollouts.engine.settled();
    assert.notEqual(await f.store.getSetting(STRANDED_SWEEP_KEY), undefined, 'a new store is looked over at once, and recorded');
    const [timedOut, leftToRetry, inFlight, finished] = await f.fleet('s', 4);
    const create = async (devices: string[], body: Record<string, unknown> = {}) =>
      (await f.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { devices }, timeouts: { inProgressSeconds: 60 }, ...body })).job.jobId;
    const a = await create([timedOut!]);
    const b = await create([leftToRetry!], { retries: { limit: 1 } });
    await f.rollouts.jobs.pause(b);
    f.advance(61_000);
    // what the timeout wrote before 0ff9134, its deadline cleared at once; the process died before the retract
    await mutateExecution(f, { jobId: a, deviceId: timedOut! }, (cur) => ({ status: 'TIMED_OUT', details: { ...cur.details, error: 'in-progress timeout' }, dueAt: undefined }), f.clock.now);
    // what the timeout wrote before 4ccd518 with a retry allowed: the retry queued, the timed-out command left to it
    await mutateExecution(f, { jobId: b, deviceId: leftToRetry! }, () => ({ status: 'QUEUED', attempt: 2, details: { attempts: [{ attempt: 1, status: 'TIMED_OUT', at: f.clock.now }] }, dispatchedAt: undefined, dueAt: undefined }), f.clock.now);
    await f.rollouts.jobs.cancel(b); // the retry ends unsent, the device told nothing
    const c = (await f.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { devices: [inFlight!, finished!] }, timeouts: { inProgressSeconds: 3600 } })).job.jobId;
    await f.complete(finished!);
    assert.deepEqual(
      await Promise.all([timedOut, leftToRetry, inFlight, finished].map(async (d) => (await f.desired(d!))?.jobId)),
      [a, b, c, c],
      'as an earlier version left them: the timed-out attempts still desired',
    );
    const untouched = await Promise.all([inFlight, finished].map(async (d) => (await f.store.getShadow(d!, ''))?.version));

    // the store as an earlier version left it: never looked over
    assert.equal(await f.store.deleteSetting(STRANDED_SWEEP_KEY), true);
    await f.restart();
    await f.rollouts.engine.settled();

    for (const [d, jobId] of [[timedOut!, a], [leftToRetry!, b]] as const) {
      const asked = await f.desired(d);
      assert.deepEqual([asked?.jobId, asked?.version], [`${jobId}.cancel`, '1.0.0'], `${d} is told to stay on what it runs, as a timeout tells it today`);
    }
    assert.deepEqual(await Promise.all([inFlight, finished].map(async (d) => (await f.store.getShadow(d!, ''))?.version)), untouched, 'a command in flight and one the device finished are not written');
    assert.deepEqual([(await f.execution(a, timedOut!)).status, (await f.execution(b, leftToRetry!)).status], ['TIMED_OUT', 'CANCELED'], 'the executions stay as they ended');
    assert.notEqual(await f.store.getSetting(STRANDED_SWEEP_KEY), undefined, 'the pass is recorded: later starts do not read the fleet again');
    // the device comes back and runs what it is asked: the stay, not the timed-out build
    await f.complete(timedOut!, 'SUCCESS', '1.0.0');
    assert.equal(((await f.store.getShadow(timedOut!, ''))?.state.reported?.software as JsonObject | undefined)?.version, '1.0.0');
    assert.equal((await f.execution(a, timedOut!)).details.lateSuccess, undefined, 'no late success: the build was never installed');
  });
});
