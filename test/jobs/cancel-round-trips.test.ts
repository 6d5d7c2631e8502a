/**
 * A cancel costs no round trip per device on PostgreSQL: the stop passes over a page of
 * executions at once (rollout-engine.ts, stopExecutions), and the point reads each device's
 * stop makes in the same tick (its shadow, and for a device asked for the command, the build
 * it runs, looked up for the stay) go in one query (postgres-read-batch.ts). Until 2026-12-06
 * the build was read one device at a time: a cancel of a job sent to 300 devices made 300
 * artifact queries. The take-backs such a stop could neither make nor owe on their rows (one
 * database outage) are tried again at a later tick together too (until 2026-12-06 one after
 * another). The rollout fixture on a private PostgreSQL (real store, replica, tracker,
 * engine; fake clock), every query counted at the driver (test/helpers/pg-query-count.ts).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { ExecutionRecord, ShadowRecord } from '../../src/store/state-store.ts';
import { PostgresStore } from '../../src/store/postgres-store.ts';
import { watchPgQueries, type QueryLog } from '../helpers/pg-query-count.ts';
import { startTestPostgres, unavailable, type TestPostgres } from '../helpers/postgres.ts';
import { startRolloutFixture, type RolloutFixture } from './rollout-fixture.ts';

/** The reads of one shadow or one artifact (postgres-store.ts: the batches' `single`), and their batches. */
const SINGLE_SHADOW_READ = /FROM shadows WHERE device_id = \$1 AND name = \$2/;
const BATCHED_SHADOW_READ = /JOIN shadows s ON/;
const SINGLE_ARTIFACT_READ = /FROM artifacts WHERE name = \$1 AND version = \$2/;
const BATCHED_ARTIFACT_READ = /JOIN artifacts a ON/;

