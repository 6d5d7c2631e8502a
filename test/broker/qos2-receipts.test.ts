/** What the QoS 2 receipts keep, and for how long: bounded, and nothing of a clean session once it ends. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MAX_RECEIPTS_PER_SESSION, Qos2Receipts } from '../../src/broker/qos2-receipts.ts';

const done = Promise.resolve();

describe('QoS 2 receipts', () => {
  it('keep a packet id until its PUBREL, per session', () => {
    const r = new Qos2Receipts();
    const a = { id: 'a', clean: true };
    const b = { id: 'b', clean: true };
    r.record(a, 7, done);
    assert.equal(r.earlier(a, 7), done);
    assert.equal(r.earlier(b, 7), undefined, 'another client');
    r.release(a, 7);
    assert.equal(r.earlier(a, 7), undefined);
  });

  it('a persistent session keeps them across connections; a clean one starts with none and keeps none', () => {
    const r = new Qos2Receipts();
    const first = { id: 'p', clean: false };
    r.record(first, 1, done);
    r.disconnected(first);
    const second = { id: 'p', clean: false };
    r.connected(second);
    assert.equal(r.earlier(second, 1), done, 'resumed');
    r.release(second, 1);
    r.disconnected(second);
    assert.equal(r.size, 0, 'a persistent session with nothing to remember is not kept');

    r.record({ id: 'p', clean: false }, 2, done);
    const clean = { id: 'p', clean: true };
    r.connected(clean);
    assert.equal(r.earlier(clean, 2), undefined, 'a clean session discards the one before');
    r.record(clean, 3, done);
    r.disconnected(clean);
    assert.equal(r.size, 0);
    assert.equal(r.earlier({ id: 'p', clean: false }, 3), undefined);
  });

  it('hold at most MAX_RECEIPTS_PER_SESSION, the oldest going first', () => {
    const r = new Qos2Receipts();
    const c = { id: 'flood', clean: false };
    for (let id = 1; id <= MAX_RECEIPTS_PER_SESSION + 5; id++) r.record(c, id, done);
    assert.equal(r.earlier(c, 5), undefined);
    assert.equal(r.earlier(c, 6), done);
    assert.equal(r.earlier(c, MAX_RECEIPTS_PER_SESSION + 5), done);
  });
});
