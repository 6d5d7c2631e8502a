/**
 * What the embedded broker's own per-connection setup keeps for an idle connection. The
 * inbound gate (inbound-gate.ts) made each connection a gate object, an empty queue and five
 * closures (three of them, with the function names tsx keeps, 312 bytes each), ack-order.ts
 * kept each connection's last PUBLISH long after its acknowledgement, and the packet limit's
 * log line read the socket's address at every connection (which the socket then keeps): 1.2
 * KB per connected device (20.7 instead of 19.5 KB of heap per device, the thirty-sixth
 * session's measurement). Now none of it stays once nothing is queued or in flight: counted
 * in a heap snapshot of this process with a few hundred connections open on a real broker,
 * after a subscription, QoS 1 and QoS 2 exchanges and after some connections' packets waited in the gate.
 */
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import v8 from 'node:v8';
import type { Authenticator } from '../../src/broker/authenticator.ts';
import { EmbeddedBroker } from '../../src/broker/embedded-broker.ts';
import { MAX_DEVICE_QOS2_AWAITING_RELEASE as LIMIT } from '../../src/broker/qos2-receipts.ts';
import { silentLogger } from '../../src/util/logger.ts';
import { publish, RawClient } from './raw-mqtt-client.ts';

const devices: Authenticator = { authenticate: async (c) => ({ kind: 'device' as const, id: c.clientId }) };

/** What a heap snapshot of this process holds: closures by the file that defines them, objects by constructor and by the property that names them. */
interface Census {
  closuresOf(file: string): number;
  objects(constructorName: string): number;
  /** Objects with all these properties (a property holding a small integer is not seen). */
  shaped(...properties: string[]): number;
  /** Objects referred to by a property of that name. */
  under(property: string): number;
  /** Distinct objects referred to by a property of that name. */
  distinctUnder(property: string): number;
  /** Bytes of the property stores of objects of that constructor (a dictionary-mode object's are large). */
  propertyBytes(constructorName: string): number;
}

function census(): Census {
  const file = v8.writeHeapSnapshot(path.join(os.tmpdir(), `connection-memory-${process.pid}.heapsnapshot`));
  try {
    type Meta = { node_fields: string[]; node_types: [string[]]; edge_fields: string[]; edge_types: [string[]] };
    const { snapshot, nodes, edges, strings } = JSON.parse(readFileSync(file, 'utf8')) as { snapshot: { meta: Meta }; nodes: number[]; edges: number[]; strings: string[] };
    const m = snapshot.meta;
    const NF = m.node_fields.length;
    const EF = m.edge_fields.length;
    const [nType, nName, nEdges, nSize] = ['type', 'name', 'edge_count', 'self_size'].map((f) => m.node_fields.indexOf(f)) as [number, number, number, number];
    const [eType, eName, eTo] = ['type', 'name_or_index', 'to_node'].map((f) => m.edge_fields.indexOf(f)) as [number, number, number];
    const [closure, object] = ['closure', 'object'].map((t) => m.node_types[0].indexOf(t)) as [number, number];
    const [property, internal] = ['property', 'internal'].map((t) => m.edge_types[0].indexOf(t)) as [number, number];
    const first: number[] = [];
    for (let i = 0, e = 0; i < nodes.length; i += NF) (first[i / NF] = e), (e += nodes[i + nEdges]! * EF);
    /** The named edges of node `i` of a type, as [name, target]. */
    const out = (i: number, type: number): [string, number][] => {
      const r: [string, number][] = [];
      for (let e = first[i / NF]!, end = e + nodes[i + nEdges]! * EF; e < end; e += EF) if (edges[e + eType] === type) r.push([strings[edges[e + eName]!]!, edges[e + eTo]!]);
      return r;
    };
    const closures = new Map<string, number>();
    const constructors = new Map<string, number>();
    const objects: number[] = [];
    const referred = new Map<string, number>();
    const targets = new Map<string, Set<number>>();
    const propertyStores = new Map<string, number>();
    for (let i = 0; i < nodes.length; i += NF) {
      if (nodes[i + nType] === closure) {
        // closure -> shared function info -> script, named by its URL
        const shared = out(i, internal).find(([n]) => n === 'shared')?.[1];
        const script = shared === undefined ? undefined : out(shared, internal).find(([n]) => n === 'script_or_debug_info' || n === 'script')?.[1];
        const name = script === undefined ? '' : strings[nodes[script + nName]!]!;
        closures.set(name, (closures.get(name) ?? 0) + 1);
      } else if (nodes[i + nType] === object) {
        const name = strings[nodes[i + nName]!]!;
        constructors.set(name, (constructors.get(name) ?? 0) + 1);
        objects.push(i);
        const store = out(i, internal).find(([n]) => n === 'properties')?.[1];
        if (store !== undefined) propertyStores.set(name, (propertyStores.get(name) ?? 0) + nodes[store + nSize]!);
      }
      for (const [name, to] of out(i, property)) {
        referred.set(name, (referred.get(name) ?? 0) + 1);
        if (!targets.has(name)) targets.set(name, new Set());
        targets.get(name)!.add(to);
      }
    }
    return {
      closuresOf: (f) => [...closures].filter(([url]) => url.endsWith(`/src/broker/${f}`)).reduce((n, [, c]) => n + c, 0),
      objects: (c) => constructors.get(c) ?? 0,
      shaped: (...props) => objects.filter((i) => {
        const names = new Set(out(i, property).map(([n]) => n));
        return props.every((p) => names.has(p));
      }).length,
      under: (p) => referred.get(p) ?? 0,
      distinctUnder: (p) => targets.get(p)?.size ?? 0,
      propertyBytes: (c) => propertyStores.get(c) ?? 0,
    };
  } finally {
    rmSync(file, { force: true });
  }
}

