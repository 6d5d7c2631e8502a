/**
 * A rollout step during an outage of the external broker. Since 328a37a a publish made while
 * the connection is down settles at once (bounded-publish.ts), so the engine's dispatch marked
 * executions dispatched (their in-progress timeout running) and kept sending at full rate while
 * no command could leave the instance: they timed out. The engine now holds its sends while the
 * MQTT connection is down, as it does while the artifact storage does not answer (one line when
 * held, one when sending again), and sends once it is back.
 *
 * A real Mosquitto is stopped; the instance reaches it through a TCP relay kept down until an
 * observer on the broker itself has subscribed.
 */
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import mqtt from 'mqtt';
import type { ExternalBroker } from '../../src/broker/external-broker.ts';
import { createLogger } from '../../src/util/logger.ts';
import { eventually } from '../helpers/cli.ts';
import { findMosquitto, mosquittoUnavailable, startTestMosquitto, type TestMosquitto } from '../helpers/mosquitto.ts';
import { apiJson, startTestServer, type TestServer } from '../helpers/server.ts';
import { startRelay, type TcpRelay } from '../helpers/tcp-relay.ts';

const TOKEN = `updr_rollout_outage_test_${'r'.repeat(24)}`;
const found = findMosquitto();

if (!found.ok) {
  const message = mosquittoUnavailable(found.reason, 'rollout during a broker outage test');
  it('external broker: rollouts hold their sends during a broker outage', (t) => t.skip(message));
} else {
  describe('external broker (Mosquitto): a rollout step while the broker is down', () => {
    let broker: TestMosquitto;
    let relay: TcpRelay;
    let ts: TestServer;
    let observer: mqtt.MqttClient | undefined;
    const lines: { msg: string; seconds?: number; jobsHeld?: number }[] = [];

    before(async () => {
      broker = await startTestMosquitto(found.bin, { operatorToken: TOKEN, devices: [], secrets: new Map() });
      relay = await startRelay({ host: '127.0.0.1', port: broker.servicePort });
      const dataDir = await mkdtemp(path.join(os.tmpdir(), 'updraft-rollout-outage-'));
      await writeFile(path.join(dataDir, 'operator-token'), TOKEN + '\n', { mode: 0o600 });
      const logger = createLogger({ level: 'info', format: 'json', write: (l) => lines.push(JSON.parse(l)) });
      ts = await startTestServer({ dataDir, logger, flags: { 'mqtt-url': `mqtt://127.0.0.1:${relay.port}`, 'mqtt-tls-port': -1 } });
    });
    after(async () => {
      await observer?.endAsync(true).catch(() => undefined);
      await ts?.close();
      await relay?.stop();
      await broker?.stop();
    });
    const bus = () => ts.server.bus as ExternalBroker;
    const executions = async (jobId: string) => {
      const ex = await apiJson(ts, 'GET', `/api/v1/jobs/${jobId}/executions`);
      assert.equal(ex.status, 200, JSON.stringify(ex.body));
      return (ex.body.executions ?? ex.body.items ?? ex.body) as { deviceId: string; status: string; dispatchedAt?: number }[];
    };

    it('no execution is dispatched (nor times out) while the commands cannot leave; they are sent once the broker is back', async () => {
      const ids = ['o-1', 'o-2', 'o-3'];
      for (const deviceId of ids) {
        assert.equal((await apiJson(ts, 'POST', '/api/v1/devices', { deviceId })).status, 201);
        await ts.server.replica.update({ deviceId, name: '' }, { state: { reported: { software: { name: 'fw', version: '1.0.0' } } } }, { kind: 'device', id: deviceId });
      }
      const upload = await fetch(`${ts.httpUrl}/api/v1/artifacts?name=fw&version=2.0.0`, { method: 'POST', headers: { authorization: `Bearer ${ts.token}` }, body: new Uint8Array(2048) });
      assert.equal(upload.status, 201);
      // created while the broker is up, starting once it is down
      const created = await apiJson(ts, 'POST', '/api/v1/jobs', { artifact: 'fw@2.0.0', targets: { devices: ids }, plan: { startAt: Date.now() + 6_000 }, timeouts: { inProgressSeconds: 2 } });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      const jobId = (created.body.job?.jobId ?? created.body.jobId) as string;
      await relay.down();
      await broker.down();
      await eventually(async () => (!bus().connected ? true : undefined), 15_000, 'the instance sees the outage');

      // the job's start comes during the outage: held (the line), or (before the fix) dispatched
      await eventually(async () => (lines.some((l) => l.msg.startsWith('the MQTT broker cannot be reached')) || (await executions(jobId)).some((r) => r.dispatchedAt !== undefined) ? true : undefined), 30_000, 'the job held or dispatched');
      // past the in-progress timeout (2 s) of anything dispatched at the start: the line stays
      // one, whatever the number of ticks
      await new Promise((r) => setTimeout(r, 4_000));
      assert.equal(bus().connected, false, 'still down');
      const during = await executions(jobId);
      assert.deepEqual(during.filter((r) => r.dispatchedAt !== undefined || r.status !== 'QUEUED').map((r) => `${r.deviceId} ${r.status}`), [], 'no command dispatched while none could leave the instance');
      assert.equal(lines.filter((l) => l.msg.startsWith('the MQTT broker cannot be reached')).length, 1, 'one line when held');

      await broker.up();
      observer = await mqtt.connectAsync(broker.serviceUrl, { username: 'operator', password: TOKEN, protocolVersion: 5, reconnectPeriod: 0 });
      const deltas = new Set<string>();
      observer.on('message', (topic) => deltas.add(topic.split('/')[1]!));
      await observer.subscribeAsync('state/+/update/delta', { qos: 1 });
      await relay.up();
      await eventually(async () => (ids.every((d) => deltas.has(d)) ? true : undefined), 30_000, 'each command sent after the reconnect');
      // the delta goes out as the command is written; dispatchedAt is stored just after
      await eventually(async () => ((await executions(jobId)).every((r) => r.dispatchedAt !== undefined) ? true : undefined), 15_000, 'all dispatched once the broker is back');
      const back = lines.find((l) => l.msg.startsWith('the MQTT broker connection is back: sending update commands'));
      assert.ok(back && back.jobsHeld === 1, `one line when sending again: ${JSON.stringify(back)}`);
    });
  });
}
