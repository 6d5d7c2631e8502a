/** KeptAnswer (health/kept-answer.ts): one computation shared, kept for its time, a failure not kept; its clock moved by the test. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { KeptAnswer } from '../../src/health/kept-answer.ts';

describe('KeptAnswer', () => {
  it('shares one computation between concurrent callers and answers from it until its time is up', async () => {
    let clock = 1_000;
    let runs = 0;
    let release!: () => void;
    const kept = new KeptAnswer(async () => {
      runs++;
      await new Promise<void>((r) => (release = r));
      return runs;
    }, 30_000, () => clock);
    const a = kept.get();
    const b = kept.get();
    clock += 60_000; // a computation longer than the time kept is still shared while it runs
    const c = kept.get();
    await Promise.resolve();
    release();
    assert.deepEqual(await Promise.all([a, b, c]), [1, 1, 1], 'one computation for the three');
    clock += 29_999;
    assert.equal(await kept.get(), 1, 'kept 30 s after it ended');
    clock += 1;
    const d = kept.get();
    await Promise.resolve();
    release();
    assert.equal(await d, 2, 'computed again once the time is up');
  });

  it('does not keep a failure', async () => {
    let fail = true;
    const kept = new KeptAnswer(async () => {
      if (fail) throw new Error('store down');
      return 'ok';
    }, 30_000, () => 0);
    await assert.rejects(kept.get(), /store down/, 'the failure is answered');
    fail = false;
    assert.equal(await kept.get(), 'ok', 'the next request computes again');
  });
});
