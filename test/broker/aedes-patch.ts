/**
 * An aedes changed as an upgrade might change it, for the tests of the embedded broker's
 * guards (*-guard.test.ts): each test brings its own fault, a change of each client aedes
 * makes; this wraps the brokers, or one broker's `handle`, so that their clients have it,
 * and checks that such a broker refuses to start.
 */
import assert from 'node:assert/strict';
import { Aedes } from 'aedes';
import type { Authenticator } from '../../src/broker/authenticator.ts';
import { EmbeddedBroker } from '../../src/broker/embedded-broker.ts';
import { createLogger } from '../../src/util/logger.ts';

/** aedes's client as the faults below reach into it. */
export type AedesClient = { _parser: { on(event: 'packet', listener: (packet: unknown) => void): void; listeners(event: 'packet'): ((packet: unknown) => void)[]; removeListener(event: 'packet', listener: (packet: unknown) => void): void } };

type Handle = (conn: unknown, req?: unknown) => AedesClient;

/** Makes `aedes` pass each client it makes (`handle`) through `change`; returns the undo. */
export function changeClients(aedes: object, change: (client: AedesClient) => void): () => void {
  const a = aedes as { handle: Handle };
  const handle = a.handle;
  a.handle = (conn, req) => {
    const client = handle.call(aedes, conn, req);
    change(client);
    return client;
  };
  return () => {
    a.handle = handle;
  };
}

/** Runs `body` with every aedes broker made meanwhile (`Aedes.createBroker`) passing each client it makes through `change`. */
export async function withChangedClients(change: (client: AedesClient) => void, body: () => Promise<void>): Promise<void> {
  const createBroker = Aedes.createBroker;
  Aedes.createBroker = async (opts) => {
    const aedes = await createBroker.call(Aedes, opts);
    changeClients(aedes, change);
    return aedes;
  };
  try {
    await body();
  } finally {
    Aedes.createBroker = createBroker;
  }
}

const admitAll: Authenticator = { authenticate: async (c) => ({ kind: 'device' as const, id: c.clientId }) };

/** An embedded broker's start rejects with INTERNAL and a message matching `reason`, and leaves it unstarted. */
export async function assertStartRefused(reason: RegExp): Promise<void> {
  const broker = new EmbeddedBroker({ port: 0, host: '127.0.0.1', authenticator: admitAll, logger: createLogger({ level: 'silent' }) });
  try {
    await assert.rejects(broker.start(), (err: Error & { code?: string }) => err.code === 'INTERNAL' && reason.test(err.message));
    await assert.rejects(broker.publish('t', 'x', 0), /broker is not started/);
  } finally {
    await broker.stop();
  }
}
