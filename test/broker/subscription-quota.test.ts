/**
 * What one device connection may hold in subscriptions on the embedded broker: at most
 * `mqtt.maxSubscriptions` distinct filters (SUBACK 0x80 beyond, the connection stays), and no
 * filter that no protocol topic could match. Operators are not limited. A QA pass held
 * 100,000 filters on one device connection before this. Real server, real MQTT over TCP.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { SETTINGS } from '../../src/config/schema.ts';
import { connectDevice, TestClient } from '../helpers/mqtt-client.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

const LIMIT = SETTINGS.find((s) => s.path === 'mqtt.maxSubscriptions')!.default as number;

/** `n` distinct filters under the device's own topics, each as QA's: long and with a wildcard. */
const filters = (id: string, from: number, n: number) => Array.from({ length: n }, (_, i) => `state/${id}/${'x'.repeat(200)}/${from + i}/+`);

describe('embedded broker: subscriptions one device connection may hold', () => {
  let ts: TestServer;
  before(async () => {
    ts = await startTestServer();
  });
  after(async () => {
    await ts.close();
  });

  it(`grants a device mqtt.maxSubscriptions (${LIMIT}) filters, refuses one more with 0x80; again a held one takes no place, an unsubscribe frees one`, async () => {
    const dev = await connectDevice(ts, 'subs-1');
    try {
      // the agent's own subscriptions first: they count like any other
      assert.deepEqual(await dev.subscribe('state/subs-1/update/delta', 'state/subs-1/+/accepted', 'state/subs-1/+/rejected'), [1, 1, 1]);
      const granted = await dev.client.subscribeAsync(filters('subs-1', 0, LIMIT - 3), { qos: 0 });
      assert.equal(granted.filter((g) => g.qos === 0).length, LIMIT - 3);
      assert.deepEqual(await dev.subscribe(filters('subs-1', 1000, 1)[0]!), [128], 'one more is refused');
      assert.equal(dev.client.connected, true, 'the connection stays');
      // subscribing again to a filter it holds replaces that subscription [MQTT-3.8.4-3]
      assert.deepEqual(await dev.subscribe(filters('subs-1', 0, 1)[0]!), [1]);
      assert.deepEqual(await dev.subscribe(filters('subs-1', 1001, 1)[0]!), [128]);
      // an unsubscribe frees a place, for one filter
      await dev.client.unsubscribeAsync(filters('subs-1', 5, 1)[0]!);
      assert.deepEqual(await dev.subscribe(filters('subs-1', 1002, 1)[0]!), [1]);
      assert.deepEqual(await dev.subscribe(filters('subs-1', 1003, 1)[0]!), [128]);
      // the device is still served on what it holds
      assert.equal((await dev.request('state/subs-1/update', { state: { reported: { ok: true } } })).topic, 'state/subs-1/update/accepted');
    } finally {
      await dev.end();
    }
    // a new connection starts from nothing
    const { secret } = await ts.server.registry.register({ deviceId: 'subs-1b' });
    const again = await TestClient.connect(ts.mqttUrl, 'subs-1b', { username: 'subs-1b', password: secret });
    try {
      const granted = await again.client.subscribeAsync(filters('subs-1b', 0, LIMIT), { qos: 0 });
      assert.equal(granted.filter((g) => g.qos === 0).length, LIMIT);
      assert.deepEqual(await again.subscribe(filters('subs-1b', LIMIT, 1)[0]!), [128]);
    } finally {
      await again.end();
    }
  });

  it('refuses a filter no protocol topic could match (too long, too deep), and grants the longest one that can', async () => {
    const id = 'd'.repeat(128);
    const name = 'n'.repeat(128);
    const dev = await connectDevice(ts, id);
    try {
      assert.deepEqual(await dev.subscribe(`state/${id}/${'x'.repeat(600)}/+`), [128], 'too long');
      assert.deepEqual(await dev.subscribe(`state/${id}/a/b/c/d/e/f/g`), [128], '9 levels');
      assert.deepEqual(await dev.subscribe(`$aws/things/${id}/shadow/name/${name}/update/documents`, `$aws/things/${id}/shadow/name/${name}/update/#`, `state/${id}/shadow/${name}/+/+/#`), [1, 1, 1]);
      assert.equal(dev.client.connected, true);
    } finally {
      await dev.end();
    }
  });

  it('a persistent session keeps only the filters granted: none refused by the ACL or past the limit, which aedes would store with the packet', async () => {
    const { secret } = await ts.server.registry.register({ deviceId: 'subs-p' });
    const options = { username: 'subs-p', password: secret, clean: false };
    // aedes's own persistence, as its session store holds it (no protocol message shows it)
    const stored = async () => {
      const aedes = (ts.server.broker as unknown as { aedes: { persistence: { subscriptionsByClient(c: { id: string }): Promise<{ topic: string }[]> } } }).aedes;
      return (await aedes.persistence.subscriptionsByClient({ id: 'subs-p' })).map((s) => s.topic).sort();
    };
    const own = filters('subs-p', 0, LIMIT);
    const dev = await TestClient.connect(ts.mqttUrl, 'subs-p', options);
    try {
      // one packet: another device's topic (ACL), the limit's worth of its own, three more past it
      const packet = ['state/other/update/delta', ...own, ...filters('subs-p', 1000, 3)];
      const granted = await dev.client.subscribeAsync(packet, { qos: 0 }).catch((err: { packet?: { granted?: number[] } }) => err.packet?.granted?.map((qos) => ({ qos })));
      assert.deepEqual(granted?.map((g) => g.qos), [128, ...own.map(() => 0), 128, 128, 128]);
    } finally {
      await dev.client.endAsync();
    }
    assert.deepEqual(await stored(), [...own].sort());
    // the session is restored on what was granted: a message on it reaches the device unasked
    const back = await TestClient.connect(ts.mqttUrl, 'subs-p', options);
    try {
      const op = await TestClient.connect(ts.mqttUrl, 'op-subs-p', { username: 'operator', password: ts.token });
      const topic = own[0]!.replace('+', 'x');
      await op.publish(topic, { hello: 1 });
      await op.end();
      assert.deepEqual((await back.next((m) => m.topic === topic)).body, { hello: 1 });
      assert.deepEqual(await stored(), [...own].sort());
    } finally {
      await back.client.endAsync();
    }
  });

  it('does not limit the operator', async () => {
    const op = await TestClient.connect(ts.mqttUrl, 'op-subs', { username: 'operator', password: ts.token });
    try {
      const granted = await op.client.subscribeAsync(filters('any', 0, LIMIT + 10), { qos: 0 });
      assert.equal(granted.filter((g) => g.qos === 0).length, LIMIT + 10);
    } finally {
      await op.end();
    }
  });
});
