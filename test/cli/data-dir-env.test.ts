/**
 * The commands that read the server's data directory take it from UPDRAFT_DATA_DIR, as
 * `updraft server` does, when --data-dir is not given: a plain default of ./data hid the
 * variable, and `token rotate --offline` wrote a new token into the current directory while
 * the server's stayed. Rotating offline under a running server warns that the old token is
 * still accepted.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runCli } from '../helpers/cli.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

describe('UPDRAFT_DATA_DIR for the CLI', () => {
  let ts: TestServer;
  let scratch: string;
  before(async () => {
    ts = await startTestServer();
    scratch = await mkdtemp(path.join(os.tmpdir(), 'updraft-cwd-'));
  });
  after(async () => {
    await ts.close();
    await rm(scratch, { recursive: true, force: true });
  });

  it('reads the operator token from the directory the variable names', async () => {
    const r = await runCli(['device', 'list'], { cwd: scratch, env: { UPDRAFT_DATA_DIR: ts.dataDir, UPDRAFT_SERVER: ts.httpUrl, UPDRAFT_TOKEN: '' } });
    assert.equal(r.code, 0, r.stderr);
    // --data-dir still wins over the variable
    const flag = await runCli(['device', 'list', '--data-dir', path.join(scratch, 'nowhere')], { cwd: scratch, env: { UPDRAFT_DATA_DIR: ts.dataDir, UPDRAFT_SERVER: ts.httpUrl, UPDRAFT_TOKEN: '' } });
    assert.equal(flag.code, 2);
    assert.match(flag.stderr, /nowhere/);
    // an empty variable is one not set, as the server reads it: ./data, not the current directory
    const empty = await runCli(['device', 'list'], { cwd: scratch, env: { UPDRAFT_DATA_DIR: '', UPDRAFT_SERVER: ts.httpUrl, UPDRAFT_TOKEN: '' } });
    assert.equal(empty.code, 2);
    assert.match(empty.stderr, /data\/operator-token/, empty.stderr);
  });

  it("rotates offline into that directory, not the current one, and warns that the running server still takes the old token", async () => {
    const before = (await readFile(path.join(ts.dataDir, 'operator-token'), 'utf8')).trim();
    const r = await runCli(['token', 'rotate', '--offline'], { cwd: scratch, env: { UPDRAFT_DATA_DIR: ts.dataDir } });
    assert.equal(r.code, 0, r.stderr);
    const now = (await readFile(path.join(ts.dataDir, 'operator-token'), 'utf8')).trim();
    assert.notEqual(now, before, "the server's token file holds the new token");
    assert.ok(r.stdout.includes(now));
    assert.deepEqual(await readdir(scratch), [], 'nothing written into the current directory');
    assert.equal(r.stderr, `updraft: warning: a server is running on ${ts.dataDir}: it accepts the old token until it restarts; to refuse the old token at once, rotate online instead (updraft token rotate, without --offline)\n`);
    const old = await fetch(`${ts.httpUrl}/api/v1/devices`, { headers: { authorization: `Bearer ${before}` } });
    assert.equal(old.status, 200, 'as the warning says');
  });

  it("--config's dataDir is the directory of keys generate, keys record-shared, keys rotate-url --offline and token rotate --offline when --data-dir is not given", async () => {
    const dataDir = await mkdtemp(path.join(os.tmpdir(), 'updraft-config-dir-'));
    const cwd = await mkdtemp(path.join(os.tmpdir(), 'updraft-config-cwd-'));
    try {
      const config = path.join(cwd, 'updraft.json');
      await writeFile(config, JSON.stringify({ dataDir }));
      const env = { UPDRAFT_DATA_DIR: '', UPDRAFT_DB: '' };
      await (await startTestServer({ dataDir })).stop(); // a data directory a server ran on: its URL key ring to rotate
      const gen = await runCli(['keys', 'generate', '--force', '--config', config], { cwd, env });
      assert.equal(gen.code, 0, gen.stderr);
      assert.ok((await readdir(path.join(dataDir, 'keys'))).includes('software-signing.key'), `the key written into the file's dataDir: ${gen.stdout}`);
      const ringFile = path.join(dataDir, 'keys', 'url-signing.json');
      const ringBefore = await readFile(ringFile, 'utf8');
      const ring = await runCli(['keys', 'rotate-url', '--offline', '--config', config], { cwd, env });
      assert.equal(ring.code, 0, ring.stderr);
      assert.notEqual(await readFile(ringFile, 'utf8'), ringBefore, "the URL key ring of the file's dataDir rotated");
      const token = await runCli(['token', 'rotate', '--offline', '--config', config], { cwd, env });
      assert.equal(token.code, 0, token.stderr);
      assert.equal((await readFile(path.join(dataDir, 'operator-token'), 'utf8')).trim().length > 0, true, 'the token there too');
      const shared = await runCli(['keys', 'record-shared', '--config', config], { cwd, env });
      assert.match(shared.stderr, /no PostgreSQL store given/, 'record-shared read the file (no db in it)');
      assert.deepEqual((await readdir(cwd)).sort(), ['updraft.json'], 'nothing written into the current directory (./data)');
    } finally {
      await rm(dataDir, { recursive: true, force: true });
      await rm(cwd, { recursive: true, force: true });
    }
  });
});
