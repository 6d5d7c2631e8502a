/**
 * The real `aws-iot-device-sdk-v2` (`IotShadowClientv2`, `IotJobsClientv2`) over MQTT 3.1.1
 * against the embedded broker's MQTTS listener: client certificate from Updraft's CA, the
 * thing name is its CN. The device runs in a child process whose environment alone carries
 * `SSL_CERT_FILE` = the test CA: aws-crt (s2n with AWS-LC) loads its default trust store
 * from there.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { caPaths } from '../../src/pki/certificate-authority.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';
import { runDevice } from './child-device.ts';
import type { V2DeviceConfig } from './sdk-v2-device.ts';
import { addArtifact, executionStatus } from './support.ts';

describe('aws-iot-device-sdk-v2 over MQTT 3.1.1 (embedded broker, TLS)', () => {
  let ts: TestServer;

  before(async () => {
    ts = await startTestServer();
    await addArtifact(ts, '2.0.0');
    await addArtifact(ts, '3.0.0');
  });
  after(async () => {
    await ts.close();
  });

  it('IotShadowClientv2 and IotJobsClientv2 through a full update', async () => {
    const thing = 'sdk-v2-311';
    await registerDevice(ts, thing);
    const cert = await ts.server.security.ca.issueDeviceCertificate(thing);
    const config: V2DeviceConfig = { protocol: 'mqtt311', host: '127.0.0.1', port: ts.server.broker.tlsPort!, thing, cert: cert.certificate, key: cert.privateKey, httpUrl: ts.httpUrl, token: ts.token, operatorMqttUrl: ts.mqttUrl };
    const result = await runDevice('sdk-v2-device.ts', { SSL_CERT_FILE: caPaths(ts.dataDir).cert, AWS_DEVICE_CONFIG: JSON.stringify(config) });
    assert.equal(result.code, 0, result.output);
    assert.match(result.output, /RESULT ok/);
    assert.equal(await executionStatus(ts, result.jobs!.first, thing), 'SUCCEEDED');
    assert.equal(await executionStatus(ts, result.jobs!.second, thing), 'QUEUED');
    const reported = (await ts.server.store.getShadow(thing, ''))?.state.reported?.software as Record<string, unknown>;
    assert.deepEqual([reported.version, reported.status], ['2.0.0', 'SUCCESS']);
  });

  it('a device without the test CA in SSL_CERT_FILE does not trust the server', async () => {
    const thing = 'sdk-v2-untrusting';
    await registerDevice(ts, thing);
    const cert = await ts.server.security.ca.issueDeviceCertificate(thing);
    const config: V2DeviceConfig = { protocol: 'mqtt311', host: '127.0.0.1', port: ts.server.broker.tlsPort!, thing, cert: cert.certificate, key: cert.privateKey, httpUrl: ts.httpUrl, token: ts.token, operatorMqttUrl: ts.mqttUrl };
    const result = await runDevice('sdk-v2-device.ts', { SSL_CERT_FILE: '/nonexistent/ca.pem', AWS_DEVICE_CONFIG: JSON.stringify(config) });
    assert.equal(result.code, 1, result.output);
    assert.match(result.output, /RESULT failed: .*TLS/);
  });
});
