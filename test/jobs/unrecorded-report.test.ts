/**
 * A report acknowledged (its shadow committed) whose execution write fails is written later,
 * without a restart (QA: a full disk freed slowly left 38 of 40 acknowledged SUCCESS reports
 * IN_PROGRESS for good on a deployment, which has no timeout to catch up at). A real server on
 * its real SQLite store, devices over real MQTT; only the store's execution write is made to
 * fail, a few times, by a delegating wrapper around the real store's updateExecution.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { ExecutionRecord, StateStore } from '../../src/store/state-store.ts';
import { createLogger } from '../../src/util/logger.ts';
import { eventually } from '../helpers/cli.ts';
import { connectIdleDevice, type TestClient } from '../helpers/mqtt-client.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact, deploy } from '../security/support.ts';

/** Makes the store's execution writes that `match` fail `times` times, as a full disk does; the rest go through. */
function failExecutionWrites(store: StateStore, match: (r: ExecutionRecord) => boolean, times: number): { failed: () => number; restore: () => void } {
  const real = store.updateExecution;
  let failed = 0;
  store.updateExecution = function (this: StateStore, record, changed) {
    if (failed < times && match(record)) {
      failed++;
      return Promise.reject(Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' }));
    }
    return real.call(this, record, changed);
  };
  return { failed: () => failed, restore: () => void (store.updateExecution = real) };
}

describe('an acknowledged report whose execution write failed', () => {
  let ts: TestServer;
  const lines: string[] = [];
  const devices: TestClient[] = [];
  before(async () => {
    ts = await startTestServer({ logger: createLogger({ level: 'info', write: (l) => lines.push(l) }) });
    await addArtifact(ts, '2.0.0', randomBytes(512));
    await addArtifact(ts, '3.0.0', randomBytes(512));
  });
  after(async () => {
    for (const d of devices) await d.end().catch(() => undefined);
    await ts.close();
  });

  type Shown = { job: { status: string }; executions: ExecutionRecord[] };
  const show = async (jobId: string): Promise<Shown> => {
    const res = await fetch(`${ts.httpUrl}/api/v1/jobs/${jobId}`, { headers: { authorization: `Bearer ${ts.token}` } });
    return (await res.json()) as Shown;
  };
  const execution = async (jobId: string, deviceId: string) => (await show(jobId)).executions.find((e) => e.deviceId === deviceId);
  /** A device online and idle, sent `artifact`'s job: resolves with the job id once the command reached it. */
  const sent = async (deviceId: string, artifact: string, dev?: TestClient): Promise<{ dev: TestClient; jobId: string }> => {
    if (!dev) devices.push((dev = await connectIdleDevice(ts, deviceId)));
    const jobId = await deploy(ts, [deviceId], artifact);
    await dev.next((m) => m.topic === `state/${deviceId}/update/delta` && m.body?.state?.software?.jobId === jobId, 15_000);
    return { dev, jobId };
  };
  const report = async (dev: TestClient, deviceId: string, software: Record<string, unknown>) => {
    const answer = await dev.request(`state/${deviceId}/update`, { state: { reported: { software: { name: 'fw', ...software } } } });
    assert.equal(answer.topic, `state/${deviceId}/update/accepted`, JSON.stringify(answer.body));
  };

  it('a SUCCESS: acknowledged, its execution SUCCEEDED and the job COMPLETED without a restart', async () => {
    const { dev, jobId } = await sent('full-1', 'fw@2.0.0');
    await report(dev, 'full-1', { version: '1.0.0', jobId, status: 'DOWNLOADING', progress: 0.5 });
    await eventually(async () => ((await execution(jobId, 'full-1'))?.status === 'IN_PROGRESS' ? true : undefined), 10_000, 'IN_PROGRESS');
    const disk = failExecutionWrites(ts.server.store, (r) => r.jobId === jobId && r.status === 'SUCCEEDED', 3);
    try {
      await report(dev, 'full-1', { version: '2.0.0', jobId, status: 'SUCCESS' });
      await eventually(async () => (disk.failed() >= 1 ? true : undefined), 10_000, 'the first write refused');
      assert.ok(lines.some((l) => l.includes('execution not recorded') && l.includes('database or disk is full')), 'the failure is logged');
      const done = await eventually(async () => {
        const e = await execution(jobId, 'full-1');
        return e?.status === 'SUCCEEDED' ? e : undefined;
      }, 30_000, 'the execution SUCCEEDED');
      assert.equal(disk.failed(), 3, 'written at the fourth try');
      assert.equal(done.details.version, '2.0.0');
      await eventually(async () => ((await show(jobId)).job.status === 'COMPLETED' ? true : undefined), 15_000, 'the job COMPLETED');
      assert.ok(lines.some((l) => l.includes('execution recorded on a later try')));
      assert.equal(ts.server.tracker.unrecorded.size, 0, 'nothing owed any more');
    } finally {
      disk.restore();
    }
  });

  it('a progress report retried after a newer one was written: the newer stands, nothing moves back', async () => {
    const { dev, jobId } = await sent('full-2', 'fw@2.0.0');
    const disk = failExecutionWrites(ts.server.store, (r) => r.jobId === jobId && r.details.agentStatus === 'DOWNLOADING', 1);
    try {
      await report(dev, 'full-2', { version: '1.0.0', jobId, status: 'DOWNLOADING', progress: 0.1 });
      await eventually(async () => (disk.failed() === 1 ? true : undefined), 10_000, 'the DOWNLOADING write refused');
      await report(dev, 'full-2', { version: '1.0.0', jobId, status: 'INSTALLING' });
      await eventually(async () => ((await execution(jobId, 'full-2'))?.details.agentStatus === 'INSTALLING' ? true : undefined), 10_000, 'INSTALLING');
      const before = (await execution(jobId, 'full-2'))!;
      // the retry reads the shadow as it stands (INSTALLING, already recorded): nothing written
      await eventually(async () => (ts.server.tracker.unrecorded.size === 0 && lines.some((l) => l.includes('execution recorded on a later try') && l.includes('full-2')) ? true : undefined), 15_000, 'the retry made');
      await ts.server.tracker.idle();
      const afterRetry = (await execution(jobId, 'full-2'))!;
      assert.equal(afterRetry.details.agentStatus, 'INSTALLING');
      assert.equal(afterRetry.version, before.version, 'the retry wrote nothing');
      // and then a SUCCESS, failing once too, then written: SUCCEEDED once
      const again = failExecutionWrites(ts.server.store, (r) => r.jobId === jobId && r.status === 'SUCCEEDED', 1);
      try {
        await report(dev, 'full-2', { version: '2.0.0', jobId, status: 'SUCCESS' });
        // the device resends its outcome (as an agent does until accepted): applied twice, recorded once
        await report(dev, 'full-2', { version: '2.0.0', jobId, status: 'SUCCESS' });
        await eventually(async () => ((await execution(jobId, 'full-2'))?.status === 'SUCCEEDED' ? true : undefined), 15_000, 'SUCCEEDED');
        await eventually(async () => (ts.server.tracker.unrecorded.size === 0 ? true : undefined), 15_000, 'nothing owed');
        await ts.server.tracker.idle();
        const done = (await execution(jobId, 'full-2'))!;
        assert.equal(again.failed(), 1);
        await new Promise((r) => setTimeout(r, 1500));
        assert.equal((await execution(jobId, 'full-2'))!.version, done.version, 'a SUCCEEDED execution is not written again');
      } finally {
        again.restore();
      }
    } finally {
      disk.restore();
    }
  });

  it('a supersede: the first job ends CANCELED, superseded, and COMPLETES without a restart', async () => {
    const { dev, jobId: first } = await sent('full-3', 'fw@2.0.0');
    await report(dev, 'full-3', { version: '1.0.0', jobId: first, status: 'DOWNLOADING', progress: 0.2 });
    await eventually(async () => ((await execution(first, 'full-3'))?.status === 'IN_PROGRESS' ? true : undefined), 10_000, 'IN_PROGRESS');
    const disk = failExecutionWrites(ts.server.store, (r) => r.jobId === first && r.status === 'CANCELED', 2);
    try {
      const { jobId: second } = await sent('full-3', 'fw@3.0.0', dev);
      await eventually(async () => (disk.failed() >= 1 ? true : undefined), 10_000, 'the supersede refused');
      const superseded = await eventually(async () => {
        const e = await execution(first, 'full-3');
        return e?.status === 'CANCELED' ? e : undefined;
      }, 30_000, 'the first execution CANCELED');
      assert.equal(disk.failed(), 2);
      assert.equal(superseded.details.error, `superseded: the device was asked for job ${second} before it finished this one`);
      await eventually(async () => ((await show(first)).job.status === 'COMPLETED' ? true : undefined), 15_000, 'the first job COMPLETED');
    } finally {
      disk.restore();
    }
  });

  it('a new wait, or new statusDetails, alone: refused once, written by the retry (the wait counted, the step timer restarted)', async () => {
    const { dev, jobId } = await sent('full-5', 'fw@2.0.0');
    const wait = (count: number) => ({ reason: 'battery low', count, nextCheckInSeconds: 60 });
    type Details = { waiting?: { count: number }; statusDetails?: Record<string, string>; phaseStartedAt: number };
    const details = async () => (await execution(jobId, 'full-5'))?.details as Details | undefined;
    await report(dev, 'full-5', { version: '1.0.0', jobId, status: 'VERIFYING', waiting: wait(1), statusDetails: { step: 'a' } });
    const first = await eventually(async () => {
      const d = await details();
      return d?.waiting?.count === 1 ? d : undefined;
    }, 10_000, 'the first wait recorded');
    const disk = failExecutionWrites(ts.server.store, (r) => r.jobId === jobId && (r.details as Details).waiting?.count === 2, 1);
    try {
      await report(dev, 'full-5', { version: '1.0.0', jobId, status: 'VERIFYING', waiting: wait(2), statusDetails: { step: 'a' } });
      await eventually(async () => (disk.failed() === 1 ? true : undefined), 10_000, 'the second wait refused');
      await eventually(async () => (ts.server.tracker.unrecorded.size === 0 && lines.some((l) => l.includes('execution recorded on a later try') && l.includes('full-5')) ? true : undefined), 15_000, 'the retry made');
      await ts.server.tracker.idle();
      const second = (await details())!;
      assert.equal(second.waiting?.count, 2, 'the new wait is recorded');
      assert.ok(second.phaseStartedAt > first.phaseStartedAt, 'a new wait restarts the step timer');
    } finally {
      disk.restore();
    }
    const aws = failExecutionWrites(ts.server.store, (r) => r.jobId === jobId && (r.details as Details).statusDetails?.step === 'b', 1);
    try {
      await report(dev, 'full-5', { version: '1.0.0', jobId, status: 'VERIFYING', waiting: wait(2), statusDetails: { step: 'b' } });
      await eventually(async () => (aws.failed() === 1 ? true : undefined), 10_000, 'the statusDetails refused');
      const third = await eventually(async () => {
        const d = await details();
        return d?.statusDetails?.step === 'b' ? d : undefined;
      }, 15_000, 'the new statusDetails recorded');
      assert.equal(third.waiting?.count, 2);
    } finally {
      aws.restore();
    }
  });

  it('a newer outcome refused while an older one was tried again: the newer stands', async () => {
    const { dev, jobId } = await sent('full-6', 'fw@2.0.0');
    await report(dev, 'full-6', { version: '1.0.0', jobId, status: 'DOWNLOADING', progress: 0.5 });
    await eventually(async () => ((await execution(jobId, 'full-6'))?.status === 'IN_PROGRESS' ? true : undefined), 10_000, 'IN_PROGRESS');
    const store = ts.server.store;
    const book = ts.server.tracker.unrecorded;
    const real = store.updateExecution;
    let refused = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    // the first three writes of the job's execution refused; the SUCCESS's held until the older outcome's try is queued behind it
    store.updateExecution = async function (this: StateStore, record, changed) {
      if (record.jobId === jobId && refused < 3) {
        refused++;
        if (record.status === 'SUCCEEDED') await gate;
        throw Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' });
      }
      return real.call(this, record, changed);
    };
    try {
      // an older outcome (FAILURE) refused: owed
      await report(dev, 'full-6', { version: '1.0.0', jobId, status: 'FAILURE', error: 'checksum mismatch' });
      await eventually(async () => (refused === 1 && book.size === 1 ? true : undefined), 10_000, 'the FAILURE owed');
      // then the device's last word, a SUCCESS, its write held
      await report(dev, 'full-6', { version: '2.0.0', jobId, status: 'SUCCESS' });
      await eventually(async () => (refused === 2 ? true : undefined), 10_000, 'the SUCCESS being written');
      // the book takes the FAILURE for a try, queued behind the SUCCESS
      await eventually(async () => (book.size === 0 ? true : undefined), 10_000, 'the FAILURE taken for a try');
      release();
      // the SUCCESS refused (owed anew), then the FAILURE's try refused (put back)
      await eventually(async () => (refused === 3 && book.size === 1 ? true : undefined), 10_000, 'both refused');
    } finally {
      release();
      store.updateExecution = real;
    }
    const done = await eventually(async () => {
      const e = await execution(jobId, 'full-6');
      return e && e.status !== 'IN_PROGRESS' && book.size === 0 ? e : undefined;
    }, 15_000, 'the execution ended');
    assert.equal(done.status, 'SUCCEEDED', `the newer outcome stands: ${JSON.stringify(done.details)}`);
  });

  /**
   * A SUCCESS whose write is refused (held first, until the device is asked for another job, so
   * that the supersede is queued behind it), then that supersede, written or (`supersedeRefused`)
   * refused too and tried again with the SUCCESS: the execution's end.
   */
  const successThenSupersede = async (deviceId: string, supersedeRefused: boolean): Promise<ExecutionRecord> => {
    const { dev, jobId: first } = await sent(deviceId, 'fw@2.0.0');
    await report(dev, deviceId, { version: '1.0.0', jobId: first, status: 'DOWNLOADING', progress: 0.5 });
    await eventually(async () => ((await execution(first, deviceId))?.status === 'IN_PROGRESS' ? true : undefined), 10_000, 'IN_PROGRESS');
    const store = ts.server.store;
    const real = store.updateExecution;
    const refuse = supersedeRefused ? 2 : 1;
    let refused = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    store.updateExecution = async function (this: StateStore, record, changed) {
      if (record.jobId === first && refused < refuse) {
        refused++;
        if (refused === 1) await gate;
        throw Object.assign(new Error('database or disk is full'), { code: 'SQLITE_FULL' });
      }
      return real.call(this, record, changed);
    };
    try {
      await report(dev, deviceId, { version: '2.0.0', jobId: first, status: 'SUCCESS' });
      await eventually(async () => (refused === 1 ? true : undefined), 10_000, 'the SUCCESS being written');
      // the device is asked for another job: the supersede waits behind the SUCCESS
      await sent(deviceId, 'fw@3.0.0', dev);
      release();
      await eventually(async () => (refused === refuse ? true : undefined), 10_000, 'the writes refused');
    } finally {
      release();
      store.updateExecution = real;
    }
    return eventually(async () => {
      const e = await execution(first, deviceId);
      return e && e.status !== 'IN_PROGRESS' && ts.server.tracker.unrecorded.size === 0 ? e : undefined;
    }, 15_000, 'the first execution ended');
  };

  it('a SUCCESS refused, then the device asked for another job: the SUCCESS it reported first stands, not the supersede', async () => {
    const done = await successThenSupersede('full-7', false);
    assert.equal(done.status, 'SUCCEEDED', JSON.stringify(done.details));
    assert.equal(done.details.lateSuccess, undefined);
    assert.equal(done.details.version, '2.0.0');
  });

  it('the same with the supersede refused too: tried again in the order they came, SUCCEEDED', async () => {
    const done = await successThenSupersede('full-8', true);
    assert.equal(done.status, 'SUCCEEDED', JSON.stringify(done.details));
    assert.equal(done.details.lateSuccess, undefined);
  });

  it('stop ends the tries: what is owed is said, and forgotten', async () => {
    const { dev, jobId } = await sent('full-4', 'fw@2.0.0');
    const disk = failExecutionWrites(ts.server.store, (r) => r.jobId === jobId, Infinity);
    try {
      await report(dev, 'full-4', { version: '2.0.0', jobId, status: 'SUCCESS' });
      await eventually(async () => (ts.server.tracker.unrecorded.size === 1 ? true : undefined), 10_000, 'owed');
      await ts.server.tracker.stop();
      assert.equal(ts.server.tracker.unrecorded.size, 0);
      assert.ok(lines.some((l) => l.includes('stopping with executions not recorded yet')));
      const tried = disk.failed();
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal(disk.failed(), tried, 'no try after stop');
    } finally {
      disk.restore();
    }
  });
});
