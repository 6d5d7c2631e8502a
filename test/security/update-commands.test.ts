/**
 * Update commands: the signed manifest is shared by the devices of one job while it is young
 * (it names no device), the download URL is each device's own, and both verify for real
 * (Ed25519 on the agent's side, HMAC on the download route's).
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { checkCommand } from '../../src/agent/manifest-check.ts';
import { HmacUrlIssuer } from '../../src/artifacts/download-url-issuer.ts';
import { UrlSigner } from '../../src/artifacts/url-signer.ts';
import { KEPT_MANIFESTS, UpdateCommands } from '../../src/server/update-commands.ts';
import { ManifestSigner } from '../../src/signing/manifest-signer.ts';
import { parsePublicKey, SoftwareSigningKey } from '../../src/signing/signing-key.ts';
import type { StateStore } from '../../src/store/state-store.ts';

const key = new SoftwareSigningKey(generateKeyPairSync('ed25519').privateKey);
const signer = new UrlSigner({ keys: [{ kid: 'k1', secret: randomBytes(32) }], baseUrl: 'http://updraft.test' });
// the job lookup (allowDowngrade) answers "no such job": the commands here are written by hand;
// fw@2.0.0 is a build for rpi4 over >=1.5.0 (protocol/compatibility.ts)
const compatibility = { deviceTypes: ['rpi4'], requires: '>=1.5.0' };
const store = {
  getJob: async () => undefined,
  getArtifact: async (name: string, version: string) => (name === 'fw' && version === '2.0.0' ? { name, version, sha256: 'a'.repeat(64), size: 1024, createdAt: 1, compatibility } : undefined),
} as unknown as StateStore;
const sw = { name: 'fw', version: '2.0.0', sha256: 'a'.repeat(64), size: 1024, jobId: 'job-1' };
const TTL = 600;

function commands(clock: { now: number }) {
  return new UpdateCommands({ store, urls: new HmacUrlIssuer({ signer }), manifests: new ManifestSigner({ key }), ttlSeconds: TTL, now: () => clock.now });
}

describe('update commands', () => {
  it('shares one signed manifest between the devices of a job while it is young, each with its own URL', async () => {
    const clock = { now: 1_700_000_000_000 };
    const c = commands(clock);
    const a = await c.issue('dev-a', sw);
    clock.now += 5_000;
    const b = await c.issue('dev-b', sw);
    assert.equal(b.signature, a.signature, 'one signature for the wave');
    assert.deepEqual(b.manifest, a.manifest);
    assert.notEqual(b.url, a.url);
    const nowS = Math.floor(clock.now / 1000);
    for (const [cmd, device] of [[a, 'dev-a'], [b, 'dev-b']] as const) {
      checkCommand(cmd, { publicKey: parsePublicKey(key.publicKeyPem) }, { name: 'fw', version: '1.5.0' }, nowS, '', 'rpi4'); // throws if the signature does not verify
      const query = new URL(cmd.url).searchParams;
      assert.equal(signer.verify(query, sw, '127.0.0.1', nowS).deviceId, device, 'the URL opens the download for its own device');
    }
    const other = await c.issue('dev-a', { ...sw, jobId: 'job-2' });
    assert.notEqual(other.signature, a.signature, 'another job: another manifest');
  });

  it("puts the build's compatibility in the signed manifest, only for the bytes the artifact names", async () => {
    const clock = { now: 1_700_000_000_000 };
    const c = commands(clock);
    const cmd = await c.issue('dev-a', sw);
    assert.deepEqual(cmd.manifest!.deviceTypes, ['rpi4']);
    assert.equal(cmd.manifest!.requires, '>=1.5.0');
    const nowS = Math.floor(clock.now / 1000);
    checkCommand(cmd, { publicKey: parsePublicKey(key.publicKeyPem) }, { name: 'fw', version: '1.5.0' }, nowS, '', 'rpi4');
    assert.throws(() => checkCommand(cmd, { publicKey: parsePublicKey(key.publicKeyPem) }, { name: 'fw', version: '1.5.0' }, nowS, '', 'rpi3'), /not compatible: the build is for device types rpi4, not rpi3/);
    // taking a device back (rollback, cancel) to what it ran: its hardware counts, not the versions the build installs over
    const back = await c.issue('dev-a', { ...sw, jobId: 'job-1.rollback' });
    assert.deepEqual(back.manifest!.deviceTypes, ['rpi4']);
    assert.equal(back.manifest!.requires, undefined);
    // a desired state naming other bytes than the artifact's (written by hand): no constraints to take from it
    const odd = await c.issue('dev-a', { ...sw, sha256: 'b'.repeat(64), jobId: 'job-odd' });
    assert.equal(odd.manifest!.deviceTypes, undefined);
  });

  it('allows a downgrade to a rollback and to a job that allows one, never to a stay (cancel): a device past the stay refuses it', async () => {
    const clock = { now: 1_700_000_000_000 };
    const allowing = { ...store, getJob: async (jobId: string) => (jobId === 'job-d' ? { jobId, spec: { allowDowngrade: true } } : undefined) } as unknown as StateStore;
    const c = new UpdateCommands({ store: allowing, urls: new HmacUrlIssuer({ signer }), manifests: new ManifestSigner({ key }), ttlSeconds: TTL, now: () => clock.now });
    const nowS = Math.floor(clock.now / 1000);
    const policy = { publicKey: parsePublicKey(key.publicKeyPem) };
    const past = { name: 'fw', version: '3.0.0' };
    for (const jobId of ['job-1.rollback', 'job-d', 'job-d.2']) {
      const cmd = await c.issue('dev-a', { ...sw, jobId });
      assert.equal(cmd.manifest!.allowDowngrade, true, jobId);
      checkCommand(cmd, policy, past, nowS, '', 'rpi4'); // a downgrade from 3.0.0, allowed
    }
    for (const jobId of ['job-1.cancel', 'job-1.2.cancel', 'job-d.cancel']) {
      const stay = await c.issue('dev-a', { ...sw, jobId });
      assert.equal(stay.manifest!.allowDowngrade, undefined, jobId);
      // the device runs what the stay names (what it reported): no downgrade, accepted
      checkCommand(stay, policy, { name: 'fw', version: '2.0.0' }, nowS, '', 'rpi4');
      // it finished the job before the stay reached it: refused, not taken back
      assert.throws(() => checkCommand(stay, policy, past, nowS, '', 'rpi4'), /version 2\.0\.0 is lower than the running 3\.0\.0 and the manifest does not allow a downgrade/, jobId);
    }
  });

  it('gives a device its URL again while the manifest is reused, and signs with the new key at once after a rotation', async () => {
    const ring = [{ kid: 'k1', secret: randomBytes(32) }];
    const ringSigner = new UrlSigner({ keys: ring, baseUrl: 'http://updraft.test' });
    const clock = { now: 1_700_000_000_000 };
    const c = new UpdateCommands({ store, urls: new HmacUrlIssuer({ signer: ringSigner }), manifests: new ManifestSigner({ key }), ttlSeconds: TTL, now: () => clock.now });
    const first = await c.issue('dev-a', sw);
    clock.now += 1_000;
    assert.equal((await c.issue('dev-a', sw)).url, first.url, 'the progress report delta: the same URL');
    // rotation replaces the ring in place (artifacts/key-ring.ts): the new key signs first
    ring.splice(0, ring.length, { kid: 'k2', secret: randomBytes(32) }, ring[0]!);
    const rotated = await c.issue('dev-a', sw);
    const query = new URL(rotated.url).searchParams;
    assert.equal(query.get('kid'), 'k2');
    const nowS = Math.floor(clock.now / 1000);
    assert.equal(ringSigner.verify(query, sw, '127.0.0.1', nowS).deviceId, 'dev-a');
    // the old key retired: its URL is refused, the new one still opens
    ring.splice(1, 1);
    assert.throws(() => ringSigner.verify(new URL(first.url).searchParams, sw, '127.0.0.1', nowS), /unknown or retired key/);
    assert.equal(ringSigner.verify(new URL((await c.issue('dev-a', sw)).url).searchParams, sw, '127.0.0.1', nowS).deviceId, 'dev-a');
  });

  it('signs anew once the manifest is no longer young, with a later expiry', async () => {
    const clock = { now: 1_700_000_000_000 };
    const c = commands(clock);
    const first = await c.issue('dev-a', sw);
    clock.now += (TTL * 1000) / 10; // a tenth of the lifetime: the reuse limit
    const later = await c.issue('dev-b', sw);
    assert.notEqual(later.signature, first.signature);
    assert.equal(later.urlExpiresAt, first.urlExpiresAt + TTL / 10);
  });

  it('keeps the manifests of the last jobs only, signing anew for one it dropped', async () => {
    const clock = { now: 1_700_000_000_000 };
    const c = commands(clock);
    const first = await c.issue('dev-a', { ...sw, jobId: 'job-0' });
    // a second later (well inside the reuse window): a manifest signed now expires later
    clock.now += 1_000;
    let last = first;
    for (let i = 1; i <= KEPT_MANIFESTS; i++) last = await c.issue('dev-a', { ...sw, jobId: `job-${i}` });
    const lastAgain = await c.issue('dev-a', { ...sw, jobId: `job-${KEPT_MANIFESTS}` });
    assert.equal(lastAgain.urlExpiresAt, last.urlExpiresAt, 'a kept manifest is reused');
    const firstAgain = await c.issue('dev-a', { ...sw, jobId: 'job-0' });
    assert.equal(firstAgain.urlExpiresAt, first.urlExpiresAt + 1, 'the oldest was dropped and is signed anew');
    assert.notEqual(firstAgain.signature, first.signature);
  });

  it('signs once for a wave of commands asked for together, and keeps no failed signing', async () => {
    const clock = { now: 1_700_000_000_000 };
    let signed = 0;
    class CountingSigner extends ManifestSigner {
      override sign(...args: Parameters<ManifestSigner['sign']>) {
        signed++;
        return super.sign(...args);
      }
    }
    let failNext = true;
    // the job's spec is read before the first signing; let it fail once
    const getJob = async () => {
      if (!failNext) return undefined;
      failNext = false;
      throw new Error('store down');
    };
    const flaky = { getJob, getArtifact: async () => undefined } as unknown as StateStore;
    const c = new UpdateCommands({ store: flaky, urls: new HmacUrlIssuer({ signer }), manifests: new CountingSigner({ key }), ttlSeconds: TTL, now: () => clock.now });
    await assert.rejects(c.issue('dev-0', sw), /store down/);
    assert.equal(signed, 0);
    // a group commit hands the replica a batch of deltas at once, one command each
    const wave = await Promise.all(Array.from({ length: 50 }, (_, i) => c.issue(`dev-${i}`, sw)));
    assert.equal(signed, 1, 'one signature for the whole wave');
    assert.equal(new Set(wave.map((w) => w.url)).size, 50, 'each device its own URL');
  });
});
