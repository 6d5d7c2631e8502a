/**
 * A device request published at QoS 2 is handled once per message, however often the
 * device sends it again before its PUBREL ([MQTT-4.3.3-2]: a retransmission, with DUP, of a
 * PUBLISH whose PUBREC was lost; over the same connection or, with a persistent session,
 * after a reconnect). The QA pass saw each copy applied: two `update/accepted` (versions 9
 * and 10), and with a `version` in the request a 409 for one that had succeeded. A raw MQTT
 * client (raw-mqtt-client.ts) sends the copies, which MQTT.js never does by itself.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Packet } from 'mqtt-packet';
import { connackCode } from '../helpers/mqtt-client.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { isPublish, publish, RawClient } from './raw-mqtt-client.ts';

describe('QoS 2 device requests', () => {
  let ts: TestServer;
  before(async () => {
    ts = await startTestServer();
  });
  after(async () => {
    await ts.close();
  });

  /** A device with its own answers subscribed, at QoS 0 as the agent does. */
  async function device(id: string, clean = true): Promise<{ c: RawClient; secret: string }> {
    const { secret } = await ts.server.registry.register({ deviceId: id });
    const c = await RawClient.connect(ts.server.broker.port, id, secret, clean);
    await c.subscribe(`state/${id}/#`);
    return { c, secret };
  }

  /**
   * The shadow's version, by a `get` sent after everything else: the device's requests are
   * handled in order, so every answer of an earlier request has come before its answer.
   */
  async function version(c: RawClient, id: string, token: string): Promise<number> {
    const answer = c.next((p) => isPublish(p, `state/${id}/get/accepted`, token) || isPublish(p, `state/${id}/get/rejected`, token));
    c.send({ ...publish(`state/${id}/get`, { clientToken: token }, 0, 1), qos: 0, messageId: undefined });
    const body = JSON.parse(((await answer) as Packet & { payload: Buffer }).payload.toString()) as { version?: number; code?: number };
    return body.version ?? 0; // no shadow yet: 404
  }

  it('applies a retransmitted update once until its PUBREL; with its version, no 409 for the copy', async () => {
    const { c } = await device('q2-dev');
    const topic = 'state/q2-dev/update';
    const v0 = await version(c, 'q2-dev', 'g0');
    // the retransmission after the PUBREC (the device did not get it)
    const first = publish(topic, { state: { reported: { q2: 1 } }, clientToken: 'q2-a' }, 77);
    c.send(first);
    await c.next((p) => p.cmd === 'pubrec' && p.messageId === 77);
    c.send({ ...first, dup: true });
    await c.next((p) => p.cmd === 'pubrec' && p.messageId === 77 && c.count((q) => q.cmd === 'pubrec' && q.messageId === 77) === 2);
    c.send({ cmd: 'pubrel', messageId: 77 });
    await c.next((p) => p.cmd === 'pubcomp' && p.messageId === 77);
    assert.equal(await version(c, 'q2-dev', 'g1'), v0 + 1, 'the shadow was written once');
    assert.equal(c.count((p) => isPublish(p, `${topic}/accepted`, 'q2-a')), 1);

    // a conditional update and its copy read in one batch, while the first is being handled
    const conditional = publish(topic, { state: { reported: { q2: 2 } }, clientToken: 'q2-b', version: v0 + 1 }, 78);
    c.send(conditional, { ...conditional, dup: true });
    await c.next((p) => p.cmd === 'pubrec' && p.messageId === 78 && c.count((q) => q.cmd === 'pubrec' && q.messageId === 78) === 2);
    c.send({ cmd: 'pubrel', messageId: 78 });
    await c.next((p) => p.cmd === 'pubcomp' && p.messageId === 78);
    assert.equal(await version(c, 'q2-dev', 'g2'), v0 + 2);
    assert.equal(c.count((p) => isPublish(p, `${topic}/accepted`, 'q2-b')), 1);
    assert.equal(c.count((p) => isPublish(p, `${topic}/rejected`, 'q2-b')), 0, 'no Version conflict for the copy');

    // released, the packet id names a new message
    c.send(publish(topic, { state: { reported: { q2: 3 } }, clientToken: 'q2-c' }, 77));
    await c.next((p) => isPublish(p, `${topic}/accepted`, 'q2-c'));
    c.send({ cmd: 'pubrel', messageId: 77 });
    await c.next((p) => p.cmd === 'pubcomp' && p.messageId === 77 && c.count((q) => q.cmd === 'pubcomp' && q.messageId === 77) === 2);
    assert.equal(await version(c, 'q2-dev', 'g3'), v0 + 3);
    assert.equal((await ts.server.store.getShadow('q2-dev', ''))?.state.reported?.q2, 3);
    await c.end();
  });

  it('a persistent session remembers it across a reconnect; a clean one starts afresh', async () => {
    const { c, secret } = await device('q2-persist', false);
    const topic = 'state/q2-persist/update';
    const v0 = await version(c, 'q2-persist', 'g0');
    const request = publish(topic, { state: { reported: { resumed: 1 } }, clientToken: 'q2-r' }, 4242);
    c.send(request);
    await c.next((p) => p.cmd === 'pubrec' && p.messageId === 4242);
    c.drop(); // the PUBREC lost with the link
    const again = await RawClient.connect(ts.server.broker.port, 'q2-persist', secret, false);
    await again.subscribe('state/q2-persist/#');
    again.send({ ...request, dup: true });
    await again.next((p) => p.cmd === 'pubrec' && p.messageId === 4242);
    again.send({ cmd: 'pubrel', messageId: 4242 });
    await again.next((p) => p.cmd === 'pubcomp' && p.messageId === 4242);
    assert.equal(await version(again, 'q2-persist', 'g1'), v0 + 1, 'the resent request was not applied again');
    assert.equal(again.count((p) => isPublish(p, `${topic}/accepted`, 'q2-r')), 0, 'no second answer');
    again.drop();

    // a clean session keeps nothing of the one before it ([MQTT-3.1.2-6]): the same packet is a new message
    const clean = await RawClient.connect(ts.server.broker.port, 'q2-persist', secret, true);
    await clean.subscribe('state/q2-persist/#');
    const fresh = publish(topic, { state: { reported: { resumed: 2 } }, clientToken: 'q2-n' }, 4242);
    clean.send(fresh);
    await clean.next((p) => p.cmd === 'pubrec' && p.messageId === 4242);
    clean.drop();
    const clean2 = await RawClient.connect(ts.server.broker.port, 'q2-persist', secret, true);
    await clean2.subscribe('state/q2-persist/#');
    clean2.send({ ...fresh, dup: true });
    await clean2.next((p) => isPublish(p, `${topic}/accepted`, 'q2-n'));
    assert.equal(await version(clean2, 'q2-persist', 'g2'), v0 + 3);
    await clean2.end();
  });

  it('a persistent session after a clean one holds nothing of the sessions before it: their packet ids are new messages', async () => {
    const id = 'q2-after-clean';
    const topic = `state/${id}/update`;
    const offline = () =>
      new Promise<void>((resolve) => {
        const off = ts.server.events.on('device.presence', (e) => {
          if (e.deviceId === id && !e.online) (off(), resolve());
        });
      });
    const update = (messageId: number, clientToken: string) => publish(topic, { state: { reported: { n: messageId } }, clientToken }, messageId);
    // each leaves a message awaiting its PUBREL: the persistent session, then the clean one
    const { c: persistent, secret } = await device(id, false);
    persistent.send(update(11, 'q2-p'));
    await persistent.next((p) => p.cmd === 'pubrec' && p.messageId === 11);
    let gone = offline();
    persistent.drop();
    await gone;
    const clean = await RawClient.connect(ts.server.broker.port, id, secret, true);
    clean.send(update(12, 'q2-c'));
    await clean.next((p) => p.cmd === 'pubrec' && p.messageId === 12);
    gone = offline();
    clean.drop();
    await gone;
    // aedes emptied the id's store as the clean session began and as it ended ([MQTT-3.1.2-6])
    const next = await RawClient.connect(ts.server.broker.port, id, secret, false);
    await next.subscribe(`${topic}/+`);
    next.send(update(11, 'q2-p2'), update(12, 'q2-c2'));
    await next.next((p) => isPublish(p, `${topic}/accepted`, 'q2-p2'));
    await next.next((p) => isPublish(p, `${topic}/accepted`, 'q2-c2'));
    await next.end();
  });

  it("a CONNECT refused under a device's id, with a clean session, leaves the device's session alone", async () => {
    const id = 'q2-refused';
    const topic = `state/${id}/update`;
    const { c, secret } = await device(id, false);
    const v0 = await version(c, id, 'g0');
    const request = publish(topic, { state: { reported: { once: 1 } }, clientToken: 'q2-once' }, 31);
    c.send(request);
    await c.next((p) => p.cmd === 'pubrec' && p.messageId === 31);
    c.drop(); // the PUBREC lost with the link
    // someone without the secret connects under the device's id, asking for a clean session:
    // refused, it must not end the session it named ([MQTT-3.1.2-6] is for a session that begins)
    assert.equal(await connackCode(`mqtt://127.0.0.1:${ts.server.broker.port}`, { clientId: id, username: id, password: 'not-the-secret', clean: true }), 4);
    const again = await RawClient.connect(ts.server.broker.port, id, secret, false);
    await again.subscribe(`${topic}/+`);
    again.send({ ...request, dup: true });
    await again.next((p) => p.cmd === 'pubrec' && p.messageId === 31);
    again.send({ cmd: 'pubrel', messageId: 31 });
    await again.next((p) => p.cmd === 'pubcomp' && p.messageId === 31);
    assert.equal(await version(again, id, 'g1'), v0 + 1, 'the resent request was not applied again');
    assert.equal(again.count((p) => isPublish(p, `${topic}/accepted`, 'q2-once')), 0, 'no second answer');
    await again.end();
  });

  it('answers a retransmitted credentials request once', async () => {
    const { c } = await device('q2-cred');
    const request = publish('state/q2-cred/credentials/request', { clientToken: 'q2-cr' }, 9);
    c.send(request, { ...request, dup: true });
    await c.next((p) => p.cmd === 'pubrec' && p.messageId === 9 && c.count((q) => q.cmd === 'pubrec' && q.messageId === 9) === 2);
    c.send({ cmd: 'pubrel', messageId: 9 });
    await c.next((p) => p.cmd === 'pubcomp' && p.messageId === 9);
    await version(c, 'q2-cred', 'g'); // after any answer to the copies (the get is a 404 here)
    assert.equal(c.count((p) => isPublish(p, 'state/q2-cred/credentials/request/rejected', 'q2-cr')), 1, 'one answer: 404, no job');
    await c.end();
  });

  it('handles a QoS 1 retransmission again, as QoS 1 is at least once (the hot path keeps no state)', async () => {
    const { c } = await device('q1-dev');
    const topic = 'state/q1-dev/update';
    const v0 = await version(c, 'q1-dev', 'g0');
    const request = publish(topic, { state: { reported: { q1: 1 } }, clientToken: 'q1-a' }, 5, 1);
    c.send(request, { ...request, dup: true });
    await c.next((p) => p.cmd === 'puback' && p.messageId === 5 && c.count((q) => q.cmd === 'puback' && q.messageId === 5) === 2);
    assert.equal(await version(c, 'q1-dev', 'g1'), v0 + 2);
    assert.equal(c.count((p) => isPublish(p, `${topic}/accepted`, 'q1-a')), 2);
    await c.end();
  });
});
