/**
 * What an instance remembers of jobs does not grow with jobs it no longer needs (QA):
 *
 * - the rollout engine's `changed` (jobs whose executions changed since last advanced) is kept
 *   by the leader only: a follower whose devices report recorded every job they reported on,
 *   and only a leader's pass pruned it. A new leader needs none of it: its first pass after
 *   taking the lead advances every active job, including one whose devices finished just
 *   before, on the follower. An instance that loses the lead forgets it, and keeps nothing of
 *   an arrived device whose lookup was in flight when it lost the lead (the lookup held by a gate).
 * - the execution writer's cache (execution-writer.ts) forgets a deleted job's executions on
 *   every instance (`job.deleted`, relayed), not only after 50,000 newer writes.
 *
 * Two real in-process servers on one private PostgreSQL database (test/helpers/postgres.ts)
 * and one private Mosquitto (the event relay), as deployment.md runs several instances: jobs
 * sent by the leader and canceled through the follower, so that both write executions; and
 * two sets of rollout parts on one database (the fixture's, manual ticks) for the takeover.
 */
import assert from 'node:assert/strict';
import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { PostgresAdvisoryLease } from '../../src/cluster/postgres-advisory-lease.ts';
import { rememberedExecutions } from '../../src/jobs/execution-writer.ts';
import { PostgresStore } from '../../src/store/postgres-store.ts';
import { silentLogger } from '../../src/util/logger.ts';
import { eventually } from '../helpers/cli.ts';
import { findMosquitto, mosquittoUnavailable, startTestMosquitto } from '../helpers/mosquitto.ts';
import { startTestPostgres, unavailable } from '../helpers/postgres.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact, deploy } from '../security/support.ts';
import { startRolloutFixture, type RolloutFixture } from './rollout-fixture.ts';

/**
 * Two sets of rollout parts on one PostgreSQL database, each with its own store and lease
 * (pushed to `fixtures` to be closed): `old` holds the builds, `lease` is its lease.
 */
async function twoInstances(url: string, fixtures: RolloutFixture[]): Promise<{ old: RolloutFixture; next: RolloutFixture; lease: PostgresAdvisoryLease }> {
  const lease = new PostgresAdvisoryLease({ url, name: 'rollouts', logger: silentLogger });
  const old = await startRolloutFixture({ builds: ['1.0.0', '2.0.0'], store: new PostgresStore({ url }), lease });
  fixtures.push(old);
  const next = await startRolloutFixture({ store: new PostgresStore({ url }), lease: new PostgresAdvisoryLease({ url, name: 'rollouts', logger: silentLogger }) });
  fixtures.push(next);
  return { old, next, lease };
}

const TOKEN = `updr_follower_memory_test_${'x'.repeat(24)}`;
const mosquitto = findMosquitto();
const started = await startTestPostgres();

