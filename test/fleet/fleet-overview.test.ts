/**
 * The dashboard's fleet overview cache: fresh within its time to live, shared by concurrent
 * callers, and kept longer when computing it takes long (a big fleet), so open dashboards
 * cost a bounded share of the server. Time is an injected clock: no test waits on the wall.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { FleetOverviewSource } from '../../src/fleet/fleet-overview.ts';
import { FleetView } from '../../src/fleet/fleet-view.ts';
import type { SqliteStore } from '../../src/store/sqlite-store.ts';
import { startTempStore } from '../helpers/sqlite.ts';

describe('FleetOverviewSource', () => {
  let store: SqliteStore;
  let close: () => Promise<void>;
  before(async () => {
    ({ store, close } = await startTempStore('overview'));
  });
  after(() => close());

  /** A fleet view on the real store whose summary takes `costMs` of the injected clock. */
  function setup(costMs: number) {
    const clock = { now: 1_000_000 };
    let computed = 0;
    const view = new FleetView({ store, onlineCount: () => 0 });
    const summary = view.summary.bind(view);
    view.summary = async () => {
      computed++;
      clock.now += costMs;
      return summary();
    };
    const source = new FleetOverviewSource({ store, fleet: view, ttlMs: 2000, now: () => clock.now });
    return { clock, source, computed: () => computed };
  }

  it('computes once for concurrent callers and again after its time to live', async () => {
    const { clock, source, computed } = setup(10);
    const [a, b] = await Promise.all([source.get(), source.get()]);
    assert.equal(a, b);
    assert.equal(computed(), 1);
    clock.now += 1500;
    await source.get();
    assert.equal(computed(), 1, 'still fresh');
    clock.now += 600;
    await source.get();
    assert.equal(computed(), 2, 'older than 2 s: computed again');
  });

  it('keeps a result ten times as long as computing it took, when that is longer', async () => {
    const { clock, source, computed } = setup(1000); // a fleet whose summary takes 1 s
    await source.get();
    clock.now += 5000;
    await source.get();
    assert.equal(computed(), 1, 'a 1 s computation is reused for 10 s, not 2');
    clock.now += 5000;
    await source.get();
    assert.equal(computed(), 2);
  });

  it("names a device's latest failed job, also one whose first failures by device id did not reach it; a later success clears it", async () => {
    const t0 = 1_700_000_000_000;
    const exec = (jobId: string, deviceId: string, status: 'FAILED' | 'SUCCEEDED', at: number) => ({ jobId, deviceId, status, details: { error: `${jobId} broke` }, queuedAt: at - 10, updatedAt: at, version: 1 });
    await store.createJob({ jobId: 'ov-old', artifactName: 'fw', artifactVersion: '1', status: 'COMPLETED', createdAt: t0 }, [exec('ov-old', 'zz-dev', 'FAILED', t0 + 1000), exec('ov-old', 'zz-fixed', 'FAILED', t0 + 1000)]);
    // 20 earlier failures by device id first: ov-new's own candidates stop before zz-dev
    const firstTwenty = Array.from({ length: 20 }, (_, i) => exec('ov-new', `aa-${String(i).padStart(2, '0')}`, 'FAILED', t0 + 500));
    await store.createJob({ jobId: 'ov-new', artifactName: 'fw', artifactVersion: '2', status: 'COMPLETED', createdAt: t0 + 2000 }, [...firstTwenty, exec('ov-new', 'zz-dev', 'FAILED', t0 + 9000), exec('ov-new', 'zz-fixed', 'SUCCEEDED', t0 + 9000)]);
    const source = new FleetOverviewSource({ store, fleet: new FleetView({ store, onlineCount: () => 0 }), ttlMs: 0 });
    const o = await source.get();
    const row = o.failing.find((f) => f.deviceId === 'zz-dev');
    assert.ok(row, `zz-dev listed: ${o.failing.map((f) => f.deviceId).join(' ')}`);
    // until the review of ea04977 the row named ov-old, its failure read among ov-old's first 20
    assert.deepEqual([row.jobId, row.updatedAt], ['ov-new', t0 + 9000], 'named by the job it failed last');
    assert.equal(o.failing[0]?.deviceId, 'zz-dev', 'the newest failure first');
    assert.equal(o.failing.find((f) => f.deviceId === 'zz-fixed'), undefined, 'zz-fixed succeeded since: not listed');
  });

  it("lists the fleet's newest failures across jobs: an older job's latest failures past its first 20 by device id, a newer job's first; older ones left out", async () => {
    const t0 = 1_800_000_000_000;
    const exec = (jobId: string, deviceId: string, status: 'FAILED' | 'TIMED_OUT' | 'SUCCEEDED', at: number, details: Record<string, unknown> = {}) => ({ jobId, deviceId, status, details: { error: `${deviceId} broke`, ...details }, queuedAt: t0, updatedAt: at, version: 1 });
    // 25 failures, the later ones on the devices that sort last
    const many = Array.from({ length: 25 }, (_, i) => exec('nf-old', `nf-${String(i).padStart(2, '0')}`, 'FAILED', t0 + 1000 + i));
    await store.createJob({ jobId: 'nf-old', artifactName: 'fw', artifactVersion: '3', status: 'COMPLETED', createdAt: t0 }, many);
    await store.createJob({ jobId: 'nf-new', artifactName: 'fw', artifactVersion: '4', status: 'COMPLETED', createdAt: t0 + 2000 }, [
      exec('nf-new', 'nf-last', 'FAILED', t0 + 5000),
      // timed out, then its success came: not failing
      exec('nf-new', 'nf-late', 'TIMED_OUT', t0 + 6000, { lateSuccess: { at: t0 + 6000 } }),
      // nf-24 succeeded since its failure in nf-old
      exec('nf-new', 'nf-24', 'SUCCEEDED', t0 + 4000),
    ]);
    const source = new FleetOverviewSource({ store, fleet: new FleetView({ store, onlineCount: () => 0 }), ttlMs: 0 });
    const ids = (await source.get()).failing.map((f) => f.deviceId);
    // nf-last, then nf-old's newest 19 failures but nf-24's: nf-23 down to nf-05
    const expected = ['nf-last', ...Array.from({ length: 19 }, (_, i) => `nf-${String(23 - i).padStart(2, '0')}`)];
    assert.deepEqual(ids, expected, 'the newest failure first, then the older job\'s newest; until 2026-12-07 its first 20 by device id (nf-00 to nf-19)');
  });
});

