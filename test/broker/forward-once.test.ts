/**
 * The embedded broker forwards every message to every matching connection, once
 * (src/broker/forward-once.ts): aedes dropped a QoS 1 message that a QoS 0 one, published
 * after it, had overtaken (aedes#994), and a copy per overlapping subscription stays one.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Authenticator } from '../../src/broker/authenticator.ts';
import { EmbeddedBroker } from '../../src/broker/embedded-broker.ts';
import { silentLogger } from '../../src/util/logger.ts';
import { TestClient } from '../helpers/mqtt-client.ts';

/** Everyone is an operator (who may subscribe to any topic). */
const operators: Authenticator = { authenticate: async (c) => ({ kind: 'operator' as const, id: c.clientId }) };

describe('each message forwarded once per connection (embedded broker)', () => {
  const broker = new EmbeddedBroker({ port: 0, host: '127.0.0.1', authenticator: operators, logger: silentLogger });
  let url: string;
  before(async () => {
    await broker.start();
    url = `mqtt://127.0.0.1:${broker.port}`;
  });
  after(() => broker.stop());

  it('delivers a QoS 1 message that a QoS 0 one published just after it overtook', async () => {
    const sub = await TestClient.connect(url, 'sub-order');
    assert.deepEqual(await sub.subscribe('news/#'), [1]);
    // the QoS 1 message waits for the session store before it is delivered, the QoS 0 one
    // does not: the second reaches the subscriber first
    const sent = Promise.all([broker.publish('news/first', 'qos 1, published first', 1), broker.publish('news/second', 'qos 0, published second', 0)]);
    const second = await sub.next((m) => m.topic === 'news/second');
    const first = await sub.next((m) => m.topic === 'news/first');
    await sent;
    assert.equal(first.body, 'qos 1, published first');
    assert.equal(second.body, 'qos 0, published second');
    await sub.end();
  });

  it('sends one copy to a connection whose subscriptions overlap, as before', async () => {
    const sub = await TestClient.connect(url, 'sub-overlap');
    assert.deepEqual(await sub.subscribe('news/#', 'news/a', 'news/+'), [1, 1, 1]);
    await broker.publish('news/a', 'once', 1);
    await broker.publish('news/a', 'qos 0 once', 0);
    // a later message: the copies of the earlier ones, if any, were written before it
    await broker.publish('news/b', 'marker', 1);
    await sub.next((m) => m.topic === 'news/b');
    assert.deepEqual(sub.log.map((m) => m.body), ['once', 'qos 0 once', 'marker']);
    await sub.end();
  });
});
