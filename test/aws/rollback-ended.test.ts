/**
 * AWS Jobs: a rollback (`<jobId>.rollback`) that ended, while it is still the thing's command,
 * over MQTT with a real server. Its end is recorded in its job's execution (details.control);
 * it must stay as it ended, off the pending list and not startable, when the device's report
 * moves off it (its software reported afresh).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { eventually } from '../helpers/cli.ts';
import { TestClient, connectDevice } from '../helpers/mqtt-client.ts';
import { apiJson, startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact } from './support.ts';

const jobs = (thing: string, rest: string) => `$aws/things/${thing}/jobs/${rest}`;

describe('AWS Jobs: a rollback that ended', () => {
  let ts: TestServer;
  let dev: TestClient;

  before(async () => {
    ts = await startTestServer();
    dev = await connectDevice(ts, 're-1');
    await dev.subscribe(jobs('re-1', '#'), '$aws/things/re-1/shadow/update/+');
    await dev.request('$aws/things/re-1/shadow/update', { state: { reported: { software: { name: 'fw', version: '1.0.0', status: 'IDLE' } } } });
    await addArtifact(ts, '1.0.0');
    await addArtifact(ts, '2.0.0');
  });
  after(async () => {
    await dev.end();
    await ts.close();
  });

  it('stays SUCCEEDED, not pending, not startable, when the device reports afresh', async () => {
    const created = await apiJson(ts, 'POST', '/api/v1/jobs', { artifact: 'fw@2.0.0', targets: { devices: ['re-1'] }, abort: { rules: [{ type: 'FAILED', thresholdPercent: 50, minFinished: 1 }], rollback: true } });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const jobId = created.body.job.jobId as string;
    await dev.next((m) => m.topic === jobs('re-1', 'notify-next') && m.body.execution?.jobId === jobId);
    await dev.request(jobs('re-1', 'start-next'), {});
    assert.match((await dev.request(jobs('re-1', `${jobId}/update`), { status: 'FAILED' })).topic, /\/accepted$/);
    const rollbackId = `${jobId}.rollback`;
    await dev.next((m) => m.topic === jobs('re-1', 'notify-next') && m.body.execution?.jobId === rollbackId, 15_000);
    assert.equal((await dev.request(jobs('re-1', 'start-next'), {})).body.execution?.jobId, rollbackId);
    const done = await dev.request(jobs('re-1', `${rollbackId}/update`), { status: 'SUCCEEDED' });
    assert.equal(done.topic, jobs('re-1', `${rollbackId}/update/accepted`), JSON.stringify(done.body));
    await eventually(async () => ((await ts.server.store.getExecution(jobId, 're-1'))?.details.control as { status?: string } | undefined)?.status === 'SUCCESS' || undefined, 5000, 'the rollback recorded');
    const before = await ts.server.store.getExecution(jobId, 're-1');

    // the device reports its software afresh: its report is about no job
    const reset = await dev.request('$aws/things/re-1/shadow/update', { state: { reported: { software: { name: 'fw', version: '1.0.0', status: 'IDLE', jobId: null } } } });
    assert.equal(reset.topic, '$aws/things/re-1/shadow/update/accepted', JSON.stringify(reset.body));

    const pending = await dev.request(jobs('re-1', 'get'), {});
    assert.deepEqual([pending.body.inProgressJobs, pending.body.queuedJobs], [[], []], JSON.stringify(pending.body));
    const start = await dev.request(jobs('re-1', 'start-next'), {});
    assert.equal(start.body.execution, undefined, `the rollback was started again: ${JSON.stringify(start.body).slice(0, 300)}`);
    const described = await dev.request(jobs('re-1', `${rollbackId}/get`), { includeJobDocument: false });
    assert.equal(described.body.execution?.status, 'SUCCEEDED', JSON.stringify(described.body));
    const late = await dev.request(jobs('re-1', `${rollbackId}/update`), { status: 'IN_PROGRESS' });
    assert.deepEqual([late.topic, late.body.code], [jobs('re-1', `${rollbackId}/update/rejected`), 'InvalidStateTransition'], JSON.stringify(late.body));
    // nothing was written
    const sw = (await ts.server.store.getShadow('re-1', ''))?.state.reported?.software as Record<string, unknown>;
    assert.deepEqual([sw.status, sw.jobId], ['IDLE', undefined]);
    assert.equal((await ts.server.store.getExecution(jobId, 're-1'))?.version, before?.version);
  });
});
