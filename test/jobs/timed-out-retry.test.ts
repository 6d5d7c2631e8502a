/**
 * A device that times out loses its command even when a retry is queued: the retry is a
 * command of its own, sent when the job allows (maybe never: a cancel or an abort ends it
 * unsent), and a device coming back meanwhile must not install the timed-out attempt. Real
 * parts (SQLite store, replica, tracker, engine) with a fake clock.
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import type { JsonObject } from '../../src/protocol/json.ts';
import { lateNote } from '../../src/cli/api-commands.ts';
import { eventually } from '../helpers/cli.ts';
import { assertStayThenRetry, startRolloutFixture, type RolloutFixture } from './rollout-fixture.ts';

describe('a timed-out device with a retry queued', () => {
  let f: RolloutFixture;
  beforeEach(async () => {
    f = await startRolloutFixture({ builds: ['1.0.0', '2.0.0'] });
  });
  afterEach(() => f.close());

  /** A job of one offline device with a 60 s timeout and one retry, paused after its command went out, timed out. */
  const timedOutWhilePaused = async (body: Record<string, unknown> = {}) => {
    const [d] = await f.fleet('t', 1);
    const jobId = (await f.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { devices: [d!] }, timeouts: { inProgressSeconds: 60 }, retries: { limit: 1 }, ...body })).job.jobId;
    assert.equal((await f.desired(d!))?.jobId, jobId, 'the first attempt was sent');
    // stands in for whatever holds the retry back: the rate, maxInFlight, a later wave, a closed window
    await f.rollouts.jobs.pause(jobId);
    f.advance(61_000);
    await f.tick();
    const e = await f.execution(jobId, d!);
    assert.deepEqual([e.status, e.attempt, e.dispatchedAt], ['QUEUED', 2, undefined], 'the retry is queued, not sent');
    return { d: d!, jobId };
  };

  it('takes the timed-out attempt back at once; the retry is sent, a fresh command, when the job goes on', async () => {
    const { d, jobId } = await timedOutWhilePaused();
    await assertStayThenRetry(f, jobId, d, 'told to stay on what it runs, not to install the timed-out attempt');
  });

  it("keeps the device's answer to the stay with the attempt that timed out, not on the retry", async () => {
    const { d, jobId } = await timedOutWhilePaused();
    // the device (online, or back) answers the stay: it runs 1.0.0
    await f.complete(d, 'SUCCESS', '1.0.0');
    const e = await f.execution(jobId, d);
    assert.equal(e.attempt, 2);
    assert.equal(e.details.control, undefined, 'the retry has had no control command');
    const [first] = e.details.attempts as JsonObject[];
    assert.deepEqual([first?.attempt, first?.status, first?.control], [1, 'TIMED_OUT', { jobId: `${jobId}.cancel`, status: 'SUCCESS', version: '1.0.0', at: f.clock.now }]);
    // the retry's own life leaves it there
    await f.rollouts.jobs.resume(jobId);
    await f.tick();
    await f.complete(d);
    const done = await f.execution(jobId, d);
    assert.deepEqual([done.status, done.details.control], ['SUCCEEDED', undefined]);
    assert.deepEqual((done.details.attempts as JsonObject[])[0]?.control, first?.control);
  });

  it('canceled before the retry is sent: a device coming back does not install the build', async () => {
    const { d, jobId } = await timedOutWhilePaused();
    await f.rollouts.jobs.cancel(jobId);
    assert.equal((await f.job(jobId)).status, 'CANCELED');
    assert.equal((await f.execution(jobId, d)).status, 'CANCELED');
    const asked = await f.desired(d);
    assert.deepEqual([asked?.jobId, asked?.version], [`${jobId}.cancel`, '1.0.0'], 'the device, coming back, is asked to stay on 1.0.0');
    // the agent runs what it is asked: the stay
    await f.complete(d, 'SUCCESS', '1.0.0');
    assert.equal(((await f.store.getShadow(d, ''))?.state.reported?.software as JsonObject | undefined)?.version, '1.0.0');
  });

  it('aborted with rollback before the retry is sent: a device coming back does not install the build', async () => {
    const [ok, failing] = await f.fleet('a', 2);
    const jobId = (
      await f.rollouts.jobs.create({
        artifact: 'fw@2.0.0',
        targets: { devices: [ok!, failing!] },
        timeouts: { inProgressSeconds: 60 },
        retries: { limit: 1, on: ['TIMED_OUT'] },
        abort: { rules: [{ type: 'FAILED', thresholdPercent: 50, minFinished: 1 }], rollback: true },
      })
    ).job.jobId;
    await f.rollouts.jobs.pause(jobId);
    await f.complete(failing!, 'FAILURE'); // not retried (TIMED_OUT only); the abort rule fires at the next tick
    f.advance(61_000);
    await f.tick(); // ok times out, its retry is queued (paused: not sent); the job aborts
    assert.equal((await f.job(jobId)).status, 'ABORTED');
    const e = await f.execution(jobId, ok!);
    assert.deepEqual([e.status, e.attempt], ['CANCELED', 2], 'the unsent retry ends with the job');
    const asked = await f.desired(ok!);
    assert.notEqual(asked?.version, '2.0.0', 'not asked for the build of the aborted job');
    assert.equal(asked?.jobId, `${jobId}.cancel`);
    assert.equal((await f.desired(failing!))?.jobId, `${jobId}.rollback`, 'the failed device is rolled back');
  });

  it('keeps the late success of the timed-out attempt on the canceled execution, and withdraws the stay', async () => {
    const { d, jobId } = await timedOutWhilePaused();
    await f.rollouts.jobs.cancel(jobId);
    // the device had the build before the timeout reached it (offline, its reports held back)
    await f.report(d, { name: 'fw', version: '2.0.0', jobId, status: 'SUCCESS' });
    const e = await f.execution(jobId, d);
    assert.equal(e.status, 'CANCELED', 'the execution stays as it ended');
    assert.deepEqual(e.details.lateSuccess, { version: '2.0.0', at: f.clock.now, attempt: 1 }, 'job show says it runs the build');
    await eventually(async () => ((await f.desired(d)) === undefined ? true : undefined), 5000, 'the stay withdrawn');
  });

  /** The timed-out attempt's SUCCESS on 2.0.0 reported while its retry is queued (the device had the build, offline). */
  const succeededWhileQueued = async () => {
    const { d, jobId } = await timedOutWhilePaused();
    await f.report(d, { name: 'fw', version: '2.0.0', jobId, status: 'SUCCESS' });
    const at = f.clock.now;
    const e = await f.execution(jobId, d);
    assert.deepEqual([e.status, e.attempt, e.details.lateSuccess], ['QUEUED', 2, undefined], 'nothing on the retry itself');
    assert.deepEqual((e.details.attempts as JsonObject[])[0]?.lateSuccess, { version: '2.0.0', at, attempt: 1 }, 'kept with the attempt that timed out');
    return { d, jobId, at };
  };

  it('the success of the timed-out attempt reported while its retry is queued: kept when the job is then canceled', async () => {
    const { d, jobId, at } = await succeededWhileQueued();
    f.advance(5_000);
    await f.rollouts.jobs.cancel(jobId);
    const e = await f.execution(jobId, d);
    assert.equal(e.status, 'CANCELED');
    assert.deepEqual(e.details.lateSuccess, { version: '2.0.0', at, attempt: 1 }, 'job show says it runs the build');
    assert.match(lateNote(e) ?? '', /^then reported SUCCESS at .*: runs 2\.0\.0$/);
  });

  it('the success of the timed-out attempt reported once its retry was sent: kept when the retry then times out', async () => {
    const { d, jobId } = await timedOutWhilePaused();
    await f.rollouts.jobs.resume(jobId);
    await f.tick();
    assert.equal((await f.desired(d))?.jobId, `${jobId}.2`, 'the retry is sent');
    // the device had the build of attempt 1 (offline, its reports held back)
    await f.report(d, { name: 'fw', version: '2.0.0', jobId, status: 'SUCCESS' });
    const at = f.clock.now;
    assert.deepEqual(((await f.execution(jobId, d)).details.attempts as JsonObject[])[0]?.lateSuccess, { version: '2.0.0', at, attempt: 1 });
    f.advance(61_000);
    await f.tick();
    const e = await f.execution(jobId, d);
    assert.deepEqual([e.status, e.attempt], ['TIMED_OUT', 2], 'no retry left');
    assert.deepEqual(e.details.lateSuccess, { version: '2.0.0', at, attempt: 1 });
  });

  it('the success of the timed-out attempt reported while its retry is queued: the retry is not sent, the execution SUCCEEDED', async () => {
    const { d, jobId, at } = await succeededWhileQueued();
    await f.rollouts.jobs.resume(jobId);
    f.advance(1_000);
    await f.tick();
    assert.notEqual((await f.desired(d))?.jobId, `${jobId}.2`, 'no retry command for a device that runs the build after attempt 1');
    const e = await f.execution(jobId, d);
    assert.deepEqual([e.status, e.attempt, e.dispatchedAt], ['SUCCEEDED', 2, undefined], 'ended at its turn, nothing sent');
    assert.deepEqual([e.details.agentStatus, e.details.version, e.details.retryNotSent], ['SUCCESS', '2.0.0', { attempt: 1, at: f.clock.now }]);
    assert.deepEqual((e.details.attempts as JsonObject[])[0]?.lateSuccess, { version: '2.0.0', at, attempt: 1 }, 'the success stays with its attempt');
    assert.equal(e.details.lateSuccess, undefined);
    assert.equal(lateNote(e), undefined, "a SUCCEEDED row does not say 'then reported SUCCESS'");
    await f.tick(); // the wave is judged on the counts of the next tick
    assert.equal((await f.job(jobId)).status, 'COMPLETED');
  });

  it('a device that reported the success, then runs something else, gets the retry', async () => {
    const { d, jobId } = await succeededWhileQueued();
    // put back on 1.0.0 by hand (reflashed): its reported software no longer shows the job's success
    await f.report(d, { name: 'fw', version: '1.0.0', status: 'IDLE' });
    await f.rollouts.jobs.resume(jobId);
    await f.tick();
    assert.equal((await f.desired(d))?.jobId, `${jobId}.2`, 'the retry is sent');
    await f.complete(d);
    const e = await f.execution(jobId, d);
    assert.deepEqual([e.status, e.attempt, e.details.retryNotSent, e.details.lateSuccess], ['SUCCEEDED', 2, undefined, undefined]);
    assert.equal(lateNote(e), undefined, "a SUCCEEDED row does not say 'then reported SUCCESS'");
  });
});
