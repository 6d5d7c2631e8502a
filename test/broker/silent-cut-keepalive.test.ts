/**
 * A network cut between an instance and its external broker that closes nothing (a partition,
 * a NAT dropping the connection's state) is noticed at the connection's MQTT keepalive:
 * mqtt.js declares the connection dead when 1.5 keepalives pass unanswered. With mqtt.js's
 * default of 60 s that was 90 s, during which /readyz said ready and a leader kept the
 * rollouts' lease; the instance's connections use 15 s (SERVICE_KEEPALIVE_S), so 22.5 s.
 *
 * A real Mosquitto behind a TCP relay that goes silent (`hang`: connections stay open and
 * forward nothing). The bound waited for, 60 s, lies between the two: it is the protocol's
 * timer that is checked, not a speed.
 */
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ExternalBroker } from '../../src/broker/external-broker.ts';
import { createLogger } from '../../src/util/logger.ts';
import { eventually } from '../helpers/cli.ts';
import { findMosquitto, mosquittoUnavailable, startTestMosquitto, type TestMosquitto } from '../helpers/mosquitto.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { startRelay, type TcpRelay } from '../helpers/tcp-relay.ts';

const TOKEN = `updr_silent_cut_keepalive_${'k'.repeat(24)}`;
const found = findMosquitto();
/** Between 1.5 x 15 s (noticed now) and 1.5 x 60 s (mqtt.js's default, before). */
const NOTICED_WITHIN_MS = 60_000;

if (!found.ok) {
  const message = mosquittoUnavailable(found.reason, 'silent cut keepalive test');
  it('external broker: a silent cut noticed at the keepalive', (t) => t.skip(message));
} else {
  describe('external broker (Mosquitto): a silent network cut', () => {
    let broker: TestMosquitto;
    let relay: TcpRelay;
    let ts: TestServer;
    const lines: { level: string; msg: string }[] = [];

    before(async () => {
      broker = await startTestMosquitto(found.bin, { operatorToken: TOKEN, devices: [], secrets: new Map() });
      relay = await startRelay({ host: '127.0.0.1', port: broker.servicePort });
      const dataDir = await mkdtemp(path.join(os.tmpdir(), 'updraft-silent-cut-'));
      await writeFile(path.join(dataDir, 'operator-token'), TOKEN + '\n', { mode: 0o600 });
      const logger = createLogger({ level: 'info', format: 'json', write: (l) => lines.push(JSON.parse(l)) });
      ts = await startTestServer({ dataDir, logger, flags: { 'mqtt-url': `mqtt://127.0.0.1:${relay.port}`, 'mqtt-tls-port': -1 } });
    });
    after(async () => {
      await ts?.close();
      await relay?.stop();
      await broker?.stop();
    });

    const bus = () => ts.server.bus as ExternalBroker;
    const readyz = async () => (await fetch(`${ts.httpUrl}/readyz`)).status;

    it('is noticed at the 15 s keepalive: the connection is given up, /readyz says 503, and it comes back once the network does', async () => {
      assert.equal(bus().connected, true);
      assert.equal(await readyz(), 200);
      const cutAt = Date.now();
      relay.hang();
      await eventually(async () => (!bus().connected ? true : undefined), NOTICED_WITHIN_MS, `the cut noticed within ${NOTICED_WITHIN_MS / 1000} s (mqtt.js's default keepalive would take 90 s)`);
      // mqtt.js's own timer: not before one keepalive has passed unanswered
      assert.ok(Date.now() - cutAt >= 15_000, `noticed after ${Date.now() - cutAt} ms: a keepalive must pass first`);
      assert.ok(lines.some((l) => l.level === 'warn' && l.msg === 'MQTT broker connection lost; reconnecting'), 'the loss is logged');
      assert.equal(await readyz(), 503, '/readyz says the instance cannot serve devices');

      relay.resume();
      await eventually(async () => (bus().connected ? true : undefined), 30_000, 'reconnected once the network is back');
      assert.equal(await eventually(async () => ((await readyz()) === 200 ? 200 : undefined), 15_000, '/readyz ready again'), 200);
    });
  });
}
