/**
 * The simulator counts a device by its update's outcome, not by the take-back's stay command
 * (soak QA J4): a device offline through both attempts of a job (`retries: 1`, a short
 * timeout) comes back to the stay `<job>.2.cancel`, which it acknowledges as SUCCESS while it
 * still runs the old version. The simulator counted that as the update succeeding; the
 * server's execution is TIMED_OUT.
 */
import assert from 'node:assert/strict';
import { createPublicKey, randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { ApiClient } from '../../src/cli/api-client.ts';
import { FleetSimulator } from '../../src/sim/fleet-simulator.ts';
import { registerFleet } from '../../src/sim/register-fleet.ts';
import { eventually } from '../helpers/cli.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

type JobView = { job: { status: string }; counts: Record<string, number>; executions: { deviceId: string; status: string; attempt?: number }[] };

describe('updraft sim: outcomes of a take-back', () => {
  let ts: TestServer;
  let api: ApiClient;
  before(async () => {
    ts = await startTestServer();
    api = new ApiClient({ server: ts.httpUrl, token: ts.token });
    // the build the devices run is in the catalogue: a take-back is then a stay naming it (else desired software is cleared)
    await api.call('POST', '/api/v1/artifacts?name=fw&version=1.0.0', randomBytes(4096));
    await api.call('POST', '/api/v1/artifacts?name=fw&version=2.0.0', randomBytes(4096));
    await api.call('POST', '/api/v1/artifacts?name=fw&version=3.0.0', randomBytes(4096));
  });
  const trust = () => ({ signingPublicKey: createPublicKey(ts.server.security.signingKey.publicKeyPem) });
  after(() => ts.close());

  it('a device whose every attempt timed out while it was offline counts as failed, not as succeeded by its stay', async () => {
    const devices = await registerFleet(api, 'takeback-', 2);
    // each device reports once what it runs (fw 1.0.0), then goes offline
    const first = new FleetSimulator({ brokerUrl: ts.mqttUrl, trust: trust(), devices, mode: 'connected', seed: 5 });
    try {
      await first.start();
      for (const d of devices) {
        await eventually(async () => ((await api.call<{ shadow?: { state?: { reported?: { software?: { version?: string } } } } }>('GET', `/api/v1/devices/${d.deviceId}`)).shadow?.state?.reported?.software?.version === '1.0.0' ? true : undefined), 30_000, `${d.deviceId} reports running 1.0.0`);
      }
    } finally {
      await first.stop();
    }
    const created = await api.call<{ job: { jobId: string } }>('POST', '/api/v1/jobs', {
      artifact: 'fw@2.0.0',
      targets: { devices: devices.map((d) => d.deviceId) },
      retries: { limit: 1 },
      timeouts: { inProgressSeconds: 1 },
    });
    const jobId = created.job.jobId;
    // both attempts time out while the fleet is offline: each device's shadow then holds the stay of attempt 2
    const view = async () => api.call<JobView>('GET', `/api/v1/jobs/${jobId}`);
    await eventually(async () => ((await view()).executions.every((x) => x.status === 'TIMED_OUT' && x.attempt === 2) ? true : undefined), 60_000, 'both attempts of every device time out while it is offline');
    // the stay is written after the TIMED_OUT (the timeout's take-back, its own write): read until
    // it is there (read at once, a loaded machine saw the attempt's command still standing)
    for (const d of devices) {
      const desiredJob = async () => (await api.call<{ shadow?: { state?: { desired?: { software?: { jobId?: string } } } } }>('GET', `/api/v1/devices/${d.deviceId}`)).shadow?.state?.desired?.software?.jobId;
      await eventually(async () => ((await desiredJob()) === `${jobId}.2.cancel` ? true : undefined), 30_000, `${d.deviceId}: the stay of attempt 2 waits for the device (${jobId}.2.cancel desired)`);
    }
    const sim = new FleetSimulator({ brokerUrl: ts.mqttUrl, trust: trust(), devices, mode: 'cycling', concurrency: 2, idleTimeoutMs: 300, seed: 5 });
    try {
      await sim.start();
      await sim.whenFinished(devices.length);
      const { counts } = await view();
      assert.deepEqual(Object.fromEntries(Object.entries(counts).filter(([, n]) => n > 0)), { TIMED_OUT: 2 }, 'the server keeps both executions TIMED_OUT');
      assert.deepEqual(
        { succeeded: sim.stats.succeeded, failed: sim.stats.failed, finished: sim.stats.finished },
        { succeeded: 0, failed: 2, finished: 2 },
        `the simulator counts each device by its update's outcome (timed out), as the server does, not by the stay it acknowledged: ${JSON.stringify(sim.stats)}`,
      );
      assert.equal(sim.installs, 0, 'no device installed anything: the stay names what it runs');
      const states = await sim.devicesState();
      assert.deepEqual(states.map((s) => s.state?.software.version), ['1.0.0', '1.0.0'], 'the devices still run the old version');
    } finally {
      await sim.stop();
    }
  });

  it('a job superseded on the device ends no visit and no device: the simulator waits for the newer job, and counts its outcome', async () => {
    const [device] = await registerFleet(api, 'superseded-', 1);
    const deploy = async (artifact: string) => (await api.call<{ job: { jobId: string } }>('POST', '/api/v1/deployments', { devices: [device!.deviceId], artifact })).job.jobId;
    const first = await deploy('fw@2.0.0');
    // the device goes offline while it downloads the first job (every download draws an offline
    // period), long enough for the second job's command to be written meanwhile: back online,
    // it resumes the first and calls it off for the second (FAILURE "superseded by job ...");
    // 10 s offline: the second job is written in milliseconds, with room for a loaded machine
    const sim = new FleetSimulator({ brokerUrl: ts.mqttUrl, trust: trust(), devices: [device!], mode: 'cycling', concurrency: 1, idleTimeoutMs: 300, offlineRate: 1, offlineMs: 10_000, seed: 5 });
    try {
      await sim.start();
      await eventually(async () => (sim.stats.offlinePeriods >= 1 ? true : undefined), 30_000, 'the device goes offline during its first download');
      const second = await deploy('fw@3.0.0');
      await sim.whenFinished(1);
      await ts.server.tracker.idle();
      const status = async (jobId: string) => (await api.call<JobView>('GET', `/api/v1/jobs/${jobId}`)).executions[0]?.status;
      assert.equal(await status(first), 'CANCELED', 'the server ends the first job CANCELED (superseded)');
      assert.equal(await status(second), 'SUCCEEDED', 'the device is done only once the job that superseded the first one succeeded');
      assert.deepEqual(
        { succeeded: sim.stats.succeeded, failed: sim.stats.failed, finished: sim.stats.finished },
        { succeeded: 1, failed: 0, finished: 1 },
        `the superseded job is no outcome of the device: ${JSON.stringify(sim.stats)}`,
      );
      assert.equal(sim.installs, 1, 'one install: the second job');
    } finally {
      await sim.stop();
    }
  });

  it('cycling: a device whose update failed is done once a visit finds no retry for it, not at its first failure', async () => {
    const [device] = await registerFleet(api, 'failed-', 1);
    const created = await api.call<{ job: { jobId: string } }>('POST', '/api/v1/jobs', { artifact: 'fw@2.0.0', targets: { devices: [device!.deviceId] }, retries: { limit: 1 } });
    const jobId = created.job.jobId;
    // every install fails: attempt 1, then its retry; the idle time (8 s) leaves the server's next
    // tick (every 250 ms) room to send the retry, also on a loaded machine
    const sim = new FleetSimulator({ brokerUrl: ts.mqttUrl, trust: trust(), devices: [device!], mode: 'cycling', concurrency: 1, idleTimeoutMs: 8000, failureRate: 1, seed: 5 });
    try {
      await sim.start();
      await sim.whenFinished(1);
      await ts.server.tracker.idle();
      const { executions } = await api.call<JobView>('GET', `/api/v1/jobs/${jobId}`);
      assert.deepEqual(executions.map((x) => ({ status: x.status, attempt: x.attempt })), [{ status: 'FAILED', attempt: 2 }], 'the device is done once its retry failed too: no execution left QUEUED');
      assert.deepEqual(
        { succeeded: sim.stats.succeeded, failed: sim.stats.failed, finished: sim.stats.finished, outcomes: sim.stats.outcomes },
        { succeeded: 0, failed: 1, finished: 1, outcomes: 2 },
        `both attempts' outcomes heard, the device counted once, failed: ${JSON.stringify(sim.stats)}`,
      );
    } finally {
      await sim.stop();
    }
  });
});
