/**
 * Servers started together on an empty data directory: one creates the operator token,
 * keys and CA, the other waits and reads them (or, with the embedded store, is refused: the
 * first has the file open); never two sets, the last rename winning on disk while the other
 * server serves with secrets no file holds.
 */
import assert from 'node:assert/strict';
import { readFile, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { loadOrCreateCa } from '../../src/pki/certificate-authority.ts';
import { whileSettingUp } from '../../src/server/data-dir-lock.ts';
import { loadOrCreateOperatorToken } from '../../src/server/operator-token.ts';
import { startCli, type CliProcess } from '../helpers/cli.ts';

const LOCAL = ['--mqtt-host', '127.0.0.1', '--http-host', '127.0.0.1', '--mqtt-port', '0', '--http-port', '0', '--mqtt-tls-port', '0'];
const TOKEN_LINE = /operator token \(shown once[^)]*\): (\S+)/;

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});
async function emptyDir(): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-setup-'));
  dirs.push(dir);
  return dir;
}

/** 'serving' once the server listens, else its exit code. */
async function outcome(proc: CliProcess): Promise<'serving' | number | null> {
  const serving = await proc.waitFor(/updraft: data in/, 60_000).then(() => true, () => false);
  if (serving) return 'serving';
  const { child } = proc;
  return child.exitCode ?? new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

describe('servers setting up one data directory at once', () => {
  it('a server starting while another sets the directory up waits, then uses what that one made', async () => {
    const dir = await emptyDir();
    let proc: CliProcess | undefined;
    try {
      const made = await whileSettingUp(dir, async () => {
        proc = startCli(['server', '--data-dir', dir, ...LOCAL]);
        await proc.waitFor(/waiting for another process setting up this data directory/, 60_000);
        // it waits before creating anything
        await assert.rejects(readFile(path.join(dir, 'operator-token')), { code: 'ENOENT' });
        return { token: (await loadOrCreateOperatorToken(dir)).token, ca: (await loadOrCreateCa(dir)).ca.certificate };
      });
      assert.equal(await outcome(proc!), 'serving', proc!.output());
      assert.doesNotMatch(proc!.output(), TOKEN_LINE, 'it made a token of its own');
      assert.equal((await readFile(path.join(dir, 'operator-token'), 'utf8')).trim(), made.token);
      assert.equal(await readFile(path.join(dir, 'pki', 'ca.crt'), 'utf8'), made.ca);
      // the token it serves with is the file's
      const url = (await proc!.waitFor(/HTTP API and downloads on (http:\/\/\S+)/))[1]!;
      const res = await fetch(`${url}/api/v1/devices`, { headers: { authorization: `Bearer ${made.token}` } });
      assert.equal(res.status, 200, await res.text());
    } finally {
      await proc?.kill('SIGTERM');
    }
  });

  it('two servers started together on an empty directory: one serves with the files, the other is refused', async () => {
    const dir = await emptyDir();
    const procs = [startCli(['server', '--data-dir', dir, ...LOCAL]), startCli(['server', '--data-dir', dir, ...LOCAL])];
    try {
      const outcomes = await Promise.all(procs.map(outcome));
      const serving = procs.filter((_, i) => outcomes[i] === 'serving');
      const refused = procs.filter((_, i) => outcomes[i] !== 'serving');
      assert.equal(serving.length, 1, procs.map((p) => p.output()).join('\n----\n'));
      assert.equal(outcomes.find((o) => o !== 'serving'), 1);
      assert.match(refused[0]!.output().trim().split('\n').at(-1)!, /^updraft: error: State database .*updraft\.db is open in another process/);
      const printed = serving[0]!.output().match(TOKEN_LINE)?.[1];
      assert.equal((await readFile(path.join(dir, 'operator-token'), 'utf8')).trim(), printed);
    } finally {
      await Promise.all(procs.map((p) => p.kill('SIGTERM')));
    }
  });
});
