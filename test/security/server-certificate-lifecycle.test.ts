/**
 * The lifecycle of the certificates of Updraft's own PKI (QA): the server certificate issued
 * by the data directory's CA is reissued at start when it has expired or nears its end, and
 * while the server runs (the daily look: swapped into the running MQTTS and HTTPS listeners);
 * no certificate the CA issues outlives the CA; the CA's end is warned of, in the log and by
 * `updraft doctor`. Certificates are read from real TLS handshakes; the old ones are made by
 * openssl with the data directory's CA key, dated as QA's were.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { after, describe, it } from 'node:test';
import { diagnose } from '../../src/cli/doctor-command.ts';
import { createLogger } from '../../src/util/logger.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

const DAY = 86_400_000;

/** openssl's GeneralizedTime for `ms`. */
const stamp = (ms: number) => new Date(ms).toISOString().replace(/[-:T]/g, '').replace(/\.\d+Z$/, 'Z');

/** A server certificate for localhost and 127.0.0.1 from the CA in `pki`, valid from `from` to `to` (ms), made by openssl. */
async function opensslServerCertificate(pki: string, from: number, to: number): Promise<{ cert: string; key: string }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-openssl-'));
  try {
    await writeFile(path.join(dir, 'index.txt'), '');
    await writeFile(path.join(dir, 'serial'), '1000\n');
    await writeFile(
      path.join(dir, 'ca.cnf'),
      ['[ca]', 'default_ca = d', '[d]', `database = ${dir}/index.txt`, `new_certs_dir = ${dir}`, `serial = ${dir}/serial`, 'default_md = sha256', 'policy = p', 'unique_subject = no', '[p]', 'commonName = supplied', '[ext]', 'basicConstraints = critical,CA:FALSE', 'keyUsage = critical,digitalSignature,keyEncipherment', 'extendedKeyUsage = serverAuth', 'subjectAltName = DNS:localhost,IP:127.0.0.1', ''].join('\n'),
    );
    execFileSync('openssl', ['req', '-new', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-keyout', `${dir}/server.key`, '-out', `${dir}/server.csr`], { stdio: 'ignore' });
    execFileSync('openssl', ['ca', '-batch', '-notext', '-config', `${dir}/ca.cnf`, '-cert', `${pki}/ca.crt`, '-keyfile', `${pki}/ca.key`, '-in', `${dir}/server.csr`, '-out', `${dir}/server.crt`, '-startdate', stamp(from), '-enddate', stamp(to), '-extensions', 'ext'], { stdio: 'ignore' });
    return { cert: await readFile(`${dir}/server.crt`, 'utf8'), key: await readFile(`${dir}/server.key`, 'utf8') };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * The certificate a TLS server at `port` presents, verified against `ca` (an error such as
 * "certificate has expired" rejects). The MQTTS listener wants a client certificate too, but
 * with TLS 1.3 it refuses one missing only after the client has the server's.
 */
function presented(port: number, ca: string): Promise<X509Certificate> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({ host: '127.0.0.1', port, ca, servername: 'localhost' }, () => {
      const raw = socket.getPeerCertificate().raw;
      socket.destroy();
      resolve(new X509Certificate(raw));
    });
    socket.once('error', reject);
  });
}

/** Status of GET /healthz over HTTPS, trusting `ca` only. */
function httpsHealth(url: string, ca: string): Promise<number> {
  return new Promise((resolve, reject) => {
    https.get(`${url}/healthz`, { ca }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    }).on('error', reject);
  });
}

/** A CA of `days` in `pki` (ca.crt, ca.key), made by openssl as an operator's own would be. */
function opensslCa(pki: string, days: number): void {
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', String(days), '-subj', '/CN=Short-lived CA/O=Updraft', '-addext', 'basicConstraints=critical,CA:TRUE,pathlen:0', '-addext', 'keyUsage=critical,keyCertSign,cRLSign', '-keyout', `${pki}/ca.key`, '-out', `${pki}/ca.crt`], { stdio: 'ignore' });
}

