import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { applyUpdate, computeDelta, deltaMessage, fullDocument, tombstone } from '../../src/shadow/document.ts';
import { DEFAULT_LIMITS } from '../../src/protocol/shadow-messages.ts';
import type { ShadowRecord } from '../../src/store/state-store.ts';

const ref = { deviceId: 'dev-1', name: '' };

function apply(current: ShadowRecord | undefined, state: any, extra: Record<string, unknown> = {}, now = 100) {
  return applyUpdate(current, ref, { state, ...extra }, now, DEFAULT_LIMITS);
}

describe('shadow document', () => {
  it('creates a shadow at version 1 with per-leaf metadata', () => {
    const { next, accepted } = apply(undefined, { desired: { color: 'red', cfg: { a: 1 } } }, { clientToken: 'c1' });
    assert.equal(next.version, 1);
    assert.deepEqual(next.state.desired, { color: 'red', cfg: { a: 1 } });
    assert.deepEqual(next.metadata.desired, { color: { timestamp: 100 }, cfg: { a: { timestamp: 100 } } });
    assert.equal(accepted.clientToken, 'c1');
    assert.equal(accepted.version, 1);
  });

  it('refuses an own "__proto__" at any depth, in arrays too, and pollutes nothing', () => {
    const state = JSON.parse('{"reported":{"cfg":{"keep":1,"__proto__":{"polluted":2}}}}');
    assert.throws(() => apply(undefined, state), (e: any) => e.code === 'BAD_REQUEST' && /Invalid attribute name "__proto__" in the reported node/.test(e.message));
    const inArray = JSON.parse('{"desired":{"list":[{"__proto__":{"polluted":3}}]}}');
    assert.throws(() => apply(undefined, inArray), (e: any) => e.code === 'BAD_REQUEST' && /in the desired node/.test(e.message));
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
  });

  it('merges leaf by leaf and deletes keys set to null', () => {
    const first = apply(undefined, { desired: { cfg: { a: 1, b: 2 }, x: 1 } }).next;
    const { next } = apply(first, { desired: { cfg: { b: null, c: 3 }, x: null } }, {}, 200);
    assert.deepEqual(next.state.desired, { cfg: { a: 1, c: 3 } });
    assert.deepEqual(next.metadata.desired, { cfg: { a: { timestamp: 100 }, c: { timestamp: 200 } } });
    assert.equal(next.version, 2);
  });

  it('removes objects emptied by deletions and clears a section set to null', () => {
    const first = apply(undefined, { desired: { cfg: { a: 1 } }, reported: { r: 1 } }).next;
    const emptied = apply(first, { desired: { cfg: { a: null } } }).next;
    assert.equal(emptied.state.desired, undefined);
    const cleared = apply(first, { reported: null }).next;
    assert.equal(cleared.state.reported, undefined);
    assert.deepEqual(cleared.state.desired, { cfg: { a: 1 } });
  });

  it('copies only what an update changes, and never changes its inputs', () => {
    const deepFreeze = <T>(v: T): T => {
      if (typeof v === 'object' && v !== null) {
        for (const child of Object.values(v)) deepFreeze(child);
        Object.freeze(v);
      }
      return v;
    };
    const first = deepFreeze(apply(undefined, { desired: { software: { version: '2' } }, reported: { software: { version: '1', status: 'IDLE' }, net: { rssi: -60, ips: ['10.0.0.2'] } } }).next);
    const request = deepFreeze({ reported: { software: { status: 'DOWNLOADING' }, net: { ips: ['10.0.0.3'] }, temp: null } });
    // frozen inputs: a write into either would throw here (modules are strict)
    const { next, accepted } = apply(first, request, {}, 200);
    assert.deepEqual(next.state.reported, { software: { version: '1', status: 'DOWNLOADING' }, net: { rssi: -60, ips: ['10.0.0.3'] } });
    assert.deepEqual(next.metadata.reported?.net, { rssi: { timestamp: 100 }, ips: { timestamp: 200 } });
    assert.deepEqual(first.state.reported?.software, { version: '1', status: 'IDLE' }, 'the previous record is unchanged');
    // untouched subtrees are shared with the previous record, written values with the request
    assert.equal(next.state.desired, first.state.desired);
    assert.equal(next.metadata.desired, first.metadata.desired);
    assert.equal((next.state.reported?.net as Record<string, unknown>).ips, (request.reported.net as Record<string, unknown>).ips);
    assert.notEqual(next.state.reported, first.state.reported);
    assert.equal(accepted.state, request);
    // the delta and its metadata share the record's values and change nothing
    const delta = deltaMessage(deepFreeze(next), 300);
    assert.deepEqual(delta?.state, { software: { version: '2' } });
    assert.deepEqual(delta?.metadata, { software: { version: { timestamp: 100 } } });
  });

  it('an object without leaves writes nothing: it leaves a value, an object or an absent key as they are (only null deletes)', () => {
    const first = apply(undefined, { reported: { sc: 5, obj: { x: 1 }, list: [1] } }).next;
    for (const patch of [{ sc: {} }, { obj: {} }, { list: {} }, { none: {} }, { sc: { a: {} } }, { sc: { gone: null } }]) {
      const { next, accepted } = apply(first, { reported: patch }, {}, 200);
      // before, an empty object onto a value deleted it while accepted said it was set
      assert.deepEqual(next.state.reported, { sc: 5, obj: { x: 1 }, list: [1] }, JSON.stringify(patch));
      assert.deepEqual(next.metadata.reported, first.metadata.reported, 'no leaf written');
      assert.equal(accepted.state.reported, patch, 'accepted echoes the request: it names no leaf either');
    }
    // an object with leaves replaces a value, and an object emptied by deletions goes
    assert.deepEqual(apply(first, { reported: { sc: { a: 1 } } }).next.state.reported?.sc, { a: 1 });
    assert.equal(apply(first, { reported: { obj: { x: null } } }).next.state.reported?.obj, undefined);
  });

  it('replaces arrays as whole values', () => {
    const first = apply(undefined, { desired: { list: [1, 2, 3] } }).next;
    const { next } = apply(first, { desired: { list: [4] } });
    assert.deepEqual(next.state.desired, { list: [4] });
  });

  it('rejects a stale version with 409 and accepts the current one', () => {
    const first = apply(undefined, { desired: { a: 1 } }).next;
    assert.throws(() => apply(first, { desired: { a: 2 } }, { version: 7 }), { code: 'CONFLICT', status: 409, message: 'Version conflict' });
    assert.equal(apply(first, { desired: { a: 2 } }, { version: 1 }).next.version, 2);
  });

  it('never reuses a version across delete', () => {
    const v1 = apply(undefined, { desired: { a: 1 } }).next;
    const v2 = apply(v1, { desired: { a: 2 } }).next;
    const gone = tombstone(v2, 300);
    assert.equal(gone.deleted, true);
    assert.equal(gone.version, 3);
    const reborn = apply(gone, { desired: { b: 1 } }).next;
    assert.equal(reborn.version, 4);
    assert.deepEqual(reborn.state.desired, { b: 1 }, 'nothing of the deleted state survives');
  });

  it('rejects a document that would grow past the size limit with 413', () => {
    const limits = { ...DEFAULT_LIMITS, maxDocumentBytes: 300 };
    const first = applyUpdate(undefined, ref, { state: { desired: { a: 'x'.repeat(200) } } }, 1, limits).next;
    assert.throws(() => applyUpdate(first, ref, { state: { reported: { b: 'y'.repeat(200) } } }, 1, limits), { code: 'TOO_LARGE', status: 413 });
  });

  it('computes the delta leaf by leaf, arrays whole', () => {
    assert.equal(computeDelta({ a: 1 }, { a: 1, b: 2 }), undefined);
    assert.deepEqual(computeDelta({ a: 1, cfg: { x: 1, y: 2 } }, { a: 1, cfg: { x: 1, y: 3 } }), { cfg: { y: 2 } });
    assert.deepEqual(computeDelta({ list: [1, 2] }, { list: [1, 2, 3] }), { list: [1, 2] });
    assert.equal(computeDelta({ list: [1, { a: 2 }] }, { list: [1, { a: 2 }] }), undefined);
    assert.deepEqual(computeDelta({ cfg: { x: 1 } }, { cfg: 'flat' }), { cfg: { x: 1 } });
  });

  it('delta message carries metadata of its keys only, and the full document includes the delta', () => {
    const rec = apply(undefined, { desired: { a: 1, b: 2 }, reported: { a: 1 } }).next;
    const delta = deltaMessage(rec, 500, 'tok');
    assert.deepEqual(delta?.state, { b: 2 });
    assert.deepEqual(delta?.metadata, { b: { timestamp: 100 } });
    assert.equal(delta?.clientToken, 'tok');
    const doc = fullDocument(rec, 500);
    assert.deepEqual(doc.state.delta, { b: 2 });
    assert.equal(doc.version, 1);
    const synced = apply(rec, { reported: { b: 2 } }).next;
    assert.equal(deltaMessage(synced, 500), undefined);
  });
});
