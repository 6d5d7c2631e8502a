/**
 * `GET /api/v1/fleet/status` (behind `updraft status`) and `/fleet/versions` are served from
 * the overview's cache (fleet-overview.ts): each counted the whole registry and every shadow
 * on every request (QA: 1.0-3.4 s a request at 200,000 devices on PostgreSQL). A real server
 * on a private PostgreSQL, its queries counted at the driver (test/helpers/pg-query-count.ts):
 * answers that carry the same `generatedAt` came from one count of the fleet, and the counts
 * come again once the cache is older than its period.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { eventually } from '../helpers/cli.ts';
import { watchPgQueries, type QueryLog } from '../helpers/pg-query-count.ts';
import { startTestPostgres, unavailable, type TestPostgres } from '../helpers/postgres.ts';
import { apiJson, startTestServer, type TestServer } from '../helpers/server.ts';

/** The counting queries of a fleet summary (postgres-store.ts countDevices, countReportedSoftware). */
const FLEET_COUNT = /COUNT\(\*\)[\s\S]*FROM (devices|shadows) WHERE/;

describe('fleet status and versions come from the overview cache (PostgreSQL)', () => {
  let postgres: TestPostgres | undefined;
  let ts: TestServer | undefined;
  let skip: string | false = false;
  let log: QueryLog;

  before(async () => {
    log = watchPgQueries();
    const started = await startTestPostgres();
    if (!started.ok) {
      skip = unavailable(started, 'the fleet summary cache test');
      return;
    }
    postgres = started.server;
    ts = await startTestServer({ flags: { db: await postgres.createDatabase() } });
    const devices = Array.from({ length: 500 }, (_, k) => ({ deviceId: `d-${k}` }));
    assert.equal((await apiJson(ts, 'POST', '/api/v1/devices/bulk', { devices })).status, 201);
  });
  after(async () => {
    log.restore();
    await ts?.close();
    await postgres?.stop();
  });

  it('repeated requests within the cache period count the fleet once; later ones again', async (t) => {
    if (skip) return t.skip(skip);
    const routes = ['/api/v1/fleet/status', '/api/v1/fleet/versions', '/api/v1/fleet/status', '/api/v1/fleet/versions', '/api/v1/fleet/overview', '/api/v1/fleet/status'];
    const answers: { generatedAt: unknown; counts: number }[] = [];
    for (const route of routes) {
      const { value: r, queries } = await log.during(() => apiJson(ts!, 'GET', route));
      assert.equal(r.status, 200, `${route}: ${JSON.stringify(r.body)}`);
      answers.push({ generatedAt: r.body.generatedAt, counts: queries.filter((q) => FLEET_COUNT.test(q)).length });
      if (route === '/api/v1/fleet/status') assert.equal(r.body.devices.registered, 500);
    }
    assert.ok(answers[0]!.counts > 0, 'the first request counts the fleet');
    assert.equal(typeof answers[0]!.generatedAt, 'number', 'an answer says when it was computed');
    // an answer computed again (its period over: a very slow machine) may count; one from the cache may not
    for (const [n, a] of answers.entries()) {
      if (n > 0 && a.generatedAt === answers[n - 1]!.generatedAt) assert.equal(a.counts, 0, `${routes[n]} (answer ${n}) counted the fleet again within the cache period: ${JSON.stringify(answers)}`);
    }
    assert.ok(answers.filter((a) => a.generatedAt === answers[0]!.generatedAt).length > 1, `the cache served at least one repeat: ${JSON.stringify(answers)}`);

    // past the period (2 s here), a change shows
    assert.equal((await apiJson(ts!, 'POST', '/api/v1/devices/bulk', { devices: [{ deviceId: 'late' }] })).status, 201);
    await eventually(async () => ((await apiJson(ts!, 'GET', '/api/v1/fleet/status')).body.devices.registered === 501 ? true : undefined), 30_000, 'the new device counted once the cache is old');
  });
});
