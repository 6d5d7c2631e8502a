/**
 * What `job show`, `device show` and `device history` add to an execution that ended SUCCEEDED
 * in place of its retry (retry-policy.ts): its retry not sent (details.retryNotSent), or its
 * attempt timed out before its SUCCESS came in (details.timedOut). Without a word the line read
 * SUCCEEDED like any other. Real server, real CLI process, real executions: the retry's
 * (test/helpers/retry-not-sent.ts), and the timed-out attempt's on a private PostgreSQL, where
 * the engine is held between the timeout's TIMED_OUT write and its retry's as
 * test/jobs/success-before-retry.test.ts holds it (the artifacts table locked by another
 * connection: the timeout's take-back reads the catalogue in between).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import type { ExecutionRecord } from '../../src/store/state-store.ts';
import { ApiClient } from '../../src/cli/api-client.ts';
import { eventually, runCli } from '../helpers/cli.ts';
import { TestClient } from '../helpers/mqtt-client.ts';
import { startTestPostgres, unavailable } from '../helpers/postgres.ts';
import { addArtifact } from '../security/support.ts';
import { randomBytes } from 'node:crypto';
import { retryNotSentExecution } from '../helpers/retry-not-sent.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';

/** Runs `updraft ...args` against `ts`; resolves with its output, exit 0 checked. */
async function cli(ts: TestServer, ...args: string[]): Promise<string> {
  const r = await runCli([...args, '--server', ts.httpUrl, '--token', ts.token]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout;
}

describe('the CLI: a SUCCEEDED execution whose retry was not sent', { timeout: 120_000 }, () => {
  let ts: TestServer;
  before(async () => {
    ts = await startTestServer();
  });
  after(() => ts?.close());

  it('says so in job show, device show and device history', async () => {
    const { jobId, execution } = await retryNotSentExecution(ts, 'unsent-1', 'unsent-fw');
    const at = (execution.details.retryNotSent as { at: number }).at;
    const note = `retry not sent at ${new Date(at).toISOString()}: the device had reported attempt 1's SUCCESS`;
    // the attempt said as device history says it (QA: job show hid that a retry had come)
    assert.match(await cli(ts, 'job', 'show', jobId), new RegExp(`^  unsent-1  SUCCEEDED \\(attempt 2\\)  ${escape(note)}$`, 'm'), 'job show names the attempt');
    assert.match(await cli(ts, 'device', 'show', 'unsent-1'), new RegExp(`^  ${jobId}  SUCCEEDED .*, ${escape(note)}$`, 'm'));
    assert.match(await cli(ts, 'device', 'history', 'unsent-1'), new RegExp(`  ${jobId}  unsent-fw@2\\.0\\.0  SUCCEEDED \\(attempt 2\\)  ${escape(note)}$`, 'm'));
  });
});

const postgres = await startTestPostgres();

describe('the CLI: a SUCCEEDED execution whose attempt had timed out (PostgreSQL)', { timeout: 120_000 }, () => {
  if (!postgres.ok) {
    it('a timed-out attempt that succeeded', (t) => t.skip(unavailable(postgres, 'the timedOut note')));
    return;
  }
  const server = postgres.server;
  let ts: TestServer | undefined;
  let locker: pg.Client | undefined;
  let op: TestClient | undefined;
  after(async () => {
    await op?.end().catch(() => {});
    await locker?.end().catch(() => {});
    await ts?.close();
    await server.stop();
  });

  /** True while a query of another session waits for a lock on the artifacts table (asked outside the locker's transaction). */
  const waitingOnArtifacts = async (url: string) => {
    const watcher = new pg.Client({ connectionString: url });
    await watcher.connect();
    try {
      const r = await watcher.query<{ n: string }>(`SELECT count(*) AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%FROM artifacts WHERE%'`);
      return Number(r.rows[0]!.n) > 0;
    } finally {
      await watcher.end();
    }
  };

  it('says so in job show, device show and device history', async () => {
    const db = await server.createDatabase();
    ts = await startTestServer({ flags: { db } });
    const api = new ApiClient({ server: ts.httpUrl, token: ts.token });
    await addArtifact(ts, '2.0.0', randomBytes(256), 'late-fw');
    await registerDevice(ts, 'late-1');
    const execution = async () => (await api.call<{ items: ExecutionRecord[] }>('GET', `/api/v1/jobs/${jobId}/executions`)).items[0]!;
    const { job } = await api.call<{ job: { jobId: string } }>('POST', '/api/v1/jobs', { artifact: 'late-fw@2.0.0', targets: { devices: ['late-1'] }, timeouts: { inProgressSeconds: 2 }, retries: { limit: 1 } });
    const jobId = job.jobId;
    await eventually(async () => ((await execution()).dispatchedAt !== undefined ? true : undefined), 30_000, 'the first attempt sent');
    op = await TestClient.connect(ts.mqttUrl, 'ops-late-1', { username: 'operator', password: ts.token });
    // sent by an operator as the device would; under way, the execution is past the engine's
    // sending, which reads the job's build every tick (and would wait on the lock below first)
    const report = (status: string, version: string) => op!.publish('state/late-1/update', { state: { reported: { software: { name: 'late-fw', version, jobId, status } } } });
    await report('DOWNLOADING', '1.0.0');
    await eventually(async () => ((await execution()).status === 'IN_PROGRESS' ? true : undefined), 30_000, 'the download under way');

    // the engine, at the timeout, stops in its take-back, after the TIMED_OUT commit
    locker = new pg.Client({ connectionString: db });
    await locker.connect();
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE artifacts IN ACCESS EXCLUSIVE MODE');
    await eventually(async () => ((await execution()).status === 'TIMED_OUT' && (await waitingOnArtifacts(db)) ? true : undefined), 30_000, 'the engine held between the TIMED_OUT and the retry');

    // the device's SUCCESS of that attempt comes in meanwhile
    await report('SUCCESS', '2.0.0');
    await eventually(async () => ((await execution()).details.lateSuccess !== undefined ? true : undefined), 30_000, 'the success recorded on the TIMED_OUT row');
    await locker.query('ROLLBACK');
    const done = await eventually(async () => {
      const e = await execution();
      return e.status === 'SUCCEEDED' ? e : undefined;
    }, 30_000, 'the execution SUCCEEDED');
    const timedOut = done.details.timedOut as { at: number; error: string };
    assert.equal(done.attempt ?? 1, 1, 'no retry');
    const note = `timed out at ${new Date(timedOut.at).toISOString()} (${timedOut.error}), then its SUCCESS came in: no retry`;
    assert.match(await cli(ts, 'job', 'show', jobId), new RegExp(`^  late-1  SUCCEEDED  ${escape(note)}$`, 'm'));
    assert.match(await cli(ts, 'device', 'show', 'late-1'), new RegExp(`^  ${jobId}  SUCCEEDED .*, ${escape(note)}$`, 'm'));
    assert.match(await cli(ts, 'device', 'history', 'late-1'), new RegExp(`  ${jobId}  late-fw@2\\.0\\.0  SUCCEEDED  ${escape(note)}$`, 'm'));
  });
});

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
