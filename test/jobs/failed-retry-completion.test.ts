/**
 * A device's FAILURE, with a retry allowed, in the last execution of a job still running: the
 * job must not complete between the FAILED and the retry that follows it. The engine's tick
 * here is begun as the FAILED is announced, before the retry is written (the embedded store
 * reads at once and group-commits writes at the next turn of the event loop), as the early
 * tick an outcome sets off, or another instance's, may run. A process that dies between the
 * two commits (the FAILED written as the tracker writes it, no retry) is caught up too: by
 * the snapshot job's next tick, and for a continuous job, whose last wave is never judged, by
 * the next start. Real parts, fake clock.
 */
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import { mutateExecution } from '../../src/jobs/execution-writer.ts';
import type { ExecutionRecord, Page } from '../../src/store/state-store.ts';
import { startRolloutFixture, type RolloutFixture } from './rollout-fixture.ts';

describe('a failed execution whose retry is allowed', () => {
  let f: RolloutFixture | undefined;
  afterEach(async () => {
    await f?.close();
    f = undefined;
  });

  it('is retried even when the engine looks at the job between the FAILED and the retry', async () => {
    const fx = (f = await startRolloutFixture({ builds: ['1.0.0', '2.0.0'] }));
    const [d] = await fx.fleet('r', 1);
    const jobId = (await fx.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { devices: [d!] }, retries: { limit: 1 } })).job.jobId;
    assert.equal((await fx.desired(d!))?.jobId, jobId, 'the first attempt was sent');
    let ticked: Promise<void> | undefined;
    fx.events.on('execution.changed', ({ current }) => {
      if (current.jobId === jobId && current.status === 'FAILED' && !ticked) ticked = fx.rollouts.engine.tick();
    });
    await fx.complete(d!, 'FAILURE');
    await ticked;
    await fx.tick();
    const e = await fx.execution(jobId, d!);
    assert.equal(ticked !== undefined, true, 'the tick was begun between the two');
    assert.deepEqual([e.status, e.attempt], ['QUEUED', 2], `retried, not left FAILED (job ${(await fx.job(jobId)).status})`);
    assert.equal((await fx.job(jobId)).status, 'IN_PROGRESS');
  });

  it('does not abort the job on a failure whose retry is on its way (the abort rule looks between the FAILED and the retry)', async () => {
    const fx = (f = await startRolloutFixture({ builds: ['1.0.0', '2.0.0'] }));
    const [d, other] = await fx.fleet('a', 2);
    const abort = { rules: [{ type: 'ANY' as const, thresholdPercent: 50, minFinished: 1 }] };
    const jobId = (await fx.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { devices: [d!, other!] }, retries: { limit: 1 }, abort })).job.jobId;
    let ticked: Promise<void> | undefined;
    fx.events.on('execution.changed', ({ current }) => {
      if (current.jobId === jobId && current.status === 'FAILED' && !ticked) ticked = fx.rollouts.engine.tick();
    });
    await fx.complete(d!, 'FAILURE');
    await ticked;
    assert.equal(ticked !== undefined, true, 'the tick was begun between the two');
    assert.equal((await fx.job(jobId)).status, 'IN_PROGRESS', 'a failure a retry is working on does not count');
    assert.deepEqual([(await fx.execution(jobId, d!)).status, (await fx.execution(jobId, d!)).attempt], ['QUEUED', 2]);
    // the retry fails too, with no retry left: that failure counts, and aborts the job
    await fx.tick();
    await fx.complete(d!, 'FAILURE');
    await fx.tick();
    assert.equal((await fx.job(jobId)).status, 'ABORTED');
  });

  /** The device reports its attempt's FAILURE, recorded FAILED as the tracker writes it; the process dies before the retry. */
  const failedThenCrash = async (fx: RolloutFixture, jobId: string, d: string) => {
    await mutateExecution(fx, { jobId, deviceId: d }, (cur) => ({ status: 'FAILED', details: { ...cur.details, agentStatus: 'FAILURE', error: 'health check failed' }, dueAt: undefined }), fx.clock.now);
  };

  it('is retried by the next tick when the process died between the FAILED and the retry', async () => {
    const fx = (f = await startRolloutFixture({ builds: ['1.0.0', '2.0.0'] }));
    const [d] = await fx.fleet('c', 1);
    const jobId = (await fx.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { devices: [d!] }, retries: { limit: 1 } })).job.jobId;
    await failedThenCrash(fx, jobId, d!);
    await fx.tick();
    await fx.tick();
    assert.equal((await fx.job(jobId)).status, 'IN_PROGRESS', 'not completed without the retry');
    const e = await fx.execution(jobId, d!);
    assert.equal(e.attempt, 2, `retried (${e.status})`);
    assert.equal((await fx.desired(d!))?.jobId, `${jobId}.2`, 'the retry is sent');
    await fx.complete(d!);
    await fx.tick();
    assert.deepEqual([(await fx.execution(jobId, d!)).status, (await fx.job(jobId)).status], ['SUCCEEDED', 'COMPLETED']);
  });

  it("of a continuous job is retried at the next start when the process died between the FAILED and the retry", async () => {
    const fx = (f = await startRolloutFixture({ builds: ['1.0.0', '2.0.0'] }));
    const [d] = await fx.fleet('k', 1, '1.0.0', { tags: ['grp'] });
    const jobId = (await fx.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { query: 'tags = grp' }, type: 'continuous', retries: { limit: 1 } })).job.jobId;
    await fx.tick();
    assert.equal((await fx.desired(d!))?.jobId, jobId, 'the first attempt was sent');
    await failedThenCrash(fx, jobId, d!);
    await fx.restart();
    await fx.tick();
    const e = await fx.execution(jobId, d!);
    assert.equal(e.attempt, 2, `retried (${e.status})`);
    assert.equal((await fx.desired(d!))?.jobId, `${jobId}.2`, 'the retry is sent');
  });

  /**
   * Counts the pages of FAILED executions read from the fixture's store (its own methods,
   * wrapped), the rows they held, and how many pages came after the event loop had a turn
   * since the one before.
   */
  const countFailedReads = (fx: RolloutFixture) => {
    const seen = { pages: 0, rows: 0, afterATurn: 0 };
    let turned = false;
    const counted = async (read: Promise<Page<ExecutionRecord>>) => {
      if (seen.pages > 0 && turned) seen.afterATurn++;
      seen.pages++;
      turned = false;
      setImmediate(() => (turned = true));
      const page = await read;
      seen.rows += page.items.length;
      return page;
    };
    const list = fx.store.listJobExecutions.bind(fx.store);
    fx.store.listJobExecutions = (jobId, options) => (options.status?.includes('FAILED') ? counted(list(jobId, options)) : list(jobId, options));
    const below = fx.store.listFailedBelowAttempt.bind(fx.store);
    fx.store.listFailedBelowAttempt = (jobId, options) => counted(below(jobId, options));
    return seen;
  };

  it("of a snapshot job is left to the wave's end: a start reads no FAILED row", async () => {
    const fx = (f = await startRolloutFixture({ builds: ['1.0.0', '2.0.0'] }));
    const [d, other] = await fx.fleet('s', 2);
    const jobId = (await fx.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { devices: [d!, other!] }, retries: { limit: 1 } })).job.jobId;
    await failedThenCrash(fx, jobId, d!);
    const reads = countFailedReads(fx);
    await fx.restart();
    assert.equal(reads.pages, 0, 'a FAILED page was read at start');
    // the wave ends: the retry owed is queued before it is judged
    await fx.complete(other!);
    await fx.tick();
    assert.equal((await fx.execution(jobId, d!)).attempt, 2);
    await fx.tick();
    assert.equal((await fx.desired(d!))?.jobId, `${jobId}.2`, 'the retry is sent');
    assert.equal((await fx.job(jobId)).status, 'IN_PROGRESS');
  });

  it('of a continuous job is looked for at start a page at a time, letting the event loop turn between pages', async () => {
    const fx = (f = await startRolloutFixture({ builds: ['1.0.0', '2.0.0'] }));
    const [d] = await fx.fleet('p', 1, '1.0.0', { tags: ['grp'] });
    const jobId = (await fx.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { query: 'tags = grp' }, type: 'continuous', retries: { limit: 1 } })).job.jobId;
    await fx.tick();
    // 1,200 failed devices below the limit, listed before d, since deleted (owed no retry, but
    // only retryIfAllowed knows it): three pages of FAILED
    const at = fx.clock.now;
    await fx.store.addExecutions(Array.from({ length: 1200 }, (_, i) => ({ jobId, deviceId: `gone${String(i).padStart(4, '0')}`, status: 'FAILED' as const, details: { deviceDeletedAt: at }, queuedAt: at, updatedAt: at, version: 1, attempt: 1 })));
    await failedThenCrash(fx, jobId, d!);
    const reads = countFailedReads(fx);
    await fx.restart();
    assert.deepEqual(reads, { pages: 3, rows: 1201, afterATurn: 2 }, 'pages read with no turn of the event loop between them');
    assert.equal((await fx.execution(jobId, d!)).attempt, 2, 'the retry owed is queued');
  });

  it('of a continuous job is looked for at start without reading the failed executions at the retry limit', async () => {
    const fx = (f = await startRolloutFixture({ builds: ['1.0.0', '2.0.0'] }));
    const [d] = await fx.fleet('q', 1, '1.0.0', { tags: ['grp'] });
    const jobId = (await fx.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { query: 'tags = grp' }, type: 'continuous', retries: { limit: 1 } })).job.jobId;
    await fx.tick();
    // 1,200 devices that failed their last attempt allowed (2 of a limit of 1 retry): owed nothing
    const at = fx.clock.now;
    await fx.store.addExecutions(Array.from({ length: 1200 }, (_, i) => ({ jobId, deviceId: `done${String(i).padStart(4, '0')}`, status: 'FAILED' as const, details: {}, queuedAt: at, updatedAt: at, version: 1, attempt: 2 })));
    await failedThenCrash(fx, jobId, d!);
    const reads = countFailedReads(fx);
    await fx.restart();
    assert.deepEqual(reads, { pages: 1, rows: 1, afterATurn: 0 }, 'only the execution below the limit is read');
    assert.equal((await fx.execution(jobId, d!)).attempt, 2, 'the retry owed is queued');
    const done = await fx.execution(jobId, 'done0000');
    assert.deepEqual([done.status, done.attempt], ['FAILED', 2], 'none for those at the limit');
  });

  it('of a snapshot job is queued at the wave\'s end for a device below the limit, and none for one at it', async () => {
    const fx = (f = await startRolloutFixture({ builds: ['1.0.0', '2.0.0'] }));
    const [d, spent, other] = await fx.fleet('w', 3);
    const jobId = (await fx.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { devices: [d!, spent!, other!] }, retries: { limit: 1 } })).job.jobId;
    await failedThenCrash(fx, jobId, d!);
    // spent: its second attempt, the last allowed, failed (written as a crash leaves it: no retry either way)
    await mutateExecution(fx, { jobId, deviceId: spent! }, (cur) => ({ status: 'FAILED', attempt: 2, details: { ...cur.details, error: 'health check failed' }, dueAt: undefined }), fx.clock.now);
    const reads = countFailedReads(fx);
    await fx.complete(other!);
    await fx.tick();
    assert.equal(reads.rows, 1, 'the execution at the limit is not read');
    assert.deepEqual([(await fx.execution(jobId, d!)).status, (await fx.execution(jobId, d!)).attempt], ['QUEUED', 2]);
    assert.deepEqual([(await fx.execution(jobId, spent!)).status, (await fx.execution(jobId, spent!)).attempt], ['FAILED', 2]);
  });

  it('is not retried past the limit: the job completes', async () => {
    const fx = (f = await startRolloutFixture({ builds: ['1.0.0', '2.0.0'] }));
    const [d] = await fx.fleet('l', 1);
    const jobId = (await fx.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { devices: [d!] }, retries: { limit: 1 } })).job.jobId;
    await fx.complete(d!, 'FAILURE');
    await fx.tick();
    assert.equal((await fx.desired(d!))?.jobId, `${jobId}.2`);
    await fx.complete(d!, 'FAILURE');
    await fx.tick();
    await fx.tick();
    const e = await fx.execution(jobId, d!);
    assert.deepEqual([e.status, e.attempt, (await fx.job(jobId)).status], ['FAILED', 2, 'COMPLETED']);
  });
});
