/** What the QoS 2 receipts keep, and for how long: a bounded number per session, and nothing of a clean session once it ends. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MAX_DEVICE_QOS2_AWAITING_RELEASE, Qos2Receipts, type SessionClient } from '../../src/broker/qos2-receipts.ts';

const done = Promise.resolve();
const LIMIT = MAX_DEVICE_QOS2_AWAITING_RELEASE;

/** Admits `messageId` and records its handling, as the broker does for a request. */
function receive(r: Qos2Receipts, client: SessionClient, messageId: number, handled = done): void {
  assert.equal(r.admit(client, messageId, LIMIT), true);
  r.handling(client, messageId, handled);
}

describe('QoS 2 receipts', () => {
  it('keep a packet id until its PUBREL, per session', () => {
    const r = new Qos2Receipts();
    const a = { id: 'a', clean: true };
    const b = { id: 'b', clean: true };
    const handled = new Promise<void>(() => {});
    receive(r, a, 7, handled);
    assert.equal(r.earlier(a, 7), handled);
    assert.equal(r.earlier(b, 7), undefined, 'another client');
    assert.equal(r.holds(a, 7), true);
    r.release(a, 7);
    assert.equal(r.earlier(a, 7), undefined);
    assert.equal(r.holds(a, 7), false);
  });

  it('a persistent session keeps them across connections; a clean one starts with none and keeps none', () => {
    const r = new Qos2Receipts();
    const first = { id: 'p', clean: false };
    receive(r, first, 1);
    const second = { id: 'p', clean: false }; // its next connection
    assert.equal(r.earlier(second, 1), done, 'resumed');
    r.release(second, 1);
    assert.equal(r.size, 0, 'a persistent session with nothing to remember is not kept');
    receive(r, second, 2);
    assert.equal(r.size, 1, 'held again by its next message');

    // aedes empties the id's store as a clean session begins, and as it ends (cleanIncoming)
    r.discard('p');
    const clean = { id: 'p', clean: true };
    assert.equal(r.earlier(clean, 2), undefined, 'a clean session discards the one before');
    receive(r, clean, 3);
    r.discard('p');
    assert.equal(r.size, 0);
    assert.equal(r.earlier({ id: 'p', clean: false }, 3), undefined);
  });

  it(`refuse a message past the limit, over all of a session's connections; a copy or a released id is no new one`, () => {
    const r = new Qos2Receipts();
    let conn = { id: 'flood', clean: false };
    for (let id = 1; id <= LIMIT; id++) {
      if (id % 7 === 0) conn = { id: 'flood', clean: false }; // a reconnect
      receive(r, conn, id);
    }
    assert.equal(r.admit(conn, LIMIT + 1, LIMIT), false, 'refused');
    const next = { id: 'flood', clean: false };
    assert.equal(r.admit(next, LIMIT + 1, LIMIT), false, 'refused after a reconnect too');
    for (let id = 1; id <= LIMIT; id++) assert.equal(r.earlier(next, id), done, `nothing taken, nothing evicted: ${id} still remembered`);
    assert.equal(r.earlier(next, LIMIT + 1), undefined);
    assert.equal(r.admit(next, 3, LIMIT), true, 'one it holds');
    r.release(next, 3);
    assert.equal(r.admit(next, LIMIT + 1, LIMIT), true, 'a PUBREL frees a place');
    assert.equal(r.holds(next, LIMIT + 1), true);
  });

  it('a discarded session holds nothing, and the connection it was taken from stores nothing more', () => {
    const r = new Qos2Receipts();
    const old = { id: 'd', clean: false };
    receive(r, old, 1);
    r.discard('d'); // a clean connection of the same id begins: aedes empties the id's store
    assert.equal(r.holds(old, 1), false, 'a message of the old connection handled after the wipe is not stored');
    assert.equal(r.earlier({ id: 'd', clean: false }, 1), undefined, 'no session under the id');
    const clean = { id: 'd', clean: true };
    receive(r, clean, 5);
    assert.equal(r.admit(old, 2, LIMIT), true);
    assert.equal(r.holds(old, 2), false, 'the newer connection owns the id');
    assert.equal(r.holds(clean, 5), true);
  });
});
