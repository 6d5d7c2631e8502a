/**
 * The embedded broker's queues of outgoing messages hold a client id only while its session
 * has messages in them (src/broker/session-queues.ts). aedes's memory store made an empty
 * queue under the id of every client that acknowledged a QoS 1 message, clean sessions' too,
 * and nothing deleted it: each operator connection with a fresh client id, each device id
 * (deleted ones too) stayed for the broker's life (QA: 15,000 connections, 15,000 ids, +1.2 MB).
 * Observed over MQTT (a raw client, which acknowledges only when told) on a real broker, the
 * store's own map read through the inspector (it is a private field), and a heap snapshot.
 */
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { readFileSync, rmSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import v8 from 'node:v8';
import type { IConnackPacket, IPublishPacket, Packet } from 'mqtt-packet';
import type { Authenticator } from '../../src/broker/authenticator.ts';
import { EmbeddedBroker } from '../../src/broker/embedded-broker.ts';
import { SessionQueues } from '../../src/broker/session-queues.ts';
import { silentLogger } from '../../src/util/logger.ts';
import { eventually } from '../helpers/cli.ts';
import { RawClient } from './raw-mqtt-client.ts';

/** Everyone is an operator (who may subscribe to any topic). */
const operators: Authenticator = { authenticate: async (c) => ({ kind: 'operator' as const, id: c.clientId }) };

/** The client ids aedes's memory store holds queues under, in its private `#outgoing` Map (read through the inspector). */
async function storeQueueIds(broker: EmbeddedBroker): Promise<string[]> {
  const g = globalThis as { sessionQueuesProbe?: unknown };
  g.sessionQueuesProbe = (broker as unknown as { aedes: { persistence: { asyncPersistence: object } } }).aedes.persistence.asyncPersistence;
  const session = new Session();
  session.connect();
  try {
    const { result } = await session.post('Runtime.evaluate', { expression: 'globalThis.sessionQueuesProbe' });
    // (Node's typings of the protocol leave out privateProperties)
    const { privateProperties } = (await session.post('Runtime.getProperties', { objectId: result.objectId!, ownProperties: true })) as { privateProperties?: { name: string; value?: { objectId?: string } }[] };
    const outgoing = privateProperties?.find((p) => p.name === '#outgoing')?.value?.objectId;
    assert.ok(outgoing, "aedes's memory store has its #outgoing Map");
    const keys = (await session.post('Runtime.callFunctionOn', { objectId: outgoing, functionDeclaration: 'function () { return [...this.keys()]; }', returnByValue: true })) as { result: { value: string[] } };
    return keys.result.value;
  } finally {
    session.disconnect();
    delete g.sessionQueuesProbe;
  }
}

/** How many strings alive in this process match `pattern` (a heap snapshot, taken after a full GC). */
function liveStrings(pattern: RegExp): number {
  const file = v8.writeHeapSnapshot(path.join(os.tmpdir(), `session-queues-${process.pid}.heapsnapshot`));
  try {
    const { snapshot, nodes, strings } = JSON.parse(readFileSync(file, 'utf8')) as { snapshot: { meta: { node_fields: string[]; node_types: [string[]] } }; nodes: number[]; strings: string[] };
    const fields = snapshot.meta.node_fields;
    const type = fields.indexOf('type');
    const name = fields.indexOf('name');
    const stringTypes = new Set(['string', 'concatenated string', 'sliced string'].map((t) => snapshot.meta.node_types[0].indexOf(t)));
    let count = 0;
    for (let i = 0; i < nodes.length; i += fields.length) if (stringTypes.has(nodes[i + type]!) && pattern.test(strings[nodes[i + name]!]!)) count++;
    return count;
  } finally {
    rmSync(file, { force: true });
  }
}

describe("the embedded broker's queues of outgoing messages", () => {
  const broker = new EmbeddedBroker({ port: 0, host: '127.0.0.1', authenticator: operators, logger: silentLogger });
  before(() => broker.start());
  after(() => broker.stop());

  /** Connects `id` (`clean` or a persistent session) and subscribes it to `topic` at QoS 1. */
  async function subscribed(id: string, clean: boolean, topic: string): Promise<RawClient> {
    const c = await RawClient.connect(broker.port, id, 'any', clean);
    const ack = c.next((p) => p.cmd === 'suback');
    c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic, qos: 1 }] });
    assert.deepEqual((await ack as Packet & { granted: number[] }).granted, [1]);
    return c;
  }

  /** Acknowledges `message` (PUBACK), and waits for a PINGRESP sent after it: aedes has handled the PUBACK. */
  async function ack(c: RawClient, message: IPublishPacket): Promise<void> {
    const pings = c.count((p) => p.cmd === 'pingresp');
    c.send({ cmd: 'puback', messageId: message.messageId! });
    c.send({ cmd: 'pingreq' });
    await c.next(() => c.count((p) => p.cmd === 'pingresp') > pings);
  }

  const messageOn = (c: RawClient, topic: string, body?: string) => c.next((p) => p.cmd === 'publish' && p.topic === topic && (body === undefined || p.payload.toString() === body)) as Promise<IPublishPacket>;

  /** Resolves once the broker holds no connection (aedes has handled every end). */
  const allGone = () => eventually(async () => (broker.connectedClients === 0 ? true : undefined), 30_000, 'every connection ended');

  it('holds no client id of a clean session that acknowledged a QoS 1 message, once it has gone', async () => {
    const baseline = broker.queuedSessions;
    const N = 2_000;
    const one = async (i: number) => {
      const topic = `sq/gone/${i}`;
      const c = await subscribed(`sq-gone-${i}`, true, topic);
      const got = messageOn(c, topic);
      await broker.publish(topic, 'hello', 1);
      await ack(c, await got);
      await c.end();
    };
    for (let i = 0; i < N; i += 100) await Promise.all(Array.from({ length: 100 }, (_, k) => one(i + k)));
    await allGone();
    const held = (await storeQueueIds(broker)).filter((id) => id.startsWith('sq-gone-'));
    assert.equal(held.length, 0, `aedes's store holds ${held.length} of the ${N} client ids (e.g. ${held.slice(0, 3).join(', ')})`);
    assert.equal(broker.queuedSessions, baseline);
    // nothing else holds them either (what QA measured): the ids were only ever this test's and the broker's
    assert.equal(liveStrings(/^sq-gone-\d+$/), 0, 'client ids of the clean sessions still alive in the process');
  });

  it("keeps a persistent session's queued messages across a reconnect, and its queue until they are acknowledged", async () => {
    const baseline = broker.queuedSessions;
    const topic = 'sq/kept';
    const first = await subscribed('sq-kept', false, topic);
    await first.end();
    await broker.publish(topic, 'one', 1);
    await broker.publish(topic, 'two', 1);
    assert.equal(broker.queuedSessions, baseline + 1, 'the session away holds a queue');
    const c = await RawClient.connect(broker.port, 'sq-kept', 'any', false);
    try {
      assert.equal((c.received.find((p) => p.cmd === 'connack') as IConnackPacket).sessionPresent, true);
      const one = await messageOn(c, topic, 'one');
      const two = await messageOn(c, topic, 'two');
      await ack(c, one);
      assert.equal(broker.queuedSessions, baseline + 1, 'one message still awaits its PUBACK');
      await ack(c, two);
      assert.equal(broker.queuedSessions, baseline, 'both acknowledged: no queue left');
      assert.deepEqual((await storeQueueIds(broker)).filter((id) => id === 'sq-kept'), []);
    } finally {
      await c.end();
    }
    // still a session: what is published while it is away is queued for it again
    await broker.publish(topic, 'three', 1);
    const again = await RawClient.connect(broker.port, 'sq-kept', 'any', false);
    try {
      await ack(again, await messageOn(again, topic, 'three'));
    } finally {
      await again.end();
    }
  });

  it('holds no client id of a persistent session ended (a device revoked or deleted), messages queued or not', async () => {
    const baseline = broker.queuedSessions;
    const M = 50;
    const ids = Array.from({ length: M }, (_, i) => `sq-ended-${i}`);
    await Promise.all(
      ids.map(async (id, i) => {
        const topic = `sq/ended/${id}`;
        const c = await subscribed(id, false, topic);
        const got = messageOn(c, topic);
        await broker.publish(topic, 'live', 1);
        await ack(c, await got);
        await c.end();
        // every other one away with a message queued
        if (i % 2 === 0) await broker.publish(topic, 'queued', 1);
      }),
    );
    await allGone();
    for (const id of ids) broker.cutOff(id, { certificates: true });
    // a connection under the id is admitted once its session has ended: a new one, with nothing queued
    const resumed = await Promise.all(
      ids.map(async (id) => {
        const c = await RawClient.connect(broker.port, id, 'any', false);
        try {
          const pings = c.count((p) => p.cmd === 'pingresp');
          c.send({ cmd: 'pingreq' });
          await c.next(() => c.count((p) => p.cmd === 'pingresp') > pings);
          return { sessionPresent: (c.received.find((p) => p.cmd === 'connack') as IConnackPacket).sessionPresent, messages: c.count((p) => p.cmd === 'publish') };
        } finally {
          await c.end();
        }
      }),
    );
    assert.deepEqual(resumed.filter((r) => r.sessionPresent || r.messages > 0), [], 'sessions resumed, or messages of the ended sessions received');
    await allGone();
    assert.deepEqual((await storeQueueIds(broker)).filter((id) => id.startsWith('sq-ended-')), []);
    assert.equal(broker.queuedSessions, baseline);
  });
});

describe('taking over the queues of a store', () => {
  // aedes's default store, as aedes makes it (aedes-persistence's callback layer over its memory store)
  const memory = createRequire(import.meta.resolve('aedes'))('aedes-persistence') as () => { asyncPersistence: object };

  it("takes aedes-persistence's memory store, and refuses a store whose queues it does not know (an upgrade, another store)", () => {
    new SessionQueues().adopt(memory());
    // an upgrade adding a call that reaches the store's own queues
    const Base = Object.getPrototypeOf(memory().asyncPersistence).constructor as new () => object;
    const { MemoryPersistence } = { MemoryPersistence: class extends Base { outgoingDelete(): void {} } };
    assert.throws(() => new SessionQueues().adopt({ asyncPersistence: new MemoryPersistence() }), { code: 'INTERNAL', message: /outgoingDelete/ });
    assert.throws(() => new SessionQueues().adopt({ asyncPersistence: { outgoingStream() {} } }), { code: 'INTERNAL' });
    assert.throws(() => new SessionQueues().adopt({}), { code: 'INTERNAL' });
  });
});
