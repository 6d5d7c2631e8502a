/**
 * Nothing lost (docs/design.md §8): a rollout to 300 simulated devices (the real agent with the
 * simulated installer, real MQTT and HTTP) survives a SIGKILL of the server mid-rollout.
 * After a restart on the same data directory and ports every device ends in a terminal
 * state, none installed twice for the job, and every acknowledgement a device received is
 * recorded. The rate limit keeps the rollout going for several seconds, so the kill lands
 * mid-rollout on any machine (asserted, not assumed).
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { ApiClient } from '../../src/cli/api-client.ts';
import { registerFleet } from '../../src/sim/register-fleet.ts';
import { fleetAgents } from '../helpers/agents.ts';
import { eventually, startCli, type CliProcess } from '../helpers/cli.ts';
import { freePort } from '../helpers/free-port.ts';

const DEVICES = 300;

interface JobView {
  job: { jobId: string; status: string };
  counts: Record<string, number>;
}

describe('rollout across a server SIGKILL', () => {
  let dir: string;
  let server: CliProcess | undefined;
  let stopAgents = async () => {};
  after(async () => {
    await stopAgents();
    await server?.kill('SIGTERM');
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('completes with every device terminal, no double install, every acknowledgement recorded', { timeout: 240_000 }, async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-kill-'));
    const [mqttPort, httpPort] = [await freePort(), await freePort()];
    const args = ['server', '--data-dir', path.join(dir, 'data'), '--mqtt-port', String(mqttPort), '--http-port', String(httpPort), '--mqtt-host', '127.0.0.1', '--http-host', '127.0.0.1', '--mqtt-tls-port', '-1', '--log-level', 'error'];
    const startServer = async () => {
      const p = startCli(args);
      await p.waitFor(/HTTP API and downloads on/, 60_000);
      return p;
    };
    server = await startServer();
    const api = new ApiClient({ server: `http://127.0.0.1:${httpPort}`, dataDir: path.join(dir, 'data') });
    await api.call('POST', '/api/v1/artifacts?name=fw&version=2.0.0', Buffer.from('firmware 2.0.0'));
    const fleet = await registerFleet(api, 'k-', DEVICES);

    const devices = fleetAgents(fleet, { brokerUrl: `mqtt://127.0.0.1:${mqttPort}`, dir: path.join(dir, 'devices') });
    stopAgents = devices.stop;
    const { installers, acknowledged } = devices;
    await devices.start();
    await eventually(async () => {
      const { items } = await api.call<{ items: { devices: number }[] }>('GET', '/api/v1/fleet/versions');
      return items.reduce((n, v) => n + v.devices, 0) === DEVICES ? true : undefined;
    }, 120_000, 'every device reporting');

    const created = await api.call<JobView>('POST', '/api/v1/jobs', {
      artifact: 'fw@2.0.0',
      targets: { query: 'tags = sim' },
      plan: { waves: [{ count: 20, successThreshold: 90 }, { percent: 50 }, { percent: 100 }], maxPerMinute: 1200 },
      timeouts: { inProgressSeconds: 600 },
    });
    const jobId = created.job.jobId;
    assert.equal((await api.call<{ total: number }>('GET', `/api/v1/jobs/${jobId}?limit=1`)).total, DEVICES);

    // mid-rollout: some devices done, some not even sent yet
    const before = await eventually(async () => {
      const v = await api.call<JobView>('GET', `/api/v1/jobs/${jobId}?limit=1`);
      return (v.counts.SUCCEEDED ?? 0) >= 40 ? v : undefined;
    }, 120_000, '40 devices updated');
    assert.ok((before.counts.QUEUED ?? 0) > 0, `the kill lands mid-rollout: ${JSON.stringify(before.counts)}`);
    assert.equal(await server.kill('SIGKILL'), null, 'killed by the signal');

    server = await startServer();
    const final = await eventually(async () => {
      const v = await api.call<JobView>('GET', `/api/v1/jobs/${jobId}?limit=1`);
      return v.job.status === 'COMPLETED' ? v : undefined;
    }, 180_000, 'the job completed after the restart');

    assert.deepEqual(final.counts, { QUEUED: 0, IN_PROGRESS: 0, SUCCEEDED: DEVICES, FAILED: 0, TIMED_OUT: 0, REJECTED: 0, CANCELED: 0, REMOVED: 0 });
    for (const [deviceId, installer] of installers) assert.equal(installer.installs, 1, `${deviceId} installed once`);
    // every outcome the devices saw acknowledged is what the server recorded
    await eventually(async () => (acknowledged.size === DEVICES ? true : undefined), 60_000, 'every agent acknowledged');
    let after: string | undefined;
    let seen = 0;
    do {
      const page = await api.call<{ items: { deviceId: string; status: string }[]; next?: string }>('GET', `/api/v1/jobs/${jobId}/executions?limit=1000${after ? `&after=${after}` : ''}`);
      for (const e of page.items) {
        assert.equal(acknowledged.get(e.deviceId), `${jobId}:SUCCESS`, e.deviceId);
        assert.equal(e.status, 'SUCCEEDED');
        seen++;
      }
      after = page.next;
    } while (after);
    assert.equal(seen, DEVICES);
  });
});
