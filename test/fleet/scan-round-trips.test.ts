/**
 * Fleet scans on PostgreSQL read a page's shadows in one query, not one per device. The store
 * batches the point reads issued in one tick (postgres-read-batch.ts), so a scan that awaited
 * each device's shadow in turn made a round trip per device (QA at 200,000 devices: 54,078
 * shadow reads for six requests, a job preview 129.6 s). A real server on a private PostgreSQL,
 * 2,000 devices registered over HTTP, two reporting over MQTT; every query the server sends
 * is counted at the driver (test/helpers/pg-query-count.ts).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { connectIdleDevice } from '../helpers/mqtt-client.ts';
import { watchPgQueries, type QueryLog } from '../helpers/pg-query-count.ts';
import { startTestPostgres, unavailable, type TestPostgres } from '../helpers/postgres.ts';
import { apiJson, startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact, deploy } from '../security/support.ts';

const FLEET = 2_000;
const id = (i: number) => `d-${String(i).padStart(4, '0')}`;
/** The one-device shadow read (postgres-store.ts, shadowReads.single); a batch reads through unnest. */
const SINGLE_SHADOW_READ = /FROM shadows WHERE device_id = \$1 AND name = \$2/;

describe('fleet scans read a page of shadows in one query (PostgreSQL)', () => {
  let postgres: TestPostgres | undefined;
  let db: string;
  let ts: TestServer | undefined;
  let skip: string | false = false;
  let log: QueryLog;
  const queriesOf = <T>(fn: () => Promise<T>) => log.during(fn);

  before(async () => {
    log = watchPgQueries();
    const started = await startTestPostgres();
    if (!started.ok) {
      skip = unavailable(started, 'the fleet scan round-trip test');
      return;
    }
    postgres = started.server;
    db = await postgres.createDatabase();
    ts = await startTestServer({ flags: { db } });
    const devices = Array.from({ length: FLEET }, (_, k) => ({ deviceId: id(k + 1), tags: k % 2 === 0 ? ['even'] : [] }));
    const r = await apiJson(ts, 'POST', '/api/v1/devices/bulk', { devices });
    assert.equal(r.status, 201, JSON.stringify(r.body).slice(0, 500));
    // two devices with reported software, after every d-: what the queries below find
    for (const [deviceId, version] of [['r-1', '1.0.0'], ['r-2', '2.0.0']] as const) await (await connectIdleDevice(ts, deviceId, version)).end();
    await addArtifact(ts, '3.0.0', randomBytes(100));
  });
  after(async () => {
    log.restore();
    await ts?.close();
    await postgres?.stop();
  });

  it('GET /fleet/devices?query= over 2,002 devices: a few queries, not one per device', async (t) => {
    if (skip) return t.skip(skip);
    const q = encodeURIComponent('reported.software.version = "1.0.0"');
    const { value: r, queries } = await queriesOf(() => apiJson(ts!, 'GET', `/api/v1/fleet/devices?query=${q}&limit=1000`));
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual(r.body.items.map((d: { deviceId: string }) => d.deviceId), ['r-1']);
    assert.equal(r.body.items[0].reported.version, '1.0.0');
    assert.equal(r.body.scanned, FLEET + 2);
    // 3 pages of the registry and their 3 shadow reads, and what else the server does meanwhile
    assert.ok(queries.length < 50, `${queries.length} queries for one request; single shadow reads: ${queries.filter((s) => SINGLE_SHADOW_READ.test(s)).length}`);
  });

  it('GET /fleet/search by tag: the candidates of a page in one query, in order', async (t) => {
    if (skip) return t.skip(skip);
    const { value: r, queries } = await queriesOf(() => apiJson(ts!, 'GET', '/api/v1/fleet/search?tag=even&state=offline&limit=1000'));
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual(
      r.body.items.map((d: { deviceId: string }) => d.deviceId),
      Array.from({ length: FLEET / 2 }, (_, k) => id(2 * k + 1)),
    );
    assert.ok(queries.length < 50, `${queries.length} queries for one request; single shadow reads: ${queries.filter((s) => SINGLE_SHADOW_READ.test(s)).length}`);
  });

  it('POST /jobs/preview with a reported.* query (the job targets scan): a few queries', async (t) => {
    if (skip) return t.skip(skip);
    const body = { artifact: 'fw@3.0.0', targets: { query: 'reported.software.version = "2.0.0"' } };
    const { value: r, queries } = await queriesOf(() => apiJson(ts!, 'POST', '/api/v1/jobs/preview', body));
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.total, 1);
    assert.ok(queries.length < 50, `${queries.length} queries for one request; single shadow reads: ${queries.filter((s) => SINGLE_SHADOW_READ.test(s)).length}`);
  });

  it("taking the rollouts lease reads the shadows of a job's commands out a page at a time", async (t) => {
    if (skip) return t.skip(skip);
    const targets = Array.from({ length: FLEET }, (_, k) => id(k + 1));
    const jobId = await deploy(ts!, targets, 'fw@3.0.0');
    // every command sent (the devices are offline: sent all the same, nobody answers)
    for (let waited = 0; ; waited += 100) {
      const page = await ts!.server.store.listJobExecutions(jobId, { limit: 1000 });
      const more = await ts!.server.store.listJobExecutions(jobId, { limit: 1000, after: page.next! });
      const sentCount = [...page.items, ...more.items].filter((e) => e.dispatchedAt !== undefined).length;
      if (sentCount === FLEET) break;
      assert.ok(waited < 120_000, `only ${sentCount} of ${FLEET} commands sent`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    await ts!.stop();
    // a new instance on the same database takes the lease, and with it the recovery (start() awaits it)
    const dataDir = ts!.dataDir;
    const { value: next, queries } = await queriesOf(() => startTestServer({ dataDir, flags: { db } }));
    ts = next;
    const singles = queries.filter((s) => SINGLE_SHADOW_READ.test(s)).length;
    assert.ok(singles < 50, `${singles} single shadow reads while taking the lease over ${FLEET} commands out`);
    assert.ok(queries.some((s) => /unnest\(\$1::text\[\], \$2::text\[\]\)[\s\S]*JOIN shadows/.test(s)), 'the shadows were read in batches');
  });
});
