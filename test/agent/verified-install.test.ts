/**
 * What is installed is what was verified: a downloaded build that changes on the device's
 * disk after its check (here while the install gate puts the install off) is refused, the job
 * ends in FAILURE with the reason, and nothing is switched. Real server, real agent, real
 * MQTT, the slot installer on a temporary directory, and an installer of the device's own.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, open, readFile, readlink, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { UpdateAgent } from '../../src/agent/agent.ts';
import { partFile } from '../../src/agent/download-files.ts';
import type { Installer } from '../../src/agent/installer.ts';
import type { GateAnswer } from '../../src/agent/update-job.ts';
import { eventually } from '../helpers/cli.ts';
import { type TestServer, startTestServer } from '../helpers/server.ts';
import { addArtifact, deploy, outcome, startAgent } from '../security/support.ts';
import { sha256 } from './support/artifact-server.ts';

describe('a build changed on the disk after it was verified', () => {
  let ts: TestServer;
  let root: string;
  const agents: UpdateAgent[] = [];
  const build = randomBytes(40_000);

  before(async () => {
    ts = await startTestServer();
    root = await mkdtemp(path.join(os.tmpdir(), 'updraft-verified-install-'));
    await addArtifact(ts, '2.0.0', build);
  });
  after(async () => {
    await Promise.all(agents.map((a) => a.stop()));
    await ts.close();
    await rm(root, { recursive: true, force: true });
  });

  /** An agent whose gate says "not now" until `release()`; `asked` counts its calls. */
  async function gated(deviceId: string, installer?: Installer) {
    let go = false;
    let asked = 0;
    const started = await startAgent(ts, root, deviceId, {
      ...(installer ? { installer } : {}),
      installGate: async (): Promise<GateAnswer> => {
        asked++;
        return go ? { go: true } : { later: 'vehicle moving' };
      },
      installGateRetryMs: 20,
    });
    agents.push(started.agent);
    return { ...started, asked: () => asked, release: () => (go = true) };
  }

  /** Flips one byte in the middle of the job's downloaded file (same size). */
  async function tamper(installDir: string, jobId: string): Promise<void> {
    const handle = await open(partFile(path.join(installDir, '.updraft'), jobId), 'r+');
    try {
      const byte = Buffer.alloc(1);
      await handle.read(byte, 0, 1, 20_000);
      byte[0]! ^= 0xff;
      await handle.write(byte, 0, 1, 20_000);
    } finally {
      await handle.close();
    }
  }

  const expected = `the downloaded build changed on the device after it was verified, while the install waited: sha256 [0-9a-f]{64}, expected ${sha256(build)}; nothing installed`;

  it('fails the job with the reason and installs nothing (the slot installer)', async () => {
    const a = await gated('vi-1');
    const jobId = await deploy(ts, ['vi-1'], 'fw@2.0.0');
    await eventually(async () => (a.asked() >= 1 ? true : undefined), 30_000, 'the install put off');
    await tamper(a.installDir, jobId);
    a.release();
    const o = await outcome(a.finished, jobId);
    assert.equal(o.status, 'FAILURE');
    assert.match(o.error ?? '', new RegExp(`^${expected}$`));
    assert.equal(o.version, '1.0.0');
    // nothing was written into a slot, nothing switched
    assert.equal(await readlink(path.join(a.installDir, 'current')).catch(() => 'nothing installed'), 'nothing installed');
    assert.deepEqual(await readdir(path.join(a.installDir, 'slots')).catch(() => []), []);
    const reported = (await ts.server.store.getShadow('vi-1', ''))?.state.reported?.software as { status?: string; error?: string; version?: string } | undefined;
    assert.equal(reported?.status, 'FAILURE');
    assert.equal(reported?.version, '1.0.0');
  });

  it("fails it before an installer of the device's own is given the file", async () => {
    const installed: string[] = [];
    const own: Installer = {
      current: async () => ({ name: 'fw', version: '1.0.0' }),
      install: async (file) => void installed.push(sha256(await readFile(file))),
    };
    const a = await gated('vi-2', own);
    const jobId = await deploy(ts, ['vi-2'], 'fw@2.0.0');
    await eventually(async () => (a.asked() >= 1 ? true : undefined), 30_000, 'the install put off');
    await tamper(a.installDir, jobId);
    a.release();
    const o = await outcome(a.finished, jobId);
    assert.equal(o.status, 'FAILURE');
    assert.match(o.error ?? '', new RegExp(`^${expected}$`));
    assert.deepEqual(installed, [], 'the installer was never called');
  });
});
