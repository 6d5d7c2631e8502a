/**
 * The one-time look for commands an earlier version left on devices (stranded-commands.ts)
 * reads a page of devices' shadows, executions and jobs together, not one device after
 * another: each device cost a round trip for its shadow, one for its execution and, for a
 * command whose execution is gone, one for its job, on PostgreSQL. The rollout fixture on a
 * private PostgreSQL (real store, replica, tracker, engine; fake clock), every query counted at
 * the driver (test/helpers/pg-query-count.ts).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { mutateExecution } from '../../src/jobs/execution-writer.ts';
import { STRANDED_SWEEP_KEY, sweepStrandedCommands } from '../../src/jobs/stranded-commands.ts';
import { PostgresStore } from '../../src/store/postgres-store.ts';
import { silentLogger } from '../../src/util/logger.ts';
import { watchPgQueries, type QueryLog } from '../helpers/pg-query-count.ts';
import { startTestPostgres, unavailable, type TestPostgres } from '../helpers/postgres.ts';
import { startRolloutFixture, type RolloutFixture } from './rollout-fixture.ts';

/** The one-device reads (postgres-store.ts: shadowReads.single, getExecution, getJob). */
const SINGLE_SHADOW_READ = /FROM shadows WHERE device_id = \$1 AND name = \$2/;
const SINGLE_EXECUTION_READ = /FROM executions WHERE job_id = \$1 AND device_id = \$2/;
const SINGLE_JOB_READ = /FROM jobs WHERE job_id = \$1/;

describe('the look for stranded commands reads a page of devices together (PostgreSQL)', () => {
  let pg: TestPostgres | undefined;
  let skip: string | undefined;
  let f: RolloutFixture | undefined;
  let log: QueryLog;

  before(async () => {
    log = watchPgQueries();
    const started = await startTestPostgres();
    if (!started.ok) skip = unavailable(started, 'the stranded-commands round-trip test');
    else pg = started.server;
  });
  after(async () => {
    log.restore();
    await f?.close();
    await pg?.stop();
  });

  it('300 devices asked for a command, 100 of them stranded: no read per device, the same commands taken back', async (t) => {
    if (skip) return t.skip(skip);
    f = await startRolloutFixture({ builds: ['1.0.0', '2.0.0'], store: new PostgresStore({ url: await pg!.createDatabase() }) });
    await f.rollouts.engine.settled();
    const ids = await f.fleet('s', 300);
    const inFlight = ids.slice(0, 200);
    const timedOut = ids.slice(200, 250);
    const deleted = ids.slice(250);
    const create = async (devices: string[], inProgressSeconds: number) => {
      const jobId = (await f!.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { devices }, timeouts: { inProgressSeconds } })).job.jobId;
      await f!.tick();
      for (const d of devices) assert.equal((await f!.desired(d))?.jobId, jobId, `${d} is sent the command`);
      return jobId;
    };
    const a = await create(inFlight, 3600);
    const b = await create(timedOut, 60);
    const c = await create(deleted, 60);
    f.advance(61_000);
    // what the timeout wrote before 0ff9134, its deadline cleared at once: the command left desired
    for (const [jobId, devices] of [[b, timedOut], [c, deleted]] as const) {
      for (const d of devices) await mutateExecution(f, { jobId, deviceId: d }, (cur) => ({ status: 'TIMED_OUT', details: { ...cur.details, error: 'in-progress timeout' }, dueAt: undefined }), f.clock.now);
    }
    await f.tick();
    await f.rollouts.jobs.delete(c); // deleteJob does not see what such a row owes
    assert.equal(await f.store.getJob(c), undefined);
    const before = await Promise.all(inFlight.map(async (d) => (await f!.store.getShadow(d, ''))?.version));
    assert.equal(await f.store.deleteSetting(STRANDED_SWEEP_KEY), true);

    const deps = { store: f.store, replica: f.replica, artifacts: f.artifacts, logger: silentLogger };
    const { value: taken, queries } = await log.during(() => sweepStrandedCommands(deps, f!.clock.now));
    assert.equal(taken, 100);
    for (const [jobId, devices] of [[b, timedOut], [c, deleted]] as const) {
      for (const d of devices) {
        const asked = await f.desired(d);
        assert.deepEqual([asked?.jobId, asked?.version], [`${jobId}.cancel`, '1.0.0'], `${d} is told to stay on what it runs`);
      }
    }
    assert.deepEqual(await Promise.all(inFlight.map(async (d) => (await f!.store.getShadow(d, ''))?.version)), before, 'the commands in flight are not written');
    for (const d of inFlight) assert.equal((await f.desired(d))?.jobId, a);
    assert.notEqual(await f.store.getSetting(STRANDED_SWEEP_KEY), undefined, 'the pass is recorded finished');

    const count = (re: RegExp) => queries.filter((s) => re.test(s)).length;
    const singles = { shadows: count(SINGLE_SHADOW_READ), executions: count(SINGLE_EXECUTION_READ), jobs: count(SINGLE_JOB_READ) };
    const seen = `${queries.length} queries; single reads: ${JSON.stringify(singles)}`;
    t.diagnostic(seen);
    assert.equal(singles.executions, 0, seen);
    assert.equal(singles.jobs, 0, seen);
    // each command taken back is read again where it is written (retractCommand), one device at a time: 100, not 400
    assert.ok(singles.shadows <= 100, seen);
  });
});
