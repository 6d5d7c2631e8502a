/**
 * No device certificate is issued for `operator`, the MQTT user name of operators and Updraft's
 * instances: behind Mosquitto with certificate logins the certificate's CN is the user name,
 * and a certificate named `operator` got the operators' rules on the device listener (every
 * device's topics, the instances' events: review, 2026-12-06). Registrations refuse the id
 * since 2026-12-04; a device registered so before (written here straight into the store, as
 * an older server wrote it) could still be given one. A real server, its REST API and
 * `updraft device cert`, and the CA's renewal path.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import forge from 'node-forge';
import { runCli } from '../helpers/cli.ts';
import { apiJson, startTestServer, type TestServer } from '../helpers/server.ts';

describe('no device certificate for the reserved name "operator"', () => {
  let ts: TestServer;
  before(async () => {
    ts = await startTestServer();
    const now = Date.now();
    await ts.server.store.createDevice({ deviceId: 'operator', attributes: {}, tags: [], secretHash: 'a'.repeat(64), revoked: false, createdAt: now, updatedAt: now, version: 1 });
  });
  after(async () => {
    await ts.close();
  });

  it('refuses it through the API and the CLI, with or without a key made on the device, and on renewal; another device still gets one', async () => {
    const made = await apiJson(ts, 'POST', '/api/v1/devices/operator/certificate');
    assert.equal(made.status, 403, JSON.stringify(made.body));
    assert.match(made.body.error.message, /^no certificate is issued for "operator": it is the MQTT user name of operators/);

    const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048, publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } });
    const csr = forge.pki.createCertificationRequest();
    csr.publicKey = forge.pki.publicKeyFromPem(publicKey);
    csr.setSubject([{ name: 'commonName', value: 'operator' }]);
    csr.sign(forge.pki.privateKeyFromPem(privateKey) as forge.pki.rsa.PrivateKey, forge.md.sha256.create());
    const csrPem = forge.pki.certificationRequestToPem(csr);
    const own = await apiJson(ts, 'POST', '/api/v1/devices/operator/certificate', { csr: csrPem });
    assert.equal(own.status, 403, JSON.stringify(own.body));
    // a renewal over MQTT signs through the same call
    await assert.rejects(ts.server.security.ca.issueDeviceCertificateFromRequest('operator', csrPem), /no certificate is issued for "operator"/);

    const cli = await runCli(['device', 'cert', 'operator', '--out', ts.dataDir, '--server', ts.httpUrl, '--token', ts.token]);
    assert.notEqual(cli.code, 0, 'the CLI fails');
    assert.match(cli.stderr, /^updraft: error: .*no certificate is issued for "operator"/m, cli.stderr);

    await ts.server.registry.register({ deviceId: 'op-2' });
    assert.equal((await apiJson(ts, 'POST', '/api/v1/devices/op-2/certificate')).status, 201, 'another device still gets one');
  });
});
