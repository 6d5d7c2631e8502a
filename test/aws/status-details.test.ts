/**
 * AWS Jobs `statusDetails` over MQTT with a real server: what the thing's shadow cannot take
 * is the device's InvalidRequest, not an InternalError it would retry.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { TestClient, connectDevice } from '../helpers/mqtt-client.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact, deploy, executionStatus } from './support.ts';

const jobs = (thing: string, rest: string) => `$aws/things/${thing}/jobs/${rest}`;

describe('AWS Jobs statusDetails', () => {
  let ts: TestServer;
  let dev: TestClient;

  before(async () => {
    ts = await startTestServer();
    dev = await connectDevice(ts, 'sd-1');
    await dev.subscribe(jobs('sd-1', '#'));
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
    const update = jobs('sd-1', `${jobId}/update`);
    // JSON.parse keeps "__proto__" as a key of its own (an object literal would not)
    const proto = await dev.request(update, { status: 'IN_PROGRESS', statusDetails: JSON.parse('{"__proto__":"x"}') });
    assert.equal(proto.topic, `${update}/rejected`);
    assert.equal(proto.body.code, 'InvalidRequest', proto.body.message);
    assert.match(proto.body.message, /Invalid attribute name "__proto__"/);
    // within AWS's limits (10 entries of up to 1,024 characters), beyond the shadow's 8 KiB
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
});
