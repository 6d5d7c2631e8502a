/**
 * `/healthz` answers GET and HEAD only, as `/readyz` does: QA saw `POST /healthz` answered 200
 * (dispatch answered it before looking at the method) while `DELETE /readyz` got 405. Real
 * server, real HTTP.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestServer, type TestServer } from '../helpers/server.ts';

describe('the health routes by method', () => {
  let ts: TestServer;
  before(async () => {
    ts = await startTestServer();
  });
  after(() => ts.close());

  it('answers GET and HEAD on /healthz, and 405 with Allow to any other method, as /readyz', async () => {
    const get = await fetch(`${ts.httpUrl}/healthz`);
    assert.deepEqual([get.status, await get.json()], [200, { status: 'ok' }]);
    const head = await fetch(`${ts.httpUrl}/healthz`, { method: 'HEAD' });
    assert.deepEqual([head.status, await head.text()], [200, '']);
    for (const path of ['/healthz', '/readyz']) {
      for (const method of ['POST', 'DELETE', 'PUT']) {
        const res = await fetch(`${ts.httpUrl}${path}`, { method });
        const body = (await res.json()) as { error: { code: string; message: string } };
        assert.deepEqual([res.status, res.headers.get('allow'), body.error], [405, 'GET', { code: 'METHOD_NOT_ALLOWED', message: `method ${method} is not allowed on ${path} (allowed: GET)` }], `${method} ${path}`);
      }
    }
  });
});
