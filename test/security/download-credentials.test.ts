/**
 * Temporary credentials, revoked devices and URL key rotation over the real broker and real
 * HTTP (issue 5): a device asks over MQTT for a token whose only right is reading the
 * artifact of its current job; misuse of it, and any download of a revoked device, gets a
 * 403 with the reason; URLs issued before a key rotation keep working until they expire.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { UpdateAgent } from '../../src/agent/agent.ts';
import { loadOrCreateKeyRing } from '../../src/artifacts/key-ring.ts';
import { UrlSigner } from '../../src/artifacts/url-signer.ts';
import { DownloadTokens } from '../../src/credentials/download-token.ts';
import { runCli } from '../helpers/cli.ts';
import { TestClient, connectDevice } from '../helpers/mqtt-client.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact, deploy, outcome, startAgent } from './support.ts';

describe('temporary download credentials, revocation and key rotation', () => {
  let ts: TestServer;
  let root: string;
  let dev1: TestClient;
  let dev2: TestClient;
  const agents: UpdateAgent[] = [];
  const v2 = randomBytes(60_000);
  const v3 = randomBytes(20_000);

  const download = (route: string, headers: Record<string, string> = {}) => fetch(ts.httpUrl + route, { headers });
  const reason = async (res: Response) => ((await res.json()) as { error: { message: string } }).error.message;
  const credentials = (c: TestClient, id: string, body: Record<string, unknown> = {}) => c.request(`state/${id}/credentials/request`, body);

  before(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'updraft-creds-'));
    ts = await startTestServer();
    await addArtifact(ts, '2.0.0', v2);
    await addArtifact(ts, '3.0.0', v3);
    dev1 = await connectDevice(ts, 'dev-1');
    dev2 = await connectDevice(ts, 'dev-2');
    await dev1.subscribe('state/dev-1/#');
    await dev2.subscribe('state/dev-2/#');
    for (const [c, id] of [[dev1, 'dev-1'], [dev2, 'dev-2']] as const) await c.request(`state/${id}/update`, { state: { reported: { software: { name: 'fw', version: '1.0.0', status: 'IDLE' } } } });
  });
  after(async () => {
    await Promise.all(agents.map((a) => a.stop()));
    await dev1.end();
    await dev2.end();
    await ts.close();
    await rm(root, { recursive: true, force: true });
  });

  it('refuses a credential while the device has no job', async () => {
    const r = await credentials(dev1, 'dev-1');
    assert.equal(r.topic, 'state/dev-1/credentials/request/rejected');
    assert.equal(r.body.code, 404);
    assert.match(r.body.message, /no update job/);
  });

  it('grants a token for the current job; the artifact downloads with it', async () => {
    const jobId = await deploy(ts, ['dev-1'], 'fw@2.0.0');
    const r = await credentials(dev1, 'dev-1', { jobId });
    assert.equal(r.topic, 'state/dev-1/credentials/request/accepted', JSON.stringify(r.body));
    assert.match(r.body.token, /^updr_dl_/);
    assert.equal(r.body.name, 'fw');
    assert.equal(r.body.version, '2.0.0');
    assert.ok(r.body.expiresAt > Date.now() / 1000);
    const res = await download('/v1/download/fw/2.0.0?device=dev-1', { authorization: `Bearer ${r.body.token}` });
    assert.equal(res.status, 200);
    assert.deepEqual(Buffer.from(await res.arrayBuffer()), v2);
    // the auth scheme is case-insensitive (RFC 9110)
    const lower = await download('/v1/download/fw/2.0.0?device=dev-1', { authorization: `bearer ${r.body.token}` });
    assert.equal(lower.status, 200);
    await lower.arrayBuffer();
    const ranged = await download('/v1/download/fw/2.0.0?device=dev-1', { authorization: `Bearer ${r.body.token}`, range: 'bytes=100-' });
    assert.equal(ranged.status, 206, 'resumable with a token too');
    await ranged.arrayBuffer();
  });

  it('refuses a token request naming another job, or a job id that is not a string', async () => {
    const r = await credentials(dev1, 'dev-1', { jobId: 'not-my-job' });
    assert.equal(r.body.code, 409);
    const typed = await credentials(dev1, 'dev-1', { jobId: 5 });
    assert.deepEqual([typed.body.code, typed.body.message], [400, 'jobId must be a string: the job id of the command']);
  });

  it('refuses token misuse with 403 and the reason: another device, another artifact, expired, tampered', async () => {
    const token = (await credentials(dev1, 'dev-1')).body.token as string;
    const other = await download('/v1/download/fw/2.0.0?device=dev-2', { authorization: `Bearer ${token}` });
    assert.equal(other.status, 403);
    assert.match(await reason(other), /issued to another device/);
    const noDevice = await download('/v1/download/fw/2.0.0', { authorization: `Bearer ${token}` });
    assert.equal(noDevice.status, 403);
    assert.match(await reason(noDevice), /must name the device/);
    const otherArtifact = await download('/v1/download/fw/3.0.0?device=dev-1', { authorization: `Bearer ${token}` });
    assert.equal(otherArtifact.status, 403);
    assert.match(await reason(otherArtifact), /issued for another artifact/);
    // an expired token, made with the server's own key ring
    const a = (await ts.server.store.getArtifact('fw', '2.0.0'))!;
    const expired = new DownloadTokens({ keys: await loadOrCreateKeyRing(ts.dataDir) }).issue({ deviceId: 'dev-1', name: 'fw', version: '2.0.0', sha256: a.sha256, expiresAt: Math.floor(Date.now() / 1000) - 1 });
    const late = await download('/v1/download/fw/2.0.0?device=dev-1', { authorization: `Bearer ${expired}` });
    assert.equal(late.status, 403);
    assert.match(await reason(late), /token has expired/);
    // the grant rewritten to another device, signature kept
    const [head, sig] = token.slice('updr_dl_'.length).split('.') as [string, string];
    const grant = JSON.parse(Buffer.from(head, 'base64url').toString());
    const forged = `updr_dl_${Buffer.from(JSON.stringify({ ...grant, d: 'dev-2' })).toString('base64url')}.${sig}`;
    const tampered = await download('/v1/download/fw/2.0.0?device=dev-2', { authorization: `Bearer ${forged}` });
    assert.equal(tampered.status, 403);
    assert.match(await reason(tampered), /signature does not match/);
  });

  it("a device cannot ask for another device's credential (its publish is dropped)", async () => {
    const before = dev1.log.length;
    await dev2.publish('state/dev-1/credentials/request', { clientToken: 'steal' });
    // a later request of dev-1's own is answered; the stolen one never was
    await credentials(dev1, 'dev-1');
    assert.ok(!dev1.log.slice(before).some((m) => m.body?.clientToken === 'steal'));
    assert.equal(await dev2.subscribe('state/dev-1/credentials/request/accepted').then((q) => q[0]), 128, 'nor listen for its answers');
  });

  it('the agent downloads with a token (downloadAuth token) and installs', async () => {
    const { agent, installDir, finished } = await startAgent(ts, root, 'dev-token', { downloadAuth: 'token' });
    agents.push(agent);
    // only a device that asks for credentials listens for their answers (least privilege, and
    // one subscription fewer per connect for the others)
    const url = await startAgent(ts, root, 'dev-url');
    agents.push(url.agent);
    assert.equal(ts.server.broker.hasSubscribers('state/dev-token/credentials/request/accepted'), true);
    assert.equal(ts.server.broker.hasSubscribers('state/dev-url/credentials/request/accepted'), false);
    assert.equal(ts.server.broker.hasSubscribers('state/dev-url/update/accepted'), true);
    const jobId = await deploy(ts, ['dev-token'], 'fw@3.0.0');
    const e = await outcome(finished, jobId);
    assert.equal(e.status, 'SUCCESS', e.error);
    assert.deepEqual(await readFile(path.join(installDir, 'current', 'artifact')), v3);
  });

  it('a URL issued before a key rotation stays valid; a retired key is refused', async () => {
    await deploy(ts, ['dev-2'], 'fw@3.0.0');
    const { body } = await dev2.request('state/dev-2/get', {});
    const oldUrl = new URL(body.state.delta.software.url);
    const oldKid = oldUrl.searchParams.get('kid')!;
    const cli = ['--server', ts.httpUrl, '--token', ts.token];
    const rotated = await runCli(['keys', 'rotate-url', ...cli, '--json']);
    assert.equal(rotated.code, 0, rotated.stderr);
    const keys = JSON.parse(rotated.stdout) as { kid: string; active: boolean }[];
    assert.notEqual(keys[0]!.kid, oldKid);
    assert.deepEqual(keys.map((k) => k.kid).slice(1), [oldKid]);

    const stillValid = await fetch(oldUrl);
    assert.equal(stillValid.status, 200, 'issued before the rotation, still valid');
    await stillValid.arrayBuffer();
    const fresh = new URL((await dev2.request('state/dev-2/get', {})).body.state.delta.software.url);
    assert.equal(fresh.searchParams.get('kid'), keys[0]!.kid, 'new URLs are signed with the new key');

    const unknownRetire = await runCli(['keys', 'rotate-url', ...cli, '--retire', 'nope']);
    assert.equal(unknownRetire.code, 2);
    assert.match(unknownRetire.stderr, /no URL signing key nope/);
    const retired = await runCli(['keys', 'rotate-url', ...cli, '--retire', oldKid]);
    assert.equal(retired.code, 0, retired.stderr);
    const refused = await fetch(oldUrl);
    assert.equal(refused.status, 403);
    assert.match(await reason(refused), /unknown or retired key/);
    const list = await runCli(['keys', 'list-url', ...cli]);
    assert.ok(!list.stdout.includes(oldKid));
  });

  it('a staged URL key verifies at once and signs only from its time: another instance that signs with it already is not refused', async () => {
    const cli = ['--server', ts.httpUrl, '--token', ts.token];
    const signingNow = new URL((await dev2.request('state/dev-2/get', {})).body.state.delta.software.url).searchParams.get('kid')!;
    const staged = await runCli(['keys', 'rotate-url', ...cli, '--activate-in', '1h']);
    assert.equal(staged.code, 0, staged.stderr);
    const newKid = /^rotated: ([0-9a-f]+) signs from (\S+) \(verifies already\)$/m.exec(staged.stdout);
    assert.ok(newKid, staged.stdout);
    assert.ok(Math.abs(Date.parse(newKid[2]!) - (Date.now() + 3_600_000)) < 60_000, newKid[2]);
    assert.match(staged.stdout, new RegExp(`^${newKid[1]}  \\S+  staged: verifies now, signs from `, 'm'));
    // this instance still signs with the key it had
    const url = new URL((await dev2.request('state/dev-2/get', {})).body.state.delta.software.url);
    assert.equal(url.searchParams.get('kid'), signingNow);
    // an instance whose clock is past the activation (or one restarted later) signs with the new key: accepted here
    const later = new UrlSigner({ keys: await loadOrCreateKeyRing(ts.dataDir), baseUrl: ts.httpUrl, now: () => Date.now() + 2 * 3_600_000 });
    const grant = { deviceId: 'dev-2', name: 'fw', version: '3.0.0', sha256: (await ts.server.store.getArtifact('fw', '3.0.0'))!.sha256, expiresAt: Math.floor(Date.now() / 1000) + 600 };
    const fromThere = new URL(later.sign(grant));
    assert.equal(fromThere.searchParams.get('kid'), newKid[1]);
    const res = await fetch(fromThere);
    assert.equal(res.status, 200, await res.clone().text());
    await res.arrayBuffer();
    // the key signing now cannot be retired while the new one is only staged; the staged one can
    const early = await runCli(['keys', 'rotate-url', ...cli, '--retire', signingNow, '--activate-in', '1h']);
    assert.equal(early.code, 2);
    assert.match(early.stderr, new RegExp(`^updraft: error: key ${signingNow} signs now; rotate first`));
    const retired = await runCli(['keys', 'rotate-url', ...cli, '--retire', newKid[1]!]);
    assert.equal(retired.code, 0, retired.stderr);
  });

  it("refuses every download of a revoked device, by URL or by token: 403 'device revoked'", async () => {
    const token = (await credentials(dev2, 'dev-2')).body.token as string;
    const url = (await dev2.request('state/dev-2/get', {})).body.state.delta.software.url as string;
    assert.equal((await fetch(url).then(async (r) => (await r.arrayBuffer(), r.status))), 200);
    await ts.server.registry.revoke('dev-2');
    const byUrl = await fetch(url);
    assert.equal(byUrl.status, 403);
    assert.equal(await reason(byUrl), 'device revoked');
    const byToken = await download('/v1/download/fw/3.0.0?device=dev-2', { authorization: `Bearer ${token}` });
    assert.equal(byToken.status, 403);
    assert.equal(await reason(byToken), 'device revoked');
  });
});
