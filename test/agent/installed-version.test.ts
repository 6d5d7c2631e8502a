/**
 * The agent reports the version the device runs, not the one it was asked for: an installer
 * whose install (or recovery after a restart) ends without error while `current()` still
 * names the old version was reported SUCCESS with the target version, while the agent's own
 * `job-finished` said the old one. Now that is a FAILURE saying what runs. Real server, real
 * agents, real MQTT; the device's installer is the test's own (it is the device's seam).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { UpdateAgent } from '../../src/agent/agent.ts';
import type { StatusEvent } from '../../src/agent/agent-events.ts';
import type { InstalledSoftware, Installer, RecoveryResult } from '../../src/agent/installer.ts';
import { eventually } from '../helpers/cli.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact, deploy, outcome, startAgent } from '../security/support.ts';
import { nextEvent } from './support/agent-fixture.ts';

/** A device whose installer finishes (an install, or a recovery saying `installed`) and yet keeps running 1.0.0. */
function stuckOn100(recover?: RecoveryResult['outcome']): Installer & { installs: number } {
  const running: InstalledSoftware = { name: 'fw', version: '1.0.0' };
  const installer = {
    installs: 0,
    current: async () => running,
    install: async () => {
      installer.installs++;
    },
    ...(recover ? { recover: async (): Promise<RecoveryResult> => ({ outcome: recover }) } : {}),
  };
  return installer;
}

describe('an installer that ends without error while the old version still runs', () => {
  let ts: TestServer;
  let root: string;
  const agents: UpdateAgent[] = [];
  const get = async (p: string) => fetch(`${ts.httpUrl}/api/v1${p}`, { headers: { authorization: `Bearer ${ts.token}` } });

  before(async () => {
    ts = await startTestServer();
    root = await mkdtemp(path.join(os.tmpdir(), 'updraft-installed-version-'));
    await addArtifact(ts, '2.0.0', randomBytes(20_000));
  });
  after(async () => {
    await Promise.all(agents.map((a) => a.stop()));
    await ts.close();
    await rm(root, { recursive: true, force: true });
  });

  /** The server's view of `deviceId` and `jobId` once the execution ended. */
  async function serverSide(deviceId: string, jobId: string) {
    const execution = await eventually(async () => {
      const e = await ts.server.store.getExecution(jobId, deviceId);
      return e?.status === 'FAILED' || e?.status === 'SUCCEEDED' ? e : undefined;
    }, 15_000, `${deviceId}'s execution ended`);
    const software = (await ts.server.store.getShadow(deviceId, ''))?.state.reported?.software as Record<string, unknown> | undefined;
    return { execution, software };
  }

  it('is a FAILURE naming what runs, reported with the running version, its log sent like any failure', async () => {
    const deviceId = 'iv-1';
    const installer = stuckOn100();
    const { agent, finished } = await startAgent(ts, root, deviceId, { installer });
    agents.push(agent);
    const statuses: StatusEvent[] = [];
    agent.on('status', (e) => statuses.push(e));
    const jobId = await deploy(ts, [deviceId], 'fw@2.0.0');
    const o = await outcome(finished, jobId);
    assert.equal(installer.installs, 1);
    const error = 'the installer finished but the device runs 1.0.0, not 2.0.0';
    assert.deepEqual(o, { jobId, status: 'FAILURE', version: '1.0.0', error: `${error}: it installed nothing, or rolled back without saying so` });
    assert.deepEqual(statuses.at(-1), { jobId, status: 'FAILURE', version: '2.0.0', error: o.error });
    assert.ok(!statuses.some((e) => e.status === 'SUCCESS'), 'no SUCCESS announced');
    const { execution, software } = await serverSide(deviceId, jobId);
    assert.equal(execution.status, 'FAILED');
    assert.equal(execution.details.error, o.error);
    assert.equal(software?.version, '1.0.0');
    assert.equal(software?.status, 'FAILURE');
    // the failure's log, as for an installer that threw
    const log = await eventually(async () => {
      const res = await get(`/jobs/${jobId}/logs/${deviceId}`);
      return res.status === 200 ? ((await res.json()) as { lines: string[] }) : undefined;
    }, 15_000, 'the job log');
    assert.ok(log.lines.some((l) => l.includes('phase INSTALLING')), log.lines.join('\n'));
    assert.ok(log.lines.some((l) => l.includes('outcome FAILURE') && l.includes(error)), log.lines.join('\n'));
  });

  it('after a restart mid-install, a recovery saying "installed" while the old version runs is a FAILURE too', async () => {
    const deviceId = 'iv-2';
    const password = await registerDevice(ts, deviceId);
    // the first agent stops while INSTALLING (saved), its install never ending
    const stalled: Installer = {
      current: async () => ({ name: 'fw', version: '1.0.0' }),
      install: (_file, _sw, ctx) =>
        new Promise((_resolve, reject) => {
          const signal = ctx.signal!;
          if (signal.aborted) reject(signal.reason);
          else signal.addEventListener('abort', () => reject(signal.reason), { once: true });
        }),
    };
    const first = await startAgent(ts, root, deviceId, { username: deviceId, password, installer: stalled });
    agents.push(first.agent);
    const installing = nextEvent(first.agent, 'status', (e) => e.status === 'INSTALLING');
    const jobId = await deploy(ts, [deviceId], 'fw@2.0.0');
    await installing;
    await first.agent.stop();

    const again = await startAgent(ts, root, deviceId, { username: deviceId, password, installer: stuckOn100('installed') });
    agents.push(again.agent);
    const o = await outcome(again.finished, jobId);
    assert.equal(o.status, 'FAILURE');
    assert.equal(o.version, '1.0.0');
    assert.match(o.error ?? '', /^the installer finished but the device runs 1\.0\.0, not 2\.0\.0/);
    const { execution, software } = await serverSide(deviceId, jobId);
    assert.equal(execution.status, 'FAILED');
    assert.equal(software?.version, '1.0.0');
  });
});
