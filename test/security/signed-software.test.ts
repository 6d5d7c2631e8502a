/**
 * Signed software (issue 5): artifacts are signed when added, every update command carries a
 * manifest signed when the delta is issued, and the agent, provisioned with the public key,
 * refuses unsigned, badly signed, expired, mismatching and downgrading commands, each ending
 * in FAILURE with the reason and nothing installed. Real broker, real HTTP, real agent.
 *
 * The refused commands are published on the device's delta topic by an operator client: the
 * position of an attacker who can inject or alter messages on the way to the device.
 */
import assert from 'node:assert/strict';
import { createPublicKey, generateKeyPairSync, randomBytes, randomUUID, verify } from 'node:crypto';
import { mkdtemp, readFile, readlink, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { UpdateAgent } from '../../src/agent/agent.ts';
import { SlotInstaller } from '../../src/agent/slot-installer.ts';
import { loadOrCreateKeyRing } from '../../src/artifacts/key-ring.ts';
import { UrlSigner } from '../../src/artifacts/url-signer.ts';
import { manifestBytes, type SoftwareManifest } from '../../src/protocol/manifest.ts';
import { artifactBytes, ManifestSigner } from '../../src/signing/manifest-signer.ts';
import { SoftwareSigningKey } from '../../src/signing/signing-key.ts';
import { silentLogger } from '../../src/util/logger.ts';
import { eventually, runCli } from '../helpers/cli.ts';
import { TestClient } from '../helpers/mqtt-client.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact, deploy, outcome, startAgent } from './support.ts';
import { AGENT_FEATURES } from '../../src/protocol/agent-features.ts';

/** The time zone every agent here reports (`reported.agent.timeZone`): the system's, as this process's. */
const LOCAL_ZONE = Intl.DateTimeFormat().resolvedOptions().timeZone;
describe('signed software', () => {
  let ts: TestServer;
  let root: string;
  let operator: TestClient;
  let urls: UrlSigner;
  const agents: UpdateAgent[] = [];
  const v2 = randomBytes(40_000);
  const v15 = randomBytes(30_000);
  let a2: { sha256: string; size: number; signature?: string };
  let a15: { sha256: string; size: number };

  before(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'updraft-signed-'));
    ts = await startTestServer();
    operator = await TestClient.connect(ts.mqttUrl, 'ops-signed', { username: 'operator', password: ts.token });
    urls = new UrlSigner({ keys: await loadOrCreateKeyRing(ts.dataDir), baseUrl: ts.httpUrl });
    a2 = await addArtifact(ts, '2.0.0', v2);
    a15 = await addArtifact(ts, '1.5.0', v15);
  });
  after(async () => {
    await Promise.all(agents.map((a) => a.stop()));
    await operator.end();
    await ts.close();
    await rm(root, { recursive: true, force: true });
  });

  /** A command for fw@version as the server would issue it, then altered by `alter`. */
  function command(deviceId: string, version: '2.0.0' | '1.5.0', alter: (c: Record<string, unknown>, m: SoftwareManifest) => void = () => {}, signer = ts.server.security.manifests) {
    const a = version === '2.0.0' ? a2 : a15;
    const sw = { name: 'fw', version, sha256: a.sha256, size: a.size, jobId: randomUUID() };
    const exp = Math.floor(Date.now() / 1000) + 600;
    const signed = signer.sign(sw, exp);
    const c: Record<string, unknown> = { ...sw, url: urls.sign({ deviceId, ...sw, expiresAt: exp }), urlExpiresAt: exp, ...signed };
    alter(c, signed.manifest);
    return c;
  }

  async function inject(deviceId: string, software: Record<string, unknown>): Promise<string> {
    await operator.publish(`state/${deviceId}/update/delta`, { state: { software }, metadata: {}, version: 1_000_000, timestamp: Math.floor(Date.now() / 1000) });
    return software.jobId as string;
  }

  it('signs an artifact when it is added, and the signature verifies with the public key', async () => {
    assert.match(a2.signature ?? '', /^[0-9a-f]{16}:[A-Za-z0-9+/=]+$/);
    const [keyId, sig] = a2.signature!.split(':') as [string, string];
    assert.equal(keyId, ts.server.security.signingKey.keyId);
    const pub = createPublicKey(ts.server.security.signingKey.publicKeyPem);
    assert.ok(verify(null, artifactBytes(keyId, { ...a2, name: 'fw', version: '2.0.0' }), pub, Buffer.from(sig, 'base64')));
    assert.ok(!verify(null, artifactBytes(keyId, { ...a2, name: 'fw', version: '2.0.1' }), pub, Buffer.from(sig, 'base64')), 'bound to the version');
    const stored = await ts.server.store.getArtifact('fw', '2.0.0');
    assert.equal(stored?.signature, a2.signature);
  });

  it('the delta carries a signed manifest; desired.software stays exactly the five leaves', async () => {
    const { agent, finished } = await startAgent(ts, root, 'dev-ok');
    agents.push(agent);
    const watch = await TestClient.connect(ts.mqttUrl, 'watch-signed', { username: 'operator', password: ts.token });
    await watch.subscribe('state/dev-ok/update/delta');
    const jobId = await deploy(ts, ['dev-ok'], 'fw@2.0.0');
    const delta = await watch.next((m) => m.body.state?.software?.jobId === jobId);
    const sw = delta.body.state.software;
    assert.deepEqual(Object.keys(sw.manifest).sort(), ['expiresAt', 'jobId', 'keyId', 'name', 'sha256', 'size', 'version']);
    assert.equal(sw.manifest.expiresAt, sw.urlExpiresAt);
    assert.ok(verify(null, manifestBytes(sw.manifest), createPublicKey(ts.server.security.signingKey.publicKeyPem), Buffer.from(sw.signature, 'base64')));
    const desired = (await ts.server.store.getShadow('dev-ok', ''))!.state.desired!.software as Record<string, unknown>;
    assert.deepEqual(Object.keys(desired).sort(), ['jobId', 'name', 'sha256', 'size', 'version']);
    assert.equal((await outcome(finished, jobId)).status, 'SUCCESS');
    await watch.end();
  });

  const attacker = new ManifestSigner({ key: new SoftwareSigningKey(generateKeyPairSync('ed25519').privateKey) });
  const refusals: [string, '2.0.0' | '1.5.0', (c: Record<string, unknown>, m: SoftwareManifest) => void, RegExp, ManifestSigner | undefined][] = [
    ['unsigned software', '2.0.0', (c) => { delete c.manifest; delete c.signature; }, /not signed/, undefined],
    ['a manifest signed with another key', '2.0.0', () => {}, /signed with key [0-9a-f]{16}, but this device trusts key/, attacker],
    ['a bad signature', '2.0.0', (c) => { const s = Buffer.from(c.signature as string, 'base64'); s[10]! ^= 1; c.signature = s.toString('base64'); }, /bad manifest signature/, undefined],
    ['a manifest altered after signing', '2.0.0', (_c, m) => { m.allowDowngrade = true; }, /bad manifest signature/, undefined],
    ['an expired manifest (freeze)', '2.0.0', (c) => {
      const m = { ...(c.manifest as SoftwareManifest), expiresAt: Math.floor(Date.now() / 1000) - 60 };
      Object.assign(c, ts.server.security.manifests.sign({ name: m.name, version: m.version, sha256: m.sha256, size: m.size, jobId: m.jobId }, m.expiresAt));
    }, /manifest expired at/, undefined],
    ['a command whose size differs from the manifest (mix-and-match)', '2.0.0', (c) => { c.size = (c.size as number) + 1; }, /manifest size \d+ differs from the command's \d+/, undefined],
    ['a command whose version differs from the manifest', '2.0.0', (c) => { c.version = '2.0.1'; }, /manifest version "2\.0\.0" differs/, undefined],
    ['a lower version the manifest does not allow (rollback)', '1.5.0', () => {}, /version 1\.5\.0 is lower than the running 1\.8\.0/, undefined],
  ];
  for (const [what, version, alter, reason, signer] of refusals) {
    it(`refuses ${what}: FAILURE with the reason, nothing installed`, async () => {
      const id = `dev-${what.replace(/[^a-z]+/g, '-').slice(0, 40)}`.replace(/-+$/, '');
      const { agent, installDir, finished } = await startAgent(ts, root, id, { initialVersion: '1.8.0' });
      agents.push(agent);
      const jobId = await inject(id, command(id, version, alter, signer));
      const e = await outcome(finished, jobId);
      assert.equal(e.status, 'FAILURE');
      assert.match(e.error ?? '', reason);
      assert.match(e.error ?? '', /nothing installed/);
      assert.equal(e.version, '1.8.0');
      await assert.rejects(readlink(path.join(installDir, 'current')), 'no slot was ever switched to');
      const reported = (await ts.server.store.getShadow(id, ''))!.state.reported!.software as Record<string, unknown>;
      assert.equal(reported.status, 'FAILURE');
      assert.equal(reported.version, '1.8.0');
    });
  }

  it('installs a lower version when the signed manifest allows the downgrade', async () => {
    const id = 'dev-downgrade-ok';
    const { agent, installDir, finished } = await startAgent(ts, root, id, { initialVersion: '1.8.0' });
    agents.push(agent);
    const c = command(id, '1.5.0');
    Object.assign(c, ts.server.security.manifests.sign({ name: 'fw', version: '1.5.0', sha256: a15.sha256, size: a15.size, jobId: c.jobId as string }, c.urlExpiresAt as number, true));
    const e = await outcome(finished, await inject(id, c));
    assert.equal(e.status, 'SUCCESS', e.error);
    assert.equal(e.version, '1.5.0');
    assert.deepEqual(await readFile(path.join(installDir, 'current', 'artifact')), v15);
  });

  it('an agent without a key refuses to start unless unsigned software is explicitly allowed', async () => {
    const opts = { deviceId: 'dev-nokey', brokerUrl: ts.mqttUrl, installer: new SlotInstaller({ dir: path.join(root, 'nokey') }), stateDir: path.join(root, 'nokey', '.updraft'), logger: silentLogger };
    // refused by the constructor, with the other option problems (agent-options-check.ts)
    assert.throws(() => new UpdateAgent(opts), /signingPublicKey is required .*or allowUnsigned: true/);
  });

  it('each agent says what it trusts when it connects, so the fleet can be asked which devices accept unsigned software', async () => {
    const keyed = await startAgent(ts, root, 'dev-trusting');
    agents.push(keyed.agent);
    const unsigned = await startAgent(ts, root, 'dev-careless', { signingPublicKey: undefined as unknown as string, allowUnsigned: true });
    agents.push(unsigned.agent);
    const agentOf = async (id: string) => eventually(async () => (await ts.server.store.getShadow(id, ''))?.state.reported?.agent, 15_000, `${id}'s trust reported`);
    assert.deepEqual(await agentOf('dev-trusting'), { trust: 'signing-key', keyId: ts.server.security.signingKey.keyId, timeZone: LOCAL_ZONE, features: [...AGENT_FEATURES] });
    assert.deepEqual(await agentOf('dev-careless'), { trust: 'unsigned', timeZone: LOCAL_ZONE, features: [...AGENT_FEATURES] });
    const careless = await runCli(['device', 'list', '--query', 'reported.agent.trust = unsigned', '--server', ts.httpUrl, '--token', ts.token]);
    assert.match(careless.stdout, /^dev-careless +online/);
    assert.equal(careless.stdout.trim().split('\n').length, 1);
  });
});
