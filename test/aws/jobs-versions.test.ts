/**
 * AWS Jobs executions over MQTT with a real server: the versionNumber a thing is told (notify,
 * notify-next, answers) is the one its next update's expectedVersion is checked against, for
 * a job, its retry and a rollback; startedAt is when the device started the execution, not
 * when the command was sent; a request's unknown fields are refused by name.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { eventually } from '../helpers/cli.ts';
import { TestClient, connectDevice } from '../helpers/mqtt-client.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact, deploy, executionStatus } from './support.ts';

const jobs = (thing: string, rest: string) => `$aws/things/${thing}/jobs/${rest}`;

describe('AWS Jobs versions, startedAt and request fields', () => {
  let ts: TestServer;
  const devices: TestClient[] = [];

  before(async () => {
    ts = await startTestServer();
    await addArtifact(ts, '1.0.0');
    await addArtifact(ts, '2.0.0');
    await addArtifact(ts, '3.0.0');
  });
  after(async () => {
    for (const d of devices) await d.end();
    await ts.close();
  });

  /** Connects `thing`, subscribed to its jobs topics, reporting that it runs fw 1.0.0 (through its AWS shadow). */
  async function thing(id: string): Promise<TestClient> {
    const dev = await connectDevice(ts, id);
    devices.push(dev);
    await dev.subscribe(jobs(id, '#'), `$aws/things/${id}/shadow/update/+`);
    const r = await dev.request(`$aws/things/${id}/shadow/update`, { state: { reported: { software: { name: 'fw', version: '1.0.0', status: 'IDLE' } } } });
    assert.match(r.topic, /\/accepted$/);
    return dev;
  }

  /** Creates a job over the API; resolves with its id. */
  async function createJob(spec: object): Promise<string> {
    const res = await fetch(`${ts.httpUrl}/api/v1/jobs`, { method: 'POST', headers: { authorization: `Bearer ${ts.token}`, 'content-type': 'application/json' }, body: JSON.stringify(spec) });
    assert.equal(res.status, 201, await res.clone().text());
    return ((await res.json()) as { job: { jobId: string } }).job.jobId;
  }

  it('notify-next and notify announce the version an update is checked against: a deploy, then its retry', async () => {
    const dev = await thing('v-1');
    const jobId = await createJob({ artifact: 'fw@2.0.0', targets: { devices: ['v-1'] }, retries: { limit: 1, on: ['FAILED'] } });
    const next = await dev.next((m) => m.topic === jobs('v-1', 'notify-next') && m.body.execution?.jobId === jobId);
    const list = await dev.next((m) => m.topic === jobs('v-1', 'notify') && m.body.jobs?.QUEUED?.[0]?.jobId === jobId);
    const v = next.body.execution.versionNumber as number;
    assert.equal(list.body.jobs.QUEUED[0].versionNumber, v, 'notify and notify-next say the same version');
    const described = await dev.request(jobs('v-1', '$next/get'), {});
    assert.equal(described.body.execution.versionNumber, v, 'nothing changed the execution since it was announced');
    const started = await dev.request(jobs('v-1', `${jobId}/update`), { status: 'IN_PROGRESS', expectedVersion: v, includeJobExecutionState: true });
    assert.equal(started.topic, jobs('v-1', `${jobId}/update/accepted`), JSON.stringify(started.body));
    const failed = await dev.request(jobs('v-1', `${jobId}/update`), { status: 'FAILED', expectedVersion: started.body.executionState.versionNumber, statusDetails: { reason: 'disk full' } });
    assert.equal(failed.topic, jobs('v-1', `${jobId}/update/accepted`), JSON.stringify(failed.body));

    // the retry: executionNumber 2, announced with its version once sent
    const retry = await dev.next((m) => m.topic === jobs('v-1', 'notify-next') && m.body.execution?.jobId === jobId && m.body.execution.executionNumber === 2);
    const v2 = retry.body.execution.versionNumber as number;
    const again = await dev.request(jobs('v-1', `${jobId}/update`), { status: 'IN_PROGRESS', expectedVersion: v2, executionNumber: 2 });
    assert.equal(again.topic, jobs('v-1', `${jobId}/update/accepted`), JSON.stringify(again.body));
    assert.equal(await executionStatus(ts, jobId, 'v-1'), 'IN_PROGRESS');
  });

  it('startedAt is when the device started the execution, not when it was sent, and stays once it is past', async () => {
    const dev = await thing('s-1');
    const jobId = await deploy(ts, ['s-1'], 'fw@2.0.0');
    const next = await dev.next((m) => m.topic === jobs('s-1', 'notify-next') && m.body.execution?.jobId === jobId);
    const queuedAt = next.body.execution.queuedAt as number;
    assert.equal(next.body.execution.startedAt, undefined, 'not started');
    // the device starts it in a later second than the one it was sent in
    await eventually(async () => (Math.floor(Date.now() / 1000) > queuedAt ? true : undefined), 5000, 'the next second');
    const before = Math.floor(Date.now() / 1000);
    const started = await dev.request(jobs('s-1', 'start-next'), {});
    const startedAt = started.body.execution.startedAt as number;
    assert.ok(startedAt >= before && startedAt > queuedAt, `startedAt ${startedAt}, sent at ${queuedAt}, started at or after ${before}`);
    const done = await dev.request(jobs('s-1', `${jobId}/update`), { status: 'SUCCEEDED' });
    assert.match(done.topic, /\/accepted$/);
    const list = await dev.request(jobs('s-1', 'get'), {});
    assert.deepEqual(list.body.queuedJobs, []);

    // once another job is the thing's current one, the finished execution still says when it started
    const second = await deploy(ts, ['s-1'], 'fw@3.0.0');
    const n2 = await dev.next((m) => m.topic === jobs('s-1', 'notify-next') && m.body.execution?.jobId === second);
    assert.equal(n2.body.execution.startedAt, undefined);
    const past = await dev.request(jobs('s-1', `${jobId}/get`), {});
    assert.deepEqual([past.body.execution.status, past.body.execution.startedAt], ['SUCCEEDED', startedAt]);
  });

  it('a rollback has a version of its own that each update moves; stepTimeoutInMinutes on it is refused', async () => {
    const dev = await thing('r-1');
    const jobId = await createJob({ artifact: 'fw@2.0.0', targets: { devices: ['r-1'] }, abort: { rules: [{ type: 'FAILED', thresholdPercent: 50, minFinished: 1 }], rollback: true } });
    await dev.next((m) => m.topic === jobs('r-1', 'notify-next') && m.body.execution?.jobId === jobId);
    const failed = await dev.request(jobs('r-1', `${jobId}/update`), { status: 'FAILED', statusDetails: { reason: 'health check' } });
    assert.match(failed.topic, /\/accepted$/, JSON.stringify(failed.body));
    // the job aborts and the device is asked for what it ran before: a job of its own
    const rollbackId = `${jobId}.rollback`;
    const next = await dev.next((m) => m.topic === jobs('r-1', 'notify-next') && m.body.execution?.jobId === rollbackId, 15_000);
    assert.equal(next.body.execution.jobDocument.software.version, '1.0.0');
    const v1 = next.body.execution.versionNumber as number;
    const update = jobs('r-1', `${rollbackId}/update`);

    const timer = await dev.request(update, { status: 'IN_PROGRESS', expectedVersion: v1, stepTimeoutInMinutes: 1 });
    assert.deepEqual([timer.topic, timer.body.code], [`${update}/rejected`, 'InvalidRequest']);
    assert.match(timer.body.message, /^stepTimeoutInMinutes cannot be set on .*\.rollback: a rollback has no step timer/);
    assert.equal((await dev.request(jobs('r-1', `${rollbackId}/get`), {})).body.execution.status, 'QUEUED', 'nothing recorded');

    const first = await dev.request(update, { status: 'IN_PROGRESS', expectedVersion: v1, includeJobExecutionState: true });
    assert.equal(first.topic, `${update}/accepted`, JSON.stringify(first.body));
    const v2 = first.body.executionState.versionNumber as number;
    assert.ok(v2 > v1, `the update moved the version: ${v1} then ${v2}`);
    const stale = await dev.request(update, { status: 'IN_PROGRESS', expectedVersion: v1 });
    assert.deepEqual([stale.topic, stale.body.code, stale.body.executionState?.versionNumber], [`${update}/rejected`, 'VersionMismatch', v2]);
    const second = await dev.request(update, { status: 'IN_PROGRESS', expectedVersion: v2, includeJobExecutionState: true });
    assert.equal(second.topic, `${update}/accepted`, JSON.stringify(second.body));
    const v3 = second.body.executionState.versionNumber as number;
    assert.ok(v3 > v2, `${v2} then ${v3}`);
    const described = await dev.request(jobs('r-1', `${rollbackId}/get`), {});
    assert.deepEqual([described.body.execution.status, described.body.execution.versionNumber], ['IN_PROGRESS', v3]);
    assert.equal(typeof described.body.execution.startedAt, 'number', 'started by its first update');

    const done = await dev.request(update, { status: 'SUCCEEDED', expectedVersion: v3, includeJobExecutionState: true });
    assert.equal(done.topic, `${update}/accepted`, JSON.stringify(done.body));
    assert.equal(done.body.executionState.status, 'SUCCEEDED');
    await eventually(async () => ((await ts.server.store.getExecution(jobId, 'r-1'))?.details.control as { status?: string } | undefined)?.status === 'SUCCESS' || undefined, 5000, 'the rollback recorded');
  });

  it('a finished rollback is described as it ended once another job replaced it', async () => {
    const dev = await thing('rb-1');
    const jobId = await createJob({ artifact: 'fw@2.0.0', targets: { devices: ['rb-1'] }, abort: { rules: [{ type: 'FAILED', thresholdPercent: 50, minFinished: 1 }], rollback: true } });
    await dev.next((m) => m.topic === jobs('rb-1', 'notify-next') && m.body.execution?.jobId === jobId);
    assert.match((await dev.request(jobs('rb-1', `${jobId}/update`), { status: 'FAILED' })).topic, /\/accepted$/);
    const rollbackId = `${jobId}.rollback`;
    await dev.next((m) => m.topic === jobs('rb-1', 'notify-next') && m.body.execution?.jobId === rollbackId, 15_000);
    const update = jobs('rb-1', `${rollbackId}/update`);
    assert.match((await dev.request(jobs('rb-1', 'start-next'), { statusDetails: { phase: 'INSTALLING' } })).topic, /\/accepted$/);
    const done = await dev.request(update, { status: 'SUCCEEDED', statusDetails: { result: 'back on 1.0.0' }, includeJobExecutionState: true });
    assert.equal(done.topic, `${update}/accepted`, JSON.stringify(done.body));
    await eventually(async () => ((await ts.server.store.getExecution(jobId, 'rb-1'))?.details.control as { status?: string } | undefined)?.status === 'SUCCESS' || undefined, 5000, 'the rollback recorded');
    const whileCurrent = await dev.request(jobs('rb-1', `${rollbackId}/get`), { includeJobDocument: false });
    assert.equal(whileCurrent.body.execution.status, 'SUCCEEDED', JSON.stringify(whileCurrent.body));

    // another job replaces the rollback as the thing's command
    const second = await deploy(ts, ['rb-1'], 'fw@3.0.0');
    await dev.next((m) => m.topic === jobs('rb-1', 'notify-next') && m.body.execution?.jobId === second);
    const past = await dev.request(jobs('rb-1', `${rollbackId}/get`), {});
    assert.equal(past.topic, jobs('rb-1', `${rollbackId}/get/accepted`), JSON.stringify(past.body));
    const { lastUpdatedAt: lastBefore, ...before } = whileCurrent.body.execution;
    const { lastUpdatedAt: lastAfter, ...after } = past.body.execution;
    assert.deepEqual(after, before, 'the same execution as before it was replaced (status, versionNumber, queuedAt, startedAt, statusDetails)');
    assert.deepEqual([after.status, after.versionNumber, after.statusDetails], ['SUCCEEDED', done.body.executionState.versionNumber, { result: 'back on 1.0.0' }]);
    assert.ok(lastAfter >= after.startedAt && lastAfter >= lastBefore - 1, `lastUpdatedAt ${lastAfter} (before: ${lastBefore}, started ${after.startedAt})`);
    const other = await dev.request(jobs('rb-1', `${rollbackId}/get`), { executionNumber: 2 });
    assert.equal(other.body.code, 'ResourceNotFound');
    const late = await dev.request(update, { status: 'FAILED' });
    assert.deepEqual([late.topic, late.body.code, late.body.executionState?.status], [`${update}/rejected`, 'InvalidStateTransition', 'SUCCEEDED']);
  });

  it('refuses a request field no operation of that topic takes, by name, and takes every one AWS documents', async () => {
    const dev = await thing('f-1');
    const jobId = await deploy(ts, ['f-1'], 'fw@2.0.0');
    const next = await dev.next((m) => m.topic === jobs('f-1', 'notify-next') && m.body.execution?.jobId === jobId);
    const v = next.body.execution.versionNumber as number;
    const update = jobs('f-1', `${jobId}/update`);
    // a misspelt expectedVersion was dropped, and the update applied with no version check
    const misspelt = await dev.request(update, { status: 'IN_PROGRESS', expectedversion: v + 7 });
    assert.deepEqual([misspelt.topic, misspelt.body.code], [`${update}/rejected`, 'InvalidRequest']);
    assert.match(misspelt.body.message, /^Request contains an invalid field: "expectedversion" \(did you mean "expectedVersion"\?\); UpdateJobExecution takes clientToken, status, /);
    assert.equal(await executionStatus(ts, jobId, 'f-1'), 'QUEUED', 'nothing recorded');
    const otherOp = await dev.request(jobs('f-1', 'start-next'), { status: 'IN_PROGRESS' });
    assert.deepEqual([otherOp.body.code, otherOp.body.message], ['InvalidRequest', 'Request contains an invalid field: "status"; StartNextPendingJobExecution takes clientToken, statusDetails, stepTimeoutInMinutes']);
    const list = await dev.request(jobs('f-1', 'get'), { includeJobDocument: true });
    assert.match(list.body.message, /^Request contains an invalid field: "includeJobDocument"; GetPendingJobExecutions takes clientToken$/);
    const otherThing = await dev.request(jobs('f-1', 'get'), { thingName: 'f-2' });
    assert.equal(otherThing.body.message, "thingName \"f-2\" does not match the topic's thing 'f-1': the topic says which thing a request is for");

    // every documented field, and the topic's own thingName and jobId (SDK v2's IotJobsClient sends them)
    const got = await dev.request(jobs('f-1', 'get'), { thingName: 'f-1' });
    assert.deepEqual(got.body.queuedJobs.map((j: { jobId: string }) => j.jobId), [jobId]);
    const described = await dev.request(jobs('f-1', `${jobId}/get`), { thingName: 'f-1', jobId, executionNumber: 1, includeJobDocument: false });
    assert.equal(described.topic, jobs('f-1', `${jobId}/get/accepted`), JSON.stringify(described.body));
    const nextGet = await dev.request(jobs('f-1', '$next/get'), { thingName: 'f-1', jobId: '$next', includeJobDocument: true });
    assert.equal(nextGet.body.execution.jobId, jobId);
    const started = await dev.request(jobs('f-1', 'start-next'), { thingName: 'f-1', statusDetails: { phase: 'DOWNLOADING' }, stepTimeoutInMinutes: 30 });
    assert.equal(started.body.execution.status, 'IN_PROGRESS', JSON.stringify(started.body));
    const full = { thingName: 'f-1', jobId, status: 'IN_PROGRESS', statusDetails: { phase: 'INSTALLING' }, expectedVersion: started.body.execution.versionNumber, executionNumber: 1, includeJobExecutionState: true, includeJobDocument: true, stepTimeoutInMinutes: 30 };
    const updated = await dev.request(update, full);
    assert.equal(updated.topic, `${update}/accepted`, JSON.stringify(updated.body));
    assert.equal(updated.body.jobDocument.operation, 'updraft.software-update');
    const wrongJob = await dev.request(update, { jobId: 'another', status: 'SUCCEEDED' });
    assert.equal(wrongJob.body.message, `jobId "another" does not match the topic's job '${jobId}': the topic says which job a request is for`);
    assert.equal(await executionStatus(ts, jobId, 'f-1'), 'IN_PROGRESS');
  });
});
