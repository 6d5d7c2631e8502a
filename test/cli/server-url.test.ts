/**
 * Every command that talks to the operator API refuses a --server (or UPDRAFT_SERVER) that is
 * no http(s) URL, or one with a user or password, in one line, exit 2, no password in it
 * (api-client.ts serverUrl). 41b7add made it so for the commands whose ApiClient was built
 * first; `updraft doctor` still said 'FAIL reachable no answer from notaurl: Invalid URL' with
 * exit 1, and an http URL with a password was sent to fetch, which refused it quoting the
 * password twice (exit 1). The commands are listed from the program itself, so a new one
 * that takes --server is checked too.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import type { Command } from 'commander';
import { createProgram } from '../../src/cli/program.ts';
import { runCli } from '../helpers/cli.ts';

/** Each command that has a --server option, with its required arguments and options filled in. */
function commandsWithServer(): string[][] {
  const out: string[][] = [];
  const fill = (name: string) => (name.includes('@') ? 'fw@1.0.0' : name === 'file' ? import.meta.filename : 'x');
  const walk = (cmd: Command, path: string[]) => {
    // its certificate file is read first (a bad one is bad input too, exit 2): the same client after it
    if (path.join(' ') === 'keys install-cert') return;
    if (cmd.options.some((o) => o.long === '--server')) {
      const args = [...path, ...cmd.registeredArguments.filter((a) => a.required).map((a) => fill(a.name()))];
      if (path.join(' ') === 'device update') args.push('--tag', 't'); // something to change
      for (const o of cmd.options.filter((o) => o.mandatory)) args.push(o.long!, o.long === '--keep' ? '1' : fill(o.flags));
      out.push(args);
    }
    for (const sub of cmd.commands) walk(sub, [...path, sub.name()]);
  };
  walk(createProgram(), []);
  return out;
}

/** Runs `updraft ...args` for each of `commands`, a few at a time. */
async function runAll(commands: string[][], extra: string[], env: Record<string, string> = {}) {
  const results: { args: string[]; code: number | null; stderr: string }[] = [];
  const queue = [...commands];
  await Promise.all(
    Array.from({ length: 3 }, async () => {
      for (let args = queue.shift(); args; args = queue.shift()) {
        const r = await runCli([...args, ...extra], { env: { UPDRAFT_RETRY_FOR: '0', ...env } });
        results.push({ args, code: r.code, stderr: r.stderr });
      }
    }),
  );
  return results;
}

describe('--server of every command that talks to the server', () => {
  const commands = commandsWithServer();

  it('lists the commands of the program (sim, doctor, status, jobs, devices ...)', () => {
    const names = commands.map((c) => c.slice(0, 2).join(' '));
    for (const n of ['sim', 'doctor', 'status', 'job list', 'device list', 'deploy --device', 'broker mosquitto-config', 'token rotate', 'keys show']) assert.ok(names.some((x) => x.startsWith(n)), `${n} in ${names.join(', ')}`);
  });

  it('no http(s) URL: exit 2, one line naming --server', async () => {
    const wrong = (await runAll(commands, ['--server', 'notaurl', '--token', 't'])).filter(
      (r) => r.code !== 2 || r.stderr !== 'updraft: error: --server must be the server\'s http or https URL (http://host:8080), got "notaurl"\n',
    );
    assert.deepEqual(wrong, []);
  });

  it('UPDRAFT_SERVER with a password: exit 2, one line naming the variable, the password not in it', async () => {
    const wrong = (await runAll(commands, ['--token', 't'], { UPDRAFT_SERVER: 'ftp://u:hunter2@x' })).filter(
      (r) => r.code !== 2 || r.stderr !== 'updraft: error: --server (env UPDRAFT_SERVER) must be the server\'s http or https URL (http://host:8080), got "ftp://u:***@x"\n',
    );
    assert.deepEqual(wrong, []);
  });

  it('an http URL with a user and password: exit 2, one line, the password not in it (fetch refused it, quoting it)', async () => {
    const wrong = (await runAll(commands, ['--server', 'http://u:hunter2@127.0.0.1:1', '--token', 't'])).filter(
      (r) =>
        r.code !== 2 ||
        r.stderr !== 'updraft: error: --server must be the server\'s URL without a user or password (the operator token is given with --token or UPDRAFT_TOKEN), got "http://u:***@127.0.0.1:1"\n',
    );
    assert.deepEqual(wrong, []);
  });

  it('sim with --devices-file, which registers nothing: a bad --server is refused, not ignored', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-server-url-'));
    try {
      const file = path.join(dir, 'devices.json');
      await writeFile(file, JSON.stringify([{ deviceId: 'd1', secret: 's' }]));
      const r = await runCli(['sim', '--devices-file', file, '--server', 'notaurl', '--broker', 'mqtt://127.0.0.1:1']);
      assert.deepEqual({ code: r.code, stderr: r.stderr }, { code: 2, stderr: 'updraft: error: --server must be the server\'s http or https URL (http://host:8080), got "notaurl"\n' });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
