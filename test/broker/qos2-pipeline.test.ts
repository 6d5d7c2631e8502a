/**
 * A client within MQTT 3.1.1 that pipelines many QoS 2 messages (MQTT.js sends every publish
 * at once, with no window of its own) is not closed for it: the embedded broker stops taking
 * its PUBLISH packets while its session holds the most QoS 2 messages awaiting their PUBREL
 * (Qos2Receipts), reads its PUBRELs meanwhile, and goes on once a place is free. Every
 * request is handled once and acknowledged, in order.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import mqtt from 'mqtt';
import { OPERATOR_USERNAME } from '../../src/broker/authenticator.ts';
import { MAX_DEVICE_QOS2_AWAITING_RELEASE as LIMIT, MAX_OPERATOR_QOS2_AWAITING_RELEASE as OPERATOR_LIMIT } from '../../src/broker/qos2-receipts.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

describe('embedded broker: QoS 2 messages pipelined past the limit awaiting PUBREL', () => {
  let ts: TestServer;
  before(async () => {
    ts = await startTestServer();
  });
  after(async () => {
    await ts.close();
  });

  it(`200 requests at once, every third at QoS 2 (${Math.ceil(200 / 3)} > ${LIMIT}): all handled and acknowledged, the connection stays`, async () => {
    const { secret } = await ts.server.registry.register({ deviceId: 'q2-pipe' });
    const client = await mqtt.connectAsync(ts.mqttUrl, { clientId: 'q2-pipe', username: 'q2-pipe', password: secret, reconnectPeriod: 0, connectTimeout: 5000 });
    // MQTT.js leaves a publish pending when its connection closes: settled by the close then
    const closed = new Promise<'closed'>((resolve) => client.once('close', () => resolve('closed')));
    try {
      const completed = new Set<number>();
      const all = Promise.all(Array.from({ length: 200 }, (_, n) => client.publishAsync('state/q2-pipe/update', JSON.stringify({ state: { reported: { n } }, clientToken: `p${n}` }), { qos: n % 3 === 0 ? 2 : 1 }).then(() => completed.add(n))));
      const outcome = await Promise.race([all.then(() => 'done' as const), closed]);
      const shadow = await ts.server.store.getShadow('q2-pipe', '');
      assert.equal(outcome, 'done', `the connection stays (closed with ${completed.size} publishes completed, ${shadow?.version ?? 0} updates applied)`);
      assert.equal(completed.size, 200, 'every publish completed');
      assert.equal(shadow?.state.reported?.n, 199, 'the last one last');
      assert.equal(shadow?.version, 200, 'each handled once');
    } finally {
      await client.endAsync(true);
    }
  });

  /** The operator's tools send `n` QoS 2 messages at once to a subscriber: all delivered once, in order, the connection kept. */
  async function pipelineAsOperator(topic: string, n: number): Promise<void> {
    const reader = await mqtt.connectAsync(ts.mqttUrl, { clientId: `${topic}-reader`, username: OPERATOR_USERNAME, password: ts.token, reconnectPeriod: 0 });
    const got: number[] = [];
    reader.on('message', (_t, payload) => got.push(Number(payload.toString())));
    await reader.subscribeAsync(`tools/${topic}`, { qos: 2 });
    const client = await mqtt.connectAsync(ts.mqttUrl, { clientId: `${topic}-op`, username: OPERATOR_USERNAME, password: ts.token, reconnectPeriod: 0 });
    const closed = new Promise<'closed'>((resolve) => client.once('close', () => resolve('closed')));
    try {
      const all = Promise.all(Array.from({ length: n }, (_, k) => client.publishAsync(`tools/${topic}`, String(k), { qos: 2 })));
      assert.equal(await Promise.race([all.then(() => 'done' as const), closed]), 'done', 'the connection stays');
      await client.publishAsync(`tools/${topic}`, 'end', { qos: 2 });
      await new Promise<void>((resolve) => (got.length > n ? resolve() : reader.on('message', () => got.length > n && resolve())));
      assert.deepEqual(got.slice(0, n), Array.from({ length: n }, (_, k) => k), 'each once, in order');
    } finally {
      await client.endAsync(true);
      await reader.endAsync(true);
    }
  }

  it(`the operator's tools past their ${OPERATOR_LIMIT}: all delivered once, the connection stays`, async () => {
    await pipelineAsOperator('q2-pipe', OPERATOR_LIMIT + 200);
  });

  // aedes has a limit of its own per connection (maxInflightInbound), counted in its handling
  // of the PUBREL, after its store's delete: a PUBLISH let through as a PUBREL frees one of
  // ours is checked against aedes's count a few promise callbacks later. With the two limits
  // equal, it passed only because aedes's delete took no longer than that; a store slower by
  // one turn of the event loop closed the connection ("maxInflightInbound exceeded")
  it(`the same with aedes's store slow to forget a released message: aedes's own limit is not reached first`, async () => {
    const store = (ts.server.broker as unknown as { aedes: { persistence: { incomingDelPacket(...args: unknown[]): Promise<unknown> } } }).aedes.persistence;
    const del = store.incomingDelPacket;
    store.incomingDelPacket = async function (this: unknown, ...args: unknown[]) {
      await new Promise((resolve) => setImmediate(resolve));
      return del.apply(this, args);
    };
    try {
      await pipelineAsOperator('q2-pipe-slow', OPERATOR_LIMIT + 200);
    } finally {
      store.incomingDelPacket = del;
    }
  });
});
