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
import type { Authenticator } from '../../src/broker/authenticator.ts';
import { EmbeddedBroker } from '../../src/broker/embedded-broker.ts';
import { createLogger } from '../../src/util/logger.ts';
import { assertStartRefused, changeClients, withChangedClients, type AedesClient } from './aedes-patch.ts';
import { RawClient } from './raw-mqtt-client.ts';

const admitAll: Authenticator = { authenticate: async (c) => ({ kind: 'device' as const, id: c.clientId }) };

/** A client with one more parser 'packet' listener. */
function addParserListener(client: AedesClient): void {
  client._parser.on('packet', () => {});
}

/** A client whose parser 'packet' listener is a function of its own, calling aedes's. */
function ownParserListener(client: AedesClient): void {
  const [enqueue] = client._parser.listeners('packet');
  client._parser.removeListener('packet', enqueue!);
  client._parser.on('packet', function (this: unknown, packet: unknown) {
    enqueue!.call(this, packet);
  });
}

describe("embedded broker: aedes's parser listener, checked", () => {
  it('an aedes whose clients read their packets otherwise: start rejects with the reason, the broker is left unstarted', async () => {
    await withChangedClients(addParserListener, () => assertStartRefused(/one parser 'packet' listener/));
  });

  it("an aedes whose clients each have a parser listener of their own: start rejects (the gate's one listener stands in for aedes's on every parser)", async () => {
    await withChangedClients(ownParserListener, () => assertStartRefused(/not one function for all/));
  });

  it('a client that fails the check once the broker runs: that connection is closed and logged, the process and other connections go on', async () => {
    const lines: string[] = [];
    const broker = new EmbeddedBroker({ port: 0, host: '127.0.0.1', authenticator: admitAll, logger: createLogger({ level: 'warn', write: (l) => lines.push(l) }) });
    await broker.start();
    try {
      const undo = changeClients((broker as unknown as { aedes: object }).aedes, addParserListener);
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
