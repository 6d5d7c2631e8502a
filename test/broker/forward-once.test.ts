/**
 * The embedded broker forwards every message to every matching connection, once
 * (src/broker/forward-once.ts): aedes dropped a QoS 1 message that a QoS 0 one, published
 * after it, had overtaken (aedes#994), and a copy per overlapping subscription stays one.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Authenticator } from '../../src/broker/authenticator.ts';
import { EmbeddedBroker } from '../../src/broker/embedded-broker.ts';
import { matches } from '../../src/broker/topic-matcher.ts';
import { silentLogger } from '../../src/util/logger.ts';
import { TestClient } from '../helpers/mqtt-client.ts';
import mqtt from 'mqtt';

/** Everyone is an operator (who may subscribe to any topic). */
const operators: Authenticator = { authenticate: async (c) => ({ kind: 'operator' as const, id: c.clientId }) };

/** An embedded broker for one describe: started before its tests (its URL then given to `onUrl`), stopped after them. */
function suiteBroker(onUrl: (url: string) => void): EmbeddedBroker {
  const broker = new EmbeddedBroker({ port: 0, host: '127.0.0.1', authenticator: operators, logger: silentLogger });
  before(async () => {
    await broker.start();
    onUrl(`mqtt://127.0.0.1:${broker.port}`);
  });
  after(() => broker.stop());
  return broker;
}

