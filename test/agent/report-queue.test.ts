/** The agent's report queue: in order, one in flight, a job's waiting reports coalesced, outcomes kept. */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { ReportQueue } from '../../src/agent/report-queue.ts';
import type { JsonObject } from '../../src/protocol/json.ts';

/** A send whose answers the test releases one by one. */
function gatedSend() {
  const sent: JsonObject[] = [];
  const gates: (() => void)[] = [];
  const send = (software: JsonObject) =>
    new Promise<JsonObject>((resolve) => {
      sent.push(software);
      gates.push(() => resolve({ version: sent.length, status: software.status ?? null }));
    });
  const release = async () => {
    while (gates.length === 0) await new Promise((r) => setImmediate(r));
    gates.shift()!();
    await new Promise((r) => setImmediate(r));
  };
  return { sent, send, release };
}

it('sends every phase while answers come back before the next one', async () => {
  const g = gatedSend();
  const q = new ReportQueue(g.send);
  for (const status of ['DOWNLOADING', 'VERIFYING', 'INSTALLING', 'SUCCESS']) {
    const acked = q.submit({ jobId: 'j1', status });
    await g.release();
    assert.equal((await acked).status, status);
  }
  assert.deepEqual(g.sent.map((s) => s.status), ['DOWNLOADING', 'VERIFYING', 'INSTALLING', 'SUCCESS']);
});

it("replaces a job's waiting reports by its latest while one is in flight, and answers every caller", async () => {
  const g = gatedSend();
  const q = new ReportQueue(g.send);
  const acks = ['DOWNLOADING', 'VERIFYING', 'INSTALLING', 'SUCCESS'].map((status) => q.submit({ jobId: 'j1', status }));
  await g.release(); // DOWNLOADING answered; SUCCESS goes next, in place of VERIFYING and INSTALLING
  await g.release();
  const answers = await Promise.all(acks);
  assert.deepEqual(g.sent.map((s) => s.status), ['DOWNLOADING', 'SUCCESS']);
  assert.deepEqual(answers.map((a) => a.status), ['DOWNLOADING', 'SUCCESS', 'SUCCESS', 'SUCCESS']);
});

it('never replaces an outcome, nor another job', async () => {
  const g = gatedSend();
  const q = new ReportQueue(g.send);
  const acks = [q.submit({ jobId: 'j0', status: 'INSTALLING' }), q.submit({ jobId: 'j1', status: 'FAILURE', error: 'x' }), q.submit({ jobId: 'j1', status: 'DOWNLOADING' }), q.submit({ jobId: 'j2', status: 'DOWNLOADING' })];
  for (let i = 0; i < 4; i++) await g.release();
  await Promise.all(acks);
  assert.deepEqual(g.sent.map((s) => `${s.jobId}:${s.status}`), ['j0:INSTALLING', 'j1:FAILURE', 'j1:DOWNLOADING', 'j2:DOWNLOADING']);
});

it("paces a job's progress and phase reports, sends its first report and its outcome at once", async () => {
  const g = gatedSend();
  const q = new ReportQueue(g.send, { intervalMs: 60_000 });
  const first = q.submit({ jobId: 'j1', status: 'DOWNLOADING' });
  await g.release();
  assert.equal((await first).status, 'DOWNLOADING', "a job's first report is not held back");
  const phases = ['VERIFYING', 'INSTALLING'].map((status) => q.submit({ jobId: 'j1', status }));
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
  assert.deepEqual(g.sent.map((s) => s.status), ['DOWNLOADING'], 'phases wait for the pace (one a minute here)');
  const outcome = q.submit({ jobId: 'j1', status: 'SUCCESS' });
  await g.release();
  const answers = await Promise.all([...phases, outcome]);
  assert.deepEqual(g.sent.map((s) => s.status), ['DOWNLOADING', 'SUCCESS'], 'the outcome replaced the waiting phase and went at once');
  assert.deepEqual(answers.map((a) => a.status), ['SUCCESS', 'SUCCESS', 'SUCCESS']);
  // another job's first report is not held back by this job's pace
  const other = q.submit({ jobId: 'j2', status: 'DOWNLOADING' });
  await g.release();
  assert.equal((await other).status, 'DOWNLOADING');
});

it('sends a paced report once its interval has passed', async () => {
  const g = gatedSend();
  const q = new ReportQueue(g.send, { intervalMs: 30 });
  const acks = [q.submit({ jobId: 'j1', status: 'DOWNLOADING' })];
  await g.release();
  acks.push(q.submit({ jobId: 'j1', status: 'INSTALLING' }));
  await g.release(); // waits until the pace lets INSTALLING go
  const answers = await Promise.all(acks);
  assert.deepEqual(answers.map((a) => a.status), ['DOWNLOADING', 'INSTALLING']);
});

