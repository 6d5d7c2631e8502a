/**
 * One agent per install directory: a second `updraft agent` on it is refused in one line,
 * with a non-zero exit, while the first runs on (QA: two flapped the broker connection for
 * ever, same client id, and downloaded into the same .part and installed into the same slot).
 * The lock goes with the process: after a SIGKILL a new agent starts. Real server, real
 * daemons, real MQTT.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startCli, type CliProcess } from '../helpers/cli.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';

describe('a second agent on the same install directory', () => {
  let ts: TestServer;
  let root: string;
  const daemons: CliProcess[] = [];

  before(async () => {
    ts = await startTestServer();
    root = await mkdtemp(path.join(os.tmpdir(), 'updraft-one-agent-'));
  });
  after(async () => {
    await Promise.all(daemons.map((d) => d.kill('SIGKILL')));
    await ts.close();
    await rm(root, { recursive: true, force: true });
  });

  it('is refused in one line with a non-zero exit; the first runs on; a SIGKILL lets the lock go', async () => {
    const deviceId = 'one-1';
    const password = await registerDevice(ts, deviceId);
    const dir = path.join(root, deviceId);
    const keyFile = path.join(root, 'signing-key.pub');
    await writeFile(keyFile, ts.server.security.signingKey.publicKeyPem);
    const args = ['agent', '--device', deviceId, '--install-dir', dir, '--broker', ts.mqttUrl, '--password', password, '--signing-key', keyFile, '--initial-version', '1.0.0'];
    const first = startCli(args);
    daemons.push(first);
    await first.waitFor(/connected/);

    const second = startCli(args);
    daemons.push(second);
    // refused, or (the bug) running beside the first: whichever it says first
    const [said] = await second.waitFor(/^updraft: error: .*$|connected/m);
    assert.equal(said, `updraft: error: another updraft agent is running on ${dir} (it holds ${path.join(dir, '.updraft', 'agent.lock')}): one agent per install directory; stop that one first, or give this one its own --install-dir`);
    const code = second.child.exitCode ?? (await new Promise<number | null>((resolve) => second.child.once('exit', resolve)));
    assert.equal(code, 1, 'a non-zero exit (1: not bad input, another process)');
    assert.equal(second.output(), `${said}\n`, 'one line, nothing else');
    // the first was not disturbed: still connected, never dropped for the other's client id
    assert.doesNotMatch(first.output(), /disconnected/);
    assert.equal(first.child.exitCode, null);

    await first.kill('SIGKILL');
    const third = startCli(args);
    daemons.push(third);
    await third.waitFor(/connected/);
    assert.equal(await third.kill('SIGTERM'), 0);
    assert.ok((await readdir(path.join(dir, '.updraft'))).includes('agent.lock'));
  });
});
