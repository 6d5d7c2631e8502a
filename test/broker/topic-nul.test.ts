/**
 * A topic name or filter with U+0000 closes the connection [MQTT-1.5.3-2]: the embedded
 * broker took such a PUBLISH (acknowledged it) and such a SUBSCRIBE. Raw MQTT over TCP.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Authenticator } from '../../src/broker/authenticator.ts';
import { EmbeddedBroker } from '../../src/broker/embedded-broker.ts';
import { silentLogger } from '../../src/util/logger.ts';
import { publish, RawClient } from './raw-mqtt-client.ts';

const operators: Authenticator = { authenticate: async (c) => ({ kind: 'operator' as const, id: c.clientId }) };

/** 'closed' when the server closes the connection before sending a `cmd` packet, else `cmd`. */
const closedOr = (c: RawClient, cmd: string): Promise<string> =>
  Promise.race([c.closed.then(() => 'closed'), c.next((p) => p.cmd === cmd).then(() => cmd, () => 'neither')]);

describe('U+0000 in a topic (embedded broker)', () => {
  const broker = new EmbeddedBroker({ port: 0, host: '127.0.0.1', authenticator: operators, logger: silentLogger });
  before(() => broker.start());
  after(() => broker.stop());

  it('closes the connection on a PUBLISH whose topic name has it, unacknowledged', async () => {
    const c = await RawClient.connect(broker.port, 'nul-publish', 'x', true);
    c.send(publish('state/d1/up\u0000date', { clientToken: 'z' }, 7, 1));
    assert.equal(await closedOr(c, 'puback'), 'closed');
  });

  it('closes the connection on a SUBSCRIBE whose filter has it, without a SUBACK', async () => {
    const c = await RawClient.connect(broker.port, 'nul-subscribe', 'x', true);
    c.send({ cmd: 'subscribe', messageId: 3, subscriptions: [{ topic: 'state/d1/\u0000/#', qos: 0 }] });
    assert.equal(await closedOr(c, 'suback'), 'closed');
  });
});
