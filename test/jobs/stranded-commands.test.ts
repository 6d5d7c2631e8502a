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
import { STRANDED_PROGRESS_KEY, STRANDED_SWEEP_KEY, sweepStrandedCommands } from '../../src/jobs/stranded-commands.ts';
import type { JsonObject } from '../../src/protocol/json.ts';
import type { StateStore } from '../../src/store/state-store.ts';
import { createLogger, silentLogger } from '../../src/util/logger.ts';
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

  it('takes back the command of a job deleted since (the take-back owed by a legacy row is not counted by delete)', async () => {
    await f.rollouts.engine.settled();
    const [d] = await f.fleet('del', 1);
    const jobId = (await f.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { devices: [d!] }, timeouts: { inProgressSeconds: 60 } })).job.jobId;
    f.advance(61_000);
    // what the timeout wrote before 0ff9134: no deadline, so delete finds nothing owed
    await mutateExecution(f, { jobId, deviceId: d! }, (cur) => ({ status: 'TIMED_OUT', details: { ...cur.details, error: 'in-progress timeout' }, dueAt: undefined }), f.clock.now);
    await f.tick();
    assert.equal((await f.job(jobId)).status, 'COMPLETED');
    assert.equal((await f.desired(d!))?.jobId, jobId, 'the timed-out command still desired, as an earlier version left it');
    await f.rollouts.jobs.delete(jobId);
    assert.equal(await f.store.getJob(jobId), undefined, 'deleted');

    assert.equal(await f.store.deleteSetting(STRANDED_SWEEP_KEY), true);
    await f.restart();
    await f.rollouts.engine.settled();
    const asked = await f.desired(d!);
    assert.deepEqual([asked?.jobId, asked?.version], [`${jobId}.cancel`, '1.0.0'], 'told to stay on what it runs: the deleted job no longer tracks the build');
  });

  it('leaves the command of a deleted job the device finished', async () => {
    await f.rollouts.engine.settled();
    const [d] = await f.fleet('done', 1);
    const jobId = (await f.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { devices: [d!] } })).job.jobId;
    await f.complete(d!);
    await f.tick();
    assert.equal((await f.job(jobId)).status, 'COMPLETED');
    await f.rollouts.jobs.delete(jobId);
    const version = (await f.store.getShadow(d!, ''))?.version;
    assert.equal(await f.store.deleteSetting(STRANDED_SWEEP_KEY), true);
    await f.restart();
    await f.rollouts.engine.settled();
    assert.equal((await f.store.getShadow(d!, ''))?.version, version, 'not written: the device reported SUCCESS of it');
    assert.equal((await f.desired(d!))?.jobId, jobId);
  });
});

