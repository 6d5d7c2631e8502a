/** The local directory BlobStore against the shared contract. */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { LocalBlobStore } from '../../src/artifacts/local-blob-store.ts';
import { blobStoreContract } from './blob-store.contract.ts';

blobStoreContract('LocalBlobStore', async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'updraft-blobs-'));
  return { store: new LocalBlobStore({ dir }), cleanup: () => fs.rm(dir, { recursive: true, force: true }) };
});
