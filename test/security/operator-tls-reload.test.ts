/**
 * The operator's own TLS files (--mqtt-tls-cert/--mqtt-tls-key, --http-tls-cert/--http-tls-key)
 * renewed in place while the server runs, as certbot or cert-manager does: a real server on
 * free ports reads them again every tls.reloadSeconds (1 here) and its MQTTS and HTTPS
 * listeners present the new certificate to the next TLS handshake, without a restart; a pair
 * whose key is not the certificate's, or whose certificate has expired, is logged once and the
 * old one kept. Certificates come from a CA of the operator's own (Updraft's CA code, in a
 * directory of the test's), read from real handshakes.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { loadOrCreateCa, type CertificateAuthority } from '../../src/pki/certificate-authority.ts';
import { createLogger } from '../../src/util/logger.ts';
import { eventually, startCli } from '../helpers/cli.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

/** The serial of the certificate a TLS server at `port` presents, verified against `ca`. */
function presented(port: number, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ca, servername: 'localhost' }, () => {
      const serial = new X509Certificate(socket.getPeerCertificate().raw).serialNumber;
      socket.destroy();
      resolve(serial);
    });
    socket.once('error', reject);
  });
}

/** Status of GET /healthz over HTTPS, trusting `ca` only. */
function httpsHealth(port: number, ca: string): Promise<number> {
  return new Promise((resolve, reject) => {
    https.get(`https://127.0.0.1:${port}/healthz`, { ca }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    }).on('error', reject);
  });
}

const serialOf = (pem: string) => new X509Certificate(pem).serialNumber;

describe("the operator's own TLS files, reloaded while the server runs", () => {
  let dir: string;
  let ca: CertificateAuthority;
  let ts: TestServer;
  const lines: string[] = [];
  const files = { cert: '', key: '' };
  /** Writes the pair as a renewal tool does: each file whole, by a rename. */
  const install = async (pair: { certificate: string; privateKey: string }) => {
    await writeFile(`${files.key}.new`, pair.privateKey, { mode: 0o600 });
    await rename(`${files.key}.new`, files.key);
    await writeFile(`${files.cert}.new`, pair.certificate);
    await rename(`${files.cert}.new`, files.cert);
  };
  const logged = (text: string) => lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => String(l.msg).includes(text));
  const ports = () => ({ mqtts: ts.server.broker.tlsPort!, https: ts.server.http.port });
  /** Resolves once both listeners present the certificate of serial `serial`. */
  const bothServe = (serial: string) =>
    eventually(async () => ((await presented(ports().mqtts, ca.certificate)) === serial && (await presented(ports().https, ca.certificate)) === serial ? true : undefined), 20_000, `both listeners serving ${serial}`);

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-own-tls-'));
    ({ ca } = await loadOrCreateCa(path.join(dir, 'own-ca')));
    files.cert = path.join(dir, 'server.crt');
    files.key = path.join(dir, 'server.key');
  });
  after(async () => {
    await ts?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('serves a renewed pair on MQTTS and HTTPS from the next connection on; a connection already open keeps working', async () => {
    const first = await ca.issueServerCertificate(['localhost', '127.0.0.1']);
    await install(first);
    ts = await startTestServer({
      flags: { 'http-tls': 'on', 'mqtt-tls-cert': files.cert, 'mqtt-tls-key': files.key, 'http-tls-cert': files.cert, 'http-tls-key': files.key, 'tls-reload-seconds': 1 },
      logger: createLogger({ level: 'info', format: 'json', write: (l) => lines.push(l) }),
    });
    assert.equal(await presented(ports().mqtts, ca.certificate), serialOf(first.certificate));
    assert.equal(await presented(ports().https, ca.certificate), serialOf(first.certificate));
    const open = tls.connect({ host: '127.0.0.1', port: ports().https, ca: ca.certificate, servername: 'localhost' });
    await new Promise((r) => open.once('secureConnect', r));

    const second = await ca.issueServerCertificate(['localhost', '127.0.0.1']);
    await install(second);
    await bothServe(serialOf(second.certificate));
    assert.equal(await httpsHealth(ports().https, ca.certificate), 200);
    assert.equal(logged('serves the new certificate of mqtt.tlsCert').length, 1);
    assert.equal(logged('serves the new certificate of http.tlsCert').length, 1);
    assert.equal(open.destroyed, false, 'a connection open before the swap is not cut');
    open.destroy();
    assert.deepEqual(logged('not taken'), []);
  });

  it('keeps the pair served when the new key is not the new certificate\'s, saying so once; takes the pair once it matches', async () => {
    const served = await presented(ports().mqtts, ca.certificate);
    const [third, other] = [await ca.issueServerCertificate(['localhost', '127.0.0.1']), await ca.issueServerCertificate(['localhost'])];
    await install({ certificate: third.certificate, privateKey: other.privateKey });
    await eventually(async () => (logged('not taken').length === 2 ? true : undefined), 20_000, 'both listeners refusing the pair');
    for (const what of ['mqtt', 'http']) {
      const [line] = logged(`the ${what} listener's TLS files changed but are not taken`);
      assert.equal(line?.level, 'warn');
      assert.match(String(line?.msg), new RegExp(`${what}\\.tlsKey \\(--${what}-tls-key .*server\\.key\\) is not the private key of ${what}\\.tlsCert`));
    }
    // further reads of the same pair (one a second) say nothing more, and serve the old one
    await sleep(2_500);
    assert.equal(logged('not taken').length, 2, 'once per pair read, not at every read');
    assert.equal(await presented(ports().mqtts, ca.certificate), served);
    assert.equal(await presented(ports().https, ca.certificate), served);
    assert.equal(await httpsHealth(ports().https, ca.certificate), 200);

    await install(third);
    await bothServe(serialOf(third.certificate));
  });

  it('keeps the pair served when the new certificate has expired', async () => {
    const served = await presented(ports().mqtts, ca.certificate);
    const before = logged('not taken').length;
    // one second of validity (its start is back-dated): expired once written
    const expired = await ca.issueServerCertificate(['localhost', '127.0.0.1'], 1 / 86_400);
    await sleep(Math.max(0, Date.parse(new X509Certificate(expired.certificate).validTo) - Date.now()) + 1_000);
    await install(expired);
    await eventually(async () => (logged('not taken').length === before + 2 ? true : undefined), 20_000, 'both listeners refusing the expired pair');
    assert.match(String(logged("the mqtt listener's TLS files changed but are not taken").at(-1)?.msg), /mqtt\.tlsCert \(.*server\.crt\) has expired/);
    assert.equal(await presented(ports().mqtts, ca.certificate), served);
    assert.equal(await presented(ports().https, ca.certificate), served);
  });
});

