/**
 * The versionNumber of an attempt that ended FAILED while its retry waits to be sent, over
 * MQTT with a real server. The execution record is then the retry's (attempt 2, QUEUED, not
 * sent: the plan's rate holds it), and its version moves with the retry's writes; attempt 1's
 * is the version it ended at, the one its FAILED update answered. A device that reads
 * versionNumber from DescribeJobExecution and sends it back as expectedVersion is answered
 * about the execution (InvalidStateTransition: it is FAILED, a terminal state), never VersionMismatch.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { eventually } from '../helpers/cli.ts';
import { TestClient, connectDevice } from '../helpers/mqtt-client.ts';
import { apiJson, startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact } from './support.ts';

const jobs = (thing: string, rest: string) => `$aws/things/${thing}/jobs/${rest}`;

describe('AWS Jobs: the version of a FAILED attempt whose retry is not sent yet', () => {
  let ts: TestServer;
  let dev: TestClient;

  before(async () => {
    ts = await startTestServer();
    dev = await connectDevice(ts, 'fv-1');
    await dev.subscribe(jobs('fv-1', '#'), '$aws/things/fv-1/shadow/update/+');
    await dev.request('$aws/things/fv-1/shadow/update', { state: { reported: { software: { name: 'fw', version: '1.0.0', status: 'IDLE' } } } });
    await addArtifact(ts, '2.0.0');
  });
  after(async () => {
    await dev.end();
    await ts.close();
  });

  it('is the one its FAILED update answered; sent back as expectedVersion it is no VersionMismatch', async () => {
    // one command a minute: the retry waits for the next minute of the wave
    const created = await apiJson(ts, 'POST', '/api/v1/jobs', { artifact: 'fw@2.0.0', targets: { devices: ['fv-1'] }, retries: { limit: 1, on: ['FAILED'] }, plan: { waves: [{ percent: 100 }], maxPerMinute: 1 } });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const jobId = created.body.job.jobId as string;
    await dev.next((m) => m.topic === jobs('fv-1', 'notify-next') && m.body.execution?.jobId === jobId);
    const started = await dev.request(jobs('fv-1', 'start-next'), {});
    const failed = await dev.request(jobs('fv-1', `${jobId}/update`), { status: 'FAILED', expectedVersion: started.body.execution.versionNumber, includeJobExecutionState: true });
    assert.equal(failed.topic, jobs('fv-1', `${jobId}/update/accepted`), JSON.stringify(failed.body));
    const retry = await ts.server.store.getExecution(jobId, 'fv-1');
    assert.deepEqual([retry?.status, retry?.attempt, retry?.dispatchedAt], ['QUEUED', 2, undefined], 'the retry is queued, not sent');

    const described = await dev.request(jobs('fv-1', `${jobId}/get`), { includeJobDocument: false });
    const seen = described.body.execution?.versionNumber as number;
    assert.deepEqual([described.body.execution?.executionNumber, described.body.execution?.status, seen], [1, 'FAILED', failed.body.executionState.versionNumber], JSON.stringify(described.body));

    // the retry's record moves on meanwhile: the device's late report of attempt 1's SUCCESS
    // through its shadow is kept with that attempt's outcome, a write of the record
    await dev.request('$aws/things/fv-1/shadow/update', { state: { reported: { software: { name: 'fw', version: '2.0.0', status: 'SUCCESS', jobId } } } });
    await eventually(async () => ((await ts.server.store.getExecution(jobId, 'fv-1'))!.version > retry!.version ? true : undefined), 10_000, 'the record written again');

    const update = await dev.request(jobs('fv-1', `${jobId}/update`), { status: 'SUCCEEDED', expectedVersion: seen });
    assert.deepEqual([update.topic, update.body.code, update.body.executionState], [jobs('fv-1', `${jobId}/update/rejected`), 'InvalidStateTransition', { status: 'FAILED', versionNumber: seen }], JSON.stringify(update.body));
    const again = await dev.request(jobs('fv-1', `${jobId}/get`), { includeJobDocument: false });
    assert.deepEqual([again.body.execution?.status, again.body.execution?.versionNumber], ['FAILED', seen], 'attempt 1 is as it ended');
  });
});
