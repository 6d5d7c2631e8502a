/**
 * A full disk under the artifact directory: /readyz answers 503 `"artifacts":"unwritable"`
 * as docs/deployment.md says, and ready again once space is freed. The write check created an
 * empty file, which a full disk accepts (no data block needed): QA found `"artifacts":"ok"`.
 * A real small tmpfs is mounted on the data directory's artifacts/ (the tests run as root on
 * CI: .ci/run), filled until the kernel says ENOSPC, and freed; a real server in this process.
 * Where no tmpfs can be mounted (not root, no CAP_SYS_ADMIN) the tests skip, saying why,
 * except under CI=true, where they fail.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, statfs, unlink } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { LocalBlobStore } from '../../src/artifacts/local-blob-store.ts';
import { checkWritableDir, MIN_FREE_BYTES } from '../../src/util/writable-dir.ts';
import { eventually } from '../helpers/cli.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { fill, tmpfsOrSkip, unmount } from '../helpers/tmpfs.ts';

describe('a full disk under the artifact directory', () => {
  let dataDir: string;
  let artifacts: string;
  let mounted = false;
  let skip: string | undefined;
  let ts: TestServer | undefined;

  before(async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'updraft-full-disk-'));
    artifacts = path.join(dataDir, 'artifacts');
    await mkdir(artifacts);
    skip = tmpfsOrSkip(artifacts, '8m');
    mounted = skip === undefined;
  });
  after(async () => {
    await ts?.stop();
    if (mounted) unmount(artifacts);
    await rm(dataDir, { recursive: true, force: true });
  });

  it('the write check says full; /readyz answers 503 artifacts unwritable, and ready once freed', async (t) => {
    if (skip) return t.skip(skip);
    ts = await startTestServer({ dataDir });
    const readyz = async () => {
      const res = await fetch(`${ts!.httpUrl}/readyz`);
      return { status: res.status, body: (await res.json()) as { status?: string; checks?: { artifacts?: string } } };
    };
    assert.equal((await readyz()).status, 200);
    const filler = path.join(artifacts, 'filler');
    t.after(() => rm(filler, { force: true }));
    await fill(filler);
    assert.equal((await statfs(artifacts)).bavail, 0, 'the tmpfs is full');
    // the store's own check, asked now (no answer kept)
    const probe = new LocalBlobStore({ dir: artifacts, writableCheckMs: 0 });
    const why = await probe.whyNotWritable();
    assert.ok(why?.includes('full disk'), `whyNotWritable: ${why}`);
    await assert.rejects(checkWritableDir(path.join(artifacts, 'tmp'), 'artifact directory'), /artifact directory .* is on a full disk/);
    // the server's answer is kept 5 s between checks
    const full = await eventually(async () => {
      const r = await readyz();
      return r.body.checks?.artifacts === 'unwritable' ? r : undefined;
    }, 20_000, '/readyz saying artifacts unwritable');
    assert.equal(full.status, 503);
    await unlink(filler);
    assert.equal(await probe.whyNotWritable(), undefined, 'writable once freed');
    const ready = await eventually(async () => {
      const r = await readyz();
      return r.status === 200 ? r : undefined;
    }, 20_000, '/readyz ready again');
    assert.equal(ready.body.status, 'ready');
  });

  it('under 1 MiB left for unprivileged users is full, though a byte can still be written', async (t) => {
    if (skip) return t.skip(skip);
    const filler = path.join(artifacts, 'filler-2');
    try {
      await fill(filler, 256 * 1024);
      const fs = await statfs(artifacts);
      const left = fs.bavail * fs.bsize;
      assert.ok(left > 0 && left < MIN_FREE_BYTES, `left: ${left}`);
      await assert.rejects(checkWritableDir(path.join(artifacts, 'sha256'), 'artifact directory'), /is on a full disk \(\d+ KiB left for unprivileged users, under the 1 MiB kept free\)/);
    } finally {
      await unlink(filler);
    }
    await checkWritableDir(path.join(artifacts, 'sha256'), 'artifact directory');
  });
});
