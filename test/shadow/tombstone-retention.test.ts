/**
 * A deleted device's shadow tombstones are kept `shadow.tombstoneRetentionHours` after its
 * deletion, then removed, so that a fleet retiring devices does not keep a row per shadow of
 * every device it ever had (shadow/tombstone-retention.ts). Over a real server (real MQTT,
 * real HTTP, its real SQLite store): within the retention the id registered again goes on
 * from its versions; after it, the id starts over at version 1. The sweep is the server's
 * own class run on the server's store at a later clock (hours cannot pass in a test).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { TombstoneRetention } from '../../src/shadow/tombstone-retention.ts';
import type { StateStore } from '../../src/store/state-store.ts';
import { createLogger } from '../../src/util/logger.ts';
import { TestClient } from '../helpers/mqtt-client.ts';
import { apiJson, registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';

const HOUR = 3_600_000;

describe("deleted devices' shadow tombstones", () => {
  let ts: TestServer;
  before(async () => {
    ts = await startTestServer();
  });
  after(async () => {
    await ts.close();
  });

  const secrets = new Map<string, string>();
  /** Registers `id`, writes its classic and `wifi` shadows once, and answers the versions they were given. */
  const registerAndWrite = async (id: string): Promise<{ classic: number; wifi: number }> => {
    secrets.set(id, await registerDevice(ts, id));
    const c = await connect(id);
    try {
      await c.subscribe(`state/${id}/update/+`, `state/${id}/shadow/wifi/update/+`);
      const classic = await c.request(`state/${id}/update`, { state: { reported: { a: 1 } } });
      const wifi = await c.request(`state/${id}/shadow/wifi/update`, { state: { reported: { ssid: 'lab' } } });
      assert.equal(classic.topic, `state/${id}/update/accepted`, JSON.stringify(classic.body));
      assert.equal(wifi.topic, `state/${id}/shadow/wifi/update/accepted`, JSON.stringify(wifi.body));
      return { classic: classic.body.version, wifi: wifi.body.version };
    } finally {
      await c.end();
    }
  };
  const connect = (id: string) => TestClient.connect(ts.mqttUrl, id, { username: id, password: secrets.get(id)! });
  const deleteDevice = async (id: string) => {
    const r = await apiJson(ts, 'DELETE', `/api/v1/devices/${id}`);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual([...r.body.shadowsDeleted].sort(), ['', 'wifi']);
  };
  const sweepAt = (offsetMs: number, store: StateStore, hours = 48) =>
    new TombstoneRetention({ store, isLeader: () => true, hours, logger: createLogger({ level: 'silent' }), now: () => Date.now() + offsetMs }).pass();

  it('keeps them for the retention (the id registered again goes on from its versions), then removes them (it starts over at 1)', async () => {
    assert.deepEqual(await registerAndWrite('dev-r'), { classic: 1, wifi: 1 });
    await deleteDevice('dev-r');
    // each deletion took a version: the tombstones are at 2
    assert.deepEqual((await ts.server.store.listShadowTombstones('dev-r')).map((t) => [t.name, t.version]).sort(), [['', 2], ['wifi', 2]]);

    assert.deepEqual(await sweepAt(47 * HOUR, ts.server.store), { devices: 0, tombstones: 0 }, 'within 48 hours: kept');
    assert.deepEqual(await registerAndWrite('dev-r'), { classic: 3, wifi: 3 }, 'registered again within the retention: the versions go on');
    // registered again: its tombstones are kept past the retention (none now: the writes revived them)
    assert.deepEqual(await sweepAt(49 * HOUR, ts.server.store), { devices: 1, tombstones: 0 }, 'the first deletion is forgotten, nothing of the registered device removed');
    assert.equal((await ts.server.store.getShadow('dev-r', ''))?.version, 3);

    await deleteDevice('dev-r');
    assert.deepEqual(await sweepAt(47 * HOUR, ts.server.store), { devices: 0, tombstones: 0 });
    assert.deepEqual(await sweepAt(49 * HOUR, ts.server.store), { devices: 1, tombstones: 2 });
    assert.deepEqual(await ts.server.store.listShadowTombstones('dev-r'), []);
    assert.deepEqual(await registerAndWrite('dev-r'), { classic: 1, wifi: 1 }, 'after the retention: a new id, from version 1');
  });

  it("leaves a registered device's own tombstones alone", async () => {
    await registerAndWrite('dev-k');
    // a registered device deletes its named shadow: the tombstone keeps its version for good
    const c = await connect('dev-k');
    try {
      await c.subscribe('state/dev-k/shadow/wifi/delete/+');
      const gone = await c.request('state/dev-k/shadow/wifi/delete', {});
      assert.equal(gone.topic, 'state/dev-k/shadow/wifi/delete/accepted', JSON.stringify(gone.body));
    } finally {
      await c.end();
    }
    assert.deepEqual(await sweepAt(1000 * HOUR, ts.server.store), { devices: 0, tombstones: 0 });
    assert.deepEqual((await ts.server.store.listShadowTombstones('dev-k')).map((t) => [t.name, t.version]), [['wifi', 2]]);
  });

  it('sweeps on the leader only, never with 0 hours, a batch at a time until one finds fewer', async () => {
    const calls: number[] = [];
    const store: Pick<StateStore, 'expireDeletedDevices'> = {
      expireDeletedDevices: async (before, limit) => {
        calls.push(limit);
        const done = await ts.server.store.expireDeletedDevices(before, limit);
        return done;
      },
    };
    for (const id of ['b-1', 'b-2', 'b-3', 'b-4', 'b-5']) {
      await registerAndWrite(id);
      await deleteDevice(id);
    }
    const logger = createLogger({ level: 'silent' });
    const later = () => Date.now() + 49 * HOUR;
    assert.deepEqual(await new TombstoneRetention({ store, isLeader: () => false, hours: 48, logger, now: later }).pass(), { devices: 0, tombstones: 0 });
    assert.deepEqual(await new TombstoneRetention({ store, isLeader: () => true, hours: 0, logger, now: later }).pass(), { devices: 0, tombstones: 0 });
    assert.deepEqual(calls, [], 'not asked');
    assert.deepEqual(await new TombstoneRetention({ store, isLeader: () => true, hours: 48, logger, now: later, perBatch: 2, batchesPerPass: 2 }).pass(), { devices: 4, tombstones: 8 }, 'two batches of two');
    assert.deepEqual(await new TombstoneRetention({ store, isLeader: () => true, hours: 48, logger, now: later, perBatch: 2 }).pass(), { devices: 1, tombstones: 2 }, 'the last one, a batch of fewer ends the pass');
    assert.deepEqual(calls, [2, 2, 2]);
  });
});
