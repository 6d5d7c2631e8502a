/**
 * An offline command that changes what a data directory holds, given one that does not exist
 * (a mistyped --data-dir), made it and its server.lock, then said there was nothing to change:
 * `ca drop-previous` said "no previous CA: nothing to remove" and exited 0, leaving a new
 * empty data directory behind. Each is refused in one line, exit code 2, and nothing is
 * created (cli/offline-lock.ts). The commands whose job is to make the directory's files
 * (`ca init`, `keys generate`, `token rotate --offline`) still make it.
 */
import assert from 'node:assert/strict';
import { access, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runCli } from '../helpers/cli.ts';
import { Scratch } from '../helpers/scratch.ts';

const exists = (p: string) => access(p).then(() => true, () => false);

describe('offline commands on a data directory that does not exist', () => {
  const scratch = new Scratch();
  let root: string;
  let certificate: string;
  let rootPublic: string;

  before(async () => {
    root = await scratch.tmp('updraft-missing-dir-');
    // a real key certificate for install-cert (it is read before the data directory)
    const keys = path.join(root, 'keys-source');
    const rootDir = path.join(root, 'root');
    assert.equal((await runCli(['keys', 'generate', '--data-dir', keys])).code, 0, 'keys generate');
    assert.equal((await runCli(['keys', 'root-generate', '--out', rootDir])).code, 0, 'keys root-generate');
    certificate = path.join(root, 'cert.json');
    const certified = await runCli(['keys', 'certify', '--root-key', path.join(rootDir, 'root.key'), '--public-key', path.join(keys, 'keys', 'software-signing.pub'), '--serial', '1', '--out', certificate]);
    assert.equal(certified.code, 0, certified.stderr);
    rootPublic = path.join(rootDir, 'root.pub');
  });
  after(() => scratch.release());

  const cases: { name: string; args: (dir: string) => string[]; says: RegExp }[] = [
    { name: 'ca drop-previous', args: (d) => ['ca', 'drop-previous', '--data-dir', d], says: /so it holds no previous CA to remove; nothing was created: check --data-dir/ },
    { name: 'ca rollover', args: (d) => ['ca', 'rollover', '--data-dir', d], says: /so it holds no CA to replace \(updraft ca init makes one\); nothing was created/ },
    { name: 'ca rollover --prepare', args: (d) => ['ca', 'rollover', '--prepare', '--data-dir', d], says: /so it holds no CA to prepare the next of/ },
    { name: 'keys rotate-url --offline', args: (d) => ['keys', 'rotate-url', '--offline', '--data-dir', d], says: /so it holds no URL key ring to rotate; nothing was created/ },
    { name: 'keys install-cert --offline', args: (d) => ['keys', 'install-cert', certificate, '--root-public', rootPublic, '--offline', '--data-dir', d], says: /so it holds no software signing key to install the certificate for/ },
  ];
  for (const c of cases) {
    it(`${c.name}: one line, exit code 2, nothing created`, async () => {
      const dir = path.join(root, `missing-${c.name.replace(/\W+/g, '-')}`, 'data');
      const r = await runCli(c.args(dir));
      assert.equal(r.code, 2, `${c.name}: exit code; stdout ${r.stdout}; stderr ${r.stderr}`);
      assert.equal(r.stderr.split('\n').length, 2, `${c.name}: one line: ${r.stderr}`);
      assert.match(r.stderr, new RegExp(`^updraft: error: the data directory ${dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} does not exist, `), `${c.name}: names the directory`);
      assert.match(r.stderr, c.says, `${c.name}: says what it needed`);
      assert.equal(await exists(path.dirname(dir)), false, `${c.name}: neither the directory nor its parent was created`);
    });
  }

  it('ca drop-previous on an existing directory without a previous CA still says there is nothing to remove (exit 0)', async () => {
    const dir = path.join(root, 'empty');
    await mkdir(dir);
    const r = await runCli(['ca', 'drop-previous', '--data-dir', dir]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'no previous CA: nothing to remove\n', 'the line of an existing directory');
  });

  it('the commands that make a directory\'s files still make a missing one', async () => {
    for (const cmd of [['ca', 'init'], ['keys', 'generate'], ['token', 'rotate', '--offline']]) {
      const dir = path.join(root, `made-${cmd.join('-')}`, 'data');
      const r = await runCli([...cmd, '--data-dir', dir]);
      assert.equal(r.code, 0, `${cmd.join(' ')}: ${r.stderr}`);
      assert.equal(await exists(dir), true, `${cmd.join(' ')} made ${dir}`);
    }
  });
});