describe("the embedded broker's per-connection state", () => {
  const broker = new EmbeddedBroker({ port: 0, host: '127.0.0.1', authenticator: devices, logger: silentLogger });
  before(() => broker.start());
  after(() => broker.stop());

  it('holds nothing of the inbound gate or the order of acknowledgements for connections with nothing queued or in flight', async () => {
    const N = 300;
    const clients: RawClient[] = [];
    const before = census();
    try {
      // each: a QoS 1 subscription to its own topic (a filter without wildcards, whose record
      // reads the topic's QoS: forward-once.ts), a QoS 1 request acknowledged, a QoS 2 one
      // through its PUBCOMP
      for (let i = 0; i < N; i += 50) {
        clients.push(...(await Promise.all(Array.from({ length: 50 }, async (_, k) => {
          const id = `cm-${i + k}`;
          const c = await RawClient.connect(broker.port, id, 'x', true);
          c.send({ cmd: 'subscribe', messageId: 3, subscriptions: [{ topic: `state/${id}/update/delta`, qos: 1 }] });
          await c.next((p) => p.cmd === 'suback' && p.messageId === 3);
          c.send(publish(`state/${id}/update`, { state: { reported: { n: 1 } } }, 1, 1), publish(`state/${id}/update`, { state: { reported: { n: 2 } } }, 2, 2));
          await c.next((p) => p.cmd === 'puback' && p.messageId === 1);
          await c.next((p) => p.cmd === 'pubrec' && p.messageId === 2);
          c.send({ cmd: 'pubrel', messageId: 2 });
          await c.next((p) => p.cmd === 'pubcomp' && p.messageId === 2);
          return c;
        }))));
      }
      // five connections' QoS 2 messages past their session's limit wait in the gate, then go
      const ids = Array.from({ length: LIMIT + 5 }, (_, k) => 100 + k);
      await Promise.all(clients.slice(0, 5).map(async (waiting, i) => {
        waiting.send(...ids.map((id) => publish(`state/cm-${i}/update`, { state: { reported: { id } } }, id, 2)));
        await waiting.next(() => waiting.count((p) => p.cmd === 'pubrec' && p.messageId! >= 100) === LIMIT);
        waiting.send(...ids.map((id) => ({ cmd: 'pubrel' as const, messageId: id })));
        await waiting.next(() => waiting.count((p) => p.cmd === 'pubcomp' && p.messageId! >= 100) === ids.length);
      }));
      assert.equal(broker.connectedClients, N);

      const now = census();
      /** What the connections added. */
      const c = {
        closuresOf: (f: string) => now.closuresOf(f) - before.closuresOf(f),
        objects: (name: string) => now.objects(name) - before.objects(name),
        shaped: (...props: string[]) => now.shaped(...props) - before.shaped(...props),
        under: (p: string) => now.under(p) - before.under(p),
        distinctUnder: (p: string) => now.distinctUnder(p) - before.distinctUnder(p),
        propertyBytes: (name: string) => now.propertyBytes(name) - before.propertyBytes(name),
      };
      // the gate, and its listener shared by all parsers, are the broker's (were one each, with five closures)
      assert.equal(c.objects('InboundGate'), 0, `InboundGate objects for ${N} connections`);
      assert.ok(c.closuresOf('inbound-gate.ts') < N / 10, `${c.closuresOf('inbound-gate.ts')} closures of inbound-gate.ts for ${N} connections`);
      // the connections whose packets waited hold no queue once they went (V8 may make one
      // more, its template of the object literal)
      assert.ok(c.shaped('queue', 'overflowed') <= 1, `${c.shaped('queue', 'overflowed')} queues of the gate left`);
      // no PUBLISH awaits its acknowledgement: no place left (was each connection's last; V8
      // may make one more, its template of the object literal)
      assert.ok(c.shaped('ready', 'written') < N / 10, `${c.shaped('ready', 'written')} places of PUBLISH packets for ${N} connections, all acknowledged`);
      assert.ok(c.closuresOf('ack-order.ts') < N / 10, `${c.closuresOf('ack-order.ts')} closures of ack-order.ts for ${N} connections`);
      // embedded-broker.ts's functions are shared by all connections: coalesceWrites' write and
      // the packet limit's parse (were one each per connection, with the limit's log line one
      // more, coalesceWrites' uncork one more, the gate's three options three)
      assert.ok(c.closuresOf('embedded-broker.ts') < N / 10, `${c.closuresOf('embedded-broker.ts')} closures of embedded-broker.ts for ${N} connections`);
      // forward-once.ts's functions are shared by all connections: the duplicates record's
      // get and set, the deliver0 and deliverQoS getters, the subscriptions proxy's set and
      // an exact filter's qos getter (were one each per connection or subscription, and its
      // marking of subscriptions being added one more; the QoS 0 subscriptions' deliver
      // function is made for a connection that has one)
      assert.ok(c.closuresOf('forward-once.ts') < N / 10, `${c.closuresOf('forward-once.ts')} closures of forward-once.ts for ${N} connections`);
      // aedes's clients keep V8's fast properties: deliver0 and deliverQoS are accessors of
      // their class, not turned into accessors on each client (which put each in dictionary
      // mode: 1,600 bytes of properties per connection, ~40 now)
      assert.ok(c.propertyBytes('Client') < 300 * N, `${c.propertyBytes('Client')} bytes of aedes clients' properties for ${N} connections`);
      // and their subscription records too: qos is an accessor of their class (each exact
      // filter's record had its own, in dictionary mode: 448 bytes of properties)
      assert.ok(c.propertyBytes('Subscription') < 100 * N, `${c.propertyBytes('Subscription')} bytes of aedes subscription records' properties for ${N} connections`);
      // and one duplicates record for all (was one per connection, an object without prototype)
      assert.ok(c.distinctUnder('duplicates') < N / 10, `${c.distinctUnder('duplicates')} duplicates records for ${N} connections`);
      // the packet limit's line reads the address only when written (a socket keeps what it read)
      assert.ok(c.under('_peername') < N / 10, `${c.under('_peername')} sockets holding their peer's address, of ${N}`);
    } finally {
      await Promise.all(clients.map((c) => c.end()));
    }
  });

  it("builds no cache of numbers in aedes's mqtt-packet (65,536 Buffers, 6.5 MB, at the first packet written)", async () => {
    const c = await RawClient.connect(broker.port, 'cm-numbers', 'x', true);
    try {
      c.send({ cmd: 'subscribe', messageId: 7, subscriptions: [{ topic: 'state/cm-numbers/update/delta', qos: 1 }] });
      await c.next((p) => p.cmd === 'suback' && p.messageId === 7);
      c.send(publish('state/cm-numbers/update', { state: { reported: { n: 1 } } }, 8, 1));
      await c.next((p) => p.cmd === 'puback' && p.messageId === 8);
    } finally {
      await c.end();
    }
    // the copy aedes writes with (this test's raw client writes with it too)
    const numbers = createRequire(createRequire(import.meta.url).resolve('aedes'))('mqtt-packet/numbers.js') as { cache: Record<number, Buffer> };
    assert.equal(Object.keys(numbers.cache).length, 0, 'cached numbers after packets were written');
  });
});
