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
import { eventually, runCli } from '../helpers/cli.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';
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

  /**
   * An agent whose gate gives `answers` in turn (the last one from then on), and the calls it
   * got. With `msPerAsk`, the agent's clock moves by that much at each call and stands still
   * otherwise, so how long the gate has put the install off does not depend on how fast the
   * machine downloads and verifies.
   */
  async function gated(deviceId: string, answers: GateAnswer[], maxWaitMs = 60_000, msPerAsk?: number) {
    const asked: string[] = [];
    const t0 = Date.now();
    const started = await startAgent(ts, root, deviceId, {
      ...(msPerAsk !== undefined ? { now: () => t0 + asked.length * msPerAsk } : {}),
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
    const putOff: unknown[] = [];
    a.agent.on('status', (e) => e.waiting && putOff.push(e));
    const job = await deploy(ts, ['g-1'], 'fw@2.0.0');
    assert.equal((await outcome(a.finished, job)).status, 'SUCCESS');
    assert.deepEqual(a.asked, ['2.0.0', '2.0.0', '2.0.0']);
    // each "not now" is announced as the job's (its id and target version, as StatusEvent's type says)
    assert.deepEqual(putOff, [1, 2].map((count) => ({ jobId: job, status: 'VERIFYING', version: '2.0.0', waiting: { reason: 'vehicle moving', count, nextCheckInSeconds: 0.02 } })));
  });

  it('fails the job when the gate refuses, and when it puts the install off past the limit; nothing installed either way', async () => {
    const refusing = await gated('g-2', [{ refuse: 'exit code 3: wrong hardware revision' }]);
    const before2 = await current(refusing.installDir);
    const job2 = await deploy(ts, ['g-2'], 'fw@2.0.0');
    const o2 = await outcome(refusing.finished, job2);
    assert.equal(o2.status, 'FAILURE');
    assert.equal(o2.error, "refused by the device's install gate: exit code 3: wrong hardware revision; nothing installed");
    assert.equal(await current(refusing.installDir), before2);

    // 310 ms allowed, each call 100 ms later, asked again every 20 ms: put off at 100, 200 and
    // 300 ms (asked a last time at the limit, though the next interval ends past it), given up at 400
    const stalling = await gated('g-3', [{ later: 'battery at 12%' }], 310, 100);
    const before3 = await current(stalling.installDir);
    const job3 = await deploy(ts, ['g-3'], 'fw@2.0.0');
    const o3 = await outcome(stalling.finished, job3);
    assert.equal(o3.status, 'FAILURE');
    assert.match(o3.error ?? '', /^the device's install gate put the install off for \d+ s, the 0 s allowed: battery at 12%; nothing installed$/);
    assert.equal(stalling.asked.length, 4, 'asked until the limit, not given up an interval before it');
    assert.equal(await current(stalling.installDir), before3);
  });

  // ---- the server's step timer and the gate's wait --------------------------------------

  const api = async <T>(method: string, route: string, body?: unknown): Promise<T> => {
    const res = await fetch(`${ts.httpUrl}${route}`, { method, headers: { authorization: `Bearer ${ts.token}`, 'content-type': 'application/json' }, ...(body ? { body: JSON.stringify(body) } : {}) });
    assert.ok(res.ok, `${method} ${route}: ${res.status} ${await res.clone().text()}`);
    return (await res.json()) as T;
  };
  type Execution = { deviceId: string; status: string; details: { agentStatus?: string; error?: string; waiting?: { reason: string; count: number; nextCheckInSeconds: number } } };
  const createJob = async (deviceId: string, stepSeconds: number) =>
    (await api<{ job: { jobId: string } }>('POST', '/api/v1/jobs', { artifact: 'fw@2.0.0', targets: { devices: [deviceId] }, timeouts: { stepSeconds } })).job.jobId;
  const executionOf = async (jobId: string) => (await api<{ executions: Execution[] }>('GET', `/api/v1/jobs/${jobId}`)).executions[0]!;

  it("a job's step timer waits for the device's gate: each \"not now\" is recorded and restarts it, so waits longer than the step timeout end in success", async () => {
    // "not now" for 7 s, asked every 0.5 s, under a step timeout of 3 s: the gate's whole
    // wait is past it, each interval (with the agent's report pacing, 1 s) well inside it
    let since: number | undefined;
    const a = await startAgent(ts, root, 'g-4', {
      installGate: async () => {
        since ??= Date.now();
        return Date.now() - since < 7000 ? { later: 'vehicle moving' } : { go: true };
      },
      installGateRetryMs: 500,
    });
    agents.push(a.agent);
    const before4 = await current(a.installDir);
    const jobId = await createJob('g-4', 3);
    const waiting = await eventually(async () => {
      const e = await executionOf(jobId);
      return (e.details.waiting?.count ?? 0) >= 2 ? e : undefined;
    }, 30_000, 'the wait recorded on the execution');
    assert.equal(waiting.status, 'IN_PROGRESS');
    assert.equal(waiting.details.agentStatus, 'VERIFYING');
    assert.deepEqual({ ...waiting.details.waiting, count: 0 }, { reason: 'vehicle moving', count: 0, nextCheckInSeconds: 0.5 });
    assert.equal((await outcome(a.finished, jobId)).status, 'SUCCESS');
    const done = await eventually(async () => {
      const e = await executionOf(jobId);
      return e.status === 'IN_PROGRESS' ? undefined : e;
    }, 30_000, 'the execution ended');
    assert.equal(done.status, 'SUCCEEDED', JSON.stringify(done.details));
    assert.equal(done.details.waiting, undefined, 'the wait ended with it');
    assert.notEqual(await current(a.installDir), before4, 'the new build is installed');
  });

  it('a device that goes silent while its gate waits still times out, with the gate\'s reason; a restarted agent goes on counting', async () => {
    const a = await startAgent(ts, root, 'g-5', { installGate: async () => ({ later: 'machine at work' }), installGateRetryMs: 1000 });
    // a step timer short enough to run out once the device is silent, long enough for a loaded
    // machine to download and verify before it does
    const jobId = await createJob('g-5', 5);
    const first = await eventually(async () => (await executionOf(jobId)).details.waiting, 30_000, 'the wait recorded');
    await a.agent.stop();
    const timedOut = await eventually(async () => {
      const e = await executionOf(jobId);
      return e.status === 'TIMED_OUT' ? e : undefined;
    }, 30_000, 'the execution timed out');
    assert.match(timedOut.details.error ?? '', /^step timeout: the device's install gate put the install off \(machine at work; \d+ times?\), and it did not report within \d+ s of that$/);
    assert.ok(first.count >= 1);

    // the count is kept in the agent's state: a restart asks again and counts on
    const password = await registerDevice(ts, 'g-5-restarted');
    const gate = { username: 'g-5-restarted', password, installGate: async (): Promise<GateAnswer> => ({ later: 'machine at work' }), installGateRetryMs: 60_000 };
    const again = await startAgent(ts, root, 'g-5-restarted', gate);
    agents.push(again.agent);
    const jobId2 = await createJob('g-5-restarted', 600);
    const w1 = await eventually(async () => (await executionOf(jobId2)).details.waiting, 30_000, 'the first wait recorded');
    assert.equal(w1.count, 1);
    await again.agent.stop();
    const restarted = await startAgent(ts, root, 'g-5-restarted', gate);
    agents.push(restarted.agent);
    const w2 = await eventually(async () => {
      const w = (await executionOf(jobId2)).details.waiting;
      return w && w.count >= 2 ? w : undefined;
    }, 30_000, 'the wait after the restart');
    assert.equal(w2.count, 2);

    // what an operator sees of it
    const cli = (...args: string[]) => runCli([...args, '--server', ts.httpUrl, '--token', ts.token]);
    const device = await cli('device', 'show', 'g-5-restarted');
    assert.equal(device.code, 0, device.stderr);
    assert.match(device.stdout, new RegExp(`${jobId2}  IN_PROGRESS .* VERIFYING, runs 1\\.0\\.0, install put off 2 times: machine at work$`, 'm'));
    const job = await cli('job', 'show', jobId2);
    assert.match(job.stdout, /^  g-5-restarted  IN_PROGRESS  install put off 2 times: machine at work$/m);
    const timeline = await api<{ items: { kind: string; status: string; reason?: string }[] }>('GET', '/api/v1/devices/g-5-restarted/events');
    assert.equal(timeline.items.find((e) => e.kind === 'state')?.reason, "the device's install gate put the install off (2): machine at work");
  });
});
