/**
 * The walk over the open executions of open jobs (jobs/open-executions.ts), which the rollout
 * engine's catch-up, the tracker's scan and the re-send after a store disruption share, on a
 * real embedded store with pages of 2: every job in the statuses asked, newest first, and each
 * of its executions whose command was sent, once; other jobs, finished executions and commands
 * not sent yet left out; a stop heard before the next page is read.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { jobsIn, OPEN_JOB_STATUSES, openExecutions, sentExecutionPages, type SentPage } from '../../src/jobs/open-executions.ts';
import { ACTIVE_JOB_STATUSES, type ExecutionRecord, type ExecutionStatus, type JobRecord, type JobStatus } from '../../src/store/state-store.ts';
import type { SqliteStore } from '../../src/store/sqlite-store.ts';
import { startTempStore } from '../helpers/sqlite.ts';

/** Pages taken at most: a walk that does not move on (its cursor lost) reads the same page for good. */
const MAX_PAGES = 200;

async function walk(pages: AsyncIterable<SentPage>): Promise<SentPage[]> {
  const out: SentPage[] = [];
  for await (const page of pages) {
    out.push(page);
    assert.ok(out.length <= MAX_PAGES, `the walk ends (it gave ${out.length} pages; a cursor not followed reads one page again and again)`);
  }
  return out;
}

const keys = (pages: SentPage[]) => pages.flatMap((p) => p.executions.map((e) => `${e.jobId}/${e.deviceId}`));

/** Each walked job's executions: the open ones whose command was sent are read, the others not. */
const ROWS: { device: string; status: ExecutionStatus; dispatched: boolean; sent: boolean }[] = [
  { device: 'd01', status: 'QUEUED', dispatched: true, sent: true },
  { device: 'd02', status: 'QUEUED', dispatched: false, sent: false }, // not sent yet
  { device: 'd03', status: 'IN_PROGRESS', dispatched: true, sent: true },
  { device: 'd04', status: 'IN_PROGRESS', dispatched: false, sent: true }, // a legacy job's row: reported on
  { device: 'd05', status: 'SUCCEEDED', dispatched: true, sent: false },
  { device: 'd06', status: 'FAILED', dispatched: true, sent: false },
  { device: 'd07', status: 'QUEUED', dispatched: true, sent: true },
  { device: 'd08', status: 'TIMED_OUT', dispatched: true, sent: false },
  { device: 'd09', status: 'CANCELED', dispatched: true, sent: false },
  { device: 'd10', status: 'QUEUED', dispatched: true, sent: true },
  { device: 'd11', status: 'IN_PROGRESS', dispatched: true, sent: true },
];
/** Open rows read a job: 7 (pages of 2: 4 pages, the last one of 1). */
const OPEN_ROWS = ROWS.filter((r) => r.status === 'QUEUED' || r.status === 'IN_PROGRESS').length;
const SENT = ROWS.filter((r) => r.sent).map((r) => r.device);

/** Jobs, oldest first (createdAt 1..): listed newest first. */
const JOBS: { jobId: string; status: JobStatus }[] = [
  { jobId: 'job-a', status: 'IN_PROGRESS' },
  { jobId: 'job-b', status: 'COMPLETED' }, // finished: never walked
  { jobId: 'job-c', status: 'SCHEDULED' },
  { jobId: 'job-d', status: 'CANCELED' }, // being stopped: walked among the open jobs, not the active ones
  { jobId: 'job-e', status: 'PAUSED' },
  { jobId: 'job-f', status: 'ABORTED' },
  { jobId: 'job-g', status: 'IN_PROGRESS' },
];

