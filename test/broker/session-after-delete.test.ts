/**
 * A device's persistent MQTT session (`clean: false`: its subscriptions and the QoS 1
 * messages queued while it was away) belongs to the device, not to its id: a device deleted
 * and registered again under the same id (another physical device, maybe) starts without it.
 * Observed over MQTT on the embedded broker (a raw client shows the CONNACK's session present flag).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { IConnackPacket, Packet } from 'mqtt-packet';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';
import { isPublish, publish, RawClient } from './raw-mqtt-client.ts';

describe("a device's persistent MQTT session", () => {
  let ts: TestServer;
  const api = (method: string, route: string) => fetch(`${ts.httpUrl}${route}`, { method, headers: { authorization: `Bearer ${ts.token}` } });
  before(async () => {
    ts = await startTestServer();
  });
  after(() => ts.close());

  const delta = (id: string) => `state/${id}/update/delta`;
  const port = () => ts.server.broker.port;

  /** Resolves once `id`'s connection has ended and the broker handled its end (aedes emits the disconnect last). */
  const offline = (id: string) =>
    new Promise<void>((resolve) => {
      const off = ts.server.events.on('device.presence', (e) => {
        if (e.deviceId === id && !e.online) (off(), resolve());
      });
    });

  /**
   * Connects `id` with a persistent session, subscribed at QoS 1 to its delta topic, leaves,
   * and has the server send it a message while it is away: what the broker queues for it.
   */
  async function leaveWithQueuedMessage(id: string, secret: string, marker: string): Promise<void> {
    const c = await RawClient.connect(port(), id, secret, false);
    const ack = c.next((p) => p.cmd === 'suback');
    c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: delta(id), qos: 1 }] });
    assert.deepEqual((await ack as Packet & { granted: number[] }).granted, [1]);
    const gone = offline(id);
    await c.end();
    await gone;
    await ts.server.broker.publish(delta(id), JSON.stringify({ marker }), 1);
  }

  /**
   * Connects `id` with a persistent session and reports what it resumed: the CONNACK's session
   * present flag, and the messages on its delta topic it receives, queued ones and one sent
   * after it connected, before a message on a topic it subscribes to now (the barrier: aedes
   * writes a session's queue right after its CONNACK, and one client's messages in order).
   */
  async function resume(id: string, secret: string): Promise<{ sessionPresent: boolean; markers: string[] }> {
    const c = await RawClient.connect(port(), id, secret, false);
    try {
      const connack = c.received.find((p) => p.cmd === 'connack') as IConnackPacket;
      const barrier = `state/${id}/barrier`;
      const ack = c.next((p) => p.cmd === 'suback');
      c.send({ cmd: 'subscribe', messageId: 2, subscriptions: [{ topic: barrier, qos: 1 }] });
      await ack;
      await ts.server.broker.publish(delta(id), JSON.stringify({ marker: 'after' }), 1);
      await ts.server.broker.publish(barrier, '{}', 1);
      await c.next((p) => isPublish(p, barrier));
      const markers = c.received.filter((p) => isPublish(p, delta(id))).map((p) => (JSON.parse((p as Packet & { payload: Buffer }).payload.toString()) as { marker: string }).marker);
      return { sessionPresent: connack.sessionPresent, markers };
    } finally {
      await c.end();
    }
  }

  it('is resumed by the device itself, with what was queued for it (a control: what the cases below take away)', async () => {
    const secret = await registerDevice(ts, 'ps-keep');
    await leaveWithQueuedMessage('ps-keep', secret, 'queued');
    assert.deepEqual(await resume('ps-keep', secret), { sessionPresent: true, markers: ['queued', 'after'] });
  });

  it('once the device comes back with a clean session, none of its filters is counted as subscribed any more', async () => {
    const secret = await registerDevice(ts, 'ps-clean');
    await leaveWithQueuedMessage('ps-clean', secret, 'queued');
    assert.equal(ts.server.broker.hasSubscribers(delta('ps-clean')), true, 'the persistent session holds its filter while the device is away');
    const c = await RawClient.connect(port(), 'ps-clean', secret, true);
    try {
      // aedes empties the stored subscriptions of a clean session without an unsubscribe event
      assert.equal(ts.server.broker.hasSubscribers(delta('ps-clean')), false, 'the clean session subscribed to nothing');
    } finally {
      await c.end();
    }
  });

  it('does not pass to the device registered again under the id of a deleted one', async () => {
    const old = await registerDevice(ts, 'ps-del');
    await leaveWithQueuedMessage('ps-del', old, 'for-the-deleted-device');
    assert.equal((await api('DELETE', '/api/v1/devices/ps-del')).status, 200);
    assert.equal(ts.server.broker.hasSubscribers(delta('ps-del')), false, 'no subscription of the deleted device is counted');
    const secret = await registerDevice(ts, 'ps-del');
    assert.deepEqual(await resume('ps-del', secret), { sessionPresent: false, markers: [] });
  });

  it("does not hold the deleted device's QoS 2 messages against the next one's: its first is handled, not taken for a copy", async () => {
    const old = await registerDevice(ts, 'ps-q2');
    const update = (marker: string) => publish('state/ps-q2/update', { state: { reported: { marker } }, clientToken: marker }, 1);
    const first = await RawClient.connect(port(), 'ps-q2', old, false);
    first.send(update('old'));
    await first.next((p) => p.cmd === 'pubrec'); // its PUBREL withheld: awaiting it in the session
    const gone = offline('ps-q2');
    first.drop();
    await gone;
    assert.equal((await api('DELETE', '/api/v1/devices/ps-q2')).status, 200);
    const c = await RawClient.connect(port(), 'ps-q2', await registerDevice(ts, 'ps-q2'), false);
    try {
      await c.subscribe('state/ps-q2/update/+');
      c.send(update('new')); // the same packet id: a new message of a new session
      await c.next((p) => isPublish(p, 'state/ps-q2/update/accepted', 'new'));
    } finally {
      await c.end();
    }
  });

  it('ends with a revocation: the device reinstated starts a new one', async () => {
    const secret = await registerDevice(ts, 'ps-rev');
    await leaveWithQueuedMessage('ps-rev', secret, 'queued-before-revocation');
    assert.equal((await api('POST', '/api/v1/devices/ps-rev/revoke')).status, 200);
    await ts.server.broker.publish(delta('ps-rev'), JSON.stringify({ marker: 'while-revoked' }), 1);
    assert.equal((await api('POST', '/api/v1/devices/ps-rev/reinstate')).status, 200);
    assert.deepEqual(await resume('ps-rev', secret), { sessionPresent: false, markers: [] });
  });

  it('ends with a revocation that closes the connection holding it', async () => {
    const secret = await registerDevice(ts, 'ps-live');
    await leaveWithQueuedMessage('ps-live', secret, 'queued');
    const c = await RawClient.connect(port(), 'ps-live', secret, false);
    await c.next((p) => isPublish(p, delta('ps-live'))); // resumed, unacknowledged: in flight
    assert.equal((await api('POST', '/api/v1/devices/ps-live/revoke')).status, 200);
    await c.closed;
    assert.equal((await api('POST', '/api/v1/devices/ps-live/reinstate')).status, 200);
    assert.deepEqual(await resume('ps-live', secret), { sessionPresent: false, markers: [] });
  });

  it('stays with a new secret: the same device resumes it', async () => {
    const secret = await registerDevice(ts, 'ps-rot');
    await leaveWithQueuedMessage('ps-rot', secret, 'queued');
    const { secret: next } = await ts.server.registry.rotateSecret('ps-rot');
    assert.deepEqual(await resume('ps-rot', next), { sessionPresent: true, markers: ['queued', 'after'] });
  });
});
