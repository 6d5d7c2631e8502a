/**
 * The embedded broker's routing table (topic-matcher.ts) answers as mqemitter's own qlobber
 * does: compared with one, the same adds and removes of random filters and values, on random
 * topics (a fixed seed, so a failure replays). SubscriptionInterest, which keeps a device's
 * answers in the same index (PrefixedFilters), against a plain list of filters likewise. And
 * the matcher is what the broker routes with.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { Qlobber } from 'qlobber';
import { PrefixedFilters, prefixKey, TopicMatcher, type Matcher } from '../../src/broker/topic-matcher.ts';
import { SubscriptionInterest } from '../../src/broker/subscription-interest.ts';
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

/**
 * Random topics and filters of one to five levels (a filter may end in `#`), from a few words,
 * drawn with `r`; a third of them an AWS thing's (`$aws/things/<thing>/...`, a filter's thing
 * level sometimes `+`), which PrefixedFilters keeps by three levels.
 */
function topicsAndFilters(r: () => number) {
  const pick = <T>(xs: T[]): T => xs[Math.floor(r() * xs.length)]!;
  const words = ['state', 'd1', 'd2', 'update', 'accepted', '', '$SYS', '$aws', 'things'];
  const things = ['t1', 't2', ''];
  const levels = (n: number, level: () => string) => Array.from({ length: n }, level);
  const aws = () => r() < 0.35;
  const topic = () => (aws() ? ['$aws', 'things', pick(things), ...levels(Math.floor(r() * 4), () => pick(words))] : levels(1 + Math.floor(r() * 5), () => pick(words))).join('/');
  const filter = () => {
    const level = () => (r() < 0.3 ? '+' : pick(words));
    const f = aws() ? ['$aws', 'things', r() < 0.25 ? '+' : pick(things), ...levels(Math.floor(r() * 4), level)] : levels(1 + Math.floor(r() * 5), level);
    if (r() < 0.25) f.push('#');
    return f.join('/');
  };
  return { topic, filter };
}

