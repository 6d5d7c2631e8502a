/** Bulk registration on the real embedded store. */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { deviceSecretMatches } from '../../src/registry/device-secret.ts';
import { DeviceRegistry } from '../../src/registry/device-registry.ts';
import type { SqliteStore } from '../../src/store/sqlite-store.ts';
import { startTempStore } from '../helpers/sqlite.ts';

describe('DeviceRegistry.registerMany', () => {
  let store: SqliteStore;
  let close: () => Promise<void>;
  let registry: DeviceRegistry;
  before(async () => {
    ({ store, close } = await startTempStore('registry'));
    registry = new DeviceRegistry({ store });
  });
  after(() => close());

  it('registers every device with its own secret, and lets the event loop turn while it begins them', async () => {
    const regs = Array.from({ length: 1_200 }, (_, i) => ({ deviceId: `bulk-${i}`, tags: ['line-3'] }));
    // note, as each registration begins, whether the loop turned since the first began
    const register = registry.register.bind(registry);
    let begun = 0;
    let turned = false;
    let turnedAtLast = false;
    registry.register = (r) => {
      if (begun++ === 0) setImmediate(() => (turned = true));
      turnedAtLast = turned;
      return register(r);
    };
    const results = await registry.registerMany(regs);
    assert.equal(begun, 1_200);
    assert.ok(turnedAtLast, 'the last registrations began after a turn of the event loop');
    assert.deepEqual(results.map((r) => r.deviceId), regs.map((r) => r.deviceId), 'in the order given');
    assert.equal(new Set(results.map((r) => r.secret)).size, 1_200, 'a secret each');
    const last = await store.getDevice('bulk-1199');
    assert.ok(last && deviceSecretMatches(Buffer.from(results[1_199]!.secret), last.secretHash));
    assert.deepEqual(last.tags, ['line-3']);
  });

  it('refuses a batch that names registered devices, naming them, and registers none of it', async () => {
    await registry.register({ deviceId: 'taken-1' });
    await registry.register({ deviceId: 'taken-2' });
    const regs = [{ deviceId: 'new-1' }, { deviceId: 'taken-1' }, { deviceId: 'new-2' }, { deviceId: 'taken-2' }];
    await assert.rejects(registry.registerMany(regs), { code: 'CONFLICT', message: '2 of these devices are already registered (taken-1, taken-2); nothing was registered' });
    assert.equal(await store.getDevice('new-1'), undefined);
    assert.equal(await store.getDevice('new-2'), undefined);
  });

  it('undoes the batch once every registration settled when one fails (its secrets would be lost), and nothing goes unhandled', async () => {
    const fresh = new DeviceRegistry({ store });
    const register = fresh.register.bind(fresh);
    // the first registration fails at once (a store that refuses), before the second slice begins
    fresh.register = (r) => (r.deviceId === 'fail-0' ? Promise.reject(new Error('store refused')) : register(r));
    const unhandled: unknown[] = [];
    const note = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', note);
    try {
      const regs = Array.from({ length: 1_200 }, (_, i) => ({ deviceId: `fail-${i}` }));
      await assert.rejects(fresh.registerMany(regs), { message: 'store refused; nothing was registered' });
      // heard only once every other registration had settled and was undone: none is still writing
      for (const id of ['fail-1', 'fail-600', 'fail-1199']) assert.equal(await store.getDevice(id), undefined, id);
      await new Promise((resolve) => setTimeout(resolve, 50));
    } finally {
      process.off('unhandledRejection', note);
    }
    assert.deepEqual(unhandled, [], 'no rejection went unhandled');
  });
});

describe('DeviceRegistry attributes', () => {
  let store: SqliteStore;
  let close: () => Promise<void>;
  let registry: DeviceRegistry;
  before(async () => {
    ({ store, close } = await startTempStore('registry-attributes'));
    registry = new DeviceRegistry({ store });
  });
  after(() => close());

  it('refuses a number that is not finite (stored as JSON, it would read back as null), at registration and at an update', async () => {
    for (const v of [Infinity, -Infinity, NaN]) {
      await assert.rejects(registry.register({ deviceId: 'attr-inf', attributes: { big: v } }), { code: 'BAD_REQUEST', message: 'attribute big must be a finite number' });
    }
    assert.equal(await store.getDevice('attr-inf'), undefined);
    await registry.register({ deviceId: 'attr-1', attributes: { big: 1 } });
    await assert.rejects(registry.update('attr-1', { attributes: { big: Infinity } }), { code: 'BAD_REQUEST', message: 'attribute big must be a finite number' });
    await assert.rejects(registry.registerMany([{ deviceId: 'attr-2' }, { deviceId: 'attr-3', attributes: { n: -Infinity } }]), { message: 'attribute n must be a finite number' });
    assert.deepEqual((await store.getDevice('attr-1'))?.attributes, { big: 1 });
    assert.equal(await store.getDevice('attr-2'), undefined);
  });
});
