/**
 * forward-once.ts takes each aedes client's deliver0 and deliverQoS through accessors of
 * aedes's client class, which its constructor's assignments go through (a client whose own
 * property became an accessor went to V8's dictionary mode: 1.6 KB per connection). An aedes
 * upgrade whose clients get them otherwise (as their own properties, defined rather than
 * assigned, or as methods of the class) makes the broker refuse to start, as its other
 * guards do, instead of losing the choice of a copy's QoS unnoticed. Likewise the qos of
 * aedes's subscription records, an accessor of their class: an aedes whose class has its own
 * refuses the start (this guard ran at the first SUBSCRIBE, once the broker was serving).
 */
import assert from 'node:assert/strict';
import { Duplex } from 'node:stream';
import { describe, it } from 'node:test';
import { Aedes, type Client } from 'aedes';
import type { Authenticator } from '../../src/broker/authenticator.ts';
import { EmbeddedBroker } from '../../src/broker/embedded-broker.ts';
import { createLogger } from '../../src/util/logger.ts';
import { assertStartRefused, withChangedClients } from './aedes-patch.ts';
import { RawClient } from './raw-mqtt-client.ts';

const admitAll: Authenticator = { authenticate: async (c) => ({ kind: 'device' as const, id: c.clientId }) };

/** The class of the records aedes keeps of a client's subscriptions (its `Subscription`, not exported): a record's prototype, from an aedes of its own. */
async function subscriptionPrototype(): Promise<object> {
  const aedes = await Aedes.createBroker();
  const nothing = new Duplex({ read() {}, write: (_chunk, _encoding, callback) => callback() });
  try {
    const client = aedes.handle(nothing) as unknown as Client & { subscriptions: Record<string, object> };
    client.subscribe({ topic: 'x/+', qos: 1 }, () => {});
    const record = client.subscriptions['x/+'];
    assert.ok(record, 'aedes stored the subscription in the run of subscribe');
    client.close();
    return Object.getPrototypeOf(record) as object;
  } finally {
    nothing.destroy();
    await new Promise<void>((resolve) => aedes.close(() => resolve()));
  }
}

describe("embedded broker: aedes's subscription records, checked at start", () => {
  // first in this file: the broker readies the class for good once it saw it
  it('an aedes whose subscription class has its own qos (an accessor, say): start rejects with the reason, before any client subscribed', async () => {
    const proto = await subscriptionPrototype();
    assert.equal(Object.getOwnPropertyDescriptor(proto, 'qos'), undefined, 'aedes 1.2 assigns qos in the constructor');
    const kept = new WeakMap<object, number>();
    Object.defineProperty(proto, 'qos', { get: function (this: object) { return kept.get(this); }, set: function (this: object, qos: number) { kept.set(this, qos); }, configurable: true });
    try {
      await assertStartRefused(/subscription records not of a class of their own, or one with its own qos/);
    } finally {
      delete (proto as { qos?: number }).qos;
    }
  });
});

describe("embedded broker: aedes's clients' deliver functions, checked", () => {
  it('an aedes whose clients define deliver0 as their own property: start rejects with the reason', async () => {
    const ownDeliver0 = (client: object) => {
      Object.defineProperty(client, 'deliver0', { value: () => {}, writable: true, configurable: true, enumerable: true });
    };
    await withChangedClients(ownDeliver0, () => assertStartRefused(/deliver0 and deliverQoS set through its class/));
  });

  it('an unchanged aedes starts, and its clients subscribe and receive as before', async () => {
    const broker = new EmbeddedBroker({ port: 0, host: '127.0.0.1', authenticator: admitAll, logger: createLogger({ level: 'silent' }) });
    await broker.start();
    try {
      const c = await RawClient.connect(broker.port, 'guard-1', 'x', true);
      try {
        c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'state/guard-1/update/delta', qos: 1 }, { topic: 'state/guard-1/+/accepted', qos: 0 }] });
        await c.next((p) => p.cmd === 'suback' && p.messageId === 1);
        await broker.publish('state/guard-1/update/delta', '{"n":1}', 1);
        const delta = await c.next((p) => p.cmd === 'publish' && (p as { topic?: string }).topic === 'state/guard-1/update/delta');
        assert.equal((delta as { qos?: number }).qos, 1);
        await broker.publish('state/guard-1/update/accepted', '{"n":2}', 1);
        const accepted = await c.next((p) => p.cmd === 'publish' && (p as { topic?: string }).topic === 'state/guard-1/update/accepted');
        assert.equal((accepted as { qos?: number }).qos, 0, 'a QoS 0 subscription takes its copy at QoS 0');
      } finally {
        await c.end();
      }
    } finally {
      await broker.stop();
    }
  });
});
