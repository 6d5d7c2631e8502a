/**
 * AWS Jobs `statusDetails` over MQTT with a real server: checked against AWS's limits; what
 * the thing's shadow cannot take is the device's InvalidRequest, not an InternalError it would
 * retry; a finished execution keeps them after the shadow has moved on to the next job.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { eventually } from '../helpers/cli.ts';
import { TestClient, connectDevice } from '../helpers/mqtt-client.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact, deploy, executionStatus } from './support.ts';

const jobs = (thing: string, rest: string) => `$aws/things/${thing}/jobs/${rest}`;

describe('AWS Jobs statusDetails', () => {
  let ts: TestServer;
  let dev: TestClient;
  /** The jobs deployed by the tests, in order (each test goes on from the last). */
  const jobIds: string[] = [];

  before(async () => {
    ts = await startTestServer();
    dev = await connectDevice(ts, 'sd-1');
    await dev.subscribe(jobs('sd-1', '#'), '$aws/things/sd-1/shadow/update/+');
    await addArtifact(ts, '2.0.0');
  });
  after(async () => {
    await dev.end();
    await ts.close();
  });

  /** Deploys `artifact` to sd-1 and starts it; resolves with the job id. */
  async function started(artifact: string): Promise<string> {
    const jobId = await deploy(ts, ['sd-1'], artifact);
    await dev.next((m) => m.topic === jobs('sd-1', 'notify-next') && m.body.execution?.jobId === jobId);
    const s = await dev.request(jobs('sd-1', 'start-next'), {});
    assert.deepEqual([s.body.execution?.jobId, s.body.execution?.status], [jobId, 'IN_PROGRESS']);
    return jobId;
  }

  it('an update the thing\'s shadow refuses is InvalidRequest, and nothing is recorded', async () => {
    const jobId = await started('fw@2.0.0');
    jobIds.push(jobId);
    const update = jobs('sd-1', `${jobId}/update`);
    // JSON.parse keeps "__proto__" as a key of its own (an object literal would not)
    const proto = await dev.request(update, { status: 'IN_PROGRESS', statusDetails: JSON.parse('{"__proto__":"x"}') });
    assert.equal(proto.topic, `${update}/rejected`);
    assert.equal(proto.body.code, 'InvalidRequest', proto.body.message);
    assert.match(proto.body.message, /Invalid attribute name "__proto__"/);
    // within AWS's limits (values of up to 1,024 characters), beyond the shadow's 8 KiB
    const big = Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`k${i}`, 'v'.repeat(1000)]));
    const tooLarge = await dev.request(update, { status: 'IN_PROGRESS', statusDetails: big });
    assert.equal(tooLarge.topic, `${update}/rejected`);
    assert.equal(tooLarge.body.code, 'InvalidRequest', tooLarge.body.message);
    assert.match(tooLarge.body.message, /exceeds the maximum size/);
    assert.equal(await executionStatus(ts, jobId, 'sd-1'), 'IN_PROGRESS');
    const sw = (await ts.server.store.getShadow('sd-1', ''))?.state.reported?.software as Record<string, unknown>;
    assert.equal(sw.statusDetails, undefined);
    // another instance winning every write of the shadow: the replica gives up with a 429,
    // a moment's overload (RequestThrottled), not a fault of the server
    const store = ts.server.store;
    const putShadow = store.putShadow;
    store.putShadow = async (record, expected) => (record.deviceId === 'sd-1' ? false : putShadow.call(store, record, expected));
    try {
      const raced = await dev.request(update, { status: 'IN_PROGRESS', statusDetails: { step: 'raced' } });
      assert.equal(raced.body.code, 'RequestThrottled', raced.body.message);
    } finally {
      store.putShadow = putShadow;
    }
    const ok = await dev.request(update, { status: 'SUCCEEDED', statusDetails: { step: 'done' } });
    assert.equal(ok.topic, `${update}/accepted`);
  });

  it("statusDetails beyond AWS's limits are InvalidRequest, on start-next and update, and not stored", async () => {
    await addArtifact(ts, '3.0.0');
    const jobId = await deploy(ts, ['sd-1'], 'fw@3.0.0');
    jobIds.push(jobId);
    await dev.next((m) => m.topic === jobs('sd-1', 'notify-next') && m.body.execution?.jobId === jobId);
    const start = await dev.request(jobs('sd-1', 'start-next'), { statusDetails: { 'a b/c': 'x' } });
    assert.deepEqual([start.topic, start.body.code], [jobs('sd-1', 'start-next/rejected'), 'InvalidRequest']);
    assert.equal(await executionStatus(ts, jobId, 'sd-1'), 'QUEUED', 'not started');
    await dev.request(jobs('sd-1', 'start-next'), {});
    const update = jobs('sd-1', `${jobId}/update`);
    for (const statusDetails of [{ '': '' }, { 'a b/c': 'x' }, { reason: 'v'.repeat(1025) }, { reason: '' }, { reason: 'a\nb' }]) {
      const r = await dev.request(update, { status: 'IN_PROGRESS', statusDetails });
      assert.equal(r.topic, `${update}/rejected`, JSON.stringify(statusDetails));
      assert.equal(r.body.code, 'InvalidRequest', r.body.message);
      assert.match(r.body.message, /^statusDetails/, 'refused by the AWS rules, not by the shadow');
    }
    const sw = (await ts.server.store.getShadow('sd-1', ''))?.state.reported?.software as Record<string, unknown>;
    assert.equal(sw.statusDetails, undefined);
  });

  it("a finished execution keeps its statusDetails once another job is the thing's current one", async () => {
    const [first, second] = jobIds as [string, string];
    const failed = await dev.request(jobs('sd-1', `${second}/update`), { status: 'FAILED', statusDetails: { reason: 'disk full', code: 'E42' } });
    assert.equal(failed.topic, jobs('sd-1', `${second}/update/accepted`));
    const details = { reason: 'disk full', code: 'E42' };
    assert.deepEqual((await dev.request(jobs('sd-1', `${second}/get`), {})).body.execution.statusDetails, details);

    await addArtifact(ts, '4.0.0');
    const third = await deploy(ts, ['sd-1'], 'fw@4.0.0');
    jobIds.push(third);
    await dev.next((m) => m.topic === jobs('sd-1', 'notify-next') && m.body.execution?.jobId === third);
    const past = await dev.request(jobs('sd-1', `${second}/get`), {});
    assert.deepEqual([past.body.execution.status, past.body.execution.statusDetails], ['FAILED', details]);
    // the next job's first report replaces them in the shadow: the execution still has them
    const s3 = await dev.request(jobs('sd-1', 'start-next'), { statusDetails: { phase: 'DOWNLOADING' } });
    assert.deepEqual(s3.body.execution.statusDetails, { phase: 'DOWNLOADING' });
    assert.deepEqual((await dev.request(jobs('sd-1', `${second}/get`), {})).body.execution.statusDetails, details);
    const older = await dev.request(jobs('sd-1', `${first}/get`), {});
    assert.deepEqual([older.body.execution.status, older.body.execution.statusDetails], ['SUCCEEDED', { step: 'done' }]);
  });

  it('reads statusDetails a device wrote through its shadow as AWS bounds them', async () => {
    const third = jobIds[2]!;
    // reported.software is the device's to write: only the well-formed entries count, as many as
    // there are (AWS bounds their number nowhere; the shadow's size does)
    const junk: Record<string, unknown> = { 'bad key': 'x', n: 1, empty: '' };
    for (let i = 0; i < 12; i++) junk[`k${String(i).padStart(2, '0')}`] = `v${i}`;
    await dev.request('$aws/things/sd-1/shadow/update', { state: { reported: { software: { statusDetails: junk } } } });
    // merged into what start-next wrote: its phase, then these twelve
    const bounded = { phase: 'DOWNLOADING', ...Object.fromEntries(Array.from({ length: 12 }, (_, i) => [`k${String(i).padStart(2, '0')}`, `v${i}`])) };
    const current = await dev.request(jobs('sd-1', `${third}/get`), {});
    assert.deepEqual(current.body.execution.statusDetails, bounded);
    await eventuallyDetails(third, bounded);
    // cleared in the shadow, cleared on the execution
    await dev.request('$aws/things/sd-1/shadow/update', { state: { reported: { software: { statusDetails: null } } } });
    await eventuallyDetails(third, undefined);
  });

  it("takes what AWS documents: any number of entries, values of 1,024 characters counted as code points", async () => {
    const third = jobIds[2]!;
    const update = jobs('sd-1', `${third}/update`);
    // DetailsMap has no bound on its entries (the payload's and the shadow's sizes bound them);
    // a DetailsValue is 1 to 1,024 characters: 1,024 emoji (2,048 UTF-16 units) is one
    const details = { ...Object.fromEntries(Array.from({ length: 11 }, (_, i) => [`k${i}`, `v${i}`])), emoji: '😀'.repeat(1024) };
    const ok = await dev.request(update, { status: 'IN_PROGRESS', statusDetails: details, includeJobExecutionState: true });
    assert.equal(ok.topic, `${update}/accepted`, JSON.stringify(ok.body).slice(0, 300));
    assert.deepEqual(ok.body.executionState.statusDetails, details);
    assert.deepEqual((await dev.request(jobs('sd-1', `${third}/get`), {})).body.execution.statusDetails, details);
    await eventuallyDetails(third, details);
    const long = await dev.request(update, { status: 'IN_PROGRESS', statusDetails: { emoji: '😀'.repeat(1025) } });
    assert.deepEqual([long.topic, long.body.code, long.body.message], [`${update}/rejected`, 'InvalidRequest', 'statusDetails.emoji must be 1 to 1024 characters, not 1025']);
  });

  /** Waits until the execution of `jobId` on sd-1 records `details` (none: undefined). */
  async function eventuallyDetails(jobId: string, details: Record<string, string> | undefined): Promise<void> {
    await eventually(async () => {
      const got = (await ts.server.store.getExecution(jobId, 'sd-1'))?.details.statusDetails;
      return JSON.stringify(got) === JSON.stringify(details) ? true : undefined;
    }, 5000, `statusDetails ${JSON.stringify(details)} recorded on ${jobId}`);
  }
});
