/**
 * What one device can make the embedded broker hold: a packet over the size limit closes its
 * connection as soon as its header is read (a request just over the shadow's limit still gets
 * its 413), and no message of a device is retained. Real server, real MQTT over TCP.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { DEFAULT_MAX_PACKET_BYTES } from '../../src/broker/embedded-broker.ts';
import { eventually } from '../helpers/cli.ts';
import { connectDevice, TestClient, type Received } from '../helpers/mqtt-client.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

describe('embedded broker: packet size and retained messages of devices', () => {
  let ts: TestServer;
  let lines: string[];
  before(async () => {
    lines = [];
    const { createLogger } = await import('../../src/util/logger.ts');
    ts = await startTestServer({ logger: createLogger({ level: 'warn', write: (l) => lines.push(l) }) });
  });
  after(async () => {
    await ts.close();
  });

  it('answers a request over the shadow limit with 413, and keeps the connection', async () => {
    const dev = await connectDevice(ts, 'big-1');
    try {
      await dev.subscribe('state/big-1/update/rejected');
      const answer = await dev.request('state/big-1/update', { state: { reported: { filler: 'x'.repeat(20_000) } } });
      assert.equal(answer.topic, 'state/big-1/update/rejected');
      assert.equal(answer.body.code, 413);
      assert.equal(dev.client.connected, true);
      assert.equal(await ts.server.store.getShadow('big-1', ''), undefined, 'nothing stored');
    } finally {
      await dev.end();
    }
  });

  it('closes the connection of a packet over the packet limit once its header is read, without waiting for its body', async () => {
    const { secret } = await ts.server.registry.register({ deviceId: 'big-2' });
    const dev = await TestClient.connect(ts.mqttUrl, 'big-2', { username: 'big-2', password: secret });
    const closed = new Promise<void>((resolve) => dev.client.stream.once('close', () => resolve()));
    // the header of a PUBLISH of 100 MB and the start of its body: the rest never comes
    const length = 100 * 1024 * 1024;
    const header = [0x30];
    for (let n = length; ; ) {
      const byte = n % 128;
      n = Math.floor(n / 128);
      header.push(n > 0 ? byte | 0x80 : byte);
      if (n === 0) break;
    }
    const topic = Buffer.from('state/big-2/update');
    (dev.client.stream as net.Socket).write(Buffer.concat([Buffer.from(header), Buffer.from([topic.length >> 8, topic.length & 0xff]), topic, Buffer.alloc(1024, 0x20)]));
    await closed;
    await eventually(async () => (lines.some((l) => new RegExp(`connection closed: packet over the size limit clientId=big-2 bytes=104857600 limit=${DEFAULT_MAX_PACKET_BYTES} remote=\\S*127\\.0\\.0\\.1`).test(l)) ? true : undefined), 10_000, 'the warning');
    dev.client.end(true);
    // the device connects again, and is served
    const again = await TestClient.connect(ts.mqttUrl, 'big-2', { username: 'big-2', password: secret });
    try {
      await again.subscribe('state/big-2/update/accepted');
      assert.equal((await again.request('state/big-2/update', { state: { reported: { ok: true } } })).topic, 'state/big-2/update/accepted');
    } finally {
      await again.end();
    }
  });

  it('retains nothing a device publishes', async () => {
    const dev = await connectDevice(ts, 'ret-1');
    try {
      await dev.subscribe('state/ret-1/update/accepted');
      const answered = dev.next((m) => m.topic === 'state/ret-1/update/accepted' && m.body.clientToken === 'kept?');
      await dev.publish('state/ret-1/update', { state: { reported: { r: 1 } }, clientToken: 'kept?' }, { retain: true });
      await answered;
      // the request was handled; a later subscriber to the request topic (the device itself,
      // the only one allowed) is handed no retained copy of it
      await dev.subscribe('state/ret-1/get/accepted');
      const seen: Received[] = [];
      dev.client.on('message', (topic, payload) => {
        if (topic === 'state/ret-1/update') seen.push({ topic, body: payload.toString() });
      });
      await dev.subscribe('state/ret-1/update');
      // a retained message arrives with the SUBACK's turn; a marker request, answered after it, bounds the wait
      await dev.request('state/ret-1/get', {});
      assert.deepEqual(seen, []);
    } finally {
      await dev.end();
    }
  });
});