it('stretches the pace when answers are slow (backpressure), whatever the interval', async () => {
  const g = gatedSend();
  const q = new ReportQueue(g.send, { intervalMs: 0 });
  const first = q.submit({ jobId: 'j1', status: 'DOWNLOADING' });
  await new Promise((r) => setTimeout(r, 40)); // the server takes 40 ms to answer
  await g.release();
  await first;
  const phase = q.submit({ jobId: 'j1', status: 'VERIFYING' });
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
  assert.deepEqual(g.sent.map((s) => s.status), ['DOWNLOADING'], 'ten round trips (about 400 ms) before the next phase report');
  const outcome = q.submit({ jobId: 'j1', status: 'SUCCESS' });
  await g.release();
  assert.deepEqual((await Promise.all([phase, outcome])).map((a) => a.status), ['SUCCESS', 'SUCCESS']);
  assert.deepEqual(g.sent.map((s) => s.status), ['DOWNLOADING', 'SUCCESS']);
});

it('folds a phase that is over before it settled into the next report, and sends one that lasts', async () => {
  const g = gatedSend();
  const q = new ReportQueue(g.send, { settleMs: 60_000 });
  const first = q.submit({ jobId: 'j1', status: 'DOWNLOADING' });
  await g.release();
  await first;
  // past the round-trip pace of DOWNLOADING's answer (ten times a few ms), so only the settle holds INSTALLING
  await new Promise((r) => setTimeout(r, 50));
  // INSTALLING has not lasted a minute when SUCCESS comes: one report, the outcome, answers both
  const acks = [q.submit({ jobId: 'j1', status: 'INSTALLING' }), q.submit({ jobId: 'j1', status: 'SUCCESS' })];
  await g.release();
  assert.deepEqual((await Promise.all(acks)).map((a) => a.status), ['SUCCESS', 'SUCCESS']);
  assert.deepEqual(g.sent.map((s) => s.status), ['DOWNLOADING', 'SUCCESS']);

  // a phase that outlasts a short settle is reported on its own
  const h = gatedSend();
  const r = new ReportQueue(h.send, { settleMs: 1 });
  const start = r.submit({ jobId: 'j2', status: 'DOWNLOADING' });
  await h.release();
  await start;
  const installing = r.submit({ jobId: 'j2', status: 'INSTALLING' });
  await h.release();
  assert.equal((await installing).status, 'INSTALLING');
  assert.deepEqual(h.sent.map((s) => s.status), ['DOWNLOADING', 'INSTALLING']);
});

it('paces on the clock it is given, not the wall clock', { timeout: 10_000 }, async () => {
  const g = gatedSend();
  let t = 0;
  const q = new ReportQueue(g.send, { intervalMs: 60_000, clock: { now: () => t } });
  const first = q.submit({ jobId: 'j1', status: 'DOWNLOADING' });
  await g.release();
  await first;
  const verifying = q.submit({ jobId: 'j1', status: 'VERIFYING' });
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
  assert.deepEqual(g.sent.map((s) => s.status), ['DOWNLOADING'], 'held for the minute');
  t += 60_000; // a minute passes on the clock; the next report wakes the queue to look again
  const installing = q.submit({ jobId: 'j1', status: 'INSTALLING' });
  await g.release();
  assert.deepEqual((await Promise.all([verifying, installing])).map((a) => a.status), ['INSTALLING', 'INSTALLING']);
  assert.deepEqual(g.sent.map((s) => s.status), ['DOWNLOADING', 'INSTALLING']);
});

/** Runs `fn` with Date.now() shifted by whatever `shift.ms` holds meanwhile (a stepped wall clock). */
async function withSteppedWallClock<T>(shift: { ms: number }, fn: () => Promise<T>): Promise<T> {
  const realNow = Date.now;
  Date.now = () => realNow() + shift.ms;
  try {
    return await fn();
  } finally {
    Date.now = realNow;
  }
}

it('sends the next phase after the wall clock stepped back an hour', { timeout: 10_000 }, async () => {
  const shift = { ms: 0 };
  await withSteppedWallClock(shift, async () => {
    const g = gatedSend();
    const q = new ReportQueue(g.send, { intervalMs: 30 });
    const first = q.submit({ jobId: 'j1', status: 'DOWNLOADING' });
    await g.release();
    await first;
    shift.ms = -3_600_000; // NTP corrects an RTC kept in local time
    const installing = q.submit({ jobId: 'j1', status: 'INSTALLING' });
    await g.release(); // waits until the pace (30 ms, not an hour) lets INSTALLING go
    assert.equal((await installing).status, 'INSTALLING');
  });
});

