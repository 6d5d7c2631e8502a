/**
 * Jobs are handled once, even by an agent that lost its state file (corrupted, or deleted
 * with a wiped data partition): it takes the outcome it reported last from its shadow before
 * it reports anything, so a job it already finished is re-reported, not installed again.
 * Real server, real agent, real MQTT, the slot installer on a temporary directory.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import type { UpdateAgent } from '../../src/agent/agent.ts';
import type { UpdateAgentOptions } from '../../src/agent/agent-options.ts';
import { MemoryAgentStateStore } from '../../src/agent/agent-state.ts';
import { SlotInstaller } from '../../src/agent/slot-installer.ts';
import { createLogger } from '../../src/util/logger.ts';
import { eventually } from '../helpers/cli.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact, deploy, outcome, startAgent } from '../security/support.ts';
import { CountingInstaller } from './support/agent-fixture.ts';

describe('an agent that lost its state', () => {
  let ts: TestServer;
  let root: string;
  const agents: UpdateAgent[] = [];

  before(async () => {
    ts = await startTestServer();
    root = await mkdtemp(path.join(os.tmpdir(), 'updraft-lost-state-'));
    await addArtifact(ts, '2.0.0', Buffer.from('fw 2.0.0 '.repeat(1000)));
  });
  after(async () => {
    await Promise.all(agents.map((a) => a.stop()));
    await ts.close();
    await rm(root, { recursive: true, force: true });
  });

  /**
   * A registered device whose agent (slot installer, a failing health check, `options` on top)
   * took fw@2.0.0 and reported FAILURE, then stopped: the job's execution is FAILED.
   */
  async function failedJob(deviceId: string, options: Partial<UpdateAgentOptions>) {
    const password = await registerDevice(ts, deviceId);
    const dir = path.join(root, deviceId);
    const slots = (healthCheck: string) => new SlotInstaller({ dir, initialVersion: '1.0.0', initialName: 'fw', healthCheck });
    const first = await startAgent(ts, root, deviceId, { username: deviceId, password, installer: slots('echo "sensor broken" >&2; exit 1'), ...options });
    agents.push(first.agent);
    const jobId = await deploy(ts, [deviceId], 'fw@2.0.0');
    assert.equal((await outcome(first.finished, jobId)).status, 'FAILURE');
    await first.agent.stop();
    /** The status of the job's one execution. */
    const execution = async () => {
      const res = await fetch(`${ts.httpUrl}/api/v1/jobs/${jobId}`, { headers: { authorization: `Bearer ${ts.token}` } });
      return ((await res.json()) as { executions: { status: string }[] }).executions[0]!.status;
    };
    assert.equal(await execution(), 'FAILED');
    return { password, dir, slots, jobId, execution };
  }

  it('does not install a job it finished with FAILURE again: it re-reports the failure (state file corrupted, then deleted)', async () => {
    const deviceId = 'ls-1';
    const { password, dir, slots, jobId, execution } = await failedJob(deviceId, {});
    const stateFile = path.join(dir, '.updraft', 'agent-state.json');
    const reported = async () => (await ts.server.store.getShadow(deviceId, ''))?.state.reported?.software as { jobId?: string; status?: string; version?: string; error?: string };

    const version = async () => (await ts.server.store.getShadow(deviceId, ''))!.version;
    for (const loss of ['corrupted', 'deleted'] as const) {
      const stopped = await version();
      if (loss === 'corrupted') await writeFile(stateFile, '{"finished": [\n');
      else await rm(stateFile);
      const lines: string[] = [];
      // the health check passes now: an install would succeed
      const installer = new CountingInstaller(slots('true'));
      const again = await startAgent(ts, root, deviceId, { username: deviceId, password, installer, logger: createLogger({ level: 'info', write: (l) => lines.push(l) }) });
      agents.push(again.agent);
      if (loss === 'corrupted') assert.ok(lines.some((l) => l.includes('agent state unreadable, starting without it')), lines.join('\n'));
      await eventually(async () => ((await version()) > stopped ? true : undefined), 15_000, 'the connect report');
      // a job run again would be downloaded, installed and reported within this
      await sleep(1500);
      assert.equal(installer.installs, 0, `${loss}: installed again\n${lines.join('\n')}`);
      assert.deepEqual(again.finished, [], `${loss}: no job ran`);
      const now = await reported();
      assert.deepEqual({ jobId: now.jobId, status: now.status, version: now.version }, { jobId, status: 'FAILURE', version: '1.0.0' }, loss);
      assert.match(now.error ?? '', /sensor broken/, loss);
      assert.equal(await execution(), 'FAILED');
      await again.agent.stop();
      // it remembers it from now on
      assert.ok((await readdir(path.join(dir, '.updraft'))).includes('agent-state.json'), loss);
    }
  });

  it('given a fresh MemoryAgentStateStore (nothing saved), does not run again a job its device FAILED: it asks its shadow first', async () => {
    const deviceId = 'ls-2';
    const { password, slots, jobId, execution } = await failedJob(deviceId, { stateStore: new MemoryAgentStateStore() });
    const shadow = async () => (await ts.server.store.getShadow(deviceId, ''))!;
    // what the agent meets at its next start: desired still names the FAILED job
    assert.equal(((await shadow()).state.desired?.software as { jobId?: string } | undefined)?.jobId, jobId);
    const stopped = (await shadow()).version;

    // a process restarted with a new memory store (as a library user's, or a test's, is); the health check passes now
    const store = new MemoryAgentStateStore();
    const installer = new CountingInstaller(slots('true'));
    const lines: string[] = [];
    const again = await startAgent(ts, root, deviceId, { username: deviceId, password, installer, stateStore: store, logger: createLogger({ level: 'info', write: (l) => lines.push(l) }) });
    agents.push(again.agent);
    // the job is in the store's finished list either way: taken from the shadow (not run), or run and reported
    await eventually(async () => (store.current.finished.some((f) => f.jobId === jobId) ? true : undefined), 30_000, `${jobId} known as finished\n${lines.join('\n')}`);
    await eventually(async () => ((await shadow()).version > stopped ? true : undefined), 15_000, 'the connect report');
    assert.equal(installer.installs, 0, `installed again\n${lines.join('\n')}`);
    assert.deepEqual(store.current.finished.map((f) => [f.jobId, f.status]), [[jobId, 'FAILURE']]);
    assert.deepEqual(again.finished, [], 'no job ran');
    assert.ok(lines.some((l) => l.includes('took it from its shadow')), lines.join('\n'));
    const reported = (await shadow()).state.reported?.software as { jobId?: string; status?: string; version?: string };
    assert.deepEqual({ jobId: reported.jobId, status: reported.status, version: reported.version }, { jobId, status: 'FAILURE', version: '1.0.0' });
    assert.equal(await execution(), 'FAILED');
    await again.agent.stop();
  });
});
