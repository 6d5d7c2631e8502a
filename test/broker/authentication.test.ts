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
    const s3 = await ts.server.registry.rotateSecret('dev-2');
    assert.equal(await refused(ts.mqttUrl, { clientId: 'dev-2', username: 'dev-2', password: s3 }), 4, 'still revoked after a rotation');
    await ts.server.registry.reinstate('dev-2');
    assert.equal(await refused(ts.mqttUrl, { clientId: 'dev-2', username: 'dev-2', password: s2 }), 4, 'the old secret is dead');
    assert.equal(await refused(ts.mqttUrl, { clientId: 'dev-2', username: 'dev-2', password: s3 }), undefined);
  });

  it('stores only a hash of the secret', async () => {
    const stored = await ts.server.store.getDevice('dev-1');
    assert.ok(stored?.secretHash);
    assert.notEqual(stored.secretHash, secret);
    assert.ok(!JSON.stringify(stored).includes(secret));
  });
});
