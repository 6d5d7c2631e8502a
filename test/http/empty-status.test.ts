/**
 * `?status=` present and empty is refused, as `?name=` on artifacts is (listParam in
 * src/http/paging.ts): QA saw `GET /api/v1/jobs?status=` list every job, read as absent.
 * Real server, real HTTP.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestServer, type TestServer } from '../helpers/server.ts';

describe('an empty status filter', () => {
  let ts: TestServer;
  const get = async (route: string) => {
    const res = await fetch(`${ts.httpUrl}${route}`, { headers: { authorization: `Bearer ${ts.token}` } });
    return { status: res.status, body: (await res.json()) as { error?: { message: string } } };
  };
  before(async () => (ts = await startTestServer()));
  after(() => ts.close());

  it('is refused on the job list, 400 naming it', async () => {
    for (const q of ['status=', 'status=%20']) {
      const r = await get(`/api/v1/jobs?${q}`);
      assert.equal(r.status, 400, q);
      assert.match(r.body.error!.message, /^status is empty: give a comma-separated list of .*COMPLETED.*, or leave status out$/);
    }
    assert.equal((await get('/api/v1/jobs')).status, 200);
    assert.equal((await get('/api/v1/jobs?status=COMPLETED')).status, 200);
  });
});
