/**
 * A command writing its output on a full disk ends with one line naming the file it could not
 * write, and leaves no half of its output behind. Until 2026-12-06 `keys root-generate --out`
 * said `updraft: error: ENOSPC: no space left on device, write` (no file named) and left
 * root.key without its root.pub, so the next run refused ("a root key already exists") a key
 * whose public half was nowhere. Real updraft processes; the --out directory is a real small
 * tmpfs (test/helpers/tmpfs.ts: skipped, saying why, where none can be mounted, except under
 * CI=true).
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm, stat, statfs, truncate } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runCli, type CliResult } from '../helpers/cli.ts';
import { fill, tmpfsOrSkip, unmount } from '../helpers/tmpfs.ts';

/** `r` ended with exit code 1 and one line saying the disk is full, naming `file`. */
function fullDisk(r: CliResult, file: string): void {
  assert.equal(r.code, 1, `exit 1 (not bad input): ${r.stderr}${r.stdout}`);
  assert.equal(r.stderr.split('\n').length, 2, `one line: ${r.stderr}`);
  assert.equal(r.stderr, `updraft: error: cannot write ${file}: no space left on the device (ENOSPC); free some space and run it again\n`, 'the line names the file and says the disk is full');
}

describe('--out on a full disk', () => {
  let dir: string;
  let mnt: string;
  let skip: string | undefined;
  let mounted = false;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-out-full-'));
    mnt = path.join(dir, 'mnt');
    await mkdir(mnt);
    skip = tmpfsOrSkip(mnt, '1m');
    mounted = skip === undefined;
  });
  after(async () => {
    if (mounted) unmount(mnt);
    await rm(dir, { recursive: true, force: true });
  });

  it('keys root-generate with room for root.key alone: one line naming root.pub, and no root.key left', async (t) => {
    if (skip) return t.skip(skip);
    const filler = path.join(mnt, 'filler');
    await fill(filler);
    // one page freed: root.key (a page) is written, root.pub is not
    const size = (await stat(filler)).size;
    await truncate(filler, Math.ceil(size / 4096) * 4096 - 4096);
    const fs = await statfs(mnt);
    assert.equal(fs.bavail * fs.bsize, 4096, 'one page free on the tmpfs');
    const out = path.join(mnt, 'root');
    const r = await runCli(['keys', 'root-generate', '--out', out]);
    fullDisk(r, path.join(out, 'root.pub'));
    assert.deepEqual(await readdir(mnt), ['filler'], 'nothing left behind: no root.key without its root.pub, nor the directory made for them');
    await rm(filler);
    const again = await runCli(['keys', 'root-generate', '--out', out]);
    assert.equal(again.code, 0, `with space, the same command makes the key: ${again.stderr}`);
    assert.deepEqual((await readdir(out)).sort(), ['root.key', 'root.pub'], 'both halves');
    await rm(out, { recursive: true });
  });

  it('keys export-public --out on a full disk: one line naming the file', async (t) => {
    if (skip) return t.skip(skip);
    const dataDir = path.join(dir, 'data');
    const made = await runCli(['keys', 'generate', '--data-dir', dataDir]);
    assert.equal(made.code, 0, made.stderr);
    const filler = path.join(mnt, 'filler');
    await fill(filler);
    t.after(() => rm(filler, { force: true }));
    assert.equal((await statfs(mnt)).bavail, 0, 'the tmpfs is full');
    const file = path.join(mnt, 'signing.pub');
    fullDisk(await runCli(['keys', 'export-public', '--data-dir', dataDir, '--out', file]), file);
    assert.deepEqual(await readdir(mnt), ['filler'], 'no file, nor a temporary one, left');
  });
});
