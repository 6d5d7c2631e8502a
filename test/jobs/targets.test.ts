/**
 * targetsInclude: whether one device is among a job's targets now (a continuous job's check
 * of each device that comes online), on a real SQLite store.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { targetsInclude } from '../../src/jobs/targets.ts';
import type { SqliteStore } from '../../src/store/sqlite-store.ts';
import { startTempStore } from '../helpers/sqlite.ts';

describe('targetsInclude', () => {
  let store: SqliteStore;
  let close: () => Promise<void>;
  before(async () => {
    ({ store, close } = await startTempStore('targets'));
    for (const [deviceId, revoked, tags] of [['a', false, ['eu']], ['b', false, []], ['c', true, []], ['d', false, []]] as const) {
      await store.createDevice({ deviceId, attributes: {}, tags: [...tags], revoked, createdAt: 1, updatedAt: 1, version: 1 });
    }
    await store.createGroup({ name: 'g', kind: 'static', devices: ['d'], createdAt: 1, updatedAt: 1, version: 1 });
  });
  after(() => close());

  it('takes a named, grouped or matching device, never a revoked or unknown one', async () => {
    const targets = { devices: ['a', 'c', 'ghost'], groups: ['g'], query: 'tags = eu' };
    const found = await Promise.all(['a', 'b', 'c', 'd', 'ghost'].map((d) => targetsInclude(store, targets, d)));
    assert.deepEqual(found, [true, false, false, true, false]);
    // each list answers for itself (its set is made once per list and kept with it)
    assert.equal(await targetsInclude(store, { devices: ['b'] }, 'b'), true);
    assert.equal(await targetsInclude(store, { devices: ['a'] }, 'b'), false, 'another list is another set');
  });
});
