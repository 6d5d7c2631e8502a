/**
 * X.509 device identity (issue 5): MQTT over TLS with mutual authentication against
 * Updraft's own CA, the device id taken from the certificate, and the operator's HTTP API and
 * downloads over HTTPS; the whole flow through the real `updraft` command.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createCa, caPaths } from '../../src/pki/certificate-authority.ts';
import { eventually, runCli, startCli, type CliProcess } from '../helpers/cli.ts';
import { TestClient, tryConnect } from '../helpers/mqtt-client.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';

function httpsGet(url: string, ca: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string }> {
  return httpsFetch(url, ca, { headers });
}

function httpsFetch(url: string, ca: string, opts: { method?: string; headers?: Record<string, string> } = {}): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    https
      .request(url, { ca, method: opts.method ?? 'GET', headers: opts.headers ?? {} }, (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on('error', reject)
      .end();
  });
}

describe('MQTT over TLS with client certificates, and HTTPS', () => {
  let ts: TestServer;
  let dir: string;
  let mqttsUrl: string;
  let httpsUrl: string;
  let ca: string;
  let agent: CliProcess | undefined;

  const issue = async (id: string) => {
    const c = await ts.server.security.ca.issueDeviceCertificate(id);
    return { cert: c.certificate, key: c.privateKey, ca };
  };

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-tls-'));
    ts = await startTestServer({ flags: { 'http-tls': 'on' } });
    mqttsUrl = `mqtts://127.0.0.1:${ts.server.broker.tlsPort}`;
    httpsUrl = `https://127.0.0.1:${ts.server.http.port}`;
    ca = await readFile(caPaths(ts.dataDir).cert, 'utf8');
  });
  after(async () => {
    await agent?.kill();
    await ts.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('admits a registered device by its certificate alone; the device id is the CN', async () => {
    await registerDevice(ts, 'dev-cert');
    const c = await TestClient.connect(mqttsUrl, 'dev-cert', await issue('dev-cert'));
    await c.subscribe('state/dev-cert/#');
    const r = await c.request('state/dev-cert/update', { state: { reported: { online: true } } });
    assert.equal(r.topic, 'state/dev-cert/update/accepted');
    assert.equal(await c.subscribe('state/dev-other/update/delta').then((q) => q[0]), 128, 'its own topics only');
    await c.end();
  });

  it('refuses: no certificate, a certificate of another CA, another client id than the CN, unknown and revoked devices', async () => {
    await registerDevice(ts, 'dev-tls-2');
    const own = await issue('dev-tls-2');
    assert.equal(await tryConnect(mqttsUrl, { clientId: 'dev-tls-2', ca, rejectUnauthorized: true }), 'tls', 'no client certificate');
    const foreignDir = path.join(dir, 'foreign');
    const foreign = await (await createCa(foreignDir, 'Mallory CA')).issueDeviceCertificate('dev-tls-2');
    assert.equal(await tryConnect(mqttsUrl, { clientId: 'dev-tls-2', ca, cert: foreign.certificate, key: foreign.privateKey }), 'tls', 'certificate of another CA');
    assert.equal(await tryConnect(mqttsUrl, { clientId: 'dev-cert', ...own }), 4, "another device's client id");
    assert.equal(await tryConnect(mqttsUrl, { clientId: 'dev-tls-2', username: 'dev-cert', ...own }), 4, "another device's user name");
    assert.equal(await tryConnect(mqttsUrl, { clientId: 'ghost', ...(await issue('ghost')) }), 4, 'certificate for an unregistered id');
    assert.equal(await tryConnect(mqttsUrl, { clientId: 'dev-tls-2', ...own }), undefined);
    await ts.server.registry.revoke('dev-tls-2');
    assert.equal(await tryConnect(mqttsUrl, { clientId: 'dev-tls-2', ...own }), 4, 'revoked');
  });

  it('a new secret leaves a connection its certificate opened; revoking the device closes it', async () => {
    await registerDevice(ts, 'dev-tls-3');
    const c = await TestClient.connect(mqttsUrl, 'dev-tls-3', await issue('dev-tls-3'));
    const { disconnected } = await ts.server.registry.rotateSecret('dev-tls-3');
    assert.equal(disconnected, 0, 'the secret did not let it in');
    await c.subscribe('state/dev-tls-3/#');
    assert.equal((await c.request('state/dev-tls-3/get', {})).topic, 'state/dev-tls-3/get/rejected', 'still answered after the rotation');
    const gone = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the revoked device is still connected')), 10_000);
      c.client.once('close', () => (clearTimeout(timer), resolve()));
    });
    assert.equal((await ts.server.registry.revoke('dev-tls-3')).disconnected, 1);
    await gone;
  });

  it("refuses a deleted device's certificate once its id is registered again; a certificate issued for the new registration gets in", async () => {
    await registerDevice(ts, 'dev-tls-4');
    const old = await issue('dev-tls-4');
    assert.equal(await tryConnect(mqttsUrl, { clientId: 'dev-tls-4', ...old }), undefined, 'issued in the second of its registration: admitted');
    const deleted = await httpsFetch(`${httpsUrl}/api/v1/devices/dev-tls-4`, ca, { method: 'DELETE', headers: { authorization: `Bearer ${ts.token}` } });
    assert.equal(deleted.status, 200, deleted.body);
    // a certificate's times are whole seconds: the new registration comes in a later one
    const later = Math.floor(Date.now() / 1000) * 1000 + 2000;
    await new Promise((r) => setTimeout(r, later - Date.now()));
    await registerDevice(ts, 'dev-tls-4');
    assert.equal(await tryConnect(mqttsUrl, { clientId: 'dev-tls-4', ...old }), 4, "the old hardware's certificate");
    assert.equal(await tryConnect(mqttsUrl, { clientId: 'dev-tls-4', ...(await issue('dev-tls-4')) }), undefined, 'a certificate of the new registration');
  });

  it('serves the API over HTTPS with a certificate from the CA; the token is still required', async () => {
    assert.equal((await httpsGet(`${httpsUrl}/healthz`, ca)).status, 200);
    assert.equal((await httpsGet(`${httpsUrl}/api/v1/artifacts`, ca)).status, 401);
    assert.equal((await httpsGet(`${httpsUrl}/api/v1/artifacts`, ca, { authorization: `Bearer ${ts.token}` })).status, 200);
    await assert.rejects(fetch(`http://127.0.0.1:${ts.server.http.port}/healthz`), 'no plain HTTP on the HTTPS port');
    assert.match(ts.server.publicUrl, /^https:\/\//);
  });

  it('ca init, device cert and an agent over mqtts + https, through the updraft command', async () => {
    const fresh = path.join(dir, 'fresh');
    const init = await runCli(['ca', 'init', '--data-dir', fresh]);
    assert.equal(init.code, 0, init.stderr);
    assert.equal((await stat(caPaths(fresh).key)).mode & 0o777, 0o600);
    const again = await runCli(['ca', 'init', '--data-dir', fresh]);
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /a CA already exists/);

    // the operator's CLI and the agent trust Updraft's CA for HTTPS
    const env = { NODE_EXTRA_CA_CERTS: caPaths(ts.dataDir).cert };
    const api = ['--server', httpsUrl, '--token', ts.token];
    // without it, they say the certificate is not trusted, not that the server is down
    const untrusted = await runCli(['device', 'list', ...api]);
    assert.equal(untrusted.code, 1);
    assert.match(untrusted.stderr, /^updraft: error: cannot reach the Updraft server at https:\S+: its TLS certificate is not trusted \(.+\); for Updraft's own CA, set NODE_EXTRA_CA_CERTS=<data-dir>\/pki\/ca\.crt\n$/);
    assert.match((await runCli(['doctor', ...api])).stdout, /^FAIL  reachable {4}no answer from https:\S+: its TLS certificate is not trusted/m);
    assert.equal((await runCli(['device', 'register', 'dev-x509', ...api], { env })).code, 0);
    const certs = path.join(dir, 'certs');
    const cert = await runCli(['device', 'cert', 'dev-x509', '--out', certs, ...api], { env });
    assert.equal(cert.code, 0, cert.stderr);
    assert.equal((await stat(path.join(certs, 'dev-x509.key'))).mode & 0o777, 0o600);
    const refused = await runCli(['device', 'cert', 'nobody', '--out', certs, ...api], { env });
    assert.match(refused.stderr, /device nobody is not registered/);

    await writeFile(path.join(dir, 'fw.bin'), randomBytes(50_000));
    assert.equal((await runCli(['artifact', 'add', path.join(dir, 'fw.bin'), '--name', 'fw', '--version', '2.0.0', ...api], { env })).code, 0);
    agent = startCli(
      ['agent', '--device', 'dev-x509', '--install-dir', path.join(dir, 'dev-x509'), '--broker', mqttsUrl, '--ca', path.join(certs, 'ca.crt'), '--cert', path.join(certs, 'dev-x509.crt'), '--key', path.join(certs, 'dev-x509.key'), '--signing-key', ts.server.security.publicKeyFile, '--download-auth', 'token'],
      { env },
    );
    await agent.waitFor(/dev-x509: connected/);
    const deployed = await runCli(['deploy', '--device', 'dev-x509', '--artifact', 'fw@2.0.0', ...api], { env });
    assert.equal(deployed.code, 0, deployed.stderr);
    await agent.waitFor(/acknowledged: SUCCESS, running 2\.0\.0/, 60_000);
    const shown = await eventually(async () => {
      const d = JSON.parse((await runCli(['device', 'show', 'dev-x509', '--json', ...api], { env })).stdout);
      return d.executions[0]?.status === 'SUCCEEDED' ? d : undefined;
    }, 30_000, 'job SUCCEEDED');
    assert.equal(shown.shadow.state.reported.software.version, '2.0.0');
  });
});
