/**
 * A job stopped as a timed-out execution's retry is queued: the retry, committed after the
 * stop's pass over the job's executions, is taken back (retry-policy.ts), and the execution
 * ends as its timed-out attempt. What that attempt still had going stays with it: the device's
 * answer to its stay, and a retract that failed for now (tried again a few seconds later).
 *
 * The stop is another instance's (its first write, the job's status, as stopJob commits it),
 * committed between the retry's look at the job and the write that queues it: the embedded
 * store group-commits writes at the next turn of the event loop and reads at once, so a write
 * begun as the stay is written (or as the TIMED_OUT commits) is committed with the retry's,
 * after the retry's look. Real parts (SQLite store, replica, tracker, engine), fake clock.
 */
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { progressOf } from '../../src/jobs/rollout-engine.ts';
import { RETRACT_RETRY_MS } from '../../src/jobs/pending-retract.ts';
import type { JsonObject } from '../../src/protocol/json.ts';
import type { ExecutionRecord } from '../../src/store/state-store.ts';
import { startRolloutFixture, type RolloutFixture } from './rollout-fixture.ts';

describe('a retry taken back because its job stopped as it was queued', () => {
  let f: RolloutFixture | undefined;
  afterEach(async () => {
    await f?.close();
    f = undefined;
  });

  /** A paused job of one device (60 s timeout, one retry) whose command went out; `writes` lists the execution's writes. */
  const pausedJob = async (fixture: RolloutFixture) => {
    const [d, other] = await fixture.fleet('t', 2);
    const jobId = (await fixture.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { devices: [d!] }, timeouts: { inProgressSeconds: 60 }, retries: { limit: 1 } })).job.jobId;
    assert.equal((await fixture.desired(d!))?.jobId, jobId, 'the first attempt was sent');
    await fixture.rollouts.jobs.pause(jobId);
    const writes: ExecutionRecord[] = [];
    fixture.events.on('execution.changed', ({ current }) => {
      if (current.jobId === jobId && current.deviceId === d) writes.push(current);
    });
    const job = await fixture.job(jobId);
    /** Another instance's cancel commits (begun now, committed at the next group commit). */
    const cancelElsewhere = () => void fixture.rollouts.engine.saveJob(job, 'CANCELED', { ...progressOf(job), finishedAt: fixture.clock.now }, fixture.clock.now);
    const queuedThenTakenBack = () => {
      const retry = writes.findIndex((w) => w.status === 'QUEUED' && w.attempt === 2);
      assert.ok(retry >= 0, 'the retry was queued');
      assert.ok(writes.slice(retry).some((w) => w.status === 'TIMED_OUT' && w.attempt === undefined), 'and taken back');
      return writes.slice(retry);
    };
    return { d: d!, other: other!, jobId, writes, cancelElsewhere, queuedThenTakenBack };
  };

  it("keeps the device's answer to the stay, filed on the retry just before it was taken back, with the attempt that timed out", async () => {
    const fx = (f = await startRolloutFixture({ builds: ['1.0.0', '2.0.0'] }));
    const { d, jobId, cancelElsewhere, queuedThenTakenBack } = await pausedJob(fx);
    let canceled = false;
    fx.events.on('shadow.updated', ({ current }) => {
      const software = current.state.desired?.software as JsonObject | null | undefined;
      if (current.deviceId === d && software?.jobId === `${jobId}.cancel` && !canceled) {
        canceled = true;
        cancelElsewhere();
      }
    });
    // the device answers the stay (it runs 1.0.0) as the retry is committed: the tracker files
    // it on the retry's record of attempt 1 (details.attempts), before the retry is taken back
    const answer = { name: 'fw', version: '1.0.0', jobId: `${jobId}.cancel`, status: 'SUCCESS' };
    let answered = false;
    fx.events.on('execution.changed', ({ current }) => {
      if (current.jobId === jobId && current.status === 'QUEUED' && current.attempt === 2 && !answered) {
        answered = true;
        void fx.tracker.apply(d, answer);
      }
    });
    fx.advance(61_000);
    await fx.tick();
    assert.equal((await fx.job(jobId)).status, 'CANCELED');
    const filed = queuedThenTakenBack().find((w) => w.status === 'QUEUED' && (w.details.attempts as JsonObject[] | undefined)?.[0]?.control !== undefined);
    assert.ok(filed, 'the answer was filed on the retry before the take-back (the window this test is about)');
    const e = await fx.execution(jobId, d);
    assert.deepEqual([e.status, e.attempt, e.details.attempts], ['TIMED_OUT', undefined, undefined], 'the execution ends as its timed-out attempt');
    assert.deepEqual(e.details.control, { jobId: `${jobId}.cancel`, status: 'SUCCESS', version: '1.0.0', at: fx.clock.now }, "the device's answer to the stay is kept");
  });

  it('a retract that failed for now is still tried again a few seconds later', async () => {
    const fx = (f = await startRolloutFixture({ builds: ['1.0.0', '2.0.0'], maxPending: 1 }));
    const { d, other, jobId, cancelElsewhere, queuedThenTakenBack } = await pausedJob(fx);
    let canceled = false;
    fx.events.on('execution.changed', ({ current }) => {
      if (current.jobId === jobId && current.status === 'TIMED_OUT' && !canceled) {
        canceled = true;
        cancelElsewhere();
      }
    });
    // the replica is busy (another device's update holds its only place): the retract gets 429
    const release = fx.occupyReplica(other);
    fx.advance(61_000);
    await fx.tick();
    assert.equal((await fx.job(jobId)).status, 'CANCELED');
    queuedThenTakenBack();
    const e = await fx.execution(jobId, d);
    assert.deepEqual([e.status, e.attempt], ['TIMED_OUT', undefined], 'the execution ends as its timed-out attempt');
    assert.equal((await fx.desired(d))?.jobId, jobId, 'not taken back yet: the replica refused it');
    assert.notEqual(e.dueAt, undefined, 'still due: its command is not taken back');
    await release();
    fx.advance(RETRACT_RETRY_MS);
    await fx.tick();
    const asked = await fx.desired(d);
    assert.deepEqual([asked?.jobId, asked?.version], [`${jobId}.cancel`, '1.0.0'], 'the device, coming back, is asked to stay on 1.0.0');
    assert.equal((await fx.execution(jobId, d)).dueAt, undefined, 'done with: nothing due');
  });
});
