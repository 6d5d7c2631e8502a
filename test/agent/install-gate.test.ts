/**
 * The device's install gate: asked before a verified build is installed, it says install
 * now, not now (asked again later, up to a limit) or not this build. The daemon's
 * `--install-gate` script on real processes; the agent's rule on a real server and broker.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readlink, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { UpdateAgent } from '../../src/agent/agent.ts';
import { runInstallGate } from '../../src/agent/health-check.ts';
import type { GateAnswer } from '../../src/agent/update-job.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact, deploy, outcome, startAgent } from '../security/support.ts';

describe('install gate', () => {
  let ts: TestServer;
  let root: string;
  const agents: UpdateAgent[] = [];

  before(async () => {
    ts = await startTestServer();
    root = await mkdtemp(path.join(os.tmpdir(), 'updraft-gate-'));
    await addArtifact(ts, '2.0.0', randomBytes(4000));
  });
  after(async () => {
    await Promise.all(agents.map((a) => a.stop()));
    await ts.close();
    await rm(root, { recursive: true, force: true });
  });

  it('reads a script: exit 0 installs, 75 puts off with the last line of stderr, anything else refuses; a silent one is "not now"', async () => {
    const run = (command: string, timeoutMs = 10_000) => runInstallGate({ command, cwd: root, env: { UPDRAFT_VERSION: '2.0.0' }, timeoutMs });
    assert.deepEqual(await run('[ "$UPDRAFT_VERSION" = 2.0.0 ]'), { go: true });
    assert.deepEqual(await run('echo checking >&2; echo "battery at 12%" >&2; exit 75'), { later: 'battery at 12%' });
    assert.deepEqual(await run('exit 75'), { later: 'exit code 75 (not now)' });
    assert.deepEqual(await run('echo "wrong hardware revision" >&2; exit 3'), { refuse: 'exit code 3: wrong hardware revision' });
    assert.deepEqual(await run('sleep 30', 100), { later: 'install gate timed out after 100 ms' });
  });

  /** An agent whose gate gives `answers` in turn (the last one from then on), and the calls it got. */
  async function gated(deviceId: string, answers: GateAnswer[], maxWaitMs = 60_000) {
    const asked: string[] = [];
    const started = await startAgent(ts, root, deviceId, {
      installGate: async (sw) => {
        asked.push(sw.version);
        return answers.length > 1 ? answers.shift()! : answers[0]!;
      },
      installGateRetryMs: 20,
      installGateMaxWaitMs: maxWaitMs,
    });
    agents.push(started.agent);
    return { ...started, asked };
  }
  const current = (dir: string) => readlink(path.join(dir, 'current')).catch(() => 'nothing installed');

  it('installs once the gate says so, asking again while it says "not now"', async () => {
    const a = await gated('g-1', [{ later: 'vehicle moving' }, { later: 'vehicle moving' }, { go: true }]);
    const job = await deploy(ts, ['g-1'], 'fw@2.0.0');
    assert.equal((await outcome(a.finished, job)).status, 'SUCCESS');
    assert.deepEqual(a.asked, ['2.0.0', '2.0.0', '2.0.0']);
  });

  it('fails the job when the gate refuses, and when it puts the install off past the limit; nothing installed either way', async () => {
    const refusing = await gated('g-2', [{ refuse: 'exit code 3: wrong hardware revision' }]);
    const before2 = await current(refusing.installDir);
    const job2 = await deploy(ts, ['g-2'], 'fw@2.0.0');
    const o2 = await outcome(refusing.finished, job2);
    assert.equal(o2.status, 'FAILURE');
    assert.equal(o2.error, "refused by the device's install gate: exit code 3: wrong hardware revision; nothing installed");
    assert.equal(await current(refusing.installDir), before2);

    const stalling = await gated('g-3', [{ later: 'battery at 12%' }], 150);
    const before3 = await current(stalling.installDir);
    const job3 = await deploy(ts, ['g-3'], 'fw@2.0.0');
    const o3 = await outcome(stalling.finished, job3);
    assert.equal(o3.status, 'FAILURE');
    assert.match(o3.error ?? '', /^the device's install gate put the install off for \d+ s, past the 0 s allowed: battery at 12%; nothing installed$/);
    assert.ok(stalling.asked.length >= 2, 'asked again before giving up');
    assert.equal(await current(stalling.installDir), before3);
  });
});
