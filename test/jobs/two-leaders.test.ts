/**
 * Two instances leading for a moment (deployment.md, the bound): an instance whose rollouts
 * lease lapsed (its lease's PostgreSQL session ended, `pg_terminate_backend`) is still in a
 * tick, and another one has taken the lease over. The old leader's command writes are fenced:
 * a command for an execution the new leader canceled meanwhile is taken back at once, and a
 * command never replaces one written since the shadow was read (a newer job's). An older
 * attempt's command written over the retry's the new leader sent (the sender reads the
 * shadow again on a conflict and finds its own job's command) is replaced by the retry's
 * again, unless the retry is being canceled. A rollback does not replace one either.
 *
 * Real PostgreSQL, two sets of rollout parts on one database, each with its own store,
 * replica, tracker and engine (the fixture's, fake clocks). The interleaving is the test's:
 * the old leader's store pauses the tick right after it read the device's shadow, until the
 * test lets it go (no sleeps).
 */
import assert from 'node:assert/strict';
import { after, afterEach, describe, it } from 'node:test';
import pg from 'pg';
import { PostgresAdvisoryLease } from '../../src/cluster/postgres-advisory-lease.ts';
import { rollBack } from '../../src/jobs/desired-software.ts';
import { deltaTopic } from '../../src/protocol/topics.ts';
import type { ShadowRecord, StateStore } from '../../src/store/state-store.ts';
import { PostgresStore } from '../../src/store/postgres-store.ts';
import { silentLogger } from '../../src/util/logger.ts';
import { startTestPostgres, unavailable } from '../helpers/postgres.ts';
import { startRolloutFixture, type RolloutFixture } from './rollout-fixture.ts';

const started = await startTestPostgres();

/**
 * A store whose next read of `deviceId`'s classic shadow (one that `when` accepts, if given),
 * once armed, waits after the read until released.
 */
