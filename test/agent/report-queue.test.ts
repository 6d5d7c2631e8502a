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
