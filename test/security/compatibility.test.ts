/**
 * Builds made for given hardware and given starting versions (protocol/compatibility.ts): the
 * constraints set when an artifact is added travel signed in every command, and agents of
 * other device types, or running other versions, refuse the build before downloading it.
 * Real server, broker, HTTP and agents; the CLI adds the build.
 */
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { UpdateAgent } from '../../src/agent/agent.ts';
import { loadOrCreateKeyRing } from '../../src/artifacts/key-ring.ts';
import { UrlSigner } from '../../src/artifacts/url-signer.ts';
import { ApiClient } from '../../src/cli/api-client.ts';
import { incompatibility, parseCompatibility, satisfies } from '../../src/protocol/compatibility.ts';
import { manifestBytes, type SoftwareManifest } from '../../src/protocol/manifest.ts';
import { eventually, runCli } from '../helpers/cli.ts';
import { TestClient } from '../helpers/mqtt-client.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { deploy, outcome, startAgent } from './support.ts';

describe('compatibility rules', () => {
  it('parses ranges and device types, and says why a build does not fit', () => {
    assert.deepEqual(parseCompatibility({ deviceTypes: ['rpi5', 'rpi4', 'rpi4'], requires: ' >=2.5.0   <3.0.0 ' }), { deviceTypes: ['rpi4', 'rpi5'], requires: '>=2.5.0 <3.0.0' });
    assert.throws(() => parseCompatibility({ requires: '>=banana' }), /">=banana" in requires is not an operator/);
    assert.throws(() => parseCompatibility({ deviceTypes: ['ok', 'not ok'] }), /device type "not ok" must be 1 to 128 characters/);
    assert.throws(() => parseCompatibility({ deviceTypes: ['..'] }), /device type "\.\." is refused: .*URL path/);
    // a number whose digits would make a valid id is still no device type (3d371d3 threw with no message)
    assert.throws(() => parseCompatibility({ deviceTypes: [5] }), /^UpdraftError: device type 5 must be a string of 1 to 128 characters/);
    assert.throws(() => parseCompatibility({ deviceTypes: [] }), /1 to 64 device types/);
    assert.ok(satisfies('2.5.0', '>=2.5.0 <3.0.0'));
    assert.ok(!satisfies('3.0.0', '>=2.5.0 <3.0.0'));
    assert.ok(satisfies('1.2.3', '1.2.3') && !satisfies('1.2.4', '=1.2.3') && satisfies('1.10.0', '>1.9.0'));
    const c = { deviceTypes: ['rpi4'], requires: '>=2.5.0' };
    assert.equal(incompatibility(c, { deviceType: 'rpi4', running: { name: 'fw', version: '2.6.0' }, name: 'fw' }), undefined);
    assert.match(incompatibility(c, { deviceType: 'rpi3', running: { name: 'fw', version: '2.6.0' }, name: 'fw' })!, /for device types rpi4, not rpi3/);
    assert.match(incompatibility(c, { running: { name: 'fw', version: '2.6.0' }, name: 'fw' })!, /given no type/);
    assert.match(incompatibility(c, { deviceType: 'rpi4', running: { name: 'other', version: '2.6.0' }, name: 'fw' })!, /runs other 2\.6\.0/);
    assert.equal(incompatibility({}, { name: 'fw' }), undefined, 'no constraints: anything');
  });

  it('a manifest without constraints signs exactly the bytes it signed before they existed (older agents keep verifying it)', () => {
    const m: SoftwareManifest = { name: 'fw', version: '2.0.0', sha256: 'a'.repeat(64), size: 10, jobId: 'j-1', expiresAt: 1_900_000_000, keyId: 'k'.repeat(16) };
    assert.equal(manifestBytes(m).toString(), ['updraft-manifest-v1', m.keyId, 'fw', '2.0.0', m.sha256, '10', 'j-1', '1900000000', 'no-downgrade'].join('\n'));
    assert.match(manifestBytes({ ...m, deviceTypes: ['rpi4'], requires: '>=1.0.0' }).toString(), /\nno-downgrade\ndevice-types:rpi4\nrequires:>=1\.0\.0$/);
  });
});

