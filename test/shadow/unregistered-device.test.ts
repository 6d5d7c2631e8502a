/**
 * A shadow is a registered device's: a sender other than a device (an operator over MQTT,
 * the server's own parts) cannot create one for an id no device has. Such a shadow was
 * inherited, version, desired state and update command, by the device registered later
 * under the id, which README promises is a new device with no shadow. Real server, real
 * MQTT over TCP, the QA pass's requests, on both doors.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { connectDevice, TestClient, type Received } from '../helpers/mqtt-client.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';
import { UpdraftError } from '../../src/errors.ts';

const notRegistered = (id: string) => `device ${id} is not registered; register it with: updraft device register ${id}`;
const SOFTWARE = { name: 'fw', version: '2.0.0', sha256: 'bc8cf646ed651c1212ef15e19f499e84b1bb40e2d0907217cf31b42514343039', size: 300000, jobId: 'qa-ghost-job-1' };

describe('shadow requests for an unregistered device id', () => {
  let ts: TestServer;
  let op: TestClient;
  before(async () => {
    ts = await startTestServer();
    op = await TestClient.connect(ts.mqttUrl, 'op-unreg', { username: 'operator', password: ts.token });
    await op.subscribe('state/+/+/accepted', 'state/+/+/rejected', 'state/+/shadow/+/+/accepted', 'state/+/shadow/+/+/rejected', '$aws/things/ghost-aws/shadow/#');
  });
  after(async () => {
    await op.end();
    await ts.close();
  });

  /** Publishes `body` with a fresh token as the operator; resolves with the answer on `<topic>/accepted|rejected`. */
  const ask = (topic: string, body: Record<string, unknown>): Promise<Received> => op.request(topic, body);
  const rejectedWith404 = (answer: Received, topic: string, id: string) => {
    assert.equal(answer.topic, `${topic}/rejected`);
    assert.deepEqual([answer.body.code, answer.body.message], [404, notRegistered(id)]);
  };

  it("refuses an operator's update, get and delete for an id no device has with 404, and writes nothing", async () => {
    rejectedWith404(await ask('state/ghost-1/update', { state: { desired: { x: 1 } } }), 'state/ghost-1/update', 'ghost-1');
    rejectedWith404(await ask('state/ghost-1/update', { state: { desired: { software: SOFTWARE } } }), 'state/ghost-1/update', 'ghost-1');
    rejectedWith404(await ask('state/ghost-1/shadow/cfg/update', { state: { desired: { x: 1 } } }), 'state/ghost-1/shadow/cfg/update', 'ghost-1');
    rejectedWith404(await ask('state/ghost-1/get', {}), 'state/ghost-1/get', 'ghost-1');
    rejectedWith404(await ask('state/ghost-1/delete', {}), 'state/ghost-1/delete', 'ghost-1');
    assert.deepEqual(await ts.server.store.listShadowNames('ghost-1'), [], 'no shadow, no tombstone');
  });

  it('refuses it on the $aws/things door too', async () => {
    const answer = await ask('$aws/things/ghost-aws/shadow/update', { state: { desired: { x: 1 } } });
    rejectedWith404(answer, '$aws/things/ghost-aws/shadow/update', 'ghost-aws');
    assert.equal(await ts.server.store.getShadow('ghost-aws', ''), undefined);
  });

  it('so the device registered later under the id is a new device: no shadow, no command', async () => {
    rejectedWith404(await ask('state/ghost-2/update', { state: { desired: { software: SOFTWARE } } }), 'state/ghost-2/update', 'ghost-2');
    const dev = await connectDevice(ts, 'ghost-2');
    try {
      await dev.subscribe('state/ghost-2/#');
      const got = await dev.request('state/ghost-2/get', {});
      assert.deepEqual([got.topic, got.body.code, got.body.message], ['state/ghost-2/get/rejected', 404, "No shadow exists with name: 'ghost-2'"]);
      const first = await dev.request('state/ghost-2/update', { state: { reported: { software: { name: 'fw', version: '1.0.0', status: 'IDLE' } } } });
      assert.equal(first.topic, 'state/ghost-2/update/accepted');
      assert.equal(first.body.version, 1);
      assert.equal(dev.log.find((m) => m.topic === 'state/ghost-2/update/delta'), undefined, 'no update command');
      // registered now: the operator's requests are taken, creating included
      assert.equal((await ask('state/ghost-2/update', { state: { desired: { x: 1 } } })).topic, 'state/ghost-2/update/accepted');
      assert.equal((await ask('state/ghost-2/shadow/cfg/update', { state: { desired: { x: 1 } } })).topic, 'state/ghost-2/shadow/cfg/update/accepted');
      const missing = await ask('state/ghost-2/shadow/none/get', {});
      assert.deepEqual([missing.body.code, missing.body.message], [404, "No shadow exists with name: 'none'"]);
    } finally {
      await dev.end();
    }
  });

  it("refuses the server's own callers for an unregistered id and takes them for a registered one", async () => {
    const operator = { kind: 'operator' as const, id: 'test' };
    await assert.rejects(ts.server.replica.update({ deviceId: 'ghost-3', name: '' }, { state: { desired: { x: 1 } } }, operator), (err: unknown) => err instanceof UpdraftError && err.code === 'NOT_FOUND' && err.message === notRegistered('ghost-3'));
    assert.equal(await ts.server.store.getShadow('ghost-3', ''), undefined);
    await registerDevice(ts, 'known-3');
    const record = await ts.server.replica.update({ deviceId: 'known-3', name: '' }, { state: { desired: { x: 1 } } }, operator);
    assert.equal(record.version, 1);
  });

  it('agrees with device delete: once a device is deleted, its id takes no shadow from an operator', async () => {
    const dev = await connectDevice(ts, 'gone-4');
    await dev.subscribe('state/gone-4/#');
    assert.equal((await dev.request('state/gone-4/update', { state: { reported: { x: 1 } } })).topic, 'state/gone-4/update/accepted');
    await dev.end();
    const deleted = await fetch(`${ts.httpUrl}/api/v1/devices/gone-4`, { method: 'DELETE', headers: { authorization: `Bearer ${ts.token}` } });
    assert.equal(deleted.status, 200);
    assert.deepEqual((await deleted.json()).shadowsDeleted, ['']);
    rejectedWith404(await ask('state/gone-4/update', { state: { desired: { software: SOFTWARE } } }), 'state/gone-4/update', 'gone-4');
    rejectedWith404(await ask('state/gone-4/get', {}), 'state/gone-4/get', 'gone-4');
    assert.equal((await ts.server.store.getShadow('gone-4', ''))?.deleted, true, 'the tombstone only');
  });
});
