/**
 * An operator's change answered while the external broker is down. mqtt.js keeps a QoS 1
 * publish made without a connection (or left without its PUBACK when the connection drops)
 * and calls back only once it was sent again after the reconnect: a REST request awaiting
 * the replica's answers (DELETE /api/v1/devices/:id publishes `delete/accepted` of each
 * shadow) waited for the whole outage. The change is stored; its answer is a notification
 * derived from it: the request is answered at once and the message follows when the broker
 * is back, once.
 *
 * A real Mosquitto is stopped; the instance reaches it through a TCP relay only so that the
 * test can subscribe its own observer, directly on the broker, before the instance reconnects
 * and sends what it held (the relay is kept down until then).
 */
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import mqtt from 'mqtt';
import { ExternalBroker } from '../../src/broker/external-broker.ts';
import { createLogger } from '../../src/util/logger.ts';
import { eventually } from '../helpers/cli.ts';
import { findMosquitto, mosquittoUnavailable, startTestMosquitto, type TestMosquitto } from '../helpers/mosquitto.ts';
import { apiJson, startTestServer, type TestServer } from '../helpers/server.ts';
import { startRelay, type TcpRelay } from '../helpers/tcp-relay.ts';

const TOKEN = `updr_publish_outage_test_${'q'.repeat(24)}`;
const found = findMosquitto();
/** How long the test keeps the broker down waiting for the answer: the answer must come within the outage. */
const OUTAGE_MS = 30_000;