function pausable(store: StateStore): {
  store: StateStore;
  pauseAfterShadowRead(deviceId: string, when?: (read: ShadowRecord | undefined) => boolean): { reached: Promise<void>; release: () => void };
} {
  let armed: { deviceId: string; when?: (read: ShadowRecord | undefined) => boolean; reached: () => void; until: Promise<void> } | undefined;
  const proxy = new Proxy(store, {
    get(target, prop) {
      if (prop === 'getShadow') {
        return async (deviceId: string, name: string): Promise<ShadowRecord | undefined> => {
          const read = await target.getShadow(deviceId, name);
          const a = armed;
          if (a && a.deviceId === deviceId && name === '' && (a.when === undefined || a.when(read))) {
            armed = undefined;
            a.reached();
            await a.until;
          }
          return read;
        };
      }
      const value = Reflect.get(target, prop, target) as unknown;
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
  return {
    store: proxy,
    pauseAfterShadowRead(deviceId, when) {
      let reached!: () => void;
      let release!: () => void;
      const reachedP = new Promise<void>((resolve) => (reached = resolve));
      const until = new Promise<void>((resolve) => (release = resolve));
      armed = { deviceId, ...(when ? { when } : {}), reached, until };
      return { reached: reachedP, release };
    },
  };
}

if (!started.ok) {
  const message = unavailable(started, 'two-leaders tests');
  it('two instances leading for a moment', (t) => t.skip(message));
} else {
  const server = started.server;

  describe('two instances leading for a moment (PostgreSQL, fake clocks)', { timeout: 20_000 }, () => {
    const fixtures: RolloutFixture[] = [];
    const releases: (() => void)[] = [];
    after(() => server.stop());
    afterEach(async () => {
      for (const r of releases.splice(0)) r();
      for (const f of fixtures.splice(0)) await f.close();
    });

    /** `old` leading, its store pausable, and `next` following, on one fresh database. */
    const pair = async () => {
      const url = await server.createDatabase();
      const gate = pausable(new PostgresStore({ url }));
      const old = await startRolloutFixture({ builds: ['1.0.0', '2.0.0'], store: gate.store, lease: new PostgresAdvisoryLease({ url, name: 'rollouts', logger: silentLogger }) });
      fixtures.push(old);
      // old's directory: the two instances share the artifact storage, as deployments must (a
      // job for a build whose bytes this instance's storage lacks is refused, 317356b)
      const next = await startRolloutFixture({ dir: old.dir, store: new PostgresStore({ url }), lease: new PostgresAdvisoryLease({ url, name: 'rollouts', logger: silentLogger }) });
      fixtures.push(next);
      await old.tick();
      await next.tick();
      assert.deepEqual([old.rollouts.engine.isLeader, next.rollouts.engine.isLeader], [true, false], 'old leads');
      return { url, gate, old, next };
    };

    /** Ends the session that holds the rollouts lease (old's), as PostgreSQL does to a silent one; waits until it is gone. */
    const endLeaseSession = async (url: string) => {
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        const held = await client.query<{ pid: number }>(`SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted`);
        assert.equal(held.rows.length, 1, 'one session holds the lease');
        const ended = await client.query<{ ok: boolean }>('SELECT pg_terminate_backend($1, 10000) AS ok', [held.rows[0]!.pid]);
        assert.equal(ended.rows[0]!.ok, true);
      } finally {
        await client.end();
      }
    };

    /**
     * Starts `action` on `old` (a job created: the engine sends its first commands at once, as a
     * tick does) and waits until its dispatch has read `deviceId`'s shadow; `finish` lets it go on.
     */
    const pausedInDispatch = async <T>(gate: ReturnType<typeof pausable>, deviceId: string, action: () => Promise<T>) => {
      const paused = gate.pauseAfterShadowRead(deviceId);
      releases.push(paused.release);
      const running = action();
      const first = await Promise.race([paused.reached.then(() => 'paused'), running.then(() => 'done')]);
      assert.equal(first, 'paused', `nothing was sent to ${deviceId}`);
      return {
        finish: async () => {
          paused.release();
          return running;
        },
      };
    };

    /** The id of the job `deviceId` is in (the only one: created while its dispatch was held). */
    const onlyJob = async (f: RolloutFixture, deviceId: string) => {
      const { items } = await f.store.listDeviceExecutions(deviceId, { limit: 10 });
      assert.equal(items.length, 1);
      return items[0]!.jobId;
    };

    it('a command the old leader sends for an execution the new leader canceled meanwhile is taken back', async () => {
      const { url, gate, old, next } = await pair();
      const [d] = await old.fleet('d', 1);
      const creating = await pausedInDispatch(gate, d!, () => old.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { devices: [d!] } }));
      const jobId = await onlyJob(old, d!);

      // the old leader's lease lapses mid-dispatch; the job is canceled and the new leader takes the lease
      await endLeaseSession(url);
      await next.rollouts.jobs.cancel(jobId);
      await next.tick();
      assert.equal(next.rollouts.engine.isLeader, true, 'next leads now, while old is still sending');
      assert.equal((await next.execution(jobId, d!)).status, 'CANCELED', 'queued, nothing sent: ended at once, nothing to take back');
      assert.equal(await next.desired(d!), undefined);

      await creating.finish();
      const desired = await next.desired(d!);
      assert.notEqual(desired?.jobId, jobId, 'the canceled job is not left for the device to install');
      assert.deepEqual([desired?.jobId, desired?.version], [`${jobId}.cancel`, '1.0.0'], 'taken back with a stay on what it runs');
      assert.equal((await next.execution(jobId, d!)).status, 'CANCELED');
      assert.equal((await next.job(jobId)).status, 'CANCELED');
    });

    it("the old leader's command does not replace a newer job's the new leader sent meanwhile", async () => {
      const { url, gate, old, next } = await pair();
      const [d] = await old.fleet('d', 1);
      const creating = await pausedInDispatch(gate, d!, () => old.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { devices: [d!] } }));
      const first = await onlyJob(old, d!);

      await endLeaseSession(url);
      next.advance(1_000); // created after the first
      const hotfix = (await next.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { devices: [d!] } })).job.jobId;
      await next.tick();
      assert.equal(next.rollouts.engine.isLeader, true, 'next leads now, while old is still sending');
      assert.equal((await next.desired(d!))?.jobId, hotfix, "next sent the newer job's command");

      await creating.finish();
      assert.equal((await next.desired(d!))?.jobId, hotfix, "the newer job's command stands");
      assert.equal((await next.execution(first, d!)).status, 'CANCELED', 'the older job ends on the device, as when a newer command supersedes it');
      await next.complete(d!);
      assert.equal((await next.execution(hotfix, d!)).status, 'SUCCEEDED');
    });

    /**
     * The old leader holds attempt 1's command of a job with a retry (read the shadow, not yet
     * written); the new leader takes over, sends attempt 1, the device fails it, and the new
     * leader sends the retry (`<job>.2`). Then the old leader's write lands: its read is stale
     * (a conflict), it reads again, finds this job's own command there and writes attempt 1's
     * over the retry's (the overwrite); its fence then finds the execution on attempt 2.
     */
    const retryOverwritten = async () => {
      const { url, gate, old, next } = await pair();
      const [d] = await old.fleet('d', 1);
      const creating = await pausedInDispatch(gate, d!, () => old.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { devices: [d!] }, retries: { limit: 1, on: ['FAILED'] } }));
      const jobId = await onlyJob(old, d!);
      await endLeaseSession(url);
      await next.tick();
      assert.equal(next.rollouts.engine.isLeader, true, 'next leads now, while old is still sending');
      assert.equal((await next.desired(d!))?.jobId, jobId, 'next sent attempt 1');
      await next.complete(d!, 'FAILURE');
      await next.tick();
      assert.equal((await next.desired(d!))?.jobId, `${jobId}.2`, 'next sent the retry');
      const retry = await next.execution(jobId, d!);
      assert.deepEqual([retry.attempt, retry.status, retry.dispatchedAt !== undefined], [2, 'QUEUED', true]);
      return { gate, old, next, d: d!, jobId, creating };
    };

    it("the old leader's attempt-1 command written over the new leader's retry: the retry's command is put back", async () => {
      const { next, d, jobId, creating } = await retryOverwritten();
      await creating.finish();
      const desired = await next.desired(d);
      assert.deepEqual([desired?.jobId, desired?.version], [`${jobId}.2`, '2.0.0'], "the retry's command is desired again, not a stay");
      await next.complete(d);
      const e = await next.execution(jobId, d);
      assert.deepEqual([e.attempt, e.status], [2, 'SUCCEEDED'], 'the retry goes on at once, not at its timeout');
    });

    it('a retry the new leader is canceling (the device downloading it) is not put back', async () => {
      const { old, next, d, jobId, creating } = await retryOverwritten();
      await next.report(d, { name: 'fw', version: '1.0.0', jobId: `${jobId}.2`, status: 'DOWNLOADING', progress: 0.1 });
      await next.rollouts.jobs.cancel(jobId);
      assert.equal((await next.desired(d))?.jobId, `${jobId}.2.cancel`, 'the cancel took the retry back');
      const stopping = await next.execution(jobId, d);
      assert.deepEqual([stopping.attempt, stopping.status, stopping.details.cancelRequested], [2, 'IN_PROGRESS', true], 'asked to stop, not confirmed yet');
      const sentBefore = old.bus.published.length;
      await creating.finish();
      const deltas = old.bus.published.slice(sentBefore).filter((p) => p.topic === deltaTopic(d));
      assert.deepEqual(
        deltas.map((p) => p.body.state?.software?.jobId),
        [jobId, `${jobId}.cancel`],
        "the old leader's command, then its take-back: the canceled retry's command is not put back, not even for a moment",
      );
      const desired = await next.desired(d);
      assert.notEqual(desired?.jobId, `${jobId}.2`, 'the canceled retry is not put back');
      assert.equal(desired?.version, '1.0.0', 'the device is told to stay on what it runs');
      assert.match(String(desired?.jobId), /\.cancel$/);
    });

    it('a retry canceled while the fence puts its command back is taken back', async () => {
      const { gate, next, d, jobId, creating } = await retryOverwritten();
      // hold the old leader again once its attempt-1 command is in the shadow: at the fence's read
      const fence = gate.pauseAfterShadowRead(d, (read) => (read?.state.desired?.software as { jobId?: unknown } | undefined)?.jobId === jobId);
      releases.push(fence.release);
      const finishing = creating.finish();
      await fence.reached;
      // the cancel finds attempt 1's command desired, not its attempt's: it takes nothing back
      await next.rollouts.jobs.cancel(jobId);
      assert.equal((await next.desired(d))?.jobId, jobId, "the old leader's command is still there");
      fence.release();
      await finishing;
      const desired = await next.desired(d);
      assert.notEqual(desired?.jobId, `${jobId}.2`, 'the canceled retry is not left for the device to install');
      console.log('DEBUG', desired, await next.execution(jobId, d));assert.equal(desired?.version, '1.0.0', 'the device is told to stay on what it runs');
      assert.match(String(desired?.jobId), /\.cancel$/);
      assert.equal((await next.execution(jobId, d)).details.cancelRequested, true);
    });

    it("a command taken back at once does not count against the job's rate", async () => {
      const { url, gate, old, next } = await pair();
      const [d1, d2] = await old.fleet('d', 2);
      // one a minute: the old leader's tick sends to d001 only
      const creating = await pausedInDispatch(gate, d1!, () => old.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { devices: [d1!, d2!] }, plan: { maxPerMinute: 1 } }));
      const { items } = await old.store.listDeviceExecutions(d1!, { limit: 10 });
      const jobId = items[0]!.jobId;

      // d001 is revoked meanwhile: the new leader refuses its execution (REMOVED, nothing sent, not counted)
      await endLeaseSession(url);
      await next.registry.revoke(d1!);
      await next.tick();
      assert.equal(next.rollouts.engine.isLeader, true, 'next leads now, while old is still sending');
      assert.equal((await next.execution(jobId, d1!)).status, 'REMOVED');
      assert.equal(await next.desired(d2!), undefined, "the minute's one command was d001's turn");

      await creating.finish();
      assert.match(String((await next.desired(d1!))?.jobId), /\.cancel$/, "the old leader's command to d001 is taken back at once");
      const job = await next.job(jobId);
      assert.equal((job.progress as { sentSinceEpoch?: number }).sentSinceEpoch, 0, 'nothing reached a device: nothing counted against the rate');
      // the same minute: the allowance is still there for d002
      await next.tick();
      assert.equal((await next.desired(d2!))?.jobId, jobId, 'd002 is sent its command at once, not a minute later');
    });

    it('a rollback does not replace a command written after it read the shadow', async () => {
      const { gate, old, next } = await pair();
      const [d] = await old.fleet('d', 1);
      const software = (jobId: string) => ({ name: 'fw', version: '2.0.0', sha256: 'a'.repeat(64), size: 9, jobId });
      await old.replica.update({ deviceId: d!, name: '' }, { state: { desired: { software: software('job-a') } } }, { kind: 'operator', id: 'test' });
      const paused = gate.pauseAfterShadowRead(d!);
      releases.push(paused.release);
      const rolling = rollBack({ store: gate.store, replica: old.replica, artifacts: old.artifacts }, d!, 'job-a', { name: 'fw', version: '1.0.0' });
      await paused.reached;
      // another instance asks the device for job-b meanwhile
      await next.replica.update({ deviceId: d!, name: '' }, { state: { desired: { software: software('job-b') } } }, { kind: 'operator', id: 'test' });
      paused.release();
      assert.deepEqual(await rolling, { supersededBy: 'job-b' });
      assert.equal((await next.desired(d!))?.jobId, 'job-b', "job-b's command stands");
    });
  });
}
