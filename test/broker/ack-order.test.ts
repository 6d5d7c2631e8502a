/**
 * The embedded broker acknowledges a connection's QoS 1 and 2 PUBLISH packets in the order
 * it received them [MQTT-4.6.0-2] [MQTT-4.6.0-3], also when some of them go nowhere (refused
 * by the ACL, a presence, a copy of a QoS 2 message held) and are acknowledged at once while
 * a request read before them is still being handled. A raw MQTT client sends each batch in
 * one write, as a device that pipelines does, so the broker reads the packets together.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Packet } from 'mqtt-packet';
import { OPERATOR_USERNAME } from '../../src/broker/authenticator.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { publish, RawClient } from './raw-mqtt-client.ts';

const isAck = (p: Packet): boolean => p.cmd === 'puback' || p.cmd === 'pubrec';
/** The acknowledgements received, as `cmd:messageId`, in the order received. */
const acks = (c: RawClient): string[] => c.received.filter(isAck).map((p) => `${p.cmd}:${(p as { messageId: number }).messageId}`);
const update = (device: string, n: number) => ({ state: { reported: { n } }, clientToken: `t${n}` });

describe('embedded broker: acknowledgements in the order received', () => {
  let ts: TestServer;
  let secret: string;
  before(async () => {
    ts = await startTestServer();
    ({ secret } = await ts.server.registry.register({ deviceId: 'ack-order' }));
  });
  after(async () => {
    await ts.close();
  });

  async function sendAll(c: RawClient, packets: Parameters<RawClient['send']>): Promise<string[]> {
    const before = c.count(isAck);
    c.send(...packets);
    await c.next(() => c.count(isAck) >= before + packets.length);
    return acks(c).slice(before);
  }

  it('a QoS 1 PUBLISH refused by the ACL is acknowledged after the requests read before it', async () => {
    const c = await RawClient.connect(ts.server.broker.port, 'ack-order', secret, true);
    const order = await sendAll(c, [
      publish('state/ack-order/update', update('ack-order', 1), 1, 1),
      publish('state/ack-order/update', update('ack-order', 2), 2, 1),
      publish('state/someone-else/update', update('someone-else', 3), 3, 1), // refused by the ACL
      publish('state/ack-order/presence', { online: true }, 4, 1), // discarded here
      publish('state/ack-order/update', update('ack-order', 5), 5, 1),
      publish('state/someone-else/update', update('someone-else', 6), 6, 1),
    ]);
    assert.deepEqual(order, ['puback:1', 'puback:2', 'puback:3', 'puback:4', 'puback:5', 'puback:6']);
    assert.equal((await ts.server.store.getShadow('ack-order', ''))?.state.reported?.n, 5);
    await c.end();
  });

  it('QoS 2 and QoS 1 mixed: PUBREC and PUBACK in the order the PUBLISH packets came', async () => {
    const c = await RawClient.connect(ts.server.broker.port, 'ack-order', secret, true);
    const order = await sendAll(c, [
      publish('state/ack-order/update', update('ack-order', 11), 11, 2),
      publish('state/someone-else/update', update('someone-else', 12), 12, 2), // refused by the ACL
      publish('state/ack-order/update', update('ack-order', 13), 13, 1),
      publish('state/someone-else/update', update('someone-else', 14), 14, 1),
      publish('state/ack-order/update', update('ack-order', 15), 15, 2),
      publish('state/ack-order/presence', { online: true }, 16, 2),
    ]);
    assert.deepEqual(order, ['pubrec:11', 'pubrec:12', 'puback:13', 'puback:14', 'pubrec:15', 'pubrec:16']);
    // a copy of a QoS 2 message held (its PUBREL withheld), read behind a request
    const again = await sendAll(c, [publish('state/ack-order/update', update('ack-order', 17), 17, 1), { ...publish('state/ack-order/update', update('ack-order', 11), 11, 2), dup: true }]);
    assert.deepEqual(again, ['puback:17', 'pubrec:11']);
    await c.end();
  });

  it("the operator's messages to subscribers, refused ones among them", async () => {
    const op = await RawClient.connect(ts.server.broker.port, 'ack-order-op', ts.token, true, OPERATOR_USERNAME);
    await op.subscribe('tools/ack/#');
    const order = await sendAll(op, [
      publish('tools/ack/a', Buffer.from('a'), 1, 2), // delivered to a subscriber before its PUBREC
      publish('$SYS/forbidden', Buffer.from('b'), 2, 1), // refused by the ACL
      publish('tools/ack/c', Buffer.from('c'), 3, 1),
      publish('$SYS/forbidden', Buffer.from('d'), 4, 2),
    ]);
    assert.deepEqual(order, ['pubrec:1', 'puback:2', 'puback:3', 'pubrec:4']);
    await op.end();
  });
});
