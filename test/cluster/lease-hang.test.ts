/**
 * The PostgreSQL lease against a database that hangs (the connection open, nothing answered:
 * a partition that drops packets, a stuck server), as opposed to one that refuses: a real
 * PostgreSQL behind a TCP relay that can stop forwarding bytes both ways, keeping its sockets
 * open, and go on again. acquire() and release() end within the lease's timeouts (500 ms
 * here), a silent holder counts the lease as lost, and once the database answers again the
 * lease is taken afresh.
 */
import assert from 'node:assert/strict';
import { after, afterEach, beforeEach, describe, it } from 'node:test';
import { PostgresAdvisoryLease } from '../../src/cluster/postgres-advisory-lease.ts';
import { createLogger, silentLogger } from '../../src/util/logger.ts';
import { startTestPostgres, unavailable } from '../helpers/postgres.ts';
import { startRelay, type TcpRelay } from '../helpers/tcp-relay.ts';
import { startRolloutFixture } from '../jobs/rollout-fixture.ts';
import { startTestServer } from '../helpers/server.ts';

/** Polls `fn` until it returns true (10 s at most): the server frees a closed session's lock when it has ended it. */
async function eventually(fn: () => Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!(await fn())) {
    if (Date.now() > deadline) assert.fail(`not within 10 s: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const started = await startTestPostgres();
if (!started.ok) {
  const message = unavailable(started, 'PostgresAdvisoryLease hang tests');
  it('PostgresAdvisoryLease against a database that hangs', (t) => t.skip(message));
} else {
  const server = started.server;
  after(() => server.stop());

  // generous: without the timeouts these calls never end, and the test fails by timing out
  const TEST = { timeout: 30_000 };
  const TIMEOUTS = { connectTimeoutMs: 500, queryTimeoutMs: 500 };

  describe('PostgresAdvisoryLease against a database that hangs', () => {
    let relay: TcpRelay;
    let direct: string;
    let relayed: string;
    const leases: PostgresAdvisoryLease[] = [];
    const lease = (url: string, logger = silentLogger) => {
      const l = new PostgresAdvisoryLease({ url, name: 'rollouts', logger, ...TIMEOUTS });
      leases.push(l);
      return l;
    };

    // each test on a database and a relay of its own: one that failed leaves nothing to the next
    beforeEach(async () => {
      direct = await server.createDatabase();
      const u = new URL(direct);
      relay = await startRelay({ host: u.hostname, port: Number(u.port) });
      u.host = `127.0.0.1:${relay.port}`;
      relayed = u.toString();
    });
    afterEach(async () => {
      relay.resume();
      for (const l of leases.splice(0)) await l.release();
      await relay.stop();
    });

    it('acquire() on a connection nobody answers ends: not held, unreachable; once the database answers, the next one takes the lease', TEST, async () => {
      relay.hang();
      const a = lease(relayed);
      assert.equal(await a.acquire(), false);
      assert.equal(a.held, false);
      assert.equal(a.unreachable, true, 'no answer, not "held elsewhere"');
      relay.resume();
      await eventually(() => a.acquire(), 'the lease taken once the database answers');
      assert.equal(a.unreachable, false);
      assert.equal(a.term, 1);
      await a.release();
    });

    it('a holder whose database stops answering counts the lease lost at its next check, says so, and the lock goes to another instance once the close reaches the server', TEST, async () => {
      const lines: string[] = [];
      const a = lease(relayed, createLogger({ level: 'warn', write: (l) => lines.push(l) }));
      const b = lease(direct);
      assert.equal(await a.acquire(), true);
      assert.equal(await b.acquire(), false);
      relay.hang();
      assert.equal(await a.acquire(), false, 'a silent check is a lost lease');
      assert.equal(a.held, false);
      assert.equal(a.unreachable, true);
      assert.equal(lines.length, 1, lines.join('\n'));
      assert.match(lines[0]!, /WARN .*the rollouts lease is given up: PostgreSQL did not answer the rollouts lease's query within 500 ms \(a network partition or a stuck server\)\. This instance stops now, before PostgreSQL can give the lock to another instance/);
      // the server still has a's session (nothing reached it): the lock is not free yet
      assert.equal(await b.acquire(), false, 'PostgreSQL keeps the lock while the silent session lasts');
      relay.resume();
      // a closed its silent session; the close reaches the server now, which frees the lock
      await eventually(() => b.acquire(), 'another instance takes the lease');
      assert.equal(await a.acquire(), false);
      assert.equal(a.unreachable, false, 'held elsewhere, answered');
      await b.release();
      await eventually(() => a.acquire(), 'a takes it again');
      assert.equal(a.term, 2, 'a new term');
      await a.release();
    });

    it('release() of a holder whose database stops answering ends', TEST, async () => {
      const a = lease(relayed);
      const b = lease(direct);
      assert.equal(await a.acquire(), true);
      relay.hang();
      await a.release();
      assert.equal(a.held, false);
      relay.resume();
      await eventually(() => b.acquire(), 'the lock freed once the close reaches the server');
      await b.release();
    });

    it('overlapping acquire()s share one attempt: one session, one answer', TEST, async () => {
      const a = lease(relayed);
      const before = relay.connections;
      assert.deepEqual(await Promise.all([a.acquire(), a.acquire(), a.acquire()]), [true, true, true]);
      assert.equal(relay.connections - before, 1);
      relay.hang();
      const before2 = relay.connections;
      assert.deepEqual(await Promise.all([a.acquire(), a.acquire()]), [false, false]);
      assert.equal(relay.connections - before2, 0, 'the check went on the session it had');
      relay.resume();
      await a.release();
    });

    it('the rollout engine stops leading when its lease gets no answer, and leads again once it does', TEST, async () => {
      const l = lease(relayed);
      const f = await startRolloutFixture({ lease: l });
      try {
        assert.equal(f.rollouts.engine.isLeader, true, 'leads from the start');
        relay.hang();
        await f.tick();
        assert.equal(f.rollouts.engine.isLeader, false, 'a holder cut from the database stops driving rollouts');
        relay.resume();
        await eventually(async () => {
          await f.tick();
          return f.rollouts.engine.isLeader;
        }, 'leading again');
      } finally {
        relay.resume();
        await f.close();
      }
    });

    it('a server takes its leases\' query timeout from postgres.leaseTimeoutSeconds (--db-lease-timeout)', TEST, async () => {
      const lines: string[] = [];
      const ts = await startTestServer({ flags: { db: relayed, 'db-lease-timeout': 1 }, logger: createLogger({ level: 'warn', write: (l) => lines.push(l) }) });
      try {
        await eventually(async () => ts.server.rollouts.engine.isLeader, 'the server leads rollouts');
        relay.hang();
        await eventually(async () => lines.some((l) => /the rollouts lease is given up/.test(l)), 'the lease given up');
        const given = lines.find((l) => /the rollouts lease is given up/.test(l))!;
        assert.match(given, /did not answer the rollouts lease's query within 1000 ms/, 'the setting, not the 10 s default');
      } finally {
        relay.resume();
        await ts.close();
      }
    });
  });
}
