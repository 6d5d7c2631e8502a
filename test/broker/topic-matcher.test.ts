/**
 * The embedded broker's routing table (topic-matcher.ts) answers as mqemitter's own qlobber
 * does: compared with one, the same adds and removes of random filters and values, on random
 * topics (a fixed seed, so a failure replays). And it is what the broker routes with.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { Qlobber } from 'qlobber';
import { TopicMatcher, type Matcher } from '../../src/broker/topic-matcher.ts';
import { EmbeddedBroker } from '../../src/broker/embedded-broker.ts';
import type { Authenticator } from '../../src/broker/authenticator.ts';
import { silentLogger } from '../../src/util/logger.ts';
import { publish, RawClient } from './raw-mqtt-client.ts';

const qlobber = (): Matcher<number> => new Qlobber<number>({ separator: "/", wildcard_one: "+", wildcard_some: "#", match_empty_levels: true });

/** A small deterministic generator (mulberry32). */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

it('matches as qlobber does, through random adds and removes', () => {
  const seed = 20261205;
  const r = random(seed);
  const pick = <T>(xs: T[]): T => xs[Math.floor(r() * xs.length)]!;
  const words = ['state', 'd1', 'd2', 'update', 'accepted', '', '$SYS', '$aws'];
  const topic = () => Array.from({ length: 1 + Math.floor(r() * 5) }, () => pick(words)).join('/');
  const filter = () => {
    const levels = Array.from({ length: 1 + Math.floor(r() * 5) }, () => (r() < 0.3 ? '+' : pick(words)));
    if (r() < 0.25) levels.push('#');
    return levels.join('/');
  };
  const ours = new TopicMatcher<number>(qlobber());
  const theirs = qlobber();
  const held: [string, number][] = [];
  for (let step = 0; step < 20_000; step++) {
    const x = r();
    if (x < 0.45 || held.length === 0) {
      const f = filter();
      const v = Math.floor(r() * 6);
      ours.add(f, v);
      theirs.add(f, v);
      held.push([f, v]);
    } else if (x < 0.6) {
      const [f, v] = held.splice(Math.floor(r() * held.length), 1)[0]!;
      ours.remove(f, v);
      theirs.remove(f, v);
    } else if (x < 0.62) {
      const [f] = held[Math.floor(r() * held.length)]!;
      ours.remove(f);
      theirs.remove(f);
      for (let i = held.length - 1; i >= 0; i--) if (held[i]![0] === f) held.splice(i, 1);
    } else {
      const t = topic();
      const sort = (xs: number[]) => [...xs].sort((a, b) => a - b);
      assert.deepEqual(sort(ours.match(t)), sort(theirs.match(t)), `seed ${seed}, step ${step}: ${t}`);
    }
  }
});

it("routes a device's messages, and one of an operator's wildcard filter, through the broker", async () => {
  const devices: Authenticator = { authenticate: async (c) => (c.clientId.startsWith('op-') ? { kind: 'operator' as const, id: c.clientId } : { kind: 'device' as const, id: c.clientId }) };
  const broker = new EmbeddedBroker({ port: 0, host: '127.0.0.1', authenticator: devices, logger: silentLogger });
  await broker.start();
  const clients: RawClient[] = [];
  try {
    const d1 = await RawClient.connect(broker.port, 'tm-1', 'x', true);
    const d2 = await RawClient.connect(broker.port, 'tm-2', 'x', true);
    const op = await RawClient.connect(broker.port, 'op-1', 'x', true);
    clients.push(d1, d2, op);
    await op.subscribe('state/+/update/documents');
    for (const [c, id] of [[d1, 'tm-1'], [d2, 'tm-2']] as const) {
      c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: `state/${id}/update/delta`, qos: 1 }, { topic: `state/${id}/+/accepted`, qos: 1 }] });
      await c.next((p) => p.cmd === 'suback');
    }
    await broker.publish('state/tm-1/update/delta', '{"a":1}', 1);
    await broker.publish('state/tm-1/get/accepted', '{"b":1}', 1);
    await broker.publish('state/tm-2/update/accepted', '{"c":1}', 1);
    await broker.publish('state/tm-1/update/documents', '{"d":1}', 1);
    const topics = (c: RawClient, n: number) => c.next(() => c.count((p) => p.cmd === 'publish') === n).then(() => c.received.filter((p) => p.cmd === 'publish').map((p) => (p as { topic: string }).topic));
    assert.deepEqual(await topics(d1, 2), ['state/tm-1/update/delta', 'state/tm-1/get/accepted']);
    assert.deepEqual(await topics(d2, 1), ['state/tm-2/update/accepted']);
    assert.deepEqual(await topics(op, 1), ['state/tm-1/update/documents'], "the operator's filter, in the trie");
    // nothing more came: a message each client does not subscribe to reached none
    await broker.publish('state/tm-2/update/delta', '{"e":1}', 1);
    await broker.publish('state/tm-1/update/documents', '{"f":1}', 1);
    await topics(op, 2);
    assert.equal(d1.count((p) => p.cmd === 'publish'), 2);
    // a device's own messages reach the broker's request handler as before
    d1.send(publish('state/tm-1/update', { state: { reported: { n: 1 } } }, 2, 1));
    await d1.next((p) => p.cmd === 'puback' && p.messageId === 2);
  } finally {
    await Promise.all(clients.map((c) => c.end()));
    await broker.stop();
  }
});
