/**
 * The inbound gate (inbound-gate.ts) takes over the one 'packet' listener aedes puts on each
 * client's parser. An aedes upgrade that reads its packets otherwise makes the broker refuse
 * to start, as its other guards do, instead of throwing out of the connection handler at the
 * first device's connection (which ended the process). Made to fail here by an aedes whose
 * clients have a second parser listener: from its start, or only once it is running; and by
 * one whose clients' listeners are not one function for all (the gate puts one in their place).
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it } from 'node:test';
import { Aedes } from 'aedes';
import type { Authenticator } from '../../src/broker/authenticator.ts';
import { EmbeddedBroker } from '../../src/broker/embedded-broker.ts';
import { createLogger } from '../../src/util/logger.ts';
import { RawClient } from './raw-mqtt-client.ts';

const admitAll: Authenticator = { authenticate: async (c) => ({ kind: 'device' as const, id: c.clientId }) };

type Handle = (conn: unknown, req?: unknown) => { _parser: { on(event: 'packet', listener: () => void): void } };

/** Makes `aedes` hand out clients with one more parser 'packet' listener; returns the undo. */
function addParserListener(aedes: { handle: Handle }): () => void {
  const handle = aedes.handle;
  aedes.handle = (conn, req) => {
    const client = handle(conn, req);
    client._parser.on('packet', () => {});
    return client;
  };
  return () => {
    aedes.handle = handle;
  };
}

/** Makes `aedes` hand out clients whose parser 'packet' listener is a function of their own, calling aedes's. */
function ownParserListener(aedes: { handle: Handle }): void {
  const handle = aedes.handle;
  aedes.handle = (conn, req) => {
    const client = handle(conn, req) as unknown as { _parser: { listeners(e: 'packet'): ((p: unknown) => void)[]; removeListener(e: 'packet', l: (p: unknown) => void): void; on(e: 'packet', l: (p: unknown) => void): void } };
    const [enqueue] = client._parser.listeners('packet');
    client._parser.removeListener('packet', enqueue!);
    client._parser.on('packet', function (this: unknown, packet: unknown) {
      enqueue!.call(this, packet);
    });
    return client as unknown as ReturnType<Handle>;
  };
}

describe("embedded broker: aedes's parser listener, checked", () => {
  it('an aedes whose clients read their packets otherwise: start rejects with the reason, the broker is left unstarted', async () => {
    const createBroker = Aedes.createBroker;
    Aedes.createBroker = async (opts) => {
      const aedes = await createBroker.call(Aedes, opts);
      addParserListener(aedes as unknown as { handle: Handle });
      return aedes;
    };
    const broker = new EmbeddedBroker({ port: 0, host: '127.0.0.1', authenticator: admitAll, logger: createLogger({ level: 'silent' }) });
    try {
      await assert.rejects(broker.start(), (err: Error & { code?: string }) => err.code === 'INTERNAL' && /one parser 'packet' listener/.test(err.message));
      await assert.rejects(broker.publish('t', 'x', 0), /broker is not started/);
    } finally {
      Aedes.createBroker = createBroker;
      await broker.stop();
    }
  });

  it("an aedes whose clients each have a parser listener of their own: start rejects (the gate's one listener stands in for aedes's on every parser)", async () => {
    const createBroker = Aedes.createBroker;
    Aedes.createBroker = async (opts) => {
      const aedes = await createBroker.call(Aedes, opts);
      ownParserListener(aedes as unknown as { handle: Handle });
      return aedes;
    };
    const broker = new EmbeddedBroker({ port: 0, host: '127.0.0.1', authenticator: admitAll, logger: createLogger({ level: 'silent' }) });
    try {
      await assert.rejects(broker.start(), (err: Error & { code?: string }) => err.code === 'INTERNAL' && /not one function for all/.test(err.message));
      await assert.rejects(broker.publish('t', 'x', 0), /broker is not started/);
    } finally {
      Aedes.createBroker = createBroker;
      await broker.stop();
    }
  });

  it('a client that fails the check once the broker runs: that connection is closed and logged, the process and other connections go on', async () => {
    const lines: string[] = [];
    const broker = new EmbeddedBroker({ port: 0, host: '127.0.0.1', authenticator: admitAll, logger: createLogger({ level: 'warn', write: (l) => lines.push(l) }) });
    await broker.start();
    try {
      const undo = addParserListener((broker as unknown as { aedes: { handle: Handle } }).aedes);
      const socket = net.connect(broker.port, '127.0.0.1');
      socket.on('error', () => {});
      await new Promise<void>((resolve) => socket.once('close', () => resolve()));
      assert.ok(
        lines.some((l) => /connection closed: aedes client not as expected/.test(l) && /one parser 'packet' listener/.test(l)),
        lines.join('\n'),
      );
      undo();
      const c = await RawClient.connect(broker.port, 'after-guard', 'x', true);
      await c.end();
    } finally {
      await broker.stop();
    }
  });
});
