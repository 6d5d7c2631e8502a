/**
 * `updraft artifact add` of a build over the server's size limit says so, exit 2, before
 * sending a byte: the server stops reading an upload at its limit and the connection goes
 * with it, which the CLI reported as "cannot reach the Updraft server ... write EPIPE".
 * Real server, real CLI process.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runCli } from '../helpers/cli.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

describe('artifact add over the size limit', () => {
  let ts: TestServer;
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-too-large-'));
    ts = await startTestServer({ flags: { 'max-artifact-bytes': 1_000_000 } });
    await writeFile(path.join(dir, 'big.bin'), randomBytes(2 * 1024 * 1024));
    await writeFile(path.join(dir, 'fits.bin'), randomBytes(1_000_000));
  });
  after(async () => {
    await ts.close();
    await rm(dir, { recursive: true, force: true });
  });

  const add = (file: string, version: string) => runCli(['artifact', 'add', file, '--name', 'fw', '--version', version, '--server', ts.httpUrl, '--token', ts.token], { cwd: dir });

  it('is refused in one line naming the limit, with exit 2, and nothing is stored', async () => {
    const r = await add('./big.bin', '6.1.0');
    assert.deepEqual([r.code, r.stderr], [2, 'updraft: error: ./big.bin is 2097152 bytes: the server takes builds of at most 1000000 bytes (its --max-artifact-bytes); nothing was sent\n']);
    assert.equal(await ts.server.store.getArtifact('fw', '6.1.0'), undefined);
    const fits = await add('./fits.bin', '6.1.0');
    assert.equal(fits.code, 0, fits.stderr);
  });
});
