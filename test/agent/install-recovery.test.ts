/**
 * A restart in the middle of an install is recovered from what the install directory holds;
 * what a previous job left there (a slot it rejected) is not taken for this job's outcome.
 * Real server, real agents, real MQTT, the slot installer on a temporary directory; the
 * crash is the agent stopped while its install, saved as INSTALLING, has not begun writing.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, readlink, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { UpdateAgent } from '../../src/agent/agent.ts';
import type { Installer } from '../../src/agent/installer.ts';
import { SlotInstaller } from '../../src/agent/slot-installer.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact, deploy, outcome, startAgent } from '../security/support.ts';
import { nextEvent } from './support/agent-fixture.ts';

describe('an install interrupted by a restart', () => {
  let ts: TestServer;
  let root: string;
  const agents: UpdateAgent[] = [];

  before(async () => {
    ts = await startTestServer();
    root = await mkdtemp(path.join(os.tmpdir(), 'updraft-install-recovery-'));
    await addArtifact(ts, '6.0.0', randomBytes(30_000));
  });
  after(async () => {
    await Promise.all(agents.map((a) => a.stop()));
    await ts.close();
    await rm(root, { recursive: true, force: true });
  });

  it("is not failed with an older job's health-check reason for the same build: it installs", async () => {
    const deviceId = 'ir-1';
    const password = await registerDevice(ts, deviceId);
    const dir = path.join(root, deviceId);
    const slots = (healthCheck: string) => new SlotInstaller({ dir, initialVersion: '1.0.0', initialName: 'fw', healthCheck });
    const start = async (installer: Installer) => {
      const started = await startAgent(ts, root, deviceId, { username: deviceId, password, installer });
      agents.push(started.agent);
      return started;
    };

    // job A fails its health check: its slot is marked rejected
    const a = await start(slots('echo "sensor broken" >&2; exit 1'));
    const jobA = await deploy(ts, [deviceId], 'fw@6.0.0');
    const failed = await outcome(a.finished, jobA);
    assert.equal(failed.status, 'FAILURE');
    assert.match(failed.error ?? '', /sensor broken/);
    await a.agent.stop();
    assert.match(JSON.parse(await readFile(path.join(dir, 'slots', 'a', 'manifest.json'), 'utf8')).rejected, /sensor broken/);

    // the check is fixed; job B deploys the same build and the agent stops (a crash) right
    // after INSTALLING is saved, before the slot installer wrote anything
    const fixed = slots('true');
    const stalled: Installer = {
      current: () => fixed.current(),
      install: (_file, _sw, ctx) =>
        new Promise((_resolve, reject) => {
          const signal = ctx.signal!;
          if (signal.aborted) reject(signal.reason);
          else signal.addEventListener('abort', () => reject(signal.reason), { once: true });
        }),
    };
    const b = await start(stalled);
    const installing = nextEvent(b.agent, 'status', (e) => e.status === 'INSTALLING');
    const jobB = await deploy(ts, [deviceId], 'fw@6.0.0');
    assert.notEqual(jobB, jobA);
    await installing;
    await b.agent.stop();

    // the restart recovers job B: nothing of it was installed, so it installs
    const again = await start(fixed);
    const o = await outcome(again.finished, jobB);
    assert.equal(o.status, 'SUCCESS', o.error);
    assert.equal(o.version, '6.0.0');
    assert.equal(await readlink(path.join(dir, 'current')), path.join('slots', 'a'));
  });
});
