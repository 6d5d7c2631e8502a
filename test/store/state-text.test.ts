/**
 * The state's JSON text an update made while measuring the document (applyUpdate) is what
 * the store writes for that record (stateText): read back from a real SQLite store, after
 * updates that share unchanged parts with the record before them, it is the state applied,
 * and a state written without text remembered is serialized as before.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { it } from 'node:test';
import type { UpdateRequest } from '../../src/protocol/shadow-messages.ts';
import { applyUpdate } from '../../src/shadow/document.ts';
import { SqliteStore } from '../../src/store/sqlite-store.ts';
import type { ShadowRecord } from '../../src/store/state-store.ts';

const limits = { maxDocumentBytes: 8192, maxDepth: 6 };

it("writes the text of each update's state, which reads back as the state applied", async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'updraft-state-text-'));
  const store = new SqliteStore({ path: path.join(dir, 'updraft.db') });
  await store.start();
  try {
    const ref = { deviceId: 'd1', name: '' };
    let current: ShadowRecord | undefined;
    const requests: UpdateRequest[] = [
      { state: { reported: { software: { name: 'fw', version: '1.0.0' }, agent: { trust: 'x' } } } },
      { state: { desired: { software: { name: 'fw', version: '2.0.0' } } } },
      { state: { reported: { software: { version: '2.0.0', status: 'SUCCEEDED' } } } },
      { state: { reported: { agent: null }, desired: null } },
    ];
    for (const [i, request] of requests.entries()) {
      const { next } = applyUpdate(current, ref, request, 1000 + i, limits);
      assert.equal(await store.putShadow(next, current?.version ?? 0), true);
      const stored = await store.getShadow('d1', '');
      assert.deepEqual(stored?.state, next.state, `after update ${i + 1}`);
      current = next;
    }
    assert.deepEqual(current!.state, { reported: { software: { name: 'fw', version: '2.0.0', status: 'SUCCEEDED' } } });
  } finally {
    await store.stop();
    await fs.rm(dir, { recursive: true, force: true });
  }
});
