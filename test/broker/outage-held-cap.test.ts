/**
 * Beyond MAX_HELD messages held during an outage of the external broker, a publisher waits for
 * the reconnect instead of losing its message. 328a37a dropped it: a device that stayed
 * connected to the broker while only the instance was cut off never asks with `get` (the agent
 * does at connect), so it never got it. Now the caller (here DELETE /api/v1/devices/:id, whose
 * `delete/accepted` is published past the cap) is answered once the connection is back and the
 * message sent; one line says so, and the "back" line counts the callers that waited.
 *
 * A real Mosquitto stays up (with the "device" connected to it); a TCP relay cuts off the
 * instance alone.
 */
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import mqtt from 'mqtt';
import { MAX_HELD } from '../../src/broker/bounded-publish.ts';
import type { ExternalBroker } from '../../src/broker/external-broker.ts';
import { createLogger } from '../../src/util/logger.ts';
import { eventually } from '../helpers/cli.ts';
import { findMosquitto, mosquittoUnavailable, startTestMosquitto, type TestMosquitto } from '../helpers/mosquitto.ts';
import { apiJson, startTestServer, type TestServer } from '../helpers/server.ts';
import { startRelay, type TcpRelay } from '../helpers/tcp-relay.ts';

const TOKEN = `updr_held_cap_test_${'s'.repeat(24)}`;
const found = findMosquitto();

if (!found.ok) {
  const message = mosquittoUnavailable(found.reason, 'held messages cap test');
  it('external broker: beyond the held cap a publisher waits for the reconnect', (t) => t.skip(message));
} else {
  describe('external broker (Mosquitto): more than MAX_HELD messages during a partition', () => {
    let broker: TestMosquitto;
    let relay: TcpRelay;
    let ts: TestServer;
    let device: mqtt.MqttClient | undefined;
    const lines: { msg: string; held?: number; waited?: number; dropped?: number }[] = [];
    before(async () => {
      broker = await startTestMosquitto(found.bin, { operatorToken: TOKEN, devices: [], secrets: new Map() });
      relay = await startRelay({ host: '127.0.0.1', port: broker.servicePort });
      const dataDir = await mkdtemp(path.join(os.tmpdir(), 'updraft-held-cap-'));
      await writeFile(path.join(dataDir, 'operator-token'), TOKEN + '\n', { mode: 0o600 });
      const logger = createLogger({ level: 'info', format: 'json', write: (l) => lines.push(JSON.parse(l)) });
      ts = await startTestServer({ dataDir, logger, flags: { 'mqtt-url': `mqtt://127.0.0.1:${relay.port}`, 'mqtt-tls-port': -1 } });
    });
    after(async () => {
      await device?.endAsync(true).catch(() => undefined);
      await ts?.close();
      await relay?.stop();
      await broker?.stop();
    });
    const bus = () => ts.server.bus as ExternalBroker;

    it('a message past the cap is not dropped: its caller is answered after the reconnect, and the connected device gets it', async () => {
      assert.equal((await apiJson(ts, 'POST', '/api/v1/devices', { deviceId: 'k-1' })).status, 201);
      await ts.server.replica.update({ deviceId: 'k-1', name: '' }, { state: { reported: { mode: 'on' } } }, { kind: 'device', id: 'k-1' });
      // the "device", connected to the broker throughout (an operator login sees its topics)
      device = await mqtt.connectAsync(broker.serviceUrl, { username: 'operator', password: TOKEN, protocolVersion: 5, reconnectPeriod: 0 });
      const got: string[] = [];
      device.on('message', (t) => got.push(t));
      await device.subscribeAsync(['state/+/delete/accepted', 'cap-test/#'], { qos: 1 });
      await relay.down(); // the broker is up: only the instance is cut off
      await eventually(async () => (!bus().connected ? true : undefined), 15_000, 'the instance sees the outage');
      const filled = Array.from({ length: MAX_HELD }, (_, i) => bus().publish(`cap-test/${i}`, 'x', 1));
      await Promise.all(filled); // each held, settled at once

      let answered = false;
      const request = apiJson(ts, 'DELETE', '/api/v1/devices/k-1').then((a) => ((answered = true), a));
      await eventually(async () => (lines.some((l) => l.msg.startsWith('MQTT broker unreachable and')) ? true : undefined), 15_000, 'the line that publishers wait');
      assert.equal(answered, false, 'past the cap, the request waits for the reconnect');
      assert.equal(bus().connected, false);

      await relay.up();
      const answer = await request;
      assert.equal(answer.status, 200, JSON.stringify(answer.body));
      await eventually(async () => (got.includes('state/k-1/delete/accepted') ? true : undefined), 60_000, 'the device got delete/accepted');
      const back = lines.find((l) => l.msg === 'MQTT broker connection back');
      assert.ok(back && back.held === MAX_HELD && back.waited! >= 1 && back.dropped === undefined, `the back line: ${JSON.stringify(back)}`);
    });
  });
}
