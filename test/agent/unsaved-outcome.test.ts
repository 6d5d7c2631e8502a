/**
 * A job's outcome the disk would not save (full, read-only) is not lost, and the job is not
 * run again under the same id: the agent saves it as soon as the disk takes it (retried, and
 * at the stop), and at a start it asks its shadow what it finished before it reports, so that
 * a file older than what it reported does not make it take a failed job's command (still
 * desired after a FAILURE) for a new one (QA: installed and reported SUCCESS while the
 * server kept the job FAILED). Real server, real agents, real MQTT, the slot installer on a
 * temporary directory; the full disk is the state file's place taken by a directory, which
 * no rename replaces, root or not, and the file put back as it was, as a full disk leaves it.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { UpdateAgent } from '../../src/agent/agent.ts';
import type { GateAnswer } from '../../src/agent/update-job.ts';
import { SlotInstaller } from '../../src/agent/slot-installer.ts';
import { createLogger } from '../../src/util/logger.ts';
import { eventually } from '../helpers/cli.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact, deploy, outcome, startAgent } from '../security/support.ts';
import { CountingInstaller } from './support/agent-fixture.ts';

describe('a job outcome the disk would not save', () => {
  let ts: TestServer;
  let root: string;
  const agents: UpdateAgent[] = [];

  before(async () => {
    ts = await startTestServer();
    root = await mkdtemp(path.join(os.tmpdir(), 'updraft-unsaved-'));
    await addArtifact(ts, '2.0.0', Buffer.from('fw 2.0.0 '.repeat(1000)));
    await addArtifact(ts, '3.0.0', Buffer.from('fw 3.0.0 '.repeat(1000)));
  });
  after(async () => {
    await Promise.all(agents.map((a) => a.stop()));
    await ts.close();
    await rm(root, { recursive: true, force: true });
  });

  const stateFile = (deviceId: string) => path.join(root, deviceId, '.updraft', 'agent-state.json');
  /** The disk refuses every save from now on; the file stays as it was. */
  const fillDisk = async (file: string): Promise<Buffer> => {
    const was = await readFile(file);
    await rm(file);
    await mkdir(file);
    await writeFile(path.join(file, 'keep'), 'x'); // a non-empty directory: no rename replaces it
    return was;
  };
  /** Space is back: the file is what the last save that succeeded wrote. */
  const freeDisk = async (file: string, was: Buffer) => {
    await rm(file, { recursive: true });
    await writeFile(file, was);
  };
  const execution = async (jobId: string, deviceId: string) => (await ts.server.store.getExecution(jobId, deviceId))?.status;
  const finishedIn = async (file: string) => ((JSON.parse(await readFile(file, 'utf8').catch(() => '{}')).finished ?? []) as { jobId: string; status: string }[]).map((j) => `${j.jobId} ${j.status}`);

  /** Job Y succeeds and is saved; the disk fills; job X fails for it, and the server records that. */
  const failOnFullDisk = async (deviceId: string, password: string, opts: { retryDelayMs?: number; maxRetryDelayMs?: number } = {}) => {
    const dir = path.join(root, deviceId);
    const first = await startAgent(ts, root, deviceId, { username: deviceId, password, installer: new SlotInstaller({ dir, initialVersion: '1.0.0', initialName: 'fw', healthCheck: 'true' }), ...opts });
    agents.push(first.agent);
    const jobY = await deploy(ts, [deviceId], 'fw@2.0.0');
    assert.equal((await outcome(first.finished, jobY)).status, 'SUCCESS');
    await eventually(async () => ((await finishedIn(stateFile(deviceId))).includes(`${jobY} SUCCESS`) ? true : undefined), 15_000, 'job Y saved');
    const was = await fillDisk(stateFile(deviceId));
    const jobX = await deploy(ts, [deviceId], 'fw@3.0.0');
    const failed = await outcome(first.finished, jobX);
    assert.equal(failed.status, 'FAILURE');
    assert.match(failed.error ?? '', /^cannot save the agent's state in /);
    await eventually(async () => ((await execution(jobX, deviceId)) === 'FAILED' ? true : undefined), 15_000, 'X FAILED on the server');
    return { agent: first.agent, jobX, jobY, was };
  };

  it('a restart after a save lost to the full disk does not run the failed job again: it re-reports its FAILURE', async () => {
    const deviceId = 'uo-restart';
    const password = await registerDevice(ts, deviceId);
    const { agent, jobX, was } = await failOnFullDisk(deviceId, password);
    await agent.stop(); // the disk is still full: the stop cannot save it either
    await freeDisk(stateFile(deviceId), was);
    assert.ok(!(await finishedIn(stateFile(deviceId))).some((j) => j.startsWith(jobX)), 'the file does not know job X');

    const stopped = (await ts.server.store.getShadow(deviceId, ''))!.version;
    const lines: string[] = [];
    const installer = new CountingInstaller(new SlotInstaller({ dir: path.join(root, deviceId), initialVersion: '1.0.0', initialName: 'fw', healthCheck: 'true' }));
    const again = await startAgent(ts, root, deviceId, { username: deviceId, password, installer, logger: createLogger({ level: 'info', write: (l) => lines.push(l) }) });
    agents.push(again.agent);
    await eventually(async () => ((await ts.server.store.getShadow(deviceId, ''))!.version > stopped ? true : undefined), 15_000, 'the connect report');
    // its connect report is job X's FAILURE, which it took from its shadow, not the older job Y's
    const reported = (await ts.server.store.getShadow(deviceId, ''))!.state.reported!.software as { jobId?: string; status?: string; version?: string };
    assert.deepEqual({ jobId: reported.jobId, status: reported.status, version: reported.version }, { jobId: jobX, status: 'FAILURE', version: '2.0.0' }, lines.join('\n'));
    assert.ok(lines.some((l) => l.includes('the saved state lacks the last outcome this device reported')), lines.join('\n'));
    await eventually(async () => ((await finishedIn(stateFile(deviceId))).includes(`${jobX} FAILURE`) ? true : undefined), 15_000, 'job X saved once learnt');

    // a retry is a new job, and runs; job X never did
    const retry = await deploy(ts, [deviceId], 'fw@3.0.0');
    assert.equal((await outcome(again.finished, retry)).status, 'SUCCESS');
    assert.equal(installer.installs, 1, lines.join('\n'));
    assert.deepEqual(again.finished.map((e) => e.jobId), [retry]);
    assert.equal(await execution(jobX, deviceId), 'FAILED');
  });

  it('a job in flight before INSTALLING whose FAILURE the server acknowledged is not resumed at a restart: it is finished', async () => {
    const deviceId = 'uo-inflight';
    const password = await registerDevice(ts, deviceId);
    const dir = path.join(root, deviceId);
    // the device's gate puts the install off (the job waits at VERIFYING, saved), then refuses it
    let gate: GateAnswer = { later: 'busy' };
    const first = await startAgent(ts, root, deviceId, { username: deviceId, password, installer: new SlotInstaller({ dir, initialVersion: '1.0.0', initialName: 'fw', healthCheck: 'true' }), installGate: async () => gate, installGateRetryMs: 200 });
    agents.push(first.agent);
    const jobX = await deploy(ts, [deviceId], 'fw@3.0.0');
    const saved = async () => JSON.parse(await readFile(stateFile(deviceId), 'utf8').catch(() => '{}')) as { inFlight?: { jobId: string; phase: string; waiting?: unknown } };
    await eventually(async () => ((await saved()).inFlight?.waiting ? true : undefined), 15_000, 'job X saved waiting at VERIFYING');
    const was = await fillDisk(stateFile(deviceId));
    gate = { refuse: 'battery low' };
    const failed = await outcome(first.finished, jobX);
    assert.equal(failed.status, 'FAILURE');
    await eventually(async () => ((await execution(jobX, deviceId)) === 'FAILED' ? true : undefined), 15_000, 'X FAILED on the server');
    await first.agent.stop(); // the disk is still full: the stop cannot save it either
    await freeDisk(stateFile(deviceId), was);
    assert.deepEqual({ jobId: (await saved()).inFlight?.jobId, phase: (await saved()).inFlight?.phase }, { jobId: jobX, phase: 'VERIFYING' }, 'the file still has job X in flight');

    // restarted with a gate that lets it install at once: job X must not be taken up again
    const lines: string[] = [];
    const installer = new CountingInstaller(new SlotInstaller({ dir, initialVersion: '1.0.0', initialName: 'fw', healthCheck: 'true' }));
    const again = await startAgent(ts, root, deviceId, { username: deviceId, password, installer, installGate: async () => ({ go: true }), logger: createLogger({ level: 'info', write: (l) => lines.push(l) }) });
    agents.push(again.agent);
    await eventually(async () => ((await finishedIn(stateFile(deviceId))).includes(`${jobX} FAILURE`) ? true : undefined), 15_000, 'job X saved as finished once learnt');
    assert.equal((await saved()).inFlight, undefined, lines.join('\n'));
    assert.ok(lines.some((l) => l.includes('already reported its outcome')), lines.join('\n'));
    assert.ok(!lines.some((l) => l.includes('resuming interrupted update')), lines.join('\n'));
    // a retry is a new job, and runs; job X never did
    const retry = await deploy(ts, [deviceId], 'fw@3.0.0');
    assert.equal((await outcome(again.finished, retry)).status, 'SUCCESS');
    assert.equal(installer.installs, 1, lines.join('\n'));
    assert.deepEqual(again.finished.map((e) => e.jobId), [retry]);
    assert.equal(await execution(jobX, deviceId), 'FAILED');
  });

  it('is saved as soon as the disk takes it again, without a restart', async () => {
    const deviceId = 'uo-retry';
    const password = await registerDevice(ts, deviceId);
    // retries close together: with the default backoff (1 s doubling to 60 s) a disk full for
    // 15 s on a loaded machine put the retry after the freed disk past this wait (CI, 2026-12-07)
    const { jobX, was } = await failOnFullDisk(deviceId, password, { retryDelayMs: 100, maxRetryDelayMs: 500 });
    await freeDisk(stateFile(deviceId), was);
    await eventually(async () => ((await finishedIn(stateFile(deviceId))).includes(`${jobX} FAILURE`) ? true : undefined), 15_000, 'job X saved by a retry');
  });

  it('is saved at the stop when the disk takes it by then', async () => {
    const deviceId = 'uo-stop';
    const password = await registerDevice(ts, deviceId);
    // retries far apart: only the stop saves it within this test
    const { agent, jobX, was } = await failOnFullDisk(deviceId, password, { retryDelayMs: 60_000, maxRetryDelayMs: 60_000 });
    await freeDisk(stateFile(deviceId), was);
    await agent.stop();
    assert.ok((await finishedIn(stateFile(deviceId))).includes(`${jobX} FAILURE`));
  });
});
