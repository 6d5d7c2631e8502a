/**
 * The delta a shadow update publishes and the one `ShadowReplica.resendDelta` publishes again
 * (jobs/disruption-resync.ts) come from one place (replica.ts publishDelta): same topic, QoS 1,
 * payload (the update's clientToken aside), the update command with a signed URL; nothing
 * built for a device that does not listen; none for a shadow with no delta. A real server, its
 * embedded broker over TCP, its SQLite store, MQTT.js clients.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { answerTopic } from '../../src/protocol/topics.ts';
import { eventually } from '../helpers/cli.ts';
import { TestClient, connectDevice } from '../helpers/mqtt-client.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact, deploy } from '../security/support.ts';

type Delta = { topic: string; qos: number; body: any };

describe('the delta an update publishes, and published again (resendDelta)', () => {
  let ts: TestServer;
  let dev: TestClient;
  let op: TestClient;
  const deltas: Delta[] = [];
  const topic = answerTopic({ deviceId: 'dp-1', name: '' }, 'update', 'delta');

  before(async () => {
    ts = await startTestServer();
    dev = await connectDevice(ts, 'dp-1');
    dev.client.on('message', (t, payload, packet) => {
      if (t === topic) deltas.push({ topic: t, qos: packet.qos, body: JSON.parse(payload.toString()) });
    });
    await dev.subscribe(topic, 'state/dp-1/update/accepted', 'state/dp-1/update/rejected');
    op = await TestClient.connect(ts.mqttUrl, 'op-dp', { username: 'operator', password: ts.token });
  });
  after(async () => {
    await op.end();
    await dev.end();
    await ts.close();
  });

  /** The next delta after `seen` of them. */
  const deltaAfter = (seen: number) => eventually(async () => deltas[seen], 10_000, `delta ${seen + 1} published`);

  it('publishes the same delta again, at QoS 1, without the clientToken; nothing when onlyIf refuses or there is no delta', async () => {
    await op.publish('state/dp-1/update', { state: { desired: { color: 'red', cfg: { a: 1 } } }, clientToken: 'tok-dp' });
    const first = await deltaAfter(0);
    assert.equal(first.qos, 1, 'the update path publishes its delta at QoS 1');
    assert.equal(first.body.clientToken, 'tok-dp', "the update path's delta carries the request's clientToken");
    assert.deepEqual(first.body.state, { color: 'red', cfg: { a: 1 } }, 'the delta of the update');

    assert.equal(await ts.server.replica.resendDelta('dp-1', () => false), 'none', 'onlyIf false: none');
    assert.equal(await ts.server.replica.resendDelta('dp-1'), 'sent', 'a delta and a listener: sent');
    const again = await deltaAfter(1);
    assert.equal(again.qos, 1, 'published again at QoS 1');
    const { clientToken: _t, timestamp: _a, ...firstRest } = first.body;
    const { timestamp: _b, ...againRest } = again.body;
    assert.equal(again.body.clientToken, undefined, 'no clientToken: no request asked for it');
    assert.deepEqual(againRest, firstRest, 'the same state, metadata and version');
    assert.equal(typeof again.body.timestamp, 'number', 'a timestamp');
    assert.equal(deltas.length, 2, 'onlyIf false published nothing');

    // the device reports what is desired: no delta, nothing to send, listener or not
    await dev.request('state/dp-1/update', { state: { reported: { color: 'red', cfg: { a: 1 } } } });
    assert.equal(await ts.server.replica.resendDelta('dp-1'), 'none', 'no delta: none');
    assert.equal(await ts.server.replica.resendDelta('dp-nobody'), 'none', 'no shadow: none');
  });

  it("an offline device's delta is neither built nor sent: unheard; with no delta it is none", async () => {
    await registerDevice(ts, 'dp-off');
    await op.publish('state/dp-off/update', { state: { desired: { color: 'blue' } }, clientToken: 'tok-off' });
    await eventually(async () => ((await ts.server.store.getShadow('dp-off', ''))?.state.desired?.color === 'blue' ? true : undefined), 10_000, 'the desired state written');
    assert.equal(await ts.server.replica.resendDelta('dp-off'), 'unheard', 'a delta nobody listens for: unheard');
    await ts.server.replica.update({ deviceId: 'dp-off', name: '' }, { state: { reported: { color: 'blue' } } }, { kind: 'device', id: 'dp-off' });
    assert.equal(await ts.server.replica.resendDelta('dp-off'), 'none', 'no delta and nobody listening: none (the shadow asks for nothing)');
  });

  it("a job's command: the update path's delta and the one sent again both carry it with a signed URL", async () => {
    await addArtifact(ts, '2.0.0', Buffer.from('fw 2.0.0 '.repeat(300)));
    const seen = deltas.length;
    const jobId = await deploy(ts, ['dp-1'], 'fw@2.0.0');
    const sent = await eventually(async () => deltas.slice(seen).find((d) => d.body.state.software?.jobId?.startsWith(jobId)), 30_000, 'the command sent');
    assert.equal(await ts.server.replica.resendDelta('dp-1'), 'sent', 'the command published again');
    const resent = await deltaAfter(deltas.indexOf(sent) + 1);
    for (const [what, d] of [['sent', sent], ['sent again', resent]] as const) {
      assert.equal(d.qos, 1, `${what}: QoS 1`);
      assert.equal(d.body.state.software.version, '2.0.0', `${what}: the job's version`);
      assert.match(d.body.state.software.url, /^https?:\/\//, `${what}: a signed URL (decorate)`);
      assert.equal(typeof d.body.state.software.urlExpiresAt, 'number', `${what}: its expiry`);
    }
    assert.equal(resent.body.state.software.jobId, sent.body.state.software.jobId, 'the same command');
    assert.equal(resent.body.version, sent.body.version, 'at the same shadow version');
  });
});
