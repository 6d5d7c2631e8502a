/**
 * A directory the operator names that cannot be made ends the command at once, in one line
 * naming it, with exit code 2 (a bad setting). Node's recursive mkdir retries ENOENT for
 * ever, and procfs answers ENOENT for any new directory: `updraft server --data-dir /proc/foo`
 * hung, spinning a core (config QA); the offline commands and the agent's --install-dir too.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { startCli } from '../helpers/cli.ts';

/** Runs `updraft ...args`; a command still running after 30 s (a hang guard, not a speed check) is killed and fails the test. */
async function runEnding(args: string[]): Promise<{ code: number | null; output: string }> {
  const p = startCli(args, { env: { UPDRAFT_LOG_LEVEL: 'error' } });
  let hung = false;
  const guard = setTimeout(() => {
    hung = true;
    void p.kill('SIGKILL');
  }, 30_000);
  const code = await new Promise<number | null>((resolve) => p.child.on('close', (c) => resolve(c)));
  clearTimeout(guard);
  assert.equal(hung, false, `updraft ${args.join(' ')} did not end within 30 s:\n${p.output()}`);
  return { code, output: p.output() };
}

describe('a directory that cannot be made', () => {
  let scratch: string;
  before(async () => {
    scratch = await mkdtemp(path.join(os.tmpdir(), 'updraft-dir-path-'));
  });
  after(async () => {
    await rm(scratch, { recursive: true, force: true });
  });

  for (const dir of ['/proc/updraft-not-here', '/proc/self/updraft/data']) {
    it(`updraft server --data-dir ${dir}: exit 2, one line naming the data directory`, async () => {
      const r = await runEnding(['server', '--data-dir', dir, '--mqtt-port', '0', '--http-port', '0']);
      assert.equal(r.code, 2, r.output);
      assert.equal(
        r.output,
        `updraft: error: the data directory ${dir} is not one that can be made: the file system makes no directory there (a virtual file system such as /proc or /sys); give the server's user write access to it, or choose another with --data-dir\n`,
      );
    });
  }

  it('a file where the data directory or one of its parents should be: exit 2 too', async () => {
    const file = path.join(scratch, 'a-file');
    await writeFile(file, 'x');
    const under = await runEnding(['server', '--data-dir', path.join(file, 'data'), '--mqtt-port', '0', '--http-port', '0']);
    assert.equal(under.code, 2, under.output);
    assert.match(under.output, /^updraft: error: the data directory \S+a-file\/data is under a path with a file where a directory should be; .*\n$/);
    const itself = await runEnding(['server', '--data-dir', file, '--mqtt-port', '0', '--http-port', '0']);
    assert.equal(itself.code, 2, itself.output);
    assert.match(itself.output, /^updraft: error: the data directory \S+a-file is a file, not a directory; .*\n$/);
  });

  it('the offline commands: token rotate --offline, keys generate, ca init', async () => {
    for (const cmd of [['token', 'rotate', '--offline'], ['keys', 'generate'], ['ca', 'init']]) {
      const r = await runEnding([...cmd, '--data-dir', '/proc/updraft-not-here']);
      assert.equal(r.code, 2, `${cmd.join(' ')}: ${r.output}`);
      assert.equal(
        r.output,
        'updraft: error: cannot create the data directory /proc/updraft-not-here: ENOENT: the file system makes no directory /proc/updraft-not-here although its parent is one (a virtual file system such as /proc or /sys)\n',
      );
    }
  });

  it("updraft agent --install-dir under /proc", async () => {
    const r = await runEnding(['agent', '--device', 'd1', '--install-dir', '/proc/updraft-not-here/x', '--password', 'not-used', '--insecure-allow-unsigned', '--broker', 'mqtt://127.0.0.1:1']);
    assert.equal(r.code, 2, r.output);
    assert.equal(
      r.output,
      "updraft: error: cannot create the agent's state directory /proc/updraft-not-here/x/.updraft (--install-dir): ENOENT: the file system makes no directory /proc/updraft-not-here although its parent is one (a virtual file system such as /proc or /sys)\n",
    );
  });

  it('updraft device register --save under /proc: refused before the server is asked', async () => {
    const r = await runEnding(['device', 'register', 'd1', '--save', '/proc/updraft-not-here', '--server', 'http://127.0.0.1:1', '--token', 'x']);
    assert.equal(r.code, 2, r.output);
    assert.match(r.output, /^updraft: error: cannot save the secret into \/proc\/updraft-not-here: ENOENT: the file system makes no directory \/proc\/updraft-not-here .*; nothing was registered\n$/);
  });
});
