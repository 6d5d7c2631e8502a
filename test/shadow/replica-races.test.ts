/**
 * Two instances writing one shadow (the production topology: a shared subscription splits a
 * device's requests between instances): an update without a version applies to whatever is
 * current however many races it loses, and only a conditional update is refused as a conflict.
 * The other instance is a second store on the same SQLite file; its writes land, for real,
 * between this replica's read and its conditional write.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { UpdraftError } from '../../src/errors.ts';
import { EventBus } from '../../src/events/event-bus.ts';
import { ShadowReplica } from '../../src/shadow/replica.ts';
import type { ShadowRecord } from '../../src/store/state-store.ts';
import { SqliteStore } from '../../src/store/sqlite-store.ts';
import { silentLogger } from '../../src/util/logger.ts';
import { RecordingBus } from '../jobs/rollout-fixture.ts';

describe('replica: races with another instance', () => {
  let dir: string;
  let mine: SqliteStore;
  let other: SqliteStore;
  let replica: ShadowReplica;
  /** How many of this replica's next writes another instance's write precedes. */
  let racesToLose = 0;
  let otherWrites = 0;

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-races-'));
    const file = path.join(dir, 'shared.db');
    mine = new SqliteStore({ path: file });
    other = new SqliteStore({ path: file });
    await mine.start();
    await other.start();
    // the other instance commits to the same shadow just before this replica's write
    const put = mine.putShadow.bind(mine);
    mine.putShadow = async (record: ShadowRecord, expectedVersion: number) => {
      if (racesToLose > 0) {
        racesToLose--;
        const current = (await other.getShadow(record.deviceId, record.name))!;
        const key = `other-${++otherWrites}`;
        const theirs: ShadowRecord = { ...current, version: current.version + 1, state: { ...current.state, reported: { ...current.state.reported, [key]: 1 } } };
        assert.equal(await other.putShadow(theirs, current.version), true, 'the other instance wins its write');
      }
      return put(record, expectedVersion);
    };
    replica = new ShadowReplica({ store: mine, bus: new RecordingBus(), events: new EventBus(), logger: silentLogger, limits: { maxDocumentBytes: 8192, maxDepth: 6 }, maxPending: 100 });
    await replica.start();
  });
  after(async () => {
    await replica.stop();
    await mine.stop();
    await other.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const ref = { deviceId: 'dev-race', name: '' };
  const device = { kind: 'device', id: 'dev-race' } as const;

  it('an update without a version applies, however many races it loses in a row (8 here)', async () => {
    await replica.update(ref, { state: { reported: { start: 1 } } }, device);
    racesToLose = 8;
    const record = await replica.update(ref, { state: { reported: { mine: 1 } } }, device);
    assert.equal(racesToLose, 0, 'it lost all eight');
    assert.equal(record.version, 10, 'its own write after the other instance\'s eight');
    assert.deepEqual(Object.keys(record.state.reported!).sort(), ['mine', 'other-1', 'other-2', 'other-3', 'other-4', 'other-5', 'other-6', 'other-7', 'other-8', 'start']);
    assert.deepEqual((await other.getShadow('dev-race', ''))!.state.reported, record.state.reported, 'what both instances read');
  });

  it('a conditional update that loses its race is the caller\'s conflict (409)', async () => {
    const current = (await mine.getShadow('dev-race', ''))!;
    racesToLose = 1;
    await assert.rejects(replica.update(ref, { state: { reported: { late: 1 } }, version: current.version }, device), (err: unknown) => err instanceof UpdraftError && err.status === 409);
    assert.equal((await mine.getShadow('dev-race', ''))!.state.reported!.late, undefined);
  });

  it('a shadow that never stops changing: after every retry, 429 to retry later, never a conflict', async () => {
    racesToLose = 1000;
    await assert.rejects(replica.update(ref, { state: { reported: { never: 1 } } }, device), (err: unknown) => err instanceof UpdraftError && err.status === 429 && /kept changing under this update \(11 attempts/.test(err.message));
    racesToLose = 0;
    assert.equal((await mine.getShadow('dev-race', ''))!.state.reported!.never, undefined, 'nothing of it written');
  });
});
