/**
 * What a device can make the embedded broker hold with QoS 2 messages whose PUBREL it
 * withholds. aedes keeps each such message (its incoming store, per client id) until the
 * PUBREL, and its own limit (1,000) counts per connection: on a persistent session a device
 * held 900 presence messages of 60 KB more at each reconnect (QA: 4 reconnects, 250 MB).
 * A device's session holds at most MAX_DEVICE_QOS2_AWAITING_RELEASE, over all its
 * connections and whatever the topic; one more waits, neither acknowledged nor handled, with
 * the packets after it, until a PUBREL frees a place (inbound-gate.ts); past a bound of
 * packets waiting the connection is closed. A raw MQTT client (mqtt-packet over TCP)
 * withholds the PUBRELs.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Packet } from 'mqtt-packet';
import { OPERATOR_USERNAME } from '../../src/broker/authenticator.ts';
import { MAX_DEVICE_QOS2_AWAITING_RELEASE as LIMIT } from '../../src/broker/qos2-receipts.ts';
import { createLogger } from '../../src/util/logger.ts';
import { eventually } from '../helpers/cli.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { isPublish, publish, RawClient } from './raw-mqtt-client.ts';

const body = Buffer.alloc(1000, 0x20);
const pubrecs = (c: RawClient, n: number): Promise<Packet> => c.next(() => c.count((p) => p.cmd === 'pubrec') >= n);

/** Waits for a PINGRESP: the broker has read everything sent before the PINGREQ. */
async function readUpTo(c: RawClient): Promise<void> {
  const n = c.count((p) => p.cmd === 'pingresp');
  c.send({ cmd: 'pingreq' });
  await c.next(() => c.count((p) => p.cmd === 'pingresp') > n);
}