// the review of ae58652: the "succeeded since" check read only the last 20 jobs and the failed
// one, and the failures were read by their last change, which a late success moves
describe('FleetOverviewSource: each device by its own newest outcome', () => {
  let store: SqliteStore;
  let close: () => Promise<void>;
  before(async () => ({ store, close } = await startTempStore('overview-outcome')));
  after(() => close());
  type St = 'FAILED' | 'TIMED_OUT' | 'SUCCEEDED' | 'QUEUED' | 'IN_PROGRESS' | 'CANCELED';
  const exec = (jobId: string, deviceId: string, status: St, at: number, details: Record<string, unknown> = {}) => ({ jobId, deviceId, status, details: { error: `${deviceId} broke`, ...details }, queuedAt: at - 10, updatedAt: at, version: 1 });
  const job = (jobId: string, createdAt: number) => ({ jobId, artifactName: 'fw', artifactVersion: jobId, status: 'COMPLETED' as const, createdAt });
  const failing = async () => (await new FleetOverviewSource({ store, fleet: new FleetView({ store, onlineCount: () => 0 }), ttlMs: 0 }).get()).failing.map((f) => f.deviceId);

  it('leaves out a device that failed an old job and succeeded since in a job older than the last 20', async () => {
    const t0 = 1_600_000_000_000;
    await store.createJob(job('a-x', t0), [exec('a-x', 'dev-fixed', 'FAILED', t0 + 100)]);
    await store.createJob(job('a-y', t0 + 1000), [exec('a-y', 'dev-fixed', 'SUCCEEDED', t0 + 2000)]);
    // 20 later jobs for another device, all fine
    for (let i = 0; i < 20; i++) await store.createJob(job(`a-z${i}`, t0 + 3000 + i), [exec(`a-z${i}`, 'other', 'SUCCEEDED', t0 + 3000 + i)]);
    const ids = await failing();
    assert.ok(!ids.includes('dev-fixed'), `dev-fixed's latest outcome is a success (job a-y), yet it is listed as failing: [${ids.join(' ')}]`);
  });

  it('lists an older real failure behind 100 newer late successes after a timeout', async () => {
    const t0 = 1_700_000_000_000;
    await store.createJob(job('b-real', t0), [exec('b-real', 'dev-broken', 'FAILED', t0 + 100)]);
    // a wave timed out on 100 devices, whose successes then came late (written after the timeout, as the tracker does)
    await store.createJob(job('b-wave', t0 + 1000), Array.from({ length: 100 }, (_, i) => exec('b-wave', `late-${i}`, 'TIMED_OUT', t0 + 2000 + i)));
    for (let i = 0; i < 100; i++) {
      const e = (await store.getExecution('b-wave', `late-${i}`))!;
      assert.equal(await store.updateExecution({ ...e, details: { ...e.details, lateSuccess: { at: t0 + 5000 + i } }, updatedAt: t0 + 5000 + i, version: 2 }, new Set(['details'])), true, 'the late success written');
    }
    const ids = await failing();
    assert.ok(ids.includes('dev-broken'), `dev-broken failed and never succeeded, yet is not listed (the 100 failures read were late successes): [${ids.join(' ')}]`);
    assert.ok(!ids.some((d) => d.startsWith('late-')), `a late success is no failure: [${ids.join(' ')}]`);
  });

  // the review of 59094f2: only a device's 5 newest executions by queue time were read, and
  // those without an outcome (queued, in progress, canceled) filled them
  it('leaves out a device that failed, then succeeded, then got newer executions without an outcome (5 and more); lists one that never succeeded', async () => {
    const t0 = 1_900_000_000_000;
    const later: St[] = ['CANCELED', 'QUEUED', 'IN_PROGRESS', 'CANCELED', 'CANCELED', 'QUEUED', 'CANCELED'];
    for (const [device, count] of [['dev-x5', 5], ['dev-x7', 7], ['dev-never', 7]] as const) {
      await store.createJob(job(`f-${device}`, t0), [exec(`f-${device}`, device, 'FAILED', t0 + 100)]);
      if (device !== 'dev-never') await store.createJob(job(`ok-${device}`, t0 + 1000), [exec(`ok-${device}`, device, 'SUCCEEDED', t0 + 1100)]);
      for (let i = 0; i < count; i++) await store.createJob(job(`later-${device}-${i}`, t0 + 2000 + i), [exec(`later-${device}-${i}`, device, later[i]!, t0 + 2010 + i)]);
    }
    const ids = await failing();
    assert.ok(!ids.includes('dev-x5'), `dev-x5 succeeded after failing (5 newer executions without an outcome), yet listed: [${ids.join(' ')}]`);
    assert.ok(!ids.includes('dev-x7'), `dev-x7 succeeded after failing (7 newer executions without an outcome), yet listed: [${ids.join(' ')}]`);
    assert.ok(ids.includes('dev-never'), `dev-never failed and never succeeded, yet not listed: [${ids.join(' ')}]`);
  });

  it('lists an older real failure behind 250 newer failures of devices that all succeeded since (further pages of failures read)', async () => {
    const t0 = 2_000_000_000_000;
    await store.createJob(job('c-real', t0), [exec('c-real', 'dev-real', 'FAILED', t0 + 100)]);
    // 250 devices failed a later job, then each succeeded in another: their failures still stand, the newest 250
    await store.createJob(job('c-wave', t0 + 1000), Array.from({ length: 250 }, (_, i) => exec('c-wave', `fixed-${i}`, 'FAILED', t0 + 2000 + i)));
    await store.createJob(job('c-fix', t0 + 3000), Array.from({ length: 250 }, (_, i) => exec('c-fix', `fixed-${i}`, 'SUCCEEDED', t0 + 4000 + i)));
    assert.ok((await store.listRecentFailures(250)).every((e) => e.jobId === 'c-wave'), 'the 250 newest failures are of the devices fixed since');
    const ids = await failing();
    assert.equal(ids[0], 'dev-real', `dev-real failed and never succeeded: the newest failing device, first: [${ids.join(' ')}]`);
    assert.ok(!ids.some((d) => d.startsWith('fixed-')), `a device that succeeded since is not failing: [${ids.join(' ')}]`);
  });
});

