/**
 * `reported.software.jobVersion` holds only in the report that carries it (review, 2026-12-06).
 * The agent's re-report of an older job's SUCCESS, after the device moved on, names the version
 * that job installed; the shadow merges leaf by leaf, so a later report that did not send the
 * key (the AWS jobs door's, an agent from before the field) kept it, and the next job's SUCCESS
 * was judged against it: FAILED, "device reported SUCCESS but runs 2.0.0, not 2.0.0". The
 * replica now removes it from every report that does not name it. A real server, devices over
 * MQTT (its AWS jobs door, and the `state/{id}/update` topic as an older agent writes it).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { eventually } from '../helpers/cli.ts';
import { TestClient, connectDevice } from '../helpers/mqtt-client.ts';
import { apiJson, startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact } from '../aws/support.ts';

const jobs = (thing: string, rest: string) => `$aws/things/${thing}/jobs/${rest}`;
/** What the agent's re-report of an older job's SUCCESS leaves in the shadow (finishedReport, moved on). */
const movedOn = { name: 'fw', version: '1.0.0', status: 'SUCCESS', jobId: 'older-job', jobVersion: '0.9.0', error: null, progress: null, waiting: null };

async function ended(ts: TestServer, jobId: string, deviceId: string) {
  return eventually(async () => {
    const x = await ts.server.store.getExecution(jobId, deviceId);
    return x && x.status !== 'QUEUED' && x.status !== 'IN_PROGRESS' ? x : undefined;
  }, 10_000, 'the execution ends');
}

describe('a jobVersion left in the shadow by a re-report', () => {
  let ts: TestServer;
  before(async () => {
    ts = await startTestServer();
    await addArtifact(ts, '2.0.0');
  });
  after(async () => {
    await ts.close();
  });

  it('is gone after the AWS jobs door reports the next job, which ends SUCCEEDED', async () => {
    const dev: TestClient = await connectDevice(ts, 'sj-1');
    try {
      await dev.subscribe(jobs('sj-1', '#'), '$aws/things/sj-1/shadow/update/+');
      await dev.request('$aws/things/sj-1/shadow/update', { state: { reported: { software: movedOn } } });
      const created = await apiJson(ts, 'POST', '/api/v1/jobs', { artifact: 'fw@2.0.0', targets: { devices: ['sj-1'] } });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      const jobId = created.body.job.jobId as string;
      await dev.next((m) => m.topic === jobs('sj-1', 'notify-next') && m.body.execution?.jobId === jobId);
      const started = await dev.request(jobs('sj-1', 'start-next'), {});
      const done = await dev.request(jobs('sj-1', `${jobId}/update`), { status: 'SUCCEEDED', expectedVersion: started.body.execution.versionNumber });
      assert.match(done.topic, /\/accepted$/, JSON.stringify(done.body));
      const e = await ended(ts, jobId, 'sj-1');
      assert.equal(e.status, 'SUCCEEDED', String(e.details.error));
      const sw = (await ts.server.store.getShadow('sj-1', ''))?.state.reported?.software as Record<string, unknown> | undefined;
      assert.equal(sw?.jobId, jobId);
      assert.equal('jobVersion' in (sw ?? {}), false, `no jobVersion beside the new job: ${JSON.stringify(sw)}`);
    } finally {
      await dev.end();
    }
  });

  it('is gone after an older agent (no jobVersion key) reports the next job, which ends SUCCEEDED', async () => {
    const dev: TestClient = await connectDevice(ts, 'oa-1');
    const upd = 'state/oa-1/update';
    try {
      await dev.subscribe('state/oa-1/update/+', 'state/oa-1/update/delta');
      await dev.request(upd, { state: { reported: { software: movedOn } } });
      const created = await apiJson(ts, 'POST', '/api/v1/jobs', { artifact: 'fw@2.0.0', targets: { devices: ['oa-1'] } });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      const jobId = created.body.job.jobId as string;
      await dev.next((m) => m.topic === 'state/oa-1/update/delta' && (m.body.state?.software as { jobId?: string } | undefined)?.jobId === jobId);
      await dev.request(upd, { state: { reported: { software: { name: 'fw', version: '1.0.0', sha256: null, size: null, status: 'DOWNLOADING', progress: 0, error: null, waiting: null, jobId } } } });
      const during = (await ts.server.store.getShadow('oa-1', ''))?.state.reported?.software as Record<string, unknown> | undefined;
      assert.equal('jobVersion' in (during ?? {}), false, `removed by the first report that does not name it: ${JSON.stringify(during)}`);
      await dev.request(upd, { state: { reported: { software: { name: 'fw', version: '2.0.0', sha256: null, size: null, status: 'SUCCESS', progress: null, error: null, waiting: null, jobId } } } });
      const e = await ended(ts, jobId, 'oa-1');
      assert.equal(e.status, 'SUCCEEDED', String(e.details.error));
    } finally {
      await dev.end();
    }
  });
});
