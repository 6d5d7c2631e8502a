/**
 * A server whose database went back (`updraft restore` of a backup; a PostgreSQL failover that
 * lost writes) asks a device again for what it had already done. The device must answer, or
 * the execution the restored database holds open stays open for good (no timeout by default).
 *
 * 1. A job the device heard canceled (its stay command), asked for again by a server restored
 *    from before the cancel: the agent remembers the cancel and does not start the job, and it
 *    used to say nothing (review, 2026-12-06). It now reports the job called off, a FAILURE in
 *    the words of a job called off, and the execution ends CANCELED (a FAILED one was retried:
 *    the retry installed the canceled build).
 * 2. A job the device finished, asked for again at a shadow version lower than the one that
 *    acknowledged its outcome (the restored database's): the agent took it for the echo of its
 *    own report and dropped it (QA, 2026-12-06: executions open for good after a restore). It
 *    now re-reports the outcome, and the execution ends SUCCEEDED.
 * 3. The same, the device having installed a later build since: its re-report says what runs
 *    (the later build) and was recorded FAILED, "runs 3.0.0, not 2.0.0" (QA, 2026-12-06). It
 *    now names the version the job installed (`jobVersion`), and the execution ends SUCCEEDED.
 *
 * Real servers on one data directory (backup, stop, restore, start again), real agents with
 * A/B slots over the embedded broker.
 */
import assert from 'node:assert/strict';
import { mkdtemp } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { eventually, runCli } from '../helpers/cli.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact, deploy, outcome, startAgent } from '../security/support.ts';

const tmp = (prefix: string) => mkdtemp(path.join(os.tmpdir(), prefix));

async function execution(ts: TestServer, jobId: string, deviceId: string) {
  return (await ts.server.store.getExecutions([{ jobId, deviceId }]))[0];
}

async function restore(ts: TestServer, dataDir: string, backup: string, ports: Record<string, number>): Promise<TestServer> {
  await ts.stop();
  const r = await runCli(['restore', backup, '--data-dir', dataDir]);
  assert.equal(r.code, 0, r.stderr);
  return startTestServer({ dataDir, flags: ports });
}

/**
 * A server on its own data directory with builds 2.0.0 and 3.0.0, device `id` registered (its
 * agent run once, then stopped), job A (2.0.0) sent while it is away, and a backup that holds
 * A unfinished. `ports`: the server's, for the restored one.
 */
async function jobAInBackup(prefix: string, id: string) {
  const dataDir = await tmp(`${prefix}-`);
  const root = await tmp(`${prefix}-agents-`);
  const backup = path.join(await tmp(`${prefix}-bk-`), 'b');
  const ts = await startTestServer({ dataDir });
  const ports = { 'mqtt-port': Number(new URL(ts.mqttUrl).port), 'http-port': Number(new URL(ts.httpUrl).port) };
  await addArtifact(ts, '2.0.0', Buffer.from('fw 2.0.0 '.repeat(3000)));
  await addArtifact(ts, '3.0.0', Buffer.from('fw 3.0.0 '.repeat(3000)));
  const password = await registerDevice(ts, id);
  const first = await startAgent(ts, root, id, { username: id, password });
  await first.agent.stop();
  const jobA = await deploy(ts, [id], 'fw@2.0.0');
  await eventually(async () => ((await execution(ts, jobA, id))?.dispatchedAt !== undefined ? true : undefined), 20_000, 'job A sent');
  const b = await runCli(['backup', '--data-dir', dataDir, '--out', backup]);
  assert.equal(b.code, 0, b.stderr);
  return { dataDir, root, backup, ts, ports, password, jobA };
}