// until 2026-12-07 the overview's further pages of failures were read by OFFSET: a failure
// that left the list between two reads (a retry, a late success) moved the next page up by one
// row, and the device first on it was not looked at until the next refresh
describe('FleetOverviewSource: a failure leaving the list while the pages are read', () => {
  let store: SqliteStore;
  let close: () => Promise<void>;
  before(async () => ({ store, close } = await startTempStore('overview-cursor')));
  after(() => close());
  const exec = (jobId: string, deviceId: string, status: 'FAILED' | 'SUCCEEDED', at: number) => ({ jobId, deviceId, status, details: { error: `${deviceId} broke` }, queuedAt: at - 10, updatedAt: at, version: 1 });
  const job = (jobId: string, createdAt: number) => ({ jobId, artifactName: 'fw', artifactVersion: jobId, status: 'COMPLETED' as const, createdAt });

  it('still lists the device first on the second page when one on the first is retried between the two reads, with when it failed', async () => {
    const t0 = 2_100_000_000_000;
    await store.createJob(job('d-real', t0), [exec('d-real', 'dev-real', 'FAILED', t0 + 100)]);
    // a report on it since: its last change moves, not when it failed
    const real = (await store.getExecution('d-real', 'dev-real'))!;
    assert.equal(await store.updateExecution({ ...real, details: { error: 'dev-real still broke' }, updatedAt: t0 + 9000, version: 2 }, new Set(['details'])), true, 'the report written');
    // the 100 newest failures (the first page) are of devices that succeeded since
    await store.createJob(job('d-wave', t0 + 1000), Array.from({ length: 100 }, (_, i) => exec('d-wave', `fixed-${i}`, 'FAILED', t0 + 2000 + i)));
    await store.createJob(job('d-fix', t0 + 3000), Array.from({ length: 100 }, (_, i) => exec('d-fix', `fixed-${i}`, 'SUCCEEDED', t0 + 4000 + i)));
    // the store as it is, with a retry of fixed-50 written right after the first page is read
    const list = store.listRecentFailures.bind(store);
    let reads = 0;
    store.listRecentFailures = async (...args: Parameters<typeof list>) => {
      const page = await list(...args);
      if (++reads === 1) {
        const e = (await store.getExecution('d-wave', 'fixed-50'))!;
        assert.equal(await store.updateExecution({ ...e, status: 'QUEUED', attempt: 2, updatedAt: t0 + 8000, version: 2 }, new Set(['status', 'attempt'])), true, 'the retry written');
      }
      return page;
    };
    try {
      const failing = (await new FleetOverviewSource({ store, fleet: new FleetView({ store, onlineCount: () => 0 }), ttlMs: 0 }).get()).failing;
      assert.equal(reads, 2, 'two pages read');
      assert.deepEqual(failing.map((f) => f.deviceId), ['dev-real'], 'dev-real, first on the second page before the retry, is listed (by offset it was skipped)');
      assert.deepEqual([failing[0]?.failedAt, failing[0]?.updatedAt], [t0 + 100, t0 + 9000], 'when it failed, and its last change');
    } finally {
      store.listRecentFailures = list;
    }
  });
});

