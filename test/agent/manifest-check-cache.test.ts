/**
 * The agent's check of a signed command verifies a manifest's signature once per process
 * (agent/manifest-check.ts, `verifiedManifests`): `updraft sim` runs thousands of devices in
 * one process, all given the same signed manifest. What that must never do: accept a
 * signature, a manifest or a key other than the very ones verified, or skip what is each
 * device's own (expiry against its clock, the command's fields, downgrade).
 *
 * The count of Ed25519 verifies is read by wrapping node:crypto's `verify` (a Node built-in,
 * not one of our parts), its ESM binding updated with `syncBuiltinESMExports`.
 */
import assert from 'node:assert/strict';
import { createRequire, syncBuiltinESMExports } from 'node:module';
import { generateKeyPairSync } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { checkCommand } from '../../src/agent/manifest-check.ts';
import type { SoftwareCommand } from '../../src/protocol/software.ts';
import { ManifestSigner } from '../../src/signing/manifest-signer.ts';
import { parsePublicKey, SoftwareSigningKey } from '../../src/signing/signing-key.ts';

const crypto = createRequire(import.meta.url)('node:crypto') as typeof import('node:crypto');
const realVerify = crypto.verify;
let verifies = 0;

const key = new SoftwareSigningKey(generateKeyPairSync('ed25519').privateKey);
const signer = new ManifestSigner({ key });
const NOW_S = 1_800_000_000;
let serial = 0;

/** A command for fw@version of a job of its own, signed, valid for an hour after NOW_S. */
function command(version = '2.0.0'): SoftwareCommand {
  const sw = { name: 'fw', version, sha256: 'b'.repeat(64), size: 2048, jobId: `job-cache-${++serial}` };
  const signed = signer.sign(sw, NOW_S + 3600);
  return { ...sw, url: 'http://updraft.test/d', urlExpiresAt: NOW_S + 600, manifest: { ...signed.manifest }, signature: signed.signature };
}

/** The policy of a device provisioned with the signing key: a KeyObject of its own, as each agent parses it. */
const policy = () => ({ publicKey: parsePublicKey(key.publicKeyPem) });

describe('manifest signatures verified once per process', () => {
  before(() => {
    crypto.verify = ((...args: Parameters<typeof realVerify>) => {
      verifies++;
      return realVerify(...args);
    }) as typeof realVerify;
    syncBuiltinESMExports();
  });
  after(() => {
    crypto.verify = realVerify;
    syncBuiltinESMExports();
  });

  it('a thousand devices checking one command verify its signature once', () => {
    const cmd = command();
    const start = verifies;
    for (let i = 0; i < 1000; i++) checkCommand({ ...cmd }, policy(), { name: 'fw', version: '1.0.0' }, NOW_S);
    assert.equal(verifies - start, 1, 'one Ed25519 verify for the same manifest, signature and key, whatever the number of devices and key objects');
    const other = command();
    checkCommand(other, policy(), { name: 'fw', version: '1.0.0' }, NOW_S);
    assert.equal(verifies - start, 2, "another job's manifest is verified on its own");
  });

  it('after a good command was verified, another signature over the same manifest is verified, and refused', () => {
    const cmd = command();
    checkCommand(cmd, policy(), undefined, NOW_S);
    const sig = Buffer.from(cmd.signature!, 'base64');
    sig[5]! ^= 1;
    const start = verifies;
    assert.throws(() => checkCommand({ ...cmd, signature: sig.toString('base64') }, policy(), undefined, NOW_S), /bad manifest signature/, 'a flipped bit in the signature');
    assert.equal(verifies - start, 1, 'the altered signature was verified, not taken as known');
  });

  it('after a good command was verified, the same signature over an altered manifest is refused', () => {
    const cmd = command();
    checkCommand(cmd, policy(), { name: 'fw', version: '1.0.0' }, NOW_S);
    assert.throws(
      () => checkCommand(cmd, policy(), { name: 'fw', version: '3.0.0' }, NOW_S),
      /version 2\.0\.0 is lower than the running 3\.0\.0/,
      'the downgrade rule is still checked for the known manifest',
    );
    const altered = { ...cmd, manifest: { ...cmd.manifest, allowDowngrade: true } };
    assert.throws(() => checkCommand(altered, policy(), { name: 'fw', version: '3.0.0' }, NOW_S), /bad manifest signature/, 'a downgrade allowed after signing');
  });

  it('a known manifest is still refused to a device whose clock is past its expiry, or whose command names other bytes', () => {
    const cmd = command();
    checkCommand(cmd, policy(), undefined, NOW_S);
    assert.throws(() => checkCommand(cmd, policy(), undefined, NOW_S + 3601), /manifest expired at/, 'expiry against this device\'s clock');
    assert.throws(() => checkCommand({ ...cmd, sha256: 'c'.repeat(64) }, policy(), undefined, NOW_S), /manifest sha256 .* differs from the command's/, 'the command must name what the manifest signs');
  });

  it('a signature text padded past its base64 (which still verifies) is verified at each check, not kept', () => {
    const cmd = command();
    const padded = { ...cmd, signature: `${cmd.signature!}${' x'.repeat(2000)}` };
    const start = verifies;
    checkCommand(padded, policy(), undefined, NOW_S);
    checkCommand(padded, policy(), undefined, NOW_S);
    assert.equal(verifies - start, 2, 'two checks of the padded text, two verifies: its 4 KB is not held by the cache');
    checkCommand(cmd, policy(), undefined, NOW_S);
    checkCommand(cmd, policy(), undefined, NOW_S);
    assert.equal(verifies - start, 3, 'the 88-character signature is kept after its first verify');
  });

  it('a known manifest is refused to a device that trusts another key', () => {
    const cmd = command();
    checkCommand(cmd, policy(), undefined, NOW_S);
    const otherKey = parsePublicKey(new SoftwareSigningKey(generateKeyPairSync('ed25519').privateKey).publicKeyPem);
    assert.throws(() => checkCommand(cmd, { publicKey: otherKey }, undefined, NOW_S), /manifest signed with key .*, but this device trusts key/, 'another trusted key');
  });
});

describe('what a manifest signature covers', () => {
  it('a field holding a lone surrogate is refused: the signed UTF-8 bytes would be those of U+FFFD', () => {
    // the operator's job "job-\ufffd" (a character a job id may hold), signed by the server
    const sw = { name: 'fw', version: '2.0.0', sha256: 'b'.repeat(64), size: 2048, jobId: 'job-\ufffd' };
    const signed = signer.sign(sw, NOW_S + 3600);
    const genuine: SoftwareCommand = { ...sw, url: 'http://updraft.test/d', urlExpiresAt: NOW_S + 600, manifest: { ...signed.manifest }, signature: signed.signature };
    checkCommand(genuine, policy(), undefined, NOW_S);
    // the same signature over "job-\ud800": the same bytes once written as UTF-8
    const forged: SoftwareCommand = { ...genuine, jobId: 'job-\ud800', manifest: { ...signed.manifest, jobId: 'job-\ud800' } };
    assert.throws(() => checkCommand(forged, policy(), undefined, NOW_S), /manifest\.jobId holds an unpaired surrogate \(U\+D800\)/, 'another job id under the genuine signature');
    const nul: SoftwareCommand = { ...genuine, name: 'f\u0000w', manifest: { ...signed.manifest, name: 'f\u0000w' } };
    assert.throws(() => checkCommand(nul, policy(), undefined, NOW_S), /manifest\.name holds a NUL character/, 'U+0000 in a name');
  });
});