if (!found.ok) {
  const message = mosquittoUnavailable(found.reason, 'publish during a broker outage test');
  it('external broker: an operator change answered during a broker outage', (t) => t.skip(message));
} else {
  describe('external broker (Mosquitto): an operator change made while the broker is down', () => {
    let broker: TestMosquitto;
    let relay: TcpRelay;
    let ts: TestServer;
    const lines: { msg: string; held?: number; dropped?: number }[] = [];
    const clients: mqtt.MqttClient[] = [];

    before(async () => {
      broker = await startTestMosquitto(found.bin, { operatorToken: TOKEN, devices: [], secrets: new Map() });
      relay = await startRelay({ host: '127.0.0.1', port: broker.servicePort });
      const dataDir = await mkdtemp(path.join(os.tmpdir(), 'updraft-publish-outage-'));
      await writeFile(path.join(dataDir, 'operator-token'), TOKEN + '\n', { mode: 0o600 });
      const logger = createLogger({ level: 'info', format: 'json', write: (l) => lines.push(JSON.parse(l)) });
      ts = await startTestServer({ dataDir, logger, flags: { 'mqtt-url': `mqtt://127.0.0.1:${relay.port}`, 'mqtt-tls-port': -1 } });
    });
    after(async () => {
      for (const c of clients) await c.endAsync(true).catch(() => undefined);
      await ts?.close();
      await relay?.stop();
      await broker?.stop();
    });

    const bus = () => ts.server.bus as ExternalBroker;
    /** An operator client on the broker itself (not through the relay), subscribed to every answer and to the instances' presence markers. */
    const observe = async () => {
      const c = await mqtt.connectAsync(broker.serviceUrl, { username: 'operator', password: TOKEN, protocolVersion: 5, reconnectPeriod: 0 });
      clients.push(c);
      const got: { topic: string; payload: string }[] = [];
      c.on('message', (topic, payload) => got.push({ topic, payload: payload.toString() }));
      await c.subscribeAsync(['state/+/delete/accepted', 'state/+/update/accepted', 'updraft/presence-sync/#'], { qos: 1 });
      return got;
    };
    /** A device with a classic shadow, written as the device's own report; resolves once its answers have reached the broker (their PUBACKs came). */
    const deviceWithShadow = async (deviceId: string) => {
      assert.equal((await apiJson(ts, 'POST', '/api/v1/devices', { deviceId })).status, 201);
      await ts.server.replica.update({ deviceId, name: '' }, { state: { reported: { mode: 'on' } } }, { kind: 'device', id: deviceId });
    };
    /** The answer to `request`, or a failure when none came within the outage. */
    const answeredDuringOutage = async (request: Promise<{ status: number; body: any }>, what: string) => {
      let timer: NodeJS.Timeout | undefined;
      const outage = new Promise<'none'>((resolve) => (timer = setTimeout(() => resolve('none'), OUTAGE_MS)));
      try {
        const answer = await Promise.race([request, outage]);
        assert.notEqual(answer, 'none', `${what}: no answer in ${OUTAGE_MS / 1000} s while the broker was down`);
        return answer as { status: number; body: any };
      } finally {
        clearTimeout(timer);
      }
    };
    /** Brings the broker back, the relay still down; subscribes an observer; lets the instance reconnect; waits for its presence marker, which follows what it held. */
    const back = async () => {
      await broker.up();
      const got = await observe();
      await relay.up();
      await eventually(async () => (got.some((m) => m.topic.startsWith('updraft/presence-sync/')) ? true : undefined), 20_000, 'the instance reconnected');
      await eventually(async () => (bus().connected ? true : undefined), 20_000, 'connected');
      return got;
    };

    it('the broker down before the request: DELETE /api/v1/devices/:id is answered 200 at once; delete/accepted is sent once the broker is back', async () => {
      await deviceWithShadow('d-before');
      await relay.down();
      await broker.down();
      await eventually(async () => (!bus().connected ? true : undefined), 15_000, 'the instance sees the outage');

      const answer = await answeredDuringOutage(apiJson(ts, 'DELETE', '/api/v1/devices/d-before'), 'DELETE /api/v1/devices/d-before');
      assert.equal(answer.status, 200, JSON.stringify(answer.body));
      assert.deepEqual(answer.body.shadowsDeleted, ['']);
      assert.equal((await apiJson(ts, 'GET', '/api/v1/devices/d-before')).status, 404, 'the deletion is stored');
      assert.equal(bus().connected, false, 'answered while the broker was still down');

      const got = await back();
      const answers = got.filter((m) => m.topic === 'state/d-before/delete/accepted');
      assert.equal(answers.length, 1, 'delete/accepted sent once, after the reconnect and before the presence marker');
      assert.equal(JSON.parse(answers[0]!.payload).version, 1);
      const backLine = lines.find((l) => l.msg === 'MQTT broker connection back');
      assert.ok(backLine && backLine.held! >= 1, `the back line counts what was held: ${JSON.stringify(backLine)}`);
    });

    it('the broker taken down during the request (its publish written, no PUBACK): the request is answered when the connection drops; delete/accepted is sent again once', async () => {
      await deviceWithShadow('d-during');
      relay.hang(); // the connection stays open, nothing reaches the broker: the publish waits for its PUBACK
      const request = apiJson(ts, 'DELETE', '/api/v1/devices/d-during');
      // the shadow deleted: the replica has published delete/accepted and waits for the broker
      await eventually(async () => ((await ts.server.store.getShadow('d-during', ''))?.deleted ? true : undefined), 15_000, "d-during's shadow deleted");
      await relay.down();
      await broker.down();

      const answer = await answeredDuringOutage(request, 'DELETE /api/v1/devices/d-during');
      assert.equal(answer.status, 200, JSON.stringify(answer.body));
      assert.equal((await apiJson(ts, 'GET', '/api/v1/devices/d-during')).status, 404, 'the deletion is stored');

      const got = await back();
      assert.equal(got.filter((m) => m.topic === 'state/d-during/delete/accepted').length, 1, 'delete/accepted sent once (what the relay held never reached the broker)');
    });

    it("the broker down: a job's cancel is answered at once, its take-back stored; the take-back's update/accepted is sent once the broker is back", async () => {
      await deviceWithShadow('d-job');
      const upload = await fetch(`${ts.httpUrl}/api/v1/artifacts?name=fw&version=2.0.0`, { method: 'POST', headers: { authorization: `Bearer ${ts.token}` }, body: new Uint8Array(2048) });
      assert.equal(upload.status, 201);
      const deployed = await apiJson(ts, 'POST', '/api/v1/deployments', { devices: ['d-job'], artifact: 'fw@2.0.0' });
      assert.equal(deployed.status, 201, JSON.stringify(deployed.body));
      const jobId = deployed.body.job.jobId as string;
      const commanded = await eventually(async () => {
        const shadow = await ts.server.store.getShadow('d-job', '');
        const sw = shadow?.state.desired?.software as { jobId?: string } | undefined;
        return sw?.jobId?.startsWith(jobId) ? shadow : undefined;
      }, 20_000, 'the command written');

      await relay.down();
      await broker.down();
      await eventually(async () => (!bus().connected ? true : undefined), 15_000, 'the instance sees the outage');
      const answer = await answeredDuringOutage(apiJson(ts, 'POST', `/api/v1/jobs/${jobId}/cancel`), `POST /api/v1/jobs/${jobId}/cancel`);
      assert.equal(answer.status, 200, JSON.stringify(answer.body));
      assert.equal(answer.body.job.status, 'CANCELED');
      const taken = await ts.server.store.getShadow('d-job', '');
      assert.ok(taken!.version > commanded!.version, 'the take-back is stored');
      assert.equal(bus().connected, false, 'answered while the broker was still down');

      const got = await back();
      const accepted = got.filter((m) => m.topic === 'state/d-job/update/accepted').map((m) => JSON.parse(m.payload) as { version: number });
      assert.deepEqual(
        accepted.map((a) => a.version),
        [taken!.version],
        "the take-back's update/accepted sent once",
      );
    });
  });
}