/** Whether openssl verifies `cert` (PEM) against `ca` (PEM) at `atMs`. */
async function verifiesAt(cert: string, ca: string, atMs: number): Promise<boolean> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-verify-'));
  try {
    await writeFile(`${dir}/ca.crt`, ca);
    await writeFile(`${dir}/leaf.crt`, cert);
    execFileSync('openssl', ['verify', '-attime', String(Math.floor(atMs / 1000)), '-CAfile', `${dir}/ca.crt`, `${dir}/leaf.crt`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** A server with MQTTS and HTTPS on `dataDir`, its log lines kept. */
async function start(dataDir: string, lines: string[], flags: Record<string, unknown> = {}): Promise<TestServer & { httpsUrl: string; mqttsPort: number }> {
  const ts = await startTestServer({ dataDir, flags: { 'http-tls': 'on', ...flags }, logger: createLogger({ level: 'debug', format: 'json', write: (l) => lines.push(l) }) });
  return Object.assign(ts, { httpsUrl: `https://127.0.0.1:${ts.server.http.port}`, mqttsPort: ts.server.broker.tlsPort! });
}

const logged = (lines: string[], text: string) => lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => String(l.msg).includes(text));

describe('server certificate and CA lifecycle', () => {
  const dirs: string[] = [];
  after(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });
  const dataDir = async () => {
    const d = await mkdtemp(path.join(os.tmpdir(), 'updraft-pki-'));
    dirs.push(d);
    return d;
  };

  it('reissues at start an expired server certificate of the same hosts and CA, with a log line; MQTTS and HTTPS serve the new one', async () => {
    const dir = await dataDir();
    await (await start(dir, [])).stop(); // the CA and a first server certificate
    const pki = path.join(dir, 'pki');
    const ca = await readFile(`${pki}/ca.crt`, 'utf8');
    const expired = await opensslServerCertificate(pki, Date.now() - 800 * DAY, Date.now() - DAY);
    await writeFile(`${pki}/server.crt`, expired.cert);
    await writeFile(`${pki}/server.key`, expired.key);
    const lines: string[] = [];
    const ts = await start(dir, lines);
    try {
      const served = await presented(ts.mqttsPort, ca); // QA: "certificate has expired"
      assert.notEqual(served.serialNumber, new X509Certificate(expired.cert).serialNumber);
      assert.ok(Date.parse(served.validTo) > Date.now() + 700 * DAY, served.validTo);
      assert.equal(await httpsHealth(ts.httpsUrl, ca), 200);
      const [line] = logged(lines, 'server certificate reissued');
      assert.equal(line?.level, 'info');
      assert.match(String(line?.reason), /expired at/);
      assert.equal(new X509Certificate(await readFile(`${pki}/server.crt`, 'utf8')).serialNumber, served.serialNumber, 'kept for the next start');
    } finally {
      await ts.stop();
    }
  });

  it('keeps a certificate with enough life left; reissues one near its end while running, swapped into the MQTTS and HTTPS listeners', async () => {
    const dir = await dataDir();
    await (await start(dir, [])).stop();
    const pki = path.join(dir, 'pki');
    const ca = await readFile(`${pki}/ca.crt`, 'utf8');
    // a 40-day certificate with 31 days left: kept at start (a third of its life, 30 days)
    const old = await opensslServerCertificate(pki, Date.now() - 9 * DAY, Date.now() + 31 * DAY);
    await writeFile(`${pki}/server.crt`, old.cert);
    await writeFile(`${pki}/server.key`, old.key);
    const lines: string[] = [];
    const ts = await start(dir, lines);
    try {
      const oldSerial = new X509Certificate(old.cert).serialNumber;
      assert.equal((await presented(ts.mqttsPort, ca)).serialNumber, oldSerial);
      assert.deepEqual(logged(lines, 'reissued'), []);
      // a connection open before the swap keeps working on the old one
      const before = tls.connect({ host: '127.0.0.1', port: ts.server.http.port, ca, servername: 'localhost' });
      await new Promise((r) => before.once('secureConnect', r));
      // the daily look, two days later: 29 days left
      await ts.server.tlsRenewal.check(Date.now() + 2 * DAY);
      const mqtts = await presented(ts.mqttsPort, ca);
      const httpsCert = await presented(ts.server.http.port, ca);
      assert.notEqual(mqtts.serialNumber, oldSerial);
      assert.equal(httpsCert.serialNumber, mqtts.serialNumber, 'both listeners serve the one new certificate');
      assert.ok(Date.parse(mqtts.validTo) > Date.now() + 700 * DAY);
      assert.equal(await httpsHealth(ts.httpsUrl, ca), 200);
      assert.equal(logged(lines, 'server certificate reissued').length, 1, 'issued once, for both listeners');
      assert.equal(logged(lines, 'serves the new server certificate').length, 2);
      assert.equal(before.destroyed, false);
      before.destroy();
    } finally {
      await ts.stop();
    }
  });

  it('issues no certificate that outlives the CA, and warns of its end in the log and in updraft doctor', async () => {
    const dir = await dataDir();
    const pki = path.join(dir, 'pki');
    await mkdir(pki, { recursive: true, mode: 0o700 });
    opensslCa(pki, 10); // QA: a CA expiring in 10 days
    const ca = await readFile(`${pki}/ca.crt`, 'utf8');
    const caEnd = Date.parse(new X509Certificate(ca).validTo);
    const lines: string[] = [];
    const ts = await start(dir, lines, { 'http-tls': 'off' });
    try {
      const server = await presented(ts.mqttsPort, ca);
      assert.ok(Date.parse(server.validTo) <= caEnd, `server certificate until ${server.validTo}, CA until ${new Date(caEnd).toISOString()}`);
      // a device certificate made by the server (updraft device cert), and one renewed from a CSR
      const device = await ts.server.security.ca.issueDeviceCertificate('d1');
      const csr = execFileSync('openssl', ['req', '-new', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=d2', '-keyout', '/dev/null'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
      const renewed = await ts.server.security.ca.issueDeviceCertificateFromRequest('d2', csr);
      for (const pem of [server.toString(), device.certificate, renewed.certificate]) {
        assert.ok(Date.parse(new X509Certificate(pem).validTo) <= caEnd);
        // valid for as long as its chain is: an hour before the CA's end, but not after it
        assert.equal(await verifiesAt(pem, ca, caEnd - 3_600_000), true);
      }
      assert.ok(renewed.notAfter * 1000 <= caEnd);
      const [warning] = logged(lines, "Updraft's CA (pki/ca.crt) expires in");
      assert.equal(warning?.level, 'warn');
      assert.match(String(warning?.msg), /expires in 9 days/);
      const findings = await diagnose({ server: ts.httpUrl, token: ts.token });
      const caFinding = findings.find((f) => f.check === 'CA');
      assert.equal(caFinding?.verdict, 'warn', JSON.stringify(findings));
      assert.match(caFinding.text, /expires on .* in 9 day\(s\)/);
      assert.equal(findings.find((f) => f.check === 'tls')?.verdict, 'warn', 'the MQTTS certificate ends with the CA, within 30 days');
    } finally {
      await ts.stop();
    }
  });

  it("does not reissue, day after day, a server certificate that already ends with the CA; reissues one that ends more than a day before it", async () => {
    const dir = await dataDir();
    const pki = path.join(dir, 'pki');
    await mkdir(pki, { recursive: true, mode: 0o700 });
    opensslCa(pki, 20); // well inside the renewal window: every certificate it issues has < 30 days
    const ca = await readFile(`${pki}/ca.crt`, 'utf8');
    const caEnd = Date.parse(new X509Certificate(ca).validTo);
    const lines: string[] = [];
    let ts = await start(dir, lines, { 'http-tls': 'off' });
    try {
      const capped = await presented(ts.mqttsPort, ca);
      assert.equal(Date.parse(capped.validTo), caEnd, 'issued at start, capped at the CA\'s end');
      lines.length = 0;
      // the daily looks of the CA's remaining days: a new certificate would end where this one does
      for (let day = 1; day <= 18; day++) await ts.server.tlsRenewal.check(Date.now() + day * DAY);
      assert.deepEqual(logged(lines, 'reissued'), []);
      assert.deepEqual(logged(lines, 'serves the new server certificate'), []);
      assert.equal((await presented(ts.mqttsPort, ca)).serialNumber, capped.serialNumber);
      assert.equal(new X509Certificate(await readFile(`${pki}/server.crt`, 'utf8')).serialNumber, capped.serialNumber);
    } finally {
      await ts.stop();
    }
    // one that ends 3 days before the CA (issued before the cap): a new one gains them, so it is reissued, once
    const short = await opensslServerCertificate(pki, Date.now() - DAY, caEnd - 3 * DAY);
    await writeFile(`${pki}/server.crt`, short.cert);
    await writeFile(`${pki}/server.key`, short.key);
    lines.length = 0;
    ts = await start(dir, lines, { 'http-tls': 'off' });
    try {
      const renewed = await presented(ts.mqttsPort, ca);
      assert.notEqual(renewed.serialNumber, new X509Certificate(short.cert).serialNumber);
      assert.equal(Date.parse(renewed.validTo), caEnd);
      for (let day = 1; day <= 5; day++) await ts.server.tlsRenewal.check(Date.now() + day * DAY);
      assert.equal(logged(lines, 'server certificate reissued').length, 1, 'at start, not again');
      assert.equal((await presented(ts.mqttsPort, ca)).serialNumber, renewed.serialNumber);
    } finally {
      await ts.stop();
    }
  });

  it("updraft doctor fails an expired certificate the MQTTS listener serves (the operator's own), and says ok to a fresh CA and certificate", async () => {
    const dir = await dataDir();
    await (await start(dir, [], { 'http-tls': 'off' })).stop();
    const pki = path.join(dir, 'pki');
    let ts = await start(dir, [], { 'http-tls': 'off' });
    try {
      const findings = await diagnose({ server: ts.httpUrl, token: ts.token });
      assert.equal(findings.find((f) => f.check === 'CA')?.verdict, 'ok', JSON.stringify(findings));
      assert.match(findings.find((f) => f.check === 'tls')?.text ?? '', /MQTTS server certificate is valid until/);
    } finally {
      await ts.stop();
    }
    const expired = await opensslServerCertificate(pki, Date.now() - 800 * DAY, Date.now() - DAY);
    const own = await dataDir();
    await writeFile(`${own}/mqtt.crt`, expired.cert);
    await writeFile(`${own}/mqtt.key`, expired.key);
    const lines: string[] = [];
    ts = await start(dir, lines, { 'http-tls': 'off', 'mqtt-tls-cert': `${own}/mqtt.crt`, 'mqtt-tls-key': `${own}/mqtt.key` });
    try {
      await assert.rejects(presented(ts.mqttsPort, await readFile(`${pki}/ca.crt`, 'utf8')), /certificate has expired/);
      const findings = await diagnose({ server: ts.httpUrl, token: ts.token });
      const tlsFinding = findings.find((f) => f.check === 'tls');
      assert.equal(tlsFinding?.verdict, 'FAIL', JSON.stringify(findings));
      assert.match(tlsFinding.text, /MQTTS server certificate expired on/);
      assert.equal(logged(lines, 'the TLS certificate of mqtt.tlsCert has EXPIRED')[0]?.level, 'warn');
    } finally {
      await ts.stop();
    }
  });
});