describe('a server restored from a backup asks devices again', () => {
  it('a job the device heard canceled: reported called off, not started; the execution ends CANCELED', { timeout: 180_000 }, async () => {
    const dataDir = await tmp('updraft-restored-cancel-');
    const root = await tmp('updraft-restored-cancel-agents-');
    const backup = path.join(await tmp('updraft-restored-cancel-bk-'), 'b');
    let ts = await startTestServer({ dataDir });
    // the build the device runs is in the catalogue: a cancel takes the device back with a stay command
    await addArtifact(ts, '1.0.0', Buffer.from('fw 1.0.0 '.repeat(300)));
    await addArtifact(ts, '2.0.0', Buffer.from('fw 2.0.0 '.repeat(3000)));
    const id = 'rc-1';
    const password = await registerDevice(ts, id);
    let run = await startAgent(ts, root, id, { username: id, password });
    await run.agent.stop();
    const jobA = await deploy(ts, [id], 'fw@2.0.0');
    const b = await runCli(['backup', '--data-dir', dataDir, '--out', backup]);
    assert.equal(b.code, 0, b.stderr);
    const canceled = await fetch(`${ts.httpUrl}/api/v1/jobs/${jobA}/cancel`, { method: 'POST', headers: { authorization: `Bearer ${ts.token}` } });
    assert.equal(canceled.status, 200);
    run = await startAgent(ts, root, id, { username: id, password });
    assert.equal((await outcome(run.finished, `${jobA}.cancel`)).status, 'SUCCESS', 'the device heard the cancel');
    await run.agent.stop();

    ts = await restore(ts, dataDir, backup, {});
    try {
      assert.notEqual((await execution(ts, jobA, id))?.status, 'CANCELED', 'the restored database holds the job open');
      run = await startAgent(ts, root, id, { username: id, password });
      const ended = await eventually(async () => {
        const e = await execution(ts, jobA, id);
        return e && e.status !== 'QUEUED' && e.status !== 'IN_PROGRESS' ? e : undefined;
      }, 30_000, "the restored job's execution ends");
      // in the words of a job called off: CANCELED, not a failure that a retry would send again
      assert.equal(ended.status, 'CANCELED', String(ended.details?.error));
      assert.match(String(ended.details?.error), /^canceled: not started, this device heard this job canceled before/);
      assert.equal(run.finished.some((e) => e.jobId === jobA), false, 'the job was not started');
      const sw = (await ts.server.store.getShadow(id, ''))?.state.reported?.software as { version?: string } | undefined;
      assert.equal(sw?.version, '1.0.0', 'the device still runs its build');
      await run.agent.stop();
    } finally {
      // a failed check leaves the agent running: its reconnects held the server's close
      await run.agent.stop().catch(() => undefined);
      await ts.close();
    }
  });

  it('a job the device finished, asked for again at an older shadow version: its outcome re-reported; the execution ends SUCCEEDED', { timeout: 180_000 }, async () => {
    const id = 'rd-1';
    const { dataDir, root, backup, ports, password, jobA, ts: first } = await jobAInBackup('updraft-restored-done', id);
    let ts = first;
    // the device finishes A, then a later job B (gone with the restore), refused by its install
    // gate so that it still runs A's build: A is not its latest job, which it reports again at
    // each reconnect
    const run = await startAgent(ts, root, id, { username: id, password, installGate: async (sw) => (sw.version === '3.0.0' ? { refuse: 'not this build' } : { go: true }) });
    assert.equal((await outcome(run.finished, jobA)).status, 'SUCCESS');
    const jobB = await deploy(ts, [id], 'fw@3.0.0');
    assert.equal((await outcome(run.finished, jobB)).status, 'FAILURE');
    const before = (await ts.server.store.getShadow(id, ''))!.version;

    // restored on the same ports, the agent still running: it reconnects and asks with get
    ts = await restore(ts, dataDir, backup, ports);
    try {
      const restored = (await ts.server.store.getShadow(id, ''))!;
      assert.ok(restored.version < before, `the restored shadow is older (${restored.version} < ${before})`);
      const ended = await eventually(async () => {
        const e = await execution(ts, jobA, id);
        return e && e.status !== 'QUEUED' && e.status !== 'IN_PROGRESS' ? e : undefined;
      }, 30_000, "job A's execution, open again in the restored database, ends");
      assert.equal(ended.status, 'SUCCEEDED');
      assert.equal(run.finished.filter((e) => e.jobId === jobA).length, 1, 'job A not run twice');
      await run.agent.stop();
    } finally {
      // a failed check leaves the agent running: its reconnects held the server's close
      await run.agent.stop().catch(() => undefined);
      await ts.close();
    }
  });
  it('a job the device finished and has moved on from since, asked for again: the re-report names what the job installed; SUCCEEDED, not "runs 3.0.0, not 2.0.0"', { timeout: 180_000 }, async () => {
    const id = 'rm-1';
    const { dataDir, root, backup, ports, password, jobA, ts: first } = await jobAInBackup('updraft-restored-moved', id);
    let ts = first;
    // the device finishes A, then B (gone with the restore): it runs B's build
    const run = await startAgent(ts, root, id, { username: id, password });
    assert.equal((await outcome(run.finished, jobA)).status, 'SUCCESS');
    const jobB = await deploy(ts, [id], 'fw@3.0.0');
    assert.equal((await outcome(run.finished, jobB)).status, 'SUCCESS');

    ts = await restore(ts, dataDir, backup, ports);
    try {
      const ended = await eventually(async () => {
        const e = await execution(ts, jobA, id);
        return e && e.status !== 'QUEUED' && e.status !== 'IN_PROGRESS' ? e : undefined;
      }, 30_000, "job A's execution, open again in the restored database, ends");
      assert.equal(ended.status, 'SUCCEEDED', `job A ended ${ended.status}: ${String(ended.details?.error)}`);
      assert.equal(run.finished.filter((e) => e.jobId === jobA).length, 1, 'job A not run twice');
      const sw = (await ts.server.store.getShadow(id, ''))?.state.reported?.software as { version?: string; jobId?: string; jobVersion?: string } | undefined;
      assert.equal(sw?.version, '3.0.0', 'the report says what runs: the later build');
      assert.equal(sw?.jobVersion, '2.0.0', 'and what job A installed');
      await run.agent.stop();
    } finally {
      // a failed check leaves the agent running: its reconnects held the server's close
      await run.agent.stop().catch(() => undefined);
      await ts.close();
    }
  });
});
