/** ExternalBroker.stop() during a silent network cut: the connection still looks up, a QoS 1 publish is unacknowledged. */
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ExternalBroker } from '../../src/broker/external-broker.ts';
import { createLogger } from '../../src/util/logger.ts';
import { findMosquitto, startTestMosquitto, type TestMosquitto } from '../helpers/mosquitto.ts';
import { apiJson, startTestServer, type TestServer } from '../helpers/server.ts';
import { startRelay, type TcpRelay } from '../helpers/tcp-relay.ts';

const TOKEN = `updr_stop_outage_test_${'t'.repeat(24)}`;
const found = findMosquitto();
const STOP_LIMIT_MS = 20_000;
const settles = (p: Promise<unknown>) => Promise.race([p.then(() => 'settled', () => 'settled'), new Promise((r) => setTimeout(() => r('hung'), STOP_LIMIT_MS).unref())]);

describe('stop during a silent partition', () => {
  let broker: TestMosquitto;
  let relay: TcpRelay;
  before(async () => {
    if (!found.ok) throw new Error('no mosquitto');
    broker = await startTestMosquitto(found.bin, { operatorToken: TOKEN, devices: [], secrets: new Map() });
    relay = await startRelay({ host: '127.0.0.1', port: broker.servicePort });
  });
  after(async () => {
    await relay?.stop();
    await broker?.stop();
  });
  it('stop() ends although a message is unacknowledged on a connection that looks alive', async () => {
    const dataDir = await mkdtemp(path.join(os.tmpdir(), 'updraft-stop-hang-'));
    await writeFile(path.join(dataDir, 'operator-token'), TOKEN + '\n', { mode: 0o600 });
    const ts: TestServer = await startTestServer({ dataDir, logger: createLogger({ level: 'error', format: 'json', write: () => {} }), flags: { 'mqtt-url': `mqtt://127.0.0.1:${relay.port}`, 'mqtt-tls-port': -1 } });
    assert.equal((await apiJson(ts, 'POST', '/api/v1/devices', { deviceId: 's-1' })).status, 201);
    relay.hang();
    const del = apiJson(ts, 'DELETE', '/api/v1/devices/s-1');
    await new Promise((r) => setTimeout(r, 500));
    assert.equal((ts.server.bus as ExternalBroker).connected, true);
    const r = await settles(ts.close());
    await del.catch(() => {});
    assert.equal(r, 'settled', `stop hung, waiting for ${JSON.stringify(ts.server.stopWaitingFor)}`);
  });
});
