/**
 * The offline root key (docs/security.md, "Replacing the signing key"): a device provisioned
 * with the root's public key takes the server's signing key from the certificate each update
 * command carries, so the signing key is replaced without touching the device, and the
 * replaced key is refused from the first command of the new one on, across restarts.
 *
 * Real server, broker, HTTP and agents; the keys are made, certified and installed with the
 * real `updraft keys` commands. Refused commands are published on the device's delta topic by
 * an operator client: the position of an attacker who holds the replaced signing key (or
 * can alter messages on the way) and sends the device commands of its own.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { UpdateAgent } from '../../src/agent/agent.ts';
import { loadOrCreateKeyRing } from '../../src/artifacts/key-ring.ts';
import { UrlSigner } from '../../src/artifacts/url-signer.ts';
import type { KeyCertificate } from '../../src/protocol/key-certificate.ts';
import { ManifestSigner } from '../../src/signing/manifest-signer.ts';
import { certifySigningKey, generateRootKey, readRootPrivateKey } from '../../src/signing/root-key.ts';
import { loadSigningKey, parsePublicKey, type SoftwareSigningKey } from '../../src/signing/signing-key.ts';
import { eventually, runCli, startCli, type CliProcess } from '../helpers/cli.ts';
import { TestClient } from '../helpers/mqtt-client.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact, deploy, outcome, startAgent } from './support.ts';
import { AGENT_FEATURES } from '../../src/protocol/agent-features.ts';

/** The time zone every agent here reports (`reported.agent.timeZone`): the system's, as this process's. */
const LOCAL_ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone;
describe('the offline root key and signing key certificates', () => {
  let ts: TestServer;
  let dir: string;
  let operator: TestClient;
  let agent: UpdateAgent;
  let finished: Awaited<ReturnType<typeof startAgent>>['finished'];
  let installDir: string;
  let secret: string;
  let daemon: CliProcess | undefined;
  let rootFiles: { keyFile: string; publicFile: string };
  let oldKey: SoftwareSigningKey;
  let oldCertificate: KeyCertificate;
  let keys0: { root: { keyId: string } };
  const artifacts = new Map<string, { sha256: string; size: number }>();

  const api = (t = ts) => ['--server', t.httpUrl, '--token', t.token];
  const cli = async (args: string[]) => {
    const r = await runCli(args);
    assert.equal(r.code, 0, `updraft ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-root-'));
    ts = await startTestServer();
    operator = await TestClient.connect(ts.mqttUrl, 'ops-root', { username: 'operator', password: ts.token });
    for (const v of ['2.0.0', '3.0.0', '4.0.0', '5.0.0']) artifacts.set(v, await addArtifact(ts, v, randomBytes(20_000)));
  });
  after(async () => {
    await daemon?.kill();
    await agent?.stop();
    await operator?.end();
    await ts?.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** The server's signing key certified by the root with `serial`, through the CLI. */
  async function certify(serial: number, t = ts): Promise<string> {
    const pub = path.join(dir, `signing-${serial}.pub`);
    const cert = path.join(dir, `signing-${serial}.cert`);
    await cli(['keys', 'export-public', '--data-dir', t.dataDir, '--out', pub]);
    await cli(['keys', 'certify', '--root-key', rootFiles.keyFile, '--public-key', pub, '--serial', String(serial), '--out', cert]);
    return cert;
  }

  /** A command for fw@version as a holder of `signer` would make it, with `certificate` (or none). */
  async function forged(deviceId: string, version: string, signer: ManifestSigner, t = ts): Promise<Record<string, unknown>> {
    const a = artifacts.get(version)!;
    const sw = { name: 'fw', version, sha256: a.sha256, size: a.size, jobId: randomUUID() };
    const exp = Math.floor(Date.now() / 1000) + 600;
    const urls = new UrlSigner({ keys: await loadOrCreateKeyRing(t.dataDir), baseUrl: t.httpUrl });
    const c: Record<string, unknown> = { ...sw, url: urls.sign({ deviceId, ...sw, expiresAt: exp }), urlExpiresAt: exp, ...signer.sign(sw, exp) };
    if (signer.certificate) c.keyCertificate = signer.certificate;
    return c;
  }

  async function inject(deviceId: string, software: Record<string, unknown>): Promise<string> {
    await operator.publish(`state/${deviceId}/update/delta`, { state: { software }, metadata: {}, version: 1_000_000, timestamp: Math.floor(Date.now() / 1000) });
    return software.jobId as string;
  }

  async function refused(deviceId: string, software: Record<string, unknown>, reason: RegExp): Promise<void> {
    const current = () => readlink(path.join(installDir, 'current')).catch(() => 'nothing installed yet');
    const before = await current();
    const o = await outcome(finished, await inject(deviceId, software));
    assert.equal(o.status, 'FAILURE');
    assert.match(o.error ?? '', reason);
    assert.equal(await current(), before, 'nothing installed');
  }

  it('a root made offline certifies the signing key; the running server sends the certificate from its installation on', async () => {
    rootFiles = await generateRootKey(path.join(dir, 'offline'));
    const again = await runCli(['keys', 'root-generate', '--out', path.join(dir, 'offline')]);
    assert.equal(again.code, 2);
    assert.match(again.stderr, /^updraft: error: a root key already exists/);

    assert.match(await cli(['keys', 'show', ...api()]), /^certificate: none \(devices are provisioned with the signing key itself\)$/m);
    const cert = await certify(1);
    const firstTime = await runCli(['keys', 'install-cert', cert, ...api()]);
    assert.equal(firstTime.code, 2);
    assert.equal(firstTime.stderr, 'updraft: error: no root public key is installed yet: give the root public key (--root-public) the first time\n');

    const installed = await cli(['keys', 'install-cert', cert, '--root-public', rootFiles.publicFile, ...api()]);
    assert.match(installed, /^installed certificate 1 of signing key [0-9a-f]{16} by root [0-9a-f]{16}/);
    const keys = (await (await fetch(`${ts.httpUrl}/api/v1/keys`, { headers: { authorization: `Bearer ${ts.token}` } })).json()) as { signing: { keyId: string; certificate: KeyCertificate }; root: { keyId: string; publicKey: string } };
    keys0 = keys;
    assert.equal(keys.signing.certificate.serial, 1);
    assert.equal(keys.signing.certificate.keyId, keys.signing.keyId);
    assert.equal(keys.root.publicKey, await readFile(rootFiles.publicFile, 'utf8'));
    const metrics = (await (await fetch(`${ts.httpUrl}/api/v1/metrics`, { headers: { authorization: `Bearer ${ts.token}` } })).json()) as { signing: { certificateExpiresAt: number; certificateSerial: number } };
    assert.deepEqual(metrics.signing, { certificateExpiresAt: keys.signing.certificate.expiresAt, certificateSerial: 1 });
    const shown = await cli(['keys', 'show', ...api()]);
    const shownCert = new RegExp(`^signing key ${keys.signing.keyId}\ncertificate 1 of signing key ${keys.signing.keyId} by root [0-9a-f]{16}, valid until (\\S+) \\((\\d+) days left\\)\nURL signing keys:\n[0-9a-f]+ `).exec(shown);
    assert.ok(shownCert, shown);
    // the days left, as README says, also far from the expiry (certify's default: 365 days)
    const daysLeft = Math.floor((keys.signing.certificate.expiresAt * 1000 - Date.now()) / 86_400_000);
    assert.equal(shownCert[1], new Date(keys.signing.certificate.expiresAt * 1000).toISOString());
    assert.ok([daysLeft, daysLeft + 1].includes(Number(shownCert[2])), `${shownCert[2]} days left, ${daysLeft} by the certificate`);
    oldKey = (await loadSigningKey(ts.dataDir))!;
    oldCertificate = keys.signing.certificate;
  });

  it('refuses certificates that would not serve: same serial, another key, another root, not one at all', async () => {
    const same = await runCli(['keys', 'install-cert', path.join(dir, 'signing-1.cert'), ...api()]);
    assert.equal(same.code, 2);
    assert.match(same.stderr, /^updraft: error: the certificate's serial 1 is not above the installed one's \(1\); certify with --serial 2\n$/);

    const other = await generateRootKey(path.join(dir, 'other-root'));
    const otherCert = certifySigningKey(await readRootPrivateKey(other.keyFile), parsePublicKey(ts.server.security.signingKey.publicKeyPem), 5, Math.floor(Date.now() / 1000) + 3600);
    const message = async (res: Response) => ((await res.json()) as { error: { message: string } }).error.message;
    const put = (body: unknown) => fetch(`${ts.httpUrl}/api/v1/keys/signing/certificate`, { method: 'PUT', headers: { authorization: `Bearer ${ts.token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const otherRoot = await put({ certificate: otherCert, rootPublicKey: await readFile(other.publicFile, 'utf8') });
    assert.equal(otherRoot.status, 409);
    assert.match(await message(otherRoot), /^the installed root is [0-9a-f]{16}, not [0-9a-f]{16}: devices trust the installed one/);
    const notByRoot = await put({ certificate: otherCert });
    assert.equal(notByRoot.status, 400);
    assert.match(await message(notByRoot), /^key certificate signed by root [0-9a-f]{16}, but the trusted root is [0-9a-f]{16}$/);

    const anotherKey = certifySigningKey(await readRootPrivateKey(rootFiles.keyFile), generateKeyPairSync('ed25519').publicKey, 7, Math.floor(Date.now() / 1000) + 3600);
    const wrongKey = await put({ certificate: anotherKey });
    assert.equal(wrongKey.status, 400);
    assert.match(await message(wrongKey), /^the certificate is for signing key [0-9a-f]{16}, but this data directory's signing key is [0-9a-f]{16}$/);

    // offline too, the same refusal and the same exit status as any bad input
    const tamperedFile = path.join(dir, 'tampered.cert');
    await writeFile(tamperedFile, JSON.stringify({ ...oldCertificate, serial: 9 }));
    const offline = await runCli(['keys', 'install-cert', tamperedFile, '--offline', '--data-dir', ts.dataDir]);
    assert.equal(offline.code, 2);
    assert.equal(offline.stderr, 'updraft: error: bad key certificate signature\n');
    const tampered = await put({ certificate: { ...oldCertificate, serial: 9 } });
    assert.equal(tampered.status, 400);
    assert.equal(await message(tampered), 'bad key certificate signature');
    const garbage = await put({ certificate: { keyId: 'x' } });
    assert.equal(garbage.status, 400);
    assert.match(await message(garbage), /^certificate\.rootKeyId must be 16 hex digits$/);

    // none of it replaced what was installed
    assert.deepEqual(ts.server.security.manifests.certificate, oldCertificate);
  });

  it('a device provisioned with the root (device register --save) installs what the certified key signs', async () => {
    // the daemon, provisioned by the CLI: register --save writes the root's key beside the signing key's
    const daemonDir = path.join(dir, 'dev-d');
    const saved = await cli(['device', 'register', 'dev-d', '--save', daemonDir, ...api()]);
    assert.match(saved, /; root key to .*root-key\.pub$/m);
    assert.equal(await readFile(path.join(daemonDir, '.updraft', 'root-key.pub'), 'utf8'), await readFile(rootFiles.publicFile, 'utf8'));
    daemon = startCli(['agent', '--device', 'dev-d', '--install-dir', daemonDir, '--broker', ts.mqttUrl, '--initial-version', '1.0.0']);
    await daemon.waitFor(/dev-d: connected/);

    // the library, given the root only: a command signed by the server's key without its certificate is refused
    secret = await registerDevice(ts, 'dev-r');
    ({ agent, finished, installDir } = await startAgent(ts, dir, 'dev-r', { rootPublicKey: await readFile(rootFiles.publicFile, 'utf8'), username: 'dev-r', password: secret }));
    const bare = await forged('dev-r', '5.0.0', new ManifestSigner({ key: oldKey }));
    await refused('dev-r', bare, /^refused: the update command carries no key certificate, and this device trusts root key [0-9a-f]{16} only; nothing installed$/);

    const job = await deploy(ts, ['dev-r', 'dev-d'], 'fw@2.0.0');
    assert.equal((await outcome(finished, job)).status, 'SUCCESS');
    await daemon.waitFor(new RegExp(`dev-d: job ${job} acknowledged: SUCCESS, running 2.0.0`));
    const state = JSON.parse(await readFile(path.join(installDir, '.updraft', 'agent-state.json'), 'utf8')) as { keySerial?: number };
    assert.equal(state.keySerial, 1);
    // and each says so in its reports: the fleet can be asked which devices still accept an older key
    const reported = async (id: string) => (await ts.server.store.getShadow(id, ''))?.state.reported?.software as { keySerial?: number } | undefined;
    assert.equal((await reported('dev-r'))?.keySerial, 1);
    const rootKeyId = keys0.root.keyId;
    assert.deepEqual((await ts.server.store.getShadow('dev-r', ''))?.state.reported?.agent, { trust: 'root', keyId: rootKeyId, timeZone: LOCAL_ZONE, features: [...AGENT_FEATURES] });
    assert.deepEqual((await ts.server.store.getShadow('dev-d', ''))?.state.reported?.agent, { trust: 'root', keyId: rootKeyId, timeZone: LOCAL_ZONE, features: [...AGENT_FEATURES] }, 'the daemon took the root from its install directory');
    assert.equal((await reported('dev-d'))?.keySerial, 1);
  });

  it('the signing key is replaced on the server only; devices take the new one, then refuse the old one for good', async () => {
    // the rotation as an operator runs it: stop, new key, certify it offline, install, start
    const mqttPort = ts.server.broker.port;
    await ts.stop();
    await cli(['keys', 'generate', '--data-dir', ts.dataDir, '--force']);
    const cert2 = await certify(2);
    const offline = await cli(['keys', 'install-cert', cert2, '--offline', '--data-dir', ts.dataDir]);
    assert.match(offline, /^installed certificate 2 of signing key/);
    const dataDir = ts.dataDir;
    ts = await startTestServer({ dataDir, flags: { 'mqtt-port': mqttPort } });
    assert.notEqual(ts.server.security.signingKey.keyId, oldKey.keyId);
    assert.equal(ts.server.security.manifests.certificate?.serial, 2);
    // the certificate installed offline is shared through the store at the start, for the other instances
    assert.equal((JSON.parse((await ts.server.store.getSetting('signing.certificate'))!) as { certificate: { serial: number } }).certificate.serial, 2);
    await operator.end();
    operator = await TestClient.connect(ts.mqttUrl, 'ops-root', { username: 'operator', password: ts.token });
    await eventually(async () => (agent.connected ? true : undefined), 15_000, 'dev-r back online');

    // the artifacts added before say so, and stay deployable: commands are signed when they are sent
    artifacts.set('6.0.0', await addArtifact(ts, '6.0.0', randomBytes(1000)));
    const list = (await (await fetch(`${ts.httpUrl}/api/v1/artifacts`, { headers: { authorization: `Bearer ${ts.token}` } })).json()) as { items: { version: string; signatureStatus: string }[] };
    assert.deepEqual(Object.fromEntries(list.items.map((a) => [a.version, a.signatureStatus])), { '2.0.0': 'previous_key', '3.0.0': 'previous_key', '4.0.0': 'previous_key', '5.0.0': 'previous_key', '6.0.0': 'valid' });

    const exposed = async () => {
      const out = await cli(['device', 'list', '--query', 'reported.software.keySerial < 2', ...api()]);
      return out === 'no devices\n' ? [] : out.split('\n').filter(Boolean).map((l) => l.split(' ')[0]);
    };
    assert.deepEqual(await exposed(), ['dev-d', 'dev-r'], 'both still accept the replaced key');
    const job = await deploy(ts, ['dev-r', 'dev-d'], 'fw@3.0.0');
    assert.equal((await outcome(finished, job)).status, 'SUCCESS');
    await daemon!.waitFor(new RegExp(`dev-d: job ${job} acknowledged: SUCCESS, running 3.0.0`));
    assert.deepEqual(await exposed(), [], 'none does any more');

    // the holder of the old key, with its genuine certificate: older than what the device has seen
    const withOld = new ManifestSigner({ key: oldKey, certificate: oldCertificate });
    await refused('dev-r', await forged('dev-r', '4.0.0', withOld), /^refused: key certificate 1 of key [0-9a-f]{16} is older than certificate 2, which this device has seen: that key was replaced; nothing installed$/);
    // ...or the old certificate with its serial raised: the root's signature no longer holds
    const raised = new ManifestSigner({ key: oldKey, certificate: { ...oldCertificate, serial: 3 } });
    await refused('dev-r', await forged('dev-r', '4.0.0', raised), /^refused: bad key certificate signature; nothing installed$/);
    // ...or its own key with a certificate of the new one: the manifest names a key the certificate does not
    const mixed = new ManifestSigner({ key: oldKey, certificate: ts.server.security.manifests.certificate! });
    await refused('dev-r', await forged('dev-r', '4.0.0', mixed), /^refused: manifest signed with key [0-9a-f]{16}, but this device trusts key [0-9a-f]{16}; nothing installed$/);

    // and so after a restart of the agent: the serial it has seen is kept in its state
    await agent.stop();
    ({ agent, finished } = await startAgent(ts, dir, 'dev-r', { rootPublicKey: await readFile(rootFiles.publicFile, 'utf8'), username: 'dev-r', password: secret }));
    await eventually(async () => (agent.connected ? true : undefined), 15_000, 'dev-r online again');
    await refused('dev-r', await forged('dev-r', '4.0.0', withOld), /older than certificate 2, which this device has seen/);
  });

  it('refuses an expired certificate, one of another root, and a malformed one', async () => {
    const key = (await loadSigningKey(ts.dataDir))!;
    assert.match(await cli(['keys', 'show', ...api()]), /^certificate 2 of signing key [0-9a-f]{16} by root [0-9a-f]{16}, valid until \S+ \(\d+ days left\)$/m);
    const inAnHour = Math.floor(Date.now() / 1000) + 3600;
    const expired = certifySigningKey(await readRootPrivateKey(rootFiles.keyFile), parsePublicKey(key.publicKeyPem), 4, Math.floor(Date.now() / 1000) - 60);
    await refused('dev-r', await forged('dev-r', '4.0.0', new ManifestSigner({ key, certificate: expired })), /^refused: key certificate 4 of key [0-9a-f]{16} expired at .*; nothing installed$/);
    const foreign = certifySigningKey(await readRootPrivateKey(path.join(dir, 'other-root', 'root.key')), parsePublicKey(key.publicKeyPem), 4, inAnHour);
    await refused('dev-r', await forged('dev-r', '4.0.0', new ManifestSigner({ key, certificate: foreign })), /^refused: key certificate signed by root [0-9a-f]{16}, but the trusted root is [0-9a-f]{16}; nothing installed$/);
    const malformed = await forged('dev-r', '4.0.0', new ManifestSigner({ key }));
    malformed.keyCertificate = { ...ts.server.security.manifests.certificate!, serial: 'two' };
    await refused('dev-r', malformed, /^refused: malformed key certificate: keyCertificate\.serial must be an integer of at least 1; nothing installed$/);
    // and the genuine command of the server still goes through
    const job = await deploy(ts, ['dev-r'], 'fw@4.0.0');
    assert.equal((await outcome(finished, job)).status, 'SUCCESS');
  });

  it('a renewed certificate of the same key: an instance still sending the older one is not refused, while a replaced key stays refused', async () => {
    const key = (await loadSigningKey(ts.dataDir))!;
    const older = ts.server.security.manifests.certificate!;
    assert.equal(older.serial, 2);
    // the renewal, installed on this instance through the API
    await cli(['keys', 'install-cert', await certify(3), ...api()]);
    assert.equal(ts.server.security.manifests.certificate?.serial, 3);
    artifacts.set('7.0.0', await addArtifact(ts, '7.0.0', randomBytes(1000)));
    const renewed = await deploy(ts, ['dev-r'], 'fw@7.0.0');
    assert.equal((await outcome(finished, renewed)).status, 'SUCCESS');
    assert.deepEqual(await eventually(async () => {
      const sw = (await ts.server.store.getShadow('dev-r', ''))?.state.reported?.software as { keySerial?: number } | undefined;
      return sw?.keySerial === 3 ? sw.keySerial : undefined;
    }, 15_000, 'dev-r reports serial 3'), 3);
    // another instance, not yet given the renewal, sends certificate 2 of the same key: trusted
    artifacts.set('8.0.0', await addArtifact(ts, '8.0.0', randomBytes(1000)));
    const lagging = await forged('dev-r', '8.0.0', new ManifestSigner({ key, certificate: older }));
    const o = await outcome(finished, await inject('dev-r', lagging));
    assert.equal(o.status, 'SUCCESS', o.error);
    // the replaced key's genuine certificate 1 stays refused
    await refused('dev-r', await forged('dev-r', '6.0.0', new ManifestSigner({ key: oldKey, certificate: oldCertificate })), /older than certificate 3, which this device has seen: that key was replaced/);
  });
});
