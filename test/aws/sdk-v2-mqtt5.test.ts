/**
 * The real `aws-iot-device-sdk-v2` over MQTT 5, which the embedded broker (3.1.1 only) does
 * not speak: devices connect to a private Mosquitto with a TLS listener that requires a
 * client certificate from Updraft's CA, and Updraft consumes their `$aws/things/...`
 * requests through `$share` subscriptions on the service listener. `SSL_CERT_FILE` is set
 * in the device's child process only. Without a mosquitto binary the test skips, except
 * under CI=true where it fails.
 */
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { caPaths, loadOrCreateCa } from '../../src/pki/certificate-authority.ts';
import { findMosquitto, mosquittoUnavailable } from '../helpers/mosquitto.ts';
import { TestClient } from '../helpers/mqtt-client.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';
import { runDevice } from './child-device.ts';
import { startTlsMosquitto, type TlsMosquitto } from './mosquitto-tls.ts';
import type { V2DeviceConfig } from './sdk-v2-device.ts';
import { addArtifact, executionStatus } from './support.ts';

const found = findMosquitto();

if (!found.ok) {
  const message = mosquittoUnavailable(found.reason, 'aws-iot-device-sdk-v2 over MQTT 5');
  it('aws-iot-device-sdk-v2 over MQTT 5', (t) => t.skip(message));
} else {
  describe('aws-iot-device-sdk-v2 over MQTT 5 (Mosquitto, TLS, $share subscriptions)', () => {
    let ts: TestServer;
    let broker: TlsMosquitto;

    before(async () => {
      // the CA and the operator token exist before the server starts: Mosquitto needs both
      const dataDir = await mkdtemp(path.join(os.tmpdir(), 'updraft-test-'));
      const { ca } = await loadOrCreateCa(dataDir);
      const operatorToken = `updr_${'t'.repeat(40)}`;
      await writeFile(path.join(dataDir, 'operator-token'), operatorToken, { mode: 0o600 });
      broker = await startTlsMosquitto(found.bin, { ca, operatorToken });
      ts = await startTestServer({ dataDir, flags: { 'mqtt-url': broker.serviceUrl } });
      await addArtifact(ts, '2.0.0');
      await addArtifact(ts, '3.0.0');
    });
    after(async () => {
      await ts?.close();
      await broker?.stop();
    });

    it('IotShadowClientv2 and IotJobsClientv2 through a full update', async () => {
      const thing = 'sdk-v2-mqtt5';
      await registerDevice(ts, thing);
      const cert = await ts.server.security.ca.issueDeviceCertificate(thing);
      const config: V2DeviceConfig = { protocol: 'mqtt5', host: broker.deviceHost, port: broker.devicePort, thing, cert: cert.certificate, key: cert.privateKey, httpUrl: ts.httpUrl, token: ts.token, operatorMqttUrl: broker.serviceUrl };
      const result = await runDevice('sdk-v2-device.ts', { SSL_CERT_FILE: caPaths(ts.dataDir).cert, AWS_DEVICE_CONFIG: JSON.stringify(config) });
      assert.equal(result.code, 0, result.output);
      assert.equal(await executionStatus(ts, result.jobs!.first, thing), 'SUCCEEDED');
      assert.equal(await executionStatus(ts, result.jobs!.second, thing), 'QUEUED');
    });

    it("keeps a thing to its own $aws topics (the generated ACL, %u = certificate CN)", async () => {
      await registerDevice(ts, 'mq-a');
      await registerDevice(ts, 'mq-b');
      const connect = async (id: string) => {
        const c = await ts.server.security.ca.issueDeviceCertificate(id);
        return TestClient.connect(`mqtts://${broker.deviceHost}:${broker.devicePort}`, id, { protocolVersion: 5, cert: c.certificate, key: c.privateKey, ca: ts.server.security.ca.certificate });
      };
      const a = await connect('mq-a');
      const b = await connect('mq-b');
      try {
        // Mosquitto grants any subscription and applies the read ACL to each message
        await a.subscribe('$aws/things/mq-a/shadow/#', '$aws/things/mq-b/shadow/#');
        await b.subscribe('$aws/things/mq-b/shadow/#');
        // MQTT 5: the PUBACK says why (0x87 Not authorized)
        await assert.rejects(a.publish('$aws/things/mq-b/shadow/update', { state: { reported: { forged: true } } }), (err: { code?: number }) => err.code === 135);
        const own = await a.request('$aws/things/mq-a/shadow/update', { state: { reported: { ok: true } } });
        assert.equal(own.topic, '$aws/things/mq-a/shadow/update/accepted');
        const theirs = await b.request('$aws/things/mq-b/shadow/update', { state: { reported: { ok: true } } });
        assert.equal(theirs.body.version, 1, "mq-a's forged request never reached the replica");
        await new Promise((r) => setTimeout(r, 300));
        assert.equal((await ts.server.store.getShadow('mq-b', ''))?.state.reported?.forged, undefined);
        const leaked = a.log.filter((m) => m.topic.startsWith('$aws/things/mq-b/'));
        assert.equal(leaked.length, 0, `mq-a received ${leaked.map((m) => m.topic).join(', ')}`);
      } finally {
        await Promise.all([a.end(), b.end()]);
      }
    });
  });
}