describe('SIGHUP: the operator\'s TLS files read again at once (updraft server)', () => {
  const LOCAL = ['--mqtt-port', '0', '--http-port', '0', '--mqtt-host', '127.0.0.1', '--http-host', '127.0.0.1'];

  it('serves a renewed pair at the signal with tls.reloadSeconds 0, says a bad pair at once and unchanged files, and goes on serving', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-hup-'));
    const { ca } = await loadOrCreateCa(path.join(dir, 'own-ca'));
    const cert = path.join(dir, 'server.crt');
    const key = path.join(dir, 'server.key');
    const install = async (pair: { certificate: string; privateKey: string }) => {
      await writeFile(key, pair.privateKey, { mode: 0o600 });
      await writeFile(cert, pair.certificate);
    };
    const first = await ca.issueServerCertificate(['localhost', '127.0.0.1']);
    await install(first);
    const server = startCli(['server', '--data-dir', path.join(dir, 'data'), ...LOCAL, '--mqtt-tls-port', '0', '--http-tls', 'on', '--http-tls-cert', cert, '--http-tls-key', key, '--tls-reload-seconds', '0']);
    try {
      const port = Number((await server.waitFor(/HTTP API and downloads on https:\/\/127\.0\.0\.1:(\d+)/))[1]);
      assert.equal(await presented(port, ca.certificate), serialOf(first.certificate));
      const second = await ca.issueServerCertificate(['localhost', '127.0.0.1']);
      await install(second);
      server.child.kill('SIGHUP');
      await server.waitFor(/serves the new certificate of http\.tlsCert/);
      assert.equal(await presented(port, ca.certificate), serialOf(second.certificate));

      // a key that is not the certificate's: said at the first read the operator asked for
      const [third, other] = [await ca.issueServerCertificate(['localhost', '127.0.0.1']), await ca.issueServerCertificate(['localhost'])];
      await install({ certificate: third.certificate, privateKey: other.privateKey });
      server.child.kill('SIGHUP');
      await server.waitFor(/the http listener's TLS files changed but are not taken: http\.tlsKey .* is not the private key of http\.tlsCert/);
      assert.equal(await presented(port, ca.certificate), serialOf(second.certificate), 'the pair served stays');
      await install(second);
      server.child.kill('SIGHUP');
      await server.waitFor(/the http listener's TLS files are unchanged: it goes on serving their certificate \(valid until /);
      assert.equal(await httpsHealth(port, ca.certificate), 200, 'still serving');
      assert.equal(server.child.exitCode, null, 'not ended by the signals');
      assert.equal(server.output().match(/SIGHUP: reading the TLS certificate files again/g)?.length, 3);
    } finally {
      await server.kill('SIGKILL');
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('without TLS files of the operator\'s: says nothing is reloaded, and goes on serving', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-hup-'));
    const server = startCli(['server', '--data-dir', dir, ...LOCAL, '--mqtt-tls-port', '-1']);
    try {
      const url = (await server.waitFor(/HTTP API and downloads on (http:\/\/\S+)/))[1]!;
      server.child.kill('SIGHUP');
      await server.waitFor(/no TLS files of the operator's to read again .*nothing reloaded/);
      assert.equal((await fetch(`${url}/healthz`)).status, 200);
      assert.equal(server.child.exitCode, null);
      assert.equal(await server.kill('SIGTERM'), 0, 'and stops as before');
    } finally {
      await server.kill('SIGKILL');
      await rm(dir, { recursive: true, force: true });
    }
  });
});
