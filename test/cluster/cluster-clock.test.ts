/**
 * Instances on one PostgreSQL database keep job times by the database's clock
 * (cluster/cluster-clock.ts): one whose own clock was 40 s behind the leader's stamped every
 * step deadline 40 s early, and devices that updated in 3 s were recorded TIMED_OUT.
 */
import assert from 'node:assert/strict';
import { after, it } from 'node:test';
import { ClusterClock } from '../../src/cluster/cluster-clock.ts';
import { PostgresStore } from '../../src/store/postgres-store.ts';
import { createLogger } from '../../src/util/logger.ts';
import { startTestPostgres, unavailable } from '../helpers/postgres.ts';
import { startTestServer } from '../helpers/server.ts';

const started = await startTestPostgres();
if (!started.ok) {
  const message = unavailable(started, 'ClusterClock tests');
  it('ClusterClock', (t) => t.skip(message));
} else {
  const server = started.server;
  after(() => server.stop());

  it("corrects an instance's clock to the database's, and says so past two seconds", async () => {
    const store = new PostgresStore({ url: await server.createDatabase() });
    await store.start();
    const lines: string[] = [];
    const logger = createLogger({ level: 'warn', write: (l) => lines.push(l) });
    try {
      // this machine's clock, 40 s behind (the database runs on this machine's real one)
      const behind = new ClusterClock({ store, logger, localNow: () => Date.now() - 40_000 });
      await behind.start();
      await behind.stop();
      assert.ok(Math.abs(behind.offsetMs - 40_000) < 1_000, `offset ${behind.offsetMs} ms`);
      assert.ok(Math.abs(behind.now() - Date.now()) < 1_000, 'its job clock is the database time');
      assert.equal(lines.length, 1, lines.join('\n'));
      assert.match(lines[0]!, /this instance's clock is 40\.\d s behind the database's: job times are kept by the database's clock, but manifests, URLs and tokens expire by this one; run NTP on every instance/);
      await behind.measure();
      assert.equal(lines.length, 1, 'said once while it stays off');

      const right = new ClusterClock({ store, logger });
      await right.start();
      await right.stop();
      assert.ok(Math.abs(right.offsetMs) < 1_000, `offset ${right.offsetMs} ms`);
      assert.equal(lines.length, 1, 'nothing to say of a clock that agrees');
    } finally {
      await store.stop();
    }
  });

  it('is what a server on the database keeps jobs by, and its metrics give the offset', async () => {
    const ts = await startTestServer({ flags: { db: await server.createDatabase() } });
    try {
      assert.ok(ts.server.clusterClock, 'a clock on a shared database');
      const res = await fetch(`${ts.httpUrl}/api/v1/metrics`, { headers: { authorization: `Bearer ${ts.token}` } });
      const m = (await res.json()) as { process: { databaseClockOffsetMs: unknown } };
      assert.equal(typeof m.process.databaseClockOffsetMs, 'number');
      assert.ok(Math.abs(m.process.databaseClockOffsetMs as number) < 1_000);
      // the tracker (which stamps reports) and the engine (which judges deadlines) keep time by it
      type WithClock = { deps: { now?: () => number } };
      assert.equal((ts.server.tracker as unknown as WithClock).deps.now, ts.server.clusterClock!.now);
      assert.equal((ts.server.rollouts.engine as unknown as WithClock).deps.now, ts.server.clusterClock!.now);
      // registrations are dated by it too, as are download URLs and tokens (their issue time is
      // compared with the registration's: a device id registered again, REGISTRATION_MARGIN_MS)
      assert.equal((ts.server.registry as unknown as { now: () => number }).now, ts.server.clusterClock!.now);
    } finally {
      await ts.close();
    }
  });
}
