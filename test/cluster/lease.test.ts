/** Leases: one holder at a time; a dead holder's lease goes to the next instance. */
import assert from 'node:assert/strict';
import { after, it } from 'node:test';
import { InProcessLease } from '../../src/cluster/lease.ts';
import { PostgresAdvisoryLease } from '../../src/cluster/postgres-advisory-lease.ts';
import { createLogger, silentLogger } from '../../src/util/logger.ts';
import { startTestPostgres, unavailable } from '../helpers/postgres.ts';
import { startRolloutFixture } from '../jobs/rollout-fixture.ts';

it('the in-process lease always leads', async () => {
  const l = new InProcessLease();
  assert.equal(l.held, false);
  assert.equal(await l.acquire(), true);
  assert.equal(l.held, true);
  await l.release();
  assert.equal(l.held, false);
});

const started = await startTestPostgres();
if (!started.ok) {
  const message = unavailable(started, 'PostgresAdvisoryLease tests');
  it('PostgresAdvisoryLease', (t) => t.skip(message));
} else {
  const server = started.server;
  after(() => server.stop());

  it('gives a PostgreSQL advisory lease to one instance at a time, and to another when the holder releases', async () => {
    const url = await server.createDatabase();
    const a = new PostgresAdvisoryLease({ url, name: 'rollouts', logger: silentLogger });
    const b = new PostgresAdvisoryLease({ url, name: 'rollouts', logger: silentLogger });
    const other = new PostgresAdvisoryLease({ url, name: 'something-else', logger: silentLogger });
    try {
      assert.equal(await a.acquire(), true);
      assert.equal(await b.acquire(), false);
      assert.equal(await a.acquire(), true, 'renewal keeps it');
      assert.equal(await other.acquire(), true, 'leases are per name');
      await a.release();
      assert.equal(await b.acquire(), true);
      assert.equal(await a.acquire(), false);
    } finally {
      for (const l of [a, b, other]) await l.release();
    }
  });

  it("frees the lease when the holder's database session dies, as on SIGKILL", async () => {
    const url = await server.createDatabase();
    const a = new PostgresAdvisoryLease({ url, name: 'rollouts', logger: silentLogger });
    const b = new PostgresAdvisoryLease({ url, name: 'rollouts', logger: silentLogger });
    try {
      assert.equal(await a.acquire(), true);
      assert.equal(await b.acquire(), false);
      // kill a's backend from outside, as the server does when the instance's process vanishes
      await endLeaseSessions(url);
      assert.equal(await b.acquire(), true, 'the next instance takes over');
      assert.equal(await a.acquire(), false, 'the old holder learns it lost the lease');
      assert.equal(a.held, false);
    } finally {
      await a.release();
      await b.release();
    }
  });

  it('a lease lost and taken again between two ticks is a new term: the engine recovers what was left in flight', async () => {
    const url = await server.createDatabase();
    const lease = new PostgresAdvisoryLease({ url, name: 'rollouts', logger: silentLogger });
    const f = await startRolloutFixture({ lease });
    try {
      assert.equal(lease.term, 1, 'taken at start');
      await f.addArtifact('1.0.0');
      await f.addArtifact('2.0.0');
      const [d] = await f.fleet('d', 1);
      const { jobId } = (await f.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { devices: [d!] } })).job;
      await f.tick();
      assert.equal(lease.term, 1, 'renewals keep the term');
      // while this instance has lost the lease, the device's SUCCESS reaches its shadow and
      // the leader of the meantime dies before recording it (here: nobody records it)
      await f.tracker.stop();
      await f.replica.update({ deviceId: d!, name: '' }, { state: { reported: { software: { name: 'fw', version: '2.0.0', jobId, status: 'SUCCESS' } } } }, { kind: 'device', id: d! });
      await f.tracker.start();
      await endLeaseSessions(url);
      const deadline = Date.now() + 10_000;
      while (lease.held && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      assert.equal((await f.store.getExecution(jobId, d!))?.status, 'QUEUED', 'not recorded yet');
      await f.tick(); // takes the lease again, in a new term
      assert.equal(lease.term, 2);
      assert.equal((await f.execution(jobId, d!)).status, 'SUCCEEDED', 'recovered from the shadow, as after any takeover');
    } finally {
      await f.close();
    }
  });

  it('a lease lost while idle is a warning that says why and what follows, and the next attempt says another instance took over', async () => {
    const url = await server.createDatabase();
    const lines: string[] = [];
    const a = new PostgresAdvisoryLease({ url, name: 'rollouts', logger: createLogger({ level: 'warn', write: (l) => lines.push(l) }) });
    const b = new PostgresAdvisoryLease({ url, name: 'rollouts', logger: silentLogger });
    try {
      assert.equal(await a.acquire(), true);
      // between two acquire()s, a's session is ended from outside (a database restart, a network loss)
      await endLeaseSessions(url);
      // said when it happens, not at the next acquire()
      const deadline = Date.now() + 10_000;
      while (a.held && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      assert.equal(a.held, false);
      assert.equal(lines.length, 1, lines.join('\n'));
      assert.match(lines[0]!, /WARN .*the rollouts lease was lost: its PostgreSQL connection ended .*PostgreSQL freed the lock with it\. Another instance takes the lease over at its next attempt; this one tries to take it again at each of its own/);
      assert.equal(await b.acquire(), true, 'another instance takes over');
      assert.equal(await a.acquire(), false);
      assert.match(lines[1] ?? '', /WARN .*the rollouts lease is held by another instance now \(it took over after this one lost it\); this instance keeps trying to take it at each attempt/);
      assert.equal(await a.acquire(), false);
      assert.equal(lines.length, 2, 'said once');
    } finally {
      await a.release();
      await b.release();
    }
  });
}

/**
 * Ends every session holding an advisory lock from outside (as PostgreSQL does when the
 * holder's process vanishes, or at a restart) and waits until the locks are gone:
 * pg_terminate_backend only signals the backend, and its locks go when it has exited.
 */
async function endLeaseSessions(url: string): Promise<void> {
  const pg = (await import('pg')).default;
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  try {
    await admin.query("SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted");
    const held = async () => (await admin.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND granted")).rows[0]!.n;
    while ((await held()) > 0) await new Promise((r) => setTimeout(r, 10));
  } finally {
    await admin.end();
  }
}
