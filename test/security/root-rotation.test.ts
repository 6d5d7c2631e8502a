/**
 * The offline root replaced in band (docs/security.md, "Replacing the root key"): the old
 * root signs the new one (`updraft keys root-rotate`), the server installs the rotation with
 * the new root's certificate of its signing key, and every command carries the rotation. A
 * device provisioned with the old root follows it, trusts the new root from then on (across
 * restarts), and refuses what the old root vouches for, so a leaked old root is worth nothing
 * against it.
 *
 * Real server, broker, HTTP, CLI and agents. Refused commands are published on the device's
 * delta topic by an operator client: the position of an attacker who holds the old root key
 * and sends the device commands of its own.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes, randomUUID, type KeyObject } from 'node:crypto';
import { mkdtemp, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { UpdateAgent } from '../../src/agent/agent.ts';
import type { JobFinishedEvent } from '../../src/agent/agent-events.ts';
import { loadOrCreateKeyRing } from '../../src/artifacts/key-ring.ts';
import { UrlSigner } from '../../src/artifacts/url-signer.ts';
import type { KeyCertificate } from '../../src/protocol/key-certificate.ts';
import type { RootRotation } from '../../src/protocol/root-rotation.ts';
import { ManifestSigner } from '../../src/signing/manifest-signer.ts';
import { certifySigningKey, installKeyCertificate, keyCertificatePaths, loadKeyCertificate, readRootPrivateKey, rotateRoot } from '../../src/signing/root-key.ts';
import { keyIdOf, loadOrCreateSigningKey, parsePublicKey, SoftwareSigningKey } from '../../src/signing/signing-key.ts';
import { eventually, runCli } from '../helpers/cli.ts';
import { TestClient } from '../helpers/mqtt-client.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact, deploy, outcome, startAgent } from './support.ts';

describe('the offline root replaced in band', () => {
  let ts: TestServer;
  let dir: string;
  let operator: TestClient;
  const agents: { agent: UpdateAgent; installDir: string; finished: JobFinishedEvent[]; secret: string }[] = [];
  let root1: { keyFile: string; publicFile: string; keyId: string };
  let root2: { keyFile: string; publicFile: string; keyId: string; rotationFile: string };
  const artifacts = new Map<string, { sha256: string; size: number }>();

  const api = () => ['--server', ts.httpUrl, '--token', ts.token];
  const cli = async (args: string[]) => {
    const r = await runCli(args);
    assert.equal(r.code, 0, `updraft ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  const get = async <T>(p: string): Promise<T> => (await (await fetch(`${ts.httpUrl}${p}`, { headers: { authorization: `Bearer ${ts.token}` } })).json()) as T;
  const trusted = async (deviceId: string) => ((await ts.server.store.getShadow(deviceId, ''))?.state.reported?.agent as { keyId?: string } | undefined)?.keyId;

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-root-rotation-'));
    ts = await startTestServer();
    operator = await TestClient.connect(ts.mqttUrl, 'ops-rotation', { username: 'operator', password: ts.token });
    for (const v of ['2.0.0', '3.0.0', '4.0.0', '5.0.0', '6.0.0']) artifacts.set(v, await addArtifact(ts, v, randomBytes(10_000)));
  });
  after(async () => {
    for (const a of agents) await a.agent.stop();
    await operator?.end();
    await ts?.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** The server's signing key certified by `rootKeyFile` with `serial`, through the CLI. */
  async function certify(rootKeyFile: string, serial: number): Promise<string> {
    const pub = path.join(dir, `signing-${serial}.pub`);
    const cert = path.join(dir, `signing-${serial}.cert`);
    await cli(['keys', 'export-public', '--data-dir', ts.dataDir, '--out', pub]);
    await cli(['keys', 'certify', '--root-key', rootKeyFile, '--public-key', pub, '--serial', String(serial), '--out', cert]);
    return cert;
  }

  /** A command for fw@version signed by `signer`, with its certificate and `rotations`. */
  async function forged(deviceId: string, version: string, signer: ManifestSigner, rotations?: RootRotation[]): Promise<Record<string, unknown>> {
    const a = artifacts.get(version)!;
    const sw = { name: 'fw', version, sha256: a.sha256, size: a.size, jobId: randomUUID() };
    const exp = Math.floor(Date.now() / 1000) + 600;
    const urls = new UrlSigner({ keys: await loadOrCreateKeyRing(ts.dataDir), baseUrl: ts.httpUrl });
    const c: Record<string, unknown> = { ...sw, url: urls.sign({ deviceId, ...sw, expiresAt: exp }), urlExpiresAt: exp, ...signer.sign(sw, exp) };
    if (signer.certificate) c.keyCertificate = signer.certificate;
    if (rotations) c.rootRotations = rotations;
    return c;
  }

  async function refused(i: number, deviceId: string, software: Record<string, unknown>, reason: RegExp): Promise<void> {
    const current = () => readlink(path.join(agents[i]!.installDir, 'current')).catch(() => 'nothing installed yet');
    const before = await current();
    await operator.publish(`state/${deviceId}/update/delta`, { state: { software }, metadata: {}, version: 1_000_000, timestamp: Math.floor(Date.now() / 1000) });
    const o = await outcome(agents[i]!.finished, software.jobId as string);
    assert.equal(o.status, 'FAILURE');
    assert.match(o.error ?? '', reason);
    assert.equal(await current(), before, 'nothing installed');
  }

  /** An attacker's own signing key, certified by `rootKey` with a high serial. */
  function attacker(rootKey: KeyObject): ManifestSigner {
    const pair = generateKeyPairSync('ed25519');
    const key = new SoftwareSigningKey(pair.privateKey);
    return new ManifestSigner({ key, certificate: certifySigningKey(rootKey, pair.publicKey, 99, Math.floor(Date.now() / 1000) + 3600) });
  }

  async function startDevice(deviceId: string, rootPublicFile: string): Promise<number> {
    const secret = await registerDevice(ts, deviceId);
    const started = await startAgent(ts, dir, deviceId, { rootPublicKey: await readFile(rootPublicFile, 'utf8'), username: deviceId, password: secret });
    agents.push({ ...started, secret });
    return agents.length - 1;
  }

  it('before: a device trusts the first root, and the old root could vouch for any key', async () => {
    const made = JSON.parse(await cli(['keys', 'root-generate', '--out', path.join(dir, 'root-1'), '--json'])) as { keyId: string; keyFile: string; publicFile: string };
    root1 = made;
    await cli(['keys', 'install-cert', await certify(root1.keyFile, 1), '--root-public', root1.publicFile, ...api()]);
    const a = await startDevice('dev-a', root1.publicFile);
    const job = await deploy(ts, ['dev-a'], 'fw@2.0.0');
    assert.equal((await outcome(agents[a]!.finished, job)).status, 'SUCCESS');
    assert.equal(await trusted('dev-a'), root1.keyId);
    // doctor names a device on the root whose agent cannot follow a rotation (an older agent: no features reported)
    await registerDevice(ts, 'dev-old');
    await operator.publish('state/dev-old/update', { state: { reported: { agent: { trust: 'root', keyId: root1.keyId } } } });
    await eventually(async () => ((await trusted('dev-old')) === root1.keyId ? true : undefined), 10_000, 'dev-old reported');
    const doctor = await runCli(['doctor', ...api()]);
    assert.match(doctor.stdout, /^note  devices {6}dev-old trust the root with agents that cannot follow a root rotation: update their agents before replacing the root/m);
    assert.doesNotMatch(doctor.stdout, /dev-a trust the root with agents/, 'a current agent says it can');
    assert.equal((await fetch(`${ts.httpUrl}/api/v1/devices/dev-old`, { method: 'DELETE', headers: { authorization: `Bearer ${ts.token}` } })).status, 200);
  });

  it('refuses a rotation the installed root did not sign, and one not signed by its new root; nothing changes', async () => {
    const stranger = generateKeyPairSync('ed25519');
    const other = generateKeyPairSync('ed25519');
    const notByRoot = rotateRoot(stranger.privateKey, other.privateKey);
    const cert = certifySigningKey(other.privateKey, parsePublicKey(ts.server.security.signingKey.publicKeyPem), 2, Math.floor(Date.now() / 1000) + 3600);
    const certFile = path.join(dir, 'stranger.cert');
    const rotationFile = path.join(dir, 'stranger-rotation.json');
    await writeFile(certFile, JSON.stringify(cert));
    await writeFile(rotationFile, JSON.stringify(notByRoot));
    const r = await runCli(['keys', 'install-cert', certFile, '--root-rotation', rotationFile, ...api()]);
    assert.equal(r.code, 2);
    assert.equal(r.stderr, `updraft: error: key certificate signed by root ${keyIdOf(other.publicKey)}, but the trusted root is ${root1.keyId} and no root rotation leads from it\n`);

    // signed by the installed root, but the new root's own signature is not its own
    const root1Key = await readRootPrivateKey(root1.keyFile);
    const genuine = rotateRoot(root1Key, other.privateKey);
    await writeFile(rotationFile, JSON.stringify({ ...genuine, newRootSignature: rotateRoot(root1Key, stranger.privateKey).newRootSignature }));
    const unproven = await runCli(['keys', 'install-cert', certFile, '--root-rotation', rotationFile, ...api()]);
    assert.equal(unproven.code, 2);
    assert.equal(unproven.stderr, `updraft: error: the rotation to root ${keyIdOf(other.publicKey)} is not signed by that root\n`);
    // malformed: a readable line, exit 2
    await writeFile(rotationFile, JSON.stringify({ ...genuine, publicKey: 42 }));
    const malformed = await runCli(['keys', 'install-cert', certFile, '--root-rotation', rotationFile, ...api()]);
    assert.equal(malformed.code, 2);
    assert.equal(malformed.stderr, `updraft: error: ${rotationFile} is not a root rotation: ${rotationFile}.publicKey must be base64\n`);

    const keys = await get<{ root: { keyId: string; rotations: unknown[] }; signing: { certificate: KeyCertificate } }>('/api/v1/keys');
    assert.equal(keys.root.keyId, root1.keyId);
    assert.deepEqual(keys.root.rotations, []);
    assert.equal(keys.signing.certificate.serial, 1);
  });

  it('the root is rotated offline and installed with the new certificate; devices follow it, and say so', async () => {
    const out = JSON.parse(await cli(['keys', 'root-rotate', '--root-key', root1.keyFile, '--out', path.join(dir, 'root-2'), '--json'])) as { keyId: string; keyFile: string; publicFile: string; rotationFile: string; previousKeyId: string };
    root2 = out;
    assert.equal(out.previousKeyId, root1.keyId);
    const again = await runCli(['keys', 'root-rotate', '--root-key', root1.keyFile, '--out', path.join(dir, 'root-2')]);
    assert.equal(again.code, 2, 'a root is never overwritten');
    assert.match(again.stderr, /^updraft: error: a root key already exists/);

    const installed = await cli(['keys', 'install-cert', await certify(root2.keyFile, 2), '--root-rotation', root2.rotationFile, ...api()]);
    assert.match(installed, new RegExp(`^installed certificate 2 of signing key [0-9a-f]{16} by root ${root2.keyId}, valid until \\S+; root ${root1.keyId} is replaced by ${root2.keyId}: devices that trust the old root take the new one`));
    const keys = await get<{ root: { keyId: string; publicKey: string; rotations: RootRotation[] } }>('/api/v1/keys');
    assert.equal(keys.root.keyId, root2.keyId);
    assert.equal(keys.root.publicKey, await readFile(root2.publicFile, 'utf8'), 'devices registered from now on get the new root');
    assert.deepEqual(keys.root.rotations, [JSON.parse(await readFile(root2.rotationFile, 'utf8'))]);
    assert.match(await cli(['keys', 'show', ...api()]), new RegExp(`^root ${root2.keyId}, rotated from ${root1.keyId} -> ${root2.keyId}: commands carry the rotations$`, 'm'));

    // doctor names the device still on the old root
    const doctor = await runCli(['doctor', ...api()]);
    assert.match(doctor.stdout, new RegExp(`^warn  devices {6}dev-a still trust a replaced root \\(the root is ${root2.keyId} now\\)`, 'm'));

    // dev-a trusts root 1 and takes the next update through the rotation; dev-b, provisioned with root 1 and never updated, too
    const b = await startDevice('dev-b', root1.publicFile);
    assert.equal(await trusted('dev-b'), root1.keyId);
    const job = await deploy(ts, ['dev-a', 'dev-b'], 'fw@3.0.0');
    assert.equal((await outcome(agents[0]!.finished, job)).status, 'SUCCESS');
    assert.equal((await outcome(agents[b]!.finished, job)).status, 'SUCCESS');
    // each says so: the fleet query finds the devices still on the old root
    await eventually(async () => ((await trusted('dev-a')) === root2.keyId && (await trusted('dev-b')) === root2.keyId ? true : undefined), 15_000, 'both report the new root');
    const onOld = await cli(['device', 'list', '--query', `reported.agent.keyId = ${root1.keyId}`, ...api()]);
    assert.equal(onOld, 'no devices\n');
    assert.doesNotMatch((await runCli(['doctor', ...api()])).stdout, /replaced root/);
  });

  it('a device that followed the rotation refuses what the old root vouches for, across a restart', async () => {
    const root1Key = await readRootPrivateKey(root1.keyFile);
    // the holder of the leaked old root: a signing key of its own, certified with a serial above everything
    await refused(0, 'dev-a', await forged('dev-a', '4.0.0', attacker(root1Key)), new RegExp(`^refused: key certificate signed by root ${root1.keyId}, but the trusted root is ${root2.keyId}; nothing installed$`));
    // ...or a rotation of its own from the old root: it does not start at the root the device trusts
    const evil = generateKeyPairSync('ed25519');
    const evilRotation = rotateRoot(root1Key, evil.privateKey);
    await refused(0, 'dev-a', await forged('dev-a', '4.0.0', attacker(evil.privateKey), [evilRotation]), new RegExp(`^refused: key certificate signed by root ${keyIdOf(evil.publicKey)}, but the trusted root is ${root2.keyId} and no root rotation leads from it; nothing installed$`));

    // restarted, still given root 1 by its provisioning: it trusts root 2, from its state
    await agents[0]!.agent.stop();
    const restarted = await startAgent(ts, dir, 'dev-a', { rootPublicKey: await readFile(root1.publicFile, 'utf8'), username: 'dev-a', password: agents[0]!.secret });
    agents[0] = { ...restarted, secret: agents[0]!.secret };
    await eventually(async () => (agents[0]!.agent.connected ? true : undefined), 15_000, 'dev-a online again');
    await refused(0, 'dev-a', await forged('dev-a', '4.0.0', attacker(root1Key)), /but the trusted root is [0-9a-f]{16}; nothing installed$/);
    const job = await deploy(ts, ['dev-a'], 'fw@4.0.0');
    assert.equal((await outcome(agents[0]!.finished, job)).status, 'SUCCESS');
  });

  it('a device still on the old root refuses a forged rotation, and a tampered one', async () => {
    const c = await startDevice('dev-c', root1.publicFile);
    const stranger = generateKeyPairSync('ed25519');
    const other = generateKeyPairSync('ed25519');
    // a rotation made by a key the device does not trust
    await refused(c, 'dev-c', await forged('dev-c', '5.0.0', attacker(other.privateKey), [{ ...rotateRoot(stranger.privateKey, other.privateKey), previousRootKeyId: root1.keyId }]), new RegExp(`^refused: the root rotation to ${keyIdOf(other.publicKey)} is not signed by root ${root1.keyId}; nothing installed$`));
    // the genuine rotation with another public key put in
    const genuine = JSON.parse(await readFile(root2.rotationFile, 'utf8')) as RootRotation;
    const swapped = { ...genuine, publicKey: other.publicKey.export({ type: 'spki', format: 'der' }).toString('base64'), rootKeyId: keyIdOf(other.publicKey) };
    await refused(c, 'dev-c', await forged('dev-c', '5.0.0', attacker(other.privateKey), [swapped]), new RegExp(`^refused: the root rotation to ${keyIdOf(other.publicKey)} is not signed by root ${root1.keyId}; nothing installed$`));
    await refused(c, 'dev-c', await forged('dev-c', '5.0.0', attacker(other.privateKey), [{ ...genuine, signature: 7 } as unknown as RootRotation]), /^refused: malformed root rotations: rootRotations\[0\]\.signature must be base64; nothing installed$/);
    assert.equal(await trusted('dev-c'), root1.keyId, 'it still trusts the root it was given');
    // the genuine command goes through
    const job = await deploy(ts, ['dev-c'], 'fw@5.0.0');
    assert.equal((await outcome(agents[c]!.finished, job)).status, 'SUCCESS');
  });

  it('a restarted server and a new instance on the same store send the rotations too', async () => {
    const dataDir = ts.dataDir;
    const mqttPort = ts.server.broker.port;
    await ts.stop();
    ts = await startTestServer({ dataDir, flags: { 'mqtt-port': mqttPort } });
    assert.equal(ts.server.security.manifests.rootRotations.length, 1);
    await operator.end();
    operator = await TestClient.connect(ts.mqttUrl, 'ops-rotation', { username: 'operator', password: ts.token });
    // the shared certificate carries the chain: what another instance takes in (signing/shared-certificate.ts)
    const shared = JSON.parse((await ts.server.store.getSetting('signing.certificate'))!) as { certificate: KeyCertificate; rootRotations: RootRotation[] };
    assert.equal(shared.certificate.rootKeyId, root2.keyId);
    assert.deepEqual(shared.rootRotations.map((r) => [r.previousRootKeyId, r.rootKeyId]), [[root1.keyId, root2.keyId]]);

    const d = await startDevice('dev-d', root1.publicFile);
    const job = await deploy(ts, ['dev-d'], 'fw@6.0.0');
    assert.equal((await outcome(agents[d]!.finished, job)).status, 'SUCCESS');
    await eventually(async () => ((await trusted('dev-d')) === root2.keyId ? true : undefined), 15_000, 'dev-d reports the new root');
  });
});

