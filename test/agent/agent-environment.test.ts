/**
 * `updraft agent` reads its `UPDRAFT_*` variables as the server reads its own
 * (docs/configuration.md): an empty one is one not set. `UPDRAFT_DEVICE_PASSWORD=` (a unit
 * file's empty line, a script's unset default) was taken as the secret: the one saved in the
 * install directory was not read, and the broker refused the device at every reconnect. A bad
 * value from the environment is named with its variable, as the server names its own. The
 * real `updraft` command against a real server and broker.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { saveDeviceSecret } from '../../src/agent/provisioning.ts';
import { runCli, startCli, type CliProcess } from '../helpers/cli.ts';
import { freePort } from '../helpers/free-port.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';

/** Runs `updraft ...args`, which must exit by itself within 20 s (an agent started instead is killed, and its output says so). */
async function exitsAtOnce(args: string[]): Promise<{ code: number | null; output: string }> {
  const p = startCli(args);
  const code = await Promise.race([new Promise<number | null>((resolve) => p.child.once('close', resolve)), new Promise<'running'>((resolve) => setTimeout(resolve, 20_000, 'running'))]);
  if (code === 'running') {
    await p.kill('SIGKILL');
    return { code: null, output: `(still running after 20 s: the agent started)\n${p.output()}` };
  }
  return { code, output: p.output() };
}

describe("updraft agent's environment variables", () => {
  let ts: TestServer;
  let root: string;
  let keyFile: string;
  const agents: CliProcess[] = [];
  before(async () => {
    ts = await startTestServer();
    root = await mkdtemp(path.join(os.tmpdir(), 'updraft-agent-env-'));
    keyFile = path.join(root, 'signing-key.pub');
    await writeFile(keyFile, ts.server.security.signingKey.publicKeyPem);
  });
  after(async () => {
    await Promise.all(agents.map((a) => a.kill('SIGKILL')));
    await ts.close();
    await rm(root, { recursive: true, force: true });
  });

  for (const [deviceId, blank] of [['env-empty', ''], ['env-blank', '  ']] as const) {
  it(`takes ${blank === '' ? 'an empty' : 'a blank'} variable as one not set: the saved secret is used, and empty type, time zone and key files are not values`, async () => {
    const dir = path.join(root, deviceId);
    await saveDeviceSecret(dir, await registerDevice(ts, deviceId));
    const agent = startCli(['agent', '--device', deviceId, '--install-dir', dir, '--signing-key', keyFile], {
      env: { UPDRAFT_BROKER: ts.mqttUrl, UPDRAFT_DEVICE_PASSWORD: blank, UPDRAFT_DEVICE_TYPE: blank, UPDRAFT_TIME_ZONE: blank, UPDRAFT_ROOT_KEY: blank },
    });
    agents.push(agent);
    await agent.waitFor(new RegExp(`${deviceId}: connected`), 20_000).catch(() => assert.fail(`the agent did not connect with its saved secret:\n${agent.output()}`));
    assert.doesNotMatch(agent.output(), /Bad username or password/);
  });
  }

  it('names the variable a bad value came from, and refuses an empty --password, exit 2 in one line', async () => {
    const dir = path.join(root, 'env-bad');
    const closed = `mqtt://127.0.0.1:${await freePort()}`;
    const broker = await runCli(['agent', '--device', 'env-bad', '--install-dir', dir, '--password', 'x', '--insecure-allow-unsigned'], { env: { UPDRAFT_BROKER: 'broker.example:1883' } });
    assert.equal(broker.code, 2, broker.stderr);
    assert.equal(broker.stderr, 'updraft: error: invalid agent options: --broker (env UPDRAFT_BROKER) must be a URL like mqtt://host:1883\n');
    const zone = await runCli(['agent', '--device', 'env-bad', '--install-dir', dir, '--broker', closed, '--password', 'x', '--insecure-allow-unsigned'], { env: { UPDRAFT_TIME_ZONE: 'Mars/Olympus', UPDRAFT_DEVICE_TYPE: 'a b' } });
    assert.equal(zone.code, 2, zone.stderr);
    assert.match(zone.stderr, /^updraft: error: invalid agent options: --time-zone \(env UPDRAFT_TIME_ZONE\) must be an IANA time zone .*, got Mars\/Olympus; --device-type \(env UPDRAFT_DEVICE_TYPE\) must be .*\n$/);
    const key = await runCli(['agent', '--device', 'env-bad', '--install-dir', dir, '--broker', closed, '--password', 'x'], { env: { UPDRAFT_SIGNING_KEY: path.join(root, 'missing.pub') } });
    assert.equal(key.code, 2, key.stderr);
    assert.match(key.stderr, /^updraft: error: cannot read --signing-key \(env UPDRAFT_SIGNING_KEY\) \S+missing\.pub: ENOENT.*\n$/);
    const empty = await runCli(['agent', '--device', 'env-bad', '--install-dir', dir, '--broker', closed, '--password', '', '--insecure-allow-unsigned']);
    assert.equal(empty.code, 2, empty.stderr);
    assert.equal(empty.stderr, `updraft: error: --password is empty: give the device's secret, or leave it out to read ${path.join(dir, '.updraft', 'device-secret')}\n`);
    // connected as user '', refused at every reconnect
    const user = await exitsAtOnce(['agent', '--device', 'env-bad', '--install-dir', dir, '--broker', closed, '--password', 'x', '--username', '', '--insecure-allow-unsigned']);
    assert.equal(user.code, 2, user.output);
    assert.equal(user.output, 'updraft: error: --username is empty: leave it out to connect as the device id, env-bad\n');
  });
});

describe("updraft agent's --broker", () => {
  let root: string;
  before(async () => {
    root = await mkdtemp(path.join(os.tmpdir(), 'updraft-agent-broker-'));
  });
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it("is checked by the agent library's rule before anything is made: no host, a port out of range, an IPv6 address not closed", async () => {
    // they passed a check of the scheme and were refused by UpdateAgent after the lock was
    // taken: exit 1 and 'updraft: error: invalid UpdateAgent options:', nothing said of why
    for (const broker of ['mqtt://', 'mqtt://:1883', 'mqtt://127.0.0.1:99999', 'mqtt://[::1']) {
      const dir = path.join(root, 'bad');
      const r = await runCli(['agent', '--device', 'b-1', '--install-dir', dir, '--broker', broker, '--password', 'x', '--insecure-allow-unsigned']);
      assert.equal(r.code, 2, `${broker}: ${r.stderr}`);
      assert.equal(r.stderr, 'updraft: error: invalid agent options: --broker must be a URL like mqtt://host:1883\n', broker);
      assert.equal(existsSync(dir), false, `${broker}: nothing made`);
    }
  });

  it('takes the schemes the library connects with: ssl:// and a Unix socket', async () => {
    for (const broker of [`ssl://127.0.0.1:${await freePort()}`, `mqtt+unix://${path.join(root, 'broker.sock')}`]) {
      const agent = startCli(['agent', '--device', 'b-2', '--install-dir', path.join(root, 'ok'), '--broker', broker, '--password', 'x', '--insecure-allow-unsigned']);
      try {
        await agent.waitFor(/b-2: starting/, 20_000).catch(() => assert.fail(`${broker} refused:\n${agent.output()}`));
      } finally {
        await agent.kill('SIGKILL');
      }
    }
  });
});