describe('the look for stranded commands when it cannot finish in one go', () => {
  let f: RolloutFixture;
  beforeEach(async () => {
    // the replica takes one request at a time: a device's update held in flight makes it answer 429
    f = await startRolloutFixture({ builds: ['1.0.0', '2.0.0'], maxPending: 1 });
    await f.rollouts.engine.settled();
  });
  afterEach(() => f.close());

  /**
   * Devices whose timed-out command is still desired, as a version before 0ff9134 left them
   * (a job each: the replica takes one command at a time); the store never looked over.
   */
  const stranded = async (prefix: string, n: number) => {
    const ids = await f.fleet(prefix, n);
    const jobs = new Map<string, string>();
    for (const d of ids) {
      const jobId = (await f.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { devices: [d] }, timeouts: { inProgressSeconds: 60 } })).job.jobId;
      assert.equal((await f.desired(d))?.jobId, jobId);
      jobs.set(d, jobId);
    }
    f.advance(61_000);
    for (const [d, jobId] of jobs) await mutateExecution(f, { jobId, deviceId: d }, (cur) => ({ status: 'TIMED_OUT', details: { ...cur.details, error: 'in-progress timeout' }, dueAt: undefined }), f.clock.now);
    assert.equal(await f.store.deleteSetting(STRANDED_SWEEP_KEY), true);
    return { ids, jobs };
  };
  const deps = (store: StateStore = f.store) => ({ store, replica: f.replica, artifacts: f.artifacts, logger: silentLogger });
  /**
   * The fixture's store, recording the cursor of each page of devices read, with something done
   * after a page or a shadow is read (every call goes to the store itself).
   */
  const recordingPages = (onPage: () => void = () => undefined, onShadow: (deviceId: string) => Promise<void> = async () => undefined) => {
    const pages: (string | undefined)[] = [];
    const store = new Proxy(f.store, {
      get(target, key) {
        if (key === 'listDevices')
          return async (o: { after?: string; limit: number }) => {
            pages.push(o.after);
            const page = await target.listDevices(o);
            onPage();
            return page;
          };
        if (key === 'getShadow')
          return async (deviceId: string, name: string) => {
            const shadow = await target.getShadow(deviceId, name);
            await onShadow(deviceId);
            return shadow;
          };
        const value = Reflect.get(target, key, target) as unknown;
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    return { store, pages };
  };
  /** Holds the replica's only place (another device's update, its answer not taken by the broker connection). */
  const busyReplica = async () => {
    const [busy] = await f.fleet('busy', 1);
    return f.occupyReplica(busy!);
  };
  /** How many of `ids` are told to stay (their timed-out command taken back). */
  const stays = async (ids: string[], jobs: Map<string, string>) => {
    let n = 0;
    for (const d of ids) if ((await f.desired(d))?.jobId === `${jobs.get(d)}.cancel`) n++;
    return n;
  };

  it('tries a device the replica refuses for now again within the pass', async () => {
    const { ids, jobs } = await stranded('r', 1);
    const free = await busyReplica();
    const taken = await sweepStrandedCommands(deps(), f.clock.now, { pause: async () => free() });
    assert.equal(taken, 1);
    assert.equal(await stays(ids, jobs), 1, 'told to stay once the replica took it');
    assert.notEqual(await f.store.getSetting(STRANDED_SWEEP_KEY), undefined, 'the pass is recorded finished');
    assert.equal(await f.store.getSetting(STRANDED_PROGRESS_KEY), undefined);
  });

  it('leaves a device still refused after its tries to the next start, which reads only that device', async () => {
    const { ids, jobs } = await stranded('l', 3);
    const free = await busyReplica();
    let pauses = 0;
    assert.equal(await sweepStrandedCommands(deps(), f.clock.now, { pause: async () => void pauses++ }), 0);
    assert.equal(pauses, 2, 'tried three times');
    assert.equal(await f.store.getSetting(STRANDED_SWEEP_KEY), undefined, 'not finished');
    assert.deepEqual(JSON.parse((await f.store.getSetting(STRANDED_PROGRESS_KEY))!), { listed: true, left: ids });
    await free();
    const { store, pages } = recordingPages();
    assert.equal(await sweepStrandedCommands(deps(store), f.clock.now), 3);
    assert.deepEqual(pages, [], 'the fleet is not read again');
    assert.equal(await stays(ids, jobs), 3);
    assert.notEqual(await f.store.getSetting(STRANDED_SWEEP_KEY), undefined, 'finished now');
    assert.equal(await f.store.getSetting(STRANDED_PROGRESS_KEY), undefined);
  });

  it('goes on where a pass cut short by a stop stopped', async () => {
    const { ids, jobs } = await stranded('s', 3);
    let stop = false;
    const first = recordingPages(() => void (stop = true));
    assert.equal(await sweepStrandedCommands(deps(first.store), f.clock.now, { stopping: () => stop, pageSize: 2 }), 2, 'the first page');
    assert.deepEqual(first.pages, [undefined]);
    assert.equal(await f.store.getSetting(STRANDED_SWEEP_KEY), undefined, 'not finished');
    const second = recordingPages();
    assert.equal(await sweepStrandedCommands(deps(second.store), f.clock.now, { pageSize: 2 }), 1, 'the rest');
    assert.equal(second.pages.length, 1, 'one page read');
    assert.notEqual(second.pages[0], undefined, 'from where the first pass stopped, not from the start');
    assert.equal(await stays(ids, jobs), 3);
    assert.notEqual(await f.store.getSetting(STRANDED_SWEEP_KEY), undefined);
  });

  it('counts a device whose shadow refuses the write for good as done', async () => {
    const { ids, jobs } = await stranded('g', 2);
    // the first device deleted (its shadow, then its registration) just after the take-back
    // read its shadow (the pass's second read of it): the replica refuses the write for an
    // unregistered id (NOT_FOUND)
    let reads = 0;
    const { store } = recordingPages(undefined, async (deviceId) => {
      if (deviceId !== ids[0] || ++reads !== 2) return;
      await f.replica.delete({ deviceId, name: '' }, { kind: 'operator', id: 'test' });
      const device = await f.store.getDevice(deviceId);
      assert.equal(await f.store.deleteDevice(deviceId, device!.version), true);
    });
    const lines: string[] = [];
    const logger = createLogger({ level: 'warn', write: (l) => lines.push(l) });
    assert.equal(await sweepStrandedCommands({ ...deps(store), logger }, f.clock.now, { pause: async () => assert.fail('a refusal for good is not tried again') }), 1);
    assert.equal(lines.filter((l) => l.includes('the shadow refuses it') && l.includes('is not registered')).length, 1, lines.join('\n'));
    assert.equal(await stays(ids.slice(1), jobs), 1);
    assert.notEqual(await f.store.getSetting(STRANDED_SWEEP_KEY), undefined, 'the pass is recorded finished');
  });
});
