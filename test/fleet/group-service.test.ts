/** Static groups of many members are checked without holding the server's event loop. */
import assert from 'node:assert/strict';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { GroupService } from '../../src/fleet/group-service.ts';
import type { SqliteStore } from '../../src/store/sqlite-store.ts';
import { startTempStore } from '../helpers/sqlite.ts';

describe('GroupService: member checks of a large static group', () => {
  let store: SqliteStore;
  let close: () => Promise<void>;
  const ids = Array.from({ length: 2_000 }, (_, i) => `grp-${String(i).padStart(5, '0')}`);
  before(async () => {
    ({ store, close } = await startTempStore('updraft-groups-'));
    await Promise.all(ids.map((deviceId) => store.createDevice({ deviceId, attributes: {}, tags: [], secretHash: 'a'.repeat(64), revoked: false, createdAt: 1, updatedAt: 1, version: 1 })));
  });
  after(() => close());

  it('lets the event loop turn while it reads the members (the embedded store answers synchronously)', async () => {
    let reads = 0;
    const read = store.getDevice.bind(store);
    store.getDevice = (id: string) => {
      reads++;
      return read(id);
    };
    try {
      const groups = new GroupService({ store });
      const creating = groups.create({ name: 'many', devices: ids });
      await nextTurn();
      const readsBeforeATurn = reads;
      const group = await creating;
      assert.ok(readsBeforeATurn < ids.length, `${readsBeforeATurn} of ${ids.length} reads before the loop turned once`);
      assert.equal(reads, ids.length, 'every member checked');
      assert.equal(group.size ?? group.devices.length, ids.length);
    } finally {
      delete (store as Partial<SqliteStore>).getDevice;
    }
  });

  it('names the first member that is not registered, in the order given', async () => {
    const groups = new GroupService({ store });
    await assert.rejects(groups.create({ name: 'some-missing', devices: [ids[3]!, 'nobody-2', ids[1_500]!, 'nobody-1'] }), /device nobody-2 is not registered/);
    await groups.create({ name: 'pair', devices: [ids[0]!] });
    await assert.rejects(groups.changeMembers('pair', [ids[1]!, 'nobody-3'], undefined), /device nobody-3 is not registered/);
  });
});
