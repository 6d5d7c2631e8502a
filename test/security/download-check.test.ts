/**
 * The registry's download check on a real SQLite store: a revocation made on this instance
 * refuses the next download at once; one made by another instance sharing the database (a
 * write behind this registry's back) within DOWNLOAD_CHECK_TTL_MS.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, it } from 'node:test';
import { DeviceRegistry, DOWNLOAD_CHECK_TTL_MS } from '../../src/registry/device-registry.ts';
import { SqliteStore } from '../../src/store/sqlite-store.ts';

let dir: string;
let store: SqliteStore;
let clock = 1_000_000;
let registry: DeviceRegistry;

before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-download-check-'));
  store = new SqliteStore({ path: path.join(dir, 'updraft.db') });
  await store.start();
  registry = new DeviceRegistry({ store, now: () => clock });
  await registry.register({ deviceId: 'dev-1' });
  await registry.register({ deviceId: 'dev-2' });
});
after(async () => {
  await store.stop();
  await rm(dir, { recursive: true, force: true });
});

it('refuses unknown devices, and a device revoked here from the next download on', async () => {
  assert.equal(await registry.downloadRefusal('ghost'), 'device is not registered');
  assert.equal(await registry.downloadRefusal('dev-1'), undefined);
  await registry.revoke('dev-1');
  assert.equal(await registry.downloadRefusal('dev-1'), 'device revoked', 'no wait for the remembered answer to expire');
  await registry.reinstate('dev-1');
  assert.equal(await registry.downloadRefusal('dev-1'), undefined);
});

it('sees a revocation by another instance within the check time, not before', async () => {
  assert.equal(await registry.downloadRefusal('dev-2'), undefined);
  // another instance revokes: a write to the shared database this registry did not make
  const d = (await store.getDevice('dev-2'))!;
  assert.equal(await store.updateDevice({ ...d, revoked: true, version: d.version + 1 }), true);
  clock += DOWNLOAD_CHECK_TTL_MS - 1;
  assert.equal(await registry.downloadRefusal('dev-2'), undefined, 'answered from memory within the check time');
  clock += 1;
  assert.equal(await registry.downloadRefusal('dev-2'), 'device revoked');
});
