/**
 * AWS Jobs `stepTimeoutInMinutes: -1` on UpdateJobExecution, over MQTT with a real server:
 * "A value of -1 is also valid and will cancel the current step timer (created by an earlier
 * use of UpdateJobExecutionRequest)" (AWS IoT API reference, UpdateJobExecution). The update
 * is recorded, the step timer is gone from the execution's deadline, the job's own timeouts
 * stay; StartNextPendingJobExecution takes 1 to 10080 only.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { TestClient, connectDevice } from '../helpers/mqtt-client.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact } from './support.ts';

const jobs = (thing: string, rest: string) => `$aws/things/${thing}/jobs/${rest}`;

describe('AWS Jobs stepTimeoutInMinutes -1', () => {
  let ts: TestServer;
  let dev: TestClient;

  before(async () => {
    ts = await startTestServer();
    dev = await connectDevice(ts, 'st-1');
    await dev.subscribe(jobs('st-1', '#'), '$aws/things/st-1/shadow/update/+');
    await dev.request('$aws/things/st-1/shadow/update', { state: { reported: { software: { name: 'fw', version: '1.0.0', status: 'IDLE' } } } });
    await addArtifact(ts, '2.0.0');
  });
  after(async () => {
    await dev.end();
    await ts.close();
  });

  it('cancels the step timer an earlier update set; the job\'s own in-progress timeout stays', async () => {
    const res = await fetch(`${ts.httpUrl}/api/v1/jobs`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ts.token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ artifact: 'fw@2.0.0', targets: { devices: ['st-1'] }, timeouts: { inProgressSeconds: 7200 } }),
    });
    assert.equal(res.status, 201, await res.clone().text());
    const jobId = ((await res.json()) as { job: { jobId: string } }).job.jobId;
    await dev.next((m) => m.topic === jobs('st-1', 'notify-next') && m.body.execution?.jobId === jobId);

    // StartNextPendingJobExecution: 1 to 10080, no -1
    const startMinus = await dev.request(jobs('st-1', 'start-next'), { stepTimeoutInMinutes: -1 });
    assert.equal(startMinus.topic, jobs('st-1', 'start-next/rejected'));
    assert.equal(startMinus.body.code, 'InvalidRequest');
    const started = await dev.request(jobs('st-1', 'start-next'), { stepTimeoutInMinutes: 1 });
    assert.equal(started.body.execution?.status, 'IN_PROGRESS', JSON.stringify(started.body));
    const timed = await ts.server.store.getExecution(jobId, 'st-1');
    const stepDeadlineAt = timed?.details.stepDeadlineAt as number;
    assert.equal(typeof stepDeadlineAt, 'number');
    assert.equal(timed?.dueAt, stepDeadlineAt, 'the step timer is the earliest deadline');
    const inProgressDeadline = (timed?.dispatchedAt as number) + 7200 * 1000;

    // out of range, -1 aside: refused, nothing recorded, the message names -1
    const update = jobs('st-1', `${jobId}/update`);
    const minusTwo = await dev.request(update, { status: 'IN_PROGRESS', stepTimeoutInMinutes: -2 });
    assert.equal(minusTwo.topic, `${update}/rejected`);
    assert.equal(minusTwo.body.code, 'InvalidRequest');
    assert.match(minusTwo.body.message, /-1 to cancel/);
    assert.equal((await ts.server.store.getExecution(jobId, 'st-1'))?.version, timed?.version);
    // -1 with another field wrong is refused for that field
    const badDetails = await dev.request(update, { status: 'IN_PROGRESS', stepTimeoutInMinutes: -1, statusDetails: { a: 1 } });
    assert.deepEqual([badDetails.topic, badDetails.body.code], [`${update}/rejected`, 'InvalidRequest']);
    assert.match(badDetails.body.message, /statusDetails\.a must be a string/);
    assert.equal((await ts.server.store.getExecution(jobId, 'st-1'))?.version, timed?.version);

    const cancel = await dev.request(update, { status: 'IN_PROGRESS', stepTimeoutInMinutes: -1, statusDetails: { phase: 'INSTALLING' }, includeJobExecutionState: true });
    assert.equal(cancel.topic, `${update}/accepted`, JSON.stringify(cancel.body));
    assert.equal(cancel.body.executionState.status, 'IN_PROGRESS');
    const after = await ts.server.store.getExecution(jobId, 'st-1');
    assert.equal(after?.details.stepDeadlineAt, undefined, 'the step timer is cancelled');
    assert.equal(after?.dueAt, inProgressDeadline, "the job's in-progress timeout is the deadline again");
    assert.equal(after?.details.agentStatus, 'INSTALLING', 'the rest of the update is recorded');
    assert.equal(cancel.body.executionState.versionNumber, after?.version);

    // a timer set again after the cancel applies as before
    const again = await dev.request(update, { status: 'IN_PROGRESS', stepTimeoutInMinutes: 5 });
    assert.equal(again.topic, `${update}/accepted`, JSON.stringify(again.body));
    const retimed = await ts.server.store.getExecution(jobId, 'st-1');
    assert.equal(retimed?.dueAt, retimed?.details.stepDeadlineAt);
  });
});
