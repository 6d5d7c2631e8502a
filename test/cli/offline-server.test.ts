/**
 * A command run with --offline works on the data directory, not through the server: a
 * --server (or --token) given with it was dropped without a word, a bad URL too, which every
 * command that asks the server refuses (server-url.test.ts). Each such command refuses the
 * two together in one line naming both, exit code 2, changing nothing in the data directory
 * (cli/offline-options.ts; broker mosquitto-config --offline already did). The commands are
 * listed from the program itself, so a new one that takes --offline and --server is checked too.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { Command } from 'commander';
import { createProgram } from '../../src/cli/program.ts';
import { runCli } from '../helpers/cli.ts';

/** Each command with both --offline and --server, as its words and its required arguments and options. */
function offlineCommands(file: string, out: string): { name: string; args: string[] }[] {
  const found: { name: string; args: string[] }[] = [];
  const walk = (cmd: Command, words: string[]) => {
    const longs = cmd.options.map((o) => o.long);
    if (longs.includes('--offline') && longs.includes('--server')) {
      const args = [...words, ...cmd.registeredArguments.filter((a) => a.required).map(() => file)];
      for (const o of cmd.options.filter((o) => o.mandatory)) args.push(o.long!, o.long === '--out' ? out : file);
      found.push({ name: words.join(' '), args });
    }
    for (const sub of cmd.commands) walk(sub, [...words, sub.name()]);
  };
  walk(createProgram(), []);
  return found;
}

/** Every file under `dir` with its content, to see that nothing changed. */
async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const e of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (e.isFile()) out[path.relative(dir, path.join(e.parentPath, e.name))] = await readFile(path.join(e.parentPath, e.name), 'utf8');
  }
  return out;
}

describe('--server (and --token) with --offline', () => {
  let dir: string;
  let dataDir: string;
  let certFile: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-offline-server-'));
    dataDir = path.join(dir, 'data');
    certFile = path.join(dir, 'cert.json');
    await writeFile(certFile, '{}');
    // a data directory as a stopped server leaves it: the offline commands would change it
    const made = await runCli(['token', 'rotate', '--offline', '--data-dir', dataDir]);
    assert.equal(made.code, 0, made.stderr);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('lists the commands of the program that take both (token rotate, keys install-cert, keys rotate-url, broker mosquitto-config)', () => {
    const names = offlineCommands(certFile, path.join(dir, 'out')).map((c) => c.name);
    for (const n of ['token rotate', 'keys install-cert', 'keys rotate-url', 'broker mosquitto-config']) assert.ok(names.includes(n), `${n} in ${names.join(', ')}`);
  });

  for (const [label, extra] of [
    ['a URL that is none', ['--server', 'notaurl']],
    ['a URL with a password', ['--server', 'http://u:hunter2@127.0.0.1:1']],
    ['a good URL', ['--server', 'http://127.0.0.1:1']],
    ['--token', ['--token', 'updr_0123456789abcdef0123456789abcdef']],
  ] as const) {
    it(`${label}: exit 2, one line naming it and --offline, the data directory unchanged`, async () => {
      const flag = extra[0];
      const before = await snapshot(dataDir);
      const wrong: unknown[] = [];
      for (const c of offlineCommands(certFile, path.join(dir, 'out'))) {
        const r = await runCli([...c.args, '--offline', '--data-dir', dataDir, ...extra], { env: { UPDRAFT_RETRY_FOR: '0' } });
        const line = r.stderr.split('\n')[0] ?? '';
        const ok = r.code === 2 && r.stderr === `${line}\n` && line.startsWith('updraft: error: ') && line.includes(flag) && line.includes('--offline') && !line.includes('hunter2');
        if (!ok) wrong.push({ command: c.name, code: r.code, stderr: r.stderr, stdout: r.stdout });
      }
      assert.deepEqual(wrong, []);
      assert.deepEqual(await snapshot(dataDir), before, 'the data directory changed');
    });
  }

  it('UPDRAFT_SERVER, set for the whole shell, is not refused: token rotate --offline writes the new token', async () => {
    const before = await readFile(path.join(dataDir, 'operator-token'), 'utf8');
    const r = await runCli(['token', 'rotate', '--offline', '--data-dir', dataDir], { env: { UPDRAFT_SERVER: 'notaurl' } });
    assert.equal(r.code, 0, r.stderr);
    assert.notEqual(await readFile(path.join(dataDir, 'operator-token'), 'utf8'), before);
  });
});
