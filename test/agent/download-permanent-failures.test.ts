/**
 * Failures before any answer that waiting does not change fail a download at once (docs/agent.md:
 * "what waiting does not change fails at once"): a server certificate the device does not
 * trust (real HTTPS servers: a self-signed certificate, and one issued by a CA the device does
 * not know), a URL that does not parse, a scheme fetch does not speak. A name that does not
 * resolve is still retried (a device whose network just came up gets that for real names).
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import forge from 'node-forge';
import { downloadArtifact, permanentFetchFailure, type DownloadOptions } from '../../src/agent/downloader.ts';
import { UpdraftError } from '../../src/errors.ts';
import { createCa } from '../../src/pki/certificate-authority.ts';
import { memoryDownloader } from '../../src/sim/memory-downloader.ts';

/** A clock that moves only when the downloader waits on it: retries cost no real time. */
const fakeClock = () => {
  const c = { t: 0, waits: [] as number[], now: () => c.t, sleep: async (ms: number) => void (c.waits.push(ms), (c.t += ms)) };
  return c;
};

/** A self-signed server certificate for 127.0.0.1, valid now. */
function selfSignedCertificate(): { cert: string; key: string } {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048, publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } });
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(publicKey);
  cert.serialNumber = '01';
  cert.validity.notBefore = new Date(Date.now() - 3_600_000);
  cert.validity.notAfter = new Date(Date.now() + 86_400_000);
  const name = [{ name: 'commonName', value: '127.0.0.1' }];
  cert.setSubject(name);
  cert.setIssuer(name);
  cert.setExtensions([{ name: 'extKeyUsage', serverAuth: true }, { name: 'subjectAltName', altNames: [{ type: 7, ip: '127.0.0.1' }] }]);
  cert.sign(forge.pki.privateKeyFromPem(privateKey), forge.md.sha256.create());
  return { cert: forge.pki.certificateToPem(cert), key: privateKey };
}

