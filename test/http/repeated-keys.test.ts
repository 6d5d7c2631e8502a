/**
 * A JSON object that gives a key more than once is refused, never reduced to one of its
 * values (readJson in src/http/respond.ts, readJsonFile in src/cli/json-file.ts): QA saw
 * `POST /api/v1/artifacts/prune` with `{"keep":1,"dryRun":true,"dryRun":false}` answered
 * 200 and two builds deleted for real (JSON.parse keeps the last value). Real server, real
 * HTTP, the real CLI; each refusal changes nothing.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runCli } from '../helpers/cli.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

describe('repeated keys in JSON', () => {
  let ts: TestServer;
  const call = async (method: string, route: string, body: string): Promise<{ status: number; message?: string }> => {
    const res = await fetch(`${ts.httpUrl}${route}`, { method, headers: { authorization: `Bearer ${ts.token}`, 'content-type': 'application/json' }, body });
    const json = (await res.json()) as { error?: { message: string } };
    return { status: res.status, ...(json.error ? { message: json.error.message } : {}) };
  };

  before(async () => {
    ts = await startTestServer();
    for (const v of ['1.0.0', '2.0.0', '3.0.0']) {
      const res = await fetch(`${ts.httpUrl}/api/v1/artifacts?name=fw&version=${v}`, { method: 'POST', headers: { authorization: `Bearer ${ts.token}` }, body: new Uint8Array(randomBytes(100)) });
      assert.equal(res.status, 201);
    }
    await ts.server.registry.register({ deviceId: 'rk-1', attributes: { site: 'a' } });
  });
  after(() => ts.close());

  it('refuses a prune body that gives dryRun twice, and deletes nothing', async () => {
    const r = await call('POST', '/api/v1/artifacts/prune', '{"keep":1,"dryRun":true,"dryRun":false}');
    assert.equal(r.status, 400);
    assert.equal(r.message, 'request body gives "dryRun" 2 times: give it once');
    assert.equal((await ts.server.artifacts.all()).length, 3);
  });

  it('refuses a key repeated in a nested object, naming where, and a key written with an escape', async () => {
    const nested = await call('PATCH', '/api/v1/devices/rk-1', '{"attributes":{"site":"b","site":"c","site":"d"}}');
    assert.equal(nested.status, 400);
    assert.equal(nested.message, 'request body gives "site" 3 times in attributes: give it once');
    const escaped = await call('PATCH', '/api/v1/devices/rk-1', '{"attributes":{"site":"b","\\u0073ite":"c"}}');
    assert.equal(escaped.status, 400);
    assert.equal(escaped.message, 'request body gives "site" 2 times in attributes: give it once');
    assert.deepEqual((await ts.server.registry.get('rk-1')).attributes, { site: 'a' });
    const job = await call('POST', '/api/v1/jobs', '{"artifact":"fw@3.0.0","targets":{"devices":["rk-1"]},"plan":{"windows":[{"start":"02:00","minutes":60,"minutes":120}]}}');
    assert.equal(job.status, 400);
    assert.equal(job.message, 'request body gives "minutes" 2 times in plan.windows[0]: give it once');
    assert.equal((await ts.server.store.listJobs({ limit: 10 })).items.length, 0);
  });

  it('takes a key that only looks repeated inside a string, or the same key in two objects', async () => {
    const r = await call('PATCH', '/api/v1/devices/rk-1', '{"attributes":{"site":"\\",\\"site\\":\\"x","note":"{\\"site\\":1}"}}');
    assert.equal(r.status, 200, r.message);
    assert.deepEqual((await ts.server.registry.get('rk-1')).attributes, { site: '","site":"x', note: '{"site":1}' });
  });

  it('the CLI refuses a --file that gives a key twice, exit 2, and creates no job', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-rk-'));
    const file = path.join(dir, 'spec.json');
    await writeFile(file, '{"artifact":"fw@3.0.0","targets":{"devices":["rk-1"]},"targets":{"devices":["rk-2"]}}');
    const r = await runCli(['job', 'create', '--file', file, '--server', ts.httpUrl, '--token', ts.token]);
    assert.equal(r.code, 2);
    assert.equal(r.stderr, `updraft: error: ${file} gives "targets" 2 times: give it once\n`);
    assert.equal((await ts.server.store.listJobs({ limit: 10 })).items.length, 0);
  });
});
