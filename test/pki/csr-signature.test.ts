/**
 * A certificate signing request is accepted only when signed by its own key (the device holds
 * it), whichever RSA signature it carries; since 2026-12-06 PKCS #1 v1.5 signatures are checked
 * by OpenSSL on the thread pool, not by forge's RSA in JavaScript on the server's thread, and
 * the certificate is signed there too. Real CSRs made by the openssl command line, a real CA
 * in a temporary data directory; the certificates issued are checked by `openssl verify`.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createCa, type CertificateAuthority } from '../../src/pki/certificate-authority.ts';
import { forgeCsr } from '../helpers/csr.ts';
import { Scratch } from '../helpers/scratch.ts';

const scratch = new Scratch();

/** A CSR for `cn` made by openssl with `sigopts` (e.g. ['-sha512']), its key thrown away. */
async function opensslCsr(dir: string, cn: string, sigopts: string[] = []): Promise<string> {
  const out = path.join(dir, `${cn}-${sigopts.join('')}.csr`);
  execFileSync('openssl', ['req', '-new', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${cn}`, '-keyout', '/dev/null', '-out', out, ...sigopts], { stdio: ['ignore', 'ignore', 'pipe'] });
  return readFile(out, 'utf8');
}

/** `pem` with one byte of its signature (the DER's last byte) changed. */
function tampered(pem: string): string {
  const der = Buffer.from(pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
  der[der.length - 1] = der[der.length - 1]! ^ 0x01;
  const b64 = der.toString('base64').replace(/(.{64})/g, '$1\n');
  return `-----BEGIN CERTIFICATE REQUEST-----\n${b64}\n-----END CERTIFICATE REQUEST-----\n`;
}

describe('certificate signing requests, checked and signed off the server thread', () => {
  let dir: string;
  let ca: CertificateAuthority;
  before(async () => {
    dir = await scratch.tmp('updraft-csr-');
    ca = await createCa(dir);
  });
  after(() => scratch.release());

  /** `certificate` verifies against the CA with openssl, for client authentication. */
  const opensslVerifies = async (certificate: string) => {
    const file = path.join(dir, 'issued.crt');
    await writeFile(file, certificate);
    const out = execFileSync('openssl', ['verify', '-purpose', 'sslclient', '-CAfile', path.join(dir, 'pki', 'ca.crt'), file], { encoding: 'utf8' });
    assert.match(out, /: OK/, out);
  };

  for (const [name, sigopts] of [
    ['SHA-256 (openssl default)', []],
    ['SHA-512', ['-sha512']],
    ['RSASSA-PSS (refused until 2026-12-06)', ['-sigopt', 'rsa_padding_mode:pss']],
    ['RSASSA-PSS, SHA-384, a salt of 20', ['-sha384', '-sigopt', 'rsa_padding_mode:pss', '-sigopt', 'rsa_pss_saltlen:20']],
  ] as const) {
    it(`a request signed with ${name} by its own key gets a certificate of the CA`, async () => {
      const issued = await ca.issueDeviceCertificateFromRequest('d1', await opensslCsr(dir, 'd1', [...sigopts]));
      await opensslVerifies(issued.certificate);
      assert.ok(issued.notAfter * 1000 > Date.now(), 'valid from now on');
    });
  }

  it('a request signed with SHA-1 (an old device; made by forge: a strict crypto policy may forbid openssl -sha1) gets a certificate of the CA', async () => {
    await opensslVerifies((await ca.issueDeviceCertificateFromRequest('d1', forgeCsr('d1', { digest: 'sha1' }).csr)).certificate);
  });

  it('a key whose public exponent is not 65537 is refused (with e = 1 a signature is made without any private key)', async () => {
    const key = path.join(dir, 'e3.key');
    execFileSync('openssl', ['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-pkeyopt', 'rsa_keygen_pubexp:3', '-out', key], { stdio: ['ignore', 'ignore', 'pipe'] });
    const csr = execFileSync('openssl', ['req', '-new', '-key', key, '-subj', '/CN=d1'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    await assert.rejects(ca.issueDeviceCertificateFromRequest('d1', csr), /^UpdraftError: the certificate signing request needs an RSA key whose public exponent is 65537$|needs an RSA key whose public exponent is 65537/);
  });

  it('a request whose signature does not match its content is refused, 400, naming why; so is one for another device', async () => {
    const good = await opensslCsr(dir, 'd1');
    await assert.rejects(ca.issueDeviceCertificateFromRequest('d1', tampered(good)), (err: Error & { status?: number }) => {
      assert.equal(err.message, 'the certificate signing request is not signed by its own key');
      assert.equal(err.status, 400, 'bad input');
      return true;
    });
    const pss = await opensslCsr(dir, 'd1', ['-sigopt', 'rsa_padding_mode:pss']);
    await assert.rejects(ca.issueDeviceCertificateFromRequest('d1', tampered(pss)), /not signed by its own key/, 'a PSS signature tampered with too');
    await assert.rejects(ca.issueDeviceCertificateFromRequest('d2', good), /names device d1, not d2/);
  });
});