describe('builds for given hardware and versions', () => {
  let ts: TestServer;
  let root: string;
  let cli: string[];
  let api: ApiClient;
  const agents: UpdateAgent[] = [];
  before(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'updraft-compat-'));
    ts = await startTestServer();
    cli = ['--server', ts.httpUrl, '--token', ts.token];
    api = new ApiClient({ server: ts.httpUrl, token: ts.token });
    const file = path.join(root, 'fw-3.0.0.bin');
    await writeFile(file, randomBytes(30_000));
    const added = await runCli(['artifact', 'add', file, '--name', 'fw', '--version', '3.0.0', '--device-type', 'rpi4', '--device-type', 'rpi5', '--requires', '>=1.5.0', ...cli]);
    assert.equal(added.code, 0, added.stderr);
    assert.match(added.stdout, /\n {2}for {4}rpi4, rpi5\n {2}over {3}>=1\.5\.0$/m);
  });
  after(async () => {
    await Promise.all(agents.map((a) => a.stop()));
    await ts.close();
    await rm(root, { recursive: true, force: true });
  });

  const start = async (id: string, opts: { deviceType?: string; initialVersion: string }) => {
    const a = await startAgent(ts, root, id, opts);
    agents.push(a.agent);
    return a;
  };

  it('installs on a device of a named type running an allowed version; skips the devices that reported another type or version; an untyped device refuses it itself', async () => {
    const fits = await start('hw-fits', { deviceType: 'rpi4', initialVersion: '2.0.0' });
    await start('hw-other', { deviceType: 'rpi3', initialVersion: '2.0.0' });
    const untyped = await start('hw-untyped', { initialVersion: '2.0.0' });
    await start('hw-too-old', { deviceType: 'rpi5', initialVersion: '1.0.0' });
    // each agent says what it is (rollouts can target by it, and the server skips what does not fit)
    await eventually(async () => ((await ts.server.store.getShadow('hw-other', ''))?.state.reported?.agent as { deviceType?: string } | undefined)?.deviceType, 15_000, 'hw-other reported its type');
    const served = async () => (await api.call<{ downloads: { served: number } }>('GET', '/api/v1/metrics')).downloads.served;
    const downloadsBefore = await served();
    const jobId = await deploy(ts, ['hw-fits', 'hw-other', 'hw-untyped', 'hw-too-old'], 'fw@3.0.0');
    assert.equal((await outcome(fits.finished, jobId)).status, 'SUCCESS');
    // the agent of a device that never said its type is the one to refuse
    const ev = await outcome(untyped.finished, jobId);
    assert.equal(ev.status, 'FAILURE');
    assert.match(ev.error ?? '', /^refused: not compatible: the build is for device types rpi4, rpi5, and this device was given no type \(--device-type\); nothing installed$/);
    const execution = (id: string) => eventually(async () => {
      const x = await ts.server.store.getExecution(jobId, id);
      return x && x.status !== 'QUEUED' && x.status !== 'IN_PROGRESS' ? x : undefined;
    }, 15_000, `${id}'s execution finished`);
    const skipped: [string, RegExp][] = [
      ['hw-other', /^not compatible: the build is for device types rpi4, rpi5, not rpi3$/],
      ['hw-too-old', /^not compatible: the build installs only over fw >=1\.5\.0, and the device runs 1\.0\.0: install a version in between first$/],
    ];
    for (const [id, reason] of skipped) {
      const x = await execution(id);
      assert.equal(x.status, 'REJECTED', id);
      assert.match(String(x.details.error), reason);
      assert.equal(x.dispatchedAt, undefined, `${id}: no command was sent`);
    }
    assert.equal((await execution('hw-untyped')).status, 'FAILED');
    assert.equal((await served()) - downloadsBefore, 1, 'only the device that fits downloaded the build');
    const listed = await runCli(['device', 'list', '--query', 'reported.agent.deviceType = rpi3', ...cli]);
    assert.deepEqual(listed.stdout.trim().split('\n').map((l) => l.split(/\s+/)[0]), ['hw-other']);
  });

  it('a dry run counts the devices the engine would skip, by what they reported, with their reasons', async () => {
    // after the job above: hw-fits runs 3.0.0; hw-other is an rpi3; hw-too-old runs 1.0.0; hw-untyped said no type (it decides itself)
    const dry = await runCli(['job', 'create', '--artifact', 'fw@3.0.0', '--device', 'hw-fits', '--device', 'hw-other', '--device', 'hw-too-old', '--device', 'hw-untyped', '--dry-run', ...cli]);
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /\n {2}skipped \(REJECTED, nothing sent\), by what they reported: 2 not compatible\n {4}hw-other: not compatible: the build is for device types rpi4, rpi5, not rpi3\n {4}hw-too-old: not compatible: the build installs only over fw >=1\.5\.0, and the device runs 1\.0\.0: install a version in between first\n$/);
    const json = JSON.parse((await runCli(['job', 'create', '--artifact', 'fw@3.0.0', '--device', 'hw-fits', '--device', 'hw-other', '--dry-run', '--json', ...cli])).stdout) as { skipped: { scanned: number; downgrade: number; incompatible: number } };
    assert.deepEqual({ ...json.skipped, first: undefined }, { scanned: 2, downgrade: 0, incompatible: 1, first: undefined });
  });

  it("the agent checks the build itself: a validly signed command replayed to other hardware, or over another version, is refused before downloading", async () => {
    const a = (await ts.server.store.getArtifact('fw', '3.0.0'))!;
    const urls = new UrlSigner({ keys: await loadOrCreateKeyRing(ts.dataDir), baseUrl: ts.httpUrl });
    const operator = await TestClient.connect(ts.mqttUrl, 'ops-compat-replay', { username: 'operator', password: ts.token });
    try {
      for (const [id, deviceType, version, reason] of [
        ['hw-replay-type', 'rpi3', '2.0.0', /^refused: not compatible: the build is for device types rpi4, rpi5, not rpi3; nothing installed$/],
        ['hw-replay-old', 'rpi4', '1.0.0', /^refused: not compatible: the build installs only over fw >=1\.5\.0, and this device runs 1\.0\.0: install a version in between first; nothing installed$/],
      ] as const) {
        const victim = await start(id, { deviceType, initialVersion: version });
        const sw = { name: 'fw', version: '3.0.0', sha256: a.sha256, size: a.size, jobId: randomUUID() };
        const exp = Math.floor(Date.now() / 1000) + 600;
        const command = { ...sw, url: urls.sign({ deviceId: id, ...sw, expiresAt: exp }), urlExpiresAt: exp, ...ts.server.security.manifests.sign(sw, exp, false, a.compatibility) };
        await operator.publish(`state/${id}/update/delta`, { state: { software: command }, metadata: {}, version: 1_000_000, timestamp: Math.floor(Date.now() / 1000) });
        const ev = await outcome(victim.finished, sw.jobId);
        assert.equal(ev.status, 'FAILURE');
        assert.match(ev.error ?? '', reason);
      }
    } finally {
      await operator.end();
    }
  });

  it('a command whose constraints were stripped on the way is refused: they are signed', async () => {
    const victim = await start('hw-victim', { deviceType: 'rpi3', initialVersion: '2.0.0' });
    const a = (await ts.server.store.getArtifact('fw', '3.0.0'))!;
    const urls = new UrlSigner({ keys: await loadOrCreateKeyRing(ts.dataDir), baseUrl: ts.httpUrl });
    const operator = await TestClient.connect(ts.mqttUrl, 'ops-compat', { username: 'operator', password: ts.token });
    try {
      // a command as the server signs it for this build, then altered by whoever sits on the way
      const sw = { name: 'fw', version: '3.0.0', sha256: a.sha256, size: a.size, jobId: randomUUID() };
      const exp = Math.floor(Date.now() / 1000) + 600;
      const signed = ts.server.security.manifests.sign(sw, exp, false, a.compatibility);
      assert.deepEqual(signed.manifest.deviceTypes, ['rpi4', 'rpi5']);
      const { deviceTypes: _t, requires: _r, ...stripped } = signed.manifest;
      const command = { ...sw, url: urls.sign({ deviceId: 'hw-victim', ...sw, expiresAt: exp }), urlExpiresAt: exp, manifest: stripped, signature: signed.signature };
      await operator.publish('state/hw-victim/update/delta', { state: { software: command }, metadata: {}, version: 1_000_000, timestamp: Math.floor(Date.now() / 1000) });
      const forged = await outcome(victim.finished, sw.jobId);
      assert.equal(forged.status, 'FAILURE');
      assert.match(forged.error ?? '', /^refused: bad manifest signature; nothing installed$/);
    } finally {
      await operator.end();
    }
  });

  it('refuses malformed constraints with 400 and stores nothing', async () => {
    for (const [q, msg] of [['requires=%3E%3Dbanana', /">=banana" in requires/], ['deviceTypes=ok,not%20ok', /device type "not ok"/]] as const) {
      const res = await fetch(`${ts.httpUrl}/api/v1/artifacts?name=fw&version=9.9.9&${q}`, { method: 'POST', headers: { authorization: `Bearer ${ts.token}` }, body: new Uint8Array(10) });
      assert.equal(res.status, 400);
      assert.match(((await res.json()) as { error: { message: string } }).error.message, msg);
    }
    assert.equal(await ts.server.store.getArtifact('fw', '9.9.9'), undefined);
  });
});
