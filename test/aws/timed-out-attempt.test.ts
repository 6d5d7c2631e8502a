/**
 * An attempt that TIMED_OUT, its retry queued and not sent (the job paused), over MQTT with a
 * real server (its embedded broker over TCP, its SQLite store) and mqtt.js on the
 * `$aws/things/<thing>/jobs/...` topics.
 *
 * While the timeout's take-back of the attempt's command is owed (the store refused the stay,
 * a 5xx: tried again every few seconds, jobs/pending-retract.ts), the command is still the
 * thing's and DescribeJobExecution answers the attempt; its versionNumber is the one it ended
 * at, not the retry record's, which each new try of the take-back moves: sent back as
 * expectedVersion it is no VersionMismatch. Once the command is taken back, the attempt is
 * answered as it ended, TIMED_OUT, with that same versionNumber, not ResourceNotFound.
 *
 * The refusal is the real store's: a trigger in the server's SQLite file (opened beside it,
 * as WAL allows) aborts any write of a shadow that holds a stay (`<jobId>.cancel`), which the
 * store reports as a failure of its own (500), as it would a disk or database fault; the
 * engine takes a 429 from the replica the same way (pending-retract.ts, isTransient).
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { eventually } from '../helpers/cli.ts';
import { TestClient, connectDevice } from '../helpers/mqtt-client.ts';
import { apiJson, startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact } from './support.ts';

const thing = 'to-1';
const jobs = (rest: string) => `$aws/things/${thing}/jobs/${rest}`;

describe('AWS Jobs: an attempt that timed out, its retry not sent yet', () => {
  let ts: TestServer;
  let dev: TestClient;
  let db: Database.Database;

  before(async () => {
    ts = await startTestServer();
    dev = await connectDevice(ts, thing);
    await dev.subscribe(jobs('#'), `$aws/things/${thing}/shadow/update/+`);
    await dev.request(`$aws/things/${thing}/shadow/update`, { state: { reported: { software: { name: 'fw', version: '1.0.0', status: 'IDLE' } } } });
    await addArtifact(ts, '1.0.0');
    await addArtifact(ts, '2.0.0');
    db = new Database(path.join(ts.dataDir, 'updraft.db'));
  });
  /** The device-side job id the thing is asked for (desired.software.jobId). */
  const askedFor = async () => ((await ts.server.store.getShadow(thing, ''))?.state.desired?.software as { jobId?: string } | undefined)?.jobId;
  after(async () => {
    db?.close();
    await dev.end();
    await ts.close();
  });

  it('keeps the versionNumber it ended at while its take-back is owed, and is answered TIMED_OUT once taken back', async () => {
    const created = await apiJson(ts, 'POST', '/api/v1/jobs', { artifact: 'fw@2.0.0', targets: { devices: [thing] }, timeouts: { inProgressSeconds: 2 }, retries: { limit: 1, on: ['TIMED_OUT'] } });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const jobId = created.body.job.jobId as string;
    await dev.next((m) => m.topic === jobs('notify-next') && m.body.execution?.jobId === jobId);
    const started = await dev.request(jobs('start-next'), {});
    assert.equal(started.body.execution?.executionNumber, 1, JSON.stringify(started.body));
    // the retry is to wait: not sent while the job is paused
    assert.equal((await apiJson(ts, 'POST', `/api/v1/jobs/${jobId}/pause`)).status, 200);
    // the store refuses the stay that takes the command back
    db.exec(`CREATE TRIGGER refuse_stay BEFORE UPDATE ON shadows WHEN NEW.state LIKE '%.cancel%' BEGIN SELECT RAISE(ABORT, 'test: the stay is refused'); END`);

    const retry = await eventually(async () => {
      const e = await ts.server.store.getExecution(jobId, thing);
      return e?.status === 'QUEUED' && e.attempt === 2 ? e : undefined;
    }, 20_000, 'the timeout and its retry');
    assert.deepEqual([retry.dispatchedAt, retry.details.retractPending], [undefined, jobId], 'the retry is not sent and owes the take-back');
    assert.equal(await askedFor(), jobId, 'the thing is still asked for attempt 1');

    const described = await dev.request(jobs(`${jobId}/get`), { includeJobDocument: false });
    assert.equal(described.topic, jobs(`${jobId}/get/accepted`), JSON.stringify(described.body));
    const seen = described.body.execution.versionNumber as number;
    assert.equal(described.body.execution.executionNumber, 1, JSON.stringify(described.body));
    // the take-back is tried again (every 5 s), and each try writes the retry's record
    await eventually(async () => ((await ts.server.store.getExecution(jobId, thing))!.version > retry.version ? true : undefined), 20_000, 'the record written again');
    const again = await dev.request(jobs(`${jobId}/get`), { includeJobDocument: false });
    assert.equal(again.body.execution?.versionNumber, seen, 'the attempt keeps its versionNumber while the retry record moves');

    // the device, still asked for attempt 1, sends back the versionNumber it read
    const update = await dev.request(jobs(`${jobId}/update`), { status: 'IN_PROGRESS', statusDetails: { phase: 'DOWNLOADING' }, expectedVersion: seen, includeJobExecutionState: true });
    assert.equal(update.topic, jobs(`${jobId}/update/accepted`), JSON.stringify(update.body));
    assert.equal(update.body.executionState.versionNumber, seen, JSON.stringify(update.body));

    // the store takes the stay again: the command is taken back at the next try
    db.exec('DROP TRIGGER refuse_stay');
    await eventually(async () => ((await askedFor()) === `${jobId}.cancel` ? true : undefined), 20_000, 'the command taken back (a stay on 1.0.0)');
    // the stay is written, then the execution's retractPending cleared: a second write (a CI
    // run under load read the row between the two)
    const e = await eventually(async () => {
      const x = await ts.server.store.getExecution(jobId, thing);
      return x?.details.retractPending === undefined ? x : undefined;
    }, 20_000, 'the take-back no longer owed');
    assert.deepEqual([e?.status, e?.attempt, e?.dispatchedAt, e?.details.retractPending], ['QUEUED', 2, undefined, undefined], 'the retry still waits, nothing owed');

    const ended = await dev.request(jobs(`${jobId}/get`), { includeJobDocument: false });
    assert.equal(ended.topic, jobs(`${jobId}/get/accepted`), JSON.stringify(ended.body));
    const x = ended.body.execution;
    assert.deepEqual([x.jobId, x.executionNumber, x.status, x.versionNumber, x.startedAt !== undefined, x.jobDocument], [jobId, 1, 'TIMED_OUT', seen, true, undefined], JSON.stringify(ended.body));
    // the retry is not the thing's until it is sent
    const second = await dev.request(jobs(`${jobId}/get`), { executionNumber: 2 });
    assert.equal(second.body.code, 'ResourceNotFound', JSON.stringify(second.body));
    const pending = await dev.request(jobs('get'), {});
    assert.deepEqual([pending.body.inProgressJobs, pending.body.queuedJobs], [[], []], JSON.stringify(pending.body));
    // an update of it is refused, about the attempt as it ended
    const late = await dev.request(jobs(`${jobId}/update`), { status: 'SUCCEEDED', expectedVersion: seen });
    assert.deepEqual([late.body.code, late.body.executionState], ['InvalidStateTransition', { status: 'TIMED_OUT', versionNumber: seen }], JSON.stringify(late.body));
  });
});
