/**
 * The book of executions owed a write (unrecorded-reports.ts) on a real server's tracker and
 * store: what owing and trying costs it, in entries looked at (a count the book keeps, never a
 * time), and the order of its tries. During a database outage every report fails and is owed:
 * a walk of everything owed per owe made the outage quadratic (50,000 owes: 36 s of event loop).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { ExecutionTracker } from '../../src/jobs/execution-tracker.ts';
import { type OwedExecution, UnrecordedReports } from '../../src/jobs/unrecorded-reports.ts';
import type { StateStore } from '../../src/store/state-store.ts';
import { createLogger } from '../../src/util/logger.ts';
import { eventually } from '../helpers/cli.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact, deploy } from '../security/support.ts';

describe('the book of executions owed a write', () => {
  let ts: TestServer;
  const lines: string[] = [];
  before(async () => {
    ts = await startTestServer({ logger: createLogger({ level: 'info', write: (l) => lines.push(l) }) });
  });
  after(async () => {
    await ts.close();
  });

  it('owing 10,000 executions looks at a few entries each, and each is tried once, earliest due first', async () => {
    const book = ts.server.tracker.unrecorded;
    const n = 10_000;
    const steps = book.steps;
    // three backoffs: due 0.4-0.6 s, 0.8-1.2 s and 1.6-2.4 s from now
    for (let i = 0; i < n; i++) book.owe(`job-${i}`, `gone-${i}`, {}, i % 3);
    const perOwe = (book.steps - steps) / n;
    assert.ok(perOwe < 4, `entries looked at per owe: ${perOwe} (a walk of all owed would be thousands)`);
    assert.equal(book.size, n);
    // the devices have no shadow: each try finds nothing to write, and is done
    await eventually(async () => (book.size === 0 ? true : undefined), 60_000, 'every execution tried');
    const tried = lines.filter((l) => l.includes('execution recorded on a later try') && l.includes('gone-'));
    assert.equal(tried.length, n, 'each tried once');
    const order = tried.map((l) => Number(/ tries=(\d+)/.exec(l)?.[1]));
    assert.deepEqual([...new Set(order)].sort(), [1, 2, 3], 'the three backoffs, each tried once more');
    assert.deepEqual(
      order,
      [...order].sort((a, b) => a - b),
      'a shorter backoff is tried before a longer one',
    );
  });

  it('a stop during the scan owed past 50,000 ends the scan before its next page', async () => {
    // two open jobs (their devices offline), for the scan to look over
    await addArtifact(ts, '2.0.0', randomBytes(256));
    for (const id of ['scan-1', 'scan-2']) {
      await registerDevice(ts, id);
      await deploy(ts, [id], 'fw@2.0.0');
    }
    // a tracker of its own on the server's store and events, through a delegating wrapper: only it calls the wrapper
    const store = ts.server.store;
    let stopping: Promise<void> | undefined;
    let pagesAfterStop = 0;
    const watched = Object.create(store) as StateStore;
    watched.listJobs = async (...args: Parameters<StateStore['listJobs']>) => {
      const jobs = await store.listJobs(...args);
      stopping ??= tracker.stop(); // the server stops as the scan reads its first page of jobs
      return jobs;
    };
    watched.listJobExecutions = (...args: Parameters<StateStore['listJobExecutions']>) => {
      if (stopping) pagesAfterStop++;
      return store.listJobExecutions(...args);
    };
    const own: string[] = [];
    const tracker = new ExecutionTracker({ store: watched, events: ts.server.events, logger: createLogger({ level: 'info', write: (l) => own.push(l) }) });
    // past 50,000 owed: a scan of every open execution is owed instead
    for (let i = 0; i <= 50_000; i++) tracker.unrecorded.owe(`job-${i}`, `gone-${i}`);
    assert.equal(tracker.unrecorded.scanPending, true);
    await eventually(async () => (stopping ? true : undefined), 60_000, 'the scan begun');
    await stopping;
    assert.equal(pagesAfterStop, 0, 'no page of executions read after the stop');
    assert.ok(own.some((l) => l.includes('stopping with executions not recorded yet')));
    assert.ok(!own.some((l) => l.includes('open executions looked over again')), 'a scan cut short is not said to be done');
  });
  it('an outcome owed after its supersede stays after it when its try fails and it is owed again', async () => {
    // the owner's try (ExecutionTracker.retry) rejects once, as it does while the database is still down
    const tries: OwedExecution[] = [];
    const book = new UnrecordedReports({
      retry: async (owed) => {
        tries.push({ ...owed });
        if (tries.length === 1) throw new Error('database still down');
      },
      scan: async () => {},
      logger: createLogger({ level: 'error', write: () => {} }),
      firstDelayMs: 10,
      maxDelayMs: 20,
    });
    try {
      // a supersede refused, then the agent's call-off FAILURE refused
      book.owe('j', 'd', { superseded: { attempt: 1, reason: 'x' } });
      book.owe('j', 'd', { outcome: { status: 'FAILURE' } });
      await eventually(async () => (tries.length === 2 && book.size === 0 ? true : undefined), 10_000, 'tried twice');
      assert.equal(tries[0]!.outcomeFirst, false, 'first try: the supersede first');
      assert.equal(tries[1]!.outcomeFirst, false, 'second try: still the supersede first');
      assert.deepEqual(tries[1]!.superseded, { attempt: 1, reason: 'x' });
      assert.deepEqual(tries[1]!.outcome, { status: 'FAILURE' });
      assert.equal(tries[1]!.tries, 1);
    } finally {
      await book.stop();
    }
  });
});
