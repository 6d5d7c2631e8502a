/** A real embedded store in a temporary directory, for tests of the parts above the store. */
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { SqliteStore } from '../../src/store/sqlite-store.ts';

/** A started SqliteStore in a fresh directory; `close` stops it and removes the directory. */
export async function startTempStore(prefix: string): Promise<{ store: SqliteStore; close(): Promise<void> }> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), `updraft-${prefix}-`));
  const store = new SqliteStore({ path: path.join(dir, 'db') });
  await store.start();
  return {
    store,
    close: async () => {
      await store.stop();
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
}
