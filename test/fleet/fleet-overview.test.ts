/**
 * The dashboard's fleet overview cache: fresh within its time to live, shared by concurrent
 * callers, and kept longer when computing it takes long (a big fleet), so open dashboards
 * cost a bounded share of the server. Time is an injected clock: no test waits on the wall.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { FleetOverviewSource } from '../../src/fleet/fleet-overview.ts';
import { FleetView } from '../../src/fleet/fleet-view.ts';
import type { SqliteStore } from '../../src/store/sqlite-store.ts';
import { startTempStore } from '../helpers/sqlite.ts';

describe('FleetOverviewSource', () => {
  let store: SqliteStore;
  let close: () => Promise<void>;
  before(async () => {
    ({ store, close } = await startTempStore('overview'));
  });
  after(() => close());

  /** A fleet view on the real store whose summary takes `costMs` of the injected clock. */
  function setup(costMs: number) {
    const clock = { now: 1_000_000 };
    let computed = 0;
    const view = new FleetView({ store, onlineCount: () => 0 });
    const summary = view.summary.bind(view);
    view.summary = async () => {
      computed++;
      clock.now += costMs;
      return summary();
    };
    const source = new FleetOverviewSource({ store, fleet: view, ttlMs: 2000, now: () => clock.now });
    return { clock, source, computed: () => computed };
  }

  it('computes once for concurrent callers and again after its time to live', async () => {
    const { clock, source, computed } = setup(10);
    const [a, b] = await Promise.all([source.get(), source.get()]);
    assert.equal(a, b);
    assert.equal(computed(), 1);
    clock.now += 1500;
    await source.get();
    assert.equal(computed(), 1, 'still fresh');
    clock.now += 600;
    await source.get();
    assert.equal(computed(), 2, 'older than 2 s: computed again');
  });

  it('keeps a result ten times as long as computing it took, when that is longer', async () => {
    const { clock, source, computed } = setup(1000); // a fleet whose summary takes 1 s
    await source.get();
    clock.now += 5000;
    await source.get();
    assert.equal(computed(), 1, 'a 1 s computation is reused for 10 s, not 2');
    clock.now += 5000;
    await source.get();
    assert.equal(computed(), 2);
  });
});
