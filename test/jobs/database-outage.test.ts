/**
 * The rollout engine through an outage of PostgreSQL: the rate's clock is moved on by the
 * outage, as by a hold of the artifact storage, so that what the rate allowed meanwhile is not
 * sent at once when the database answers again (QA: 68 commands in 5 s on a 300/min job).
 * The rollout parts with a fake clock on a real PostgreSQL, reached through a TCP relay that
 * is closed (its sessions cut, its port refusing, as a stopped server's) and opened again on
 * the same port; the rollouts lease is PostgreSQL's, as in production.
 */
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { InProcessLease } from '../../src/cluster/lease.ts';
import { PostgresAdvisoryLease } from '../../src/cluster/postgres-advisory-lease.ts';
import { PostgresStore } from '../../src/store/postgres-store.ts';
import { createLogger, silentLogger } from '../../src/util/logger.ts';
import { eventually } from '../helpers/cli.ts';
import { startTestPostgres, unavailable } from '../helpers/postgres.ts';
import { startRelay, type TcpRelay } from '../helpers/tcp-relay.ts';
import { startRolloutFixture, type RolloutFixture } from './rollout-fixture.ts';

const started = await startTestPostgres();

if (!started.ok) {
  const message = unavailable(started, 'database-outage tests');
  it('the rollout engine through a PostgreSQL outage', (t) => t.skip(message));
} else {
  const server = started.server;

  describe('the rollout engine through an outage of PostgreSQL (fake clock)', () => {
    let relay: TcpRelay;
    const fixtures: RolloutFixture[] = [];
    const lines: string[] = [];
    after(() => server.stop());
    before(async () => {
      const direct = new URL(await server.createDatabase());
      relay = await startRelay({ host: direct.hostname, port: Number(direct.port) });
      await relay.down();
    });
    afterEach(async () => {
      await relay.up();
      for (const f of fixtures.splice(0)) await f.close();
      await relay.down();
    });

    /** Rollout parts on a fresh database reached through the relay; `name` tells instances apart in the log. */
    const instance = async (url: string, name: string, builds: string[] = []) => {
      const logger = createLogger({ level: 'info', write: (l) => lines.push(`${name} ${l}`) });
      const f = await startRolloutFixture({ builds, store: new PostgresStore({ url }), lease: new PostgresAdvisoryLease({ url, name: 'rollouts', logger: silentLogger }), logger });
      fixtures.push(f);
      return f;
    };
    const database = async () => {
      const u = new URL(await server.createDatabase());
      u.host = `127.0.0.1:${relay.port}`;
      await relay.up();
      return u.toString();
    };
    const sent = async (f: RolloutFixture, ids: string[], jobId: string) => {
      let n = 0;
      for (const id of ids) if ((await f.desired(id))?.jobId === jobId) n++;
      return n;
    };

    /**
     * 30 devices at 6 a minute, `before` minutes of it (1 + 6 a minute sent), then the database
     * down `down` minutes and a second, the ticks of `instances` failing all along (the first a
     * second after it went down); resolves a second after it answers again.
     */
    const outage = async (f: RolloutFixture, instances: RolloutFixture[], before: number, down: number) => {
      const ids = await f.fleet('d', 30);
      const jobId = (await f.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { devices: ids }, plan: { maxPerMinute: 6 } })).job.jobId;
      for (let i = 0; i < before; i++) {
        for (const x of instances) x.advance(60_000);
        await f.tick();
      }
      assert.equal(await sent(f, ids, jobId), 1 + 6 * before, 'one at once, six a minute');
      await relay.down();
      for (let i = 0; i <= down; i++) {
        // the first a second after it went down, then each minute
        for (const x of instances) x.advance(i === 0 ? 1_000 : 60_000);
        for (const x of instances) await x.rollouts.engine.tick().catch(() => undefined);
      }
      await relay.up();
      for (const x of instances) x.advance(1_000);
      return { ids, jobId };
    };
    /** 7 sent in the job's first minute, then ten minutes of the database down. */
    const downTen = (f: RolloutFixture, instances: RolloutFixture[] = [f]) => outage(f, instances, 1, 10);

    it('sends, in the first minute after it, what the rate allows in a minute, not what built up during it; logged once each way', async () => {
      lines.length = 0;
      const f = await instance(await database(), 'a', ['1.0.0', '2.0.0']);
      const { ids, jobId } = await downTen(f);
      await f.tick();
      // the outage (from the first tick that met it, 61 s into the job, to now: 601 s) is left
      // out: the clock stands at 61 s, whose allowance (7) was sent; without it, 662 s allowed all 30
      assert.equal(await sent(f, ids, jobId), 7, 'nothing built up in the outage is sent at once');
      f.advance(59_000);
      await f.tick();
      assert.equal(await sent(f, ids, jobId), 13, 'and on at its rate: 6 in the first minute after it');
      f.advance(60_000);
      await f.tick();
      assert.equal(await sent(f, ids, jobId), 19);
      assert.equal((await f.job(jobId)).progress?.storeOutageUntil, f.clock.now - 119_000, 'the outage the clock was moved on by is kept with the job');

      const down = lines.filter((l) => l.includes('the state database does not answer'));
      assert.equal(down.length, 1, lines.join('\n'));
      assert.match(down[0]!, /WARN .*rollouts wait for it/);
      const back = lines.filter((l) => l.includes('the state database answers again'));
      assert.equal(back.length, 1, lines.join('\n'));
      assert.match(back[0]!, /INFO .*the state database answers again: rollouts go on, each job's rate where it stopped seconds=601$/);
    });

    /** Two instances on one database, `a` leading, then an outage (`outage`) both tick through. */
    const twoThrough = async (before: number, down: number) => {
      const url = await database();
      const a = await instance(url, 'a', ['1.0.0', '2.0.0']);
      const b = await instance(url, 'b');
      await b.tick();
      assert.equal(b.rollouts.engine.isLeader, false, 'b follows: a leads');
      return { a, b, ...(await outage(a, [a, b], before, down)) };
    };

    it('an instance that does not lead says the end of an outage it said the start of', async () => {
      lines.length = 0;
      const { a, b } = await twoThrough(1, 10);
      await a.tick();
      await b.tick();
      assert.deepEqual([a.rollouts.engine.isLeader, b.rollouts.engine.isLeader], [true, false], 'a leads again, b follows');
      const of = (name: string) => lines.filter((l) => l.startsWith(`${name} `) && l.includes('the state database'));
      const follower = of('b');
      // QA: the follower's start had no end, and ended with a space (no fields)
      assert.equal(follower.length, 2, `the follower's lines of the outage:\n${follower.join('\n')}`);
      assert.match(follower[0]!, /WARN .*the state database does not answer: rollouts wait for it; the rate of each job leaves the outage out when it answers again$/, 'the start, without a trailing space');
      assert.match(follower[1]!, /INFO .*the state database answers again: another instance leads rollouts, and moves each job's rate on seconds=601$/, 'the end, on the follower too');
      const leader = of('a');
      assert.equal(leader.length, 2, `the leader's lines of the outage:\n${leader.join('\n')}`);
      assert.match(leader[1]!, /INFO .*rollouts go on, each job's rate where it stopped seconds=601$/, "the leader's end, as before");
    });

    it('is left out by an instance that takes the lead when it ends, having ticked through it as a follower', async () => {
      const { a, b, ids, jobId } = await twoThrough(1, 10);
      await a.rollouts.stop(); // a died in the outage
      await b.tick();
      assert.equal(b.rollouts.engine.isLeader, true);
      assert.equal(await sent(b, ids, jobId), 7, 'nothing built up in the outage is sent at once');
      b.advance(59_000);
      await b.tick();
      assert.equal(await sent(b, ids, jobId), 13, 'and on at its rate');
    });

    it('is left out once: an instance taking the lead after the one that led when it ended does not move the clock on again', async () => {
      // three minutes of the job (19 sent), then a minute of the database down: shorter than
      // the job ran before it, so the clock moved on by it still stands before its start
      const { a, b, ids, jobId } = await twoThrough(3, 1);
      await a.tick();
      assert.equal(await sent(a, ids, jobId), 19, 'nothing built up in the outage is sent at once');
      await a.rollouts.stop(); // hands the lead over
      for (const x of [a, b]) x.advance(59_000);
      await b.tick();
      assert.equal(b.rollouts.engine.isLeader, true);
      // moved on twice, the clock would stand two minutes back: nothing would go for a minute
      assert.equal(await sent(b, ids, jobId), 25, 'on at its rate');
    });

    it('an instance cut off from the MQTT broker during the outage ends its WARN with a line, once', async () => {
      lines.length = 0;
      let connected = true;
      const url = await database();
      const logger = createLogger({ level: 'info', write: (l) => lines.push(l) });
      const f = await startRolloutFixture({ store: new PostgresStore({ url }), lease: new PostgresAdvisoryLease({ url, name: 'rollouts', logger: silentLogger }), logger, mqttConnected: () => connected });
      fixtures.push(f);
      await f.tick();
      assert.equal(f.rollouts.engine.isLeader, true, 'the one instance leads');
      await relay.down();
      f.advance(1_000);
      await f.rollouts.engine.tick().catch(() => undefined);
      assert.equal(lines.filter((l) => l.includes('the state database does not answer')).length, 1, `the outage said:\n${lines.join('\n')}`);
      // the broker goes too, past the grace: the instance stops asking the lease
      connected = false;
      for (let i = 0; i < 3; i++) {
        f.advance(3_000);
        await f.rollouts.engine.tick().catch(() => undefined);
      }
      const unfollowed = lines.filter((l) => l.includes('the state database outage is no longer followed here'));
      assert.equal(unfollowed.length, 1, `the outage's last line here, once:\n${lines.join('\n')}`);
      assert.match(unfollowed[0]!, /INFO .*cut off from the MQTT broker.* seconds=\d+$/, 'with how long it was followed');
      // both back: it leads again, and says no end of an outage it no longer follows
      connected = true;
      await relay.up();
      f.advance(1_000);
      await f.tick();
      assert.equal(f.rollouts.engine.isLeader, true, 'it leads again');
      assert.equal(lines.filter((l) => l.includes('the state database answers again')).length, 0, `no second end:\n${lines.join('\n')}`);
    });

    it("says the outage once, as a WARN: the ticks that fail on it after the lease answered are no ERROR each", async () => {
      // the lease answers (in-process here; on PostgreSQL its session can outlive a restart's
      // first moments) while every statement of the store fails: the engine's own timer ticks
      const mine: string[] = [];
      const logger = createLogger({ level: 'debug', write: (l) => mine.push(l) });
      const f = await startRolloutFixture({ builds: ['1.0.0', '2.0.0'], store: new PostgresStore({ url: await database() }), lease: new InProcessLease(), logger, tickMs: 5 });
      fixtures.push(f);
      const ids = await f.fleet('d', 3);
      await f.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { devices: ids }, plan: { maxPerMinute: 1 } });
      await relay.down();
      const failedTicks = () => mine.filter((l) => l.includes('rollout tick failed: the state database does not answer'));
      await eventually(async () => (failedTicks().length >= 3 ? true : undefined), 30_000, `three ticks failed on the outage, said at debug:\n${mine.join('\n')}`);
      const down = mine.filter((l) => l.includes('the state database does not answer: rollouts wait for it'));
      assert.equal(down.length, 1, `the outage said once:\n${mine.join('\n')}`);
      assert.match(down[0]!, /WARN /, 'as a WARN');
      assert.deepEqual(mine.filter((l) => / ERROR /.test(l) || l.includes('ERROR')), [], 'no ERROR for the same outage');
      await relay.up();
      await eventually(async () => (mine.some((l) => l.includes('the state database answers again')) ? true : undefined), 30_000, 'the end of the outage said');
      assert.match(failedTicks()[0]!, /DEBUG .*error=/, 'each failed tick keeps its error at debug');
    });
  });
}
