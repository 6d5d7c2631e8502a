/**
 * AWS Jobs after `DELETE /api/v1/jobs/{id}`, over MQTT with a real server: the job's
 * executions are gone, so it is no job of the thing any more (as AWS's DeleteJob takes them
 * away), even though its finished command stays in the thing's shadow. It must not come back
 * onto the pending list, startable, when the device's report moves off it.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { eventually } from '../helpers/cli.ts';
import { TestClient, connectDevice } from '../helpers/mqtt-client.ts';
import { apiJson, startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact, deploy } from './support.ts';

const jobs = (thing: string, rest: string) => `$aws/things/${thing}/jobs/${rest}`;

describe('AWS Jobs: a deleted job', () => {
  let ts: TestServer;
  let dev: TestClient;

  before(async () => {
    ts = await startTestServer();
    dev = await connectDevice(ts, 'dj-1');
    await dev.subscribe(jobs('dj-1', '#'), '$aws/things/dj-1/shadow/update/+');
    await dev.request('$aws/things/dj-1/shadow/update', { state: { reported: { software: { name: 'fw', version: '1.0.0', status: 'IDLE' } } } });
    await addArtifact(ts, '2.0.0');
    await addArtifact(ts, '3.0.0');
  });
  after(async () => {
    await dev.end();
    await ts.close();
  });

  it('is not pending, startable or updatable once deleted, whatever the device reports since', async () => {
    const jobId = await deploy(ts, ['dj-1'], 'fw@2.0.0');
    await dev.next((m) => m.topic === jobs('dj-1', 'notify-next') && m.body.execution?.jobId === jobId);
    assert.equal((await dev.request(jobs('dj-1', 'start-next'), {})).body.execution?.jobId, jobId);
    const failed = await dev.request(jobs('dj-1', `${jobId}/update`), { status: 'FAILED', statusDetails: { reason: 'disk full' } });
    assert.equal(failed.topic, jobs('dj-1', `${jobId}/update/accepted`), JSON.stringify(failed.body));
    await eventually(async () => ((await apiJson(ts, 'GET', `/api/v1/jobs/${jobId}`)).body.job?.status === 'COMPLETED' ? true : undefined), 10_000, 'the job completed');
    const del = await apiJson(ts, 'DELETE', `/api/v1/jobs/${jobId}`);
    assert.equal(del.status, 200, JSON.stringify(del.body));

    // the device reports its software afresh (a re-flash, a reset): its report is about no job
    const reset = await dev.request('$aws/things/dj-1/shadow/update', { state: { reported: { software: { name: 'fw', version: '1.0.0', status: 'IDLE', jobId: null } } } });
    assert.equal(reset.topic, '$aws/things/dj-1/shadow/update/accepted', JSON.stringify(reset.body));

    const pending = await dev.request(jobs('dj-1', 'get'), {});
    assert.deepEqual([pending.body.inProgressJobs, pending.body.queuedJobs], [[], []], JSON.stringify(pending.body));
    const next = await dev.request(jobs('dj-1', '$next/get'), {});
    assert.equal(next.body.execution, undefined, JSON.stringify(next.body));
    const start = await dev.request(jobs('dj-1', 'start-next'), {});
    assert.equal(start.topic, jobs('dj-1', 'start-next/accepted'));
    assert.equal(start.body.execution, undefined, `the deleted job was started again: ${JSON.stringify(start.body).slice(0, 300)}`);
    const described = await dev.request(jobs('dj-1', `${jobId}/get`), {});
    assert.deepEqual([described.topic, described.body.code], [jobs('dj-1', `${jobId}/get/rejected`), 'ResourceNotFound']);
    const update = await dev.request(jobs('dj-1', `${jobId}/update`), { status: 'IN_PROGRESS' });
    assert.deepEqual([update.topic, update.body.code], [jobs('dj-1', `${jobId}/update/rejected`), 'ResourceNotFound']);
    // nothing was written for it
    const sw = (await ts.server.store.getShadow('dj-1', ''))?.state.reported?.software as Record<string, unknown>;
    assert.deepEqual([sw.status, sw.jobId], ['IDLE', undefined]);

    // the next job is the thing's, as usual
    const second = await deploy(ts, ['dj-1'], 'fw@3.0.0');
    await dev.next((m) => m.topic === jobs('dj-1', 'notify-next') && m.body.execution?.jobId === second);
    const started = await dev.request(jobs('dj-1', 'start-next'), {});
    assert.deepEqual([started.body.execution?.jobId, started.body.execution?.status], [second, 'IN_PROGRESS']);
  });
});