describe('embedded broker: QoS 2 messages awaiting their PUBREL', () => {
  let ts: TestServer;
  const lines: string[] = [];
  before(async () => {
    ts = await startTestServer({ logger: createLogger({ level: 'warn', write: (l) => lines.push(l) }) });
  });
  after(async () => {
    await ts.close();
  });

  /** How many of the packet ids `ids` aedes's store holds for `clientId`, awaiting their PUBREL. */
  async function stored(clientId: string, ids: Iterable<number>): Promise<number> {
    const persistence = (ts.server.broker as unknown as { aedes: { persistence: { incomingGetPacket(c: { id: string }, p: { messageId: number }): Promise<unknown> } } }).aedes.persistence;
    let n = 0;
    for (const messageId of ids) n += await persistence.incomingGetPacket({ id: clientId }, { messageId }).then(() => 1, () => 0);
    return n;
  }
  const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => from + i);

  it(`a device's persistent session holds at most ${LIMIT}, over its reconnects: one more waits for a PUBREL`, async () => {
    const { secret } = await ts.server.registry.register({ deviceId: 'q2-hold' });
    const port = ts.server.broker.port;
    // presence messages (which this broker discards), as the QA measurement used, and one
    // the ACL drops (another device's topic): aedes stores them all the same
    const first = await RawClient.connect(port, 'q2-hold', secret, false);
    const half = LIMIT / 2;
    first.send(...range(1, half - 1).map((id) => publish('state/q2-hold/presence', body, id)), publish('state/other/update', body, half));
    await pubrecs(first, half);
    first.drop();

    const second = await RawClient.connect(port, 'q2-hold', secret, false);
    second.send(...range(half + 1, LIMIT).map((id) => publish('state/q2-hold/presence', body, id)));
    await pubrecs(second, LIMIT - half);
    assert.equal(second.open, true, 'up to the limit, the connection stays');
    // one more waits for a place, the connection open: neither acknowledged nor stored
    second.send(publish('state/q2-hold/presence', body, LIMIT + 1));
    await readUpTo(second);
    assert.equal(second.open, true, 'one more waits, the connection stays');
    assert.equal(second.count((p) => p.cmd === 'pubrec' && p.messageId === LIMIT + 1), 0, 'not acknowledged while the session is full');
    assert.equal(await stored('q2-hold', [LIMIT + 1]), 0);
    // a PUBREL frees a place: it goes through
    second.send({ cmd: 'pubrel', messageId: 1 });
    await second.next((p) => p.cmd === 'pubrec' && p.messageId === LIMIT + 1);
    assert.equal(second.count((p) => p.cmd === 'pubcomp' && p.messageId === 1), 1);
    second.drop(); // the session holds 2 .. LIMIT + 1

    // a new connection of the session: its requests wait too, none handled
    const third = await RawClient.connect(port, 'q2-hold', secret, false);
    third.send(...range(LIMIT + 2, LIMIT + 51).map((id) => publish('state/q2-hold/update', { state: { reported: { n: id } } }, id)));
    await readUpTo(third);
    assert.equal(third.open, true);
    assert.equal(third.count((p) => p.cmd === 'pubrec'), 0);
    assert.equal(await ts.server.store.getShadow('q2-hold', ''), undefined, 'no request past the limit was handled');
    // a client that sends more behind them than the broker queues (256 KiB) is closed
    third.send(...range(1000, 1299).map((id) => publish('state/q2-hold/presence', body, id)));
    await third.closed;
    await eventually(async () => (lines.some((l) => l.includes('connection closed: too many packets sent behind QoS 2 messages awaiting their PUBREL') && l.includes('clientId=q2-hold ')) ? true : undefined), 10_000, 'the warning');
    assert.equal(await stored('q2-hold', range(1, 1299)), LIMIT, 'aedes holds the limit, no more');
    assert.equal(await ts.server.store.getShadow('q2-hold', ''), undefined, 'no request past the limit was handled');

    // a retransmission of one held is no new message; a PUBREL frees its place
    const fourth = await RawClient.connect(port, 'q2-hold', secret, false);
    await fourth.subscribe('state/q2-hold/update/accepted');
    fourth.send({ ...publish('state/q2-hold/presence', body, 3), dup: true }, { cmd: 'pubrel', messageId: 2 }, { cmd: 'pubrel', messageId: 4 });
    await fourth.next((p) => p.cmd === 'pubcomp' && p.messageId === 4);
    assert.equal(fourth.count((p) => p.cmd === 'pubrec' && p.messageId === 3), 1);
    fourth.send(publish('state/q2-hold/update', { state: { reported: { freed: 1 } }, clientToken: 'f1' }, 2000), publish('state/q2-hold/update', { state: { reported: { freed: 2 } }, clientToken: 'f2' }, 2001));
    await fourth.next((p) => isPublish(p, 'state/q2-hold/update/accepted', 'f2'));
    await pubrecs(fourth, 3);
    assert.equal(fourth.open, true);
    assert.equal(await stored('q2-hold', [...range(1, 1299), 2000, 2001]), LIMIT);
    fourth.drop();

    // a clean session discards the persistent one, and what aedes held of it ([MQTT-3.1.2-6])
    const clean = await RawClient.connect(port, 'q2-hold', secret, true);
    assert.equal(await stored('q2-hold', [...range(1, 1299), 2000, 2001]), 0, 'emptied by the clean session');
    clean.send(...range(1, LIMIT).map((id) => publish('state/q2-hold/presence', body, id)));
    await pubrecs(clean, LIMIT);
    assert.equal(clean.open, true, 'a fresh session has its whole share');
    await clean.end();
    await eventually(async () => ((await stored('q2-hold', range(1, LIMIT))) === 0 ? true : undefined), 10_000, 'nothing kept of the clean session');
  });

  it(`the operator's tools are not held to the devices' limit`, async () => {
    const op = await RawClient.connect(ts.server.broker.port, 'q2-operator', ts.token, false, OPERATOR_USERNAME);
    op.send(...range(1, LIMIT + 10).map((id) => publish('tools/q2', body, id)));
    await pubrecs(op, LIMIT + 10);
    assert.equal(op.open, true);
    await op.end();
  });
});
