/**
 * Client certificate renewal and the CA (src/agent/certificate-renewer.ts,
 * src/pki/certificate-renewal.ts): near the CA's end a renewed certificate ends with the CA,
 * where the current one does, so neither side renews (a reviewer saw the agent renew at every
 * check for the CA's last weeks, the CA signing each time, the fleet reporting 429s); and an
 * agent whose --ca is a bundle (old and new CA while one replaces the other, docs/security.md)
 * takes a certificate of any of them. CAs made by openssl and by the project's CA code, real
 * servers over MQTT(S), real agents.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { X509Certificate, createPrivateKey, generateKeyPairSync, sign } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import forge from 'node-forge';
import { CertificateRenewer } from '../../src/agent/certificate-renewer.ts';
import { caPaths, createCa, loadCa } from '../../src/pki/certificate-authority.ts';
import { createLogger } from '../../src/util/logger.ts';
import { eventually } from '../helpers/cli.ts';
import { TestClient } from '../helpers/mqtt-client.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';
import { startRelay } from '../helpers/tcp-relay.ts';
import { startAgent } from './support.ts';

/** A CA of `days` in `<dataDir>/pki` (ca.crt, ca.key), made by openssl as an operator's own would be. */
async function opensslCa(dataDir: string, days: number): Promise<void> {
  const pki = path.join(dataDir, 'pki');
  await mkdir(pki, { recursive: true, mode: 0o700 });
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', String(days), '-subj', '/CN=Short-lived CA/O=Updraft', '-addext', 'basicConstraints=critical,CA:TRUE,pathlen:0', '-addext', 'keyUsage=critical,keyCertSign,cRLSign', '-keyout', `${pki}/ca.key`, '-out', `${pki}/ca.crt`], { stdio: 'ignore' });
}

/** A renewal request of device `id` for a fresh key, proven by `current`'s key. */
function renewalRequest(id: string, current: { certificate: string; privateKey: string }): Record<string, unknown> {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048, publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } });
  const csr = forge.pki.createCertificationRequest();
  csr.publicKey = forge.pki.publicKeyFromPem(publicKey);
  csr.setSubject([{ name: 'commonName', value: id }]);
  csr.sign(forge.pki.privateKeyFromPem(privateKey) as forge.pki.rsa.PrivateKey, forge.md.sha256.create());
  const pem = forge.pki.certificationRequestToPem(csr);
  return { csr: pem, certificate: current.certificate, signature: sign('sha256', Buffer.from(pem), createPrivateKey(current.privateKey)).toString('base64') };
}

type Line = Record<string, unknown>;
const parsed = (lines: string[]): Line[] => lines.map((l) => JSON.parse(l) as Line);
const reportedAgent = async (ts: TestServer, id: string) => (await ts.server.store.getShadow(id, ''))?.state.reported?.agent as { certificateRenewalError?: string | null } | undefined;

