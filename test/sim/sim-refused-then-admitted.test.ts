/**
 * `updraft sim` as a real process against a real server: devices the broker refuses at first
 * and admits a second later (as an external broker does once its password file, rebuilt after
 * a registration, lists them), and the final counts said when the command is stopped.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { ApiClient } from '../../src/cli/api-client.ts';
import { registerFleet } from '../../src/sim/register-fleet.ts';
import type { SimDevice } from '../../src/sim/sim-options.ts';
import { startCli } from '../helpers/cli.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

describe('updraft sim: refused at first, admitted later; its counts at a stop', () => {
  let ts: TestServer;
  let api: ApiClient;
  let dir: string;
  before(async () => {
    ts = await startTestServer();
    api = new ApiClient({ server: ts.httpUrl, token: ts.token });
    await api.call('POST', '/api/v1/artifacts?name=fw&version=2.0.0', randomBytes(4096));
    dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-sim-admitted-'));
  });
  after(async () => {
    await ts.close();
    await rm(dir, { recursive: true, force: true });
  });

  async function devicesFile(name: string, devices: SimDevice[]): Promise<string> {
    const file = path.join(dir, `${name}.json`);
    await writeFile(file, JSON.stringify(devices), { mode: 0o600 });
    return file;
  }

  async function deploy(devices: SimDevice[]): Promise<void> {
    await api.call('POST', '/api/v1/deployments', { devices: devices.map((d) => d.deviceId), artifact: 'fw@2.0.0' });
  }

  it('cycling: a device refused (not authorized) and admitted a second later is not given up: its refused visits pause as in connected mode', async () => {
    // more devices than --concurrency, as in the QA's 25 at 10: a refused device came back
    // "after the others" at once, and was refused 3 times within the same second, and given up
    const devices = await registerFleet(api, 'late-', 6);
    // refused until reinstated, as an external broker refuses a device its password file does not list yet
    for (const d of devices) await api.call('POST', `/api/v1/devices/${d.deviceId}/revoke`);
    const file = await devicesFile('late', devices);
    const cli = startCli(['sim', '--devices-file', file, '--broker', ts.mqttUrl, '--server', ts.httpUrl, '--token', ts.token, '--mode', 'cycling', '--concurrency', '2', '--until-finished']);
    try {
      await cli.waitFor(/^sim: warning: late-\d cannot connect: Connection refused/m, 30_000);
      // the broker admits them a second after their first refusal (a password file rebuilt and reloaded)
      await sleep(1000);
      for (const d of devices) await api.call('POST', `/api/v1/devices/${d.deviceId}/reinstate`);
      await deploy(devices);
      // a hang guard, not a speed check
      const summary = JSON.parse((await cli.waitFor(/^(\{.*"devices":6.*\})$/m, 90_000))[1]!);
      assert.deepEqual({ gaveUp: summary.gaveUp, finished: summary.finished, succeeded: summary.succeeded, installs: summary.installs }, { gaveUp: 0, finished: 6, succeeded: 6, installs: 6 }, cli.output());
      assert.equal(await cli.kill(), 0, cli.output());
    } finally {
      await cli.kill('SIGKILL').catch(() => undefined);
    }
  });

  for (const [mode, signal] of [['cycling', 'SIGTERM'], ['connected', 'SIGINT']] as const) {
    it(`${mode}: stopped by ${signal}, the command says its final counts (installs, outcomes)`, async () => {
      // the counts were said once, when every device first finished, and never at a stop
      const devices = await registerFleet(api, `stop${mode}-`, 3);
      const file = await devicesFile(`stop-${mode}`, devices);
      const cli = startCli(['sim', '--devices-file', file, '--broker', ts.mqttUrl, '--server', ts.httpUrl, '--token', ts.token, '--mode', mode, '--concurrency', '2']);
      try {
        await cli.waitFor(/^sim: ready 3 devices/m, 30_000);
        await deploy(devices);
        await cli.waitFor(/^sim: finished 3 devices .* installs=3$/m, 60_000);
        assert.equal(await cli.kill(signal), 0, cli.output());
        const line = cli.output().match(new RegExp(`^sim: stopped by ${signal} (\\{.*\\})$`, 'm'));
        assert.ok(line, cli.output());
        const counts = JSON.parse(line[1]!);
        assert.deepEqual({ devices: counts.devices, installs: counts.installs, outcomes: counts.outcomes, finished: counts.finished, succeeded: counts.succeeded, connected: counts.connected }, { devices: 3, installs: 3, outcomes: 3, finished: 3, succeeded: 3, connected: 0 }, cli.output());
        assert.equal(cli.output().match(/^sim: stopped by/gm)?.length, 1, 'said once');
      } finally {
        await cli.kill('SIGKILL').catch(() => undefined);
      }
    });
  }
});
