/**
 * A device with a persistent session (`clean: false`) whose subscriptions overlap
 * (`state/{id}/#` and `state/{id}/update/delta`) gets its shadow's answers live, once each,
 * and nothing again at its next connection (forward-once.ts, `adoptQueue`). Real server,
 * mqtt.js over TCP.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import mqtt from 'mqtt';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';

describe('a persistent session with overlapping subscriptions (real server)', () => {
  let ts: TestServer;
  before(async () => {
    ts = await startTestServer();
  });
  after(() => ts.close());

  it("gets each shadow answer live, once, and none of them again after a reconnection", async () => {
    const id = 'overlap-1';
    const secret = await registerDevice(ts, id);
    const connect = async () => {
      const client = await mqtt.connectAsync(ts.mqttUrl, { clientId: id, username: id, password: secret, clean: false, reconnectPeriod: 0, connectTimeout: 5000 });
      const got: string[] = [];
      client.on('message', (topic, payload) => got.push(`${topic.slice(id.length + 7)} ${JSON.parse(payload.toString()).clientToken ?? ''}`));
      let closed = false;
      client.on('close', () => (closed = true));
      /** Resolves once `n` messages came, or the connection closed. */
      const received = (n: number) =>
        new Promise<void>((resolve) => {
          const check = () => (got.length >= n || closed) && resolve();
          client.on('message', check).on('close', check);
          check();
        });
      return { client, got, closed: () => closed, received };
    };
    const operator = await mqtt.connectAsync(ts.mqttUrl, { clientId: 'overlap-operator', username: 'operator', password: ts.token, reconnectPeriod: 0 });
    const dev = await connect();
    await dev.client.subscribeAsync({ [`state/${id}/#`]: { qos: 1 }, [`state/${id}/update/delta`]: { qos: 1 } });
    for (let i = 0; i < 3; i++) await operator.publishAsync(`state/${id}/update`, JSON.stringify({ state: { desired: { color: `c${i}` } }, clientToken: `c${i}` }), { qos: 1 });
    await dev.received(12);
    // each update: its echo, accepted, documents, delta; the delta (matching both filters) once.
    // Before the fix nothing came on this connection: it was closed ('no such packet'), and
    // the first accepted was lost
    const expected = ['c0', 'c1', 'c2'].flatMap((t) => [`update ${t}`, `update/accepted ${t}`, `update/documents ${t}`, `update/delta ${t}`]);
    assert.deepEqual([...dev.got].sort(), expected.sort());
    assert.equal(dev.closed(), false);
    await dev.client.endAsync();

    // everything was acknowledged: the next connection gets only what comes now
    const again = await connect();
    await operator.publishAsync(`state/${id}/marker`, '{}', { qos: 1 });
    await again.received(1);
    // anything sent again came before the marker (the queue goes out as the session resumes)
    assert.deepEqual(again.got, ['marker ']);
    await again.client.endAsync();
    await operator.endAsync();
  });
});