describe('certificate renewal near the CA’s end, and with a CA bundle', () => {
  const dirs: string[] = [];
  const tmp = async (prefix: string) => {
    const d = await mkdtemp(path.join(os.tmpdir(), prefix));
    dirs.push(d);
    return d;
  };
  after(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  it('the agent does not renew when its CA ends with its certificate: no request, no signing, said once', async () => {
    const dir = await tmp('updraft-ca-end-');
    await opensslCa(dir, 10); // the reviewer's case: a CA with 10 days left
    const ca = (await loadCa(dir))!;
    const device = await ca.issueDeviceCertificate('d1'); // ends with the CA, inside the 30-day window
    let signed = 0;
    const lines: string[] = [];
    const renewer = new CertificateRenewer({
      deviceId: 'd1',
      current: { certificate: device.certificate, privateKey: device.privateKey },
      ca: ca.certificate,
      options: { renewBeforeDays: 30, save: async () => {} },
      request: async (body) => {
        signed++;
        const c = await ca.issueDeviceCertificateFromRequest('d1', body.csr as string);
        return { certificate: c.certificate, notAfter: c.notAfter };
      },
      use: () => {},
      logger: createLogger({ level: 'info', format: 'json', write: (l) => lines.push(l) }),
      now: () => Date.now(),
    });
    for (let i = 0; i < 4; i++) assert.equal(await renewer.check(), false, `check ${i}`);
    assert.equal(signed, 0, 'the CA signed nothing');
    const said = parsed(lines).filter((l) => String(l.msg).startsWith('client certificate not renewed'));
    assert.equal(said.length, 1, lines.join('\n'));
    assert.equal(said[0]!.level, 'warn');
    assert.match(String(said[0]!.reason), /^the CA that issued it ends at \S+: a renewed certificate would end no later, so renewal gains nothing until the CA is replaced/);

    // a certificate that ends well before the CA is renewed as before (to the CA's end)
    const short = await ca.issueDeviceCertificate('d1', 2);
    const renewer2 = new CertificateRenewer({ deviceId: 'd1', current: { certificate: short.certificate, privateKey: short.privateKey }, ca: ca.certificate, options: { save: async () => {} }, request: async (body) => ({ certificate: (await ca.issueDeviceCertificateFromRequest('d1', body.csr as string)).certificate }), use: () => {}, logger: createLogger({ level: 'error', write: () => {} }), now: () => Date.now() });
    assert.equal(await renewer2.check(), true);
    assert.equal(renewer2.expiresAtSeconds, Math.floor(ca.notAfter / 1000));
  });

  // The MQTTS listener serves the operator's own certificate, of another CA (a public one, say):
  // devices trust that CA (--ca) and not Updraft's, which issues their client certificates.
  describe('a server whose CA has 10 days left', () => {
    let ts: TestServer;
    let mqttsUrl: string;
    /** The CA of the server's own certificate: what an agent's --ca holds. */
    let serverCa: string;
    const serverLines: string[] = [];
    const refusals = (id: string) => parsed(serverLines).filter((l) => l.msg === 'certificate renewal refused' && l.deviceId === id);
    before(async () => {
      const dataDir = await tmp('updraft-ca-end-server-');
      await opensslCa(dataDir, 10);
      const other = await createCa(await tmp('updraft-server-ca-'), 'Public server CA');
      const own = await other.issueServerCertificate(['127.0.0.1', 'localhost']);
      await writeFile(path.join(dataDir, 'mqtt.crt'), own.certificate);
      await writeFile(path.join(dataDir, 'mqtt.key'), own.privateKey, { mode: 0o600 });
      serverCa = other.certificate;
      ts = await startTestServer({ dataDir, flags: { 'mqtt-tls-cert': path.join(dataDir, 'mqtt.crt'), 'mqtt-tls-key': path.join(dataDir, 'mqtt.key') }, logger: createLogger({ level: 'info', format: 'json', write: (l) => serverLines.push(l) }) });
      mqttsUrl = `mqtts://127.0.0.1:${ts.server.broker.tlsPort}`;
    });
    after(async () => {
      await ts.close();
    });

    it('refuses a renewal that would end no later than the current certificate (409, nothing signed), and still renews one that ends sooner', async () => {
      await registerDevice(ts, 'e-1');
      const current = await ts.server.security.ca.issueDeviceCertificate('e-1');
      const client = await TestClient.connect(mqttsUrl, 'e-1', { ca: serverCa, cert: current.certificate, key: current.privateKey });
      try {
        await client.subscribe('state/e-1/certificate/renew/+');
        const caEnd = new Date(ts.server.security.ca.notAfter).toISOString().replace(/\.\d+Z$/, '');
        for (let i = 0; i < 2; i++) {
          const r = await client.request('state/e-1/certificate/renew', renewalRequest('e-1', current));
          assert.equal(r.topic, 'state/e-1/certificate/renew/rejected', JSON.stringify(r.body));
          assert.equal((r.body as { code: number }).code, 409, 'the same answer, not a 429: nothing was signed');
          const message = (r.body as { message: string }).message;
          assert.match(message, /^Updraft's CA \(pki\/ca\.crt\) ends at (\S+): a renewed certificate would end no later than the current one \(\S+\); the CA must be replaced \(docs\/security\.md, "Server certificates and the CA's end"\)$/);
          assert.ok(message.includes(caEnd), message);
        }
        assert.deepEqual(parsed(serverLines).filter((l) => l.msg === 'device certificate renewed'), [], 'the CA signed nothing');
      } finally {
        await client.end();
      }
      // a certificate of 2 days gains 8 by its renewal
      await registerDevice(ts, 'e-2');
      const short = await ts.server.security.ca.issueDeviceCertificate('e-2', 2);
      const c2 = await TestClient.connect(mqttsUrl, 'e-2', { ca: serverCa, cert: short.certificate, key: short.privateKey });
      try {
        await c2.subscribe('state/e-2/certificate/renew/+');
        const r = await c2.request('state/e-2/certificate/renew', renewalRequest('e-2', short));
        assert.equal(r.topic, 'state/e-2/certificate/renew/accepted', JSON.stringify(r.body));
        assert.equal((r.body as { notAfter: number }).notAfter, Math.floor(ts.server.security.ca.notAfter / 1000));
      } finally {
        await c2.end();
      }
    });

    it('an agent the server refuses so does not ask again at its next connects, and reports no renewal error', async () => {
      // its --ca is the server certificate's CA only: the agent cannot tell the end of the CA of its own certificate, the server can
      await registerDevice(ts, 'e-3');
      const current = await ts.server.security.ca.issueDeviceCertificate('e-3');
      const relay = await startRelay({ host: '127.0.0.1', port: ts.server.broker.tlsPort! });
      const root = await tmp('updraft-ca-end-agent-');
      const agentLines: string[] = [];
      const { agent } = await startAgent(ts, root, 'e-3', {
        brokerUrl: `mqtts://127.0.0.1:${relay.port}`,
        mqttOptions: { reconnectPeriod: 200, ca: serverCa, cert: current.certificate, key: current.privateKey },
        certificateRenewal: { save: async () => {} },
        logger: createLogger({ level: 'info', format: 'json', write: (l) => agentLines.push(l) }),
      });
      try {
        await eventually(async () => (refusals('e-3').length > 0 ? true : undefined), 30_000, 'the renewal refused');
        assert.match(String(refusals('e-3')[0]!.reason), /^Updraft's CA \(pki\/ca\.crt\) ends at/);
        for (let i = 0; i < 2; i++) {
          const before = (await ts.server.store.getShadow('e-3', ''))!.version;
          await relay.down();
          await relay.up();
          // reconnected and reported again: the renewal check of that connect has run
          await eventually(async () => ((await ts.server.store.getShadow('e-3', ''))!.version > before ? true : undefined), 30_000, 'reported after reconnecting');
        }
        assert.equal((await reportedAgent(ts, 'e-3'))?.certificateRenewalError, undefined, 'no renewal error in its reported state');
        assert.equal(refusals('e-3').length, 1, 'asked once');
        const said = parsed(agentLines).filter((l) => String(l.msg).startsWith('client certificate not renewed'));
        assert.equal(said.length, 1, agentLines.join('\n'));
        assert.match(String(said[0]!.reason), /^certificate rejected \(409\): Updraft's CA/);
      } finally {
        await agent.stop();
        await relay.stop();
      }
    });

    it('an agent that trusts the CA asks nothing near its end', async () => {
      // its --ca holds both: the server certificate's CA and Updraft's, which issued its own
      const bundle = `${serverCa}${await readFile(caPaths(ts.dataDir).cert, 'utf8')}`;
      await registerDevice(ts, 'e-4');
      const current = await ts.server.security.ca.issueDeviceCertificate('e-4');
      const root = await tmp('updraft-ca-end-agent-');
      const agentLines: string[] = [];
      const { agent } = await startAgent(ts, root, 'e-4', {
        brokerUrl: mqttsUrl,
        mqttOptions: { reconnectPeriod: 200, ca: bundle, cert: current.certificate, key: current.privateKey },
        certificateRenewal: { save: async () => {} },
        logger: createLogger({ level: 'info', format: 'json', write: (l) => agentLines.push(l) }),
      });
      try {
        const said = await eventually(async () => parsed(agentLines).find((l) => String(l.msg).startsWith('client certificate not renewed')), 30_000, 'the agent says why it does not renew');
        assert.match(String(said.reason), /^the CA that issued it ends at/, 'its own judgement, not the server’s refusal');
        assert.equal(refusals('e-4').length, 0);
        assert.equal((await reportedAgent(ts, 'e-4'))?.certificateRenewalError, undefined);
      } finally {
        await agent.stop();
      }
    });
  });

  it('an agent whose --ca bundle holds the old CA first takes a renewed certificate of the new one', async () => {
    // docs/security.md, replacing the CA: devices get "cat pki/ca.crt /srv/new-ca/pki/ca.crt"; after the switch the server's CA is the second
    const old = await createCa(await tmp('updraft-old-ca-'), 'Updraft device CA 1');
    const ts = await startTestServer();
    const root = await tmp('updraft-bundle-agent-');
    try {
      const bundle = `${old.certificate}${await readFile(caPaths(ts.dataDir).cert, 'utf8')}`;
      await registerDevice(ts, 'b-1');
      const current = await ts.server.security.ca.issueDeviceCertificate('b-1', 10);
      const renewed: { certificate: string; privateKey: string }[] = [];
      const { agent } = await startAgent(ts, root, 'b-1', {
        brokerUrl: `mqtts://127.0.0.1:${ts.server.broker.tlsPort}`,
        mqttOptions: { reconnectPeriod: 200, ca: bundle, cert: current.certificate, key: current.privateKey },
        certificateRenewal: { save: async (pair) => void renewed.push(pair) },
        requestAttempts: 1,
      });
      try {
        await eventually(async () => (renewed.length > 0 || (await reportedAgent(ts, 'b-1'))?.certificateRenewalError ? true : undefined), 30_000, 'renewed or refused');
        assert.equal((await reportedAgent(ts, 'b-1'))?.certificateRenewalError, undefined);
        assert.equal(renewed.length, 1);
        assert.ok(new X509Certificate(renewed[0]!.certificate).verify(new X509Certificate(ts.server.security.ca.certificate).publicKey));
      } finally {
        await agent.stop();
      }
    } finally {
      await ts.close();
    }
  });
});
