/** Deny by default at CONNECT: only registered devices with their secret get in. */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { TestClient, connackCode as refused } from '../helpers/mqtt-client.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';

describe('device authentication', () => {
  let ts: TestServer;
  let secret: string;
  before(async () => {
    ts = await startTestServer();
    secret = await registerDevice(ts, 'dev-1');
  });
  after(() => ts.close());

  it('admits a registered device with its secret', async () => {
    const c = await TestClient.connect(ts.mqttUrl, 'dev-1', { username: 'dev-1', password: secret });
    assert.equal(c.client.connected, true);
    await c.end();
  });

  it('refuses unknown devices, wrong secrets, borrowed identities and a wrong operator token', async () => {
    assert.equal(await refused(ts.mqttUrl, { clientId: 'ghost', username: 'ghost', password: secret }), 4, 'unknown device');
    assert.equal(await refused(ts.mqttUrl, { clientId: 'dev-1', username: 'dev-1', password: 'wrong' }), 4, 'wrong secret');
    assert.equal(await refused(ts.mqttUrl, { clientId: 'dev-1' }), 4, 'no secret');
    assert.equal(await refused(ts.mqttUrl, { clientId: 'dev-2', username: 'dev-1', password: secret }), 4, "another device's credentials");
    assert.equal(await refused(ts.mqttUrl, { clientId: 'ops', username: 'operator', password: 'nope' }), 4, 'operator with a wrong token');
  });

  it('refuses a revoked device until it is reinstated; rotating its secret does not lift the revocation', async () => {
    const s2 = await registerDevice(ts, 'dev-2');
    await ts.server.registry.revoke('dev-2');
    assert.equal(await refused(ts.mqttUrl, { clientId: 'dev-2', username: 'dev-2', password: s2 }), 4);
    const { secret: s3 } = await ts.server.registry.rotateSecret('dev-2');
    assert.equal(await refused(ts.mqttUrl, { clientId: 'dev-2', username: 'dev-2', password: s3 }), 4, 'still revoked after a rotation');
    await ts.server.registry.reinstate('dev-2');
    assert.equal(await refused(ts.mqttUrl, { clientId: 'dev-2', username: 'dev-2', password: s2 }), 4, 'the old secret is dead');
    assert.equal(await refused(ts.mqttUrl, { clientId: 'dev-2', username: 'dev-2', password: s3 }), undefined);
  });

  /** Resolves once the broker has closed `c`'s connection (mqtt.js reconnects never here); rejects after 10 s. */
  const closed = (c: TestClient) =>
    new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${c.client.options.clientId}'s connection is still open`)), 10_000);
      c.client.once('close', () => (clearTimeout(timer), resolve()));
    });
  const api = async (route: string) => {
    const res = await fetch(`${ts.httpUrl}${route}`, { method: 'POST', headers: { authorization: `Bearer ${ts.token}` } });
    assert.equal(res.status, 200, await res.clone().text());
    return (await res.json()) as { disconnected: number | null; secret?: string };
  };

  it('closes the connection a device holds when it is revoked; its neighbour stays', async () => {
    const s4 = await registerDevice(ts, 'dev-4');
    const s5 = await registerDevice(ts, 'dev-5');
    const c4 = await TestClient.connect(ts.mqttUrl, 'dev-4', { username: 'dev-4', password: s4 });
    const c5 = await TestClient.connect(ts.mqttUrl, 'dev-5', { username: 'dev-5', password: s5 });
    await c5.subscribe('state/dev-5/get/+');
    const gone = closed(c4);
    assert.equal((await api('/api/v1/devices/dev-4/revoke')).disconnected, 1);
    await gone;
    assert.equal(await refused(ts.mqttUrl, { clientId: 'dev-4', username: 'dev-4', password: s4 }), 4, 'and refused at its next CONNECT');
    // the neighbour still talks: a request answered after the revocation
    assert.equal((await c5.request('state/dev-5/get', {})).topic, 'state/dev-5/get/rejected', 'no shadow yet, but answered');
    assert.equal(c5.client.connected, true);
    assert.equal((await api('/api/v1/devices/dev-4/revoke')).disconnected, 0, 'nothing left to close');
    await c5.end();
  });

  it('closes the connection the old secret opened when the secret is rotated; the new secret gets in', async () => {
    const s6 = await registerDevice(ts, 'dev-6');
    const c6 = await TestClient.connect(ts.mqttUrl, 'dev-6', { username: 'dev-6', password: s6 });
    const gone = closed(c6);
    const rotated = await api('/api/v1/devices/dev-6/rotate-secret');
    assert.equal(rotated.disconnected, 1);
    await gone;
    assert.equal(await refused(ts.mqttUrl, { clientId: 'dev-6', username: 'dev-6', password: s6 }), 4, 'the old secret');
    assert.equal(await refused(ts.mqttUrl, { clientId: 'dev-6', username: 'dev-6', password: rotated.secret! }), undefined, 'the new one');
  });

  it('stores only a hash of the secret', async () => {
    const stored = await ts.server.store.getDevice('dev-1');
    assert.ok(stored?.secretHash);
    assert.notEqual(stored.secretHash, secret);
    assert.ok(!JSON.stringify(stored).includes(secret));
  });
});
