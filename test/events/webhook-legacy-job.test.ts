/**
 * A job made before rollouts (no spec, as a database upgraded from then holds it) completes
 * through the engine's older path, and its completion is posted like a rollout's: a real
 * server with `--webhook-url`, a real HTTP receiver, a real agent, the real SQLite store.
 *
 * The job is created through the API while its device is offline (its command is written to
 * the shadow), the server stopped, and the row turned into what the upgrade left of such a
 * job (no spec, progress, update time or version); after the restart the agent comes online,
 * installs, and the job's last execution ending completes it.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { UpdateAgent } from '../../src/agent/agent.ts';
import type { WebhookDelivery } from '../../src/events/webhook-notifier.ts';
import { eventually } from '../helpers/cli.ts';
import { startWebhookReceiver, type WebhookReceiver } from '../helpers/webhook-receiver.ts';
import { asPreRolloutJob } from '../helpers/legacy-job.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact, outcome, startAgent } from '../security/support.ts';

describe('webhooks of a job made before rollouts', () => {
  let receiver: WebhookReceiver;
  let ts: TestServer | undefined;
  let root: string;
  let agent: UpdateAgent | undefined;
  const got: WebhookDelivery[] = [];

  before(async () => {
    receiver = await startWebhookReceiver(got);
    root = await mkdtemp(path.join(os.tmpdir(), 'updraft-hook-legacy-'));
  });
  after(async () => {
    await agent?.stop();
    await ts?.close();
    await receiver.close();
    await rm(root, { recursive: true, force: true });
  });

  it('its completion is posted (job.state COMPLETED, from IN_PROGRESS), as a rollout completing is', async () => {
    const url = receiver.url;
    ts = await startTestServer({ flags: { 'webhook-url': url } });
    await addArtifact(ts, '2.0.0', randomBytes(5000));
    const secret = await registerDevice(ts, 'old-1');
    const res = await fetch(`${ts.httpUrl}/api/v1/jobs`, { method: 'POST', headers: { authorization: `Bearer ${ts.token}`, 'content-type': 'application/json' }, body: JSON.stringify({ artifact: 'fw@2.0.0', targets: { devices: ['old-1'] } }) });
    assert.equal(res.status, 201, await res.clone().text());
    const { jobId } = ((await res.json()) as { job: { jobId: string } }).job;
    const store = ts.server.store;
    await eventually(async () => ((await store.getExecution(jobId, 'old-1'))?.dispatchedAt !== undefined ? true : undefined), 15_000, 'the command written');
    await eventually(async () => (got.some((d) => d.job.jobId === jobId) ? true : undefined), 15_000, 'its start posted');
    await ts.stop();

    // what a database upgraded from before rollouts holds of a job running then

    asPreRolloutJob(ts.dataDir, jobId);
    got.length = 0;
    ts = await startTestServer({ dataDir: ts.dataDir, flags: { 'webhook-url': url } });
    assert.equal((await ts.server.store.getJob(jobId))?.spec, undefined, 'a job without a spec');
    const started = await startAgent(ts, root, 'old-1', { username: 'old-1', password: secret });
    agent = started.agent;
    assert.equal((await outcome(started.finished, jobId)).status, 'SUCCESS');
    const completed = await eventually(async () => ((await ts!.server.store.getJob(jobId))?.status === 'COMPLETED' ? true : undefined), 15_000, 'the job COMPLETED');
    assert.ok(completed);
    const posted = await eventually(async () => got.find((d) => d.job.jobId === jobId && d.job.status === 'COMPLETED'), 15_000, 'its completion posted').catch(() => undefined);
    assert.ok(posted, `no COMPLETED delivery; got ${JSON.stringify(got)}`);
    assert.equal(posted.type, 'job.state');
    assert.deepEqual({ status: posted.job.status, previousStatus: posted.job.previousStatus, wave: posted.job.wave, waves: posted.job.waves }, { status: 'COMPLETED', previousStatus: 'IN_PROGRESS', wave: 1, waves: 1 });
    assert.equal(got.filter((d) => d.job.jobId === jobId).length, 1, 'posted once, nothing else of it after the restart');
    // the record now tells when it ended, as a rollout's does
    const job = await ts.server.store.getJob(jobId);
    assert.equal(typeof (job?.progress as { finishedAt?: unknown } | undefined)?.finishedAt, 'number');
  });
});
