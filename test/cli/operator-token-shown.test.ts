/**
 * The operator token is printed once, by the first start that serves: a first start that made
 * it and then failed (its MQTT port taken, as on a machine that runs Mosquitto on 1883) leaves
 * it to the next start, which had never printed it (QA of the README's quick start). The real
 * `updraft server` in its own process, a real port held by another listener.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { eventually, runCli, startCli } from '../helpers/cli.ts';
import { freePort } from '../helpers/free-port.ts';

const BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../bin/updraft.js');
const TOKEN_LINE = /operator token \(shown once[^)]*\): (\S+)/;
const LOCAL = ['--mqtt-host', '127.0.0.1', '--http-host', '127.0.0.1', '--http-port', '0', '--mqtt-tls-port', '0'];

/** Starts a server on `dir`, waits until it serves, stops it; its whole output. */
async function serveOnce(dir: string): Promise<string> {
  const proc = startCli(['server', '--data-dir', dir, ...LOCAL, '--mqtt-port', '0']);
  try {
    await proc.waitFor(/updraft: data in/, 60_000);
  } finally {
    const code = await proc.kill('SIGTERM');
    assert.equal(code, 0, `the server stopped cleanly:\n${proc.output()}`);
  }
  return proc.output();
}

describe('the operator token shown once', () => {
  let dir: string;
  let taken: net.Server;
  let takenPort: number;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-token-shown-'));
    taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    takenPort = (taken.address() as net.AddressInfo).port;
  });
  after(async () => {
    await new Promise<void>((resolve) => taken.close(() => resolve()));
    await rm(dir, { recursive: true, force: true });
  });

  it('a first start that fails after making the token leaves it to the next start, which prints it; the one after does not', async () => {
    const data = path.join(dir, 'data');
    const failed = await runCli(['server', '--data-dir', data, ...LOCAL, '--mqtt-port', String(takenPort)]);
    assert.equal(failed.code, 1, `the start on a taken port fails:\n${failed.stdout}${failed.stderr}`);
    assert.match(failed.stderr, new RegExp(`MQTT port ${takenPort} on 127\\.0\\.0\\.1 is already in use`), 'it says why');
    assert.doesNotMatch(failed.stdout + failed.stderr, TOKEN_LINE, 'the failed start printed no token');
    const token = (await readFile(path.join(data, 'operator-token'), 'utf8')).trim();
    assert.ok(token.startsWith('updr_'), `the failed start made the token (${token.slice(0, 5)}...)`);
    assert.equal((await stat(path.join(data, 'operator-token.unshown'))).mode & 0o777, 0o600, 'marked as not shown, mode 0600');

    const second = await serveOnce(data);
    assert.equal(second.match(TOKEN_LINE)?.[1], token, `the next start prints the token it serves with:\n${second}`);
    await assert.rejects(stat(path.join(data, 'operator-token.unshown')), { code: 'ENOENT' }, 'the mark is gone once printed');

    const third = await serveOnce(data);
    assert.doesNotMatch(third, TOKEN_LINE, 'the start after it does not print it again');
  });

  it('a first start that serves prints the token and leaves no mark', async () => {
    const data = path.join(dir, 'fresh');
    const out = await serveOnce(data);
    const token = (await readFile(path.join(data, 'operator-token'), 'utf8')).trim();
    assert.equal(out.match(TOKEN_LINE)?.[1], token, `printed at the first start:\n${out}`);
    await assert.rejects(stat(path.join(data, 'operator-token.unshown')), { code: 'ENOENT' }, 'no mark after a start that served');
    assert.doesNotMatch(await serveOnce(data), TOKEN_LINE, 'not printed at the second start');
  });

  it('a token replaced offline (printed by token rotate) removes the mark: the next start does not print it', async () => {
    const data = path.join(dir, 'rotated');
    const failed = await runCli(['server', '--data-dir', data, ...LOCAL, '--mqtt-port', String(takenPort)]);
    assert.equal(failed.code, 1, failed.stderr);
    assert.ok((await stat(path.join(data, 'operator-token.unshown'))).isFile(), 'the failed start left the mark');
    const rotated = await runCli(['token', 'rotate', '--offline', '--data-dir', data]);
    assert.equal(rotated.code, 0, rotated.stderr);
    const printed = /: (updr_\S+)\n/.exec(rotated.stdout)?.[1];
    assert.equal((await readFile(path.join(data, 'operator-token'), 'utf8')).trim(), printed, 'token rotate printed the new token');
    assert.doesNotMatch(await serveOnce(data), TOKEN_LINE, 'the start does not print a token token rotate printed');
  });

  it('a token line lost to a closed stdout (updraft server | head -1) is printed by the next start', { timeout: 120_000 }, async () => {
    const data = path.join(dir, 'epipe');
    const port = await freePort();
    const child = spawn(process.execPath, [BIN, 'server', '--data-dir', data, ...LOCAL, '--mqtt-port', '0', '--http-port', String(port)], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout.destroy(); // the pipe's reading end closed before the startup lines
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    try {
      await eventually(async () => (/stdout is closed/.test(stderr) ? true : undefined), 60_000, () => `the warning: ${stderr}`);
      await eventually(async () => (await stat(path.join(data, 'operator-token.unshown')).then(() => true, () => undefined)), 30_000, 'the mark written for the lost line');
      child.kill('SIGTERM');
      assert.equal(await exited, 0, stderr);
    } finally {
      child.kill('SIGKILL');
    }
    const token = (await readFile(path.join(data, 'operator-token'), 'utf8')).trim();
    const next = await serveOnce(data);
    assert.equal(next.match(TOKEN_LINE)?.[1], token, `the next start prints it:\n${next}`);
    assert.doesNotMatch(await serveOnce(data), TOKEN_LINE, 'and the one after does not');
  });
});
