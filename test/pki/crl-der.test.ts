/**
 * pki/crl-der.ts, the CRL's DER written straight into Buffers: byte for byte the list the
 * forge.asn1 builder made before it (test/helpers/crl-forge-reference.ts; RSA PKCS#1 v1.5
 * signatures are deterministic), built here and in the worker thread, and read and checked by
 * OpenSSL itself (`openssl crl`, `openssl verify -crl_check`).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createPrivateKey, randomBytes, type KeyObject } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { caPaths, createCa, loadCa, rolloverCa, type CertificateAuthority } from '../../src/pki/certificate-authority.ts';
import { CrlBuilder } from '../../src/pki/crl-builder.ts';
import { buildCrl, crlDerInput, issuedRecord, type CrlInput } from '../../src/pki/revocation-list.ts';
import { buildCrlWithForge } from '../helpers/crl-forge-reference.ts';
import { Scratch } from '../helpers/scratch.ts';

const scratch = new Scratch();
// every list of more than 0 entries in the worker: the worker's output checked too
const builder = new CrlBuilder({ inlineBelow: 1 });
after(async () => {
  await builder.stop();
  await scratch.release();
});

function openssl(args: string[]): { code: number | null; out: string } {
  const r = spawnSync('openssl', args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

const now = Date.now();
const random = (n: number, bytes = 16) => Array.from({ length: n }, (_, i) => ({ serial: randomBytes(1 + ((i * 7) % bytes)).toString('hex'), revokedAt: now - Math.floor(Math.random() * 1e10) }));

describe('CRL DER encoder', () => {
  let dir: string;
  let ca: CertificateAuthority;
  let key: KeyObject;
  before(async () => {
    dir = await scratch.tmp('updraft-crl-der-');
    ca = await createCa(dir);
    key = createPrivateKey(await readFile(caPaths(dir).key, 'utf8'));
  });

  /** Asserts the list of `input` is the forge builder's, byte for byte, on this thread and in the worker. */
  async function sameAsForge(name: string, input: CrlInput): Promise<string> {
    const expected = buildCrlWithForge(input);
    const inline = buildCrl(input);
    assert.equal(inline, expected, `${name}: the Buffer encoder's list is the forge builder's, byte for byte`);
    const built = await builder.build(crlDerInput(input));
    assert.equal(built.pem, expected, `${name}: and so is the worker's`);
    return expected;
  }

  it('writes the same bytes as the forge builder: no entry, one, serials needing a 00 or losing leading zeros, odd digits, both time types', async () => {
    await sameAsForge('no entry', { caCertificate: ca.certificate, caKey: key, entries: [], issuedAt: now });
    await sameAsForge('no entry, default issue time', { caCertificate: ca.certificate, caKey: key, entries: [], issuedAt: Math.floor(now / 1000) * 1000 + 999 });
    await sameAsForge('one entry', { caCertificate: ca.certificate, caKey: key, entries: [{ serial: '01ab', revokedAt: now }], issuedAt: now });
    const serials = ['80', 'ff', '0080', '00ff01', '8f', 'f', '7f', '000', '0', 'ABCDEF', 'a:b:c', `8${'f'.repeat(41)}`, `7${'0'.repeat(41)}`, 'ffffffffffffffffffffffffffffffff'];
    await sameAsForge('serials with a high bit, leading zeros, odd digits, upper case, separators', { caCertificate: ca.certificate, caKey: key, entries: serials.map((serial, i) => ({ serial, revokedAt: now - i * 7_777_777 })), issuedAt: now });
    // UTCTime through 2049, GeneralizedTime from 2050 (RFC 5280 §4.1.2.5), in entries and nextUpdate
    const times = [Date.UTC(2049, 11, 31, 23, 59, 59, 999), Date.UTC(2050, 0, 1), Date.UTC(1999, 0, 2, 3, 4, 5)];
    await sameAsForge('times either side of 2050', { caCertificate: ca.certificate, caKey: key, entries: times.map((revokedAt, i) => ({ serial: `0${i + 1}`, revokedAt })), issuedAt: now, nextUpdate: Date.UTC(2061, 5, 6, 7, 8, 9) });
    // duplicates keep the order they came in (the sort is stable)
    await sameAsForge('a serial twice', { caCertificate: ca.certificate, caKey: key, entries: [{ serial: 'aa', revokedAt: now }, { serial: '0b', revokedAt: now }, { serial: 'aa', revokedAt: now - 86_400_000 }], issuedAt: now });
  });

  it('writes the same bytes as the forge builder at 10,000 entries (long lengths), and for each CA of a rollover', async () => {
    await sameAsForge('10,000 entries', { caCertificate: ca.certificate, caKey: key, entries: random(10_000, 20), issuedAt: now });
    const rollDir = await scratch.tmp('updraft-crl-der-roll-');
    const old = await createCa(rollDir);
    const oldKey = createPrivateKey(await readFile(caPaths(rollDir).key, 'utf8'));
    await rolloverCa(rollDir);
    const current = (await loadCa(rollDir))!;
    const currentKey = createPrivateKey(await readFile(caPaths(rollDir).key, 'utf8'));
    const a = await sameAsForge('the current CA', { caCertificate: current.certificate, caKey: currentKey, entries: random(1_500), issuedAt: now });
    const b = await sameAsForge('the previous CA', { caCertificate: old.certificate, caKey: oldKey, entries: random(1_500), issuedAt: now });
    assert.notEqual(a, b, 'two CAs, two lists');
  });

  it('refuses a serial that is none, as before (BAD_REQUEST), in the worker too', async () => {
    for (const serial of ['', 'xyz', '1'.repeat(43)]) {
      const input = { caCertificate: ca.certificate, caKey: key, entries: [{ serial: '01', revokedAt: now }, { serial, revokedAt: now }], issuedAt: now };
      assert.throws(() => buildCrlWithForge(input), /is not a certificate serial number/, `the reference refuses "${serial}"`);
      assert.throws(() => buildCrl(input), (e: Error & { code?: string }) => e.code === 'BAD_REQUEST' && /is not a certificate serial number/.test(e.message), `refused here: "${serial}"`);
      await assert.rejects(builder.build(crlDerInput(input)), (e: Error & { code?: string }) => e.code === 'BAD_REQUEST' && e.message.includes(`"${serial}" is not a certificate serial number`), `refused by the worker: "${serial}"`);
    }
  });

  it('makes a list of 10,000 in the worker that OpenSSL reads, refusing the revoked certificate and admitting another', async () => {
    const gone = await ca.issueDeviceCertificate('der-gone');
    const kept = await ca.issueDeviceCertificate('der-kept');
    const rec = issuedRecord('der-gone', gone.certificate, ca.certificate);
    const entries = [...random(9_999), { serial: rec.serial, revokedAt: now }];
    const built = await builder.build(crlDerInput({ caCertificate: ca.certificate, caKey: key, entries, issuedAt: now }));
    const f = (n: string) => path.join(dir, n);
    await writeFile(f('ca.pem'), ca.certificate);
    await writeFile(f('crl.pem'), built.pem);
    await writeFile(f('gone.pem'), gone.certificate);
    await writeFile(f('kept.pem'), kept.certificate);
    const text = openssl(['crl', '-in', f('crl.pem'), '-noout', '-text', '-CAfile', f('ca.pem')]);
    assert.equal(text.code, 0, `openssl crl reads it: ${text.out.slice(0, 2000)}`);
    assert.match(text.out, /verify OK/, `the CA's signature verifies: ${text.out.slice(0, 2000)}`);
    assert.equal(text.out.match(/Serial Number: /g)?.length, 10_000, 'all 10,000 serials listed');
    assert.match(text.out, new RegExp(`Serial Number: ${rec.serial.toUpperCase()}`), 'the revoked serial among them');
    const refused = openssl(['verify', '-crl_check', '-CAfile', f('ca.pem'), '-CRLfile', f('crl.pem'), f('gone.pem')]);
    assert.notEqual(refused.code, 0, `the listed certificate is refused: ${refused.out}`);
    assert.match(refused.out, /certificate revoked/, `as revoked: ${refused.out}`);
    const ok = openssl(['verify', '-crl_check', '-CAfile', f('ca.pem'), '-CRLfile', f('crl.pem'), f('kept.pem')]);
    assert.equal(ok.code, 0, `another device's certificate verifies: ${ok.out}`);
  });
});
