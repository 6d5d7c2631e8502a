/**
 * The AWS IoT shadow and jobs topic families at the protocol level (issue 9), with a plain
 * MQTT client: answers, codes and messages as the AWS developer guide documents them, the
 * same shadow through both families, rejections, and per-thing authorization.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { TestClient, connectDevice } from '../helpers/mqtt-client.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact, deploy, executionStatus } from './support.ts';

const shadow = (thing: string, rest: string) => `$aws/things/${thing}/shadow/${rest}`;
const jobs = (thing: string, rest: string) => `$aws/things/${thing}/jobs/${rest}`;

describe('AWS IoT topic families (protocol)', () => {
  let ts: TestServer;
  let dev: TestClient;
  let plain: TestClient;

  before(async () => {
    ts = await startTestServer();
    dev = await connectDevice(ts, 'thing-1');
    await dev.subscribe('$aws/things/thing-1/shadow/#', '$aws/things/thing-1/jobs/#', 'state/thing-1/#');
    plain = await connectDevice(ts, 'plain-1');
    await plain.subscribe('state/plain-1/#');
    await addArtifact(ts, '2.0.0');
    await addArtifact(ts, '3.0.0');
  });
  after(async () => {
    await dev.end();
    await plain.end();
    await ts.close();
  });

  it('answers shadow requests on the AWS topics; one shadow through both families', async () => {
    const nf = await dev.request(shadow('thing-1', 'get'), {});
    assert.equal(nf.topic, shadow('thing-1', 'get/rejected'));
    assert.deepEqual([nf.body.code, nf.body.message], [404, "No shadow exists with name: 'thing-1'"]);
    const up = await dev.request(shadow('thing-1', 'update'), { state: { reported: { color: 'blue' }, desired: { color: 'red' } } });
    assert.equal(up.topic, shadow('thing-1', 'update/accepted'));
    assert.equal(up.body.version, 1);
    assert.equal(up.body.metadata.reported.color.timestamp > 0, true);
    const delta = await dev.next((m) => m.topic === shadow('thing-1', 'update/delta'));
    assert.deepEqual(delta.body.state, { color: 'red' });
    const docs = await dev.next((m) => m.topic === shadow('thing-1', 'update/documents'));
    assert.equal(docs.body.current.version, 1);
    // the same shadow through Updraft's own family
    const viaState = await dev.request('state/thing-1/get', {});
    assert.deepEqual(viaState.body.state, { desired: { color: 'red' }, reported: { color: 'blue' }, delta: { color: 'red' } });
    await dev.request('state/thing-1/update', { state: { reported: { color: 'red' } } });
    const got = await dev.request(shadow('thing-1', 'get'), {});
    assert.equal(got.topic, shadow('thing-1', 'get/accepted'));
    assert.equal(got.body.version, 2);
    assert.equal(got.body.state.delta, undefined);
    // the shadow contract: a delta after every accepted update that leaves desired and
    // reported apart, even one that leaves the difference as it was
    await dev.request(shadow('thing-1', 'update'), { state: { reported: { color: 'green' } } }, 'aws-green');
    await dev.request(shadow('thing-1', 'update'), { state: { reported: { color: 'yellow' } } }, 'aws-yellow');
    const same = await dev.next((m) => m.topic === shadow('thing-1', 'update/delta') && m.body.clientToken === 'aws-yellow');
    assert.deepEqual(same.body.state, { color: 'red' });
  });

  it('rejects bad shadow requests with the documented codes and messages', async () => {
    const badJson = dev.next((m) => m.topic === shadow('thing-1', 'update/rejected') && m.body.message === 'Invalid JSON');
    await dev.publish(shadow('thing-1', 'update'), '{nope');
    assert.equal((await badJson).body.code, 400);
    const noState = await dev.request(shadow('thing-1', 'update'), { foo: 1 });
    assert.deepEqual([noState.body.code, noState.body.message], [400, 'Missing required node: state']);
    const conflict = await dev.request(shadow('thing-1', 'update'), { state: { reported: { a: 1 } }, version: 1 });
    assert.deepEqual([conflict.body.code, conflict.body.message], [409, 'Version conflict']);
    const forbidden = await dev.request(shadow('thing-1', 'update'), { state: { desired: { software: { name: 'x' } } } });
    assert.equal(forbidden.body.code, 403);
  });

  it('named shadows under shadow/name/{shadowName}, delete, and a version never reused', async () => {
    const up = await dev.request(shadow('thing-1', 'name/config/update'), { state: { desired: { interval: 30 } } });
    assert.equal(up.topic, shadow('thing-1', 'name/config/update/accepted'));
    const viaState = await dev.request('state/thing-1/shadow/config/get', {});
    assert.deepEqual(viaState.body.state.desired, { interval: 30 });
    const del = await dev.request(shadow('thing-1', 'name/config/delete'), {});
    assert.equal(del.topic, shadow('thing-1', 'name/config/delete/accepted'));
    assert.equal(del.body.version, 1);
    const gone = await dev.request(shadow('thing-1', 'name/config/get'), {});
    assert.deepEqual([gone.body.code, gone.body.message], [404, "No shadow exists with name: 'config'"]);
    const again = await dev.request(shadow('thing-1', 'name/config/update'), { state: { desired: { interval: 60 } } });
    assert.ok(again.body.version > del.body.version, `version ${again.body.version} after delete of ${del.body.version}`);
  });

  it('lets an operator widen what a device may act for with its awsThings attribute', async () => {
    const { secret } = await ts.server.registry.register({ deviceId: 'gateway-1', attributes: { awsThings: 'sensor-a, sensor-b' } });
    const gw = await TestClient.connect(ts.mqttUrl, 'gateway-1', { username: 'gateway-1', password: secret });
    try {
      assert.deepEqual(await gw.subscribe('$aws/things/sensor-a/shadow/#', '$aws/things/sensor-b/jobs/notify-next', '$aws/things/thing-1/shadow/#', 'state/sensor-a/#'), [1, 1, 128, 128]);
      const r = await gw.request(shadow('sensor-a', 'update'), { state: { reported: { temp: 21 } } });
      assert.equal(r.topic, shadow('sensor-a', 'update/accepted'));
      assert.equal((await ts.server.store.getShadow('sensor-a', ''))?.state.reported?.temp, 21);
    } finally {
      await gw.end();
    }
  });

  it("refuses a thing touching another thing's topics", async () => {
    assert.deepEqual(await dev.subscribe('$aws/things/plain-1/shadow/update/delta', '$aws/things/+/jobs/notify-next', '$aws/things/thing-1/other'), [128, 128, 128]);
    await dev.publish(shadow('plain-1', 'update'), { state: { reported: { stolen: true } } });
    await dev.publish(jobs('plain-1', 'start-next'), {});
    await dev.request(shadow('thing-1', 'get'), {}); // requests are answered in order: the dropped ones are done
    assert.equal((await ts.server.store.getShadow('plain-1', ''))?.state.reported?.stolen, undefined);
  });

  it('costs a device that never uses the AWS family no extra message', async () => {
    const spy = await TestClient.connect(ts.mqttUrl, 'spy-operator', { username: 'operator', password: ts.token });
    try {
      await spy.subscribe('$aws/#');
      const before = ts.server.broker.stats.published;
      await plain.request('state/plain-1/update', { state: { reported: { x: 1 } } });
      await plain.next((m) => m.topic === 'state/plain-1/update/documents');
      await new Promise((r) => setTimeout(r, 100));
      // the request, accepted and documents: nothing on $aws topics
      assert.equal(ts.server.broker.stats.published - before, 3);
      assert.deepEqual(spy.log.map((m) => m.topic), []);
    } finally {
      await spy.end();
    }
  });

  it('sends a device using the AWS family only the answers it subscribed to', async () => {
    const lean = await connectDevice(ts, 'aws-lean');
    try {
      await lean.subscribe('$aws/things/aws-lean/shadow/update/accepted');
      const before = ts.server.broker.stats.published;
      const r = await lean.request(shadow('aws-lean', 'update'), { state: { reported: { x: 1 } } });
      assert.equal(r.topic, shadow('aws-lean', 'update/accepted'));
      await new Promise((r) => setTimeout(r, 100));
      // the request and its $aws accepted: no state/ twin, no documents nobody reads
      assert.equal(ts.server.broker.stats.published - before, 2);
    } finally {
      await lean.end();
    }
  });

  it('jobs: get, start-next, update IN_PROGRESS and SUCCEEDED, notify-next for the following job', async () => {
    const empty = await dev.request(jobs('thing-1', 'get'), {});
    assert.deepEqual([empty.body.inProgressJobs, empty.body.queuedJobs], [[], []]);
    const none = await dev.request(jobs('thing-1', 'start-next'), {});
    assert.equal(none.topic, jobs('thing-1', 'start-next/accepted'));
    assert.equal(none.body.execution, undefined);

    const jobId = await deploy(ts, ['thing-1'], 'fw@2.0.0');
    const notified = await dev.next((m) => m.topic === jobs('thing-1', 'notify-next') && m.body.execution?.jobId === jobId);
    assert.equal(notified.body.execution.status, 'QUEUED');
    assert.equal(notified.body.execution.jobDocument.software.version, '2.0.0');
    assert.match(notified.body.execution.jobDocument.software.url, /\/v1\/download\/fw\/2\.0\.0\?device=thing-1/);
    const list = await dev.request(jobs('thing-1', 'get'), {});
    assert.equal(list.body.queuedJobs[0].jobId, jobId);

    const started = await dev.request(jobs('thing-1', 'start-next'), { statusDetails: { phase: 'DOWNLOADING' }, stepTimeoutInMinutes: 60 });
    assert.equal(started.body.execution.status, 'IN_PROGRESS');
    assert.equal(started.body.execution.executionNumber, 1);
    assert.deepEqual(started.body.execution.statusDetails, { phase: 'DOWNLOADING' });
    assert.equal(await executionStatus(ts, jobId, 'thing-1'), 'IN_PROGRESS');
    // stepTimeoutInMinutes: the execution is due (TIMED_OUT) unless updated again within 60 minutes
    const due = (await ts.server.store.getExecution(jobId, 'thing-1'))?.dueAt ?? 0;
    assert.ok(Math.abs(due - (Date.now() + 60 * 60_000)) < 60_000, `dueAt ${due}`);
    const v = started.body.execution.versionNumber as number;

    const stale = await dev.request(jobs('thing-1', `${jobId}/update`), { status: 'IN_PROGRESS', expectedVersion: v - 1 });
    assert.equal(stale.topic, jobs('thing-1', `${jobId}/update/rejected`));
    assert.equal(stale.body.code, 'VersionMismatch');
    assert.equal(stale.body.executionState.versionNumber, v);

    const progress = await dev.request(jobs('thing-1', `${jobId}/update`), { status: 'IN_PROGRESS', expectedVersion: v, statusDetails: { phase: 'INSTALLING' }, includeJobExecutionState: true });
    assert.equal(progress.topic, jobs('thing-1', `${jobId}/update/accepted`));
    assert.equal(progress.body.executionState.status, 'IN_PROGRESS');
    const done = await dev.request(jobs('thing-1', `${jobId}/update`), { status: 'SUCCEEDED', includeJobDocument: true });
    assert.equal(done.body.jobDocument.operation, 'updraft.software-update');
    assert.equal(await executionStatus(ts, jobId, 'thing-1'), 'SUCCEEDED');
    const reported = (await ts.server.store.getShadow('thing-1', ''))?.state.reported?.software as Record<string, unknown>;
    assert.deepEqual([reported.version, reported.status], ['2.0.0', 'SUCCESS']);
    const again = await dev.request(jobs('thing-1', `${jobId}/update`), { status: 'IN_PROGRESS' });
    assert.deepEqual([again.body.code, again.body.message, again.body.executionState?.status], ['InvalidStateTransition', `Cannot change the status of job execution ${jobId} on thing-1 from SUCCEEDED to IN_PROGRESS: SUCCEEDED is a terminal state`, 'SUCCEEDED']);
    const described = await dev.request(jobs('thing-1', `${jobId}/get`), {});
    assert.equal(described.body.execution.status, 'SUCCEEDED');

    const next = await dev.request(jobs('thing-1', '$next/get'), {});
    assert.equal(next.body.execution, undefined);
    const second = await deploy(ts, ['thing-1'], 'fw@3.0.0');
    const n2 = await dev.next((m) => m.topic === jobs('thing-1', 'notify-next') && m.body.execution?.jobId === second);
    assert.equal(n2.body.execution.jobDocument.software.version, '3.0.0');
    const notify = await dev.next((m) => m.topic === jobs('thing-1', 'notify') && m.body.jobs?.QUEUED?.[0]?.jobId === second);
    assert.equal(notify.body.jobs.QUEUED[0].executionNumber, 1);
    const failed = await dev.request(jobs('thing-1', `${second}/update`), { status: 'FAILED', statusDetails: { reason: 'disk full' } });
    assert.equal(failed.topic, jobs('thing-1', `${second}/update/accepted`));
    assert.equal(await executionStatus(ts, second, 'thing-1'), 'FAILED');
    const details = (await ts.server.store.getExecution(second, 'thing-1'))?.details;
    assert.equal(details?.error, 'disk full');
  });

  it('a cancelled job leaves the pending list (notify-next without an execution)', async () => {
    const jobId = await deploy(ts, ['thing-1'], 'fw@3.0.0');
    await dev.next((m) => m.topic === jobs('thing-1', 'notify-next') && m.body.execution?.jobId === jobId);
    const started = await dev.request(jobs('thing-1', 'start-next'), {});
    assert.equal(started.body.execution.jobId, jobId);
    const seen = dev.log.length;
    const res = await fetch(`${ts.httpUrl}/api/v1/jobs/${jobId}/cancel`, { method: 'POST', headers: { authorization: `Bearer ${ts.token}` } });
    assert.equal(res.status, 200, await res.text());
    await dev.next((m) => m.topic === jobs('thing-1', 'notify-next') && m.body.execution === undefined && dev.log.indexOf(m) >= seen);
    const pending = await dev.request(jobs('thing-1', 'get'), {});
    assert.deepEqual([pending.body.inProgressJobs, pending.body.queuedJobs], [[], []]);
    const late = await dev.request(jobs('thing-1', `${jobId}/update`), { status: 'SUCCEEDED' });
    assert.equal(late.body.code, 'InvalidStateTransition');
  });

  it('rejects bad jobs requests with the documented error codes', async () => {
    const bad = dev.next((m) => m.topic === jobs('thing-1', 'start-next/rejected') && m.body.code === 'InvalidJson');
    await dev.publish(jobs('thing-1', 'start-next'), '{nope');
    await bad;
    const unknown = await dev.request(jobs('thing-1', 'no-such-job/get'), {});
    assert.equal(unknown.body.code, 'ResourceNotFound');
    const unknownUpdate = await dev.request(jobs('thing-1', 'no-such-job/update'), { status: 'SUCCEEDED' });
    assert.equal(unknownUpdate.body.code, 'ResourceNotFound');
    const badStatus = await dev.request(jobs('thing-1', 'no-such-job/update'), { status: 'CANCELED' });
    assert.equal(badStatus.body.code, 'InvalidRequest');
    const badTimeout = await dev.request(jobs('thing-1', 'start-next'), { stepTimeoutInMinutes: 0 });
    assert.equal(badTimeout.body.code, 'InvalidRequest');
    const invalidTopic = await dev.request(jobs('thing-1', 'foo/bar'), {});
    assert.deepEqual([invalidTopic.topic, invalidTopic.body.code], [jobs('thing-1', 'foo/bar/rejected'), 'InvalidTopic']);
  });

  it("refuses an operator's jobs requests for a thing that is not registered with ResourceNotFound", async () => {
    const op = await TestClient.connect(ts.mqttUrl, 'jobs-operator', { username: 'operator', password: ts.token });
    try {
      await op.subscribe('$aws/things/ghost-1/jobs/#', '$aws/things/thing-1/jobs/#');
      const message = 'Thing ghost-1 is not registered: no device has that id; register it with: updraft device register ghost-1';
      for (const [rest, body] of [
        ['get', {}],
        ['start-next', {}],
        ['$next/get', {}],
        ['some-job/get', {}],
        ['some-job/update', { status: 'IN_PROGRESS' }],
      ] as const) {
        const r = await op.request(jobs('ghost-1', rest), body, `ghost-${rest}`);
        assert.equal(r.topic, jobs('ghost-1', `${rest}/rejected`), rest);
        assert.deepEqual([r.body.code, r.body.message, r.body.clientToken], ['ResourceNotFound', message, `ghost-${rest}`], rest);
      }
      // nothing was written for it: no shadow, no device
      assert.equal(await ts.server.store.getShadow('ghost-1', ''), undefined);
      assert.equal(await ts.server.store.getDevice('ghost-1'), undefined);
      // a registered thing is answered to the operator as before
      const known = await op.request(jobs('thing-1', 'get'), {});
      assert.equal(known.topic, jobs('thing-1', 'get/accepted'));
    } finally {
      await op.end();
    }
  });
});