describe('a root rotation stopped halfway through its files', () => {
  it('loading follows the recorded chain to the certificate\'s root, or cuts a chain that went ahead of it', async () => {
    const dataDir = await mkdtemp(path.join(os.tmpdir(), 'updraft-rotation-files-'));
    try {
      const signing = (await loadOrCreateSigningKey(dataDir)).key;
      const signingPub = parsePublicKey(signing.publicKeyPem);
      const r1 = generateKeyPairSync('ed25519');
      const r2 = generateKeyPairSync('ed25519');
      const pem = (k: KeyObject) => k.export({ type: 'spki', format: 'pem' }).toString();
      const inADay = Math.floor(Date.now() / 1000) + 86_400;
      await installKeyCertificate(dataDir, signing, certifySigningKey(r1.privateKey, signingPub, 1, inADay), { rootPublicKeyPem: pem(r1.publicKey) });
      const files = keyCertificatePaths(dataDir);
      const rotation = rotateRoot(r1.privateKey, r2.privateKey);

      // stopped after the chain was written: the certificate and root are still the old ones
      await writeFile(files.rotations, JSON.stringify([rotation]));
      const ahead = await loadKeyCertificate(dataDir, signing);
      assert.equal(ahead?.certificate.rootKeyId, keyIdOf(r1.publicKey));
      assert.deepEqual(ahead?.rootRotations, [], 'the chain is cut back to the certificate\'s root');

      // stopped after the new certificate: the root's file is the old one, which the chain leads from
      const cert2 = certifySigningKey(r2.privateKey, signingPub, 2, inADay);
      await writeFile(files.cert, JSON.stringify(cert2));
      const behind = await loadKeyCertificate(dataDir, signing);
      assert.equal(behind?.certificate.serial, 2);
      assert.deepEqual(behind?.rootRotations, [rotation]);
      assert.equal(behind?.rootPublicKeyPem, pem(r2.publicKey));
      assert.equal(await readFile(files.rootPub, 'utf8'), pem(r2.publicKey), 'the root\'s file is mended');

      // a chain that does not lead to the certificate's root is refused at the start, naming the file
      const stranger = generateKeyPairSync('ed25519');
      await writeFile(files.rotations, JSON.stringify([rotateRoot(stranger.privateKey, r2.privateKey)]));
      await writeFile(files.rootPub, pem(r1.publicKey));
      await assert.rejects(loadKeyCertificate(dataDir, signing), { code: 'CONFIG', message: `${files.cert}: key certificate signed by root ${keyIdOf(r2.publicKey)}, but the trusted root is ${keyIdOf(r1.publicKey)} and no root rotation leads from it` });
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
