/** Scanning the registry with a fleet query, on the real embedded store. */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { scanDevices } from '../../src/fleet/device-selector.ts';
import { parseQuery } from '../../src/fleet/query.ts';
import type { SqliteStore } from '../../src/store/sqlite-store.ts';
import { startTempStore } from '../helpers/sqlite.ts';

describe('scanDevices', () => {
  let store: SqliteStore;
  let close: () => Promise<void>;
  before(async () => {
    ({ store, close } = await startTempStore('scan'));
    // three pages of the scan (1,000 devices each), every third device tagged
    await Promise.all(
      Array.from({ length: 2_500 }, (_, i) => {
        const deviceId = `d${String(i).padStart(5, '0')}`;
        return store.createDevice({ deviceId, attributes: {}, tags: i % 3 === 0 ? ['canary'] : [], revoked: false, createdAt: 1, updatedAt: 1, version: 1 });
      }),
    );
  });
  after(() => close());

  it('selects every matching device in id order, in batches', async () => {
    const query = parseQuery('tags = canary');
    const seen: string[] = [];
    let batches = 0;
    await scanDevices(store, (s) => query.matches(s), false, (batch) => {
      batches++;
      for (const s of batch) seen.push(s.device.deviceId);
    });
    assert.equal(seen.length, 834);
    assert.deepEqual(seen, [...seen].sort());
    assert.equal(seen[1], 'd00003');
    assert.equal(batches, 3);
  });

  it('lets the event loop turn between pages, though the embedded store answers synchronously', async () => {
    // without a turn, a whole scan ran in one go: 100,000 devices held every device's messages 1.2 s
    let scanning = true;
    let turnedDuringScan = false;
    setImmediate(() => {
      turnedDuringScan = scanning;
    });
    await scanDevices(store, () => true, false, () => {});
    scanning = false;
    assert.ok(turnedDuringScan, 'an immediate queued before the scan ran before it ended');
  });
});
