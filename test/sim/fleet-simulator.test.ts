/** Smoke runs of the fleet simulator against a real server (a few dozen devices). */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { ApiClient } from '../../src/cli/api-client.ts';
import { FleetSimulator } from '../../src/sim/fleet-simulator.ts';
import { registerFleet } from '../../src/sim/register-fleet.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

describe('fleet simulator', () => {
  let ts: TestServer;
  let api: ApiClient;
  before(async () => {
    ts = await startTestServer();
    api = new ApiClient({ server: ts.httpUrl, token: ts.token });
    await api.call('POST', '/api/v1/artifacts?name=fw&version=2.0.0', randomBytes(4096));
  });
  after(() => ts.close());

  async function rollout(devices: { deviceId: string }[]) {
    const r = await api.call<{ job: { jobId: string } }>('POST', '/api/v1/deployments', { devices: devices.map((d) => d.deviceId), artifact: 'fw@2.0.0' });
    return r.job.jobId;
  }

  async function outcome(jobId: string) {
    await ts.server.tracker.idle();
    const { executions } = await api.call<{ executions: { status: string }[] }>('GET', `/api/v1/jobs/${jobId}`);
    return executions.reduce<Record<string, number>>((acc, x) => ({ ...acc, [x.status]: (acc[x.status] ?? 0) + 1 }), {});
  }

  it('connected mode: every device takes the update once, with crashes and failures', async () => {
    const devices = await registerFleet(api, 'conn-', 30);
    const sim = new FleetSimulator({ brokerUrl: ts.mqttUrl, devices, mode: 'connected', installMs: 20, crashRate: 0.2, failureRate: 0.1, seed: 7 });
    try {
      await sim.start();
      assert.equal(sim.stats.connected, 30);
      const jobId = await rollout(devices);
      await sim.whenFinished(30);
      const counts = await outcome(jobId);
      assert.equal((counts.SUCCEEDED ?? 0) + (counts.FAILED ?? 0), 30, JSON.stringify(counts));
      assert.equal(counts.SUCCEEDED, sim.stats.succeeded);
      assert.ok(sim.stats.failed > 0 && sim.stats.crashes > 0, `the seed exercises failures and crashes: ${JSON.stringify(sim.stats)}`);
    } finally {
      await sim.stop();
    }
  });

  it('cycling mode: more devices than slots, each connects, updates and leaves', async () => {
    const devices = await registerFleet(api, 'cyc-', 40);
    const jobId = await rollout(devices); // deployed while every device is offline
    const sim = new FleetSimulator({ brokerUrl: ts.mqttUrl, devices, mode: 'cycling', concurrency: 8, seed: 3 });
    try {
      await sim.start();
      await sim.whenFinished(40);
      assert.deepEqual(await outcome(jobId), { SUCCEEDED: 40 });
      assert.equal(sim.installs, 40, 'no device installed twice');
    } finally {
      await sim.stop();
    }
  });
});
