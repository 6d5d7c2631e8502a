import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import type { ShadowRecord } from '../../src/store/state-store.ts';
import { SqliteStore } from '../../src/store/sqlite-store.ts';
import { eventually } from '../helpers/cli.ts';

function shadow(deviceId: string): ShadowRecord {
  return { deviceId, name: '', version: 1, deleted: false, state: { desired: { software: { version: '2.0.0' } } }, metadata: {}, timestamp: 100 };
}

/** The rows of the database file alone, as a copy without its WAL would show them. */
async function rowsInMainFile(file: string, dir: string): Promise<number> {
  const copy = path.join(dir, `copy-${Date.now()}.db`);
  await fs.copyFile(file, copy);
  const db = new Database(copy, { readonly: true });
  try {
    // before any checkpoint, even the schema is in the WAL only
    if (!db.prepare("SELECT 1 FROM sqlite_master WHERE name = 'shadows'").get()) return 0;
    return db.prepare<[], { n: number }>('SELECT COUNT(*) AS n FROM shadows').get()!.n;
  } finally {
    db.close();
  }
}

describe('SqliteStore checkpoints its WAL on a worker thread', () => {
  const dirs: string[] = [];
  const stores: SqliteStore[] = [];
  async function fresh(checkpointIntervalMs?: number): Promise<{ dir: string; file: string; store: SqliteStore }> {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'updraft-checkpoint-'));
    dirs.push(dir);
    const file = path.join(dir, 'updraft.db');
    const store = new SqliteStore({ path: file, ...(checkpointIntervalMs === undefined ? {} : { checkpointIntervalMs }) });
    stores.push(store);
    await store.start();
    return { dir, file, store };
  }
  after(async () => {
    for (const s of stores) await s.stop();
    for (const d of dirs) await fs.rm(d, { recursive: true, force: true });
  });

  it('copies committed writes into the database file while the store is open', async () => {
    const { dir, file, store } = await fresh(20);
    // far below SQLite's own threshold (1,000 pages): only the worker copies these
    await Promise.all(Array.from({ length: 200 }, (_, i) => store.putShadow(shadow(`dev-${i}`), 0)));
    const pass = await eventually(async () => {
      const last = store.checkpoints()?.last;
      return last && last.checkpointed === last.log ? last : undefined;
    }, 30_000, 'a complete checkpoint pass');
    assert.ok(pass.log > 0, 'the pass found frames in the WAL');
    assert.equal(await rowsInMainFile(file, dir), 200);
  });

  it('leaves checkpoints to SQLite when turned off', async () => {
    const { dir, file, store } = await fresh(0);
    await Promise.all(Array.from({ length: 200 }, (_, i) => store.putShadow(shadow(`dev-${i}`), 0)));
    assert.equal(store.checkpoints(), undefined);
    // nothing copied the WAL: the database file alone has none of the rows
    assert.equal(await rowsInMainFile(file, dir), 0);
  });

  it('stops its worker with the store, and starts it again with the store', async () => {
    const { file, store } = await fresh(20);
    assert.deepEqual(store.checkpoints(), { passes: 0 });
    await store.stop();
    assert.equal(store.checkpoints(), undefined);
    // the last connection to close removes the WAL: the worker's was closed first
    await assert.rejects(fs.stat(`${file}-wal`), { code: 'ENOENT' });
    await store.start();
    assert.equal(await store.putShadow(shadow('dev-again'), 0), true);
    await eventually(async () => ((store.checkpoints()?.passes ?? 0) > 0 ? true : undefined), 30_000, 'a pass after restart');
  });
});