it('does not stretch the pace by a wall-clock step forward during a round trip', { timeout: 10_000 }, async () => {
  const shift = { ms: 0 };
  await withSteppedWallClock(shift, async () => {
    const g = gatedSend();
    const q = new ReportQueue(g.send, { intervalMs: 30 });
    const first = q.submit({ jobId: 'j1', status: 'DOWNLOADING' });
    shift.ms = 3_600_000; // while the first report is on its way
    await g.release();
    await first;
    const installing = q.submit({ jobId: 'j1', status: 'INSTALLING' });
    await g.release(); // ten round trips of a few ms, not ten hours
    assert.equal((await installing).status, 'INSTALLING');
  });
});

/** Lets the queue's timers and promises run a few turns. */
const turns = async (n = 20) => {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
};

it('stretches the pace by slow answers at most maxPaceMs: a 2 s round trip holds the next phase until 10 s after the last report, not 20 s', { timeout: 10_000 }, async () => {
  const g = gatedSend();
  let t = 0;
  const q = new ReportQueue(g.send, { intervalMs: 0, clock: { now: () => t } });
  const first = q.submit({ jobId: 'j1', status: 'DOWNLOADING' });
  await turns();
  t += 2_000; // answered 2 s after it was sent (a server restarting, or swamped)
  await g.release();
  await first;
  const verifying = q.submit({ jobId: 'j1', status: 'VERIFYING' });
  await turns();
  assert.deepEqual(g.sent.map((s) => s.status), ['DOWNLOADING'], 'held while the pace runs');
  t = 9_999; // just before the cap (MAX_PACE_MS) after DOWNLOADING was sent; a newer report wakes the queue to look again
  const early = q.submit({ jobId: 'j1', status: 'VERIFYING', progress: 0.2 });
  await turns();
  assert.deepEqual(g.sent.map((s) => s.status), ['DOWNLOADING'], 'still held 1 ms before the cap');
  t = 10_000; // the cap
  const progressed = q.submit({ jobId: 'j1', status: 'VERIFYING', progress: 0.5 });
  await g.release();
  assert.deepEqual((await Promise.all([verifying, early, progressed])).map((a) => a.status), ['VERIFYING', 'VERIFYING', 'VERIFYING'], 'sent 10 s after the last report, not ten round trips (20 s)');
  assert.deepEqual(g.sent.map((s) => s.status), ['DOWNLOADING', 'VERIFYING']);
});

it('does not take the round trip of a report sent across a lost connection as the pace', { timeout: 10_000 }, async () => {
  const g = gatedSend();
  let t = 0;
  const q = new ReportQueue(g.send, { intervalMs: 0, clock: { now: () => t } });
  const first = q.submit({ jobId: 'j1', status: 'DOWNLOADING' });
  await turns();
  q.connection(false); // the connection drops while DOWNLOADING is on its way
  t += 5_000; // answered after the reconnect, 5 s later
  q.connection(true);
  await g.release();
  await first;
  const verifying = q.submit({ jobId: 'j1', status: 'VERIFYING' });
  await turns();
  assert.deepEqual(g.sent.map((s) => s.status), ['DOWNLOADING', 'VERIFYING'], 'sent at once, not held for ten times the outage (50 s, or the 10 s cap)');
  t += 300; // VERIFYING answered 300 ms later, the connection up all along: the server's pace, taken
  await g.release();
  assert.equal((await verifying).status, 'VERIFYING');
  const installing = q.submit({ jobId: 'j1', status: 'INSTALLING' });
  await turns();
  assert.deepEqual(g.sent.map((s) => s.status), ['DOWNLOADING', 'VERIFYING'], 'held for ten round trips of VERIFYING (3 s)');
  t += 3_000;
  const progressed = q.submit({ jobId: 'j1', status: 'INSTALLING', progress: 0.5 }); // wakes the queue to look again
  await g.release();
  assert.deepEqual((await Promise.all([installing, progressed])).map((a) => a.status), ['INSTALLING', 'INSTALLING'], 'sent once 3 s passed');
  assert.deepEqual(g.sent.map((s) => s.status), ['DOWNLOADING', 'VERIFYING', 'INSTALLING']);
});

it('does not take the round trip of a report sent while offline as the pace (the outage until the reconnect)', { timeout: 10_000 }, async () => {
  const g = gatedSend();
  let t = 0;
  const q = new ReportQueue(g.send, { intervalMs: 1_000, clock: { now: () => t } });
  q.connection(false); // offline, nothing on its way
  const first = q.submit({ jobId: 'j1', status: 'DOWNLOADING' });
  await turns();
  t += 5_000; // the reconnect comes 5 s later, and the answer with it
  q.connection(true);
  await g.release();
  await first;
  t += 1_000; // the interval passes
  const verifying = q.submit({ jobId: 'j1', status: 'VERIFYING' });
  await g.release(); // held for the interval only, not ten times the outage (50 s, or the 10 s cap)
  assert.equal((await verifying).status, 'VERIFYING', 'sent once the interval passed');
  assert.deepEqual(g.sent.map((s) => s.status), ['DOWNLOADING', 'VERIFYING']);
});
