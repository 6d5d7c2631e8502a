/**
 * An embedded broker that cannot listen (its port taken) fails its start whole: aedes closed,
 * nothing left half started that would publish into a closed broker or keep the process alive.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it } from 'node:test';
import type { Authenticator } from '../../src/broker/authenticator.ts';
import { EmbeddedBroker } from '../../src/broker/embedded-broker.ts';
import { silentLogger } from '../../src/util/logger.ts';

const admitAll: Authenticator = { authenticate: async (c) => ({ kind: 'device' as const, id: c.clientId }) };

describe('an embedded broker whose port is taken', () => {
  it('refuses to start with PORT_IN_USE, and is left unstarted: a publish is refused, a second start on a free port works', async () => {
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as net.AddressInfo).port;
    const broker = new EmbeddedBroker({ port, host: '127.0.0.1', authenticator: admitAll, logger: silentLogger });
    try {
      await assert.rejects(broker.start(), (err: Error & { code?: string }) => err.code === 'PORT_IN_USE' && /already in use/.test(err.message));
      await assert.rejects(broker.publish('t', 'x', 0), /broker is not started/);
    } finally {
      await new Promise<void>((resolve) => taken.close(() => resolve()));
    }
    await broker.start();
    assert.equal(broker.port, port);
    await broker.stop();
  });
});
