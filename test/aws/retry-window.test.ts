/**
 * AWS Jobs between a FAILED attempt and the sending of its retry, over MQTT with a real
 * server: the execution record is the retry's (attempt 2, QUEUED, not sent: the plan's rate
 * holds it), the thing's command still attempt 1's. Attempt 1 is over: it must stay FAILED,
 * off the pending list and not startable, whatever the device reports meanwhile.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { TestClient, connectDevice } from '../helpers/mqtt-client.ts';
import { apiJson, startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact } from './support.ts';

const jobs = (thing: string, rest: string) => `$aws/things/${thing}/jobs/${rest}`;

describe('AWS Jobs: an attempt whose retry is not sent yet', () => {
  let ts: TestServer;
  let dev: TestClient;

  before(async () => {
    ts = await startTestServer();
    dev = await connectDevice(ts, 'rw-1');
    await dev.subscribe(jobs('rw-1', '#'), '$aws/things/rw-1/shadow/update/+');
    await dev.request('$aws/things/rw-1/shadow/update', { state: { reported: { software: { name: 'fw', version: '1.0.0', status: 'IDLE' } } } });
    await addArtifact(ts, '2.0.0');
  });
  after(async () => {
    await dev.end();
    await ts.close();
  });

  it('stays FAILED, not pending, not startable, when the device reports afresh', async () => {
    // one command a minute: the retry waits for the next minute of the wave
    const created = await apiJson(ts, 'POST', '/api/v1/jobs', { artifact: 'fw@2.0.0', targets: { devices: ['rw-1'] }, retries: { limit: 1, on: ['FAILED'] }, plan: { waves: [{ percent: 100 }], maxPerMinute: 1 } });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const jobId = created.body.job.jobId as string;
    await dev.next((m) => m.topic === jobs('rw-1', 'notify-next') && m.body.execution?.jobId === jobId);
    assert.equal((await dev.request(jobs('rw-1', 'start-next'), {})).body.execution?.jobId, jobId);
    const failed = await dev.request(jobs('rw-1', `${jobId}/update`), { status: 'FAILED', statusDetails: { reason: 'disk full' } });
    assert.equal(failed.topic, jobs('rw-1', `${jobId}/update/accepted`), JSON.stringify(failed.body));
    const record = await ts.server.store.getExecution(jobId, 'rw-1');
    assert.deepEqual([record?.status, record?.attempt, record?.dispatchedAt], ['QUEUED', 2, undefined], 'the retry is queued, not sent (the rate allows its sending a minute after the first)');

    // the device reports its software afresh: its report is about no job
    const reset = await dev.request('$aws/things/rw-1/shadow/update', { state: { reported: { software: { name: 'fw', version: '1.0.0', status: 'IDLE', jobId: null } } } });
    assert.equal(reset.topic, '$aws/things/rw-1/shadow/update/accepted', JSON.stringify(reset.body));

    const pending = await dev.request(jobs('rw-1', 'get'), {});
    assert.deepEqual([pending.body.inProgressJobs, pending.body.queuedJobs], [[], []], JSON.stringify(pending.body));
    const start = await dev.request(jobs('rw-1', 'start-next'), {});
    assert.equal(start.body.execution, undefined, `attempt 1 was started again: ${JSON.stringify(start.body).slice(0, 300)}`);
    const described = await dev.request(jobs('rw-1', `${jobId}/get`), { includeJobDocument: false });
    assert.deepEqual([described.body.execution?.executionNumber, described.body.execution?.status], [1, 'FAILED'], JSON.stringify(described.body));
    const late = await dev.request(jobs('rw-1', `${jobId}/update`), { status: 'SUCCEEDED', executionNumber: 1 });
    assert.deepEqual([late.topic, late.body.code], [jobs('rw-1', `${jobId}/update/rejected`), 'InvalidStateTransition'], JSON.stringify(late.body));
    // nothing was written: the device's report and the retry's record are as they were
    const sw = (await ts.server.store.getShadow('rw-1', ''))?.state.reported?.software as Record<string, unknown>;
    assert.deepEqual([sw.status, sw.jobId, sw.version], ['IDLE', undefined, '1.0.0']);
    const still = await ts.server.store.getExecution(jobId, 'rw-1');
    assert.deepEqual([still?.status, still?.attempt, still?.version], ['QUEUED', 2, record?.version]);
  });
});
