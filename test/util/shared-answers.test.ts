/**
 * SharedAnswers: one computation per key shared by concurrent callers, kept while fresh,
 * not kept when it failed, bounded in keys. Stamps are plain numbers and strings: no clock.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SharedAnswers } from '../../src/util/shared-answers.ts';

/** A computation whose answer the test gives (`resolve`, `reject`), counting how often it was made. */
function pending() {
  const made: { resolve: (v: string) => void; reject: (e: Error) => void }[] = [];
  const compute = () => new Promise<string>((resolve, reject) => made.push({ resolve, reject }));
  return { compute, made };
}

describe('SharedAnswers', () => {
  it('shares one computation between concurrent callers of a key, and keeps its answer while fresh', async () => {
    const answers = new SharedAnswers<string, string, number>({ max: 10, fresh: (at, now) => now - at <= 15 });
    const { compute, made } = pending();
    const a = answers.get('k', 0, compute);
    const b = answers.get('k', 5, compute);
    assert.equal(made.length, 1, 'one computation for both');
    made[0]!.resolve('first');
    assert.deepEqual(await Promise.all([a, b]), ['first', 'first'], 'both get its answer');
    assert.equal(await answers.get('k', 15, compute), 'first', 'still fresh at its age limit');
    assert.equal(made.length, 1);
    const c = answers.get('k', 16, compute);
    assert.equal(made.length, 2, 'computed again once stale');
    made[1]!.resolve('second');
    assert.equal(await c, 'second');
    const other = answers.get('other', 16, compute);
    assert.equal(made.length, 3, 'another key is its own computation');
    made[2]!.resolve('o');
    assert.equal(await other, 'o');
  });

  it('answers by a fingerprint: computed again when it differs', async () => {
    const answers = new SharedAnswers<string, string, string>({ max: 10, fresh: (kept, now) => kept === now });
    const { compute, made } = pending();
    const a = answers.get('job/60', 'RUNNING|1', compute);
    made[0]!.resolve('chart 1');
    assert.equal(await a, 'chart 1');
    assert.equal(await answers.get('job/60', 'RUNNING|1', compute), 'chart 1', 'same fingerprint: kept');
    const b = answers.get('job/60', 'RUNNING|2', compute);
    assert.equal(made.length, 2, 'a new fingerprint: computed again');
    made[1]!.resolve('chart 2');
    assert.equal(await b, 'chart 2');
  });

  it('does not keep a failure, and a failure does not drop the newer answer made meanwhile', async () => {
    const answers = new SharedAnswers<string, string, string>({ max: 10, fresh: (kept, now) => kept === now });
    const { compute, made } = pending();
    const failing = answers.get('k', 'v1', compute);
    const newer = answers.get('k', 'v2', compute);
    made[0]!.reject(new Error('store unavailable'));
    await assert.rejects(failing, /store unavailable/, 'the callers of the failed one get its error');
    made[1]!.resolve('v2 answer');
    assert.equal(await newer, 'v2 answer');
    assert.equal(await answers.get('k', 'v2', compute), 'v2 answer', 'the newer answer is still kept');
    assert.equal(made.length, 2);
    const again = answers.get('k', 'v3', compute);
    made[2]!.reject(new Error('again'));
    await assert.rejects(again, /again/);
    const retried = answers.get('k', 'v3', compute);
    assert.equal(made.length, 4, 'after a failure the same request computes again');
    made[3]!.resolve('ok');
    assert.equal(await retried, 'ok');
  });

  it('keeps at most max keys, dropping the one computed longest ago', async () => {
    const answers = new SharedAnswers<string, string, number>({ max: 2, fresh: () => true });
    let computed = 0;
    const compute = async () => String(++computed);
    await answers.get('a', 0, compute);
    await answers.get('b', 0, compute);
    await answers.get('c', 0, compute);
    assert.equal(computed, 3);
    assert.equal(await answers.get('b', 0, compute), '2', 'b kept');
    assert.equal(await answers.get('c', 0, compute), '3', 'c kept');
    assert.equal(await answers.get('a', 0, compute), '4', 'a dropped: computed again');
  });
  it('with shareRunning, shares a computation running longer than an answer is kept; with stampOnEnd, keeps it from its end (the health findings)', async () => {
    let clock = 1_000;
    let runs = 0;
    let release!: () => void;
    const answers = new SharedAnswers<'k', number, number>({ max: 1, shareRunning: true, stampOnEnd: () => clock, fresh: (endedAt, at) => at - endedAt < 30_000 });
    const compute = async () => {
      runs++;
      await new Promise<void>((r) => (release = r));
      return runs;
    };
    const a = answers.get('k', clock, compute);
    const b = answers.get('k', clock, compute);
    clock += 60_000; // longer than an answer is kept: still shared while it runs
    const c = answers.get('k', clock, compute);
    await Promise.resolve();
    release();
    assert.deepEqual(await Promise.all([a, b, c]), [1, 1, 1], 'one computation for the three');
    clock += 29_999;
    assert.equal(await answers.get('k', clock, compute), 1, 'kept 30 s after it ended, not after it began');
    clock += 1;
    const d = answers.get('k', clock, compute);
    await Promise.resolve();
    release();
    assert.equal(await d, 2, 'computed again once its time is up');
  });

  it('without shareRunning, a running computation whose stamp is no longer fresh is not shared (a job chart whose counts changed)', async () => {
    let release!: (v: string) => void;
    const answers = new SharedAnswers<string, string, string>({ max: 10, fresh: (kept, now) => kept === now });
    let runs = 0;
    const compute = () => {
      runs++;
      return new Promise<string>((r) => (release = r));
    };
    void answers.get('k', 'v1', compute);
    void answers.get('k', 'v2', compute);
    assert.equal(runs, 2, 'the changed fingerprint computes again');
    release('x');
  });
});
