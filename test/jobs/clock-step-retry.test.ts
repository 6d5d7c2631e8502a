/**
 * A step of the server's clock whose work fails (the database dropped with it, as a resumed
 * machine's connections do) is applied at a later tick, not lost. The rollout parts on a real
 * SQLite store with a fake clock and, beside it, a fake monotonic clock the step does not move;
 * one call of the real store fails (`failOnce`) in the tick that sees the step.
 */
import assert from 'node:assert/strict';
import { afterEach, describe, it } from 'node:test';
import type { StateStore } from '../../src/store/state-store.ts';
import { createLogger } from '../../src/util/logger.ts';
import { startRolloutFixture, type RolloutFixture } from './rollout-fixture.ts';

const HOUR = 3_600_000;

const DROPPED = (): Error => Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' });
/** Not an outage of the database: the rates do not leave the failed tick's time out (`skipOutage`). */
const TIMEOUT = (): Error => Object.assign(new Error('canceling statement due to statement timeout'), { code: '57014' });

/**
 * The next call of the store's `method` fails (a dropped connection, or `error`); `afterCommit`:
 * the call is made first (its answer lost).
 */
function failOnce(store: StateStore, method: 'listDueExecutions' | 'listJobs' | 'updateJob' | 'updateExecution', options: { afterCommit?: boolean; error?: () => Error } = {}): { failed: () => boolean } {
  const { afterCommit = false, error = DROPPED } = options;
  const target = store as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
  const original = target[method]!;
  let failed = false;
  target[method] = async function (this: unknown, ...args: unknown[]) {
    if (failed) return original.apply(store, args);
    failed = true;
    if (afterCommit) await original.apply(store, args);
    throw error();
  };
  return { failed: () => failed };
}

describe('a step of the server clock whose work fails', () => {
  let f: RolloutFixture;
  const lines: string[] = [];
  const mono = { now: 1_000 };
  /** Time passes on both clocks. */
  const pass = (ms: number) => {
    f.advance(ms);
    mono.now += ms;
  };
  /** The wall clock steps by `ms` while 250 ms pass. */
  const step = (ms: number) => {
    f.advance(ms + 250);
    mono.now += 250;
  };
  const start = async () => {
    lines.length = 0;
    f = await startRolloutFixture({ builds: ['2.0.0'], monotonic: () => mono.now, logger: createLogger({ level: 'info', write: (l) => lines.push(l) }) });
  };
  afterEach(() => f.close());

  it('forward: the deadlines it passed over are moved at the next tick, not timed out', async () => {
    await start();
    const ids = await f.fleet('d', 5);
    const jobId = (await f.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { devices: ids }, timeouts: { inProgressSeconds: 7200 } })).job.jobId;
    await f.tick();
    pass(250);
    await f.tick();
    const before = await Promise.all(ids.map((d) => f.execution(jobId, d)));
    assert.ok(before.every((e) => e.status === 'QUEUED' && e.dueAt === e.dispatchedAt! + 7200_000), 'all five sent, due in two hours');

    step(2 * HOUR + 60_000);
    const fault = failOnce(f.store, 'listDueExecutions');
    await assert.rejects(f.tick(), /terminating connection/);
    assert.ok(fault.failed());
    assert.equal(lines.filter((l) => l.includes('not fully applied yet')).length, 1, 'the failed try is said');
    pass(250);
    await f.tick();
    pass(250);
    await f.tick();

    const after = await Promise.all(ids.map((d) => f.execution(jobId, d)));
    assert.deepEqual(after.map((e) => e.status), ['QUEUED', 'QUEUED', 'QUEUED', 'QUEUED', 'QUEUED'], 'none timed out');
    for (const [i, e] of after.entries()) {
      assert.equal(e.dueAt, before[i]!.dueAt! + 2 * HOUR + 60_000, 'each deadline moved once by the step');
      assert.equal(e.dueAt, e.dispatchedAt! + 7200_000, 'with what it is computed from');
    }
    const applied = lines.filter((l) => l.includes('goes on at its pace'));
    assert.equal(applied.length, 1, 'said once applied');
    assert.match(applied[0]!, /deadlines=5/);
    assert.match(applied[0]!, /retried=true/);
  });

  it('forward: a deadline whose write failed is moved at the next tick, the others once', async () => {
    await start();
    const ids = await f.fleet('d', 5);
    const jobId = (await f.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { devices: ids }, timeouts: { inProgressSeconds: 7200 } })).job.jobId;
    await f.tick();
    const before = await Promise.all(ids.map((d) => f.execution(jobId, d)));

    step(2 * HOUR + 60_000);
    const fault = failOnce(f.store, 'updateExecution');
    await assert.rejects(f.tick(), /terminating connection/);
    assert.ok(fault.failed());
    pass(250);
    await f.tick();

    const after = await Promise.all(ids.map((d) => f.execution(jobId, d)));
    assert.deepEqual(after.map((e) => e.status), ['QUEUED', 'QUEUED', 'QUEUED', 'QUEUED', 'QUEUED'], 'none timed out');
    assert.deepEqual(after.map((e, i) => e.dueAt! - before[i]!.dueAt!), ids.map(() => 2 * HOUR + 60_000), 'each deadline moved once by the step');
    assert.match(lines.find((l) => l.includes('goes on at its pace'))!, /deadlines=5/);
  });

  it('forward: a job saved but its answer lost is not moved twice, and the next job is moved', async () => {
    await start();
    const ids = await f.fleet('d', 4);
    const jobs: string[] = [];
    for (const d of [ids.slice(0, 2), ids.slice(2)]) {
      jobs.push((await f.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { devices: d }, plan: { maxPerMinute: 1 }, timeouts: { inProgressSeconds: 7200 } })).job.jobId);
    }
    await f.tick();
    const epoch = async (jobId: string) => ((await f.job(jobId)).progress as { rateEpoch: number }).rateEpoch;
    const epochs = await Promise.all(jobs.map(epoch));

    step(HOUR);
    failOnce(f.store, 'updateJob', { afterCommit: true, error: TIMEOUT }); // the first job's rate moved and committed, the answer lost
    await assert.rejects(f.tick(), /statement timeout/);
    pass(250);
    await f.tick();

    assert.deepEqual(await Promise.all(jobs.map(epoch)), epochs.map((e) => e + HOUR), 'each job\'s rate moved by the step, once');
  });

  it('back: the rates are moved at the next tick, and go on at their pace', async () => {
    await start();
    const ids = await f.fleet('d', 20);
    const jobId = (await f.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { devices: ids }, plan: { maxPerMinute: 6 } })).job.jobId;
    await f.tick();
    pass(30_000);
    await f.tick();
    const sent = async () => (await f.store.listJobExecutions(jobId, { limit: 50 })).items.filter((e) => e.dispatchedAt !== undefined).length;
    assert.equal(await sent(), 4, 'one at once, three in half a minute');

    step(-HOUR);
    failOnce(f.store, 'listJobs');
    await assert.rejects(f.tick(), /terminating connection/);
    assert.equal(lines.filter((l) => l.includes('not fully applied yet')).length, 1);
    pass(250);
    await f.tick();
    pass(60_000);
    await f.tick();
    // a minute and a half at 6 a minute (the failed tick's 250 ms left out as an outage), and the
    // one at once; without the step applied, nothing for an hour
    assert.equal(await sent(), 10);
    assert.equal(lines.filter((l) => l.includes('stepped back by 3600.0 s') && l.includes('goes on at its pace')).length, 1);
  });
});
