/**
 * A deployment's and a group's description are bounded as a job's is (`POST /api/v1/jobs`:
 * at most 1000 characters, jobs/job-spec.ts): QA had a 500,000-character description taken by
 * `POST /api/v1/deployments` and `POST /api/v1/groups`, and kept, and shown in every list.
 * Real server, real HTTP; a refusal creates nothing.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';

const REFUSAL = { status: 400, message: 'description must be a string of at most 1000 characters' };

describe('descriptions of deployments and groups', () => {
  let ts: TestServer;
  const call = async (method: string, route: string, body?: unknown): Promise<{ status: number; message?: string; json: Record<string, unknown> }> => {
    const res = await fetch(`${ts.httpUrl}${route}`, { method, headers: { authorization: `Bearer ${ts.token}`, 'content-type': 'application/json' }, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
    const json = (await res.json()) as Record<string, unknown> & { error?: { message: string } };
    return { status: res.status, ...(json.error ? { message: json.error.message } : {}), json };
  };
  const refusal = (r: { status: number; message?: string }) => ({ status: r.status, message: r.message });

  before(async () => {
    ts = await startTestServer();
    const res = await fetch(`${ts.httpUrl}/api/v1/artifacts?name=fw&version=2.0.0`, { method: 'POST', headers: { authorization: `Bearer ${ts.token}` }, body: new Uint8Array(randomBytes(100)) });
    assert.equal(res.status, 201);
    await registerDevice(ts, 'desc-1');
  });
  after(() => ts.close());

  it('POST /api/v1/jobs refuses over 1000 characters (the bound the others follow)', async () => {
    const r = await call('POST', '/api/v1/jobs', { artifact: 'fw@2.0.0', targets: { devices: ['desc-1'] }, description: 'x'.repeat(1001) });
    assert.equal(r.status, 400);
    assert.match(r.message ?? '', /description must be a string of at most 1000 characters/);
  });

  it('POST /api/v1/deployments refuses a description over 1000 characters, or not a string, and creates no job', async () => {
    assert.deepEqual(refusal(await call('POST', '/api/v1/deployments', { devices: ['desc-1'], artifact: 'fw@2.0.0', description: 'x'.repeat(500_000) })), REFUSAL);
    assert.deepEqual(refusal(await call('POST', '/api/v1/deployments', { devices: ['desc-1'], artifact: 'fw@2.0.0', description: 5 })), REFUSAL);
    assert.deepEqual((await call('GET', '/api/v1/jobs')).json.items, []);
    const ok = await call('POST', '/api/v1/deployments', { devices: ['desc-1'], artifact: 'fw@2.0.0', description: 'y'.repeat(1000) });
    assert.equal(ok.status, 201, ok.message);
    assert.equal((ok.json.job as { description: string }).description, 'y'.repeat(1000));
  });

  it('POST /api/v1/groups refuses a description over 1000 characters, or not a string, and creates no group', async () => {
    assert.deepEqual(refusal(await call('POST', '/api/v1/groups', { name: 'long', devices: ['desc-1'], description: 'x'.repeat(500_000) })), REFUSAL);
    assert.deepEqual(refusal(await call('POST', '/api/v1/groups', { name: 'long', query: 'tags = a', description: ['x'] })), REFUSAL);
    assert.equal((await call('GET', '/api/v1/groups/long')).status, 404);
    const ok = await call('POST', '/api/v1/groups', { name: 'long', devices: ['desc-1'], description: 'y'.repeat(1000) });
    assert.equal(ok.status, 201, ok.message);
    assert.equal(ok.json.description, 'y'.repeat(1000));
  });
});
