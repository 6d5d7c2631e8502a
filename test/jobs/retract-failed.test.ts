/**
 * A timed-out attempt's command whose retract fails for now (the replica answers 429: its
 * requests in flight are at their bound) while the attempt's retry is queued: it is taken back
 * at a later tick, whatever becomes of the unsent retry, instead of staying desired until the
 * retry is sent (for good, if the job stops first). Real parts (SQLite store, replica, tracker,
 * engine) with a fake clock; the replica is kept busy by another device's update whose answers
 * the broker connection has not taken yet (the fixture's bus, held).
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { RETRACT_RETRY_MS } from '../../src/jobs/pending-retract.ts';
import type { JsonObject } from '../../src/protocol/json.ts';
import { assertStayThenRetry, startRolloutFixture, type RolloutFixture } from './rollout-fixture.ts';

describe('a timed-out command the replica cannot take back for now, with a retry queued', () => {
  let f: RolloutFixture;
  beforeEach(async () => {
    f = await startRolloutFixture({ builds: ['1.0.0', '2.0.0'], maxPending: 1 });
  });
  afterEach(() => f.close());

  /**
   * A paused job of one device (60 s timeout, one retry) whose attempt times out while another
   * device's update holds the replica's only place (its answers not yet published): the retract
   * is refused with 429, the retry queued unsent.
   */
  const timedOutWhileReplicaBusy = async () => {
    const [d, busy] = await f.fleet('t', 2);
    const jobId = (await f.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { devices: [d!] }, timeouts: { inProgressSeconds: 60 }, retries: { limit: 1 } })).job.jobId;
    assert.equal((await f.desired(d!))?.jobId, jobId, 'the first attempt was sent');
    await f.rollouts.jobs.pause(jobId);
    const release = f.occupyReplica(busy!);
    f.advance(61_000);
    await f.tick();
    const e = await f.execution(jobId, d!);
    assert.deepEqual([e.status, e.attempt, e.dispatchedAt], ['QUEUED', 2, undefined], 'the retry is queued, not sent');
    assert.equal((await f.desired(d!))?.jobId, jobId, 'the replica refused the retract: the device is still asked for the timed-out attempt');
    // still busy when it is tried again: refused again, tried again later
    f.advance(RETRACT_RETRY_MS);
    await f.tick();
    assert.equal((await f.desired(d!))?.jobId, jobId);
    return {
      d: d!,
      jobId,
      async free() {
        await release();
      },
    };
  };

  it('is taken back at a tick once the replica takes it, while the retry waits for the paused job', async () => {
    const { d, jobId, free } = await timedOutWhileReplicaBusy();
    await free();
    f.advance(RETRACT_RETRY_MS);
    await f.tick();
    const e = await f.execution(jobId, d);
    assert.deepEqual([e.status, e.attempt, e.dueAt, e.details.retractPending], ['QUEUED', 2, undefined, undefined], 'the retry still waits; nothing is owed or due');
    await assertStayThenRetry(f, jobId, d, 'told to stay on what it runs while the job is paused, not left to install the timed-out attempt');
  });

  it('canceled before the retry is sent: the command is still taken back once the replica takes it', async () => {
    const { d, jobId, free } = await timedOutWhileReplicaBusy();
    await f.rollouts.jobs.cancel(jobId);
    assert.equal((await f.execution(jobId, d)).status, 'CANCELED', 'the unsent retry ends with the job');
    assert.equal((await f.desired(d))?.jobId, jobId, 'the cancel tells the device nothing of a retry it never got');
    await free();
    f.advance(RETRACT_RETRY_MS);
    await f.tick();
    const asked = await f.desired(d);
    assert.deepEqual([asked?.jobId, asked?.version], [`${jobId}.cancel`, '1.0.0'], 'the device, coming back, is asked to stay on 1.0.0');
    const e = await f.execution(jobId, d);
    assert.deepEqual([e.status, e.attempt, e.dueAt, e.details.retractPending], ['CANCELED', 2, undefined, undefined], 'done with: nothing due');
    // done once: a later tick writes nothing
    const version = (await f.store.getShadow(d, ''))?.version;
    f.advance(RETRACT_RETRY_MS);
    await f.tick();
    assert.equal((await f.store.getShadow(d, ''))?.version, version, 'the shadow is not written again');
    // the agent runs what it is asked: the stay
    await f.complete(d, 'SUCCESS', '1.0.0');
    assert.equal(((await f.store.getShadow(d, ''))?.state.reported?.software as JsonObject | undefined)?.version, '1.0.0');
  });

  it("the device then reports the timed-out attempt's SUCCESS and the retry ends SUCCEEDED unsent: nothing is taken back from it", async () => {
    const { d, jobId, free } = await timedOutWhileReplicaBusy();
    await free();
    // back online before the retract is tried again: it had the build (offline, its reports held back)
    await f.report(d, { name: 'fw', version: '2.0.0', jobId, status: 'SUCCESS' });
    await f.rollouts.jobs.resume(jobId);
    f.advance(1_000); // the retract not yet due again: the retry's turn comes first
    await f.tick();
    const e = await f.execution(jobId, d);
    assert.deepEqual([e.status, e.attempt, e.dispatchedAt, (e.details.retryNotSent as JsonObject | undefined)?.attempt], ['SUCCEEDED', 2, undefined, 1], 'ended at its turn, nothing sent');
    assert.deepEqual([e.dueAt, e.details.retractPending], [undefined, undefined], 'the command the device finished is owed no take-back: nothing due');
    // later ticks (past the retract's retry) leave the device on the command it finished
    const version = (await f.store.getShadow(d, ''))?.version;
    f.advance(RETRACT_RETRY_MS);
    await f.tick();
    f.advance(RETRACT_RETRY_MS);
    await f.tick();
    const asked = await f.desired(d);
    assert.deepEqual([asked?.jobId, asked?.version], [jobId, '2.0.0'], 'still asked for the command it finished, not told to call it off');
    assert.equal((await f.store.getShadow(d, ''))?.version, version, 'the shadow is not written again');
    assert.equal((await f.job(jobId)).status, 'COMPLETED');
  });

  it("the device reports the timed-out attempt's SUCCESS and the retract comes due before the retry's turn: nothing is taken back from it", async () => {
    const { d, jobId, free } = await timedOutWhileReplicaBusy();
    await free();
    await f.report(d, { name: 'fw', version: '2.0.0', jobId, status: 'SUCCESS' });
    const version = (await f.store.getShadow(d, ''))?.version;
    // the job still paused: the owed retract's turn comes first
    f.advance(RETRACT_RETRY_MS);
    await f.tick();
    let asked = await f.desired(d);
    assert.deepEqual([asked?.jobId, asked?.version], [jobId, '2.0.0'], 'still asked for the command it finished, not told to call it off');
    assert.equal((await f.store.getShadow(d, ''))?.version, version, 'the shadow is not written');
    let e = await f.execution(jobId, d);
    assert.deepEqual([e.status, e.attempt, e.dueAt, e.details.retractPending], ['QUEUED', 2, undefined, undefined], 'the mark ends: the device finished that command');
    await f.rollouts.jobs.resume(jobId);
    await f.tick();
    e = await f.execution(jobId, d);
    assert.deepEqual([e.status, e.attempt, e.dispatchedAt], ['SUCCEEDED', 2, undefined], 'ended at its turn, nothing sent');
    f.advance(1_000);
    await f.tick(); // the job completes a tick behind its last execution
    asked = await f.desired(d);
    assert.deepEqual([asked?.jobId, asked?.version], [jobId, '2.0.0']);
    assert.equal((await f.store.getShadow(d, ''))?.version, version, 'the shadow is not written');
    assert.equal((await f.job(jobId)).status, 'COMPLETED');
  });
});
