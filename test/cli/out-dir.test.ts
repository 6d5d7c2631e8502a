/**
 * The directories an operator names with --out (`backup`, `device cert`, `broker
 * mosquitto-config`, `keys root-generate`) go through one check (cli/output-file.ts
 * makeOutputDir): one the file system cannot make or write into ends the command with exit
 * code 2 and one line naming --out, the path and why, before the server is asked anything,
 * and leaves nothing behind. Until now they ended with exit 1 and the file system's line
 * (`ENOENT: the file system makes no directory /proc/x ...`, `EPERM: ... mkdir '/sys/x'`), as
 * the data directory did before aef6fdf; `keys root-generate --out /proc/x` never ended.
 * Real updraft processes against a real server.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { type CliResult } from '../helpers/cli.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';

const BIN = fileURLToPath(new URL('../../bin/updraft.js', import.meta.url));

/** Runs `updraft ...args`, killed after 30 s: a mkdir -p under /proc never ended (util/make-dir.ts). */
function runCli(args: string[]): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { timeout: 30_000, env: { ...process.env, UPDRAFT_RETRY_FOR: '0' } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, stdout, stderr: signal ? `${stderr}(killed by ${signal}: it did not end)\n` : stderr }));
  });
}

/** `r` ended with exit code 2 and this one line. */
function refused(r: CliResult, line: RegExp): void {
  assert.equal(r.code, 2, `${r.stderr}${r.stdout}`);
  assert.equal(r.stderr.split('\n').length, 2, `one line: ${r.stderr}`);
  assert.match(r.stderr, line);
}

describe('--out directories the file system cannot make', () => {
  let ts: TestServer;
  let dir: string;
  let aFile: string;
  before(async () => {
    ts = await startTestServer();
    await registerDevice(ts, 'd1');
    dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-out-dir-'));
    aFile = path.join(dir, 'afile');
    await writeFile(aFile, 'a file, not a directory\n');
  });
  after(async () => {
    await ts?.close();
    await rm(dir, { recursive: true, force: true });
  });

  // each command, writing into `out`
  const commands: [string, (out: string) => string[]][] = [
    ['backup', (out) => ['backup', '--out', out, '--data-dir', ts.dataDir]],
    ['device cert', (out) => ['device', 'cert', 'd1', '--out', out, '--server', ts.httpUrl, '--token', ts.token]],
    ['broker mosquitto-config', (out) => ['broker', 'mosquitto-config', '--out', out, '--server', ts.httpUrl, '--token', ts.token]],
    ['broker mosquitto-config --offline', (out) => ['broker', 'mosquitto-config', '--offline', '--out', out, '--data-dir', ts.dataDir]],
    ['keys root-generate', (out) => ['keys', 'root-generate', '--out', out]],
  ];

  for (const [name, args] of commands) {
    it(`${name}: under /proc, exit 2 and one line naming --out, the path and why`, async () => {
      refused(await runCli(args('/proc/x/y')), /^updraft: error: cannot write --out \/proc\/x\/y: the file system makes no directory \/proc\/x \(a virtual file system such as \/proc or \/sys\)\n$/);
      refused(await runCli(args('/proc/x')), /^updraft: error: cannot write --out \/proc\/x: the file system makes no directory \/proc\/x \(/);
    });

    it(`${name}: a file in the way, exit 2 and one line naming it; nothing left behind`, async () => {
      refused(await runCli(args(aFile)), new RegExp(`^updraft: error: cannot write --out ${aFile}: it is a file, not a directory: name a directory\\n$`));
      refused(await runCli(args(path.join(aFile, 'sub'))), new RegExp(`^updraft: error: cannot write --out ${aFile}/sub: ${aFile} is a file, not a directory\\n$`));
      assert.deepEqual(await readdir(dir), ['afile']);
    });
  }

  it('a --out file in a directory that makes none (keys export-public --out /proc/x): exit 2, not "there is no directory /proc"', async () => {
    refused(await runCli(['keys', 'export-public', '--data-dir', ts.dataDir, '--out', '/proc/x']), /^updraft: error: cannot write --out \/proc\/x: the file system makes no file in \/proc \(a virtual file system such as \/proc or \/sys\)\n$/);
  });

  it('a --out file whose path goes through a file (keys export-public --out <file>/ or <file>/x): exit 2 naming that file, not "there is no directory"', async () => {
    for (const out of [`${aFile}/`, path.join(aFile, 'x')]) {
      refused(await runCli(['keys', 'export-public', '--data-dir', ts.dataDir, '--out', out]), new RegExp(`^updraft: error: cannot write --out ${out.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: ${aFile} is a file, not a directory\n$`));
    }
    assert.deepEqual(await readdir(dir), ['afile']);
  });

  it('device cert for a device the server does not know: the directory made for it is removed again', async () => {
    const r = await runCli(['device', 'cert', 'nobody', '--out', path.join(dir, 'new', 'certs'), '--server', ts.httpUrl, '--token', ts.token]);
    assert.equal(r.code, 2, r.stderr);
    assert.deepEqual(await readdir(dir), ['afile']);
  });

  it('a directory that can be made: each command writes its files there', async () => {
    for (const [name, args] of commands) {
      const out = path.join(dir, 'ok', name.replace(/\W+/g, '-'));
      const r = await runCli(args(out));
      assert.equal(r.code, 0, `${name}: ${r.stderr}`);
      assert.ok((await readdir(out)).length > 0, name);
    }
  });
});
