/**
 * A query parameter a route does not take is refused with 400 naming it, never dropped
 * (src/http/route-contract.ts, from the OpenAPI document): QA saw
 * `POST /api/v1/artifacts?name=a&version=1.0.0&devicetype=rpi4` store a build with no
 * device-type restriction, which cannot be fixed (versions are immutable). Real server, real HTTP.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestServer, type TestServer } from '../helpers/server.ts';

describe('unknown query parameters', () => {
  let ts: TestServer;
  const call = async (method: string, route: string, body?: Uint8Array<ArrayBuffer>): Promise<{ status: number; message?: string; json: Record<string, unknown> }> => {
    const res = await fetch(`${ts.httpUrl}${route}`, { method, headers: { authorization: `Bearer ${ts.token}`, ...(body ? { 'content-type': 'application/octet-stream' } : {}) }, ...(body ? { body } : {}) });
    const json = (await res.json()) as Record<string, unknown> & { error?: { message: string } };
    return { status: res.status, json, ...(json.error ? { message: json.error.message } : {}) };
  };

  before(async () => {
    ts = await startTestServer();
  });
  after(() => ts.close());

  it('POST /api/v1/artifacts: a misspelt deviceTypes is refused and nothing is stored', async () => {
    const bytes = new Uint8Array(Buffer.from('build bytes'));
    const r = await call('POST', '/api/v1/artifacts?name=a&version=1.0.0&devicetype=rpi4', bytes);
    assert.deepEqual([r.status, r.message], [400, 'unknown query parameter "devicetype" (parameters: name, version, deviceTypes, requires)']);
    assert.equal((await call('GET', '/api/v1/artifacts/a/1.0.0')).status, 404, 'nothing stored');
    // spelt right, the version is still free and takes its restriction
    const ok = await call('POST', '/api/v1/artifacts?name=a&version=1.0.0&deviceTypes=rpi4', bytes);
    assert.equal(ok.status, 201);
    assert.deepEqual(ok.json.compatibility, { deviceTypes: ['rpi4'] });
  });

  it('a parameter given more than once is refused, not reduced to its first value', async () => {
    const bytes = new Uint8Array(Buffer.from('build bytes'));
    // before: stored an immutable build for rpi4 only
    const r = await call('POST', '/api/v1/artifacts?name=fw&version=2.0.0&deviceTypes=rpi4&deviceTypes=rpi5', bytes);
    assert.deepEqual([r.status, r.message], [400, 'query parameter "deviceTypes" is given 2 times: give it once (a list is comma-separated)']);
    assert.equal((await call('GET', '/api/v1/artifacts/fw/2.0.0')).status, 404, 'nothing stored');
    // before: listed FAILED only (checked before the job is looked up)
    const e = await call('GET', '/api/v1/jobs/some-job/executions?status=FAILED&status=TIMED_OUT&status=FAILED');
    assert.deepEqual([e.status, e.message], [400, 'query parameter "status" is given 3 times: give it once (a list is comma-separated)']);
    // an unknown parameter is named first, repeated or not
    assert.deepEqual((await call('GET', '/api/v1/devices?limt=5&limt=6&limit=1&limit=2')).message, 'unknown query parameter "limt" (parameters: limit, after)');
    // the list, comma-separated, is taken
    const ok = await call('POST', '/api/v1/artifacts?name=fw&version=2.0.0&deviceTypes=rpi4,rpi5', bytes);
    assert.equal(ok.status, 201);
    assert.deepEqual(ok.json.compatibility, { deviceTypes: ['rpi4', 'rpi5'] });
    assert.equal((await call('GET', '/api/v1/jobs?status=COMPLETED,CANCELED&limit=5')).status, 200);
  });

  it('every API route refuses what it does not take, naming all of it, and takes what it documents', async () => {
    assert.deepEqual((await call('GET', '/api/v1/devices?limt=5&afer=x')).message, 'unknown query parameters "limt", "afer" (parameters: limit, after)');
    assert.deepEqual((await call('GET', '/api/v1/fleet/overview?x=1')).message, 'unknown query parameter "x" (it takes none)');
    assert.equal((await call('GET', '/api/v1/jobs?status=PAUSED&limit=5')).status, 200);
    assert.equal((await call('GET', '/api/v1/fleet/search?state=online&tag=a&limit=5')).status, 200);
    assert.equal((await call('GET', '/api/v1/devices?limit=5')).status, 200);
  });
});
