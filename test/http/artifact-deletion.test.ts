/** Deleting artifacts (disk and bucket housekeeping) over real HTTP and MQTT, and through the CLI. */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runCli } from '../helpers/cli.ts';
import { TestClient, connectDevice, connectIdleDevice } from '../helpers/mqtt-client.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

const build = Buffer.from(Array.from({ length: 50_000 }, (_, i) => (i * 7) % 253));
const other = Buffer.from(Array.from({ length: 40_000 }, (_, i) => (i * 11) % 251));
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

describe('deleting artifacts', () => {
  let ts: TestServer;
  let dev: TestClient;
  const api = (method: string, route: string, body?: Buffer) =>
    fetch(ts.httpUrl + route, { method, headers: { authorization: `Bearer ${ts.token}` }, ...(body ? { body: new Uint8Array(body) } : {}) });
  /** Where the local blob store keeps a build's bytes. */
  const blobFile = (b: Buffer) => path.join(ts.dataDir, 'artifacts', 'sha256', sha(b).slice(0, 2), sha(b));
  const exists = (file: string) => stat(file).then(() => true, () => false);

  before(async () => {
    ts = await startTestServer();
    for (const [ref, bytes] of [['fw/1.0.0', build], ['fw-copy/1.0.0', build], ['fw/2.0.0', other]] as const) {
      const [name, version] = ref.split('/');
      assert.equal((await api('POST', `/api/v1/artifacts?name=${name}&version=${version}`, bytes)).status, 201);
    }
    dev = await connectIdleDevice(ts, 'dev-1');
  });
  after(async () => {
    await dev.end();
    await ts.close();
  });

  it('refuses to delete a build a job still installs, naming the job; once the job is canceled it goes, and its download with it', async () => {
    const deployed = await api('POST', '/api/v1/deployments', Buffer.from(JSON.stringify({ devices: ['dev-1'], artifact: 'fw@2.0.0' })));
    assert.equal(deployed.status, 201, await deployed.clone().text());
    const jobId = (await deployed.json()).job.jobId as string;
    const delta = await dev.next((m) => m.topic === 'state/dev-1/update/delta' && m.body.state?.software?.version === '2.0.0');
    const url = delta.body.state.software.url as string;
    assert.equal((await fetch(url)).status, 200, 'downloadable while the job runs');

    const refused = await api('DELETE', '/api/v1/artifacts/fw/2.0.0');
    assert.equal(refused.status, 409);
    assert.equal((await refused.json()).error.message, `artifact fw@2.0.0 is installed by jobs that are not finished (${jobId}); cancel them or let them finish, then delete it`);
    assert.equal((await api('GET', '/api/v1/artifacts/fw/2.0.0')).status, 200, 'still there');
    assert.ok(await exists(blobFile(other)));

    assert.equal((await api('POST', `/api/v1/jobs/${jobId}/cancel`)).status, 200);
    const deleted = await api('DELETE', '/api/v1/artifacts/fw/2.0.0');
    assert.equal(deleted.status, 200);
    const body = await deleted.json();
    assert.equal(body.artifact.sha256, sha(other));
    assert.equal(body.bytesDeleted, true);
    assert.equal(await exists(blobFile(other)), false, 'the bytes left the disk');
    // the URL the device was given is still signed, but there is nothing behind it any more
    // (refused as a URL that does not match: its MAC covers the deleted build's hash, and a
    // forged URL must not learn whether a build is stored)
    const gone = await fetch(url);
    assert.equal(gone.status, 403);
    assert.match((await gone.json()).error.message, /^download URL signature does not match/);
    const job = await (await api('GET', `/api/v1/jobs/${jobId}`)).json();
    assert.equal(job.job.artifactVersion, '2.0.0', "the canceled job's record stays");
  });

  it('keeps the bytes while another artifact holds the same ones, and deletes them with the last', async () => {
    const first = await api('DELETE', '/api/v1/artifacts/fw/1.0.0');
    assert.equal(first.status, 200);
    assert.equal((await first.json()).bytesDeleted, false);
    assert.equal((await api('GET', '/api/v1/artifacts/fw/1.0.0')).status, 404);
    assert.ok(await exists(blobFile(build)), 'fw-copy@1.0.0 still needs them');
    const listed = (await (await api('GET', '/api/v1/artifacts')).json()).items.map((a: { name: string; version: string }) => `${a.name}@${a.version}`);
    assert.deepEqual(listed, ['fw-copy@1.0.0']);
    // a job is not created for a deleted build
    const job = await api('POST', '/api/v1/deployments', Buffer.from(JSON.stringify({ devices: ['dev-1'], artifact: 'fw@1.0.0' })));
    assert.equal(job.status, 404);

    const cli = await runCli(['artifact', 'delete', 'fw-copy@1.0.0', '--server', ts.httpUrl, '--token', ts.token]);
    assert.equal(cli.code, 0, cli.stderr);
    assert.equal(cli.stdout, `deleted fw-copy@1.0.0\n  its ${build.length} bytes removed from storage\n`);
    assert.equal(await exists(blobFile(build)), false);
  });

  it('never deletes a build while a job for it is being created, nor creates one while it is being deleted: one of the two is refused, and no job is left without its build', async () => {
    for (const [ref, bytes] of [['race/1.0.0', build], ['race/2.0.0', build]] as const) {
      const [name, version] = ref.split('/');
      assert.equal((await api('POST', `/api/v1/artifacts?name=${name}&version=${version}`, bytes)).status, 201);
    }
    const { jobs } = ts.server.rollouts;
    const { artifacts } = ts.server;
    // a creation asked first: the deletion asked meanwhile (the creation's job row not written yet) is refused
    const creating = jobs.create({ artifact: 'race@1.0.0', targets: { devices: ['dev-1'] } });
    await assert.rejects(artifacts.delete('race', '1.0.0'), /^UpdraftError: a job for artifact race@1\.0\.0 is being created right now; let it be created, cancel it, then delete the artifact$/);
    const created = await creating;
    assert.equal(created.job.artifactVersion, '1.0.0');
    assert.ok(await ts.server.store.getArtifact('race', '1.0.0'), 'the build stays');
    // a deletion asked first: the creation asked meanwhile is refused, and the build goes
    const deleting = artifacts.delete('race', '2.0.0');
    await assert.rejects(jobs.create({ artifact: 'race@2.0.0', targets: { devices: ['dev-1'] } }), /being deleted right now|race@2\.0\.0 does not exist/);
    assert.equal((await deleting).artifact.version, '2.0.0');
    const { items } = await ts.server.store.listJobs({ limit: 1000, omitSpec: true });
    assert.deepEqual(items.filter((j) => j.artifactName === 'race').map((j) => j.artifactVersion), ['1.0.0'], 'no job for the deleted build');
    await api('POST', `/api/v1/jobs/${created.job.jobId}/cancel`);
  });

  it('answers 404 for an artifact that is not there, 400 for a malformed one, and the CLI says so in one line', async () => {
    const missing = await api('DELETE', '/api/v1/artifacts/fw/9.9.9');
    assert.equal(missing.status, 404);
    assert.equal((await missing.json()).error.message, 'artifact fw@9.9.9 does not exist');
    assert.equal((await api('DELETE', '/api/v1/artifacts/fw/latest')).status, 400);
    for (const [ref, message] of [['fw@9.9.9', /^updraft: error: artifact fw@9\.9\.9 does not exist$/], ['fw', /^updraft: error: artifact reference "fw" must look like name@version/]] as const) {
      const r = await runCli(['artifact', 'delete', ref, '--server', ts.httpUrl, '--token', ts.token]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr.trim(), message);
      assert.equal(r.stderr.trim().split('\n').length, 1);
    }
  });

  it('answers a download whose bytes are gone from storage with an error before any byte (an instance that still knew the record)', async () => {
    const lone = await startTestServer({ flags: { 'download-cache-bytes': 0 } });
    const d = await connectDevice(lone, 'dev-2');
    try {
      await d.subscribe('state/dev-2/#');
      const add = await fetch(`${lone.httpUrl}/api/v1/artifacts?name=fw&version=3.0.0`, { method: 'POST', headers: { authorization: `Bearer ${lone.token}` }, body: new Uint8Array(other) });
      assert.equal(add.status, 201);
      const deploy = await fetch(`${lone.httpUrl}/api/v1/deployments`, { method: 'POST', headers: { authorization: `Bearer ${lone.token}`, 'content-type': 'application/json' }, body: JSON.stringify({ devices: ['dev-2'], artifact: 'fw@3.0.0' }) });
      assert.equal(deploy.status, 201);
      const url = (await d.next((m) => m.topic === 'state/dev-2/update/delta' && m.body.state?.software?.url)).body.state.software.url as string;
      // what another instance's deletion leaves this one: the record it read, no bytes
      await rm(path.join(lone.dataDir, 'artifacts', 'sha256', sha(other).slice(0, 2), sha(other)));
      const res = await fetch(url);
      // 503: the device tries again (test/http/missing-artifact-bytes.test.ts)
      assert.equal(res.status, 503, 'not a 200 cut short');
      assert.equal((await res.json()).error.message, "fw@3.0.0 cannot be served just now: its bytes are not in this server's artifact storage; try again later");
    } finally {
      await d.end();
      await lone.close();
    }
  });
});