if (!started.ok) {
  const message = unavailable(started, 'follower memory tests');
  it('what an instance remembers of jobs', (t) => t.skip(message));
} else {
  const pg = started.server;

  describe('what an instance remembers of jobs (two instances, PostgreSQL)', { timeout: 120_000 }, () => {
    after(() => pg.stop());

    it("a follower keeps no job as changed, and no instance keeps a deleted job's executions", async (t) => {
      if (!mosquitto.ok) return t.skip(mosquittoUnavailable(mosquitto.reason, 'the two-instance case'));
      const root = await mkdtemp(path.join(os.tmpdir(), 'updraft-follower-'));
      const broker = await startTestMosquitto(mosquitto.bin, { operatorToken: TOKEN, devices: [], secrets: new Map() });
      const servers: TestServer[] = [];
      try {
        // two instances as deployment.md runs them: one database, one broker (the event relay)
        const db = await pg.createDatabase();
        const instance = async (dataDir: string) => {
          const ts = await startTestServer({ dataDir, flags: { db, 'mqtt-url': broker.serviceUrl, 'mqtt-tls-port': -1 } });
          servers.push(ts);
          return ts;
        };
        const dataA = path.join(root, 'a');
        await mkdir(dataA, { recursive: true });
        await writeFile(path.join(dataA, 'operator-token'), TOKEN + '\n', { mode: 0o600 });
        const a = await instance(dataA);
        await eventually(async () => (a.server.rollouts.engine.isLeader ? true : undefined), 15_000, 'A leads');
        await cp(dataA, path.join(root, 'b'), { recursive: true });
        const b = await instance(path.join(root, 'b'));
        assert.equal(b.server.rollouts.engine.isLeader, false, 'B follows');
        await addArtifact(a, '2.0.0', Buffer.from('firmware 2.0.0'));
        const devices = ['f-1', 'f-2'];
        for (const id of devices) await registerDevice(a, id);
        const call = async (ts: TestServer, method: string, route: string) => {
          const res = await fetch(`${ts.httpUrl}${route}`, { method, headers: { authorization: `Bearer ${TOKEN}` } });
          assert.equal(res.status, 200, await res.text());
        };
        const remembered = (jobId: string) => [rememberedExecutions(a.server.store, jobId), rememberedExecutions(b.server.store, jobId)];

        // created on A, which leads and sends the commands; canceled through B, whose engine
        // takes them back: each instance writes (and remembers) the executions
        const jobs: string[] = [];
        for (let i = 0; i < 3; i++) {
          const jobId = await deploy(a, devices, 'fw@2.0.0');
          await eventually(async () => ((await a.server.store.countExecutions(jobId)).some((c) => c.dispatched > 0) ? true : undefined), 15_000, `job ${jobId} sent`);
          await call(b, 'POST', `/api/v1/jobs/${jobId}/cancel`);
          jobs.push(jobId);
        }
        for (const jobId of jobs) assert.ok(remembered(jobId).every((n) => n > 0), `job ${jobId} remembered on both: ${remembered(jobId).join(', ')}`);
        // B heard every change (its own, and A's through the relay): it keeps none as changed
        await eventually(async () => ((await b.server.store.getJob(jobs[2]!))?.status === 'CANCELED' ? true : undefined), 15_000, 'the last cancel');
        assert.equal(b.server.rollouts.engine.memory().changed, 0, 'the follower keeps no job as changed');

        // what a device's report reads of its job, cached on each instance (jobIdentity)
        for (const jobId of jobs) for (const ts of [a, b]) assert.ok(await ts.server.tracker.jobIdentity(jobId), `job ${jobId} known`);
        // deleted through A, then through B: forgotten on both instances, through the relayed event on the other
        await call(a, 'DELETE', `/api/v1/jobs/${jobs[0]}`);
        await call(b, 'DELETE', `/api/v1/jobs/${jobs[1]}`);
        for (const jobId of jobs.slice(0, 2)) {
          const forgotten = await eventually(async () => (remembered(jobId).every((n) => n === 0) ? true : undefined), 10_000, `job ${jobId}'s executions forgotten on both instances`).catch(() => false);
          assert.ok(forgotten, `job ${jobId}'s executions still remembered (A, B): ${remembered(jobId).join(', ')}`);
        }
        for (const jobId of jobs.slice(0, 2)) {
          const gone = await eventually(async () => ((await Promise.all([a, b].map((ts) => ts.server.tracker.jobIdentity(jobId)))).every((j) => j === undefined) ? true : undefined), 10_000, `job ${jobId} unknown`).catch(() => false);
          assert.ok(gone, `a deleted job ${jobId} is still given by jobIdentity on an instance`);
        }
        assert.ok(remembered(jobs[2]!).every((n) => n > 0), 'a job not deleted is still remembered');
        assert.equal(b.server.rollouts.engine.isLeader, false, 'B followed throughout');
        assert.equal(b.server.rollouts.engine.memory().changed, 0);
      } finally {
        for (const s of servers.reverse()) await s.close();
        await broker.stop();
        await rm(root, { recursive: true, force: true });
      }
    });

    it('a new leader advances a job whose devices finished on it while it followed', async () => {
      const url = await pg.createDatabase();
      const fixtures: RolloutFixture[] = [];
      try {
        const { old, next } = await twoInstances(url, fixtures);
        await old.tick();
        await next.tick();
        assert.deepEqual([old.rollouts.engine.isLeader, next.rollouts.engine.isLeader], [true, false], 'old leads');
        const ids = await old.fleet('d', 2);
        const { jobId } = (await old.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { devices: ids } })).job;
        await old.tick();
        await old.tick(); // sent, nothing to do until a device reports: quiet on the leader
        // the devices finish on the follower (its tracker records them; no relay between fixtures)
        for (const id of ids) await next.complete(id);
        for (const id of ids) assert.equal((await next.execution(jobId, id)).status, 'SUCCEEDED');
        assert.equal(next.rollouts.engine.memory().changed, 0, 'the follower remembers nothing of it');
        assert.equal((await next.job(jobId)).status, 'IN_PROGRESS');
        // the leader goes; the follower's next tick takes the lead and completes the job at once
        await fixtures.shift()!.close();
        await next.tick();
        assert.equal(next.rollouts.engine.isLeader, true);
        assert.equal((await next.job(jobId)).status, 'COMPLETED');
      } finally {
        for (const f of fixtures) await f.close();
      }
    });

    it('an instance that loses the lead forgets which jobs changed', async () => {
      const url = await pg.createDatabase();
      const fixtures: RolloutFixture[] = [];
      try {
        const { old, next, lease } = await twoInstances(url, fixtures);
        const ids = await old.fleet('d', 2);
        await old.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { devices: ids } });
        await old.tick();
        await old.complete(ids[0]!);
        assert.equal(old.rollouts.engine.memory().changed, 1, 'the leader remembers the job for its next tick');
        // the lease goes to the other instance (as when this one's session ended): at its next tick this one follows
        await lease.release();
        await next.tick();
        await old.tick();
        assert.deepEqual([old.rollouts.engine.isLeader, next.rollouts.engine.isLeader], [false, true]);
        assert.equal(old.rollouts.engine.memory().changed, 0);
      } finally {
        for (const f of fixtures) await f.close();
      }
    });

    it('an instance that loses the lead while it looks up an arrived device keeps nothing of the lookup', async () => {
      const url = await pg.createDatabase();
      const fixtures: RolloutFixture[] = [];
      let release = () => {};
      try {
        const { old, next, lease } = await twoInstances(url, fixtures);
        const ids = await old.fleet('d', 2);
        // one device a minute: after the first tick one device's command is still to send
        await old.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { devices: ids }, plan: { maxPerMinute: 1 } });
        await old.tick();
        assert.equal(old.rollouts.engine.isLeader, true);
        // the lookup of an arrived device's executions answers, then is held until the test lets it go
        const store = old.store;
        const list = store.listUndispatchedOfDevice.bind(store);
        const gate = new Promise<void>((resolve) => (release = resolve));
        let entered = 0;
        let allEntered!: () => void;
        const looking = new Promise<void>((resolve) => (allEntered = resolve));
        store.listUndispatchedOfDevice = async (deviceId) => {
          const rows = await list(deviceId);
          if (++entered === ids.length) allEntered();
          await gate;
          return rows;
        };
        for (const deviceId of ids) old.events.emit('device.presence', { deviceId, online: true });
        await looking;
        // meanwhile the lease goes to the other instance: at its next tick this one follows
        await lease.release();
        await next.tick();
        await old.tick();
        assert.deepEqual([old.rollouts.engine.isLeader, next.rollouts.engine.isLeader], [false, true]);
        release();
        // the held lookups answer and the arrivals resume (promise continuations, all run before setImmediate)
        await new Promise<void>((resolve) => setImmediate(resolve));
        const { changed, arrived } = old.rollouts.engine.memory();
        assert.deepEqual({ changed, arrived }, { changed: 0, arrived: 0 }, 'a follower keeps nothing of an arrival it looked up while leading');
      } finally {
        release();
        for (const f of fixtures) await f.close();
      }
    });

    it('an instance that loses the lead forgets the devices that came online, and does not put one first when it leads again', async () => {
      const url = await pg.createDatabase();
      const fixtures: RolloutFixture[] = [];
      try {
        const { old, next, lease } = await twoInstances(url, fixtures);
        const ids = await old.fleet('d', 3);
        // one device a minute: d001 goes at the first tick, d002 and d003 wait in the store's order
        const { jobId } = (await old.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { devices: ids }, plan: { maxPerMinute: 1 } })).job;
        await old.tick();
        old.events.emit('device.presence', { deviceId: 'd003', online: true });
        await eventually(async () => (old.rollouts.engine.memory().arrived === 1 ? true : undefined), 5_000, 'd003 remembered as come online');
        // the lease goes to the other instance before d003's turn: this one follows
        await lease.release();
        await next.tick();
        await old.tick();
        assert.deepEqual([old.rollouts.engine.isLeader, next.rollouts.engine.isLeader], [false, true]);
        assert.equal(old.rollouts.engine.memory().arrived, 0, 'a follower keeps no device as come online');
        // d003 leaves, seen by the instance that leads now (its connection's); then that one stops and this one leads again
        next.events.emit('device.presence', { deviceId: 'd003', online: false });
        await next.rollouts.stop();
        old.advance(60_000);
        await old.tick();
        assert.equal(old.rollouts.engine.isLeader, true);
        const sent = async (d: string) => (await old.execution(jobId, d)).dispatchedAt !== undefined;
        assert.deepEqual({ d002: await sent('d002'), d003: await sent('d003') }, { d002: true, d003: false }, 'the store order: d003 left, and came online only in an earlier term');
      } finally {
        for (const f of fixtures) await f.close();
      }
    });
  });
}
