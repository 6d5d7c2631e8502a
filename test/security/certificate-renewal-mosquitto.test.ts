/**
 * Client certificates renewed in band through an external Mosquitto (the production
 * topology): the request reaches Updraft through its shared subscription, the generated ACL
 * lets each device publish on its own renewal topic only, and the renewed certificate gets the
 * device into Mosquitto. Skipped with a clear message where Mosquitto is not installed (it
 * fails under CI=true).
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { TlsPair } from '../../src/agent/certificate-renewer.ts';
import { loadOrCreateCa } from '../../src/pki/certificate-authority.ts';
import { startTlsMosquitto, type TlsMosquitto } from '../aws/mosquitto-tls.ts';
import { eventually } from '../helpers/cli.ts';
import { findMosquitto, mosquittoUnavailable } from '../helpers/mosquitto.ts';
import { TestClient } from '../helpers/mqtt-client.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';
import { startAgent } from './support.ts';

const found = findMosquitto();

if (!found.ok) {
  const message = mosquittoUnavailable(found.reason, 'certificate renewal through Mosquitto');
  it('certificate renewal through Mosquitto', (t) => t.skip(message));
} else {
  describe('client certificates renewed through an external Mosquitto', () => {
    let ts: TestServer;
    let broker: TlsMosquitto;
    let dir: string;

    before(async () => {
      // the CA and the operator token exist before the server starts: Mosquitto needs both
      const dataDir = await mkdtemp(path.join(os.tmpdir(), 'updraft-test-'));
      dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-renewal-mq-'));
      const { ca } = await loadOrCreateCa(dataDir);
      const operatorToken = `updr_${'r'.repeat(40)}`;
      await writeFile(path.join(dataDir, 'operator-token'), operatorToken, { mode: 0o600 });
      broker = await startTlsMosquitto(found.bin, { ca, operatorToken });
      ts = await startTestServer({ dataDir, flags: { 'mqtt-url': broker.serviceUrl } });
    });
    after(async () => {
      await ts?.close();
      await broker?.stop();
      await rm(dir, { recursive: true, force: true });
    });

    it('an agent whose certificate nears its expiry renews it; the new one gets it into Mosquitto', async () => {
      await registerDevice(ts, 'mq-renew');
      const old = await ts.server.security.ca.issueDeviceCertificate('mq-renew', 5);
      const saved: TlsPair[] = [];
      const url = `mqtts://${broker.deviceHost}:${broker.devicePort}`;
      const { agent } = await startAgent(ts, dir, 'mq-renew', {
        brokerUrl: url,
        mqttOptions: { ca: ts.server.security.ca.certificate, cert: old.certificate, key: old.privateKey, reconnectPeriod: 200 },
        certificateRenewal: { save: async (pair) => void saved.push(pair) },
      });
      let renewed: TlsPair;
      try {
        renewed = await eventually(async () => saved[0], 30_000, 'the certificate renewed');
      } finally {
        await agent.stop();
      }
      const x509 = new X509Certificate(renewed.certificate);
      assert.match(x509.subject, /^CN=mq-renew$/m);
      assert.ok(Date.parse(x509.validTo) - Date.now() > 700 * 86_400_000, 'valid for two years');
      // Mosquitto (which checks the CA) admits the device with the new pair
      const client = await TestClient.connect(url, 'mq-renew', { ca: ts.server.security.ca.certificate, cert: renewed.certificate, key: renewed.privateKey });
      await client.subscribe('state/mq-renew/get/+');
      assert.equal((await client.request('state/mq-renew/get', {})).topic, 'state/mq-renew/get/accepted');
      await client.end();
    });
  });
}