describe('the walk over open executions (open-executions.ts)', () => {
  let store: SqliteStore;
  let close: () => Promise<void>;

  before(async () => {
    ({ store, close } = await startTempStore('open-executions'));
    for (const [n, j] of JOBS.entries()) {
      const job: JobRecord = { jobId: j.jobId, artifactName: 'fw', artifactVersion: '2.0.0', status: j.status, createdAt: 1000 + n, spec: { targets: { devices: ROWS.map((r) => r.device) } } };
      const executions: ExecutionRecord[] = ROWS.map((r) => ({ jobId: j.jobId, deviceId: r.device, status: r.status, details: {}, queuedAt: 1000, updatedAt: 1000, version: 1, ...(r.dispatched ? { dispatchedAt: 1001 } : {}) }));
      await store.createJob(job, executions);
    }
  });
  after(async () => {
    await close();
  });

  it('gives every sent open execution of every job asked once, a page of a job at a time, newest job first', async () => {
    const pages = await walk(openExecutions(store, { jobStatuses: ACTIVE_JOB_STATUSES, pageSize: 2, omitSpec: true }));
    const active = JOBS.filter((j) => ACTIVE_JOB_STATUSES.includes(j.status)).map((j) => j.jobId).reverse();
    const expected = active.flatMap((jobId) => SENT.map((d) => `${jobId}/${d}`));
    assert.deepEqual(keys(pages), expected, 'the sent open executions of the active jobs (IN_PROGRESS, SCHEDULED, PAUSED), newest job first, devices in order, each once');
    const pagesPerJob = Math.ceil(OPEN_ROWS / 2);
    assert.equal(pages.length, active.length * pagesPerJob, `every page read is given (${pagesPerJob} a job of ${OPEN_ROWS} open rows, pages of 2), one whose rows were not sent too`);
    for (const jobId of active) {
      const own = pages.filter((p) => p.job.jobId === jobId);
      assert.deepEqual(own.map((p) => p.more), [...Array<boolean>(pagesPerJob - 1).fill(true), false], `job ${jobId}: more on every page but its last`);
    }
    assert.ok(pages.every((p) => p.job.spec === undefined), 'omitSpec: jobs read without their spec');
    assert.ok(pages.every((p) => p.executions.every((e) => e.status === 'QUEUED' || e.status === 'IN_PROGRESS')), 'no finished execution');
  });

  it('walks the jobs being stopped too when asked (OPEN_JOB_STATUSES), jobs read with their spec unless omitSpec', async () => {
    const pages = await walk(openExecutions(store, { jobStatuses: OPEN_JOB_STATUSES, pageSize: 2 }));
    const open = JOBS.filter((j) => j.status !== 'COMPLETED').map((j) => j.jobId).reverse();
    assert.deepEqual([...new Set(pages.map((p) => p.job.jobId))], open, 'every job but the COMPLETED one, CANCELED and ABORTED too, newest first');
    assert.equal(keys(pages).length, open.length * SENT.length, 'each sent open execution once');
    assert.ok(pages.every((p) => p.job.spec !== undefined), 'the specs read (the engine reads a continuous job from it)');
    const jobs: string[] = [];
    for await (const job of jobsIn(store, { statuses: ['COMPLETED'], pageSize: 2 })) jobs.push(job.jobId);
    assert.deepEqual(jobs, ['job-b'], 'jobsIn: only the statuses asked');
  });

  it('ends before the next page once stopped, a page of jobs or of executions, and tells which', async () => {
    const listed = { jobs: 0, executions: 0 };
    const counted = {
      listJobs: (o: Parameters<SqliteStore['listJobs']>[0]) => {
        listed.jobs++;
        return store.listJobs(o);
      },
      listJobExecutions: (id: string, o: Parameters<SqliteStore['listJobExecutions']>[1]) => {
        listed.executions++;
        return store.listJobExecutions(id, o);
      },
    };
    // stopped after the third page of executions: the first job's fourth is not read, nor any job after it
    let stop = false;
    const seen: SentPage[] = [];
    for await (const page of openExecutions(counted, { jobStatuses: ACTIVE_JOB_STATUSES, pageSize: 2, stopped: () => stop })) {
      seen.push(page);
      if (seen.length === 3) stop = true;
    }
    assert.equal(seen.length, 3, 'no page given after the stop');
    assert.equal(listed.executions, 3, 'no page of executions read after the stop');
    assert.equal(listed.jobs, 1, 'no page of jobs read after the stop');

    // stopped at the start: nothing read, not even a page of jobs (the tracker's scan)
    listed.jobs = listed.executions = 0;
    assert.deepEqual(await walk(openExecutions(counted, { jobStatuses: ACTIVE_JOB_STATUSES, pageSize: 2, stopped: () => true })), [], 'nothing given');
    assert.deepEqual(listed, { jobs: 0, executions: 0 }, 'nothing read when stopped before the first page of jobs');

    // stopBeforeJobs false (the disruption resync): a page of jobs is read, its first job told, then the stop heard
    listed.jobs = listed.executions = 0;
    const told: { pages: number; jobs: string[] } = { pages: 0, jobs: [] };
    const none = await walk(openExecutions(counted, { jobStatuses: ACTIVE_JOB_STATUSES, pageSize: 2, stopped: () => true, stopBeforeJobs: false, onJobs: () => told.pages++, onJob: (j) => told.jobs.push(j.jobId) }));
    assert.deepEqual(none, [], 'nothing given');
    assert.deepEqual(listed, { jobs: 1, executions: 0 }, 'the first page of jobs read, no executions');
    assert.deepEqual(told, { pages: 1, jobs: ['job-g'] }, 'the page of jobs told, and its first job, before the stop was heard');

    // one job's pages: true when the stop ended them, false when they all went through
    const job = (await store.getJob('job-a', { omitSpec: true }))!;
    const one = sentExecutionPages(store, job, { pageSize: 2, stopped: () => stop });
    stop = false;
    const first = await one.next();
    assert.equal(first.done, false, 'a first page');
    stop = true;
    assert.deepEqual(await one.next(), { done: true, value: true }, 'stopped before the second page: the result says so');
    const all = sentExecutionPages(store, job, { pageSize: 2 });
    let result: IteratorResult<SentPage, boolean>;
    let n = 0;
    while (!(result = await all.next()).done) assert.ok(++n <= MAX_PAGES, 'the pages end');
    assert.equal(result.value, false, 'not stopped: every page read');
    assert.equal(n, Math.ceil(OPEN_ROWS / 2), 'every page of the job');
  });
});
