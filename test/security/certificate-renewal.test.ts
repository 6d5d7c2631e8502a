/**
 * Client certificates renewed in band (src/pki/certificate-renewal.ts, src/agent/
 * certificate-renewer.ts): a device whose certificate nears its expiry makes a new key, gets
 * it certified over MQTT, and connects with it from then on; the server refuses whoever
 * cannot prove the device's current identity. Real server (MQTT over TLS), the real
 * `updraft agent` daemon, real MQTT clients.
 */
import assert from 'node:assert/strict';
import { X509Certificate, createHash, createPrivateKey, sign } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { saveRenewedFiles, settleRenewedFiles } from '../../src/agent/certificate-renewer.ts';
import { caPaths, createCa } from '../../src/pki/certificate-authority.ts';
import { eventually, runCli, startCli, type CliProcess } from '../helpers/cli.ts';
import { TestClient } from '../helpers/mqtt-client.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';
import { startAgent } from './support.ts';
import { forgeCsr } from '../helpers/csr.ts';

const DAY_MS = 86_400_000;

/** A CSR for a fresh RSA key, naming `cn`, and that key (PEM). */
const csrFor = (cn: string, bits = 2048): { csr: string; key: string } => forgeCsr(cn, { bits });

describe('client certificates renewed over MQTT', () => {
  let ts: TestServer;
  let dir: string;
  let mqttsUrl: string;
  let ca: string;
  let daemon: CliProcess | undefined;
  const files = () => ({ ca: path.join(dir, 'ca.crt'), cert: path.join(dir, 'c-1.crt'), key: path.join(dir, 'c-1.key'), signing: path.join(dir, 'signing.pub') });
  const agentArgs = () => ['agent', '--device', 'c-1', '--install-dir', path.join(dir, 'c-1'), '--broker', mqttsUrl, '--ca', files().ca, '--cert', files().cert, '--key', files().key, '--signing-key', files().signing, '--initial-version', '1.0.0'];

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-cert-renewal-'));
    ts = await startTestServer();
    mqttsUrl = `mqtts://127.0.0.1:${ts.server.broker.tlsPort}`;
    ca = await readFile(caPaths(ts.dataDir).cert, 'utf8');
    await writeFile(files().ca, ca);
    await writeFile(files().signing, ts.server.security.signingKey.publicKeyPem);
  });
  after(async () => {
    await daemon?.kill();
    await ts.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('the daemon renews a certificate in its last 30 days, writes the new pair over its files, and connects with it after a restart', async () => {
    await registerDevice(ts, 'c-1');
    const old = await ts.server.security.ca.issueDeviceCertificate('c-1', 10);
    await writeFile(files().cert, old.certificate);
    await writeFile(files().key, old.privateKey, { mode: 0o600 });
    daemon = startCli(agentArgs());
    await daemon.waitFor(/c-1: connected/);
    await daemon.waitFor(/c-1: client certificate renewed, valid until (\S+); written to /, 30_000);
    const renewed = new X509Certificate(await readFile(files().cert, 'utf8'));
    const key = await readFile(files().key, 'utf8');
    assert.notEqual(key, old.privateKey, 'a new key, made on the device');
    assert.ok(renewed.checkPrivateKey(createPrivateKey(key)), 'the certificate is for it');
    assert.ok(renewed.verify(new X509Certificate(ca).publicKey), "issued by the server's CA");
    assert.match(renewed.subject, /^CN=c-1$/m);
    assert.ok(Date.parse(renewed.validTo) - Date.now() > 700 * DAY_MS, 'valid for two years');
    assert.equal((await stat(files().key)).mode & 0o777, 0o600, 'the key is kept private');
    // the next report says when it expires: the fleet can be asked which devices would be locked out
    const expiry = Math.floor(Date.parse(renewed.validTo) / 1000);
    const reported = async () => ((await ts.server.store.getShadow('c-1', ''))?.state.reported?.agent as { certificateExpiresAt?: number } | undefined)?.certificateExpiresAt;
    await daemon.kill();
    daemon = startCli(agentArgs());
    await daemon.waitFor(/c-1: connected/);
    await eventually(async () => ((await reported()) === expiry ? true : undefined), 15_000, 'the new expiry reported');
    assert.doesNotMatch(daemon.output(), /renewed/, 'not renewed again: it has two years');
    await daemon.kill();
    daemon = undefined;
  });

  it('with renewal turned off, the device says when its certificate expires, and doctor warns two weeks before', async () => {
    await registerDevice(ts, 'c-4');
    const short = await ts.server.security.ca.issueDeviceCertificate('c-4', 10);
    const f = { cert: path.join(dir, 'c-4.crt'), key: path.join(dir, 'c-4.key') };
    await writeFile(f.cert, short.certificate);
    await writeFile(f.key, short.privateKey, { mode: 0o600 });
    const p = startCli(['agent', '--device', 'c-4', '--install-dir', path.join(dir, 'c-4'), '--broker', mqttsUrl, '--ca', files().ca, '--cert', f.cert, '--key', f.key, '--signing-key', files().signing, '--renew-certificate-days', '0']);
    try {
      await p.waitFor(/c-4: connected/);
      const expiry = Math.floor(Date.parse(new X509Certificate(short.certificate).validTo) / 1000);
      await eventually(async () => (((await ts.server.store.getShadow('c-4', ''))?.state.reported?.agent as { certificateExpiresAt?: number } | undefined)?.certificateExpiresAt === expiry ? true : undefined), 15_000, 'its expiry reported');
      const doctor = await runCli(['doctor', '--server', ts.httpUrl, '--token', ts.token]);
      assert.match(doctor.stdout, /^warn  devices {6}c-4 have a client certificate that expires within 14 days: past it the broker refuses them/m);
      assert.equal(await readFile(f.cert, 'utf8'), short.certificate, 'not renewed');
    } finally {
      await p.kill();
    }
  });

  it('refuses whoever cannot prove the current identity, with the reason; nothing is issued', async () => {
    await registerDevice(ts, 'c-2');
    await registerDevice(ts, 'c-3');
    const own = await ts.server.security.ca.issueDeviceCertificate('c-2');
    const other = await ts.server.security.ca.issueDeviceCertificate('c-3');
    const client = await TestClient.connect(mqttsUrl, 'c-2', { ca, cert: own.certificate, key: own.privateKey });
    await client.subscribe('state/c-2/certificate/renew/+');
    const ask = async (body: Record<string, unknown>) => client.request('state/c-2/certificate/renew', body);
    const proof = (csr: string, key: string) => sign('sha256', Buffer.from(csr), createPrivateKey(key)).toString('base64');
    const refused = async (body: Record<string, unknown>, code: number, message: RegExp) => {
      const r = await ask(body);
      assert.equal(r.topic, 'state/c-2/certificate/renew/rejected', JSON.stringify(r.body));
      assert.equal((r.body as { code: number }).code, code);
      assert.match((r.body as { message: string }).message, message);
    };

    const good = csrFor('c-2');
    await refused({ csr: good.csr, certificate: own.certificate }, 400, /^missing or malformed: signature/);
    // signed by a key that is not the current certificate's: a stolen secret or nothing at all
    await refused({ csr: good.csr, certificate: own.certificate, signature: proof(good.csr, good.key) }, 403, /^the request is not signed by the current certificate's key$/);
    // another device's certificate (and its key): not this device's identity
    await refused({ csr: good.csr, certificate: other.certificate, signature: proof(good.csr, other.privateKey) }, 403, /^the current certificate is device c-3's, not c-2's$/);
    // a certificate of another CA
    const foreign = await (await createCa(path.join(dir, 'foreign'), 'Mallory CA')).issueDeviceCertificate('c-2');
    await refused({ csr: good.csr, certificate: foreign.certificate, signature: proof(good.csr, foreign.privateKey) }, 403, /^the current certificate was not issued by this server's CA$/);
    // a request naming another device, or a weak key
    const wrongName = csrFor('c-3');
    await refused({ csr: wrongName.csr, certificate: own.certificate, signature: proof(wrongName.csr, own.privateKey) }, 400, /^the certificate signing request names device c-3, not c-2$/);
    const weak = csrFor('c-2', 1024);
    await refused({ csr: weak.csr, certificate: own.certificate, signature: proof(weak.csr, own.privateKey) }, 400, /^the certificate signing request needs an RSA key of at least 2048 bits$/);
    await refused({ csr: 'not a csr', certificate: own.certificate, signature: proof('not a csr', own.privateKey) }, 400, /^csr is not a PEM certificate signing request/);

    // the genuine request is answered with a certificate for its key
    const r = await ask({ csr: good.csr, certificate: own.certificate, signature: proof(good.csr, own.privateKey) });
    assert.equal(r.topic, 'state/c-2/certificate/renew/accepted');
    const issued = new X509Certificate((r.body as { certificate: string }).certificate);
    assert.ok(issued.checkPrivateKey(createPrivateKey(good.key)));
    assert.equal((r.body as { notAfter: number }).notAfter, Math.floor(Date.parse(issued.validTo) / 1000));
    // once an hour at most: a device, buggy or taken, cannot keep the CA busy
    await refused({ csr: good.csr, certificate: own.certificate, signature: proof(good.csr, own.privateKey) }, 429, /^this device was given a certificate \d+ s ago; ask again after \S+$/);
    await client.end();

    // a revoked device is refused (its connection is closed; an operator asking for it is answered 403)
    await ts.server.registry.revoke('c-2');
    const operator = await TestClient.connect(ts.mqttUrl, 'ops-renewal', { username: 'operator', password: ts.token });
    await operator.subscribe('state/c-2/certificate/renew/+');
    const asRevoked = await operator.request('state/c-2/certificate/renew', { csr: good.csr, certificate: own.certificate, signature: proof(good.csr, own.privateKey) });
    assert.equal(asRevoked.topic, 'state/c-2/certificate/renew/rejected');
    assert.equal((asRevoked.body as { message: string }).message, 'device revoked');
    await operator.end();
  });

  it('a failed renewal is reported, and doctor says why', async () => {
    await registerDevice(ts, 'c-7');
    const short = await ts.server.security.ca.issueDeviceCertificate('c-7', 10);
    // renewed a moment ago (by hand): the agent's own renewal is refused for the hour
    const client = await TestClient.connect(mqttsUrl, 'c-7', { ca, cert: short.certificate, key: short.privateKey });
    await client.subscribe('state/c-7/certificate/renew/+');
    const made = csrFor('c-7');
    const first = await client.request('state/c-7/certificate/renew', { csr: made.csr, certificate: short.certificate, signature: sign('sha256', Buffer.from(made.csr), createPrivateKey(short.privateKey)).toString('base64') });
    assert.equal(first.topic, 'state/c-7/certificate/renew/accepted');
    await client.end();
    const { agent } = await startAgent(ts, dir, 'c-7', { brokerUrl: mqttsUrl, mqttOptions: { ca, cert: short.certificate, key: short.privateKey }, certificateRenewal: { save: async () => {} }, requestAttempts: 1 });
    try {
      const error = await eventually(async () => (((await ts.server.store.getShadow('c-7', ''))?.state.reported?.agent as { certificateRenewalError?: string } | undefined)?.certificateRenewalError), 30_000, 'the failure reported');
      assert.match(error, /^certificate rejected \(429\): this device was given a certificate \d+ s ago; ask again after \S+$/);
      const doctor = await runCli(['doctor', '--server', ts.httpUrl, '--token', ts.token]);
      assert.match(doctor.stdout, /c-7 \(renewal failed: certificate rejected \(429\): this device was given a certificate/);
    } finally {
      await agent.stop();
    }
  });

  it('device cert --csr certifies a key made on the device: no private key is made or written by the server', async () => {
    await registerDevice(ts, 'c-5');
    const made = csrFor('c-5');
    const csrFile = path.join(dir, 'c-5.csr');
    await writeFile(csrFile, made.csr);
    const out = path.join(dir, 'c-5-out');
    const r = await runCli(['device', 'cert', 'c-5', '--csr', csrFile, '--out', out, '--server', ts.httpUrl, '--token', ts.token]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^certificate for c-5 \(for the key of the request\)\n/);
    const cert = await readFile(path.join(out, 'c-5.crt'), 'utf8');
    assert.ok(new X509Certificate(cert).checkPrivateKey(createPrivateKey(made.key)), 'for the key the device made');
    await assert.rejects(stat(path.join(out, 'c-5.key')), { code: 'ENOENT' }, 'no key written');
    // and it connects with it
    const client = await TestClient.connect(mqttsUrl, 'c-5', { ca, cert, key: made.key });
    await client.end();
    // a request naming another device is refused, exit 2, one line
    const other = csrFor('c-6');
    await writeFile(csrFile, other.csr);
    const refused = await runCli(['device', 'cert', 'c-5', '--csr', csrFile, '--out', out, '--server', ts.httpUrl, '--token', ts.token]);
    assert.equal(refused.code, 2);
    assert.equal(refused.stderr, 'updraft: error: the certificate signing request names device c-6, not c-5\n');
  });

  it('records every device certificate issued (device cert, --csr, a renewal over MQTT) before handing it out; a deletion revokes them all (the CRL of an external Mosquitto)', async () => {
    await registerDevice(ts, 'rec-1');
    const call = async (body?: unknown) => {
      const res = await fetch(`${ts.httpUrl}/api/v1/devices/rec-1/certificate`, { method: 'POST', headers: { authorization: `Bearer ${ts.token}`, 'content-type': 'application/json' }, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
      assert.equal(res.status, 201, 'issued');
      return (await res.json()) as { certificate: string; privateKey?: string };
    };
    const made = await call();
    const own = csrFor('rec-1');
    const fromCsr = await call({ csr: own.csr });
    const next = csrFor('rec-1');
    const client = await TestClient.connect(mqttsUrl, 'rec-1', { ca, cert: made.certificate, key: made.privateKey! });
    await client.subscribe('state/rec-1/certificate/renew/+');
    const r = await client.request('state/rec-1/certificate/renew', { csr: next.csr, certificate: made.certificate, signature: sign('sha256', Buffer.from(next.csr), createPrivateKey(made.privateKey!)).toString('base64') });
    assert.equal(r.topic, 'state/rec-1/certificate/renew/accepted', JSON.stringify(r.body));
    await client.end();
    const serials = [made.certificate, fromCsr.certificate, (r.body as { certificate: string }).certificate].map((c) => new X509Certificate(c).serialNumber.toLowerCase()).sort();
    assert.deepEqual((await ts.server.store.listRevokedCertificates(Date.now())).filter((c) => c.deviceId === 'rec-1'), [], 'none revoked while the device is registered');
    const res = await fetch(`${ts.httpUrl}/api/v1/devices/rec-1`, { method: 'DELETE', headers: { authorization: `Bearer ${ts.token}` } });
    assert.ok(res.ok, `deleted: ${res.status}`);
    const revoked = (await ts.server.store.listRevokedCertificates(Date.now())).filter((c) => c.deviceId === 'rec-1');
    assert.deepEqual(revoked.map((c) => c.serial).sort(), serials, 'the three certificates, revoked by the deletion');
    const caFp = createHash('sha256').update(new X509Certificate(ca).raw).digest('hex');
    assert.ok(revoked.every((c) => c.issuer === caFp && c.notAfter > Date.now() && c.revokedAt !== undefined), `each names its CA by fingerprint: ${JSON.stringify(revoked)}`);
  });

  it('a renewal stopped halfway through its files is finished, or dropped, before the files are read', async () => {
    const d = path.join(dir, 'halfway');
    await mkdir(d, { recursive: true });
    const f = { cert: path.join(d, 'dev.crt'), key: path.join(d, 'dev.key') };
    const a = await ts.server.security.ca.issueDeviceCertificate('h-1');
    const b = await ts.server.security.ca.issueDeviceCertificate('h-1');
    const write = async (pair: { certificate: string; privateKey: string }) => {
      await writeFile(f.cert, pair.certificate);
      await writeFile(f.key, pair.privateKey);
    };
    const current = async () => ({ cert: await readFile(f.cert, 'utf8'), key: await readFile(f.key, 'utf8') });

    assert.equal(await settleRenewedFiles(f), 'nothing');
    // stopped between the two renames: the new key is in place, its certificate waits
    await write(a);
    await writeFile(f.key, b.privateKey);
    await writeFile(`${f.cert}.renewed`, b.certificate);
    assert.equal(await settleRenewedFiles(f), 'finished');
    assert.deepEqual(await current(), { cert: b.certificate, key: b.privateKey });
    // stopped before the renames: both new files whole
    await write(a);
    await writeFile(`${f.key}.renewed`, b.privateKey);
    await writeFile(`${f.cert}.renewed`, b.certificate);
    assert.equal(await settleRenewedFiles(f), 'finished');
    assert.deepEqual(await current(), { cert: b.certificate, key: b.privateKey });
    // stopped before the certificate was written: the old pair stays
    await write(a);
    await writeFile(`${f.key}.renewed`, b.privateKey);
    assert.equal(await settleRenewedFiles(f), 'dropped');
    assert.deepEqual(await current(), { cert: a.certificate, key: a.privateKey });
    await assert.rejects(stat(`${f.key}.renewed`), { code: 'ENOENT' });
    // and a whole save leaves the new pair, nothing beside it
    await saveRenewedFiles(f, b);
    assert.deepEqual(await current(), { cert: b.certificate, key: b.privateKey });
    assert.equal(await settleRenewedFiles(f), 'nothing');
  });
});