// the review of e593c60: the device was decided by its outcomes' last changes (updatedAt), which
// a report after a failure moves, and when the failure that decided it was not on the page read,
// its failedAt was that last change: a device that failed jobs a then b, with a report on a
// since, was listed with job a and failedAt = the report's time
describe("FleetOverviewSource: a device's outcomes ordered by when each came, a failure by its failed_at", () => {
  let store: SqliteStore;
  let close: () => Promise<void>;
  before(async () => ({ store, close } = await startTempStore('overview-failedat')));
  after(() => close());
  const exec = (jobId: string, deviceId: string, status: 'FAILED' | 'SUCCEEDED', at: number) => ({ jobId, deviceId, status, details: { error: `${deviceId} broke in ${jobId}` }, queuedAt: at - 10, updatedAt: at, version: 1 });
  const job = (jobId: string, createdAt: number) => ({ jobId, artifactName: 'fw', artifactVersion: jobId, status: 'COMPLETED' as const, createdAt });

  it('lists a device that failed two jobs with the later failure and its failed_at, a report on the earlier one since, the earlier not on the page read', async () => {
    const t0 = 2_100_000_000_000;
    await store.createJob(job('a', t0), [exec('a', 'dev-x', 'FAILED', t0 + 100)]);
    // 100 failures between: job a's failure is not on the first page (100 rows), job b's is
    await store.createJob(job('w', t0 + 150), Array.from({ length: 100 }, (_, i) => exec('w', `w-${String(i).padStart(3, '0')}`, 'FAILED', t0 + 200 + i)));
    await store.createJob(job('b', t0 + 1000), [exec('b', 'dev-x', 'FAILED', t0 + 1000)]);
    // a report on job a's failed execution since: the store keeps failed_at, moves updated_at
    const a = (await store.getExecution('a', 'dev-x'))!;
    assert.equal(await store.updateExecution({ ...a, details: { error: 'dev-x still broke in a' }, updatedAt: t0 + 5000, version: 2 }, new Set(['details'])), true, 'report written');
    const stored = (await store.listRecentFailures(200)).filter((f) => f.deviceId === 'dev-x').map((f) => `${f.jobId}@${f.failedAt - t0}`);
    assert.deepEqual(stored, ['b@1000', 'a@100'], 'the store: job b failed at +1000, job a at +100');
    const failing = (await new FleetOverviewSource({ store, fleet: new FleetView({ store, onlineCount: () => 0 }), ttlMs: 0 }).get()).failing;
    const x = failing.filter((f) => f.deviceId === 'dev-x').map((f) => ({ jobId: f.jobId, failedAt: f.failedAt - t0, updatedAt: f.updatedAt - t0 }));
    // before the fix: [{ jobId: 'a', failedAt: 5000, updatedAt: 5000 }]
    assert.deepEqual(x, [{ jobId: 'b', failedAt: 1000, updatedAt: 1000 }], 'dev-x listed once, with the later failure (job b) and when it failed');
    assert.equal(failing[0]?.deviceId, 'dev-x', 'and first: the newest failure of the fleet');
  });
});
