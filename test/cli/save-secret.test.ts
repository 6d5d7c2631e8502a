/**
 * `device register --save` and `device rotate-secret --save` check that the install directory
 * can take the secret before the server issues one: the server keeps only its hash, so a
 * secret it committed that no file took was lost (a device registered whose secret no one
 * had; a rotation that cut the device off with a secret no one had).
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runCli } from '../helpers/cli.ts';
import { connackCode } from '../helpers/mqtt-client.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';

describe('the CLI: --save of a device secret', () => {
  let ts: TestServer;
  let dir: string;
  let notADir: string;
  const cli = (...args: string[]) => runCli([...args, '--server', ts.httpUrl, '--token', ts.token]);
  before(async () => {
    ts = await startTestServer();
    dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-save-'));
    notADir = path.join(dir, 'afile');
    await writeFile(notADir, 'a file, not a directory\n');
  });
  after(async () => {
    await ts.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('registers nothing when the secret cannot be saved, in one line', async () => {
    const r = await cli('device', 'register', 'dev-save', '--save', path.join(notADir, 'sub'));
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /^updraft: error: cannot save the secret into .*afile\/sub: ENOTDIR: not a directory, mkdir '.*'; nothing was registered\n$/);
    assert.equal(r.stdout, '');
    await assert.rejects(ts.server.registry.get('dev-save'), { code: 'NOT_FOUND' }, 'not registered');
    // and a good directory takes it
    const good = path.join(dir, 'dev-save');
    const ok = await cli('device', 'register', 'dev-save', '--save', good);
    assert.equal(ok.code, 0, ok.stderr);
    const secret = (await readFile(path.join(good, '.updraft', 'device-secret'), 'utf8')).trim();
    assert.equal(await connackCode(ts.mqttUrl, { clientId: 'dev-save', username: 'dev-save', password: secret }), undefined, 'the saved secret admits it');
  });

  it('rotates nothing when the new secret cannot be saved: the old one still admits the device', async () => {
    const old = await registerDevice(ts, 'dev-rot');
    const r = await cli('device', 'rotate-secret', 'dev-rot', '--save', path.join(notADir, 'x'));
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /^updraft: error: cannot save the secret into .*afile\/x: .*; nothing was rotated\n$/);
    assert.equal(await connackCode(ts.mqttUrl, { clientId: 'dev-rot', username: 'dev-rot', password: old }), undefined, 'the old secret still admits it');
    assert.equal(await connackCode(ts.mqttUrl, { clientId: 'dev-rot', username: 'dev-rot', password: 'not-its-secret' }), 4, 'and another is refused (the check can fail)');
  });
});
