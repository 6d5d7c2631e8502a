/**
 * A route that takes no body refuses one that is not empty, before it acts
 * (src/http/route-contract.ts, from the OpenAPI document): QA saw `{"x":1}` sent to
 * `POST /api/v1/operator-token/rotate` rotate the token, to `.../devices/dev-1/revoke` revoke,
 * and `{"force":true}` to `.../jobs/{id}/cancel` ignored, so `{"dryRun":true}` would have acted
 * for real. No body, white space and `{}` are taken as ever. Real server, real HTTP.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';

describe('routes that take no body', () => {
  let ts: TestServer;
  let token: string;
  const call = async (method: string, route: string, body?: string | Uint8Array<ArrayBuffer>, contentType = 'application/json'): Promise<{ status: number; message?: string; json: Record<string, unknown> }> => {
    const res = await fetch(`${ts.httpUrl}${route}`, { method, headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': contentType } : {}) }, ...(body !== undefined ? { body } : {}) });
    const json = (await res.json()) as Record<string, unknown> & { error?: { message: string } };
    return { status: res.status, json, ...(json.error ? { message: json.error.message } : {}) };
  };

  before(async () => {
    ts = await startTestServer();
    token = ts.token;
    await registerDevice(ts, 'dev-1');
    await registerDevice(ts, 'dev-2');
  });
  after(() => ts.close());

  it('POST /api/v1/operator-token/rotate: a body is refused and the token stays', async () => {
    const r = await call('POST', '/api/v1/operator-token/rotate', '{"x":1}');
    assert.deepEqual([r.status, r.message], [400, 'POST /api/v1/operator-token/rotate takes no request body: "x" refused, not dropped; send none, or {}']);
    assert.equal((await call('GET', '/api/v1/whoami')).status, 200, 'the old token still works');
    const ok = await call('POST', '/api/v1/operator-token/rotate', '{}');
    assert.equal(ok.status, 200);
    assert.equal((await call('GET', '/api/v1/whoami')).status, 401, 'rotated');
    token = ok.json.token as string;
  });

  it('POST /api/v1/devices/{id}/revoke and DELETE /api/v1/devices/{id}: a body is refused and the device is untouched', async () => {
    const r = await call('POST', '/api/v1/devices/dev-1/revoke', '{"x":1}');
    assert.deepEqual([r.status, r.message], [400, 'POST /api/v1/devices/dev-1/revoke takes no request body: "x" refused, not dropped; send none, or {}']);
    assert.equal((await ts.server.registry.get('dev-1')).revoked, false);
    // a body that is no JSON object is refused too, whatever its label
    const text = await call('POST', '/api/v1/devices/dev-1/revoke', 'dryRun', 'text/plain');
    assert.deepEqual([text.status, text.message], [400, 'POST /api/v1/devices/dev-1/revoke takes no request body; send none, or {}']);
    assert.equal((await ts.server.registry.get('dev-1')).revoked, false);
    const del = await call('DELETE', '/api/v1/devices/dev-2', '{"force":true}');
    assert.equal(del.status, 400);
    assert.ok(await ts.server.registry.find('dev-2'), 'still registered');
    // white space and no body are no body
    assert.equal((await call('POST', '/api/v1/devices/dev-1/revoke', ' \n')).status, 200);
    assert.equal((await ts.server.registry.get('dev-1')).revoked, true);
    assert.equal((await call('POST', '/api/v1/devices/dev-1/reinstate')).status, 200);
  });

  it('POST /api/v1/jobs/{id}/cancel: {"force":true} is refused and the job goes on', async () => {
    assert.equal((await call('POST', '/api/v1/artifacts?name=fw&version=2.0.0', new Uint8Array(Buffer.from('two')), 'application/octet-stream')).status, 201);
    const job = await call('POST', '/api/v1/jobs', JSON.stringify({ artifact: 'fw@2.0.0', targets: { devices: ['dev-1'] } }));
    assert.equal(job.status, 201);
    const jobId = (job.json.job as { jobId: string }).jobId;
    const r = await call('POST', `/api/v1/jobs/${jobId}/cancel`, '{"force":true}');
    assert.deepEqual([r.status, r.message], [400, `POST /api/v1/jobs/${jobId}/cancel takes no request body: "force" refused, not dropped; send none, or {}`]);
    const status = async () => ((await call('GET', `/api/v1/jobs/${jobId}`)).json.job as { status: string }).status;
    assert.notEqual(await status(), 'CANCELED');
    assert.equal((await call('POST', `/api/v1/jobs/${jobId}/cancel`)).status, 200);
    assert.equal(await status(), 'CANCELED');
  });
});