it('matches as qlobber does, through random adds and removes', () => {
  const seed = 20261205;
  const r = random(seed);
  const { topic, filter } = topicsAndFilters(r);
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

it('keeps apart filters whose first two levels share their key in PrefixedFilters', () => {
  // pairs found by search: each pair's first two levels make the same key; the second pair's
  // are one the other's start (read from the wrong place, `state/dql4hul/+` is `state/d/l4hul/+`)
  assert.equal(prefixKey('state/d238098', 13, false), prefixKey('state/d810216', 13, false));
  assert.equal(prefixKey('state/d', 7, false), prefixKey('state/dql4hul', 13, false));
  const p = new PrefixedFilters<string>();
  p.add('state/d238098/+/accepted', 'a');
  p.add('state/d810216/+/rejected', 'b');
  p.add('state/dql4hul/+', 'c');
  const match = (t: string) => {
    const found: string[] = [];
    p.match(t, found);
    assert.equal(p.has(t), found.length > 0, t);
    return found;
  };
  assert.deepEqual(match('state/d238098/update/accepted'), ['a']);
  assert.deepEqual(match('state/d810216/update/accepted'), []);
  assert.deepEqual(match('state/d810216/get/rejected'), ['b']);
  assert.deepEqual(match('state/d238098/get/rejected'), []);
  assert.deepEqual(match('state/dql4hul/x'), ['c']);
  assert.deepEqual(match('state/d/l4hul/x'), []);
  assert.deepEqual(match('state/d'), []);
  p.remove('state/d238098/+/accepted', 'a');
  assert.deepEqual(match('state/d238098/update/accepted'), []);
  assert.deepEqual(match('state/d810216/get/rejected'), ['b'], 'the other under the same key stays');

  // an AWS thing whose first three levels would make the number of `$aws/things` (found by
  // search): a topic of that thing is looked up under both, which must be two lists
  assert.equal(prefixKey('$aws/things/odw5j8', 18, false), prefixKey('$aws/things', 11, false));
  p.add('$aws/things/odw5j8/+/x', 'd');
  p.add('$aws/things/+/+/x', 'e');
  assert.deepEqual(match('$aws/things/odw5j8/a/x').sort(), ['d', 'e']);
  assert.deepEqual(match('$aws/things/other/a/x'), ['e']);
});

it("files an AWS thing's wildcard filters under the thing: a thing's message is compared with that thing's filters only", () => {
  // 1,000 AWS devices' filters (as an SDK subscribes) and their state/<id>/ answers, and an
  // operator's filter with a wildcard for the thing
  const p = new PrefixedFilters<number>();
  for (let i = 0; i < 1000; i++) {
    p.add(`$aws/things/t${i}/shadow/+/accepted`, i);
    p.add(`$aws/things/t${i}/jobs/#`, i);
    p.add(`state/t${i}/+/accepted`, i);
  }
  p.add('$aws/things/+/jobs/notify', -1);
  const match = (t: string) => {
    const found: number[] = [];
    p.match(t, found);
    assert.equal(p.has(t), found.length > 0, t);
    return found.sort((a, b) => a - b);
  };
  // kept under $aws/things, each $aws message was compared with 2,001 filters
  assert.equal(p.compared('$aws/things/t7/shadow/update/accepted'), 3, "t7's two and the operator's");
  assert.equal(p.compared('$aws/things/t7/jobs/notify'), 3);
  assert.equal(p.compared('$aws/things/t1000/shadow/update/accepted'), 1, 'a thing without filters: the operator\'s');
  assert.equal(p.compared('state/t7/update/accepted'), 1);
  assert.deepEqual(match('$aws/things/t7/shadow/update/accepted'), [7]);
  assert.deepEqual(match('$aws/things/t7/shadow/name/x/update/accepted'), []);
  assert.deepEqual(match('$aws/things/t7/jobs/notify'), [-1, 7]);
  assert.deepEqual(match('$aws/things/t7/jobs'), [7], '# takes the level above');
  assert.deepEqual(match('$aws/things/t7'), []);
  assert.deepEqual(match('$aws/things/t1000/jobs/notify'), [-1]);
  for (let i = 0; i < 1000; i++) p.remove(`$aws/things/t${i}/jobs/#`, i);
  assert.equal(p.compared('$aws/things/t7/jobs/notify'), 2);
  assert.deepEqual(match('$aws/things/t7/jobs/notify'), [-1]);
});

/**
 * Whether `filter` matches `topic` by MQTT 3.1.1 §4.7, level by level (an empty level is one,
 * `a/#` matches `a`, a filter starting with a wildcard no `$` topic): the reference the
 * SubscriptionInterest is compared with, kept apart from the code under test.
 */
function plainMatch(filter: string, topic: string): boolean {
  if (/^[+#]/.test(filter) && topic.startsWith('$')) return false;
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true;
    if (i >= t.length || (f[i] !== '+' && f[i] !== t[i])) return false;
  }
  return f.length === t.length;
}

it('SubscriptionInterest (the same index of prefixed filters) answers as a plain list of every client\'s filters does, through random subscriptions', () => {
  const seed = 20261206;
  const r = random(seed);
  const { topic, filter } = topicsAndFilters(r);
  const clients = ['c1', 'c2', 'c3', 'c4'];
  const ours = new SubscriptionInterest();
  const theirs = new Map<string, Set<string>>(clients.map((c) => [c, new Set()]));
  const held = (): [string, string][] => [...theirs].flatMap(([c, fs]) => [...fs].map((f): [string, string] => [c, f]));
  for (let step = 0; step < 20_000; step++) {
    const x = r();
    const client = clients[Math.floor(r() * clients.length)]!;
    if (x < 0.4) {
      const f = filter();
      ours.add(client, f);
      theirs.get(client)!.add(f);
    } else if (x < 0.5) {
      // one held, by whoever holds it (another client may hold the same filter)
      const all = held();
      if (all.length === 0) continue;
      const [c, f] = all[Math.floor(r() * all.length)]!;
      ours.remove(c, f);
      theirs.get(c)!.delete(f);
    } else if (x < 0.52) {
      ours.forget(client);
      theirs.get(client)!.clear();
    } else if (x < 0.54) {
      // one not held: nothing happens
      const f = filter();
      ours.remove(client, f);
      theirs.get(client)!.delete(f);
    } else {
      const t = topic();
      const expected = held().some(([, f]) => plainMatch(f, t));
      assert.equal(ours.has(t), expected, `seed ${seed}, step ${step}: ${t} (${held().map(([c, f]) => `${c}:${f}`).join(' ')})`);
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

it("routes AWS things' messages through the broker to each thing's own wildcard subscriptions only", async () => {
  const devices: Authenticator = { authenticate: async (c) => (c.clientId.startsWith('op-') ? { kind: 'operator' as const, id: c.clientId } : { kind: 'device' as const, id: c.clientId }) };
  const broker = new EmbeddedBroker({ port: 0, host: '127.0.0.1', authenticator: devices, logger: silentLogger });
  await broker.start();
  const clients: RawClient[] = [];
  try {
    const a = await RawClient.connect(broker.port, 'aws-a', 'x', true);
    const b = await RawClient.connect(broker.port, 'aws-b', 'x', true);
    const op = await RawClient.connect(broker.port, 'op-aws', 'x', true);
    clients.push(a, b, op);
    // as an AWS IoT Device SDK subscribes: each thing's shadow answers and jobs (kept under
    // the thing), and an operator's filter with a wildcard for the thing (under $aws/things)
    for (const [c, thing] of [[a, 'aws-a'], [b, 'aws-b']] as const) {
      c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: `$aws/things/${thing}/shadow/+/accepted`, qos: 1 }, { topic: `$aws/things/${thing}/jobs/#`, qos: 1 }] });
      const suback = await c.next((p) => p.cmd === 'suback');
      assert.deepEqual((suback as { granted: number[] }).granted, [1, 1], `${thing}'s own AWS filters are allowed`);
    }
    await op.subscribe('$aws/things/+/jobs/notify');
    for (const t of [
      '$aws/things/aws-a/shadow/update/accepted',
      '$aws/things/aws-b/shadow/get/accepted',
      '$aws/things/aws-b/jobs/notify',
      '$aws/things/aws-a/shadow/update/delta', // nobody's
      '$aws/things/aws-a/jobs/start-next/accepted',
      '$aws/things/aws-c/shadow/update/accepted', // a thing nobody subscribed for
      '$aws/things/aws-a/jobs/notify',
    ]) await broker.publish(t, '{}', 1);
    const topics = (c: RawClient, n: number) => c.next(() => c.count((p) => p.cmd === 'publish') === n).then(() => c.received.filter((p) => p.cmd === 'publish').map((p) => (p as { topic: string }).topic));
    assert.deepEqual(await topics(op, 2), ['$aws/things/aws-b/jobs/notify', '$aws/things/aws-a/jobs/notify']);
    assert.deepEqual(await topics(a, 3), ['$aws/things/aws-a/shadow/update/accepted', '$aws/things/aws-a/jobs/start-next/accepted', '$aws/things/aws-a/jobs/notify']);
    assert.deepEqual(await topics(b, 2), ['$aws/things/aws-b/shadow/get/accepted', '$aws/things/aws-b/jobs/notify']);
    // nothing more came: a's last message was published after all of b's
    assert.equal(b.count((p) => p.cmd === 'publish'), 2);
  } finally {
    await Promise.all(clients.map((c) => c.end()));
    await broker.stop();
  }
});
