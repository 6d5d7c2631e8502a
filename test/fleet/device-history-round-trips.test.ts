/**
 * A device's timeline (`GET /api/v1/devices/{id}/events`, from its newest 1,000 jobs) and its
 * history page read their jobs in one query, not one per job: `FleetView.history` awaited a
 * `getJob` for each, a round trip each on PostgreSQL. A real server on a private PostgreSQL,
 * a device with 300 finished jobs written by its store; every query the server sends is
 * counted at the driver (test/helpers/pg-query-count.ts).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { RecentEvents } from '../../src/events/recent-events.ts';
import { deviceTimeline } from '../../src/fleet/device-timeline.ts';
import type { ExecutionRecord, JobRecord } from '../../src/store/state-store.ts';
import { watchPgQueries, type QueryLog } from '../helpers/pg-query-count.ts';
import { startTestPostgres, unavailable, type TestPostgres } from '../helpers/postgres.ts';
import { apiJson, registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';

const JOBS = 300;
const DEVICE = 'tl-1';
/** The one-job read (postgres-store.ts getJob). */
const SINGLE_JOB_READ = /FROM jobs WHERE job_id = \$1/;

describe("a device's timeline and history read its jobs together (PostgreSQL)", () => {
  let postgres: TestPostgres | undefined;
  let ts: TestServer | undefined;
  let skip: string | false = false;
  let log: QueryLog;
  /** Each job's artifact, as the answers name it. */
  const artifacts = new Map<string, string>();

  before(async () => {
    log = watchPgQueries();
    const started = await startTestPostgres();
    if (!started.ok) {
      skip = unavailable(started, "the device timeline's round-trip test");
      return;
    }
    postgres = started.server;
    ts = await startTestServer({ flags: { db: await postgres.createDatabase() } });
    await registerDevice(ts, DEVICE);
    await registerDevice(ts, 'other');
    const store = ts.server.store;
    // finished jobs (nothing for the engine to do), each of another build, their attempts recorded
    for (let i = 0; i < JOBS; i++) {
      const jobId = `job-${String(i).padStart(4, '0')}`;
      const at = Date.UTC(2026, 0, 1) + i * 60_000;
      const version = `1.${i % 7}.${i}`;
      const job: JobRecord = { jobId, artifactName: i % 2 ? 'fw' : 'boot', artifactVersion: version, status: 'COMPLETED', createdAt: at, updatedAt: at + 30_000 };
      const failed = i % 5 === 0;
      const execution: ExecutionRecord = {
        jobId,
        deviceId: DEVICE,
        status: failed ? 'FAILED' : 'SUCCEEDED',
        details: failed ? { error: 'health check failed', attempts: [{ attempt: 1, status: 'TIMED_OUT', at: at + 10_000 }] } : {},
        queuedAt: at,
        updatedAt: at + 30_000,
        dispatchedAt: at + 1_000,
        version: 3,
        attempt: failed ? 2 : 1,
      };
      await store.createJob(job, i % 3 ? [execution] : [execution, { ...execution, deviceId: 'other' }]);
      artifacts.set(jobId, `${job.artifactName}@${version}`);
    }
  });
  after(async () => {
    log.restore();
    await ts?.close();
    await postgres?.stop();
  });

  it('GET /devices/{id}/events over 300 jobs: a few queries, and every event names its job\'s build', async (t) => {
    if (skip) return t.skip(skip);
    const { value: r, queries } = await log.during(() => apiJson(ts!, 'GET', `/api/v1/devices/${DEVICE}/events?limit=200`));
    assert.equal(r.status, 200, JSON.stringify(r.body));
    // the answer as the timeline makes it from the device's executions, each with its job's build
    const executions = (await ts!.server.store.listDeviceExecutions(DEVICE, { limit: 1000 })).items;
    assert.equal(executions.length, JOBS);
    const none = { list: () => [] } as unknown as RecentEvents; // the device never connected: no presence
    const expected = deviceTimeline(
      executions.map((e) => ({ ...e, artifact: artifacts.get(e.jobId)! })),
      none,
      DEVICE,
      200,
    );
    assert.deepEqual(r.body, { deviceId: DEVICE, items: expected });
    assert.ok(new Set(expected.map((e) => e.artifact)).size > 50, 'builds of many jobs');
    const singles = queries.filter((s) => SINGLE_JOB_READ.test(s)).length;
    assert.ok(queries.length < 20, `${queries.length} queries for one request; single job reads: ${singles}`);
    assert.equal(singles, 0);
  });

  it('GET /devices/{id}/history?limit=1000: the jobs of the page in one query', async (t) => {
    if (skip) return t.skip(skip);
    const { value: r, queries } = await log.during(() => apiJson(ts!, 'GET', `/api/v1/devices/${DEVICE}/history?limit=1000`));
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const items = r.body.items as { jobId: string; artifact: string; status: string }[];
    assert.equal(items.length, JOBS);
    assert.deepEqual(
      items.map((e) => [e.jobId, e.artifact]),
      [...artifacts].reverse(),
      'newest first, each with its build',
    );
    const singles = queries.filter((s) => SINGLE_JOB_READ.test(s)).length;
    assert.ok(queries.length < 20, `${queries.length} queries for one request; single job reads: ${singles}`);
    assert.equal(singles, 0);
  });
});