describe('each message forwarded once per connection (embedded broker)', () => {
  let url: string;
  const broker = suiteBroker((u) => (url = u));

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

/** A connection that records what it receives, with each PUBLISH's QoS and DUP flag (mqtt.js PUBACKs and PUBCOMPs each). */
async function recording(url: string, clientId: string, clean: boolean) {
  const client = await mqtt.connectAsync(url, { clientId, clean, reconnectPeriod: 0, connectTimeout: 5000 });
  const got: { topic: string; body: string; qos: number; dup: boolean }[] = [];
  client.on('message', (topic, payload, packet) => got.push({ topic, body: payload.toString(), qos: packet.qos, dup: packet.dup }));
  let closed = false;
  client.on('close', () => (closed = true));
  /** Resolves once a message on `topic` came (rejects if the connection closed first). */
  const until = async (topic: string): Promise<void> => {
    for (;;) {
      if (got.some((m) => m.topic === topic)) return;
      if (closed) throw new Error(`connection closed before a message on ${topic}; got: ${got.map((m) => m.topic).join(', ')}`);
      await new Promise<void>((resolve) => client.once('message', () => resolve()).once('close', () => resolve()));
    }
  };
  /** Resolves once `n` messages came on topics other than `except` (rejects if the connection closed first). */
  const untilCount = async (n: number, except: string): Promise<void> => {
    for (;;) {
      if (got.filter((m) => m.topic !== except).length >= n) return;
      if (closed) throw new Error(`connection closed after ${got.length} messages: ${got.map((m) => m.topic).join(', ')}`);
      await new Promise<void>((resolve) => client.once('message', () => resolve()).once('close', () => resolve()));
    }
  };
  return { client, got, until, untilCount, get closed() { return closed; } };
}

/** A connection `recording` opened. */
type Recording = Awaited<ReturnType<typeof recording>>;

/**
 * A persistent session holding `subs` (overlapping filters under `<prefix>/`) gets a QoS 1
 * message on `<prefix>/a` once, at QoS 1, then a marker; at its next connection only the new
 * marker comes: nothing it was sent was left unacknowledged in its queue.
 */
async function onceAcrossConnections(broker: EmbeddedBroker, url: string, clientId: string, subs: Record<string, { qos: 0 | 1 | 2 }>, prefix: string): Promise<void> {
  const first = await recording(url, clientId, false);
  await first.client.subscribeAsync(subs);
  await broker.publish(`${prefix}/a`, 'live', 1);
  await broker.publish(`${prefix}/z`, 'marker', 1);
  await first.until(`${prefix}/z`);
  assert.deepEqual(first.got.map((m) => `${m.body} ${m.qos}`), ['live 1', 'marker 1']);
  await first.client.endAsync();
  const second = await recording(url, clientId, false);
  await broker.publish(`${prefix}/z`, 'marker 2', 1);
  await second.until(`${prefix}/z`);
  assert.deepEqual(second.got.map((m) => m.body), ['marker 2']);
  await second.client.endAsync();
}

describe('persistent sessions with overlapping subscriptions (embedded broker)', () => {
  let url: string;
  const broker = suiteBroker((u) => (url = u));

  it('delivers each message live, the connection kept, when a copy of one is not forwarded', async () => {
    const c = await recording(url, 'persist-live', false);
    await c.client.subscribeAsync({ 'news/#': { qos: 1 }, 'news/a': { qos: 1 } });
    // news/a's second copy is not forwarded; aedes then cleared from the session's queue the
    // first entry without a packet id: news/b's, not yet written, whose write then failed
    // ('no such packet') and closed the connection (QA: a shadow's accepted, then its delta)
    await Promise.all([broker.publish('news/b', 'answer', 1), broker.publish('news/a', 'delta', 1)]);
    await broker.publish('news/c', 'marker', 1);
    await c.until('news/c');
    assert.deepEqual(c.got.map((m) => m.topic), ['news/b', 'news/a', 'news/c']);
    assert.equal(c.closed, false);
    await c.client.endAsync();
  });

  it('does not send again at the next connection a message already acknowledged', async () => {
    const first = await recording(url, 'persist-acked', false);
    await first.client.subscribeAsync({ 'news/#': { qos: 1 }, 'news/a': { qos: 1 } });
    await first.client.endAsync();
    await broker.publish('news/a', 'queued while offline', 1);
    const second = await recording(url, 'persist-acked', false);
    await broker.publish('news/a', 'live', 1);
    await broker.publish('news/z', 'marker', 1);
    await second.until('news/z');
    // (the queued message and the live one may come in either order)
    assert.deepEqual(second.got.map((m) => m.body).sort(), ['live', 'marker', 'queued while offline']);
    await second.client.endAsync(); // after the PUBACKs: mqtt.js sent each as its message came
    // every message was acknowledged: nothing is left to send but what comes now (aedes
    // queued a copy per matching filter and the PUBACK removed one)
    const third = await recording(url, 'persist-acked', false);
    await broker.publish('news/z', 'marker 2', 1);
    await third.until('news/z');
    assert.deepEqual(third.got.map((m) => m.body), ['marker 2']);
    await third.client.endAsync();
  });
});

describe('the QoS of a message forwarded (embedded broker)', () => {
  let url: string;
  const broker = suiteBroker((u) => (url = u));

  it('is the highest QoS granted by the subscriptions that match [MQTT-3.3.5-1], in either order', async () => {
    const orders = [{ 'news/#': { qos: 0 as const }, 'news/+': { qos: 1 as const } }, { 'news/+': { qos: 1 as const }, 'news/#': { qos: 0 as const } }];
    const clients = await Promise.all(orders.map(async (subs, i) => {
      const c = await recording(url, `qos-max-${i}`, true);
      await c.client.subscribeAsync(subs);
      return c;
    }));
    await broker.publish('news/a', 'one', 1);
    await broker.publish('news/z/marker', 'marker', 1); // news/# only: QoS 0
    for (const c of clients) {
      await c.until('news/z/marker');
      // aedes forwarded the copy of whichever subscription came first: QoS 0 in one order
      assert.deepEqual(c.got.map((m) => `${m.topic} ${m.qos}`), ['news/a 1', 'news/z/marker 0']);
      await c.client.endAsync();
    }
  });

  it('is at most the QoS granted: a QoS 2 message reaches a QoS 1 subscription at QoS 1 [MQTT-3.8.4-6]', async () => {
    const c = await recording(url, 'qos-min', true);
    await c.client.subscribeAsync({ 'news/#': { qos: 1 } });
    const publisher = await mqtt.connectAsync(url, { clientId: 'qos-min-publisher', reconnectPeriod: 0 });
    await publisher.publishAsync('news/a', 'two', { qos: 2 });
    await publisher.publishAsync('news/z', 'marker', { qos: 1 });
    await c.until('news/z');
    // aedes lowered it only for a filter equal to the topic: it came at QoS 2
    assert.deepEqual(c.got.map((m) => `${m.topic} ${m.qos}`), ['news/a 1', 'news/z 1']);
    await Promise.all([c.client.endAsync(), publisher.endAsync()]);
  });

  it('in a persistent session: the message at QoS 1, acknowledged, is not sent again', async () => {
    // at QoS 0 the queued copy was never acknowledged, and came again at the next connection
    await onceAcrossConnections(broker, url, 'qos-persist', { 'news/#': { qos: 0 }, 'news/+': { qos: 1 } }, 'news');
  });
});

describe('retained messages and filters equal to the topic (embedded broker)', () => {
  let url: string;
  const broker = suiteBroker((u) => (url = u));

  it('sends a retained message on SUBSCRIBE at most at the QoS granted [MQTT-3.8.4-6]', async () => {
    const publisher = await mqtt.connectAsync(url, { clientId: 'retain-publisher', reconnectPeriod: 0 });
    await publisher.publishAsync('kept/one', 'retained at qos 1', { qos: 1, retain: true });
    await publisher.publishAsync('kept/two', 'retained at qos 2', { qos: 2, retain: true });
    await publisher.publishAsync('kept/zero', 'retained at qos 0', { qos: 0, retain: true });
    await publisher.publishAsync('kept/one', 'check', { qos: 1 }); // its PUBACK: the QoS 0 one before it is stored too
    await publisher.endAsync();
    const cases: [string, 0 | 1 | 2, string[]][] = [
      // aedes sent each at its own QoS through a wildcard (it lowered it only for a filter equal to the topic)
      ['kept/#', 0, ['kept/one 0', 'kept/two 0', 'kept/zero 0']],
      ['kept/+', 1, ['kept/one 1', 'kept/two 1', 'kept/zero 0']],
      ['kept/#', 2, ['kept/one 1', 'kept/two 2', 'kept/zero 0']],
      ['kept/two', 1, ['kept/two 1']],
    ];
    for (const [filter, qos, expected] of cases) {
      const c = await recording(url, `retain-${filter.replace(/\W/g, '')}-${qos}`, true);
      await c.client.subscribeAsync({ [filter]: { qos } });
      await c.untilCount(expected.length, 'marker');
      // a copy too many would come with them (one retained stream per SUBSCRIBE, in order)
      await c.client.subscribeAsync({ 'marker': { qos: 0 } });
      await broker.publish('marker', 'marker', 0);
      await c.until('marker');
      const got = c.got.filter((m) => m.topic !== 'marker').map((m) => `${m.topic} ${m.qos}`).sort();
      assert.deepEqual(got, expected, `${filter} at QoS ${qos}`);
      await c.client.endAsync();
    }
  });

  it('sends a retained message at the highest QoS granted by the matching subscriptions', async () => {
    const publisher = await mqtt.connectAsync(url, { clientId: 'retain-publisher-2', reconnectPeriod: 0 });
    await publisher.publishAsync('held/a', 'retained at qos 2', { qos: 2, retain: true });
    await publisher.endAsync();
    const c = await recording(url, 'retain-overlap', true);
    // the filter equal to the topic grants less than the wildcard: aedes lowered to it
    await c.client.subscribeAsync({ 'held/a': { qos: 0 }, 'held/#': { qos: 1 } });
    await c.untilCount(1, 'marker');
    // aedes sent it once per filter of the SUBSCRIBE, one after the other
    await c.client.subscribeAsync({ 'marker': { qos: 0 } });
    await broker.publish('marker', 'marker', 0);
    await c.until('marker');
    assert.deepEqual(c.got.filter((m) => m.topic !== 'marker').map((m) => `${m.topic} ${m.qos} ${m.body}`), ['held/a 1 retained at qos 2']);
    await c.client.endAsync();
  });

  it('delivers at the wildcard\'s higher QoS when the filter equal to the topic grants less [MQTT-3.3.5-1]', async () => {
    const cases: { subs: mqtt.ISubscriptionMap; published: 1 | 2; expected: number }[] = [
      { subs: { 'exact/a': { qos: 0 }, 'exact/#': { qos: 1 } }, published: 1, expected: 1 },
      { subs: { 'exact/#': { qos: 1 }, 'exact/a': { qos: 0 } }, published: 1, expected: 1 },
      { subs: { 'exact/a': { qos: 1 }, 'exact/+': { qos: 2 } }, published: 2, expected: 2 },
      // never above the message's own
      { subs: { 'exact/a': { qos: 0 }, 'exact/#': { qos: 2 } }, published: 1, expected: 1 },
    ];
    const publisher = await mqtt.connectAsync(url, { clientId: 'exact-publisher', reconnectPeriod: 0 });
    for (const [i, { subs, published, expected }] of cases.entries()) {
      const c = await recording(url, `exact-${i}`, true);
      await c.client.subscribeAsync(subs);
      await publisher.publishAsync('exact/a', `case ${i}`, { qos: published });
      await c.until('exact/a'); // (mqtt.js hands a QoS 2 message on at its PUBREL: after a later QoS 1 one)
      await publisher.publishAsync('exact/m', 'marker', { qos: 1 });
      await c.until('exact/m');
      // aedes lowered the copy to the filter equal to the topic after authorizeForward
      assert.deepEqual(c.got.filter((m) => m.topic === 'exact/a').map((m) => `${m.body} ${m.qos}`), [`case ${i} ${expected}`], JSON.stringify(subs));
      await c.client.endAsync();
    }
    await publisher.endAsync();
  });

  it('follows the filters as they are subscribed again and unsubscribed', async () => {
    const c = await recording(url, 'exact-changes', true);
    await c.client.subscribeAsync({ 'exact/a': { qos: 0 }, 'exact/#': { qos: 1 } });
    await c.client.subscribeAsync({ 'exact/a': { qos: 0 } }); // the same filter again: aedes replaces the subscription
    await broker.publish('exact/a', 'both', 1);
    await broker.publish('exact/m', 'marker', 1);
    await c.until('exact/m');
    await c.client.unsubscribeAsync('exact/#');
    await broker.publish('exact/a', 'exact only', 1);
    await c.client.subscribeAsync({ 'exact/m': { qos: 0 } });
    await broker.publish('exact/m', 'marker 2', 1);
    await c.untilCount(4, '');
    assert.deepEqual(c.got.map((m) => `${m.body} ${m.qos}`), ['both 1', 'marker 1', 'exact only 0', 'marker 2 0']);
    await c.client.endAsync();
  });

  it('in a persistent session: such a message comes once, at QoS 1, and not again at the next connection', async () => {
    // written at QoS 0, its queued entry was never acknowledged: it came again at the next connection
    await onceAcrossConnections(broker, url, 'exact-persist', { 'exact/#': { qos: 1 }, 'exact/a': { qos: 0 } }, 'exact');
  });

  /** Publishes `body` on exact/a at QoS 1, then a marker after it: the QoS of each copy of it `c` received. */
  async function qosOf(c: Recording, body: string): Promise<number[]> {
    await broker.publish('exact/a', body, 1);
    await broker.publish(`mark/${body}`, 'marker', 1);
    await c.until(`mark/${body}`);
    return c.got.filter((m) => m.topic === 'exact/a' && m.body === body).map((m) => m.qos);
  }

  it('takes a SUBSCRIBE repeating the filter at another QoS as a new subscription, a wildcard granting that QoS or not [MQTT-3.8.4-3]', async () => {
    // raised to the wildcard's QoS: aedes compared the QoS it read (the wildcard's, 1) with
    // the one asked, kept the old subscription (granted 0, written at QoS 0) and acknowledged 1
    const raised = await recording(url, 'exact-raised', true);
    await raised.client.subscribeAsync({ 'exact/a': { qos: 0 }, 'exact/#': { qos: 1 }, 'mark/#': { qos: 1 } });
    assert.deepEqual((await raised.client.subscribeAsync({ 'exact/a': { qos: 1 } })).map((g) => g.qos), [1]);
    assert.deepEqual(await qosOf(raised, 'raised, both'), [1]);
    await raised.client.unsubscribeAsync('exact/#');
    assert.deepEqual(await qosOf(raised, 'raised, exact only'), [1]);
    await raised.client.endAsync();

    // the wildcard granted in the same SUBSCRIBE, just before the filter
    const together = await recording(url, 'exact-together', true);
    await together.client.subscribeAsync({ 'exact/a': { qos: 0 }, 'mark/#': { qos: 1 } });
    assert.deepEqual((await together.client.subscribeAsync({ 'exact/#': { qos: 1 }, 'exact/a': { qos: 1 } })).map((g) => g.qos), [1, 1]);
    await together.client.unsubscribeAsync('exact/#');
    assert.deepEqual(await qosOf(together, 'together, exact only'), [1]);
    await together.client.endAsync();

    // lowered: the topic goes at the wildcard's QoS while it holds, then at the filter's
    const lowered = await recording(url, 'exact-lowered', true);
    await lowered.client.subscribeAsync({ 'exact/a': { qos: 1 }, 'exact/#': { qos: 1 }, 'mark/#': { qos: 1 } });
    assert.deepEqual((await lowered.client.subscribeAsync({ 'exact/a': { qos: 0 } })).map((g) => g.qos), [0]);
    assert.deepEqual(await qosOf(lowered, 'lowered, both'), [1]);
    await lowered.client.unsubscribeAsync('exact/#');
    assert.deepEqual(await qosOf(lowered, 'lowered, exact only'), [0]);
    await lowered.client.endAsync();

    // unsubscribed, then subscribed again at the wildcard's QoS
    const again = await recording(url, 'exact-again', true);
    await again.client.subscribeAsync({ 'exact/a': { qos: 0 }, 'exact/#': { qos: 1 }, 'mark/#': { qos: 1 } });
    await again.client.unsubscribeAsync('exact/a');
    await again.client.subscribeAsync({ 'exact/a': { qos: 1 } });
    assert.deepEqual(await qosOf(again, 'again, both'), [1]);
    await again.client.unsubscribeAsync('exact/#');
    assert.deepEqual(await qosOf(again, 'again, exact only'), [1]);
    await again.client.endAsync();
  });

  it('in a persistent session: a filter raised by a repeated SUBSCRIBE brings QoS 1, not again at the next connection', async () => {
    const cases: { id: string; held: Record<string, { qos: 0 | 1 }>; raise: Record<string, { qos: 0 | 1 }> }[] = [
      { id: 'exact-raised-persist', held: { 'exact/a': { qos: 0 }, 'exact/#': { qos: 1 } }, raise: { 'exact/a': { qos: 1 } } },
      // one SUBSCRIBE: aedes stores it before adding each filter, so the wildcard is held only
      // after authorizeSubscribe saw the filter (a check there would come too early)
      { id: 'exact-together-persist', held: { 'exact/a': { qos: 0 } }, raise: { 'exact/#': { qos: 1 }, 'exact/a': { qos: 1 } } },
    ];
    for (const { id, held, raise } of cases) {
      const first = await recording(url, id, false);
      await first.client.subscribeAsync({ ...held, 'mark/#': { qos: 1 } });
      await first.client.subscribeAsync(raise);
      await first.client.unsubscribeAsync('exact/#');
      assert.deepEqual(await qosOf(first, `${id}, exact only`), [1], id);
      await first.client.endAsync();
      // written at QoS 0, its queued entry was never acknowledged: it came again here
      const second = await recording(url, id, false);
      await broker.publish(`mark/${id}`, 'marker', 1);
      await second.until(`mark/${id}`);
      assert.deepEqual(second.got.map((m) => m.topic), [`mark/${id}`], id);
      await second.client.endAsync();
      // the session's subscriptions and queue go with a clean connection
      await (await mqtt.connectAsync(url, { clientId: id, clean: true, reconnectPeriod: 0 })).endAsync();
    }
  });
});

describe('matches (the filter matching the QoS is chosen by)', () => {
  it('matches as mqemitter does', () => {
    const cases: [string, string, boolean][] = [
      ['a/#', 'a', true], ['a/#', 'a/b/c', true], ['#', 'a/b', true], ['a/+', 'a/b', true], ['a/+', 'a/b/c', false],
      ['a/+/c', 'a//c', true], ['+', '', true], ['a/b', 'a/b', true], ['a/b', 'a/b/c', false], ['a/b/c', 'a/b', false],
      ['#', '$SYS/x', false], ['+/x', '$aws/x', false], ['$aws/#', '$aws/things/t', true],
    ];
    for (const [filter, topic, expected] of cases) assert.equal(matches(filter, topic), expected, `${filter} ~ ${topic}`);
  });
});
