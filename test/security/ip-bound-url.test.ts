/**
 * `downloads.ipBinding mqtt`: a device's download URL is bound to the address its MQTT
 * connection comes from, and refused from any other. Real server (embedded broker), a real
 * device connection over TCP, real HTTP from two loopback addresses (127.0.0.1 and 127.0.0.2).
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import { loadConfig } from '../../src/config/load-config.ts';
import { TestClient } from '../helpers/mqtt-client.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact, deploy } from './support.ts';

/** GET `url` from the local address `from`; resolves with the status and the body's length. */
function getFrom(url: string, from: string): Promise<{ status: number; bytes: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { localAddress: from }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes: Buffer.concat(chunks).length, body: Buffer.concat(chunks).toString('utf8') }));
      })
      .on('error', reject);
  });
}

describe('download URLs bound to the device\'s MQTT address', () => {
  let ts: TestServer;
  before(async () => {
    ts = await startTestServer({ flags: { 'download-ip-binding': 'mqtt' } });
    await addArtifact(ts, '2.0.0', Buffer.from('fw 2.0.0 '.repeat(500)));
  });
  after(() => ts.close());

  it('binds the URL to where the device connects from, and refuses it from elsewhere', async () => {
    const password = await registerDevice(ts, 'ip-1');
    const device = await TestClient.connect(ts.mqttUrl, 'ip-1', { username: 'ip-1', password });
    try {
      await device.subscribe('state/ip-1/get/accepted', 'state/ip-1/get/rejected');
      await deploy(ts, ['ip-1'], 'fw@2.0.0');
      const doc = await device.request('state/ip-1/get', {});
      const url = doc.body.state.delta.software.url as string;
      assert.equal(new URL(url).searchParams.get('ip'), '127.0.0.1');
      const here = await getFrom(url, '127.0.0.1');
      assert.deepEqual([here.status, here.bytes], [200, 4500]);
      const elsewhere = await getFrom(url, '127.0.0.2');
      assert.equal(elsewhere.status, 403);
      assert.equal(JSON.parse(elsewhere.body).error.message, 'download URL is bound to another IP address');
    } finally {
      await device.end();
    }
  });

  it('is refused with an external broker or S3 downloads, which cannot honour it', () => {
    assert.throws(() => loadConfig({ flags: { 'download-ip-binding': 'mqtt', 'mqtt-url': 'mqtt://broker:1883' } }), /downloads\.ipBinding mqtt needs the embedded broker: an external one \(mqtt\.url\) does not tell Updraft where a device connects from/);
    assert.throws(() => loadConfig({ flags: { 'download-ip-binding': 'mqtt', 'downloads-via': 's3', blob: 's3://bucket?endpoint=http://127.0.0.1:9000' } }), /downloads\.ipBinding mqtt needs downloads\.via updraft/);
  });
});
