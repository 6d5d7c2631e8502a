/**
 * A job made before rollouts (no spec, no progress, as a database upgraded from then holds it)
 * that is canceled keeps its count of devices: the job list's summary (`progress.total`, what
 * the dashboard's list shows) counts its executions, as its completion does (bdfc583). Before,
 * the cancel wrote the progress it found, none, and the job was listed with 0 devices. Real
 * server, real SQLite, real HTTP; the row is made spec-less while the server is stopped.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { asPreRolloutJob } from '../helpers/legacy-job.ts';
import { apiJson, registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact } from '../security/support.ts';

describe('a job made before rollouts, canceled', () => {
  let ts: TestServer | undefined;
  after(async () => ts?.close());

  it('is listed with its devices, and its view counts them', async () => {
    ts = await startTestServer();
    await addArtifact(ts, '2.0.0', randomBytes(1000));
    const devices = ['old-1', 'old-2', 'old-3'];
    for (const d of devices) await registerDevice(ts, d);
    const made = await apiJson(ts, 'POST', '/api/v1/jobs', { artifact: 'fw@2.0.0', targets: { devices } });
    assert.equal(made.status, 201, JSON.stringify(made.body));
    const jobId = made.body.job.jobId as string;
    await ts.stop();
    // what a database upgraded from before rollouts holds of a job running then
    asPreRolloutJob(ts.dataDir, jobId);
    ts = await startTestServer({ dataDir: ts.dataDir });
    assert.equal((await ts.server.store.getJob(jobId))?.spec, undefined, 'a job without a spec');

    const canceled = await apiJson(ts, 'POST', `/api/v1/jobs/${jobId}/cancel`);
    assert.equal(canceled.status, 200, JSON.stringify(canceled.body));
    assert.equal(canceled.body.job.status, 'CANCELED');
    assert.equal(canceled.body.total, devices.length);
    const listed = (await apiJson(ts, 'GET', '/api/v1/jobs')).body.items.find((j: { jobId: string }) => j.jobId === jobId);
    assert.equal(listed?.status, 'CANCELED');
    assert.equal(listed?.progress?.total, devices.length, `the job list's summary: ${JSON.stringify(listed?.progress)}`);
    assert.equal(typeof listed?.progress?.finishedAt, 'number');
    const view = await apiJson(ts, 'GET', `/api/v1/jobs/${jobId}`);
    assert.equal(view.body.total, devices.length);
    assert.equal(Object.values(view.body.counts as Record<string, number>).reduce((a, b) => a + b, 0), devices.length);
  });
});
