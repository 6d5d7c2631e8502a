/**
 * A job deleted while a read or write of it is in flight is not remembered once it answers
 * (a reviewer's find on e403b0b and fae3d92): the tracker's jobIdentity cache and the
 * execution writer's cache forget a job at `job.deleted`, but a store call sent before the
 * event and answered after it put the deleted job (or its execution) back, to stay until
 * 1,000 newer jobs (50,000 newer writes) pushed it out.
 *
 * The rollout parts on a real SQLite store (rollout-fixture.ts); the store call is held by a
 * gate after it answered, so the deletion lands between its answer and its use, every time.
 */
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { rememberedExecutions } from '../../src/jobs/execution-writer.ts';
import type { StateStore } from '../../src/store/state-store.ts';
import { startRolloutFixture, type RolloutFixture } from './rollout-fixture.ts';

/**
 * Holds the next call of `method` on `store` once it has answered: `entered` resolves then, and the
 * answer is handed on when `release` is called. Later calls pass.
 */
function holdNext<K extends 'getJob' | 'updateExecution'>(store: StateStore, method: K): { entered: Promise<void>; release: () => void } {
  const real = (store[method] as (...args: unknown[]) => Promise<unknown>).bind(store);
  let entered!: () => void;
  const enteredP = new Promise<void>((resolve) => (entered = resolve));
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  let armed = true;
  (store as unknown as Record<string, unknown>)[method] = async (...args: unknown[]) => {
    const answer = await real(...args);
    if (!armed) return answer;
    armed = false;
    entered();
    await gate;
    return answer;
  };
  return { entered: enteredP, release };
}

describe('a job deleted while a call about it is in flight', () => {
  let f: RolloutFixture | undefined;
  let release = () => {};
  afterEach(async () => {
    release();
    await f?.close();
    f = undefined;
  });

  it("is not cached by the tracker's jobIdentity when the read answers after the deletion", async () => {
    f = await startRolloutFixture({ builds: ['1.0.0', '2.0.0'] });
    const ids = await f.fleet('d', 1);
    const { jobId } = (await f.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { devices: ids } })).job;
    await f.rollouts.jobs.cancel(jobId); // nothing sent yet: finished at once, deletable
    // a device's report misses the cache and reads the job; the read answers before the
    // deletion commits and is held until after the deletion's event
    const held = holdNext(f.store, 'getJob');
    release = held.release;
    const reading = f.tracker.jobIdentity(jobId);
    await held.entered;
    await f.rollouts.jobs.delete(jobId);
    held.release();
    assert.equal((await reading)?.jobId, jobId, 'the read in flight answers with what it read');
    assert.equal(await f.tracker.jobIdentity(jobId), undefined, 'the deleted job is not given afterwards');
  });

  it("is not remembered by the execution writer when a write of its execution answers after the deletion", async () => {
    f = await startRolloutFixture({ builds: ['1.0.0', '2.0.0'] });
    const [d] = await f.fleet('d', 1);
    const { jobId } = (await f.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { devices: [d!] } })).job;
    await f.tick();
    const base = { name: 'fw', version: '1.0.0', jobId };
    await f.report(d!, { ...base, status: 'DOWNLOADING', progress: 0.5 });
    await f.report(d!, { ...base, status: 'INSTALLING' });
    // the device's SUCCESS is written (committed), and the write's answer held: meanwhile the
    // operator cancels the job (nothing left to stop) and deletes it
    const held = holdNext(f.store, 'updateExecution');
    release = held.release;
    const reporting = f.report(d!, { ...base, version: '2.0.0', status: 'SUCCESS' });
    await held.entered;
    assert.equal((await f.store.getExecution(jobId, d!))?.status, 'SUCCEEDED', 'the write committed');
    await f.rollouts.jobs.cancel(jobId);
    await f.rollouts.jobs.delete(jobId);
    assert.equal(rememberedExecutions(f.store, jobId), 0);
    held.release();
    await reporting;
    assert.equal(rememberedExecutions(f.store, jobId), 0, "the deleted job's execution is not remembered");
  });
});
