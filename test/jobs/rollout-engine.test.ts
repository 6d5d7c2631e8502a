/**
 * The rollout rules, one by one, on real parts (SQLite store, replica, tracker, engine) with
 * a fake clock: waves and thresholds, approval, rate and ramp-up, scheduled start, timeouts,
 * retries, abort with rollback, cancel, pause/resume, downgrade protection, continuous jobs,
 * restart recovery.
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { decommissionDevice } from '../../src/fleet/decommission.ts';
import type { JsonObject } from '../../src/protocol/json.ts';
import { eventually } from '../helpers/cli.ts';
import { startRolloutFixture, type RolloutFixture } from './rollout-fixture.ts';

describe('rollout engine', () => {
  let f: RolloutFixture;
  beforeEach(async () => {
    f = await startRolloutFixture({ builds: ['1.0.0', '2.0.0'] });
  });
  afterEach(() => f.close());

  const create = async (body: Record<string, unknown>) => (await f.rollouts.jobs.create({ artifact: 'fw@2.0.0', ...body })).job.jobId;
  const sentTo = async (ids: string[], jobId: string) => {
    const out: string[] = [];
    for (const id of ids) if ((await f.desired(id))?.jobId === jobId) out.push(id);
    return out;
  };
  const counts = async (jobId: string) => (await f.rollouts.jobs.view(jobId)).counts;
  /** The embedded broker's presence notices, then time for the engine to look the arrivals' executions up. */
  const presence = async (online: boolean, ...ids: string[]) => {
    for (const id of ids) f.events.emit('device.presence', { deviceId: id, online });
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
  };

  it('reads a job\'s spec once, not at every tick: ticks list active jobs without their specs', async () => {
    const ids = await f.fleet('d', 5);
    const jobId = await create({ targets: { devices: ids }, plan: { waves: [{ count: 2, successThreshold: 100 }, { percent: 100 }] } });
    // what the engine reads from the (real) store while it ticks
    const reads = { listsWithSpecs: 0, specLoads: 0 };
    const { listJobs, getJob } = { listJobs: f.store.listJobs.bind(f.store), getJob: f.store.getJob.bind(f.store) };
    f.store.listJobs = (o) => {
      if (!o.omitSpec) reads.listsWithSpecs++;
      return listJobs(o);
    };
    f.store.getJob = (id, o) => {
      if (id === jobId && !o?.omitSpec) reads.specLoads++;
      return getJob(id, o);
    };
    for (let i = 0; i < 5; i++) {
      f.advance(1000);
      await f.tick();
    }
    assert.equal(reads.listsWithSpecs, 0, 'ticks do not list specs');
    assert.equal(reads.specLoads, 1, 'the spec is read once, at the first tick');
    // the remembered spec still drives the rollout: its canary wave, then the rest
    assert.deepEqual(await sentTo(ids, jobId), ['d001', 'd002']);
    await f.complete('d001');
    await f.complete('d002');
    await f.tick();
    await f.tick();
    assert.deepEqual(await sentTo(ids, jobId), ids, 'the second wave went out');
  });

  it('sends the canary wave first, then the next wave once the canary met its threshold, then completes', async () => {
    const ids = await f.fleet('d', 10);
    const jobId = await create({ targets: { devices: ids }, plan: { waves: [{ count: 2, successThreshold: 100 }, { percent: 60 }, { percent: 100 }] } });
    assert.deepEqual(await sentTo(ids, jobId), ['d001', 'd002'], 'only the canary has the command');
    await f.tick();
    assert.deepEqual(await sentTo(ids, jobId), ['d001', 'd002'], 'the next wave waits for the canary');
    await f.complete('d001');
    await f.complete('d002');
    await f.tick(); // canary done: wave 1
    await f.tick();
    assert.deepEqual(await sentTo(ids, jobId), ['d001', 'd002', 'd003', 'd004', 'd005', 'd006'], 'wave 1 grows the rollout to 60%');
    assert.equal((await f.job(jobId)).progress?.wave, 1);
    for (const id of ids.slice(2, 6)) await f.complete(id);
    await f.tick();
    await f.tick();
    assert.equal((await sentTo(ids, jobId)).length, 10);
    for (const id of ids.slice(6)) await f.complete(id);
    await f.tick();
    const job = await f.job(jobId);
    assert.equal(job.status, 'COMPLETED');
    assert.deepEqual((await counts(jobId)).SUCCEEDED, 10);
  });

  it("records when the device began each attempt (its first report), not when the command was sent: AWS's startedAt", async () => {
    const [id] = await f.fleet('s', 1);
    const jobId = await create({ targets: { devices: [id!] }, retries: { limit: 1, on: ['FAILED'] } });
    const sentAt = f.clock.now;
    f.advance(4_000);
    const cmd = await f.desired(id!);
    await f.report(id!, { name: 'fw', version: '1.0.0', jobId: cmd!.jobId as string, status: 'DOWNLOADING', progress: 0.1 });
    const first = await f.execution(jobId, id!);
    assert.equal(first.details.startedAt, sentAt + 4_000);
    assert.equal(first.dispatchedAt, sentAt, 'sent when it was');
    f.advance(1_000);
    await f.report(id!, { name: 'fw', version: '1.0.0', jobId: cmd!.jobId as string, status: 'INSTALLING' });
    assert.equal((await f.execution(jobId, id!)).details.startedAt, sentAt + 4_000, 'a later report does not move it');
    await f.report(id!, { name: 'fw', version: '1.0.0', jobId: cmd!.jobId as string, status: 'FAILURE', error: 'boom' });
    // the retry: a new attempt, started at its own first report
    await f.tick();
    const retry = await f.desired(id!);
    assert.notEqual(retry?.jobId, cmd!.jobId, 'the retry is a new attempt');
    f.advance(2_000);
    await f.report(id!, { name: 'fw', version: '1.0.0', jobId: retry!.jobId as string, status: 'DOWNLOADING', progress: 0.1 });
    assert.equal((await f.execution(jobId, id!)).details.startedAt, f.clock.now);
  });

  it('pauses when a wave misses its success threshold; resume goes on to the next wave', async () => {
    const ids = await f.fleet('d', 6);
    const jobId = await create({ targets: { devices: ids }, plan: { waves: [{ count: 2, successThreshold: 100 }, { percent: 100 }] } });
    await f.complete('d001');
    await f.complete('d002', 'FAILURE');
    await f.tick();
    const paused = await f.job(jobId);
    assert.equal(paused.status, 'PAUSED');
    assert.match(String((paused.progress as any).pause.message), /wave 1 succeeded on 50\.0%.*threshold of 100%/);
    await f.tick();
    assert.deepEqual(await sentTo(ids, jobId), ['d001', 'd002'], 'nothing more is sent while paused');
    await f.rollouts.jobs.resume(jobId);
    await f.tick();
    assert.equal((await sentTo(ids, jobId)).length, 6);
    assert.equal((await f.job(jobId)).status, 'IN_PROGRESS');
  });

  it('pauses for approval after a wave that asks for it', async () => {
    const ids = await f.fleet('d', 4);
    const jobId = await create({ targets: { devices: ids }, plan: { waves: [{ count: 1, requireApproval: true }, {}] } });
    await f.complete('d001');
    await f.tick();
    assert.equal((await f.job(jobId)).status, 'PAUSED');
    assert.equal(((await f.job(jobId)).progress as any).pause.reason, 'approval');
    await f.rollouts.jobs.resume(jobId);
    await f.tick();
    assert.equal((await sentTo(ids, jobId)).length, 4);
  });

  it('limits the rate per minute with an exponential ramp-up, derived from the clock', async () => {
    const ids = await f.fleet('d', 40);
    const jobId = await create({ targets: { devices: ids }, plan: { maxPerMinute: 16, rampUp: { initialPerMinute: 4, factor: 2 } } });
    assert.equal((await sentTo(ids, jobId)).length, 1, 'one at once');
    f.advance(30_000);
    await f.tick();
    assert.equal((await sentTo(ids, jobId)).length, 3, '1 + 4/min for half a minute');
    f.advance(30_000);
    await f.tick();
    assert.equal((await sentTo(ids, jobId)).length, 5, 'first minute: 4');
    f.advance(60_000);
    await f.tick();
    assert.equal((await sentTo(ids, jobId)).length, 13, 'second minute: 8');
    f.advance(60_000);
    await f.tick();
    assert.equal((await sentTo(ids, jobId)).length, 29, 'third minute: 16 (the cap)');
    f.advance(60_000);
    await f.tick();
    assert.equal((await sentTo(ids, jobId)).length, 40, 'capped at 16/min');
  });

  it('keeps at most maxInFlight devices between command and outcome; each outcome frees a place', async () => {
    const ids = await f.fleet('d', 10);
    const jobId = await create({ targets: { devices: ids }, plan: { maxInFlight: 3 } });
    assert.deepEqual(await sentTo(ids, jobId), ['d001', 'd002', 'd003'], 'the window is full');
    await f.tick();
    assert.equal((await sentTo(ids, jobId)).length, 3, 'nothing more until one finishes');
    await f.complete('d001');
    await f.complete('d002', 'FAILURE');
    await f.tick();
    assert.deepEqual(await sentTo(ids, jobId), ['d001', 'd002', 'd003', 'd004', 'd005'], 'two outcomes, two more commands');
    for (const id of ids.slice(2, 5)) await f.complete(id);
    await f.tick();
    assert.equal((await sentTo(ids, jobId)).length, 8);
    for (const id of ids.slice(5, 8)) await f.complete(id);
    await f.tick();
    for (const id of ids.slice(8)) await f.complete(id);
    await f.tick();
    assert.equal((await f.job(jobId)).status, 'COMPLETED');
    const c = await counts(jobId);
    assert.equal(c.SUCCEEDED, 9);
    assert.equal(c.FAILED, 1);
  });

  it('sends devices that come online first, within the window and the wave', async () => {
    const ids = await f.fleet('d', 10);
    const jobId = await create({ targets: { devices: ids }, plan: { maxInFlight: 3 } });
    assert.deepEqual(await sentTo(ids, jobId), ['d001', 'd002', 'd003']);
    await presence(true, 'd009', 'd007');
    await f.tick();
    assert.equal((await sentTo(ids, jobId)).length, 3, 'arrivals wait for a place in the window too');
    await f.complete('d001');
    await f.complete('d002');
    await f.tick();
    assert.deepEqual(await sentTo(ids, jobId), ['d001', 'd002', 'd003', 'd007', 'd009'], 'the two online devices went before d004 and d005');
    await f.complete('d003');
    await f.tick();
    assert.deepEqual(await sentTo(ids, jobId), ['d001', 'd002', 'd003', 'd004', 'd007', 'd009'], 'then the store order again');
  });

  it('forgets an arrival that went offline before its turn: the place goes to a device still online', async () => {
    const ids = await f.fleet('d', 10);
    const jobId = await create({ targets: { devices: ids }, plan: { maxInFlight: 3 } });
    assert.deepEqual(await sentTo(ids, jobId), ['d001', 'd002', 'd003']);
    await presence(true, 'd009', 'd007');
    await presence(false, 'd009');
    await f.complete('d001');
    await f.tick();
    assert.deepEqual(await sentTo(ids, jobId), ['d001', 'd002', 'd003', 'd007'], 'd007, still online, went before d009, which arrived first but left');
    await f.complete('d002');
    await f.tick();
    assert.deepEqual(await sentTo(ids, jobId), ['d001', 'd002', 'd003', 'd004', 'd007'], 'd009 waits for its turn in store order');
  });

  it('remembers a bounded number of arrivals per job, forgetting the oldest first', async () => {
    await f.close();
    f = await startRolloutFixture({ maxArrivedPerJob: 2, builds: ['1.0.0', '2.0.0'] });
    const ids = await f.fleet('d', 10);
    const jobId = await create({ targets: { devices: ids }, plan: { maxInFlight: 1 } });
    assert.deepEqual(await sentTo(ids, jobId), ['d001']);
    for (const id of ['d009', 'd007', 'd005']) await presence(true, id);
    for (const [done, next] of [['d001', 'd007'], ['d007', 'd005'], ['d005', 'd002']] as const) {
      await f.complete(done);
      await f.tick();
      assert.ok((await sentTo(ids, jobId)).includes(next), `${next} went next`);
    }
    assert.equal((await f.desired('d009'))?.jobId, undefined, 'd009, the oldest arrival, was forgotten: it waits for its turn in store order');
  });

  it('with an external broker, takes a device\'s catch-up get as its arrival, and its Will as its departure', async () => {
    await f.close();
    f = await startRolloutFixture({ arrivals: 'fetch' });
    await f.addArtifact('2.0.0');
    const ids = await f.fleet('d', 6);
    const jobId = await create({ targets: { devices: ids }, plan: { maxInFlight: 2 } });
    assert.deepEqual(await sentTo(ids, jobId), ['d001', 'd002']);
    // announced presence does not count as an arrival there: not every device announces it
    f.events.emit('device.presence', { deviceId: 'd004', online: true });
    // what an agent publishes on connect, as the broker delivers it to the replica
    const get = async (deviceId: string) => {
      f.replica.submit({ topic: `state/${deviceId}/get`, payload: Buffer.from('{"clientToken":"c1"}'), sender: { kind: 'device', id: deviceId } });
      await eventually(async () => f.bus.published.some((m) => m.topic === `state/${deviceId}/get/accepted`) || undefined, 10_000, 'the get answered');
      for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r)); // the engine looks its executions up
    };
    await get('d006');
    await get('d005');
    // d005's Will: it left before its turn
    f.events.emit('device.presence', { deviceId: 'd005', online: false });
    await f.complete('d001');
    await f.tick();
    assert.deepEqual(await sentTo(ids, jobId), ['d001', 'd002', 'd006'], 'd006 asked for its shadow: it went before d003; d004 only announced itself');
    await f.complete('d002');
    await f.tick();
    assert.deepEqual(await sentTo(ids, jobId), ['d001', 'd002', 'd003', 'd006'], 'd005 left: d003 went in store order');
  });

  it('waits for a scheduled start', async () => {
    const ids = await f.fleet('d', 2);
    const jobId = await create({ targets: { devices: ids }, plan: { startAt: new Date(f.clock.now + 3_600_000).toISOString() } });
    assert.equal((await f.job(jobId)).status, 'SCHEDULED');
    // resume is for a paused job: on a scheduled one it would answer 200 and do nothing
    await assert.rejects(f.rollouts.jobs.resume(jobId), /is SCHEDULED: only a paused job resumes \(it starts at its startAt; cancel it and create another to start now\)/);
    await f.tick();
    assert.deepEqual(await sentTo(ids, jobId), []);
    f.advance(3_600_000);
    await f.tick();
    assert.equal((await f.job(jobId)).status, 'IN_PROGRESS');
    assert.equal((await sentTo(ids, jobId)).length, 2);
  });

  it('sends only inside its maintenance windows, at its rate from each opening; what was sent goes on outside them', async () => {
    // the fixture's clock starts on Thursday 2026-01-01 at 00:00 UTC
    const ids = await f.fleet('d', 5);
    const jobId = await create({ targets: { devices: ids }, plan: { maxPerMinute: 2, windows: [{ start: '02:00', minutes: 2 }] } });
    const atTwo = Date.UTC(2026, 0, 1, 2, 0);
    assert.deepEqual(await sentTo(ids, jobId), [], 'created outside its window: nothing sent');
    let job = await f.job(jobId);
    assert.equal(job.status, 'IN_PROGRESS');
    assert.deepEqual((job.progress as { windowClosed?: unknown }).windowClosed, { since: f.clock.now, opensAt: atTwo });
    f.advance(atTwo - 60_000 - f.clock.now); // 01:59
    await f.tick();
    assert.deepEqual(await sentTo(ids, jobId), []);

    // 02:00: open, and the rate (one at once, then two a minute) starts here, not at the
    // job's creation two hours ago, which would allow a burst of all five
    f.advance(60_000);
    await f.tick();
    assert.deepEqual(await sentTo(ids, jobId), ['d001']);
    job = await f.job(jobId);
    assert.equal((job.progress as { windowClosed?: unknown }).windowClosed, undefined);
    f.advance(60_000); // 02:01
    await f.tick();
    assert.deepEqual(await sentTo(ids, jobId), ['d001', 'd002', 'd003']);

    f.advance(60_000); // 02:02: closed again
    await f.tick();
    await f.complete('d001'); // a device that had its command goes on
    f.advance(6 * 3_600_000);
    await f.tick();
    assert.deepEqual(await sentTo(ids, jobId), ['d001', 'd002', 'd003'], 'the rest wait for the next window');
    assert.equal((await f.execution(jobId, 'd001')).status, 'SUCCEEDED');
    job = await f.job(jobId);
    assert.deepEqual((job.progress as { windowClosed?: { opensAt?: number } }).windowClosed?.opensAt, atTwo + 86_400_000);

    f.advance(atTwo + 86_400_000 - f.clock.now); // Friday 02:00: the rate starts over
    await f.tick();
    assert.deepEqual(await sentTo(ids, jobId), ['d001', 'd002', 'd003', 'd004']);
    f.advance(60_000);
    await f.tick();
    assert.deepEqual(await sentTo(ids, jobId), ids);
  });

  it("says a wave's timed-out devices when it misses its threshold: a late success counts as none", async () => {
    const ids = await f.fleet('d', 4);
    const jobId = await create({ targets: { devices: ids }, plan: { waves: [{ count: 2, successThreshold: 100 }, { percent: 100 }] }, timeouts: { inProgressSeconds: 600 } });
    await f.complete('d001');
    f.advance(600_000);
    await f.tick();
    assert.equal((await f.execution(jobId, 'd002')).status, 'TIMED_OUT', 'the silent device timed out');
    await f.tick();
    const paused = await f.job(jobId);
    assert.equal(paused.status, 'PAUSED', 'the wave missed its threshold');
    assert.equal(String((paused.progress as any).pause.message), `wave 1 succeeded on 50.0% of its finished devices (1 timed out; a success that came after its timeout counts as none: updraft job show ${jobId} says which devices run the build), below its threshold of 100%; resume to go on, or cancel`, 'the pause says the timed-out device and where to look');
  });

  it('times a silent device out (in-progress timeout) and takes the command back', async () => {
    const [d] = await f.fleet('d', 1);
    const jobId = await create({ targets: { devices: [d!] }, timeouts: { inProgressSeconds: 600 } });
    assert.equal((await f.execution(jobId, d!)).dueAt, f.clock.now + 600_000);
    f.advance(599_000);
    await f.tick();
    assert.equal((await f.execution(jobId, d!)).status, 'QUEUED');
    f.advance(1_000);
    await f.tick();
    const e = await f.execution(jobId, d!);
    assert.equal(e.status, 'TIMED_OUT');
    assert.match(String(e.details.error), /in-progress timeout/);
    assert.equal(e.dueAt, undefined);
    assert.notEqual((await f.desired(d!))?.jobId, jobId, 'a device coming back later does not start the update');
    await f.tick();
    assert.equal((await f.job(jobId)).status, 'COMPLETED');
  });

  it('withdraws the stay of a timed-out device that reports it finished the job (it had the build before the timeout reached it)', async () => {
    const [d, other] = await f.fleet('d', 2);
    const jobId = await create({ targets: { devices: [d!, other!] }, timeouts: { inProgressSeconds: 600 } });
    f.advance(600_000);
    await f.tick();
    for (const id of [d!, other!]) {
      assert.equal((await f.execution(jobId, id)).status, 'TIMED_OUT');
      assert.deepEqual(await f.desired(id).then((s) => [s?.jobId, s?.version]), [`${jobId}.cancel`, '1.0.0'], 'told to stay on what it ran');
    }
    // another report (not SUCCESS of the job) leaves the stay
    await f.report(other!, { name: 'fw', version: '1.0.0', jobId, status: 'FAILURE', error: 'superseded' });
    // d finished the job while offline, and says so when it comes back
    await f.report(d!, { name: 'fw', version: '2.0.0', jobId, status: 'SUCCESS' });
    await eventually(async () => ((await f.desired(d!)) === undefined ? true : undefined), 5000, 'the stay withdrawn: nothing desired');
    const e = await f.execution(jobId, d!);
    assert.equal(e.status, 'TIMED_OUT', 'the execution stays as it ended');
    assert.deepEqual(e.details.lateSuccess, { version: '2.0.0', at: f.clock.now }, 'with the late success beside it');
    assert.match(String(e.details.error), /in-progress timeout/, 'and the reason it ended');
    const repeatedAt = e.version;
    f.advance(1_000);
    await f.report(d!, { name: 'fw', version: '2.0.0', jobId, status: 'SUCCESS' });
    assert.equal((await f.execution(jobId, d!)).version, repeatedAt, 'a repeated SUCCESS writes nothing');
    assert.equal((await f.desired(other!))?.jobId, `${jobId}.cancel`);
    assert.equal((await f.execution(jobId, other!)).details.lateSuccess, undefined, 'a FAILURE after the timeout is no late success');
  });

  it('enforces the step timeout from the last phase change', async () => {
    const [d] = await f.fleet('d', 1);
    const jobId = await create({ targets: { devices: [d!] }, timeouts: { inProgressSeconds: 3600, stepSeconds: 60 } });
    await f.report(d!, { name: 'fw', version: '1.0.0', jobId, status: 'DOWNLOADING', progress: 0.1 });
    f.advance(50_000);
    await f.report(d!, { name: 'fw', version: '1.0.0', jobId, status: 'DOWNLOADING', progress: 0.2 });
    f.advance(15_000);
    await f.tick();
    const e = await f.execution(jobId, d!);
    assert.equal(e.status, 'TIMED_OUT', 'progress within one phase does not reset the step clock');
    assert.match(String(e.details.error), /step timeout.*DOWNLOADING within 60 s/);
  });

  it("a timeout keeps the device's last report time (the shadow's report is not recorded again as new)", async () => {
    const [d] = await f.fleet('d', 1);
    const jobId = await create({ targets: { devices: [d!] }, timeouts: { inProgressSeconds: 3600, stepSeconds: 60 } });
    await f.report(d!, { name: 'fw', version: '1.0.0', jobId, status: 'DOWNLOADING', progress: 0.1 });
    const reportedAt = (await f.execution(jobId, d!)).details.lastReportAt;
    assert.equal(typeof reportedAt, 'number', 'the report is recorded with its time');
    f.advance(65_000);
    await f.tick();
    const e = await f.execution(jobId, d!);
    assert.equal(e.status, 'TIMED_OUT', 'the silent device timed out');
    // until 2026-12-06 the timeout applied the shadow's report as a new one first: the
    // execution said the device last reported at the moment it timed out
    assert.equal(e.details.lastReportAt, reportedAt, 'lastReportAt is still when the device last reported, not when it timed out');
  });

  it('reads the spec once while executions time out tick after tick', async () => {
    const ids = await f.fleet('d', 3);
    const jobId = await create({ targets: { devices: ids }, timeouts: { inProgressSeconds: 3600, stepSeconds: 60 } });
    // each device starts downloading 10 s after the previous: their step timeouts fall on different ticks
    for (const id of ids) {
      await f.report(id, { name: 'fw', version: '1.0.0', jobId, status: 'DOWNLOADING', progress: 0.1 });
      f.advance(10_000);
    }
    let specLoads = 0;
    const getJob = f.store.getJob.bind(f.store);
    f.store.getJob = (id, o) => {
      if (id === jobId && !o?.omitSpec) specLoads++;
      return getJob(id, o);
    };
    const timedOut = async () => (await Promise.all(ids.map((id) => f.execution(jobId, id)))).filter((e) => e.status === 'TIMED_OUT').length;
    f.advance(31_000); // 61 s after the first report
    await f.tick();
    assert.equal(await timedOut(), 1);
    for (const n of [2, 3]) {
      f.advance(10_000);
      await f.tick();
      assert.equal(await timedOut(), n, 'the next device timed out, with the timeout the spec sets');
    }
    assert.equal(specLoads, 1, 'the spec was read at the first tick only');
  });

  it('retries FAILED and TIMED_OUT executions with a new device-side job id, up to the limit', async () => {
    const [d] = await f.fleet('d', 1);
    const jobId = await create({ targets: { devices: [d!] }, retries: { limit: 2 }, timeouts: { inProgressSeconds: 100 } });
    const getJob = f.store.getJob.bind(f.store);
    const looked: string[] = [];
    f.store.getJob = (id, options) => (looked.push(id), getJob(id, options));
    await f.complete(d!, 'FAILURE');
    let e = await f.execution(jobId, d!);
    assert.equal(e.status, 'QUEUED');
    assert.equal(e.attempt, 2);
    await f.tick();
    assert.equal((await f.desired(d!))?.jobId, `${jobId}.2`, 'the agent sees a new job id');
    // a late report about attempt 1 changes nothing
    await f.report(d!, { name: 'fw', version: '1.0.0', jobId, status: 'FAILURE', error: 'again' });
    assert.equal((await f.execution(jobId, d!)).status, 'QUEUED');
    f.advance(100_000);
    await f.tick(); // attempt 2 times out -> attempt 3
    await f.tick();
    e = await f.execution(jobId, d!);
    assert.equal(e.attempt, 3);
    assert.equal((await f.desired(d!))?.jobId, `${jobId}.3`);
    await f.complete(d!, 'FAILURE');
    e = await f.execution(jobId, d!);
    assert.equal(e.status, 'FAILED', 'the limit is reached');
    assert.deepEqual((e.details.attempts as any[]).map((a) => [a.attempt, a.status]), [[1, 'FAILED'], [2, 'TIMED_OUT']]);
    assert.deepEqual(looked.filter((id) => id !== jobId), [], 'an attempt\'s id (job.3) is never looked up as a job of its own');
  });

  it('aborts when failures pass the threshold after the minimum sample, and rolls failed devices back', async () => {
    const ids = await f.fleet('d', 10);
    const jobId = await create({ targets: { devices: ids }, plan: { maxPerMinute: 4 }, abort: { rules: [{ type: 'FAILED', thresholdPercent: 50, minFinished: 3 }], rollback: true } });
    f.advance(60_000);
    await f.tick();
    const sent = await sentTo(ids, jobId);
    assert.equal(sent.length, 5);
    await f.complete(sent[0]!, 'FAILURE');
    await f.complete(sent[1]!, 'FAILURE');
    await f.tick();
    assert.equal((await f.job(jobId)).status, 'IN_PROGRESS', 'two finished: below the minimum sample');
    await f.complete(sent[2]!);
    await f.tick();
    const job = await f.job(jobId);
    assert.equal(job.status, 'ABORTED');
    assert.match(String((job.progress as any).abortReason), /FAILED reached 66\.7% of 3 finished/);
    const c = await counts(jobId);
    assert.equal(c.CANCELED, 5 + 2, 'never-sent and sent-but-silent executions are canceled');
    assert.equal(c.FAILED, 2);
    const rolledBack = await f.desired(sent[0]!);
    assert.equal(rolledBack?.version, '1.0.0', 'the failed device is asked to run what it ran before');
    assert.equal(rolledBack?.jobId, `${jobId}.rollback`);
    assert.deepEqual((await f.execution(jobId, sent[0]!)).details.rollback, { to: '1.0.0', at: f.clock.now });
    assert.equal((await f.desired(sent[2]!))?.jobId, jobId, 'a device that succeeded keeps the new version');
  });

  it('rolls back a device that fails after the abort (it was installing then)', async () => {
    const ids = await f.fleet('d', 3);
    const jobId = await create({ targets: { devices: ids }, abort: { rules: [{ type: 'FAILED', thresholdPercent: 50, minFinished: 2 }], rollback: true } });
    await f.tick();
    const [late, ...rest] = ids;
    const cmd = await f.desired(late!);
    const base = { name: 'fw', version: '1.0.0', jobId: cmd!.jobId as string };
    await f.report(late!, { ...base, status: 'INSTALLING' });
    for (const id of rest) await f.complete(id, 'FAILURE');
    await f.tick();
    assert.equal((await f.job(jobId)).status, 'ABORTED');
    assert.equal((await f.desired(late!))?.jobId, jobId, 'an install under way is left to finish');
    f.advance(1000);
    await f.report(late!, { ...base, status: 'FAILURE', error: 'health check failed' });
    assert.equal((await f.execution(jobId, late!)).status, 'FAILED');
    const desired = await f.desired(late!);
    assert.equal(desired?.jobId, `${jobId}.rollback`, 'the late failure is rolled back too');
    assert.equal(desired?.version, '1.0.0');
    assert.deepEqual((await f.execution(jobId, late!)).details.rollback, { to: '1.0.0', at: f.clock.now });
  });

  it('does not roll back a failed device that a later job has asked for another build since', async () => {
    const ids = await f.fleet('d', 3);
    const jobId = await create({ targets: { devices: ids }, abort: { rules: [{ type: 'FAILED', thresholdPercent: 50, minFinished: 2 }], rollback: true } });
    await f.tick();
    await f.complete(ids[0]!, 'FAILURE');
    // the operator deploys another job to that device before the first one aborts
    const later = await create({ targets: { devices: [ids[0]!] } });
    await f.tick();
    assert.equal((await f.desired(ids[0]!))?.jobId, later);
    await f.complete(ids[1]!, 'FAILURE');
    await f.tick();
    assert.equal((await f.job(jobId)).status, 'ABORTED');
    assert.equal((await f.desired(ids[0]!))?.jobId, later, "the later job's command stays");
    assert.deepEqual((await f.execution(jobId, ids[0]!)).details.rollback, { to: null, skipped: `the device was asked for job ${later} since`, at: f.clock.now });
    assert.equal((await f.desired(ids[1]!))?.jobId, `${jobId}.rollback`, 'the other failed device is rolled back');
  });

  it('cancels: queued end CANCELED, downloading devices are told to stop, installing ones finish', async () => {
    const ids = await f.fleet('d', 4);
    const jobId = await create({ targets: { devices: ids }, plan: { maxPerMinute: 2 } });
    f.advance(60_000);
    await f.tick();
    const [downloading, installing, silent] = await sentTo(ids, jobId);
    await f.report(downloading!, { name: 'fw', version: '1.0.0', jobId, status: 'DOWNLOADING', progress: 0.3 });
    await f.report(installing!, { name: 'fw', version: '1.0.0', jobId, status: 'INSTALLING' });
    const view = await f.rollouts.jobs.cancel(jobId);
    assert.equal(view.job.status, 'CANCELED');
    assert.equal((await f.execution(jobId, 'd004')).status, 'CANCELED', 'never sent');
    assert.equal((await f.execution(jobId, silent!)).status, 'CANCELED', 'sent, never started');
    const stay = await f.desired(downloading!);
    assert.equal(stay?.jobId, `${jobId}.cancel`, 'a stay command calls the download off');
    assert.equal(stay?.version, '1.0.0');
    assert.equal((await f.execution(jobId, downloading!)).details.cancelRequested, true);
    assert.equal((await f.desired(installing!))?.jobId, jobId, 'an install under way is left to finish');
    // the agent reports the superseded download as a failure: that is the cancellation
    await f.report(downloading!, { name: 'fw', version: '1.0.0', jobId, status: 'FAILURE', error: `superseded by job ${jobId}.cancel` });
    const stopped = await f.execution(jobId, downloading!);
    assert.equal(stopped.status, 'CANCELED');
    assert.equal(stopped.details.error, 'job canceled by an operator', "the job's reason, as for the executions the cancel ended itself");
    assert.equal(stopped.details.deviceError, `superseded by job ${jobId}.cancel`, "the device's words kept beside it");
    await f.report(installing!, { name: 'fw', version: '2.0.0', jobId, status: 'SUCCESS' });
    assert.equal((await f.execution(jobId, installing!)).status, 'SUCCEEDED');
    await assert.rejects(f.rollouts.jobs.cancel(jobId), /is CANCELED/);
  });

  /**
   * Cancels `jobId` while device `d` answers its stay command the moment the replica commits
   * it, as a fast agent does: `answer` runs then, straight into the tracker (as the report's
   * own commit would reach it, no store round trip first). The execution, once it is done.
   */
  async function cancelAnsweredAtOnce(d: string, jobId: string, answer: () => Promise<void>) {
    let answered: Promise<void> | undefined;
    const off = f.events.on('shadow.updated', ({ current }) => {
      const cmd = current.state.desired?.software as { jobId?: string } | undefined;
      if (current.deviceId === d && cmd?.jobId === `${jobId}.cancel` && !answered) answered = answer();
    });
    try {
      await f.rollouts.jobs.cancel(jobId);
      assert.ok(answered, 'the device was told to stop');
      await answered;
    } finally {
      off();
    }
    return f.execution(jobId, d);
  }
  const stopConfirmed = (d: string, jobId: string) => f.tracker.apply(d, { name: 'fw', version: '1.0.0', jobId, status: 'FAILURE', error: `superseded by job ${jobId}.cancel` });

  it('records CANCELED a device that confirms the stop as soon as it is told, before the cancel has marked its execution', async () => {
    const [d] = await f.fleet('d', 1);
    const jobId = await create({ targets: { devices: [d!] } });
    await f.tick();
    await f.report(d!, { name: 'fw', version: '1.0.0', jobId, status: 'DOWNLOADING', progress: 0.3 });
    const e = await cancelAnsweredAtOnce(d!, jobId, () => stopConfirmed(d!, jobId));
    assert.equal(e.status, 'CANCELED', 'its FAILURE is the confirmation of the stop, not a failure');
    assert.equal(e.details.error, 'job canceled by an operator');
  });

  it('records CANCELED a device that has its command, reports it is downloading while the cancel runs, and confirms the stop', async () => {
    const [d] = await f.fleet('d', 1);
    const jobId = await create({ targets: { devices: [d!] } });
    await f.tick();
    assert.equal((await f.execution(jobId, d!)).status, 'QUEUED', 'dispatched, nothing reported yet');
    // the cancel reads the execution QUEUED; the device's DOWNLOADING report, in flight, lands
    // as the command is taken back, and the device confirms the stop right after
    const e = await cancelAnsweredAtOnce(d!, jobId, async () => {
      await f.tracker.apply(d!, { name: 'fw', version: '1.0.0', jobId, status: 'DOWNLOADING', progress: 0.1 });
      await stopConfirmed(d!, jobId);
    });
    assert.equal(e.status, 'CANCELED', 'its FAILURE is the confirmation of the stop, not a failure');
    assert.equal(e.details.error, 'job canceled by an operator');
  });

  it('does not retry an install that fails after its job was canceled', async () => {
    const [d] = await f.fleet('d', 1);
    const jobId = await create({ targets: { devices: [d!] }, retries: { limit: 2 } });
    await f.report(d!, { name: 'fw', version: '1.0.0', jobId, status: 'INSTALLING' }); // the job is known to be in progress
    assert.equal((await f.rollouts.jobs.cancel(jobId)).job.status, 'CANCELED');
    // the install under way was left to finish, and fails
    await f.report(d!, { name: 'fw', version: '1.0.0', jobId, status: 'FAILURE', error: 'flash write failed' });
    const e = await f.execution(jobId, d!);
    assert.equal(e.status, 'FAILED', 'a canceled job takes no new attempt');
    assert.equal(e.attempt ?? 1, 1);
    await f.tick();
    assert.notEqual((await f.desired(d!))?.jobId, `${jobId}.2`, 'and sends none');
  });

  it('takes back a retry when the job is canceled between the tracker\'s read of it and the retry', async () => {
    const [d] = await f.fleet('d', 1);
    const jobId = await create({ targets: { devices: [d!] }, retries: { limit: 2 } });
    await f.report(d!, { name: 'fw', version: '1.0.0', jobId, status: 'INSTALLING' });
    // the cancel commits, and passes over the executions, right after the tracker has read
    // the job as active for the FAILED report below (the real store, the real cancel)
    const getJob = f.store.getJob.bind(f.store);
    let raced = false;
    f.store.getJob = async (id, options) => {
      const found = await getJob(id, options);
      if (!raced && id === jobId && options?.omitSpec && found?.status === 'IN_PROGRESS') {
        raced = true;
        assert.equal((await f.rollouts.jobs.cancel(jobId)).job.status, 'CANCELED');
        assert.equal((await f.store.getExecution(jobId, d!))?.status, 'FAILED', 'the cancel passed when the install had failed');
      }
      return found;
    };
    await f.report(d!, { name: 'fw', version: '1.0.0', jobId, status: 'FAILURE', error: 'flash write failed' });
    await f.tracker.idle();
    assert.ok(raced, 'the cancel landed between the read and the retry');
    const e = await f.execution(jobId, d!);
    assert.equal(e.status, 'FAILED', 'the retry of a canceled job is taken back');
    assert.equal(e.attempt ?? 1, 1);
    assert.equal(e.details.error, 'flash write failed');
    await f.tick();
    assert.notEqual((await f.desired(d!))?.jobId, `${jobId}.2`, 'and no new attempt is sent');
  });

  it('pause stops sending; resume continues in the same wave', async () => {
    const ids = await f.fleet('d', 6);
    const jobId = await create({ targets: { devices: ids }, plan: { maxPerMinute: 2 } });
    await f.rollouts.jobs.pause(jobId);
    f.advance(120_000);
    await f.tick();
    assert.equal((await sentTo(ids, jobId)).length, 1);
    await assert.rejects(f.rollouts.jobs.pause(jobId), /is PAUSED/);
    await f.rollouts.jobs.resume(jobId);
    await f.tick();
    assert.equal((await sentTo(ids, jobId)).length, 2, 'the rate window restarts at resume');
  });

  it('refuses a downgrade for that device unless the job allows it', async () => {
    const [old] = await f.fleet('old', 1, '1.0.0');
    const [newer] = await f.fleet('new', 1, '3.1.0');
    const jobId = await create({ targets: { devices: [old!, newer!] } });
    const refused = await f.execution(jobId, newer!);
    assert.equal(refused.status, 'REJECTED');
    assert.match(String(refused.details.error), /downgrade refused: the device runs 3\.1\.0, the job installs 2\.0\.0/);
    assert.equal(await f.desired(newer!), undefined, 'nothing was sent');
    assert.equal((await f.execution(jobId, old!)).status, 'QUEUED');
    const allowed = await create({ targets: { devices: [newer!] }, allowDowngrade: true });
    assert.equal((await f.desired(newer!))?.jobId, allowed);
  });

  it('a continuous job picks up devices that match its query later', async () => {
    await f.fleet('eu', 2, '1.0.0', { tags: ['region:eu'] });
    const jobId = await create({ type: 'continuous', targets: { query: 'tags.region = eu and reported.software.version < 2' } });
    assert.equal((await f.rollouts.jobs.view(jobId)).total, 2);
    await f.fleet('late', 1, '1.5.0', { tags: ['region:eu'] });
    await f.fleet('us', 1, '1.0.0', { tags: ['region:us'] });
    f.advance(61_000);
    await f.tick();
    await f.tick();
    const view = await f.rollouts.jobs.view(jobId);
    assert.equal(view.total, 3);
    await f.tick();
    assert.equal((await f.job(jobId)).progress?.total, 3, "the job's count of devices (the job list's) follows");
    assert.equal((await f.desired('late001'))?.jobId, jobId);
    assert.equal(await f.desired('us001'), undefined);
    for (const d of ['eu001', 'eu002', 'late001']) await f.complete(d);
    await f.tick();
    assert.equal((await f.job(jobId)).status, 'IN_PROGRESS', 'a continuous job does not complete by itself');
  });

  it('refuses a continuous job with waves that starts empty (its canary would be skipped); with one wave it may start empty', async () => {
    await f.fleet('eu', 1, '1.0.0', { tags: ['region:eu'] });
    const body = { type: 'continuous', targets: { query: 'tags.region = us' }, plan: { waves: [{ count: 5, successThreshold: 100 }, { percent: 100 }] } };
    await assert.rejects(create(body), /the target set is empty, and a continuous job's waves are drawn from the devices it targets at its creation .*its 1 first wave\(s\) would be skipped/);
    await assert.rejects(f.rollouts.jobs.preview({ artifact: 'fw@2.0.0', ...body }), /its 1 first wave\(s\) would be skipped/, 'the dry run says so too');
    assert.equal((await f.store.listJobs({ limit: 10 })).items.length, 0, 'nothing written');
    // with devices at creation, the waves are drawn from them
    const jobId = await create({ ...body, targets: { query: 'tags.region = eu' } });
    assert.equal((await f.job(jobId)).status, 'IN_PROGRESS');
    const one = await create({ type: 'continuous', targets: { query: 'tags.region = us' } });
    assert.equal((await f.job(one)).progress?.total, 0);
  });

  it('lets the event loop turn while it begins sending a large batch of commands', async () => {
    const ids = await f.fleet('d', 450, '1.0.0', { tags: ['big'] });
    // each command begins with a read of its device: note whether the loop turned since the first
    const getDevice = f.store.getDevice.bind(f.store);
    let calls = 0;
    let turned = false;
    let turnedAtLast = false;
    f.store.getDevice = (id) => {
      if (calls++ === 0) setImmediate(() => (turned = true));
      turnedAtLast = turned;
      return getDevice(id);
    };
    const jobId = await create({ targets: { query: 'tags = big' } });
    assert.equal(calls, 450, 'one read per command, all sent by the job\'s first step');
    assert.ok(turnedAtLast, 'the last commands began after a turn of the event loop');
    assert.equal((await sentTo(ids, jobId)).length, 450);
  });

  it('a continuous job takes a matching device as it comes online, without waiting for its next scan', async () => {
    await f.fleet('eu', 1, '1.0.0', { tags: ['region:eu'] });
    const jobId = await create({ type: 'continuous', targets: { query: 'tags.region = eu' } });
    await f.tick(); // scanned; the next scan is a minute away on the fake clock, which stays put
    await f.fleet('late', 1, '1.0.0', { tags: ['region:eu'] });
    await f.fleet('us', 1, '1.0.0', { tags: ['region:us'] });
    for (const id of ['late001', 'us001']) f.events.emit('device.presence', { deviceId: id, online: true });
    await eventually(async () => (await f.store.getExecution(jobId, 'late001')) ?? undefined, 10_000, 'late001 joined the job');
    await f.tick();
    assert.equal((await f.desired('late001'))?.jobId, jobId, 'its command went out');
    assert.equal(await f.store.getExecution(jobId, 'us001'), undefined, 'a device that does not match stays out');
    assert.equal((await f.rollouts.jobs.view(jobId)).total, 2);
    // coming online again adds nothing twice
    f.events.emit('device.presence', { deviceId: 'late001', online: true });
    await f.tick();
    assert.equal((await f.rollouts.jobs.view(jobId)).total, 2);
  });

  it('a continuous job takes up a device id deleted and registered again: a new device', async () => {
    const [done, midway] = await f.fleet('eu', 2, '1.0.0', { tags: ['region:eu'] });
    const jobId = await create({ type: 'continuous', targets: { query: 'tags.region = eu' } });
    await f.tick();
    await f.complete(done!);
    await f.report(midway!, { name: 'fw', version: '1.0.0', jobId, status: 'DOWNLOADING', progress: 0.1 });
    const decommission = { store: f.store, registry: f.registry, replica: f.replica, events: f.events, now: () => f.clock.now };
    for (const id of [done!, midway!]) await decommissionDevice(decommission, id);
    assert.equal((await f.execution(jobId, done!)).status, 'SUCCEEDED', 'a finished execution stays, the record of which job reached it');
    assert.equal((await f.execution(jobId, midway!)).status, 'REMOVED');
    // new hardware under the same ids, running the old build
    f.advance(1000);
    await f.fleet('eu', 2, '1.0.0', { tags: ['region:eu'] });
    await presence(true, done!, midway!);
    for (const id of [done!, midway!]) {
      const e = await eventually(async () => {
        const cur = await f.execution(jobId, id);
        return cur.status === 'QUEUED' ? cur : undefined;
      }, 10_000, `${id} queued again`);
      assert.equal(e.attempt, 2, 'a new attempt: a device-side job id the new device never saw');
      assert.equal((e.details.attempts as JsonObject[])[0]!.deviceDeletedAt, f.clock.now - 1000, "the deleted device's outcome is kept");
      assert.equal(e.details.previous, undefined, "what the deleted device ran is not the new one's");
    }
    await f.tick();
    for (const id of [done!, midway!]) {
      assert.equal((await f.desired(id))?.jobId, `${jobId}.2`);
      await f.complete(id);
      assert.equal((await f.execution(jobId, id)).status, 'SUCCEEDED');
    }
    // coming online again changes nothing
    await presence(true, done!);
    await f.tick();
    assert.equal((await f.execution(jobId, done!)).attempt, 2);
  });

  it('a continuous job on a static group checks a device coming online without reading the member list', async () => {
    await f.fleet('eu', 1);
    await f.rollouts.groups.create({ name: 'eu', devices: ['eu001'] });
    const jobId = await create({ type: 'continuous', targets: { groups: ['eu'] } });
    await f.tick(); // scanned; the clock stays put, so no other scan comes
    await f.fleet('late', 1);
    await f.fleet('us', 1);
    await f.rollouts.groups.changeMembers('eu', ['late001'], undefined);
    // a static group lists up to 100,000 devices: an arrival asks for itself, not for the list
    let listsRead = 0;
    let arrivalsDone = 0;
    const { getGroup, listUndispatchedOfDevice } = { getGroup: f.store.getGroup.bind(f.store), listUndispatchedOfDevice: f.store.listUndispatchedOfDevice.bind(f.store) };
    f.store.getGroup = (name, o) => {
      if (!o?.omitDevices) listsRead++;
      return getGroup(name, o);
    };
    f.store.listUndispatchedOfDevice = (id) => {
      arrivalsDone++; // the engine's last read for an arrival, after its continuous jobs
      return listUndispatchedOfDevice(id);
    };
    for (const id of ['late001', 'us001']) f.events.emit('device.presence', { deviceId: id, online: true });
    await eventually(async () => (arrivalsDone === 2 ? true : undefined), 10_000, 'both arrivals handled');
    assert.equal(listsRead, 0, 'no member list was read');
    assert.ok(await f.store.getExecution(jobId, 'late001'), 'the new member joined the job');
    assert.equal(await f.store.getExecution(jobId, 'us001'), undefined, 'a device outside the group stays out');
  });

  it('spaces a continuous job\'s scans by how long they take: at most 5% of the server', async () => {
    await f.fleet('eu', 2, '1.0.0', { tags: ['region:eu'] });
    const jobId = await create({ type: 'continuous', targets: { query: 'tags.region = eu' } });
    // a registry large enough that reading it takes 4 s (on the fake clock the engine measures with)
    const listDevices = f.store.listDevices.bind(f.store);
    f.store.listDevices = (o) => {
      f.advance(4_000);
      return listDevices(o);
    };
    f.advance(61_000);
    await f.tick(); // scans: 4 s, so the next waits 80 s, not the 60 s configured
    await f.fleet('late', 1, '1.0.0', { tags: ['region:eu'] });
    f.advance(70_000);
    await f.tick();
    assert.equal((await f.rollouts.jobs.view(jobId)).total, 2, 'not yet: 70 s after a 4 s scan');
    f.rollouts.engine.rescan(); // a group changed: still not before the spacing allows
    await f.tick();
    assert.equal((await f.rollouts.jobs.view(jobId)).total, 2, 'a group change waits for the spacing too');
    f.advance(11_000);
    await f.tick();
    assert.equal((await f.rollouts.jobs.view(jobId)).total, 3, '81 s after: the late device is in');
  });

  it('catches up after a restart without holding the event loop: commands out are read page by page', async () => {
    const ids = await f.fleet('u', 1_200);
    await create({ targets: { devices: ids } });
    await f.tick();
    assert.equal((await Promise.all(ids.map((id) => f.desired(id)))).filter(Boolean).length, 1_200, 'every command is out');
    // on start the engine reads each such device's shadow (a report may have missed its execution)
    let reads = 0;
    const read = f.store.getShadow.bind(f.store);
    f.store.getShadow = (deviceId: string, name: string) => {
      reads++;
      return read(deviceId, name);
    };
    let sampling = true;
    let last = 0;
    let mostBetweenTurns = 0;
    const sample = () => {
      mostBetweenTurns = Math.max(mostBetweenTurns, reads - last);
      last = reads;
      if (sampling) setImmediate(sample);
    };
    try {
      setImmediate(sample);
      await f.restart();
    } finally {
      sampling = false;
      sample(); // the reads since the last turn
      delete (f.store as Partial<typeof f.store>).getShadow;
    }
    assert.ok(reads >= 1_200, `${reads} shadow reads on start`);
    assert.ok(mostBetweenTurns < 1_200, `at most ${mostBetweenTurns} reads between two turns of the event loop`);
  });

  it('survives a restart: progress, waves and deadlines come from the store', async () => {
    const ids = await f.fleet('d', 6);
    const jobId = await create({ targets: { devices: ids }, plan: { waves: [{ count: 2 }, {}] }, timeouts: { inProgressSeconds: 300 } });
    await f.complete('d001');
    // d002's SUCCESS reaches the shadow, but the process dies before the execution is written
    const cmd = await f.desired('d002');
    await f.rollouts.stop();
    await f.tracker.stop();
    await f.replica.update({ deviceId: 'd002', name: '' }, { state: { reported: { software: { name: 'fw', version: '2.0.0', jobId: cmd!.jobId!, status: 'SUCCESS' } } } }, { kind: 'device', id: 'd002' });
    assert.equal((await f.store.getExecution(jobId, 'd002'))?.status, 'QUEUED', 'the report is not recorded yet');
    await f.restart();
    assert.equal((await f.execution(jobId, 'd002')).status, 'SUCCEEDED', 'recovered from the shadow on start');
    await f.tick();
    await f.tick();
    assert.equal((await sentTo(ids, jobId)).length, 6, 'the rollout continues with the next wave');
    f.advance(300_000);
    await f.tick();
    assert.equal((await counts(jobId)).TIMED_OUT, 4, 'deadlines survive the restart');
  });
});
