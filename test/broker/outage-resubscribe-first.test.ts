/**
 * After an outage of the external broker, an instance listens again before it sends what it
 * held. mqtt.js sends the QoS 1 messages of its outgoing store one per round trip (the next
 * after the previous one's PUBACK) and only then restores the subscriptions of its clean
 * session: an instance that held its messages there heard no device request until every one
 * had been acknowledged (1,000 held for a broker 20 ms away: 20 s deaf). The instance holds
 * them itself now and publishes them once mqtt.js has sent its SUBSCRIBEs.
 *
 * Order is read where it happens: in the log of a real Mosquitto (`log_type all`), which
 * writes each packet it receives from a connection in the order it reads them.
 */
import assert from 'node:assert/strict';
import { chmod, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ExternalBroker } from '../../src/broker/external-broker.ts';
import { eventually } from '../helpers/cli.ts';
import { findMosquitto, mosquittoUnavailable, startTestMosquitto, type TestMosquitto } from '../helpers/mosquitto.ts';
import { apiJson, startTestServer, type TestServer } from '../helpers/server.ts';

const TOKEN = `updr_resubscribe_first_test_${'r'.repeat(24)}`;
const found = findMosquitto();
const DEVICES = ['d-1', 'd-2', 'd-3', 'd-4', 'd-5'];

if (!found.ok) {
  const message = mosquittoUnavailable(found.reason, 'resubscribe before held messages test');
  it('external broker: subscriptions restored before the held messages', (t) => t.skip(message));
} else {
  describe('external broker (Mosquitto): after an outage, the instance subscribes again before it sends what it held', () => {
    let broker: TestMosquitto;
    let ts: TestServer;
    let logDir: string;
    let logFile: string;

    before(async () => {
      // mosquitto started as root writes its log as the mosquitto user
      logDir = await mkdtemp(path.join(os.tmpdir(), 'updraft-mosquitto-log-'));
      await chmod(logDir, 0o777);
      logFile = path.join(logDir, 'mosquitto.log');
      broker = await startTestMosquitto(found.bin, { operatorToken: TOKEN, devices: [], secrets: new Map() }, { conf: `\nlog_type all\nlog_dest file ${logFile}\n` });
      const dataDir = await mkdtemp(path.join(os.tmpdir(), 'updraft-resubscribe-first-'));
      await writeFile(path.join(dataDir, 'operator-token'), TOKEN + '\n', { mode: 0o600 });
      ts = await startTestServer({ dataDir, flags: { 'mqtt-url': broker.serviceUrl, 'mqtt-tls-port': -1 } });
    });
    after(async () => {
      await ts?.close();
      await broker?.stop();
      if (logDir) await rm(logDir, { recursive: true, force: true });
    });

    const bus = () => ts.server.bus as ExternalBroker;

    it('the SUBSCRIBEs of the reconnect reach the broker before the held delete/accepted messages, each sent once', async () => {
      for (const deviceId of DEVICES) {
        assert.equal((await apiJson(ts, 'POST', '/api/v1/devices', { deviceId })).status, 201);
        await ts.server.replica.update({ deviceId, name: '' }, { state: { reported: { mode: 'on' } } }, { kind: 'device', id: deviceId });
      }
      await broker.down();
      await eventually(async () => (!bus().connected ? true : undefined), 15_000, 'the instance sees the outage');
      for (const deviceId of DEVICES) {
        const answer = await apiJson(ts, 'DELETE', `/api/v1/devices/${deviceId}`);
        assert.equal(answer.status, 200, JSON.stringify(answer.body));
      }
      assert.equal(bus().connected, false, 'the deletions were made during the outage');

      const from = (await stat(logFile)).size;
      await broker.up();
      const published = (text: string) => [...text.matchAll(/Received PUBLISH from (\S+) .*'state\/(d-\d)\/delete\/accepted'/g)];
      const text = await eventually(async () => {
        const t = (await readFile(logFile)).subarray(from).toString();
        return published(t).length >= DEVICES.length ? t : undefined;
      }, 30_000, 'every held delete/accepted reached the broker after the reconnect');

      const lines = text.split('\n');
      const sends = lines.flatMap((l, i) => (/Received PUBLISH from \S+ .*'state\/d-\d\/delete\/accepted'/.test(l) ? [i] : []));
      const clientId = published(text)[0]![1]!;
      const firstSubscribe = lines.findIndex((l) => l.includes(`Received SUBSCRIBE from ${clientId}`));
      assert.ok(firstSubscribe >= 0, `the instance ${clientId} subscribed again after the reconnect:\n${lines.slice(0, 40).join('\n')}`);
      assert.ok(
        firstSubscribe < sends[0]!,
        `the instance subscribed (line ${firstSubscribe}) before sending what it held (first at line ${sends[0]}):\n${lines.slice(0, Math.max(firstSubscribe, sends[0]!) + 2).join('\n')}`,
      );
      assert.deepEqual(
        published(text).map((m) => m[2]).sort(),
        DEVICES,
        'each held delete/accepted sent once, in the order made',
      );
    });
  });
}
