/**
 * `updraft sim --mode cycling --until-finished` waits for a retry the rollout holds back: a
 * device whose update failed, and whose visit found no command, is done only once the server
 * says it owes the device none (GET /api/v1/devices/{id}: nothing QUEUED or IN_PROGRESS). It
 * was done at its first visit with no command, and the command exited with the retry QUEUED
 * behind a pause (or a rate, a window) longer than the idle time (5 s). With --processes, the
 * children (which get no operator token) ask their parent.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createPublicKey } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ApiClient, type ApiOptions } from '../../src/cli/api-client.ts';
import { commandOwedOf } from '../../src/cli/sim-command.ts';
import { FleetSimulator } from '../../src/sim/fleet-simulator.ts';
import { registerFleet } from '../../src/sim/register-fleet.ts';
import { eventually, startCli } from '../helpers/cli.ts';
import { Scratch } from '../helpers/scratch.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

type Execution = { deviceId: string; status: string; attempt?: number; details: { agentStatus?: string } };
type JobView = { job: { status: string }; counts: Record<string, number>; executions: Execution[] };

describe('updraft sim: --until-finished and a retry the rollout holds back', () => {
  let ts: TestServer;
  let api: ApiClient;
  const scratch = new Scratch();
  before(async () => {
    ts = await startTestServer();
    api = new ApiClient({ server: ts.httpUrl, token: ts.token });
    await api.call('POST', '/api/v1/artifacts?name=fw&version=2.0.0', randomBytes(4096));
  });
  after(async () => {
    await scratch.release();
    await ts.close();
  });

  /**
   * Runs `count` devices (every install fails, each taking 1.5 s) in cycling mode until
   * finished, with `extra` options; pauses the job while the first attempts install, waits for
   * two idle visits after the failures with the retries held (the command must still run), then
   * resumes: the retries come, fail, and the command ends with both attempts counted.
   */
  async function heldRetry(prefix: string, count: number, extra: string[]): Promise<void> {
    const devices = await registerFleet(api, prefix, count);
    const file = path.join(await scratch.tmp('updraft-sim-held-'), 'devices.json');
    await writeFile(file, JSON.stringify(devices), { mode: 0o600 });
    const sim = startCli(['sim', '--devices-file', file, '--broker', ts.mqttUrl, '--server', ts.httpUrl, '--token', ts.token, '--mode', 'cycling', '--failure-rate', '1', '--install-ms', '1500', '--until-finished', ...extra]);
    try {
      await sim.waitFor(new RegExp(`sim: ready ${count} devices`), 60_000);
      const created = await api.call<{ job: { jobId: string } }>('POST', '/api/v1/jobs', { artifact: 'fw@2.0.0', targets: { devices: devices.map((d) => d.deviceId) }, retries: { limit: 1 } });
      const jobId = created.job.jobId;
      const view = () => api.call<JobView>('GET', `/api/v1/jobs/${jobId}`);
      // paused while every first attempt installs: their retries are queued, and held
      await eventually(async () => ((await view()).executions.filter((e) => e.details.agentStatus === 'INSTALLING').length === count ? true : undefined), 60_000, 'every device installs its first attempt');
      await api.call('POST', `/api/v1/jobs/${jobId}/pause`);
      await eventually(async () => ((await view()).executions.filter((e) => e.status === 'QUEUED' && e.attempt === 2).length === count ? true : undefined), 60_000, 'every first attempt failed, its retry queued');
      // the devices visit again and find no command: two idle visits each, the retries still held
      const idle = (): number => {
        const lines = [...sim.output().matchAll(/^sim: (\{"connected".*\})$/gm)];
        return lines.length ? (JSON.parse(lines.at(-1)![1]!) as { idleVisits: number }).idleVisits : 0;
      };
      const idleAtFailure = idle();
      await eventually(async () => (idle() >= idleAtFailure + 2 * count ? true : undefined), 60_000, () => `two idle visits per device after the failure: ${sim.output()}`);
      assert.doesNotMatch(sim.output(), /sim: finished|"devices":/, `the command still runs while the server owes the devices their retries: ${sim.output()}`);
      assert.equal(sim.child.exitCode, null, 'the simulator has not exited');
      const held = await view();
      assert.equal(held.executions.filter((e) => e.status === 'QUEUED').length, count, `the retries are still held: ${JSON.stringify(held.counts)}`);
      await api.call('POST', `/api/v1/jobs/${jobId}/resume`);
      const summary = JSON.parse((await sim.waitFor(new RegExp(`^(\\{.*"devices":${count}.*\\})$`, 'm'), 120_000))[1]!) as Record<string, number>;
      assert.deepEqual(
        { finished: summary.finished, failed: summary.failed, outcomes: summary.outcomes, installs: summary.installs },
        { finished: count, failed: count, outcomes: 2 * count, installs: 2 * count },
        `every device took its retry before the command ended: ${JSON.stringify(summary)}`,
      );
      const end = await view();
      assert.deepEqual(end.executions.map((e) => [e.status, e.attempt]), devices.map(() => ['FAILED', 2]), `the server ended every device's retry FAILED: ${JSON.stringify(end.executions)}`);
      assert.equal(await sim.kill(), 0, 'exit 0: no device was given up');
    } finally {
      await sim.kill('SIGKILL').catch(() => undefined);
    }
  }

  it('one process asks the server, and ends only once the retries it held back came', { timeout: 240_000 }, async () => {
    await heldRetry('held-one-', 2, []);
  });

  it('--processes: each child asks its parent, which asks the server', { timeout: 240_000 }, async () => {
    await heldRetry('held-many-', 2, ['--processes', '2', '--concurrency', '2']);
  });

  const trust = () => ({ signingPublicKey: createPublicKey(ts.server.security.signingKey.publicKeyPem) });
  const apiOf = (extra: ApiOptions = {}) => new ApiClient({ server: ts.httpUrl, token: ts.token, ...extra });

  it('a device done asks no more, and a job of its own is what it waits for, not another job for it (scheduled a day ahead)', { timeout: 120_000 }, async () => {
    const devices = await registerFleet(api, 'held-lib-', 3);
    const ids = devices.map((d) => d.deviceId);
    const { commandOwed } = commandOwedOf(apiOf);
    const asked: string[] = [];
    const counted = async (deviceId: string, jobId: string, since: number) => {
      asked.push(deviceId);
      return commandOwed!(deviceId, jobId, since);
    };
    const sim = new FleetSimulator({ brokerUrl: ts.mqttUrl, trust: trust(), devices, mode: 'cycling', concurrency: 3, failureRate: 1, idleTimeoutMs: 300, seed: 3, commandOwed: counted });
    try {
      await sim.start();
      await api.call('POST', '/api/v1/jobs', { artifact: 'fw@2.0.0', targets: { devices: ids }, retries: { limit: 0 } });
      await eventually(async () => (sim.stats.failed === 3 ? true : undefined), 60_000, () => `every device failed: ${JSON.stringify(sim.stats)}`);
      // another job for them, a day ahead: QUEUED, and nothing the failed update waits for
      const startAt = new Date(Date.now() + 86_400_000).toISOString();
      await api.call('POST', '/api/v1/jobs', { artifact: 'fw@2.0.0', targets: { devices: ids }, plan: { startAt } });
      await eventually(async () => (sim.settled === 3 ? true : undefined), 60_000, () => `every device is done though another job is QUEUED for it: ${JSON.stringify(sim.stats)} asked ${asked.length}`);
      const askedAtDone = asked.length;
      const idleAtDone = sim.stats.idleVisits;
      // the devices that failed still visit (a retry could reach them): a done one is asked about no more
      await eventually(async () => (sim.stats.idleVisits >= idleAtDone + 6 ? true : undefined), 60_000, 'six more idle visits');
      assert.equal(asked.length, askedAtDone, `no question after the devices were done (${askedAtDone} before, ${asked.length} after six more visits)`);
      assert.ok(askedAtDone >= 3, `each device was asked about: ${askedAtDone}`);
    } finally {
      await sim.stop();
    }
  });

  it('a server that cannot answer the question: one warning, no wait through it, the devices done', { timeout: 180_000 }, async () => {
    const devices = await registerFleet(api, 'held-503-', 3);
    const dir = await scratch.tmp('updraft-sim-503-');
    const file = path.join(dir, 'devices.json');
    await writeFile(file, JSON.stringify(devices), { mode: 0o600 });
    const keyFile = path.join(dir, 'signing.pub');
    await writeFile(keyFile, ts.server.security.signingKey.publicKeyPem);
    // the sim's server: one that answers 503 to everything
    const stub = createServer((_req, res) => res.writeHead(503, { 'content-type': 'application/json' }).end('{"error":{"code":"UNAVAILABLE","message":"not now"}}'));
    await new Promise<void>((resolve) => stub.listen(0, '127.0.0.1', resolve));
    scratch.onRelease(() => new Promise((resolve) => stub.close(resolve)));
    const stubUrl = `http://127.0.0.1:${(stub.address() as AddressInfo).port}`;
    const sim = startCli(['sim', '--devices-file', file, '--broker', ts.mqttUrl, '--server', stubUrl, '--token', 'x', '--signing-key', keyFile, '--mode', 'cycling', '--failure-rate', '1', '--until-finished']);
    try {
      await sim.waitFor(/sim: ready 3 devices/, 60_000);
      await api.call('POST', '/api/v1/jobs', { artifact: 'fw@2.0.0', targets: { devices: devices.map((d) => d.deviceId) }, retries: { limit: 0 } });
      const summary = JSON.parse((await sim.waitFor(/^(\{.*"devices":3.*\})$/m, 120_000))[1]!) as Record<string, number>;
      assert.deepEqual({ finished: summary.finished, failed: summary.failed }, { finished: 3, failed: 3 }, JSON.stringify(summary));
      const out = sim.output();
      assert.equal(out.match(/sim: warning: cannot ask the server/g)?.length, 1, `one warning: ${out}`);
      assert.doesNotMatch(out, /cannot answer for now/, `no wait through the 503s: ${out}`);
      assert.equal(await sim.kill(), 0);
    } finally {
      await sim.kill('SIGKILL').catch(() => undefined);
    }
  });

  it('a question the server is slow to answer holds no visit up: the others go on meanwhile', { timeout: 120_000 }, async () => {
    const devices = await registerFleet(api, 'held-slow-', 2);
    const { commandOwed } = commandOwedOf(apiOf);
    // every question waits for the test's word before it reaches the server: a slow server
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let asked = 0;
    const slow = async (deviceId: string, jobId: string, since: number) => {
      asked++;
      await gate;
      return commandOwed!(deviceId, jobId, since);
    };
    // one worker for two devices: a visit held by the question would hold the other device's too
    const sim = new FleetSimulator({ brokerUrl: ts.mqttUrl, trust: trust(), devices, mode: 'cycling', concurrency: 1, failureRate: 1, idleTimeoutMs: 300, seed: 4, commandOwed: slow });
    try {
      await sim.start();
      await api.call('POST', '/api/v1/jobs', { artifact: 'fw@2.0.0', targets: { devices: devices.map((d) => d.deviceId) }, retries: { limit: 0 } });
      await eventually(async () => (asked >= 1 ? true : undefined), 60_000, () => `a question asked: ${JSON.stringify(sim.stats)}`);
      const connects = sim.stats.connects;
      await eventually(async () => (sim.stats.connects >= connects + 3 ? true : undefined), 60_000, () => `visits go on while the question waits: ${connects} connects then, ${sim.stats.connects} now`);
      assert.equal(sim.settled, 0, 'no device is done while its question waits');
      release();
      await sim.whenFinished(2);
      assert.deepEqual({ failed: sim.stats.failed, finished: sim.stats.finished }, { failed: 2, finished: 2 }, JSON.stringify(sim.stats));
    } finally {
      release();
      await sim.stop();
    }
  });

  it('a rollback after the job aborted ends its visit, and changes no outcome: the visits go on, the device that failed is done', { timeout: 120_000 }, async () => {
    // the rollback names what the device ran before the job: that build must be in the catalogue
    await api.call('POST', '/api/v1/artifacts?name=fw&version=1.0.0', randomBytes(4096));
    const devices = await registerFleet(api, 'held-rollback-', 1);
    const { commandOwed } = commandOwedOf(apiOf);
    const sim = new FleetSimulator({ brokerUrl: ts.mqttUrl, trust: trust(), devices, mode: 'cycling', concurrency: 1, failureRate: 1, idleTimeoutMs: 300, seed: 6, commandOwed });
    try {
      await sim.start();
      // the job records what the device ran when it was sent (its rollback's build): once reported
      const reported = async () => (await api.call<{ shadow?: { state?: { reported?: { software?: { version?: string } } } } }>('GET', `/api/v1/devices/${devices[0]!.deviceId}`)).shadow?.state?.reported?.software?.version;
      await eventually(async () => ((await reported()) === '1.0.0' ? true : undefined), 60_000, 'the device reports running 1.0.0');
      const created = await api.call<{ job: { jobId: string } }>('POST', '/api/v1/jobs', {
        artifact: 'fw@2.0.0',
        targets: { devices: devices.map((d) => d.deviceId) },
        abort: { rules: [{ type: 'FAILED', thresholdPercent: 50, minFinished: 1 }], rollback: true },
      });
      const jobId = created.job.jobId;
      const shadow = () => api.call<{ shadow?: { state?: { desired?: { software?: { jobId?: string } } } } }>('GET', `/api/v1/devices/${devices[0]!.deviceId}`);
      await eventually(async () => ((await shadow()).shadow?.state?.desired?.software?.jobId === `${jobId}.rollback` ? true : undefined), 60_000, () => `the job aborted, the device's rollback desired: ${JSON.stringify(sim.stats)}`);
      // the device acknowledges it (it runs 1.0.0: its installer had rolled the failed install back)
      const acked = async () => (await api.call<{ shadow?: { state?: { reported?: { software?: { jobId?: string; version?: string } } } } }>('GET', `/api/v1/devices/${devices[0]!.deviceId}`)).shadow?.state?.reported?.software;
      await eventually(async () => ((await acked())?.jobId === `${jobId}.rollback` ? true : undefined), 60_000, () => `the device acknowledged the rollback: ${JSON.stringify(sim.stats)}`);
      assert.equal((await acked())?.version, '1.0.0', 'it runs what it ran before the job');
      // the visit that took the rollback ends, and the visits go on (one worker: a visit held for good holds them all)
      const connects = sim.stats.connects;
      await eventually(async () => (sim.stats.connects >= connects + 2 ? true : undefined), 60_000, () => `visits go on after the rollback: ${connects} connects then, ${sim.stats.connects} now`);
      await eventually(async () => (sim.settled === 1 ? true : undefined), 60_000, () => `the device is done: ${JSON.stringify(sim.stats)}`);
      assert.deepEqual({ succeeded: sim.stats.succeeded, failed: sim.stats.failed, finished: sim.stats.finished }, { succeeded: 0, failed: 1, finished: 1 }, `the rollback is no outcome of the update: ${JSON.stringify(sim.stats)}`);
    } finally {
      await sim.stop();
    }
  });
});