/** An HTTPS server with `cert`, counting the connections it is offered. */
async function httpsServer(cert: string, key: string) {
  const server = https.createServer({ cert, key }, (_req, res) => res.end('never reached'));
  let connections = 0;
  server.on('connection', () => connections++);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `https://127.0.0.1:${(server.address() as AddressInfo).port}/v1/download/fw/2.0.0?sig=s3cr3t`,
    get connections() {
      return connections;
    },
    close: () => {
      server.closeAllConnections();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe('downloadArtifact: what waiting does not change fails at once', () => {
  let dir: string;
  let selfSigned: Awaited<ReturnType<typeof httpsServer>>;
  let unknownCa: Awaited<ReturnType<typeof httpsServer>>;

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-dl-permanent-'));
    const own = selfSignedCertificate();
    selfSigned = await httpsServer(own.cert, own.key);
    // a CA of its own, which the device (Node's default trust store) does not know
    const ca = await createCa(path.join(dir, 'data'));
    const issued = await ca.issueServerCertificate(['127.0.0.1']);
    unknownCa = await httpsServer(issued.certificate, issued.privateKey);
  });
  after(async () => {
    await selfSigned.close();
    await unknownCa.close();
    await rm(dir, { recursive: true, force: true });
  });

  const opts = (url: string, extra: Partial<DownloadOptions> = {}): DownloadOptions => ({ url, file: path.join(dir, 'job.part'), size: 100, sha256: '0'.repeat(64), ...extra });

  /** The failure of one download on a fake clock, and the pauses it made. */
  const failure = async (url: string, extra: Partial<DownloadOptions> = {}) => {
    const clock = fakeClock();
    const err = await downloadArtifact(opts(url, { clock, ...extra })).then(
      () => assert.fail('downloaded'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof UpdraftError && err.code === 'DOWNLOAD', String(err));
    return { err, waits: clock.waits };
  };

  it('a self-signed server certificate: one attempt, the reason says what to check, no signature quoted', async () => {
    const { err, waits } = await failure(selfSigned.url);
    assert.deepEqual(waits, [], 'no retry');
    assert.equal(selfSigned.connections, 1);
    assert.equal(err.message, "download failed: the server's TLS certificate is refused: self-signed certificate (DEPTH_ZERO_SELF_SIGNED_CERT); waiting does not change that: check the certificate the download host presents and the CAs the device trusts");
  });

  it('a certificate issued by a CA the device does not trust: one attempt', async () => {
    const { err, waits } = await failure(unknownCa.url);
    assert.deepEqual(waits, [], 'no retry');
    assert.equal(unknownCa.connections, 1);
    assert.match(err.message, /^download failed: the server's TLS certificate is refused: .* \(UNABLE_TO_VERIFY_LEAF_SIGNATURE\); waiting does not change that/);
  });

  it('a URL that does not parse, or names a scheme fetch does not speak: no retry, the query redacted', async () => {
    const unparsable = await failure('http://exa mple/v1/download/fw/2.0.0?sig=s3cr3t');
    assert.deepEqual(unparsable.waits, []);
    assert.equal(unparsable.err.message, 'download failed: Failed to parse URL from http://exa mple/v1/download/fw/2.0.0?<redacted> (ERR_INVALID_URL): the URL cannot be used; waiting does not change that');
    const ftp = await failure('ftp://127.0.0.1/fw.bin?sig=s3cr3t');
    assert.deepEqual(ftp.waits, []);
    assert.equal(ftp.err.message, "download failed: the URL's scheme is ftp:, not http: or https:; waiting does not change that");
  });

  it('redirects that do not end, a redirect to file:, a URL with user info: one attempt, the reason undici gives, no credentials quoted', async () => {
    const http = await import('node:http');
    let requests = 0;
    const server = http.createServer((req, res) => {
      requests++;
      res.writeHead(302, { location: req.url!.startsWith('/loop') ? req.url! : 'file:///etc/passwd' }).end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const loop = await failure(`${base}/loop?sig=s3cr3t`);
      assert.deepEqual(loop.waits, []);
      assert.equal(loop.err.message, "download failed: the server's redirects do not end (redirect count exceeded: more than 20, or a loop); waiting does not change that");
      assert.equal(requests, 21, 'one attempt: the request and its 20 redirects');
      requests = 0;
      const file = await failure(`${base}/file?sig=s3cr3t`);
      assert.deepEqual(file.waits, []);
      assert.equal(file.err.message, 'download failed: a redirect leads to a URL that is not http: or https: (URL scheme must be a HTTP(S) scheme); waiting does not change that');
      assert.equal(requests, 1);
      requests = 0;
      const credentials = await failure(`http://ops:hunter2@127.0.0.1:${(server.address() as AddressInfo).port}/fw?sig=s3cr3t`);
      assert.deepEqual(credentials.waits, []);
      assert.equal(credentials.err.message, 'download failed: the URL includes credentials (user:password@), which fetch refuses to send (Request cannot be constructed from a URL that includes credentials); waiting does not change that');
      assert.equal(requests, 0);
    } finally {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it('a URL of 70,000 characters: the reason quotes no more than 500 of them, and says how long it was', async () => {
    const { err, waits } = await failure('x'.repeat(70_000) + '?sig=s3cr3t');
    assert.equal(waits.length, 0);
    assert.match(err.message, /Failed to parse URL from x{100}.*\.\.\. \(\d{5} characters\)/);
    assert.ok(err.message.length < 700, `${err.message.length} characters`);
  });

  it("the simulator's downloader too: a refused certificate or an unparsable URL is one attempt, no signature quoted", async () => {
    // it speaks node:http, not fetch: the TLS error comes without fetch's cause around it
    const before = selfSigned.connections;
    const clock = fakeClock();
    const refused = await memoryDownloader(opts(selfSigned.url, { clock })).then(() => assert.fail('downloaded'), (e: unknown) => e);
    assert.ok(refused instanceof UpdraftError && refused.code === 'DOWNLOAD', String(refused));
    assert.deepEqual(clock.waits, [], 'no retry');
    assert.equal(selfSigned.connections, before + 1);
    assert.match(refused.message, /^download failed: the server's TLS certificate is refused: self-signed certificate \(DEPTH_ZERO_SELF_SIGNED_CERT\); waiting does not change that/);
    const unparsable = await memoryDownloader(opts('http://exa mple/v1/download/fw/2.0.0?sig=s3cr3t', { clock })).then(() => assert.fail('downloaded'), (e: unknown) => e);
    assert.ok(unparsable instanceof UpdraftError && unparsable.code === 'DOWNLOAD', String(unparsable));
    assert.doesNotMatch(unparsable.message, /s3cr3t/);
    assert.match(unparsable.message, /the URL cannot be used; waiting does not change that$/);
  });

  it('a host name that does not resolve is still retried (it may, once the network is up)', async () => {
    // .invalid never resolves (RFC 6761 §6.4): ENOTFOUND, or EAI_AGAIN without a resolver
    const { err, waits } = await failure('http://no-such-host.invalid/v1/download/fw/2.0.0?sig=s3cr3t', { maxAttempts: 2 });
    assert.equal(waits.length, 1, 'retried');
    assert.match(err.message, /^download failed: 2 attempts without progress: request failed: fetch failed \((ENOTFOUND|EAI_AGAIN)\)$/);
  });
  it("a certificate refused for its dates is retried: the device's clock decides them, and NTP may set it yet", () => {
    // as undici throws it: fetch failed, its cause the TLS error with OpenSSL's code
    const refused = (code: string, message: string) => Object.assign(new TypeError('fetch failed'), { cause: Object.assign(new Error(message), { code }) });
    const url = 'https://127.0.0.1:8443/v1/download/fw/2.0.0?sig=s3cr3t';
    assert.equal(permanentFetchFailure(refused('CERT_NOT_YET_VALID', 'certificate is not yet valid'), url), undefined);
    assert.equal(permanentFetchFailure(refused('CERT_HAS_EXPIRED', 'certificate has expired'), url), undefined);
    assert.match(permanentFetchFailure(refused('CERT_REVOKED', 'certificate revoked'), url) ?? '', /^the server's TLS certificate is refused: certificate revoked \(CERT_REVOKED\); waiting does not change that/);
  });
});
