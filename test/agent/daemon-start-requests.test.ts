/**
 * What `updraft agent` asks at a start, counted at the real server's broker: one `get`, sent
 * before its first report, and no second one. The `get` is needed (agent.ts, `sync`): the
 * first report overwrites `reported.software`, which holds the last outcome the device
 * reported, and which its state file may lack (a save the disk refused before a kill:
 * test/agent/unsaved-outcome.test.ts); the report's `update/accepted` echoes the request's own
 * state, not the document it replaced. Its answer serves the catch-up too, so the start costs
 * no `get` more, also when the report's delta brings a pending command. Real server, the real
 * daemon stopped with SIGTERM and started again with its state file, real MQTT.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startCli, type CliProcess } from '../helpers/cli.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact, deploy } from '../security/support.ts';

/** The broker's publish event (aedes), for what a device sends. */
type PublishListener = (packet: { topic: string }, client: { id: string } | null) => void;
type Aedes = { on(event: 'publish', l: PublishListener): void; off(event: 'publish', l: PublishListener): void };

describe('a daemon start, counted at the broker', () => {
  let ts: TestServer;
  let root: string;
  const daemons: CliProcess[] = [];

  before(async () => {
    ts = await startTestServer();
    root = await mkdtemp(path.join(os.tmpdir(), 'updraft-start-requests-'));
    await addArtifact(ts, '2.0.0', Buffer.from('fw 2.0.0 '.repeat(1000)));
    await addArtifact(ts, '3.0.0', Buffer.from('fw 3.0.0 '.repeat(1000)));
  });
  after(async () => {
    await Promise.all(daemons.map((d) => d.kill('SIGKILL')));
    await ts.close();
    await rm(root, { recursive: true, force: true });
  });

  /** The `get` and `update` requests `deviceId` publishes from now on, in order, until `stop()`. */
  function watchRequests(deviceId: string): { seen: string[]; stop: () => void } {
    const aedes = (ts.server.broker as unknown as { aedes: Aedes }).aedes;
    const seen: string[] = [];
    const listener: PublishListener = (packet, client) => {
      if (client?.id !== deviceId) return;
      if (packet.topic === `state/${deviceId}/get`) seen.push('get');
      else if (packet.topic === `state/${deviceId}/update`) seen.push('update');
    };
    aedes.on('publish', listener);
    return { seen, stop: () => aedes.off('publish', listener) };
  }

  it('asks one get, before its first report, with a command pending and without', async () => {
    const deviceId = 'start-req-1';
    const password = await registerDevice(ts, deviceId);
    const dir = path.join(root, deviceId);
    const keyFile = path.join(root, 'signing-key.pub');
    await writeFile(keyFile, ts.server.security.signingKey.publicKeyPem);
    const agent = () => {
      const d = startCli(['agent', '--device', deviceId, '--install-dir', dir, '--broker', ts.mqttUrl, '--password', password, '--signing-key', keyFile, '--initial-version', '1.0.0']);
      daemons.push(d);
      return d;
    };

    // a device that ran before: 2.0.0 installed, its state file written, stopped cleanly
    const first = agent();
    await first.waitFor(/connected/);
    const installed = await deploy(ts, [deviceId], 'fw@2.0.0');
    await first.waitFor(new RegExp(`job ${installed} acknowledged: SUCCESS, running 2\\.0\\.0`));
    assert.equal(await first.kill('SIGTERM'), 0);

    // nothing pending: the get, the report, nothing more
    let watch = watchRequests(deviceId);
    const idle = agent();
    await idle.waitFor(/connected/);
    // the start's requests are answered within the second; waited for generously
    await new Promise((r) => setTimeout(r, 3000));
    assert.equal(await idle.kill('SIGTERM'), 0);
    watch.stop();
    assert.deepEqual(watch.seen, ['get', 'update'], 'one get before the report');

    // a command pending (3.0.0 deployed while it was stopped): still one get, before the
    // first report; the job runs once from the get's answer
    const jobId = await deploy(ts, [deviceId], 'fw@3.0.0');
    watch = watchRequests(deviceId);
    const busy = agent();
    await busy.waitFor(new RegExp(`job ${jobId} acknowledged: SUCCESS, running 3\\.0\\.0`));
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(await busy.kill('SIGTERM'), 0);
    watch.stop();
    assert.equal(watch.seen[0], 'get', `the first request is the get: ${watch.seen.join(' ')}`);
    assert.equal(watch.seen.filter((r) => r === 'get').length, 1, `one get: ${watch.seen.join(' ')}`);
    assert.equal(busy.output().split(`job ${jobId} INSTALLING`).length - 1, 1, 'installed once');
  });
});