describe('a cancel reads its devices a page at a time (PostgreSQL)', () => {
  let pg: TestPostgres | undefined;
  let skip: string | undefined;
  let f: RolloutFixture | undefined;
  let log: QueryLog;

  before(async () => {
    log = watchPgQueries();
    const started = await startTestPostgres();
    if (!started.ok) skip = unavailable(started, 'the cancel round-trip test');
    else pg = started.server;
  });
  after(async () => {
    log.restore();
    await f?.close();
    await pg?.stop();
  });

  it('300 devices sent the command, 300 not yet: a handful of reads, each sent one asked to stay, the others untouched', async (t) => {
    if (skip) return t.skip(skip);
    f = await startRolloutFixture({ builds: ['1.0.0', '2.0.0'], store: new PostgresStore({ url: await pg!.createDatabase() }) });
    await f.rollouts.engine.settled();
    const ids = await f.fleet('c', 600);
    // the first wave (300) is sent at once; the second waits for it
    const jobId = (await f.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { devices: ids }, plan: { waves: [{ count: 300, successThreshold: 0 }, { percent: 100 }] } })).job.jobId;
    const asked = await Promise.all(ids.map((d) => f!.desired(d)));
    const sentIds = ids.filter((_, i) => asked[i]?.jobId === jobId);
    assert.equal(sentIds.length, 300, 'the first wave is sent');
    const unsentIds = ids.filter((d) => !sentIds.includes(d));
    const versionsBefore = await Promise.all(unsentIds.map(async (d) => (await f!.store.getShadow(d, ''))?.version));

    const { queries } = await log.during(() => f!.rollouts.jobs.cancel(jobId));

    for (const d of sentIds) {
      const stay = await f.desired(d);
      assert.deepEqual([stay?.jobId, stay?.version], [`${jobId}.cancel`, '1.0.0'], `${d} is asked to stay on what it runs`);
    }
    assert.deepEqual(await Promise.all(unsentIds.map(async (d) => (await f!.store.getShadow(d, ''))?.version)), versionsBefore, 'nothing written to the devices never sent the command');
    for (const d of ids) assert.equal((await f.execution(jobId, d)).status, 'CANCELED', d);

    const count = (re: RegExp) => queries.filter((s) => re.test(s)).length;
    const reads = { singleShadows: count(SINGLE_SHADOW_READ), shadowBatches: count(BATCHED_SHADOW_READ), singleArtifacts: count(SINGLE_ARTIFACT_READ), artifactBatches: count(BATCHED_ARTIFACT_READ) };
    const seen = `${queries.length} queries; ${JSON.stringify(reads)}`;
    t.diagnostic(seen);
    // a page of 500, then one of 100: a query or two each, never one per device
    assert.ok(reads.singleShadows + reads.shadowBatches <= 6, seen);
    assert.ok(reads.singleArtifacts + reads.artifactBatches <= 6, seen);
    assert.ok(queries.length < 100, seen);
  });

  it("take-backs owed after one database outage (commands out with their 'sent' write refused, then the cancel's stay and its owed retract refused) are tried again together at a later tick", async (t) => {
    if (skip) return t.skip(skip);
    await f?.close();
    f = await startRolloutFixture({ builds: ['1.0.0', '2.0.0'], store: new PostgresStore({ url: await pg!.createDatabase() }) });
    await f.rollouts.engine.settled();
    const ids = await f.fleet('o', 60);
    // the outage, as the store answers during it: the writes of 'sent' while the job is
    // created, then the stays (shadow writes) and the retracts owed on the rows at the cancel
    const store = f.store;
    const realExecution = store.updateExecution;
    const realShadow = store.putShadow;
    let outage: 'create' | 'cancel' | undefined = 'create';
    const refused = { sent: 0, stays: 0, owed: 0 };
    const down = () => Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' });
    store.updateExecution = function (this: unknown, r: ExecutionRecord, c?: ReadonlySet<keyof ExecutionRecord>) {
      if (outage === 'create' && r.dispatchedAt !== undefined) {
        refused.sent++;
        return Promise.reject(down());
      }
      if (outage === 'cancel' && r.details.retractPending !== undefined) {
        refused.owed++;
        return Promise.reject(down());
      }
      return realExecution.call(this, r, c);
    } as typeof store.updateExecution;
    store.putShadow = function (this: unknown, r: ShadowRecord, expected: number) {
      if (outage === 'cancel') {
        refused.stays++;
        return Promise.reject(down());
      }
      return realShadow.call(this, r, expected);
    } as typeof store.putShadow;
    try {
      const jobId = (await f.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { devices: ids } })).job.jobId;
      for (const d of ids) assert.equal((await f.desired(d))?.jobId, jobId, `${d} has the command`);
      assert.equal(refused.sent, ids.length, "every 'sent' write refused");
      outage = 'cancel';
      await f.rollouts.jobs.cancel(jobId);
      assert.deepEqual([refused.stays >= ids.length, refused.owed], [true, ids.length], 'every stay and every owed retract refused');
      for (const d of ids) assert.equal((await f.desired(d))?.jobId, jobId, `${d}: not taken back yet`);
      outage = undefined;

      f.advance(6_000);
      const { queries } = await log.during(() => f!.tick());
      for (const d of ids) {
        const stay = await f.desired(d);
        assert.deepEqual([stay?.jobId, stay?.version], [`${jobId}.cancel`, '1.0.0'], `${d} is asked to stay on what it runs`);
        assert.equal((await f.execution(jobId, d)).status, 'CANCELED', d);
      }
      const count = (re: RegExp) => queries.filter((s) => re.test(s)).length;
      const reads = { singleShadows: count(SINGLE_SHADOW_READ), shadowBatches: count(BATCHED_SHADOW_READ), singleArtifacts: count(SINGLE_ARTIFACT_READ), artifactBatches: count(BATCHED_ARTIFACT_READ) };
      const seen = `${queries.length} queries; ${JSON.stringify(reads)}`;
      t.diagnostic(seen);
      // the 60 owed take-backs read together: not a read (or two) per device, one after another
      assert.ok(reads.singleShadows + reads.shadowBatches <= 6, seen);
      assert.ok(reads.singleArtifacts + reads.artifactBatches <= 6, seen);
    } finally {
      store.updateExecution = realExecution;
      store.putShadow = realShadow;
    }
  });
});
