/**
 * The instance stopped during an outage of the external broker with a message held. mqtt.js's
 * end without force waits for its outgoing store to empty, which it does only once reconnected:
 * stop() never ended (`updraft server` hit its 30 s stop limit and exited 1). The connection is
 * now ended forcibly when it is down: what is held is lost (the store holds what it derives
 * from), and a caller waiting past the held cap is released.
 *
 * A real Mosquitto stays up; a TCP relay cuts off the instance.
 */
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MAX_HELD } from '../../src/broker/bounded-publish.ts';
import type { ExternalBroker } from '../../src/broker/external-broker.ts';
import { createLogger } from '../../src/util/logger.ts';
import { eventually } from '../helpers/cli.ts';
import { findMosquitto, mosquittoUnavailable, startTestMosquitto, type TestMosquitto } from '../helpers/mosquitto.ts';
import { apiJson, startTestServer, type TestServer } from '../helpers/server.ts';
import { startRelay, type TcpRelay } from '../helpers/tcp-relay.ts';

const TOKEN = `updr_stop_outage_test_${'t'.repeat(24)}`;
const found = findMosquitto();
/** Longer than any stop takes here; the stop hung for ever before the fix. */
const STOP_LIMIT_MS = 20_000;

/** Whether `p` settles within STOP_LIMIT_MS. */
const settles = (p: Promise<unknown>) => Promise.race([p.then(() => 'settled', () => 'settled'), new Promise((r) => setTimeout(() => r('hung'), STOP_LIMIT_MS).unref())]);

if (!found.ok) {
  const message = mosquittoUnavailable(found.reason, 'stop during a broker outage test');
  it('external broker: stop during a broker outage', (t) => t.skip(message));
} else {
  describe('external broker (Mosquitto): the instance stopped while the broker is unreachable', () => {
    let broker: TestMosquitto;
    let relay: TcpRelay;
    before(async () => {
      broker = await startTestMosquitto(found.bin, { operatorToken: TOKEN, devices: [], secrets: new Map() });
      relay = await startRelay({ host: '127.0.0.1', port: broker.servicePort });
    });
    after(async () => {
      await relay?.stop();
      await broker?.stop();
    });
    const start = async () => {
      await relay.up();
      const dataDir = await mkdtemp(path.join(os.tmpdir(), 'updraft-stop-outage-'));
      await writeFile(path.join(dataDir, 'operator-token'), TOKEN + '\n', { mode: 0o600 });
      return startTestServer({ dataDir, logger: createLogger({ level: 'error', format: 'json', write: () => {} }), flags: { 'mqtt-url': `mqtt://127.0.0.1:${relay.port}`, 'mqtt-tls-port': -1 } });
    };

    it('stop() ends although a message is held', async () => {
      const ts: TestServer = await start();
      assert.equal((await apiJson(ts, 'POST', '/api/v1/devices', { deviceId: 's-1' })).status, 201);
      await ts.server.replica.update({ deviceId: 's-1', name: '' }, { state: { reported: { mode: 'on' } } }, { kind: 'device', id: 's-1' });
      await relay.down();
      await eventually(async () => (!(ts.server.bus as ExternalBroker).connected ? true : undefined), 15_000, 'outage');
      assert.equal((await apiJson(ts, 'DELETE', '/api/v1/devices/s-1')).status, 200); // delete/accepted held
      assert.equal(await settles(ts.close()), 'settled', `stop hung, waiting for ${JSON.stringify(ts.server.stopWaitingFor)}`);
    });

    it('stop() releases a publisher waiting past the held cap', async () => {
      const ts: TestServer = await start();
      const bus = ts.server.bus as ExternalBroker;
      await relay.down();
      await eventually(async () => (!bus.connected ? true : undefined), 15_000, 'outage');
      await Promise.all(Array.from({ length: MAX_HELD }, (_, i) => bus.publish(`stop-test/${i}`, 'x', 1)));
      const waiting = bus.publish('stop-test/past-the-cap', 'x', 1);
      assert.equal(await settles(ts.close()), 'settled', `stop hung, waiting for ${JSON.stringify(ts.server.stopWaitingFor)}`);
      assert.equal(await settles(waiting), 'settled', 'the publisher past the cap released at stop');
    });
  });
}
