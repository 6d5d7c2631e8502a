/**
 * Usage errors commander finds (an unknown option or command, a missing required option or
 * argument, a value not among the choices) end as every other bad input does (README, CLI
 * reference): exit 2 and one line on stderr, `updraft: error: ...`, naming the command's help.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { runCli } from '../helpers/cli.ts';

describe('updraft usage errors', () => {
  it('exit 2 with one line naming the help of the command that refused', async () => {
    const cases: [string[], string][] = [
      [['server', '--bogus-flag'], "updraft: error: unknown option '--bogus-flag' (see updraft server --help)"],
      [['config', '--webhook-url', 'x'], "updraft: error: unknown option '--webhook-url' (see updraft config --help)"],
      [['bogus'], "updraft: error: unknown command 'bogus' (see updraft --help)"],
      [['deploy', '--device', 'dev-1'], "updraft: error: required option '--artifact <name@version>' not specified (see updraft deploy --help)"],
      // a misspelt required option is said as the unknown option it is (commander checks the
      // required ones first: it was "required option '--artifact' not specified", --artefact unnamed)
      [['deploy', '--device', 'dev-1', '--artefact', 'fw@2.0.0'], "updraft: error: unknown option '--artefact' (Did you mean --artifact?) (see updraft deploy --help)"],
      // an operand that starts with '-' (a file named after --) is no unknown option: the required one is what is missing
      [['artifact', 'add', '--name', 'fw', '--', '-fw.bin'], "updraft: error: required option '--version <version>' not specified (see updraft artifact add --help)"],
      [['device', 'show'], "updraft: error: missing required argument 'id' (see updraft device show --help)"],
      [['job', 'list', '--limit'], "updraft: error: option '--limit <n>' argument missing (see updraft job list --help)"],
      // commander's suggestion, on a line of its own, is kept on the one line
      [['server', '--data-di', 'x'], "updraft: error: unknown option '--data-di' (Did you mean --data-dir?) (see updraft server --help)"],
      [['agent', '--device', 'd', '--install-dir', 'x', '--log-level', 'loud'], "updraft: error: option '--log-level <level>' argument 'loud' is invalid. Allowed choices are debug, info, warn, error. (see updraft agent --help)"],
    ];
    for (const [args, line] of cases) {
      const r = await runCli(args);
      assert.deepEqual({ code: r.code, stderr: r.stderr, stdout: r.stdout }, { code: 2, stderr: `${line}\n`, stdout: '' }, `updraft ${args.join(' ')}`);
    }
  });

  it('a server that is no http(s) URL: exit 2, one line, no password in it (it was exit 1, "cannot reach the Updraft server at notaurl")', async () => {
    const cases: [string[], Record<string, string>, string][] = [
      [['device', 'list', '--server', 'notaurl', '--token', 't'], {}, 'updraft: error: --server must be the server\'s http or https URL (http://host:8080), got "notaurl"'],
      [['device', 'list', '--token', 't'], { UPDRAFT_SERVER: 'ftp://u:hunter2@x' }, 'updraft: error: --server (env UPDRAFT_SERVER) must be the server\'s http or https URL (http://host:8080), got "ftp://u:***@x"'],
      [['sim', '--server', 'notaurl', '--devices', '2', '--token', 't'], {}, 'updraft: error: --server must be the server\'s http or https URL (http://host:8080), got "notaurl"'],
    ];
    for (const [args, env, line] of cases) {
      const r = await runCli(args, { env });
      assert.deepEqual({ code: r.code, stderr: r.stderr }, { code: 2, stderr: `${line}\n` }, `updraft ${args.join(' ')}`);
    }
  });

  it('a file named with --out that cannot be written: exit 2, one line naming the path given (not the temporary file beside it)', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-out-'));
    try {
      assert.equal((await runCli(['keys', 'generate', '--data-dir', dir])).code, 0);
      const missing = path.join(dir, 'no-such-dir', 'x.pem');
      const cases: [string, string][] = [
        [missing, `updraft: error: cannot write --out ${missing}: there is no directory ${path.dirname(missing)}\n`],
        [dir, `updraft: error: cannot write --out ${dir}: ${dir} is a directory: name a file\n`],
      ];
      for (const [out, line] of cases) {
        const r = await runCli(['keys', 'export-public', '--data-dir', dir, '--out', out]);
        assert.deepEqual({ code: r.code, stderr: r.stderr }, { code: 2, stderr: line }, out);
      }
      assert.deepEqual((await readdir(dir)).filter((f) => f.endsWith('.tmp')), [], 'no temporary file left');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('a command without its subcommand is a usage error: its help on stderr, exit 2', async () => {
    for (const args of [['job'], []]) {
      const r = await runCli(args);
      assert.equal(r.code, 2, `updraft ${args.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, new RegExp(`^Usage: updraft${args.map((a) => ` ${a}`).join('')} \\[options\\] \\[command\\]`));
      assert.match(r.stderr, /\n {2}show \[options\]|\n {2}server \[options\]/, 'the subcommands are listed');
      assert.equal(r.stdout, '');
    }
  });

  it('help asked for is no error: exit 0, on stdout', async () => {
    const cases: [string[], string][] = [
      [['job', 'list', '--help'], 'updraft job list'],
      [['help', 'job'], 'updraft job'],
      [['job', 'help', 'list'], 'updraft job list'],
    ];
    for (const [args, usage] of cases) {
      const r = await runCli(args);
      assert.equal(r.code, 0, `updraft ${args.join(' ')}: ${r.stderr}`);
      assert.ok(r.stdout.startsWith(`Usage: ${usage} [options]`), r.stdout.split('\n')[0]);
      assert.equal(r.stderr, '');
    }
  });
});
