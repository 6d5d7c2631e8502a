/** The local directory BlobStore against the shared contract. */
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { LocalBlobStore } from '../../src/artifacts/local-blob-store.ts';
import { blobStoreContract } from './blob-store.contract.ts';

blobStoreContract('LocalBlobStore', async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'updraft-blobs-'));
  return { store: new LocalBlobStore({ dir }), cleanup: () => fs.rm(dir, { recursive: true, force: true }) };
});

describe('LocalBlobStore start: what uploads left in tmp/', () => {
  it('removes every file by default, and with leftoverAgeMs only those untouched that long (another instance may be uploading)', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'updraft-blobs-left-'));
    try {
      const tmp = path.join(dir, 'tmp');
      const put = async () => {
        await fs.mkdir(tmp, { recursive: true });
        await fs.writeFile(path.join(tmp, 'fresh'), 'part of an upload in progress');
        await fs.writeFile(path.join(tmp, 'old'), 'part of an upload a crash cut');
        const hourAgo = new Date(Date.now() - 3_600_000);
        await fs.utimes(path.join(tmp, 'old'), hourAgo, hourAgo);
      };
      await put();
      await new LocalBlobStore({ dir, leftoverAgeMs: 15 * 60_000 }).start();
      assert.deepEqual(await fs.readdir(tmp), ['fresh']);
      await put();
      await new LocalBlobStore({ dir }).start();
      assert.deepEqual(await fs.readdir(tmp), []);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  it('removes every file by default even when its time is ahead of the clock (a file written in the same millisecond)', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'updraft-blobs-ahead-'));
    try {
      const tmp = path.join(dir, 'tmp');
      await fs.mkdir(tmp, { recursive: true });
      await fs.writeFile(path.join(tmp, 'ahead'), 'part of an upload');
      const ahead = new Date(Date.now() + 5_000);
      await fs.utimes(path.join(tmp, 'ahead'), ahead, ahead);
      await new LocalBlobStore({ dir }).start();
      assert.deepEqual(await fs.readdir(tmp), []);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
