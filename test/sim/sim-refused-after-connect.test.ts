/**
 * The fleet simulator against a real server: a device revoked or deleted after it connected is
 * refused on its own reconnects, and given up as one refused at start is (3 refusals in a row);
 * a broker merely gone (its sockets closed before any CONNACK) gives no device up.
 */
import assert from 'node:assert/strict';
import { createPublicKey, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer as createNetServer, type Socket } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ApiClient } from '../../src/cli/api-client.ts';
import { FleetSimulator, SIM_DEFAULTS, type SimTrust } from '../../src/sim/fleet-simulator.ts';
import { registerFleet } from '../../src/sim/register-fleet.ts';
import { eventually, startCli } from '../helpers/cli.ts';
import { freePort } from '../helpers/free-port.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

/** What a device provisioned for `t` trusts: the server's signing key. */
function trustOf(t: TestServer): SimTrust {
  return { signingPublicKey: createPublicKey(t.server.security.signingKey.publicKeyPem) };
}

describe('fleet simulator: refused after it connected', () => {
  let ts: TestServer;
  let api: ApiClient;
  let dir: string;
  before(async () => {
    ts = await startTestServer();
    api = new ApiClient({ server: ts.httpUrl, token: ts.token });
    await api.call('POST', '/api/v1/artifacts?name=fw&version=2.0.0', randomBytes(4096));
    dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-sim-refused-after-'));
  });
  after(async () => {
    await ts.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('connected: a device revoked once connected is given up after 3 refusals of its reconnects, the others stay', async () => {
    // its agent reconnected on its own backoff, refused for ever: gaveUp stayed 0 (QA)
    const devices = await registerFleet(api, 'revoked-', 3);
    const refusedAt: string[] = [];
    const sim = new FleetSimulator({ brokerUrl: ts.mqttUrl, trust: trustOf(ts), devices, mode: 'connected', seed: 3, onRefused: (id) => refusedAt.push(id) });
    try {
      await sim.start();
      assert.deepEqual({ connected: sim.stats.connected, refused: sim.stats.refused }, { connected: 3, refused: 0 }, JSON.stringify(sim.stats));
      await api.call('POST', `/api/v1/devices/${devices[0]!.deviceId}/revoke`);
      // a hang guard, not a speed check: the device given up is done in this run
      await eventually(async () => (sim.stats.gaveUp === 1 ? true : undefined), 60_000, () => `the revoked device is given up: ${JSON.stringify(sim.stats)}`);
      await sim.whenFinished(1);
      assert.deepEqual({ gaveUp: sim.stats.gaveUp, refused: sim.stats.refused, connected: sim.stats.connected }, { gaveUp: 1, refused: 1, connected: 2 }, JSON.stringify(sim.stats));
      assert.deepEqual(refusedAt, [devices[0]!.deviceId], 'only the revoked device is refused');
    } finally {
      await sim.stop();
    }
  });

  it('cycling: a device revoked during its visit ends that visit as refused, and is given up', async () => {
    // the visit waited its idle time (or, with a command taken, for the job's end: for ever)
    const devices = await registerFleet(api, 'revokedc-', 1);
    // an idle time far beyond the bound below: only the refusals can end the visit within it
    const sim = new FleetSimulator({ brokerUrl: ts.mqttUrl, trust: trustOf(ts), devices, mode: 'cycling', concurrency: 1, idleTimeoutMs: 600_000, seed: 3 });
    try {
      await sim.start();
      await eventually(async () => (sim.stats.connected === 1 ? true : undefined), 30_000, () => `the device visits: ${JSON.stringify(sim.stats)}`);
      await api.call('POST', `/api/v1/devices/${devices[0]!.deviceId}/revoke`);
      await eventually(async () => (sim.stats.gaveUp === 1 ? true : undefined), 60_000, () => `the revoked device is given up: ${JSON.stringify(sim.stats)}`);
      await sim.whenFinished(1);
      assert.deepEqual({ gaveUp: sim.stats.gaveUp, connected: sim.stats.connected, idleVisits: sim.stats.idleVisits }, { gaveUp: 1, connected: 0, idleVisits: 0 }, JSON.stringify(sim.stats));
    } finally {
      await sim.stop();
    }
  });

  it('connected, the command: a device deleted once connected is given up, and --until-finished ends, exit 1, saying so', async () => {
    const devices = await registerFleet(api, 'deleted-', 3);
    const file = path.join(dir, 'deleted.json');
    await writeFile(file, JSON.stringify(devices), { mode: 0o600 });
    const cli = startCli(['sim', '--devices-file', file, '--broker', ts.mqttUrl, '--server', ts.httpUrl, '--token', ts.token, '--until-finished']);
    try {
      await cli.waitFor(/^sim: ready 3 devices \(connected\) connected=3 refused=0$/m, 60_000);
      await api.call('DELETE', `/api/v1/devices/${devices[0]!.deviceId}`);
      await api.call('POST', '/api/v1/deployments', { devices: devices.slice(1).map((d) => d.deviceId), artifact: 'fw@2.0.0' });
      // a hang guard: the run that never ended fails here
      const summary = JSON.parse((await cli.waitFor(/^(\{.*"devices":3.*\})$/m, 90_000))[1]!);
      assert.deepEqual({ gaveUp: summary.gaveUp, refused: summary.refused, finished: summary.finished, succeeded: summary.succeeded }, { gaveUp: 1, refused: 1, finished: 2, succeeded: 2 }, cli.output());
      assert.equal(await cli.kill(), 1, `a run that gave up on a device is not a success: ${cli.output()}`);
      assert.match(cli.output(), /^updraft: error: gave up on 1 of 3 devices: the broker refused each 3 times in a row /m, 'the documented message');
    } finally {
      await cli.kill('SIGKILL').catch(() => undefined);
    }
  });

  it('a broker gone (its sockets closed before any CONNACK, then refused at TCP level) gives no device up: they reconnect once it is back', async () => {
    const port = await freePort();
    let own: TestServer | undefined = await startTestServer({ flags: { 'mqtt-port': port } });
    const dataDir = own.dataDir;
    const devices = await registerFleet(new ApiClient({ server: own.httpUrl, token: own.token }), 'down-', 2);
    const sim = new FleetSimulator({ brokerUrl: own.mqttUrl, trust: trustOf(own), devices, mode: 'connected', seed: 3 });
    // a broker restarting: it takes connections and closes them before any CONNACK (each CONNECT's client id counted)
    const sockets = new Set<Socket>();
    const attempts = new Map<string, number>();
    const closing = createNetServer((socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => undefined);
      socket.once('data', (connectPacket: Buffer) => {
        const id = devices.find((d) => connectPacket.includes(d.deviceId))?.deviceId ?? '?';
        attempts.set(id, (attempts.get(id) ?? 0) + 1);
        socket.destroy();
      });
    });
    try {
      await sim.start();
      await own.stop();
      own = undefined;
      await new Promise<void>((resolve) => closing.listen(port, '127.0.0.1', resolve));
      // as many failed attempts in a row per device as give up one refused for good
      const enough = () => devices.every((d) => (attempts.get(d.deviceId) ?? 0) >= SIM_DEFAULTS.refusalsToGiveUp);
      await eventually(async () => (enough() ? true : undefined), 120_000, () => `each device tries again and again: ${JSON.stringify([...attempts])}`);
      await new Promise((resolve) => closing.close(resolve));
      assert.deepEqual({ gaveUp: sim.stats.gaveUp, connected: sim.stats.connected }, { gaveUp: 0, connected: 0 }, JSON.stringify(sim.stats));
      own = await startTestServer({ dataDir, flags: { 'mqtt-port': port } });
      await eventually(async () => (sim.stats.connected === 2 ? true : undefined), 60_000, () => `the devices reconnect: ${JSON.stringify(sim.stats)}`);
      assert.equal(sim.stats.gaveUp, 0, JSON.stringify(sim.stats));
    } finally {
      await sim.stop();
      for (const s of sockets) s.destroy();
      if (closing.listening) await new Promise((resolve) => closing.close(resolve));
      await own?.stop();
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
