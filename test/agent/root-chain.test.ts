/**
 * The agent's walk of a root chain (agent/manifest-check.ts, signing/root-key.ts), beyond the
 * one-step rotation of test/security/root-rotation.test.ts: a device that slept through two
 * rotations follows both; one on the middle root follows the last step; the chain's order and
 * continuity are checked; a device on the newest root needs no chain and refuses what an
 * older root signs even with the chain attached.
 */
import assert from 'node:assert/strict';
import { createPublicKey, generateKeyPairSync, randomUUID, type KeyObject } from 'node:crypto';
import { describe, it } from 'node:test';
import { checkCommand, type RootTrust } from '../../src/agent/manifest-check.ts';
import type { SoftwareCommand } from '../../src/protocol/software.ts';
import { ManifestSigner } from '../../src/signing/manifest-signer.ts';
import { certifySigningKey, rotateRoot } from '../../src/signing/root-key.ts';
import { SoftwareSigningKey, keyIdOf } from '../../src/signing/signing-key.ts';

const root = () => generateKeyPairSync('ed25519').privateKey;
const [r1, r2, r3] = [root(), root(), root()];
const id = (k: KeyObject) => keyIdOf(createPublicKey(k));
const chain = [rotateRoot(r1, r2), rotateRoot(r2, r3)];
const signingPair = generateKeyPairSync('ed25519');
const signing = new SoftwareSigningKey(signingPair.privateKey);
const inAnHour = () => Math.floor(Date.now() / 1000) + 3600;

/** A command signed by the signing key, with its certificate from `by` (serial 5) and `rotations`. */
function command(by: KeyObject, rotations?: unknown[]): SoftwareCommand {
  const signer = new ManifestSigner({ key: signing, certificate: certifySigningKey(by, signingPair.publicKey, 5, inAnHour()) });
  const sw = { name: 'fw', version: '2.0.0', sha256: 'a'.repeat(64), size: 10, jobId: randomUUID() };
  const signed = signer.sign(sw, inAnHour());
  return { ...sw, url: 'http://x/', urlExpiresAt: inAnHour(), manifest: signed.manifest as never, signature: signed.signature, keyCertificate: signer.certificate as never, ...(rotations ? { rootRotations: rotations as never } : {}) };
}

const trusting = (k: KeyObject): RootTrust => ({ rootKey: createPublicKey(k), minSerial: 0 });
const now = () => Math.floor(Date.now() / 1000);

describe('the root chain a command carries', () => {
  it('a device that slept through two rotations follows both, to the newest root', () => {
    const check = checkCommand(command(r3, chain), trusting(r1), undefined, now());
    assert.equal(check.rotatedRoot && keyIdOf(check.rotatedRoot), id(r3));
  });

  it('a device on the middle root follows the last step only', () => {
    const check = checkCommand(command(r3, chain), trusting(r2), undefined, now());
    assert.equal(check.rotatedRoot && keyIdOf(check.rotatedRoot), id(r3));
  });

  it('a device on the newest root needs no chain, and refuses an older root even with the chain attached', () => {
    assert.equal(checkCommand(command(r3), trusting(r3), undefined, now()).rotatedRoot, undefined);
    assert.throws(() => checkCommand(command(r1, chain), trusting(r3), undefined, now()), { code: 'INTEGRITY', message: `refused: key certificate signed by root ${id(r1)}, but the trusted root is ${id(r3)} and no root rotation leads from it; nothing installed` });
  });

  it('refuses a chain out of order, with a gap, or that stops short of the certificate\'s root', () => {
    assert.throws(() => checkCommand(command(r3, [chain[1], chain[0]]), trusting(r1), undefined, now()), { message: /^refused: malformed root rotations: rootRotations\[1\] replaces root [0-9a-f]{16}, but the step before it leads to [0-9a-f]{16}; nothing installed$/ });
    const r4 = root();
    assert.throws(() => checkCommand(command(r4, [chain[0], rotateRoot(r3, r4)]), trusting(r1), undefined, now()), { message: /^refused: malformed root rotations: rootRotations\[1\] replaces root/ });
    assert.throws(() => checkCommand(command(r3, [chain[0]]), trusting(r1), undefined, now()), { message: `refused: key certificate signed by root ${id(r3)}, but the root rotations from the trusted root lead to ${id(r2)}; nothing installed` });
  });

  it('a certificate verified for one device is not taken for another that trusts another root (the check is kept per process: updraft sim)', () => {
    const c = command(r3, chain);
    assert.equal(keyIdOf(checkCommand(c, trusting(r1), undefined, now()).rotatedRoot!), id(r3), 'the device on r1 follows the chain to r3');
    assert.equal(checkCommand({ ...c, jobId: c.jobId }, trusting(r1), undefined, now()).certificateKeyId, keyIdOf(signingPair.publicKey), 'a second device on r1 takes the same certificate');
    const r9 = root();
    assert.throws(() => checkCommand({ ...c, rootRotations: undefined }, trusting(r9), undefined, now()), { code: 'INTEGRITY', message: `refused: key certificate signed by root ${id(r3)}, but the trusted root is ${id(r9)}; nothing installed` }, 'a device on another root refuses the certificate the devices on r1 took');
    const raised = { ...c, keyCertificate: { ...(c.keyCertificate as object), serial: 6 } as never };
    assert.throws(() => checkCommand(raised, trusting(r1), undefined, now()), { code: 'INTEGRITY', message: 'refused: bad key certificate signature; nothing installed' }, 'a copy with a raised serial is verified again, and fails');
  });
});
