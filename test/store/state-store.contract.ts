/**
 * The contract every StateStore implementation passes against its real back-end
 * (STYLE.md habit 2): SQLite in `sqlite-store.test.ts`, PostgreSQL alongside it later.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { UpdraftError } from '../../src/errors.ts';
import { JOB_CHUNK } from '../../src/store/job-creation.ts';
import { IdempotencyKeyTaken, REVOKED_PAGE, allArtifacts, type ArtifactRecord, type DeviceRecord, type ExecutionRecord, type GroupRecord, type JobRecord, type ShadowRecord, type StateStore } from '../../src/store/state-store.ts';

/** What a contract case needs: a store on an empty back-end (not started) and how to dispose of it. */
export interface OpenedStore {
  store: StateStore;
  /** A new store (not started) on the same back-end, for durability checks; omit if there is none. */
  reopen?: () => Promise<StateStore>;
  /** Removes the back-end's data; runs after the contract stopped every store it started. */
  cleanup: () => Promise<void>;
  /** Runs one SQL statement on the back-end beside the store: a state no store call leaves (a crash's). */
  exec: (sql: string) => Promise<void>;
}

/** Registers the StateStore contract cases under `describe(name)`; `open` is called once per case. */
export function stateStoreContract(name: string, open: () => Promise<OpenedStore>): void {
  /** Runs `fn` on a started store, then stops it (and any reopened one) and cleans up. */
  async function withStore(fn: (store: StateStore, opened: OpenedStore, track: (s: StateStore) => StateStore) => Promise<void>): Promise<void> {
    const opened = await open();
    const started: StateStore[] = [];
    const track = (s: StateStore) => (started.push(s), s);
    try {
      await track(opened.store).start();
      await fn(opened.store, opened, track);
    } finally {
      for (const s of started) await s.stop();
      await opened.cleanup();
    }
  }

  describe(`StateStore contract: ${name}`, () => {
    describe('shadows', () => {
      it('creates a shadow with expectedVersion 0 and reads it back exactly', () =>
        withStore(async (store) => {
          assert.equal(await store.getShadow('dev-1', ''), undefined);
          const record = shadow('dev-1', 1, { desired: { color: 'red', cfg: { a: [1, 2], b: null, c: true } } });
          assert.equal(await store.putShadow(record, 0), true);
          assert.deepEqual(await store.getShadow('dev-1', ''), record);
          assert.equal(await store.getShadow('dev-1', 'other'), undefined, 'a named shadow is a different shadow');
        }));

      it('keeps classic and named shadows of one device apart', () =>
        withStore(async (store) => {
          const classic = shadow('dev-1', 1, { reported: { x: 1 } });
          const named = { ...shadow('dev-1', 1, { reported: { x: 2 } }), name: 'cfg' };
          assert.equal(await store.putShadow(classic, 0), true);
          assert.equal(await store.putShadow(named, 0), true);
          assert.deepEqual(await store.getShadow('dev-1', ''), classic);
          assert.deepEqual(await store.getShadow('dev-1', 'cfg'), named);
        }));

      it('refuses expectedVersion 0 when the shadow exists, leaving it unchanged', () =>
        withStore(async (store) => {
          const first = shadow('dev-1', 1, { desired: { a: 1 } });
          await store.putShadow(first, 0);
          assert.equal(await store.putShadow(shadow('dev-1', 1, { desired: { a: 2 } }), 0), false);
          assert.deepEqual(await store.getShadow('dev-1', ''), first);
        }));

      it('applies a conditional update on the expected version and refuses a stale one', () =>
        withStore(async (store) => {
          await store.putShadow(shadow('dev-1', 1, { desired: { a: 1 } }), 0);
          const second = shadow('dev-1', 2, { desired: { a: 2 } }, 200);
          assert.equal(await store.putShadow(second, 1), true);
          assert.deepEqual(await store.getShadow('dev-1', ''), second);

          assert.equal(await store.putShadow(shadow('dev-1', 2, { desired: { a: 99 } }), 1), false, 'stale expectedVersion');
          assert.equal(await store.putShadow(shadow('dev-1', 6, { desired: { a: 99 } }), 5), false, 'future expectedVersion');
          assert.deepEqual(await store.getShadow('dev-1', ''), second, 'a refused write changes nothing');
          assert.equal(await store.putShadow(shadow('nobody', 2, {}), 1), false, 'no row to update');
          assert.equal(await store.getShadow('nobody', ''), undefined);
        }));

      it('keeps a tombstone with its version; expectedVersion 0 over it conflicts', () =>
        withStore(async (store) => {
          await store.putShadow(shadow('dev-1', 1, { desired: { a: 1 } }), 0);
          await store.putShadow(shadow('dev-1', 2, { desired: { a: 2 } }), 1);
          const gone: ShadowRecord = { ...shadow('dev-1', 3, {}), deleted: true };
          assert.equal(await store.putShadow(gone, 2), true);
          assert.deepEqual(await store.getShadow('dev-1', ''), gone);

          assert.equal(await store.putShadow(shadow('dev-1', 1, { desired: { b: 1 } }), 0), false, 'a tombstone is a row');
          assert.deepEqual(await store.getShadow('dev-1', ''), gone);

          const reborn = shadow('dev-1', 4, { desired: { b: 1 } });
          assert.equal(await store.putShadow(reborn, 3), true, 're-creating continues from the tombstone version');
          assert.deepEqual(await store.getShadow('dev-1', ''), reborn);
        }));

      it('lists existing classic shadows by device id, page by page, skipping deleted and named ones', () =>
        withStore(async (store) => {
          // inserted out of order: the listing sorts
          for (const id of ['d05', 'd01', 'd07', 'd03', 'd02', 'd06', 'd04']) await store.putShadow(shadow(id, 1, { reported: { id } }), 0);
          await store.putShadow({ ...shadow('d04', 2, {}), deleted: true }, 1);
          await store.putShadow({ ...shadow('d00', 1, {}), name: 'cfg' }, 0);
          await store.putShadow({ ...shadow('d02', 1, {}), name: 'cfg' }, 0);
          await store.putShadow({ ...shadow('d08', 1, {}), name: 'cfg' }, 0);

          const first = await store.listShadows({ limit: 3 });
          assert.deepEqual(first.items.map((s) => s.deviceId), ['d01', 'd02', 'd03']);
          assert.deepEqual(first.items[1], shadow('d02', 1, { reported: { id: 'd02' } }), 'the classic record, not the named one');
          assert.equal(first.next, 'd03');

          const second = await store.listShadows({ limit: 3, after: first.next! });
          assert.deepEqual(second.items.map((s) => s.deviceId), ['d05', 'd06', 'd07']);
          assert.equal(second.next, undefined, 'no cursor on the last page');

          const all = await store.listShadows({ limit: 100 });
          assert.deepEqual(all.items.map((s) => s.deviceId), ['d01', 'd02', 'd03', 'd05', 'd06', 'd07']);
          assert.equal(all.next, undefined);
          assert.deepEqual(await store.listShadows({ limit: 10, after: 'd07' }), { items: [] });
          assert.deepEqual((await store.listShadows({ limit: 2, after: 'd035' })).items.map((s) => s.deviceId), ['d05', 'd06'], 'any string is a cursor');
        }));

      it('gives concurrent writes of one tick their own results, as if run in call order', () =>
        withStore(async (store) => {
          await store.putShadow(shadow('dev-1', 1, { desired: { n: 1 } }), 0);
          const results = await Promise.all([
            store.putShadow(shadow('dev-1', 2, { desired: { n: 2 } }), 1),
            store.putShadow(shadow('dev-1', 2, { desired: { n: -2 } }), 1), // same expectedVersion: loses
            store.putShadow(shadow('dev-1', 3, { desired: { n: 3 } }), 2), // builds on the first
            store.putShadow(shadow('dev-2', 1, { desired: { n: 1 } }), 0),
            store.putShadow(shadow('dev-2', 1, { desired: { n: -1 } }), 0), // second create: loses
            store.putShadow({ ...shadow('dev-2', 2, {}), deleted: true }, 1), // delete after the create
            store.putShadow(shadow('dev-2', 1, { desired: { n: -3 } }), 0), // create over that tombstone: loses
          ]);
          assert.deepEqual(results, [true, false, true, true, false, true, false]);
          assert.deepEqual(await store.getShadow('dev-1', ''), shadow('dev-1', 3, { desired: { n: 3 } }));
          assert.deepEqual(await store.getShadow('dev-2', ''), { ...shadow('dev-2', 2, {}), deleted: true });
        }));

      it('answers each of many conditional updates of one tick by its own expected version', () =>
        withStore(async (store) => {
          const ids = Array.from({ length: 60 }, (_, i) => `unit-${String(i).padStart(2, '0')}`);
          await Promise.all(ids.map((id) => store.putShadow(shadow(id, 1, { desired: { v: 1 } }), 0)));
          // every third device is updated from a stale version, and every fifth is created again
          const results = await Promise.all(
            ids.map((id, i) => (i % 5 === 0 ? store.putShadow(shadow(id, 1, { desired: { v: -1 } }), 0) : store.putShadow(shadow(id, 2, { desired: { v: 2 } }), i % 3 === 0 ? 7 : 1))),
          );
          assert.deepEqual(results, ids.map((_, i) => i % 5 !== 0 && i % 3 !== 0));
          for (const [i, id] of ids.entries()) {
            const wrote = i % 5 !== 0 && i % 3 !== 0;
            assert.deepEqual(await store.getShadow(id, ''), shadow(id, wrote ? 2 : 1, { desired: { v: wrote ? 2 : 1 } }), id);
          }
        }));

      it('answers many reads of one tick, each caller with its own record, missing ones undefined', () =>
        withStore(async (store) => {
          await Promise.all(['r1', 'r2', 'r3'].map((id, i) => store.putShadow(shadow(id, 1, { reported: { i } }), 0)));
          await store.putShadow({ ...shadow('r1', 1, { desired: { named: true } }), name: 'cfg' }, 0);
          const keys: [string, string][] = [['r1', ''], ['r2', ''], ['nope', ''], ['r1', ''], ['r1', 'cfg'], ['r3', 'cfg'], ['r3', '']];
          const read = await Promise.all(keys.map(([id, name]) => store.getShadow(id, name)));
          assert.deepEqual(read, [
            shadow('r1', 1, { reported: { i: 0 } }),
            shadow('r2', 1, { reported: { i: 1 } }),
            undefined,
            shadow('r1', 1, { reported: { i: 0 } }),
            { ...shadow('r1', 1, { desired: { named: true } }), name: 'cfg' },
            undefined,
            shadow('r3', 1, { reported: { i: 2 } }),
          ]);
          assert.notEqual(read[0]!.state, read[3]!.state, 'two reads of one shadow share no object');
        }));

      it('commits many writes of one tick, every one readable once its promise resolved', () =>
        withStore(async (store) => {
          const ids = Array.from({ length: 500 }, (_, i) => `fleet-${String(i).padStart(4, '0')}`);
          const results = await Promise.all(ids.map((id, i) => store.putShadow(shadow(id, 1, { reported: { i } }), 0)));
          assert.ok(results.every((r) => r === true));
          for (const [i, id] of ids.entries()) assert.deepEqual(await store.getShadow(id, ''), shadow(id, 1, { reported: { i } }));
          const page = await store.listShadows({ limit: 1000 });
          assert.equal(page.items.length, 500);
        }));

      it('stores every kind of value exactly when many writes share one statement', () =>
        withStore(async (store) => {
          // what a JSON or array encoding of a batch could get wrong: quotes, backslashes,
          // text that looks like JSON or like an array literal, "null", control characters,
          // non-ASCII, empty and nested containers, numbers of every kind
          const awkward = ['say "hi"', 'C:\\dir\\', '{"a":1}', '{1,2}', 'null', 'line\nbreak\ttab', 'é 日本 🚀', '', ' ', ','];
          const state = (i: number): ShadowRecord['state'] => ({
            desired: { text: awkward[i % awkward.length]!, nested: { list: [1, 'two', null, { three: [] }], empty: {} }, n: -1.5e-7 * i, big: 2 ** 52 + i },
            reported: { flag: i % 2 === 0, nothing: null, [awkward[(i + 1) % awkward.length]! || 'k']: awkward[(i + 2) % awkward.length]! },
          });
          const names = ['', 'cfg "x"', 'back\\slash', 'ü'];
          const keys = Array.from({ length: 24 }, (_, i) => ({ id: `odd-${i}`, name: names[i % names.length]! }));
          const created = keys.map(({ id, name }, i) => ({ ...shadow(id, 1, state(i), 1_000 + i), name }));
          assert.ok((await Promise.all(created.map((r) => store.putShadow(r, 0)))).every((r) => r === true));
          // updated in one batch too, half of them into tombstones
          const updated = created.map((r, i) => ({ ...r, version: 2, deleted: i % 2 === 1, state: i % 2 === 1 ? {} : state(i + 5), metadata: i % 2 === 1 ? {} : r.metadata, timestamp: 2_000 + i }));
          assert.ok((await Promise.all(updated.map((r) => store.putShadow(r, 1)))).every((r) => r === true));
          for (const r of updated) assert.deepEqual(await store.getShadow(r.deviceId, r.name), r, `${r.deviceId} ${r.name}`);
          // executions: created with a job, then updated in one batch, with awkward details and absent times
          const queued = keys.map(({ id }, i) => ({ ...execution('job-"odd"', id, 1_000), details: { note: awkward[i % awkward.length]! } }));
          await store.createJob(job('job-"odd"'), queued);
          const next = queued.map((e, i): ExecutionRecord => ({ ...e, status: 'IN_PROGRESS', details: { phase: awkward[(i + 3) % awkward.length]!, progress: i, steps: [[]] }, updatedAt: 3_000, version: 2, ...(i % 2 === 0 ? { dispatchedAt: 2_500, dueAt: 9_000 } : {}) }));
          assert.ok((await Promise.all(next.map((e) => store.updateExecution(e)))).every((r) => r === true));
          for (const e of next) assert.deepEqual(await store.getExecution(e.jobId, e.deviceId), e, e.deviceId);
        }));

      it('stores the record as it was when putShadow was called', () =>
        withStore(async (store) => {
          const record = shadow('dev-1', 1, { desired: { a: 1 } });
          const pending = store.putShadow(record, 0);
          record.state.desired!['a'] = 2; // the caller reuses its object before the commit
          record.version = 9;
          assert.equal(await pending, true);
          assert.deepEqual(await store.getShadow('dev-1', ''), shadow('dev-1', 1, { desired: { a: 1 } }));
        }));
    });

    describe('fleet counts', () => {
      it('counts classic shadows per reported software, page by page, reading only JSON strings', () =>
        withStore(async (store) => {
          const sw = (software: unknown) => ({ reported: { software } }) as ShadowRecord['state'];
          const put = (id: string, state: ShadowRecord['state'], name = '') => store.putShadow({ ...shadow(id, 1, state), name }, 0);
          await put('a', sw({ name: 'fw', version: '2.0.0', status: 'SUCCESS' }));
          await put('b', sw({ name: 'fw', version: '2.0.0', status: 'SUCCESS', jobId: 'j' }));
          await put('c', sw({ version: '1.0.0', status: 'DOWNLOADING' })); // no name
          await put('d', sw({ name: 7, version: 2, status: 'SUCCESS' })); // not strings: null
          await put('e', { desired: { x: 1 } }); // never reported software
          await put('f', sw('2.0.0')); // software not an object
          await put('g', sw({ name: 'fw', version: '2.0.0', status: 'SUCCESS' }), 'named'); // a named shadow: not counted
          await put('h', sw({ name: 'fw', version: '2.0.0', status: 'SUCCESS' }));
          await store.putShadow({ ...shadow('h', 2, {}), deleted: true }, 1); // deleted: not counted
          const total = new Map<string, number>();
          let after: string | undefined;
          let pages = 0;
          do {
            const page = await store.countReportedSoftware({ limit: 2, ...(after ? { after } : {}) });
            for (const c of page.counts) {
              const key = `${c.name}|${c.version}|${c.status}`;
              total.set(key, (total.get(key) ?? 0) + c.devices);
            }
            after = page.next;
            pages++;
          } while (after);
          assert.ok(pages >= 3, `paged: ${pages} pages of 2 for 6 shadows`);
          assert.deepEqual(Object.fromEntries([...total].sort()), {
            'fw|2.0.0|SUCCESS': 2,
            'null|1.0.0|DOWNLOADING': 1,
            'null|null|SUCCESS': 1,
            'null|null|null': 2,
          });
        }));
    });

    describe('devices', () => {
      const device = (id: string, extra: Partial<DeviceRecord> = {}): DeviceRecord => ({
        deviceId: id, attributes: { region: 'eu', floor: 3, beta: true }, tags: ['lab'], secretHash: 'a'.repeat(64), revoked: false, createdAt: 1_000, updatedAt: 1_000, version: 1, ...extra,
      });

      it('registers, reads back exactly, refuses a duplicate id with CONFLICT', () =>
        withStore(async (store) => {
          const d = device('dev-1');
          await store.createDevice(d);
          assert.deepEqual(await store.getDevice('dev-1'), d);
          await assert.rejects(store.createDevice(device('dev-1', { tags: ['other'] })), isCode('CONFLICT'));
          assert.deepEqual(await store.getDevice('dev-1'), d, 'the original survives');
          const certOnly = device('dev-2');
          delete certOnly.secretHash;
          await store.createDevice(certOnly);
          assert.deepEqual(await store.getDevice('dev-2'), certOnly);
          const withBrokerHash = device('dev-3', { brokerHash: '$7$101$c2FsdA==$aGFzaA==' });
          await store.createDevice(withBrokerHash);
          assert.deepEqual(await store.getDevice('dev-3'), withBrokerHash);
          assert.equal(await store.getDevice('nobody'), undefined);
        }));

      it('answers many device reads of one tick, and no reader can change what another reads', () =>
        withStore(async (store) => {
          await Promise.all(['a', 'b'].map((id) => store.createDevice(device(id))));
          const read = await Promise.all(['a', 'x', 'b', 'a'].map((id) => store.getDevice(id)));
          assert.deepEqual(read, [device('a'), undefined, device('b'), device('a')]);
          // a record of its own (PostgreSQL) or one nobody can change (the embedded store shares it, frozen)
          const tryChange = (change: () => void) => {
            try {
              change();
            } catch (err) {
              assert.ok(err instanceof TypeError, String(err));
            }
          };
          tryChange(() => ((read[0]!.attributes as Record<string, unknown>).region = 'changed'));
          tryChange(() => read[0]!.tags.push('changed'));
          tryChange(() => ((read[0] as { revoked: boolean }).revoked = true));
          assert.deepEqual(read[3], device('a'), 'the other reader of the same tick');
          assert.deepEqual(await store.getDevice('a'), device('a'), 'a later reader');
        }));

      it('updates conditionally on the row version; a read after the update sees it', () =>
        withStore(async (store) => {
          await store.createDevice(device('dev-1'));
          assert.deepEqual(await store.getDevice('dev-1'), device('dev-1'), 'read before the update (the embedded store keeps it)');
          const revoked = device('dev-1', { revoked: true, brokerHash: '$7$101$bmV3$bmV3', updatedAt: 2_000, version: 2 });
          assert.equal(await store.updateDevice(revoked), true);
          assert.equal(await store.updateDevice(device('dev-1', { tags: ['stale'], version: 2 })), false);
          assert.deepEqual(await store.getDevice('dev-1'), revoked);
        }));

      it("deletes a device's registration only at the version read; a read after it finds none, and the id can be registered again", () =>
        withStore(async (store) => {
          await store.createDevice(device('dev-1'));
          await store.createDevice(device('dev-2'));
          assert.ok(await store.getDevice('dev-1'), 'read before (the embedded store keeps it)');
          assert.equal(await store.deleteDevice('dev-1', 2), false, 'changed since: nothing removed');
          assert.ok(await store.getDevice('dev-1'));
          assert.equal(await store.deleteDevice('dev-1', 1), true);
          assert.equal(await store.getDevice('dev-1'), undefined);
          assert.equal(await store.deleteDevice('dev-1', 1), false, 'already gone');
          assert.deepEqual((await store.listDevices({ limit: 10 })).items.map((d) => d.deviceId), ['dev-2']);
          assert.deepEqual(await store.countDevices({ limit: 10 }), { counts: { registered: 1, revoked: 0 } });
          await store.createDevice(device('dev-1', { tags: ['again'] }));
          assert.deepEqual((await store.getDevice('dev-1'))?.tags, ['again']);
        }));

      it("records issued device certificates, revokes all of a device's when it is deleted (not a re-registration's), lists and prunes them", () =>
        withStore(async (store) => {
          const now = 1_000_000_000_000;
          const cert = (serial: string, deviceId: string, notAfter: number) => ({ serial, deviceId, issuer: 'f'.repeat(64), issuerSubject: 'CN=Updraft device CA', issuedAt: now - 1000, notAfter });
          await store.createDevice(device('gone'));
          await store.createDevice(device('kept'));
          await store.recordDeviceCertificate(cert('0a', 'gone', now + 10_000));
          await store.recordDeviceCertificate(cert('0b', 'gone', now + 20_000));
          await store.recordDeviceCertificate(cert('0c', 'gone', now - 1)); // expired: revoked too, not listed
          await store.recordDeviceCertificate(cert('0d', 'kept', now + 10_000));
          await store.recordDeviceCertificate({ ...cert('0d', 'other', now + 99_000) }); // recorded already: left as it is
          assert.deepEqual(await store.listRevokedCertificates(now), [], 'nothing revoked before a deletion');
          assert.equal(await store.deleteDevice('gone', 1, now), true);
          const revoked = await store.listRevokedCertificates(now);
          assert.deepEqual(revoked.map((c) => [c.serial, c.deviceId, c.revokedAt, c.notAfter]), [['0a', 'gone', now, now + 10_000], ['0b', 'gone', now, now + 20_000]], "the deleted device's unexpired certificates, revoked at the deletion");
          assert.equal(revoked[0]!.issuer, 'f'.repeat(64), 'with their issuer');
          assert.equal(revoked[0]!.issuerSubject, 'CN=Updraft device CA', "and the issuer's subject");
          // the id registered again: its new certificate is not revoked, and a second deletion keeps the first one's time
          await store.createDevice(device('gone'));
          await store.recordDeviceCertificate(cert('0e', 'gone', now + 30_000));
          assert.deepEqual((await store.listRevokedCertificates(now)).map((c) => c.serial), ['0a', '0b'], "a re-registration's certificate is not revoked");
          assert.equal(await store.deleteDevice('gone', 1, now + 5), true);
          assert.deepEqual((await store.listRevokedCertificates(now)).map((c) => [c.serial, c.revokedAt]), [['0a', now], ['0b', now], ['0e', now + 5]], 'each revoked at its own deletion');
          assert.deepEqual((await store.listRevokedCertificates(now + 15_000)).map((c) => c.serial), ['0b', '0e'], 'expired ones are not listed');
          // issued while its device was being deleted: recorded revoked
          await store.recordDeviceCertificate(cert('0f', 'never-registered', now + 40_000));
          const late = (await store.listRevokedCertificates(now)).find((c) => c.serial === '0f');
          assert.ok(late?.revokedAt !== undefined, 'a certificate of a device no longer registered is recorded revoked');
          assert.equal(await store.pruneExpiredCertificates(now + 15_000, 10), 3, 'the expired rows go (0a, 0c, 0d), revoked or not');
          assert.equal(await store.pruneExpiredCertificates(now + 15_000, 10), 0, 'once');
          assert.deepEqual((await store.listRevokedCertificates(now)).map((c) => c.serial), ['0b', '0e', '0f']);
        }));

      it('revokes every recorded certificate of a deleted device, also one expiring within the lead of a clock ahead (deleted at a clock 2 h ahead, expiring in 1 h: QA 2026-12-07)', () =>
        withStore(async (store) => {
          const now = 1_000_000_000_000;
          const hour = 3_600_000;
          const cert = (serial: string, notAfter: number) => ({ serial, deviceId: 'ahead', issuer: 'f'.repeat(64), issuerSubject: 'CN=Updraft device CA', issuedAt: now - 1000, notAfter });
          await store.createDevice(device('ahead'));
          await store.recordDeviceCertificate(cert('3a', now + hour)); // in force for another hour
          await store.recordDeviceCertificate(cert('3b', now + 100 * hour));
          const before = await store.revocationStamp(now);
          // the instance deleting it is 2 h ahead: by its clock 3a has expired
          assert.equal(await store.deleteDevice('ahead', 1, now + 2 * hour), true, 'deleted');
          assert.deepEqual((await store.listRevokedCertificates(now)).map((c) => [c.serial, c.revokedAt]), [['3a', now + 2 * hour], ['3b', now + 2 * hour]], 'both certificates revoked, the one still in force for an hour too');
          assert.deepEqual((await store.listRevokedEntries(now)).map((e) => e.serial).sort(), ['3a', '3b'], 'both are CRL entries');
          assert.notEqual(await store.revocationStamp(now), before, 'the stamp changed');
        }));

      it('stamps the revoked certificates: a changed stamp for every change of the set listed (a revocation, an expiry, both at once), the same stamp otherwise; lists their entries across pages', () =>
        withStore(async (store) => {
          const now = 1_000_000_000_000;
          const cert = (serial: string, deviceId: string, notAfter: number) => ({ serial, deviceId, issuer: 'f'.repeat(64), issuerSubject: 'CN=Updraft device CA', issuedAt: now - 1000, notAfter });
          const empty = await store.revocationStamp(now);
          await store.createDevice(device('live'));
          await store.recordDeviceCertificate(cert('1a', 'live', now + 10_000));
          assert.equal(await store.revocationStamp(now), empty, 'a certificate of a registered device is not revoked: the same stamp');
          await store.recordDeviceCertificate(cert('1b', 'gone-1', now + 10_000)); // device not registered: recorded revoked
          const one = await store.revocationStamp(now);
          assert.notEqual(one, empty, 'a revocation changes the stamp');
          assert.equal(await store.revocationStamp(now), one, 'nothing changed: the same stamp');
          await store.recordDeviceCertificate(cert('1c', 'gone-2', now + 20_000));
          const two = await store.revocationStamp(now);
          assert.notEqual(two, one, 'a second revocation changes it');
          // 1b expires and 1d is revoked in the same interval: the count stays 2
          await store.recordDeviceCertificate(cert('1d', 'gone-3', now + 30_000));
          const swapped = await store.revocationStamp(now + 15_000);
          assert.deepEqual((await store.listRevokedEntries(now + 15_000)).map((e) => e.serial).sort(), ['1c', '1d'], 'listed: 1c and 1d, as many as before');
          assert.notEqual(swapped, two, 'one expired and one revoked between two asks: a changed stamp all the same');
          assert.equal(await store.pruneExpiredCertificates(now + 15_000, 10), 2, 'the expired rows (1a, 1b) pruned');
          assert.equal(await store.revocationStamp(now + 15_000), swapped, 'pruning expired rows leaves the stamp');
          assert.notEqual(await store.revocationStamp(now + 25_000), swapped, 'an expiry alone changes it');
          await store.recordDeviceCertificate(cert('1e', 'live', now + 50_000));
          assert.equal(await store.revocationStamp(now + 15_000), swapped, "a registered device's new certificate leaves it");
          assert.equal(await store.deleteDevice('live', 1, now + 16_000), true);
          assert.notEqual(await store.revocationStamp(now + 15_000), swapped, "a device's deletion (its certificate revoked) changes it");
          // entries: what a CRL needs, the same set as listRevokedCertificates, over more than a page
          const many = Array.from({ length: REVOKED_PAGE + 3 }, (_, i) => cert(`2${String(i).padStart(5, '0')}`, `gone-many-${i}`, now + 40_000 + (i % 7) * 1000));
          for (let i = 0; i < many.length; i += 500) await Promise.all(many.slice(i, i + 500).map((c) => store.recordDeviceCertificate(c)));
          const entries = await store.listRevokedEntries(now + 15_000);
          const full = await store.listRevokedCertificates(now + 15_000);
          assert.equal(entries.length, full.length, `every revoked certificate across pages: ${entries.length} of ${full.length}`);
          assert.equal(new Set(entries.map((e) => e.serial)).size, entries.length, 'none twice');
          const bySerial = new Map(full.map((c) => [c.serial, c]));
          assert.ok(
            entries.every((e) => { const c = bySerial.get(e.serial); return c !== undefined && c.issuer === e.issuer && c.notAfter === e.notAfter && c.revokedAt === e.revokedAt; }),
            'each entry as listRevokedCertificates has it (serial, issuer, notAfter, revokedAt)',
          );
        }));

      it("names a device's existing shadows, classic and named, not its deleted ones nor another device's", () =>
        withStore(async (store) => {
          assert.deepEqual(await store.listShadowNames('dev-1'), []);
          await store.putShadow(shadow('dev-1', 1, { reported: { a: 1 } }), 0);
          await store.putShadow({ ...shadow('dev-1', 1, { reported: { b: 1 } }), name: 'wifi' }, 0);
          await store.putShadow({ ...shadow('dev-1', 1, { reported: { c: 1 } }), name: 'gone' }, 0);
          await store.putShadow({ ...shadow('dev-1', 2, {}), name: 'gone', deleted: true }, 1);
          await store.putShadow({ ...shadow('dev-10', 1, { reported: { d: 1 } }), name: 'other' }, 0);
          assert.deepEqual(await store.listShadowNames('dev-1'), ['', 'wifi']);
          assert.deepEqual(await store.listShadowNames('dev-10'), ['other']);
        }));

      it("lists a device's shadow tombstones oldest deletion first, and removes one only while it is that tombstone", () =>
        withStore(async (store) => {
          const named = (name: string, version: number, deleted: boolean, timestamp: number) => ({ ...shadow('dev-1', version, {}, timestamp), name, deleted });
          await store.putShadow(named('late', 1, false, 100), 0);
          await store.putShadow(named('late', 2, true, 300), 1);
          await store.putShadow(named('early', 1, false, 100), 0);
          await store.putShadow(named('early', 2, true, 200), 1);
          await store.putShadow(named('live', 1, false, 100), 0);
          await store.putShadow({ ...named('x', 1, false, 100), deviceId: 'dev-10' }, 0);
          await store.putShadow({ ...named('x', 2, true, 100), deviceId: 'dev-10' }, 1);
          assert.deepEqual(await store.listShadowTombstones('dev-1'), [
            { name: 'early', version: 2, timestamp: 200 },
            { name: 'late', version: 2, timestamp: 300 },
          ]);
          assert.equal(await store.removeShadowTombstone('dev-1', 'early', 1), false, 'another version: kept');
          assert.equal(await store.removeShadowTombstone('dev-1', 'live', 1), false, 'no tombstone: kept');
          assert.equal((await store.getShadow('dev-1', 'live'))?.deleted, false);
          assert.equal(await store.removeShadowTombstone('dev-1', 'early', 2), true);
          assert.equal(await store.getShadow('dev-1', 'early'), undefined, 'the row is gone');
          assert.deepEqual((await store.listShadowTombstones('dev-1')).map((t) => t.name), ['late']);
          assert.deepEqual((await store.listShadowTombstones('dev-10')).map((t) => t.name), ['x']);
          // the name is new again: created from no row, at version 1
          assert.equal(await store.putShadow(named('early', 1, false, 400), 0), true);
        }));

      it("removes the shadow tombstones of devices deleted before a time, oldest deletion first, not of an id registered again nor a later deletion's", () =>
        withStore(async (store) => {
          const named = (deviceId: string, name: string, version: number, deleted: boolean) => ({ ...shadow(deviceId, version, deleted ? {} : { reported: { a: 1 } }), name, deleted });
          // three deleted devices, each with a classic and a named tombstone
          for (const id of ['old-1', 'old-2', 'back']) {
            await store.createDevice(device(id));
            await store.putShadow(named(id, '', 1, false), 0);
            await store.putShadow(named(id, '', 2, true), 1);
            await store.putShadow(named(id, 'wifi', 1, false), 0);
            await store.putShadow(named(id, 'wifi', 2, true), 1);
          }
          assert.equal(await store.deleteDevice('old-2', 1, 2_000), true);
          assert.equal(await store.deleteDevice('old-1', 1, 1_000), true);
          assert.equal(await store.deleteDevice('back', 1, 1_500), true);
          // registered again before its tombstones went: they stay, its versions go on
          await store.createDevice(device('back'));
          // deleted at 5,000 (after the cut), and one still registered with a tombstone of its own
          await store.createDevice(device('late'));
          await store.putShadow(named('late', 'x', 1, false), 0);
          await store.putShadow(named('late', 'x', 2, true), 1);
          assert.equal(await store.deleteDevice('late', 1, 5_000), true);
          await store.createDevice(device('kept'));
          await store.putShadow(named('kept', 'y', 1, false), 0);
          await store.putShadow(named('kept', 'y', 2, true), 1);

          assert.deepEqual(await store.expireDeletedDevices(3_000, 2), { devices: ['old-1', 'back'], tombstones: 2 }, 'the two oldest deletions; only old-1 unregistered');
          assert.equal(await store.getShadow('old-1', ''), undefined);
          assert.equal(await store.getShadow('old-1', 'wifi'), undefined);
          assert.deepEqual((await store.listShadowTombstones('back')).map((t) => t.name).sort(), ['', 'wifi'], 'registered again: kept');
          assert.deepEqual((await store.listShadowTombstones('old-2')).map((t) => t.name).sort(), ['', 'wifi'], 'past the limit: next time');

          assert.deepEqual(await store.expireDeletedDevices(3_000, 10), { devices: ['old-2'], tombstones: 2 });
          assert.deepEqual(await store.listShadowTombstones('old-2'), []);
          assert.deepEqual(await store.expireDeletedDevices(3_000, 10), { devices: [], tombstones: 0 }, 'each record goes once');
          assert.deepEqual((await store.listShadowTombstones('late')).map((t) => t.name), ['x'], 'deleted after the cut: kept');
          assert.deepEqual((await store.listShadowTombstones('kept')).map((t) => t.name), ['y'], 'never deleted: kept');
          // the id is new again: its shadows start from no row
          assert.equal(await store.putShadow(named('old-1', '', 1, false), 0), true);

          // deleted again later: the later deletion counts
          assert.equal(await store.deleteDevice('back', 1, 9_000), true);
          assert.deepEqual(await store.expireDeletedDevices(6_000, 10), { devices: ['late'], tombstones: 1 });
          assert.deepEqual((await store.listShadowTombstones('back')).map((t) => t.name).sort(), ['', 'wifi']);
          assert.deepEqual(await store.expireDeletedDevices(10_000, 10), { devices: ['back'], tombstones: 2 });
          assert.deepEqual(await store.listShadowTombstones('back'), []);
        }));

      it('lists devices by id, page by page', () =>
        withStore(async (store) => {
          for (const id of ['c', 'a', 'b']) await store.createDevice(device(id));
          const first = await store.listDevices({ limit: 2 });
          assert.deepEqual(first.items.map((d) => d.deviceId), ['a', 'b']);
          assert.equal(first.next, 'b');
          const second = await store.listDevices({ after: first.next!, limit: 2 });
          assert.deepEqual(second.items.map((d) => d.deviceId), ['c']);
          assert.equal(second.next, undefined);
        }));

      it('lists the revoked devices only, selected in the database, page by page', () =>
        withStore(async (store) => {
          for (const id of ['e', 'c', 'a', 'b', 'd', 'f']) await store.createDevice(device(id, { revoked: id === 'b' || id === 'd' || id === 'f' }));
          const first = await store.listDevices({ limit: 2, revokedOnly: true });
          assert.deepEqual(first.items.map((d) => d.deviceId), ['b', 'd'], 'the first page: revoked devices only');
          assert.ok(first.items.every((d) => d.revoked), 'each revoked');
          assert.equal(first.next, 'd');
          const second = await store.listDevices({ after: first.next!, limit: 2, revokedOnly: true });
          assert.deepEqual(second.items.map((d) => d.deviceId), ['f'], 'after the cursor');
          assert.equal(second.next, undefined, 'no page after the last revoked device');
          assert.deepEqual((await store.listDevices({ limit: 10 })).items.map((d) => d.deviceId), ['a', 'b', 'c', 'd', 'e', 'f'], 'without it: every device');
        }));

      it('counts registered and revoked devices page by page', () =>
        withStore(async (store) => {
          assert.deepEqual(await store.countDevices({ limit: 2 }), { counts: { registered: 0, revoked: 0 } });
          for (const id of ['e', 'c', 'a', 'b', 'd']) await store.createDevice(device(id, { revoked: id === 'b' || id === 'e' }));
          const pages = [];
          let after: string | undefined;
          do {
            const page = await store.countDevices({ limit: 2, ...(after ? { after } : {}) });
            pages.push(page.counts);
            after = page.next;
          } while (after);
          assert.deepEqual(pages, [{ registered: 2, revoked: 1 }, { registered: 2, revoked: 0 }, { registered: 1, revoked: 1 }]);
        }));
    });

    describe('settings', () => {
      it('keeps a setting shared by the instances: absent, written, replaced', () =>
        withStore(async (store) => {
          assert.equal(await store.getSetting('signing.certificate'), undefined);
          await store.putSetting('signing.certificate', '{"serial":1}');
          assert.equal(await store.getSetting('signing.certificate'), '{"serial":1}');
          await store.putSetting('signing.certificate', '{"serial":2}');
          assert.equal(await store.getSetting('signing.certificate'), '{"serial":2}');
          assert.equal(await store.getSetting('other'), undefined);
        }));

      it('adds a setting only where there is none, lists by prefix in key order, and removes one', () =>
        withStore(async (store) => {
          assert.equal(await store.addSetting('viewer-token:b', '{"n":1}'), true);
          assert.equal(await store.addSetting('viewer-token:b', '{"n":2}'), false, 'not over one already there');
          assert.equal(await store.getSetting('viewer-token:b'), '{"n":1}');
          assert.equal(await store.addSetting('viewer-token:a', '{"n":3}'), true);
          await store.putSetting('viewer-tokenz', 'x');
          await store.putSetting('other', 'y');
          assert.deepEqual(await store.listSettings('viewer-token:'), [
            { key: 'viewer-token:a', value: '{"n":3}' },
            { key: 'viewer-token:b', value: '{"n":1}' },
          ]);
          assert.equal(await store.deleteSetting('viewer-token:a'), true);
          assert.equal(await store.deleteSetting('viewer-token:a'), false);
          assert.deepEqual((await store.listSettings('viewer-token:')).map((s) => s.key), ['viewer-token:b']);
          assert.deepEqual(await store.listSettings('nothing:'), []);
        }));
    });

    describe('job logs', () => {
      it("keeps one log per job and device, replaced by the device's next, at most maxPerJob devices per job; lists them without their lines", () =>
        withStore(async (store) => {
          const log = (deviceId: string, jobId = 'job-1', agentJobId = jobId, lines = [`${deviceId} failed`, 'with "quotes" and ünïcode']) => ({ jobId, deviceId, agentJobId, receivedAt: 1_700_000_000_123, lines, dropped: 3 });
          assert.equal(await store.getJobLog('job-1', 'dev-b'), undefined);
          assert.equal(await store.putJobLog(log('dev-b'), 2), true);
          assert.deepEqual(await store.getJobLog('job-1', 'dev-b'), log('dev-b'));
          assert.equal(await store.putJobLog(log('dev-a'), 2), true);
          // the job is full: a third device's is not written, a device's own is replaced
          assert.equal(await store.putJobLog(log('dev-c'), 2), false);
          assert.equal(await store.getJobLog('job-1', 'dev-c'), undefined);
          assert.equal(await store.putJobLog(log('dev-b', 'job-1', 'job-1.2', ['second attempt']), 2), true);
          assert.deepEqual(await store.getJobLog('job-1', 'dev-b'), log('dev-b', 'job-1', 'job-1.2', ['second attempt']));
          // another job counts its own
          assert.equal(await store.putJobLog(log('dev-c', 'job-2'), 2), true);
          const first = await store.listJobLogs('job-1', { limit: 1 });
          assert.deepEqual(first, { items: [{ jobId: 'job-1', deviceId: 'dev-a', agentJobId: 'job-1', receivedAt: 1_700_000_000_123, dropped: 3, lineCount: 2 }], next: 'dev-a' });
          const rest = await store.listJobLogs('job-1', { after: first.next!, limit: 1 });
          assert.deepEqual(rest, { items: [{ jobId: 'job-1', deviceId: 'dev-b', agentJobId: 'job-1.2', receivedAt: 1_700_000_000_123, dropped: 3, lineCount: 1 }] });
          assert.deepEqual(await store.listJobLogs('job-3', { limit: 10 }), { items: [] });
          // a device's logs across jobs, newest first
          assert.equal(await store.putJobLog({ ...log('dev-c', 'job-3'), receivedAt: 1_700_000_009_000 }, 2), true);
          assert.deepEqual((await store.listDeviceJobLogs('dev-c', 10)).map((l) => [l.jobId, l.lineCount]), [['job-3', 2], ['job-2', 2]]);
          assert.deepEqual((await store.listDeviceJobLogs('dev-c', 1)).map((l) => l.jobId), ['job-3']);
          assert.deepEqual(await store.listDeviceJobLogs('dev-z', 10), []);
        }));
    });

    describe('artifacts', () => {
      it('stores artifacts, refuses a duplicate name@version with CONFLICT and lists newest first', () =>
        withStore(async (store) => {
          const a1 = artifact('fw', '1.0.0', 1_000);
          const a2 = { ...artifact('fw', '2.0.0', 3_000), signature: 'k1:c2lnbmF0dXJl' }; // signed and unsigned both round-trip
          // with what it may be installed on (protocol/compatibility.ts): round-trips too
          const b1 = { ...artifact('cam', '1.0.0', 2_000), compatibility: { deviceTypes: ['cam-v2'], requires: '>=0.9.0' } };
          for (const a of [a1, a2, b1]) await store.putArtifact(a);

          await assert.rejects(store.putArtifact({ ...a1, sha256: 'f'.repeat(64), createdAt: 9_000 }), isCode('CONFLICT'));
          assert.deepEqual(await store.getArtifact('fw', '1.0.0'), a1, 'the original survives');
          assert.deepEqual(await store.getArtifact('cam', '1.0.0'), b1);
          assert.equal(await store.getArtifact('fw', '3.0.0'), undefined);
          assert.equal(await store.getArtifact('1.0.0', 'fw'), undefined);
          assert.deepEqual(await store.listArtifacts({ limit: 100 }), { items: [a2, b1, a1] });
        }));

      it('accepts exactly one of two identical artifacts written in the same tick', () =>
        withStore(async (store) => {
          const first = artifact('fw', '1.0.0', 1_000);
          const second = { ...first, sha256: 'e'.repeat(64) };
          const [r1, r2] = await Promise.allSettled([store.putArtifact(first), store.putArtifact(second)]);
          assert.equal(r1.status, 'fulfilled');
          assert.equal(r2.status, 'rejected');
          assert.ok(isCode('CONFLICT')((r2 as PromiseRejectedResult).reason));
          assert.deepEqual(await store.listArtifacts({ limit: 100 }), { items: [first] });
        }));

      it('deletes an artifact no unfinished job installs, counts who shares its bytes, and deletes nothing else', () =>
        withStore(async (store) => {
          const old = artifact('fw', '1.0.0', 1_000);
          const twin = { ...artifact('fw-copy', '1.0.0', 2_000), sha256: old.sha256 }; // the same bytes under another name
          const used = artifact('fw', '2.0.0', 3_000);
          for (const a of [old, twin, used]) await store.putArtifact(a);
          // fw@1.0.0 by a finished job only (history stays); fw@2.0.0 by a running and a paused one
          await store.createJob({ ...job('done'), status: 'COMPLETED' }, []);
          await store.createJob({ ...job('running'), artifactVersion: '2.0.0', createdAt: 600 }, []);
          await store.createJob({ ...job('paused'), artifactVersion: '2.0.0', status: 'PAUSED', createdAt: 700 }, []);
          await store.createJob({ ...job('canceled'), artifactVersion: '2.0.0', status: 'CANCELED' }, []);

          assert.equal(await store.countArtifactsWithBlob(old.sha256), 2);
          assert.deepEqual(await store.deleteArtifact('fw', '2.0.0'), { activeJobs: ['running', 'paused'] });
          assert.deepEqual(await store.getArtifact('fw', '2.0.0'), used, 'kept while jobs may still send it');
          assert.deepEqual(await store.deleteArtifact('fw', '1.0.0'), { deleted: old, activeJobs: [] });
          assert.equal(await store.getArtifact('fw', '1.0.0'), undefined);
          assert.equal(await store.countArtifactsWithBlob(old.sha256), 1, 'fw-copy still names the bytes');
          assert.deepEqual(await store.deleteArtifact('fw', '1.0.0'), { activeJobs: [] }, 'already gone');
          assert.deepEqual(await store.listArtifacts({ limit: 100 }), { items: [used, twin] });
          assert.equal((await store.getJob('done'))?.artifactVersion, '1.0.0', "the finished job's record stays");
          // once its jobs are finished, it goes too
          for (const [id, status] of [['running', 'COMPLETED'], ['paused', 'CANCELED']] as const) {
            const j = (await store.getJob(id))!;
            assert.equal(await store.updateJob({ ...j, status, version: (j.version ?? 1) + 1 }), true);
          }
          assert.deepEqual(await store.deleteArtifact('fw', '2.0.0'), { deleted: used, activeJobs: [] });
          assert.equal(await store.countArtifactsWithBlob(used.sha256), 0);
        }));

      it('lists nothing when there are no artifacts', () =>
        withStore(async (store) => {
          assert.deepEqual(await store.listArtifacts({ limit: 100 }), { items: [] });
        }));

      it('pages artifacts newest first (the later insert first within a millisecond), by name when asked', () =>
        withStore(async (store) => {
          // fw@1.1.0 and cam@1.0.0 share a millisecond, the page boundary falls between them
          const all = [artifact('fw', '1.0.0', 1_000), artifact('fw', '1.1.0', 2_000), artifact('cam', '1.0.0', 2_000), artifact('fw', '2.0.0', 3_000), artifact('cam', '2.0.0', 4_000)];
          for (const a of all) await store.putArtifact(a);
          const newestFirst = [all[4], all[3], all[2], all[1], all[0]];
          const read = async (options: { name?: string; limit: number }) => {
            const pages: ArtifactRecord[][] = [];
            let after: string | undefined;
            do {
              const page = await store.listArtifacts({ ...options, ...(after !== undefined ? { after } : {}) });
              pages.push(page.items);
              after = page.next;
            } while (after !== undefined && pages.length < 10);
            return pages;
          };
          assert.deepEqual(await read({ limit: 2 }), [newestFirst.slice(0, 2), newestFirst.slice(2, 4), newestFirst.slice(4)]);
          assert.deepEqual(await read({ limit: 1 }), newestFirst.map((a) => [a]), 'the tie is split between pages, neither repeated nor skipped');
          assert.deepEqual(await store.listArtifacts({ limit: 5 }), { items: newestFirst }, 'a full last page has no next');
          assert.deepEqual(await read({ name: 'fw', limit: 2 }), [[all[3], all[1]], [all[0]]]);
          assert.deepEqual(await store.listArtifacts({ name: 'f', limit: 10 }), { items: [] }, 'the name is matched exactly');
          assert.deepEqual(await allArtifacts(store, 'cam'), [all[4], all[2]]);
          assert.deepEqual(await allArtifacts(store), newestFirst);
        }));

      it("pages from a position: a build added or deleted between two pages moves no other build out of the next one", () =>
        withStore(async (store) => {
          const [a, b, c, d] = [artifact('fw', '1.0.0', 1_000), artifact('fw', '2.0.0', 2_000), artifact('fw', '3.0.0', 3_000), artifact('fw', '4.0.0', 4_000)];
          for (const x of [a, b, c, d]) await store.putArtifact(x);
          const first = await store.listArtifacts({ limit: 2 });
          assert.deepEqual(first.items, [d, c]);
          assert.ok(first.next);
          await store.deleteArtifact('fw', '3.0.0'); // the last one of the first page
          await store.putArtifact(artifact('fw', '5.0.0', 5_000)); // newer: on the first page only
          assert.deepEqual(await store.listArtifacts({ limit: 2, after: first.next }), { items: [b, a] });
        }));

      it('refuses a cursor no page gave and a limit below 1 with BAD_REQUEST', () =>
        withStore(async (store) => {
          await store.putArtifact(artifact('fw', '1.0.0', 1_000));
          for (const after of ['fw@1.0.0', '1000', '1000:x', '1000:99999999999999999', ':1']) {
            await assert.rejects(store.listArtifacts({ limit: 10, after }), isCode('BAD_REQUEST'), after);
          }
          await assert.rejects(store.listArtifacts({ limit: 0 }), isCode('BAD_REQUEST'));
        }));
    });

    describe('jobs and executions', () => {
      it('creates a job with its executions', () =>
        withStore(async (store) => {
          const j = job('job-1', 'first rollout');
          const es = [execution('job-1', 'dev-1', 1_000), execution('job-1', 'dev-2', 1_000)];
          await store.createJob(j, es);
          assert.deepEqual(await store.getJob('job-1'), j);
          assert.deepEqual(await store.getExecution('job-1', 'dev-1'), es[0]);
          assert.deepEqual(await store.getExecution('job-1', 'dev-2'), es[1]);
          assert.equal(await store.getExecution('job-1', 'dev-3'), undefined);
          assert.equal(await store.getJob('job-2'), undefined);

          const bare = job('job-2');
          await store.createJob(bare, []);
          assert.deepEqual(await store.getJob('job-2'), bare, 'no description stays absent');
        }));

      it('reads many jobs and executions together, as getJob and getExecution read each', () =>
        withStore(async (store) => {
          const spec = { targets: { devices: ['dev-1'] } };
          const jobs = [{ ...job('job-1', 'first'), spec }, job('job-2'), job('job-3')];
          // more keys than one query takes (1,000 on PostgreSQL)
          const devices = Array.from({ length: 1_203 }, (_, i) => `dev-${i}`);
          await store.createJob(jobs[0]!, devices.map((d) => execution('job-1', d, 1_000)));
          await store.createJob(jobs[1]!, [execution('job-2', 'dev-1', 2_000)]);
          await store.createJob(jobs[2]!, []);
          const ids = ['job-3', 'job-404', 'job-1', 'job-3', 'job-2'];
          const read = await store.getJobs(ids);
          assert.deepEqual([...read.keys()].sort(), ['job-1', 'job-2', 'job-3'], 'each job once, none for an id without one');
          for (const id of ['job-1', 'job-2', 'job-3']) assert.deepEqual(read.get(id), await store.getJob(id));
          const heads = await store.getJobs(ids, { omitSpec: true });
          for (const id of ['job-1', 'job-2', 'job-3']) assert.deepEqual(heads.get(id), await store.getJob(id, { omitSpec: true }), 'without the spec');
          assert.equal(heads.get('job-1')?.spec, undefined);
          assert.deepEqual(await store.getJobs([]), new Map());
          const many = Array.from({ length: 2_500 }, (_, i) => `job-${(i % 5) + 1}`);
          assert.deepEqual([...(await store.getJobs(many)).keys()].sort(), ['job-1', 'job-2', 'job-3']);

          const keys = [...devices.map((deviceId) => ({ jobId: 'job-1', deviceId })).reverse(), { jobId: 'job-2', deviceId: 'dev-1' }, { jobId: 'job-2', deviceId: 'dev-2' }, { jobId: 'job-404', deviceId: 'dev-1' }, { jobId: 'job-1', deviceId: 'dev-7' }];
          const executions = await store.getExecutions(keys);
          assert.equal(executions.length, keys.length);
          for (const [n, k] of keys.entries()) assert.deepEqual(executions[n], await store.getExecution(k.jobId, k.deviceId), `${k.jobId}/${k.deviceId}, key ${n}`);
          assert.equal(executions[1_204], undefined);
          assert.equal(executions[1_205], undefined);
          assert.deepEqual(await store.getExecutions([]), []);
        }));

      it('refuses an existing job id with CONFLICT and writes none of its executions', () =>
        withStore(async (store) => {
          const j = job('job-1');
          await store.createJob(j, [execution('job-1', 'dev-1', 1_000)]);
          await assert.rejects(store.createJob({ ...job('job-1', 'again'), artifactVersion: '9.9.9' }, [execution('job-1', 'dev-9', 2_000)]), isCode('CONFLICT'));
          assert.deepEqual(await store.getJob('job-1'), j);
          assert.equal(await store.getExecution('job-1', 'dev-9'), undefined);
          assert.deepEqual((await store.listExecutions({ jobId: 'job-1' })).map((e) => e.deviceId), ['dev-1']);
        }));

      it('writes nothing of a job whose executions cannot all be written', () =>
        withStore(async (store) => {
          // the same device twice violates the (job, device) key after the job row went in
          const bad = [execution('job-1', 'dev-1', 1_000), execution('job-1', 'dev-2', 1_000), execution('job-1', 'dev-1', 1_000)];
          await assert.rejects(store.createJob(job('job-1'), bad), UpdraftError);
          assert.equal(await store.getJob('job-1'), undefined);
          assert.equal(await store.getExecution('job-1', 'dev-1'), undefined);
          assert.deepEqual(await store.listExecutions({ deviceId: 'dev-2' }), []);
        }));


      it('updates an execution only from the previous row version', () =>
        withStore(async (store) => {
          const queued = execution('job-1', 'dev-1', 1_000);
          await store.createJob(job('job-1'), [queued]);
          const running: ExecutionRecord = { ...queued, status: 'IN_PROGRESS', details: { phase: 'downloading', progress: 40 }, updatedAt: 2_000, version: 2 };
          assert.equal(await store.updateExecution(running), true);
          assert.deepEqual(await store.getExecution('job-1', 'dev-1'), running);

          const stale: ExecutionRecord = { ...queued, status: 'FAILED', updatedAt: 3_000, version: 2 };
          assert.equal(await store.updateExecution(stale), false, 'version 1 is gone');
          assert.equal(await store.updateExecution({ ...stale, version: 5 }), false, 'version 4 never existed');
          assert.deepEqual(await store.getExecution('job-1', 'dev-1'), running);

          const done: ExecutionRecord = { ...running, status: 'SUCCEEDED', details: { phase: 'done', version: '1.0.0' }, updatedAt: 4_000, version: 3 };
          assert.equal(await store.updateExecution(done), true);
          assert.deepEqual(await store.getExecution('job-1', 'dev-1'), done);
          assert.equal(await store.updateExecution({ ...done, deviceId: 'dev-404' }), false, 'no such execution');
          assert.equal(await store.getExecution('job-1', 'dev-404'), undefined);
        }));

      it('writes the fields an update says changed, from the previous row version only', () =>
        withStore(async (store) => {
          const queued = execution('job-1', 'dev-1', 1_000);
          await store.createJob(job('job-1'), [queued]);
          const sent: ExecutionRecord = { ...queued, dispatchedAt: 1_500, dueAt: 9_000, updatedAt: 1_500, version: 2 };
          assert.equal(await store.updateExecution(sent, new Set(['dispatchedAt', 'dueAt'])), true);
          assert.deepEqual(await store.getExecution('job-1', 'dev-1'), sent);
          assert.deepEqual((await store.listDueExecutions(9_000, 10)).map((e) => e.deviceId), ['dev-1']);

          const stale: ExecutionRecord = { ...queued, status: 'FAILED', updatedAt: 3_000, version: 2 };
          assert.equal(await store.updateExecution(stale, new Set(['status'])), false, 'version 1 is gone');

          const running: ExecutionRecord = { ...sent, status: 'IN_PROGRESS', details: { phase: 'DOWNLOADING' }, attempt: 2, wave: 1, updatedAt: 2_000, version: 3 };
          assert.equal(await store.updateExecution(running, new Set(['status', 'details', 'attempt', 'wave'])), true);
          assert.deepEqual(await store.getExecution('job-1', 'dev-1'), running);

          const { dueAt: _due, ...rest } = running;
          const done: ExecutionRecord = { ...rest, status: 'SUCCEEDED', details: { phase: 'SUCCESS' }, queuedAt: 1_100, updatedAt: 4_000, version: 4 };
          assert.equal(await store.updateExecution(done, new Set(['status', 'details', 'dueAt', 'queuedAt'])), true);
          assert.deepEqual(await store.getExecution('job-1', 'dev-1'), done);
          assert.deepEqual(await store.listDueExecutions(10_000, 10), [], 'nothing is due once dueAt is gone');
          assert.deepEqual(await store.countExecutions('job-1'), [{ wave: 1, status: 'SUCCEEDED', count: 1, dispatched: 1 }]);
        }));

      it('resolves concurrent execution updates of one tick in call order', () =>
        withStore(async (store) => {
          const queued = execution('job-1', 'dev-1', 1_000);
          await store.createJob(job('job-1'), [queued]);
          const a: ExecutionRecord = { ...queued, status: 'IN_PROGRESS', updatedAt: 2_000, version: 2 };
          const b: ExecutionRecord = { ...queued, status: 'REJECTED', updatedAt: 2_000, version: 2 };
          const c: ExecutionRecord = { ...a, status: 'SUCCEEDED', updatedAt: 3_000, version: 3 };
          assert.deepEqual(await Promise.all([store.updateExecution(a), store.updateExecution(b), store.updateExecution(c)]), [true, false, true]);
          assert.deepEqual(await store.getExecution('job-1', 'dev-1'), c);
        }));

      it('answers many execution updates of one tick, interleaved with shadow writes, each by its own version', () =>
        withStore(async (store) => {
          const queued = Array.from({ length: 40 }, (_, i) => execution('job-1', `dev-${String(i).padStart(2, '0')}`, 1_000));
          await store.createJob(job('job-1'), queued);
          const next = (e: ExecutionRecord, i: number): ExecutionRecord =>
            i % 2 === 0
              ? { ...e, status: 'IN_PROGRESS', details: { phase: 'downloading', progress: i }, updatedAt: 2_000, version: 2, dispatchedAt: 1_500, dueAt: 9_000 }
              : { ...e, status: 'SUCCEEDED', updatedAt: 2_000, version: i % 3 === 0 ? 5 : 2 }; // version 5: a stale writer
          const results = await Promise.all(queued.flatMap((e, i) => [store.updateExecution(next(e, i)), store.putShadow(shadow(e.deviceId, 1, { reported: { i } }), 0)]));
          assert.deepEqual(results, queued.flatMap((_, i) => [i % 2 === 0 || i % 3 !== 0, true]));
          for (const [i, e] of queued.entries()) {
            const wrote = i % 2 === 0 || i % 3 !== 0;
            assert.deepEqual(await store.getExecution('job-1', e.deviceId), wrote ? next(e, i) : e, e.deviceId);
            assert.deepEqual(await store.getShadow(e.deviceId, ''), shadow(e.deviceId, 1, { reported: { i } }));
          }
        }));

      it('creates a job and updates its executions in the same tick, in call order', () =>
        withStore(async (store) => {
          const queued = execution('job-1', 'dev-1', 1_000);
          const running: ExecutionRecord = { ...queued, status: 'IN_PROGRESS', updatedAt: 2_000, version: 2 };
          const [, updated] = await Promise.all([store.createJob(job('job-1'), [queued]), store.updateExecution(running), store.updateJob({ ...job('job-1'), status: 'COMPLETED', version: 2 })]);
          assert.equal(updated, true);
          assert.deepEqual(await store.getExecution('job-1', 'dev-1'), running);
          assert.equal((await store.getJob('job-1'))?.status, 'COMPLETED');
        }));

      it('lists executions by job, by device (newest first) and by both', () =>
        withStore(async (store) => {
          await store.createJob(job('job-a'), [execution('job-a', 'dev-2', 1_000), execution('job-a', 'dev-1', 1_000), execution('job-a', 'dev-3', 1_000)]);
          await store.createJob(job('job-c'), [execution('job-c', 'dev-1', 3_000)]);
          await store.createJob(job('job-b'), [execution('job-b', 'dev-1', 2_000), execution('job-b', 'dev-2', 2_000)]);

          const byJob = await store.listExecutions({ jobId: 'job-a' });
          assert.deepEqual(sortBy(byJob, (e) => e.deviceId), [execution('job-a', 'dev-1', 1_000), execution('job-a', 'dev-2', 1_000), execution('job-a', 'dev-3', 1_000)]);

          const byDevice = await store.listExecutions({ deviceId: 'dev-1' });
          assert.deepEqual(byDevice, [execution('job-c', 'dev-1', 3_000), execution('job-b', 'dev-1', 2_000), execution('job-a', 'dev-1', 1_000)]);

          assert.deepEqual(await store.listExecutions({ jobId: 'job-b', deviceId: 'dev-2' }), [execution('job-b', 'dev-2', 2_000)]);
          assert.deepEqual(await store.listExecutions({ jobId: 'job-c', deviceId: 'dev-2' }), []);
          assert.deepEqual(await store.listExecutions({ jobId: 'job-404' }), []);
          assert.deepEqual(await store.listExecutions({ deviceId: 'dev-404' }), []);
        }));

      it("pages a device's executions newest first, jobs queued in the same millisecond by job id", () =>
        withStore(async (store) => {
          for (const [jobId, at] of [['job-a', 1_000], ['job-b', 2_000], ['job-c', 2_000], ['job-d', 3_000], ['job-e', 500]] as const) {
            await store.createJob(job(jobId), [execution(jobId, 'dev-1', at), execution(jobId, 'dev-2', at)]);
          }
          const ids: string[] = [];
          let after: string | undefined;
          let pages = 0;
          do {
            const page = await store.listDeviceExecutions('dev-1', { limit: 2, ...(after ? { after } : {}) });
            assert.ok(page.items.length <= 2);
            for (const e of page.items) assert.equal(e.deviceId, 'dev-1');
            ids.push(...page.items.map((e) => e.jobId));
            after = page.next;
            pages++;
          } while (after !== undefined);
          assert.deepEqual(ids, ['job-d', 'job-c', 'job-b', 'job-a', 'job-e']);
          assert.equal(pages, 3);
          assert.deepEqual(await store.listDeviceExecutions('dev-1', { limit: 5 }), { items: ['job-d', 'job-c', 'job-b', 'job-a', 'job-e'].map((j) => execution(j, 'dev-1', { 'job-a': 1_000, 'job-b': 2_000, 'job-c': 2_000, 'job-d': 3_000, 'job-e': 500 }[j]!)) }, 'no next when nothing is left');
          assert.deepEqual(await store.listDeviceExecutions('dev-404', { limit: 5 }), { items: [] });
          await assert.rejects(store.listDeviceExecutions('dev-1', { limit: 2, after: 'nonsense' }), isCode('BAD_REQUEST'));
          await assert.rejects(store.listDeviceExecutions('dev-1', { limit: 0 }), isCode('BAD_REQUEST'));
          // its logs of some jobs only
          for (const jobId of ['job-a', 'job-c', 'job-d']) await store.putJobLog({ jobId, deviceId: 'dev-1', agentJobId: jobId, receivedAt: 1_700_000_000_000, lines: ['x'], dropped: 0 }, 10);
          assert.deepEqual((await store.listDeviceJobLogs('dev-1', 10, ['job-c', 'job-a', 'job-b'])).map((l) => l.jobId).sort(), ['job-a', 'job-c']);
          assert.deepEqual(await store.listDeviceJobLogs('dev-1', 10, []), []);
          assert.deepEqual(await store.listDeviceJobLogs('dev-2', 10, ['job-a']), []);
        }));

      it("leaves out of a device's executions, and of its unsent work, those of a job that does not exist (one being created, or whose creation a crash cut)", () =>
        withStore(async (store, opened) => {
          await store.createJob(job('job-a'), [execution('job-a', 'dev-1', 1_000)]);
          await store.createJob(job('job-b'), [execution('job-b', 'dev-1', 3_000)]);
          // what a job created in pieces has written before its row (job-creation.ts): its rows
          // and their counts, without the job's row (addExecutions adds nothing to such a job)
          await store.createJob(job('ghost-1'), [execution('ghost-1', 'dev-1', 4_000)]);
          await store.createJob(job('ghost-2'), [execution('ghost-2', 'dev-1', 2_000), execution('ghost-2', 'dev-2', 2_000)]);
          await opened.exec("DELETE FROM jobs WHERE job_id IN ('ghost-1', 'ghost-2')");
          assert.deepEqual(await store.listDeviceExecutions('dev-1', { limit: 10 }), { items: [execution('job-b', 'dev-1', 3_000), execution('job-a', 'dev-1', 1_000)] });
          // pages are of the jobs that exist: a full page of one, then the last
          const first = await store.listDeviceExecutions('dev-1', { limit: 1 });
          assert.deepEqual(first.items.map((e) => e.jobId), ['job-b']);
          assert.ok(first.next !== undefined);
          assert.deepEqual(await store.listDeviceExecutions('dev-1', { limit: 1, after: first.next }), { items: [execution('job-a', 'dev-1', 1_000)] });
          assert.deepEqual(await store.listDeviceExecutions('dev-2', { limit: 10 }), { items: [] });
          assert.deepEqual((await store.listUndispatchedOfDevice('dev-1')).map((e) => e.jobId).sort(), ['job-a', 'job-b']);
          assert.deepEqual(await store.listUndispatchedOfDevice('dev-2'), []);
          // its job written: its executions are the device's
          await store.createJob(job('ghost-2'), []);
          assert.deepEqual((await store.listDeviceExecutions('dev-2', { limit: 10 })).items, [execution('ghost-2', 'dev-2', 2_000)]);
          assert.deepEqual((await store.listUndispatchedOfDevice('dev-2')).map((e) => e.jobId), ['ghost-2']);
        }));
    });

    describe('rollouts: jobs, executions, groups', () => {
      it('updates a job\'s status and progress only from the previous row version, never its spec', () =>
        withStore(async (store) => {
          const j = job('job-1');
          await store.createJob(j, []);
          const v2 = { ...j, status: 'PAUSED' as const, progress: { wave: 1 }, updatedAt: 900, version: 2 };
          assert.equal(await store.updateJob(v2), true, 'a job created without a version is at version 1');
          assert.deepEqual(await store.getJob('job-1'), v2);
          assert.equal(await store.updateJob({ ...v2, status: 'ABORTED' }), false, 'version 1 is gone');
          const v3 = { ...v2, status: 'COMPLETED' as const, progress: { wave: 2 }, version: 3 };
          assert.equal(await store.updateJob(v3), true);
          assert.deepEqual(await store.getJob('job-1'), v3);
          assert.equal(await store.updateJob({ ...v3, jobId: 'job-404', version: 1 }), false, 'no such job');
          const withSpec: JobRecord = { ...job('job-2'), spec: { a: [1] }, progress: {}, updatedAt: 1, version: 1 };
          await store.createJob(withSpec, []);
          assert.deepEqual(await store.getJob('job-2'), withSpec);
          // the spec is fixed at creation: an update that carries another one, or none, leaves it
          assert.equal(await store.updateJob({ ...withSpec, spec: { b: 2 }, status: 'PAUSED', version: 2 }), true);
          const { spec: _omitted, ...noSpec } = withSpec;
          assert.equal(await store.updateJob({ ...noSpec, status: 'IN_PROGRESS', version: 3 }), true);
          assert.deepEqual(await store.getJob('job-2'), { ...withSpec, status: 'IN_PROGRESS', version: 3 });
          assert.equal(await store.updateJob({ ...v3, spec: { c: 3 }, version: 4 }), true);
          assert.equal((await store.getJob('job-1'))?.spec, undefined, 'a job created without a spec keeps none');
        }));

      it('lists jobs newest first with a cursor and a status filter', () =>
        withStore(async (store) => {
          for (const [id, at, status] of [['a', 1, 'COMPLETED'], ['b', 2, 'IN_PROGRESS'], ['c', 2, 'PAUSED'], ['d', 3, 'IN_PROGRESS']] as const) {
            await store.createJob({ ...job(id), createdAt: at, status }, []);
          }
          const first = await store.listJobs({ limit: 2 });
          assert.deepEqual(first.items.map((j) => j.jobId), ['d', 'c']);
          assert.ok(first.next);
          const second = await store.listJobs({ limit: 2, after: first.next! });
          assert.deepEqual(second.items.map((j) => j.jobId), ['b', 'a']);
          assert.equal(second.next, undefined);
          const active = await store.listJobs({ limit: 10, status: ['IN_PROGRESS', 'PAUSED'] });
          assert.deepEqual(active.items.map((j) => j.jobId), ['d', 'c', 'b']);
        }));

      it('lists and reads jobs without their specs when asked, and with them otherwise', () =>
        withStore(async (store) => {
          const a: JobRecord = { ...job('a'), spec: { targets: { devices: ['dev-1', 'dev-2'] } }, progress: { wave: 0 }, updatedAt: 5, version: 1 };
          await store.createJob(a, []);
          assert.deepEqual((await store.listJobs({ limit: 10 })).items, [a]);
          const { spec: _omitted, ...head } = a;
          assert.deepEqual((await store.listJobs({ limit: 10, omitSpec: true })).items, [head]);
          assert.deepEqual((await store.listJobs({ limit: 10, omitSpec: true, status: ['IN_PROGRESS'] })).items, [head]);
          assert.deepEqual((await store.listJobs({ limit: 10, omitSpec: true, status: ['PAUSED'] })).items, []);
          assert.deepEqual(await store.getJob('a'), a);
          assert.deepEqual(await store.getJob('a', { omitSpec: true }), head);
          assert.equal(await store.getJob('missing', { omitSpec: true }), undefined);
        }));

      it('adds executions skipping existing ones, and round-trips wave, attempt, dispatch and due times', () =>
        withStore(async (store) => {
          await store.createJob(job('job-1'), [execution('job-1', 'dev-1', 1_000)]);
          const e2: ExecutionRecord = { ...execution('job-1', 'dev-2', 2_000), wave: 2, attempt: 3, dispatchedAt: 2_100, dueAt: 9_000 };
          assert.equal(await store.addExecutions([{ ...execution('job-1', 'dev-1', 5_000), wave: 4 }, e2]), 1);
          assert.deepEqual(await store.getExecution('job-1', 'dev-1'), execution('job-1', 'dev-1', 1_000), 'the existing one is untouched');
          assert.deepEqual(await store.getExecution('job-1', 'dev-2'), e2);
          const moved: ExecutionRecord = { ...e2, wave: 1, attempt: 4, version: 2, status: 'IN_PROGRESS' };
          delete moved.dispatchedAt;
          delete moved.dueAt;
          assert.equal(await store.updateExecution(moved), true);
          assert.deepEqual(await store.getExecution('job-1', 'dev-2'), moved);
          assert.equal(await store.addExecutions([]), 0);
          // none to a job that does not exist (deleted as a continuous job's scan was adding to it)
          assert.equal(await store.addExecutions([execution('job-404', 'dev-1', 1_000), { ...execution('job-1', 'dev-3', 1_000), wave: 1 }, execution('job-404', 'dev-2', 1_000)]), 1);
          assert.deepEqual(await store.listExecutions({ jobId: 'job-404' }), []);
          assert.deepEqual(await store.countExecutions('job-404'), []);
          assert.deepEqual(await store.getExecution('job-1', 'dev-3'), { ...execution('job-1', 'dev-3', 1_000), wave: 1 });
        }));

      it('pages through a job\'s executions by device id, optionally by state', () =>
        withStore(async (store) => {
          const es = ['d3', 'd1', 'd2', 'd4'].map((d) => execution('job-1', d, 1_000));
          await store.createJob(job('job-1'), es);
          await store.createJob(job('job-2'), [execution('job-2', 'd0', 1_000)]);
          await store.updateExecution({ ...execution('job-1', 'd2', 1_000), status: 'FAILED', version: 2 });
          const p1 = await store.listJobExecutions('job-1', { limit: 3 });
          assert.deepEqual(p1.items.map((e) => e.deviceId), ['d1', 'd2', 'd3']);
          assert.equal(p1.next, 'd3');
          const p2 = await store.listJobExecutions('job-1', { limit: 3, after: p1.next! });
          assert.deepEqual(p2, { items: [execution('job-1', 'd4', 1_000)] });
          const failed = await store.listJobExecutions('job-1', { limit: 10, status: ['FAILED', 'TIMED_OUT'] });
          assert.deepEqual(failed.items.map((e) => e.deviceId), ['d2']);
        }));

      it('lists a job\'s failed executions below an attempt, in waves up to one, page by page: not those at the limit', () =>
        withStore(async (store) => {
          const failed = (deviceId: string, attempt: number, wave = 0): ExecutionRecord => ({ ...execution('job-1', deviceId, 1_000), status: 'FAILED', attempt, ...(wave > 0 ? { wave } : {}) });
          await store.createJob(job('job-1'), [
            failed('a', 1),
            failed('b', 3), // at a limit of 2 retries: owed nothing
            failed('c', 2),
            failed('d', 1, 1), // a later wave
            { ...execution('job-1', 'e', 1_000), attempt: 1 }, // queued, not failed
            failed('f', 2),
            failed('g', 5),
          ]);
          await store.createJob(job('job-2'), [{ ...execution('job-2', 'a0', 1_000), status: 'FAILED' }]);
          const p1 = await store.listFailedBelowAttempt('job-1', { attemptBelow: 3, maxWave: 0, limit: 2 });
          assert.deepEqual(p1.items.map((e) => [e.deviceId, e.attempt ?? 1]), [['a', 1], ['c', 2]]);
          assert.equal(p1.next, 'c');
          const p2 = await store.listFailedBelowAttempt('job-1', { attemptBelow: 3, maxWave: 0, limit: 2, after: p1.next! });
          assert.deepEqual(p2, { items: [failed('f', 2)] });
          assert.deepEqual((await store.listFailedBelowAttempt('job-1', { attemptBelow: 3, maxWave: 1, limit: 10 })).items.map((e) => e.deviceId), ['a', 'c', 'd', 'f']);
          assert.deepEqual((await store.listFailedBelowAttempt('job-1', { attemptBelow: 1, maxWave: 1, limit: 10 })).items, [], 'no retries: nothing owed');
          assert.deepEqual((await store.listFailedBelowAttempt('job-404', { attemptBelow: 3, maxWave: 1, limit: 10 })).items, []);
        }));

      it('lists the newest failures of every job that exists, by when each became a failure, newest first, bounded; a late success or a retry takes one out, a later write keeps its place', () =>
        withStore(async (store, opened) => {
          const at = (jobId: string, deviceId: string, status: ExecutionRecord['status'], updatedAt: number): ExecutionRecord => ({ ...execution(jobId, deviceId, 1_000), status, updatedAt });
          // an older job with many failures, the latest of them on the devices that sort last
          await store.createJob(job('job-old'), Array.from({ length: 25 }, (_, i) => at('job-old', `d-${String(i).padStart(2, '0')}`, 'FAILED', 2_000 + i)));
          await store.createJob(job('job-new'), [
            at('job-new', 'x', 'TIMED_OUT', 9_000),
            at('job-new', 'y', 'REJECTED', 8_000),
            at('job-new', 'z', 'SUCCEEDED', 9_500), // no failure
            at('job-new', 'w', 'IN_PROGRESS', 9_600),
            at('job-new', 'v', 'CANCELED', 9_700),
            { ...at('job-new', 'u', 'TIMED_OUT', 9_800), details: { lateSuccess: { at: 9_800 } } }, // its success came late: no failure
            at('job-new', 'd-24', 'FAILED', 2_024), // the same time as job-old's: job id, then device id, descending
          ]);
          await store.createJob(job('ghost'), [at('ghost', 'g', 'FAILED', 10_000)]);
          await opened.exec("DELETE FROM jobs WHERE job_id = 'ghost'");
          const key = (e: ExecutionRecord) => `${e.jobId}/${e.deviceId}@${e.updatedAt}`;
          assert.deepEqual(
            (await store.listRecentFailures(5)).map(key),
            ['job-new/x@9000', 'job-new/y@8000', 'job-old/d-24@2024', 'job-new/d-24@2024', 'job-old/d-23@2023'],
            'failures only, newest first, of jobs that exist; not the first by device id',
          );
          assert.deepEqual(await store.listRecentFailures(1), [{ ...at('job-new', 'x', 'TIMED_OUT', 9_000), failedAt: 9_000 }], 'the records as stored, with when each failed');
          const every = await store.listRecentFailures(100);
          assert.equal(every.length, 28, 'every failure when the limit allows');
          assert.deepEqual((await store.listRecentFailures(2, every[2])).map(key), ['job-new/d-24@2024', 'job-old/d-23@2023'], 'a further page: after the cursor, the same failed_at on the next job id');
          assert.deepEqual((await store.listRecentFailures(5, every[25])).map(key), ['job-old/d-01@2001', 'job-old/d-00@2000'], 'the last page, short');
          assert.deepEqual(await store.listRecentFailures(5, every[27]), [], 'nothing after the last');
          assert.deepEqual(await store.listRecentFailures(5, { failedAt: 1.5, jobId: 'job-old', deviceId: 'd-01' }).catch((err: unknown) => (err as UpdraftError).code), 'BAD_REQUEST', 'a cursor whose failedAt is no integer refused');
          // a failed execution written again later (a report after the failure) keeps its place: it failed at 2,000
          const d01 = (await store.getExecution('job-old', 'd-01'))!;
          assert.equal(await store.updateExecution({ ...d01, details: { error: 'still broken' }, updatedAt: 11_000, version: 2 }, new Set(['details'])), true);
          // a late success after a timeout leaves the list (the execution stays TIMED_OUT)
          const x = (await store.getExecution('job-new', 'x'))!;
          assert.equal(await store.updateExecution({ ...x, details: { lateSuccess: { at: 11_500 } }, updatedAt: 11_500, version: 2 }, new Set(['details'])), true);
          // and one no longer failed (a retry queued it) leaves it too
          const y = (await store.getExecution('job-new', 'y'))!;
          assert.equal(await store.updateExecution({ ...y, status: 'QUEUED', updatedAt: 12_000, version: 2 }, new Set(['status'])), true);
          assert.deepEqual((await store.listRecentFailures(3)).map(key), ['job-old/d-24@2024', 'job-new/d-24@2024', 'job-old/d-23@2023'], 'a late success and a retry out; a report on a failure does not move it up');
          const all = (await store.listRecentFailures(100)).map(key);
          assert.equal(all.length, 26, `two fewer: ${all.join(' ')}`);
          assert.equal(all[24], 'job-old/d-01@11000', `d-01 where it failed (2,001), written since: ${all.join(' ')}`);
          assert.equal((await store.listRecentFailures(1, { failedAt: 2_002, jobId: '', deviceId: '' }))[0]?.failedAt, 2_001, "d-01's failedAt: when it failed, not its last change (11,000)");
          // the retry fails again: a failure anew, the newest; written whole (no `changed`) as well
          const y2 = (await store.getExecution('job-new', 'y'))!;
          assert.equal(await store.updateExecution({ ...y2, status: 'FAILED', attempt: 2, updatedAt: 13_000, version: 3 }), true);
          assert.deepEqual((await store.listRecentFailures(1)).map(key), ['job-new/y@13000'], 'failed again after the retry: the newest failure');
          assert.deepEqual(await store.listRecentFailures(0).catch((err: unknown) => (err as UpdraftError).code), 'BAD_REQUEST', 'a limit below 1 refused');
        }));

      // until 2026-12-07 the next page was an OFFSET: a failure that left the list between two
      // reads (a retry, a late success) moved every later row up one, and the row first on the
      // next page was never read (the overview missed that device until its next refresh)
      it('pages the newest failures by a cursor: a failure leaving the list between two pages skips no row, the cursor\'s own row leaving too', () =>
        withStore(async (store) => {
          const failed = (deviceId: string, at: number): ExecutionRecord => ({ ...execution('kp', deviceId, 1_000), status: 'FAILED', updatedAt: at });
          // two failures at 4,000: the first page ends between them (device id descending)
          await store.createJob(job('kp'), [failed('k-6', 6_000), failed('k-5', 5_000), failed('k-4b', 4_000), failed('k-4a', 4_000), failed('k-3', 3_000), failed('k-2', 2_000), failed('k-1', 1_000)]);
          const page1 = await store.listRecentFailures(3);
          assert.deepEqual(page1.map((e) => `${e.deviceId}@${e.failedAt}`), ['k-6@6000', 'k-5@5000', 'k-4b@4000'], 'the first page');
          // k-5 is retried (queued again) and k-4b, the cursor's row, succeeds late: both leave the list
          const k5 = (await store.getExecution('kp', 'k-5'))!;
          assert.equal(await store.updateExecution({ ...k5, status: 'QUEUED', attempt: 2, updatedAt: 7_000, version: 2 }, new Set(['status', 'attempt'])), true, 'the retry written');
          const k4b = (await store.getExecution('kp', 'k-4b'))!;
          assert.equal(await store.updateExecution({ ...k4b, details: { lateSuccess: { at: 7_100 } }, updatedAt: 7_100, version: 2 }, new Set(['details'])), true, 'the late success written');
          assert.deepEqual((await store.listRecentFailures(10)).map((e) => e.deviceId), ['k-6', 'k-4a', 'k-3', 'k-2', 'k-1'], 'k-5 and k-4b left the list');
          const page2 = await store.listRecentFailures(3, page1.at(-1));
          // by offset 3: k-2, k-1 (k-4a and k-3 moved up onto the first page, already read)
          assert.deepEqual(page2.map((e) => e.deviceId), ['k-4a', 'k-3', 'k-2'], 'the next page from after the last row read: k-4a (same failed_at as the cursor), first on it before the change, is read');
          assert.deepEqual((await store.listRecentFailures(3, page2.at(-1))).map((e) => e.deviceId), ['k-1'], 'then the last');
        }));

      it("lists a few of each device's newest executions with an outcome, read together, of jobs that exist; those without one skipped", () =>
        withStore(async (store, opened) => {
          const e = (jobId: string, deviceId: string, queuedAt: number, status: ExecutionRecord['status'] = 'SUCCEEDED'): ExecutionRecord => ({ ...execution(jobId, deviceId, queuedAt), status });
          for (let i = 0; i < 4; i++) await store.createJob(job(`lx-${i}`), [e(`lx-${i}`, 'p', 100 + i, i === 1 ? 'TIMED_OUT' : i === 2 ? 'FAILED' : 'SUCCEEDED'), ...(i < 2 ? [e(`lx-${i}`, 'q', 200 - i, i === 1 ? 'REJECTED' : 'SUCCEEDED')] : [])]);
          // newer than all of p's: no outcome (yet, or ever)
          const none = ['QUEUED', 'IN_PROGRESS', 'CANCELED', 'REMOVED', 'CANCELED', 'QUEUED', 'CANCELED'] as const;
          for (const [i, status] of none.entries()) await store.createJob(job(`lx-none-${i}`), [e(`lx-none-${i}`, 'p', 300 + i, status)]);
          await store.createJob(job('lx-only-canceled'), [e('lx-only-canceled', 'r', 100, 'CANCELED')]);
          await store.createJob(job('lx-gone'), [e('lx-gone', 'p', 500)]);
          await opened.exec("DELETE FROM jobs WHERE job_id = 'lx-gone'");
          const got = await store.listLatestOutcomesOfDevices(['p', 'q', 'r', 'nobody', 'p'], 3);
          assert.deepEqual([...got.keys()].sort(), ['p', 'q'], 'the devices that have executions with an outcome');
          assert.deepEqual(got.get('p')!.map((x) => x.jobId), ['lx-3', 'lx-2', 'lx-1'], "p's newest three with an outcome by when queued, behind seven newer without one, of jobs that exist");
          assert.deepEqual(got.get('q')!.map((x) => x.jobId), ['lx-0', 'lx-1'], "q's, newest first");
          assert.deepEqual(got.get('q')![0], e('lx-0', 'q', 200), 'the records as stored');
          assert.deepEqual(await store.listLatestOutcomesOfDevices(['p'], 0).catch((err: unknown) => (err as UpdraftError).code), 'BAD_REQUEST', 'a count below 1 refused');
        }));

      // the review of e593c60: the overview orders a device's outcomes by when each came, and a
      // failure's is its failed_at, which a report since does not move (its updatedAt it does)
      it("gives each newest outcome that is a failure standing its failedAt (when it failed, not its last change); a success and a late one none", () =>
        withStore(async (store) => {
          const e = (jobId: string, status: ExecutionRecord['status'], at: number): ExecutionRecord => ({ ...execution(jobId, 'fa', at - 10), status, updatedAt: at });
          await store.createJob(job('fa-failed'), [e('fa-failed', 'FAILED', 1_100)]);
          await store.createJob(job('fa-ok'), [e('fa-ok', 'SUCCEEDED', 1_200)]);
          await store.createJob(job('fa-late'), [e('fa-late', 'TIMED_OUT', 1_300)]);
          await store.createJob(job('fa-rejected'), [e('fa-rejected', 'REJECTED', 1_400)]);
          const failed = (await store.getExecution('fa-failed', 'fa'))!;
          assert.equal(await store.updateExecution({ ...failed, details: { error: 'still broken' }, updatedAt: 5_000, version: 2 }, new Set(['details'])), true, 'a report on the failure written');
          const late = (await store.getExecution('fa-late', 'fa'))!;
          assert.equal(await store.updateExecution({ ...late, details: { lateSuccess: { at: 1_350 } }, updatedAt: 1_350, version: 2 }, new Set(['details'])), true, 'the late success written');
          const got = (await store.listLatestOutcomesOfDevices(['fa'], 5)).get('fa') ?? [];
          assert.deepEqual(
            got.map((x) => [x.jobId, x.updatedAt, x.failedAt]),
            [['fa-rejected', 1_400, 1_400], ['fa-late', 1_350, undefined], ['fa-ok', 1_200, undefined], ['fa-failed', 5_000, 1_100]],
            "newest first by when queued; the standing failures' failedAt (fa-failed: 1,100, its report at 5,000 moved updatedAt only), none on the success or the late one",
          );
          assert.ok(!('failedAt' in got[2]!), 'a success carries no failedAt key (the record as stored)');
        }));

      it('finds undispatched queued work by wave, and due executions by time', () =>
        withStore(async (store) => {
          const es: ExecutionRecord[] = [
            { ...execution('job-1', 'a', 1), wave: 1 },
            { ...execution('job-1', 'b', 1) },
            { ...execution('job-1', 'c', 1), wave: 2 },
            { ...execution('job-1', 'd', 1), dispatchedAt: 5, dueAt: 50 },
            { ...execution('job-1', 'e', 1), status: 'IN_PROGRESS', dispatchedAt: 5, dueAt: 20 },
            { ...execution('job-1', 'f', 1), status: 'CANCELED' },
          ];
          await store.createJob(job('job-1'), es);
          await store.createJob(job('job-2'), [{ ...execution('job-2', 'z', 1), dueAt: 30 }]);
          assert.deepEqual((await store.nextUndispatched('job-1', 0, 10)).map((e) => e.deviceId), ['b']);
          assert.deepEqual((await store.nextUndispatched('job-1', 2, 10)).map((e) => e.deviceId), ['b', 'a', 'c']);
          assert.deepEqual((await store.nextUndispatched('job-1', 2, 2)).map((e) => e.deviceId), ['b', 'a']);
          assert.deepEqual((await store.listDueExecutions(30, 10)).map((e) => e.deviceId), ['e', 'z']);
          assert.deepEqual((await store.listDueExecutions(100, 2)).map((e) => e.deviceId), ['e', 'z']);
          assert.deepEqual(await store.listDueExecutions(19, 10), []);
          assert.deepEqual(
            sortBy(await store.countExecutions('job-1'), (c) => `${c.wave}${c.status}`),
            [
              { wave: 0, status: 'CANCELED', count: 1, dispatched: 0 },
              { wave: 0, status: 'IN_PROGRESS', count: 1, dispatched: 1 },
              { wave: 0, status: 'QUEUED', count: 2, dispatched: 1 },
              { wave: 1, status: 'QUEUED', count: 1, dispatched: 0 },
              { wave: 2, status: 'QUEUED', count: 1, dispatched: 0 },
            ],
          );
          assert.deepEqual(await store.countExecutions('job-404'), []);
        }));

      it('lists a device\'s queued, unsent executions of every job, and nothing else', () =>
        withStore(async (store) => {
          await store.createJob(job('j1'), [execution('j1', 'a', 1), execution('j1', 'b', 1)]);
          await store.createJob(job('j2'), [{ ...execution('j2', 'a', 2), dispatchedAt: 5 }]);
          await store.createJob(job('j3'), [{ ...execution('j3', 'a', 3), status: 'SUCCEEDED', dispatchedAt: 5 }]);
          await store.createJob(job('j4'), [{ ...execution('j4', 'a', 4), wave: 2 }]);
          const ids = async (d: string) => (await store.listUndispatchedOfDevice(d)).map((e) => e.jobId).sort();
          assert.deepEqual(await ids('a'), ['j1', 'j4']);
          assert.deepEqual(await store.listUndispatchedOfDevice('a').then((es) => es.find((e) => e.jobId === 'j4')), { ...execution('j4', 'a', 4), wave: 2 });
          const sent = (await store.getExecution('j1', 'a'))!;
          assert.equal(await store.updateExecution({ ...sent, dispatchedAt: 9, version: 2 }), true);
          assert.deepEqual(await ids('a'), ['j4']);
          assert.deepEqual(await ids('b'), ['j1']);
          assert.deepEqual(await ids('nobody'), []);
        }));

      it('creates a job of many devices in pieces, letting other writes through meanwhile', () =>
        withStore(async (store) => {
          const n = 2 * JOB_CHUNK + 7;
          const es = Array.from({ length: n }, (_, i) => ({ ...execution('big', `d${String(i).padStart(6, '0')}`, 1), ...(i % 2 ? { wave: 1 } : {}) }));
          const order: string[] = [];
          const creating = store.createJob(job('big'), es).then(() => order.push('job'));
          // issued after the job: committed while the job is still being written, not after all of it
          const other = store.putShadow(shadow('dev-1', 1, {}), 0).then(() => order.push('shadow'));
          await Promise.all([creating, other]);
          assert.deepEqual(order, ['shadow', 'job']);
          assert.equal((await store.getJob('big'))?.jobId, 'big');
          assert.deepEqual(sortBy(await store.countExecutions('big'), (c) => `${c.wave}`), [
            { wave: 0, status: 'QUEUED', count: Math.ceil(n / 2), dispatched: 0 },
            { wave: 1, status: 'QUEUED', count: Math.floor(n / 2), dispatched: 0 },
          ]);
          let seen = 0;
          let after: string | undefined;
          do {
            const page = await store.listJobExecutions('big', { limit: 1000, ...(after ? { after } : {}) });
            seen += page.items.length;
            after = page.next;
          } while (after);
          assert.equal(seen, n);
          await assert.rejects(store.createJob(job('big'), es), isCode('CONFLICT'));
          assert.equal((await store.countExecutions('big')).reduce((k, c) => k + c.count, 0), n, 'the refused copy changed nothing');
        }));

      it('refuses a job of many devices that lists one twice, leaving nothing of it', () =>
        withStore(async (store) => {
          const es = Array.from({ length: 2 * JOB_CHUNK + 10 }, (_, i) => execution('dup', `d${String(i).padStart(6, '0')}`, 1));
          // twice in two pieces (the third piece repeats one of the first: two pieces written, then
          // removed in pieces), and twice in one piece (the second: the first piece is removed)
          const inTwoPieces = [...es, execution('dup', 'd000003', 1)];
          const inOnePiece = [...es.slice(0, JOB_CHUNK + 2), execution('dup', 'd005001', 1), ...es.slice(JOB_CHUNK + 2)];
          for (const listed of [inTwoPieces, inOnePiece]) {
            await assert.rejects(store.createJob(job('dup'), listed), isCode('BAD_REQUEST'));
            assert.equal(await store.getJob('dup'), undefined);
            assert.deepEqual(await store.countExecutions('dup'), []);
            for (const deviceId of ['d000003', `d${String(2 * JOB_CHUNK - 1).padStart(6, '0')}`]) assert.deepEqual(await store.listExecutions({ deviceId }), [], deviceId);
          }
          // the id is free: nothing marks it as being created
          await store.createJob(job('dup'), es);
          assert.equal((await store.countExecutions('dup')).reduce((k, c) => k + c.count, 0), 2 * JOB_CHUNK + 10);
        }));

      it("holds a job's Idempotency-Key from the write that creates it: a second job with it is refused, writing nothing; a deleted job frees it", () =>
        withStore(async (store) => {
          const claim = { key: 'key-1', fingerprint: 'f1' };
          assert.equal(await store.findIdempotencyKey('key-1'), undefined);
          await store.createJob({ ...job('k1'), status: 'COMPLETED' }, [{ ...execution('k1', 'dev-1', 1), status: 'SUCCEEDED', dispatchedAt: 2 }], claim);
          assert.deepEqual(await store.findIdempotencyKey('key-1'), { key: 'key-1', fingerprint: 'f1', jobId: 'k1', inProgress: false });
          // the key is not shown with the job
          assert.doesNotMatch(JSON.stringify(await store.getJob('k1')), /key-1/);
          // two in one tick (one batch of writes on PostgreSQL): the second is refused with the first's holder
          const [a, b] = await Promise.allSettled([
            store.createJob(job('k2'), [execution('k2', 'dev-2', 1)], { key: 'key-2', fingerprint: 'f2' }),
            store.createJob(job('k3'), [execution('k3', 'dev-3', 1)], { key: 'key-2', fingerprint: 'other' }),
          ]);
          assert.equal(a.status, 'fulfilled');
          assert.ok(b.status === 'rejected' && b.reason instanceof IdempotencyKeyTaken, String((b as PromiseRejectedResult).reason));
          assert.deepEqual((b as PromiseRejectedResult).reason.holder, { key: 'key-2', fingerprint: 'f2', jobId: 'k2', inProgress: false });
          assert.equal(await store.getJob('k3'), undefined);
          assert.deepEqual(await store.listExecutions({ deviceId: 'dev-3' }), []);
          await assert.rejects(store.createJob(job('k4'), [execution('k4', 'dev-4', 1)], claim), (err) => err instanceof IdempotencyKeyTaken && err.holder.jobId === 'k1');
          // jobs without a key are as many as asked
          await store.createJob(job('n1'), [execution('n1', 'dev-1', 1)]);
          await store.createJob(job('n2'), [execution('n2', 'dev-1', 1)]);
          assert.equal((await store.deleteJob('k1')).deleted, true);
          assert.equal(await store.findIdempotencyKey('key-1'), undefined);
          await store.createJob(job('k5'), [execution('k5', 'dev-1', 1)], claim);
          assert.equal((await store.findIdempotencyKey('key-1'))?.jobId, 'k5');
        }));

      it('holds the key of a job created in pieces from its first piece (in progress until its row is written); a refused creation frees it', () =>
        withStore(async (store) => {
          const es = (jobId: string) => Array.from({ length: JOB_CHUNK + 3 }, (_, i) => execution(jobId, `d${String(i).padStart(6, '0')}`, 1));
          const claim = { key: 'big-key', fingerprint: 'fb' };
          const creating = store.createJob(job('big'), es('big'), claim);
          // asked in the same tick, after the first piece's write: the key is held by a creation in progress
          const second = store.createJob(job('small'), [execution('small', 'dev-1', 1)], claim);
          await assert.rejects(second, (err) => err instanceof IdempotencyKeyTaken && err.holder.jobId === 'big' && err.holder.inProgress);
          await creating;
          assert.deepEqual(await store.findIdempotencyKey('big-key'), { key: 'big-key', fingerprint: 'fb', jobId: 'big', inProgress: false });
          assert.equal(await store.getJob('small'), undefined);
          // another creation in pieces with the key is refused before its first piece
          await assert.rejects(store.createJob(job('big2'), es('big2'), claim), IdempotencyKeyTaken);
          assert.deepEqual(await store.countExecutions('big2'), []);
          // a creation refused for its executions (a device twice) leaves the key free
          const twice = [...es('dup'), execution('dup', 'd000001', 1)];
          await assert.rejects(store.createJob(job('dup'), twice, { key: 'dup-key', fingerprint: 'fd' }), isCode('BAD_REQUEST'));
          assert.equal(await store.findIdempotencyKey('dup-key'), undefined);
          await store.createJob(job('dup'), es('dup'), { key: 'dup-key', fingerprint: 'fd' });
          assert.equal((await store.findIdempotencyKey('dup-key'))?.jobId, 'dup');
        }));

      it('deletes a finished job with its executions (in pieces, letting other writes through), counts and logs; refuses an active one and one whose executions are not done', () =>
        withStore(async (store) => {
          const finished = (jobId: string, status: JobRecord['status'] = 'COMPLETED'): JobRecord => ({ ...job(jobId), status });
          const n = 2 * JOB_CHUNK + 7;
          const big = Array.from({ length: n }, (_, i): ExecutionRecord => ({ ...execution('big', `d${String(i).padStart(6, '0')}`, 1), status: 'SUCCEEDED', dispatchedAt: 2, ...(i % 2 ? { wave: 1 } : {}) }));
          await store.createJob(finished('big'), big);
          await store.createJob(job('other'), [execution('other', 'd000001', 1)]);
          for (const jobId of ['big', 'other']) await store.putJobLog({ jobId, deviceId: 'd000001', agentJobId: jobId, receivedAt: 5, lines: ['x'], dropped: 0 }, 10);

          // not finished: nothing deleted
          assert.deepEqual(await store.deleteJob('other'), { job: job('other'), deleted: false });
          assert.equal((await store.getJob('other'))?.status, 'IN_PROGRESS');
          // finished, but an execution still in progress, or one still owed a take-back (a deadline)
          await store.createJob(finished('stopping', 'CANCELED'), [
            { ...execution('stopping', 'a', 1), status: 'IN_PROGRESS', dispatchedAt: 2, dueAt: 90 },
            { ...execution('stopping', 'b', 1), status: 'CANCELED', dueAt: 90 },
            { ...execution('stopping', 'c', 1), status: 'CANCELED' },
          ]);
          assert.deepEqual(await store.deleteJob('stopping'), { job: finished('stopping', 'CANCELED'), deleted: false, unfinished: 2 });
          assert.equal((await store.listExecutions({ jobId: 'stopping' })).length, 3, 'nothing of it deleted');
          const a = (await store.getExecution('stopping', 'a'))!;
          const { dueAt: _due, ...ended } = { ...a, status: 'CANCELED' as const, version: 2 };
          assert.equal(await store.updateExecution(ended), true);
          assert.deepEqual(await store.deleteJob('stopping'), { job: finished('stopping', 'CANCELED'), deleted: false, unfinished: 1 });

          // issued after the deletion: committed between its pieces, not after all of them
          const order: string[] = [];
          const deleting = store.deleteJob('big').then((r) => (order.push('job'), r));
          const other = store.putShadow(shadow('dev-1', 1, {}), 0).then(() => order.push('shadow'));
          const [deleted] = await Promise.all([deleting, other]);
          assert.deepEqual(order, ['shadow', 'job']);
          assert.deepEqual(deleted, { job: finished('big'), deleted: true });
          assert.equal(await store.getJob('big'), undefined);
          assert.deepEqual(await store.countExecutions('big'), []);
          assert.deepEqual(await store.listJobExecutions('big', { limit: 10 }), { items: [] });
          assert.deepEqual(await store.listJobLogs('big', { limit: 10 }), { items: [] });
          assert.deepEqual((await store.listDeviceExecutions('d000001', { limit: 10 })).items.map((e) => e.jobId), ['other']);
          // the rest untouched
          assert.deepEqual(await store.listExecutions({ jobId: 'other' }), [execution('other', 'd000001', 1)]);
          assert.deepEqual((await store.listJobLogs('other', { limit: 10 })).items.map((l) => l.jobId), ['other']);
          assert.deepEqual(await store.deleteJob('big'), { deleted: false }, 'gone');
          assert.deepEqual(await store.deleteJob('nobody'), { deleted: false });
          // nothing marks the id: it can be created again
          await store.createJob(job('big'), [execution('big', 'd1', 1)]);
          assert.deepEqual(await store.countExecutions('big'), [{ wave: 0, status: 'QUEUED', count: 1, dispatched: 0 }]);
        }));

      it('lists finished jobs last changed before a time, the oldest change first, without their specs', () =>
        withStore(async (store) => {
          const at = (jobId: string, status: JobRecord['status'], createdAt: number, updatedAt?: number): JobRecord => ({ ...job(jobId), status, createdAt, spec: { big: true }, ...(updatedAt !== undefined ? { updatedAt, version: 2 } : {}) });
          for (const j of [at('done-late', 'COMPLETED', 100, 900), at('canceled', 'CANCELED', 100, 300), at('aborted', 'ABORTED', 200), at('paused', 'PAUSED', 100, 150), at('running', 'IN_PROGRESS', 50), at('recent', 'COMPLETED', 100, 2_000)]) await store.createJob(j, []);
          const ids = async (before: number, limit = 10) => (await store.listFinishedBefore(before, limit)).map((j) => j.jobId);
          assert.deepEqual(await ids(1_000), ['aborted', 'canceled', 'done-late']);
          assert.deepEqual(await ids(1_000, 2), ['aborted', 'canceled']);
          assert.deepEqual(await ids(300), ['aborted'], 'before, not at');
          assert.deepEqual(await ids(100), []);
          const [first] = await store.listFinishedBefore(1_000, 1);
          assert.equal(first?.spec, undefined, 'without its spec');
          assert.equal(first?.status, 'ABORTED');
        }));

      it('keeps the counts equal to a recount through every kind of execution write', () =>
        withStore(async (store) => {
          /** The counts the way countExecutions promises them, recomputed from the rows themselves. */
          async function recount(jobId: string) {
            const byKey = new Map<string, { wave: number; status: string; count: number; dispatched: number }>();
            const page = await store.listJobExecutions(jobId, { limit: 1000 });
            for (const e of page.items) {
              const key = `${e.wave ?? 0} ${e.status}`;
              const c = byKey.get(key) ?? { wave: e.wave ?? 0, status: e.status, count: 0, dispatched: 0 };
              c.count++;
              if (e.dispatchedAt !== undefined) c.dispatched++;
              byKey.set(key, c);
            }
            return sortBy([...byKey.values()], (c) => `${c.wave} ${c.status}`);
          }
          const counted = async (jobId: string) => sortBy(await store.countExecutions(jobId), (c) => `${c.wave} ${c.status}`);
          const ids = Array.from({ length: 40 }, (_, i) => `d${String(i).padStart(2, '0')}`);
          await store.createJob(job('job-1'), ids.slice(0, 30).map((d, i) => ({ ...execution('job-1', d, 1), wave: i % 3 })));
          await store.createJob(job('job-2'), [execution('job-2', 'd00', 1)]);
          // 10 new, 5 already there (skipped: counted once)
          assert.equal(await store.addExecutions(ids.slice(25).map((d) => ({ ...execution('job-1', d, 2), wave: 3 }))), 10);
          assert.deepEqual(await counted('job-1'), await recount('job-1'));

          // many writes in one tick (PostgreSQL writes them in bulk): dispatch, start, finish, move waves
          let current = (await store.listJobExecutions('job-1', { limit: 1000 })).items;
          const step = (e: ExecutionRecord, i: number): ExecutionRecord => {
            const next = { ...e, version: e.version + 1, updatedAt: e.updatedAt + 1 };
            if (i % 5 === 0) return { ...next, dispatchedAt: 10 };
            if (i % 5 === 1) return { ...next, status: 'IN_PROGRESS', dispatchedAt: 10 };
            if (i % 5 === 2) return { ...next, status: 'SUCCEEDED', dispatchedAt: 10 };
            if (i % 5 === 3) return { ...next, wave: (next.wave ?? 0) + 1 };
            return { ...next, details: { progress: 0.5 } }; // changes no count
          };
          let results = await Promise.all(current.map((e, i) => store.updateExecution(step(e, i))));
          assert.ok(results.every(Boolean));
          assert.deepEqual(await counted('job-1'), await recount('job-1'));

          // stale writes (the version moved on) change nothing, counts included
          results = await Promise.all(current.slice(0, 10).map((e) => store.updateExecution({ ...e, status: 'FAILED', version: e.version + 1 })));
          assert.ok(results.every((r) => r === false));
          assert.deepEqual(await counted('job-1'), await recount('job-1'));

          // one at a time, and back: a device leaves IN_PROGRESS for FAILED, then is queued again undispatched
          current = (await store.listJobExecutions('job-1', { limit: 1000 })).items;
          const e = current.find((x) => x.status === 'IN_PROGRESS')!;
          assert.equal(await store.updateExecution({ ...e, status: 'FAILED', version: e.version + 1 }), true);
          const { dispatchedAt: _d, ...requeued } = { ...e, status: 'QUEUED' as const, version: e.version + 2 };
          assert.equal(await store.updateExecution(requeued), true);
          assert.deepEqual(await counted('job-1'), await recount('job-1'));
          const total = (await counted('job-1')).reduce((n, c) => n + c.count, 0);
          assert.equal(total, 40);
          assert.deepEqual(await counted('job-2'), [{ wave: 0, status: 'QUEUED', count: 1, dispatched: 0 }], 'another job is counted apart');
        }));

      it('creates, lists (without member lists), reads whole and deletes groups', () =>
        withStore(async (store) => {
          const g: GroupRecord = { name: 'eu', kind: 'static', devices: ['dev-2', 'dev-1'], description: 'Europe', createdAt: 1, updatedAt: 1, version: 1 };
          const q: GroupRecord = { name: 'old', kind: 'dynamic', devices: [], query: 'reported.software.version < 2.0.0', createdAt: 2, updatedAt: 2, version: 1 };
          await store.createGroup(g);
          await store.createGroup(q);
          await assert.rejects(store.createGroup(g), isCode('CONFLICT'));
          assert.deepEqual(await store.getGroup('eu'), { ...g, devices: ['dev-1', 'dev-2'], size: 2 }, 'whole: the members in device id order');
          assert.deepEqual(await store.getGroup('eu', { omitDevices: true }), { ...g, devices: [], size: 2 }, 'the head: the members counted, not listed');
          assert.deepEqual(await store.getGroup('old'), { ...q, size: 0 });
          assert.deepEqual(await store.getGroup('old', { omitDevices: true }), { ...q, size: 0 });
          assert.equal(await store.getGroup('nobody', { omitDevices: true }), undefined);
          assert.deepEqual(await store.listGroups(), [{ ...g, devices: [], size: 2 }, { ...q, size: 0 }], 'a listing carries no member list');
          assert.equal(await store.deleteGroup('eu'), true);
          assert.equal(await store.deleteGroup('eu'), false);
          assert.equal(await store.getGroup('eu'), undefined);
        }));

      it('changes a static group\'s members in one transaction, refusing a change past the bound whole', () =>
        withStore(async (store) => {
          const members = async (name: string, ids: string[]) => Promise.all(ids.map((d) => store.isGroupMember(name, d)));
          const g: GroupRecord = { name: 'eu', kind: 'static', devices: ['dev-1', 'dev-2'], createdAt: 1, updatedAt: 1, version: 1 };
          await store.createGroup(g);
          await store.createGroup({ name: 'eu-2', kind: 'static', devices: ['dev-3'], createdAt: 1, updatedAt: 1, version: 1 });
          await store.createGroup({ name: 'old', kind: 'dynamic', devices: [], query: 'tags = old', createdAt: 2, updatedAt: 2, version: 1 });
          assert.deepEqual(await members('eu', ['dev-1', 'dev-2', 'dev-3']), [true, true, false]);
          assert.deepEqual(await members('eu-2', ['dev-1', 'dev-3']), [false, true], 'each group has its own members');
          assert.deepEqual(await members('nobody', ['dev-1']), [false]);
          const changed = await store.changeGroupMembers('eu', { add: ['dev-4', 'dev-2'], remove: ['dev-1', 'dev-9'], updatedAt: 3, maxMembers: 3 });
          assert.deepEqual(changed, { ...g, devices: [], size: 2, updatedAt: 3, version: 2 }, 'the group after the change, counted');
          assert.deepEqual(await members('eu', ['dev-1', 'dev-2', 'dev-4']), [false, true, true]);
          // a device both added and removed ends a member
          await store.changeGroupMembers('eu', { add: ['dev-5'], remove: ['dev-5'], updatedAt: 4, maxMembers: 3 });
          assert.deepEqual((await store.getGroup('eu'))?.devices, ['dev-2', 'dev-4', 'dev-5']);
          // past the bound nothing is written, removals included
          await assert.rejects(store.changeGroupMembers('eu', { add: ['dev-6', 'dev-7'], remove: ['dev-2'], updatedAt: 5, maxMembers: 3 }), isCode('BAD_REQUEST'));
          assert.deepEqual(await store.getGroup('eu'), { ...g, devices: ['dev-2', 'dev-4', 'dev-5'], size: 3, updatedAt: 4, version: 3 });
          // refused in a batch of other writes (one group commit): only the refused one is undone
          const results = await Promise.allSettled([
            store.changeGroupMembers('eu', { add: ['dev-8'], remove: [], updatedAt: 6, maxMembers: 3 }),
            store.changeGroupMembers('eu-2', { add: ['dev-8'], remove: [], updatedAt: 6, maxMembers: 3 }),
            store.createGroup({ name: 'us', kind: 'static', devices: ['dev-8'], createdAt: 6, updatedAt: 6, version: 1 }),
          ]);
          assert.deepEqual(results.map((r) => r.status), ['rejected', 'fulfilled', 'fulfilled']);
          assert.deepEqual(await members('eu', ['dev-8', 'dev-2']), [false, true]);
          assert.deepEqual(await members('eu-2', ['dev-8']), [true]);
          assert.deepEqual((await store.getGroup('us'))?.devices, ['dev-8']);
          await assert.rejects(store.changeGroupMembers('old', { add: ['dev-1'], remove: [], updatedAt: 7, maxMembers: 3 }), isCode('CONFLICT'), 'a dynamic group lists no members');
          await assert.rejects(store.changeGroupMembers('nobody', { add: ['dev-1'], remove: [], updatedAt: 7, maxMembers: 3 }), isCode('NOT_FOUND'));
          assert.equal(await store.deleteGroup('eu'), true);
          assert.deepEqual(await members('eu', ['dev-2', 'dev-4']), [false, false], 'a deleted group has no members');
          // a group created again under the name starts from its own list
          await store.createGroup({ ...g, devices: ['dev-5'] });
          assert.deepEqual(await members('eu', ['dev-2', 'dev-5']), [false, true]);
          assert.deepEqual(await members('eu-2', ['dev-3', 'dev-8']), [true, true], 'the other group kept its members');
        }));

      it('pages a static group\'s members in device id order (byte order)', () =>
        withStore(async (store) => {
          await store.createGroup({ name: 'eu', kind: 'static', devices: ['c3', 'a1', 'B2', 'a10', 'd4'], createdAt: 1, updatedAt: 1, version: 1 });
          const p1 = await store.listGroupMembers('eu', { limit: 2 });
          assert.deepEqual(p1, { items: ['B2', 'a1'], next: 'a1' });
          const p2 = await store.listGroupMembers('eu', { after: p1.next!, limit: 2 });
          assert.deepEqual(p2, { items: ['a10', 'c3'], next: 'c3' });
          assert.deepEqual(await store.listGroupMembers('eu', { after: p2.next!, limit: 2 }), { items: ['d4'] });
          assert.deepEqual(await store.listGroupMembers('eu', { limit: 5 }), { items: ['B2', 'a1', 'a10', 'c3', 'd4'] }, 'a full last page has no next');
          assert.deepEqual(await store.listGroupMembers('nobody', { limit: 5 }), { items: [] });
        }));
    });

    describe('lifecycle', () => {
      it('commits writes still pending when stop() is called; stop() twice is harmless', () =>
        withStore(async (store, opened, track) => {
          const record = shadow('dev-1', 1, { desired: { a: 1 } });
          const pending = [store.putShadow(record, 0), store.putArtifact(artifact('fw', '1.0.0', 1_000))];
          await store.stop();
          await store.stop();
          assert.deepEqual(await Promise.all(pending), [true, undefined]);
          if (opened.reopen) {
            const again = track(await opened.reopen());
            await again.start();
            assert.deepEqual(await again.getShadow('dev-1', ''), record);
            assert.deepEqual(await again.listArtifacts({ limit: 100 }), { items: [artifact('fw', '1.0.0', 1_000)] });
          }
        }));

      it('keeps every kind of record across stop and reopen', (t) =>
        withStore(async (store, opened, track) => {
          if (!opened.reopen) return t.skip('this back-end cannot be reopened');
          const s1 = shadow('dev-1', 1, { desired: { a: 1 } });
          const s2 = { ...shadow('dev-1', 1, { reported: { b: [1, 'two'] } }), name: 'cfg' };
          const gone = { ...shadow('dev-2', 2, {}), deleted: true };
          const a = artifact('fw', '1.0.0', 1_000);
          const j = job('job-1', 'kept');
          const e = execution('job-1', 'dev-1', 1_000);
          const e2: ExecutionRecord = { ...e, status: 'SUCCEEDED', details: { version: '1.0.0' }, updatedAt: 5_000, version: 2 };
          await store.putShadow(s1, 0);
          await store.putShadow(s2, 0);
          await store.putShadow(shadow('dev-2', 1, {}), 0);
          await store.putShadow(gone, 1);
          await store.putArtifact(a);
          await store.createJob(j, [e]);
          await store.updateExecution(e2);
          const done = { ...j, status: 'COMPLETED' as const, version: (j.version ?? 1) + 1 };
          assert.equal(await store.updateJob(done), true);
          await store.stop();

          const again = track(await opened.reopen());
          await again.start();
          assert.deepEqual(await again.getShadow('dev-1', ''), s1);
          assert.deepEqual(await again.getShadow('dev-1', 'cfg'), s2);
          assert.deepEqual(await again.getShadow('dev-2', ''), gone);
          assert.deepEqual(await again.listShadows({ limit: 10 }), { items: [s1] });
          assert.deepEqual(await again.listArtifacts({ limit: 100 }), { items: [a] });
          assert.deepEqual(await again.getJob('job-1'), done);
          assert.deepEqual(await again.listExecutions({ deviceId: 'dev-1' }), [e2]);
          // the version survives the restart: the conditional write still applies
          assert.equal(await again.putShadow(shadow('dev-2', 1, {}), 0), false);
          assert.equal(await again.putShadow(shadow('dev-2', 3, { desired: { c: 1 } }), 2), true);
        }));
    });
  });
}

function shadow(deviceId: string, version: number, state: ShadowRecord['state'], timestamp = 100): ShadowRecord {
  const metadata: ShadowRecord['metadata'] = {};
  if (state.desired) metadata.desired = Object.fromEntries(Object.keys(state.desired).map((k) => [k, { timestamp }]));
  if (state.reported) metadata.reported = Object.fromEntries(Object.keys(state.reported).map((k) => [k, { timestamp }]));
  return { deviceId, name: '', version, deleted: false, state: structuredClone(state), metadata, timestamp };
}

function artifact(name: string, version: string, createdAt: number): ArtifactRecord {
  return { name, version, sha256: `${name}-${version}`.padEnd(64, '0'), size: 1_000 + version.length, createdAt };
}

/**
 * After a migration from before execution counts were kept, over a job 'j' seeded with
 * a (QUEUED, wave 0), b (QUEUED, wave 0, dispatched) and c (SUCCEEDED, wave 1, dispatched):
 * the counts were filled in, and are kept from then on.
 */
/**
 * The seed of a database from before deletions were recorded (SQL, `bool` the way the
 * database writes true and false): `kept` is registered and has a tombstone, `gone` was
 * deleted, leaving tombstones stamped 1,700,000,010 and 1,700,000,020 (a shadow's timestamp is
 * in seconds), `orphan` left a live shadow (a deletion cut short) and no tombstone.
 */
export function deletionsSeed(bool: (b: boolean) => string): string {
  return `INSERT INTO devices (device_id, attributes, tags, secret_hash, revoked, created_at, updated_at, version) VALUES ('kept', '{}', '[]', NULL, ${bool(false)}, 1, 1, 1);
    INSERT INTO shadows (device_id, name, version, deleted, state, metadata, timestamp) VALUES
      ('kept', 'x', 2, ${bool(true)}, '{}', '{}', 1700000005),
      ('gone', '', 3, ${bool(true)}, '{}', '{}', 1700000010),
      ('gone', 'wifi', 2, ${bool(true)}, '{}', '{}', 1700000020),
      ('orphan', '', 1, ${bool(false)}, '{"reported":{"a":1}}', '{}', 1700000007)`;
}

/** What the migration recording deletions made of `deletionsSeed`: `gone` deleted at its last tombstone's time, in ms, and only it. */
export async function checkMigratedDeletions(store: StateStore): Promise<void> {
  assert.deepEqual(await store.expireDeletedDevices(1_700_000_020_000, 10), { devices: [], tombstones: 0 }, 'deleted at 1,700,000,020 s (its last deletion), in ms');
  assert.deepEqual(await store.expireDeletedDevices(1_700_000_020_001, 10), { devices: ['gone'], tombstones: 2 });
  assert.deepEqual(await store.listShadowTombstones('gone'), []);
  assert.deepEqual((await store.listShadowTombstones('kept')).map((t) => t.name), ['x'], 'registered: not listed');
  assert.equal((await store.getShadow('orphan', ''))?.deleted, false, 'a live shadow is no tombstone');
  assert.deepEqual(await store.expireDeletedDevices(Number.MAX_SAFE_INTEGER, 10), { devices: [], tombstones: 0 }, 'nothing else listed');
}

/** Deletions as the first fill of deleted_devices left them: `early` in seconds (its fault), `late` in ms (recorded by a deletion). */
export const DELETIONS_IN_SECONDS_SEED = `INSERT INTO deleted_devices (device_id, deleted_at) VALUES ('early', 1700000020), ('late', 1700000030000)`;

/** What the corrective step made of DELETIONS_IN_SECONDS_SEED: both in ms. */
export async function checkDeletionsInMs(store: StateStore): Promise<void> {
  assert.deepEqual(await store.expireDeletedDevices(1_700_000_020_000, 10), { devices: [], tombstones: 0 }, 'early now in ms');
  assert.deepEqual(await store.expireDeletedDevices(1_700_000_030_000, 10), { devices: ['early'], tombstones: 0 });
  assert.deepEqual(await store.expireDeletedDevices(1_700_000_030_001, 10), { devices: ['late'], tombstones: 0 }, 'late left as it was');
}

export async function checkMigratedCounts(store: StateStore): Promise<void> {
  assert.deepEqual(await store.countExecutions('j'), [
    { wave: 0, status: 'QUEUED', count: 2, dispatched: 1 },
    { wave: 1, status: 'SUCCEEDED', count: 1, dispatched: 1 },
  ]);
  const b = (await store.getExecution('j', 'b'))!;
  assert.equal(await store.updateExecution({ ...b, status: 'IN_PROGRESS', version: 2 }), true);
  assert.deepEqual(await store.countExecutions('j'), [
    { wave: 0, status: 'IN_PROGRESS', count: 1, dispatched: 1 },
    { wave: 0, status: 'QUEUED', count: 1, dispatched: 0 },
    { wave: 1, status: 'SUCCEEDED', count: 1, dispatched: 1 },
  ]);
}

function job(jobId: string, description?: string): JobRecord {
  const j: JobRecord = { jobId, artifactName: 'fw', artifactVersion: '1.0.0', status: 'IN_PROGRESS', createdAt: 500 };
  if (description !== undefined) j.description = description;
  return j;
}

function execution(jobId: string, deviceId: string, queuedAt: number): ExecutionRecord {
  return { jobId, deviceId, status: 'QUEUED', details: {}, queuedAt, updatedAt: queuedAt, version: 1 };
}

function sortBy<T>(items: T[], key: (item: T) => string): T[] {
  return [...items].sort((x, y) => (key(x) < key(y) ? -1 : key(x) > key(y) ? 1 : 0));
}

function isCode(code: string): (err: unknown) => boolean {
  return (err) => err instanceof UpdraftError && err.code === code;
}

/**
 * After a migration from before group members had rows of their own, over a static group
 * 'eu' seeded with ["a","b"] and a dynamic 'old' (query `tags = old`): the members are
 * found, the groups read as before, and changes (of the rows alone) keep the members right.
 */
export async function checkMigratedGroups(store: StateStore): Promise<void> {
  assert.deepEqual(await Promise.all(['a', 'b', 'c'].map((d) => store.isGroupMember('eu', d))), [true, true, false]);
  assert.equal(await store.isGroupMember('old', 'a'), false, 'a dynamic group lists no member');
  assert.deepEqual(await store.getGroup('eu'), { name: 'eu', kind: 'static', devices: ['a', 'b'], size: 2, createdAt: 1, updatedAt: 1, version: 1 });
  assert.deepEqual((await store.listGroups()).map((g) => [g.name, g.size, g.devices]), [['eu', 2, []], ['old', 0, []]]);
  await store.changeGroupMembers('eu', { add: ['c'], remove: ['a'], updatedAt: 2, maxMembers: 10 });
  assert.deepEqual(await Promise.all(['a', 'b', 'c'].map((d) => store.isGroupMember('eu', d))), [false, true, true]);
  assert.deepEqual((await store.getGroup('eu'))?.devices, ['b', 'c'], 'the rows are the list now');
}

/**
 * The seed of a database from before the newest failures had an index (SQL, both dialects):
 * job 'j' with failures of each kind at 3,000 to 1,000 ms, a timeout whose success came late
 * (3,500) and a success, and the failure of a job whose row is gone ('gone').
 */
export const RECENT_FAILURES_SEED = `
  INSERT INTO jobs (job_id, artifact_name, artifact_version, status, created_at) VALUES ('j', 'fw', '1', 'COMPLETED', 1);
  INSERT INTO executions (job_id, device_id, status, details, queued_at, updated_at, version) VALUES
    ('j', 'a', 'FAILED', '{}', 1, 1000, 1), ('j', 'b', 'TIMED_OUT', '{}', 1, 3000, 1), ('j', 'c', 'REJECTED', '{}', 1, 2000, 1),
    ('j', 'f', 'TIMED_OUT', '{"lateSuccess":{"at":3500}}', 1, 3500, 1),
    ('j', 'd', 'SUCCEEDED', '{}', 1, 4000, 1), ('gone', 'e', 'FAILED', '{}', 1, 5000, 1)`;

/**
 * After the migration that indexed the newest failures, over `RECENT_FAILURES_SEED`: the
 * failures from before it are listed, since their last change, newest first (not the late
 * success); a new one joins them, and a report on an old one leaves it in its place.
 */
export async function checkMigratedRecentFailures(store: StateStore): Promise<void> {
  assert.deepEqual((await store.listRecentFailures(10)).map((e) => `${e.deviceId}:${e.status}`), ['b:TIMED_OUT', 'c:REJECTED', 'a:FAILED'], 'the failures written before the migration, newest first; a late success not among them');
  const d = (await store.getExecution('j', 'd'))!;
  assert.equal(await store.updateExecution({ ...d, status: 'FAILED', updatedAt: 6_000, version: 2 }, new Set(['status'])), true);
  const a = (await store.getExecution('j', 'a'))!;
  assert.equal(await store.updateExecution({ ...a, details: { error: 'again' }, updatedAt: 7_000, version: 2 }, new Set(['details'])), true);
  assert.deepEqual((await store.listRecentFailures(10)).map((e) => e.deviceId), ['d', 'b', 'c', 'a'], 'a failure written after it, first; one written again, where it failed');
}

/**
 * The seed of a database from before the CRL's change check had an index of its own (SQL,
 * both dialects): certificates revoked and not, expired at 3,000 ms and not.
 */
export const REVOKED_CERTIFICATES_SEED = `
  INSERT INTO device_certificates (serial, device_id, issuer, issuer_subject, issued_at, not_after, revoked_at) VALUES
    ('01', 'a', 'ca', 'CN=ca', 1, 5000, 100), ('02', 'b', 'ca', 'CN=ca', 1, 9000, 300),
    ('03', 'c', 'ca', 'CN=ca', 1, 7000, NULL), ('04', 'd', 'ca', 'CN=ca', 1, 2000, 200)`;

/**
 * After the migration that indexed the revoked certificates by (not_after, revoked_at), over
 * `REVOKED_CERTIFICATES_SEED`: the stamp and the entries at 3,000 ms are those revoked before
 * it and not expired; a revocation after it (a certificate recorded for a device not
 * registered) changes the stamp and joins the entries.
 */
export async function checkMigratedRevocations(store: StateStore): Promise<void> {
  assert.equal(await store.revocationStamp(3000), '2:5000:300', 'the stamp of the two revoked and not expired: count, earliest notAfter, latest revokedAt');
  const entries = async () => (await store.listRevokedEntries(3000)).map((e) => `${e.serial}:${e.notAfter}:${e.revokedAt}`).sort();
  assert.deepEqual(await entries(), ['01:5000:100', '02:9000:300'], 'the entries of the CRL');
  await store.recordDeviceCertificate({ serial: '05', deviceId: 'gone', issuer: 'ca', issuerSubject: 'CN=ca', issuedAt: 1, notAfter: 4000 });
  const [count, first, last] = (await store.revocationStamp(3000)).split(':');
  assert.deepEqual([count, first], ['3', '4000'], 'a revocation after the migration counted, its notAfter the earliest');
  assert.ok(Number(last) > 300, `and its revokedAt the latest: ${last}`);
  assert.equal((await entries()).length, 3, `and listed: ${(await entries()).join(' ')}`);
}

/**
 * The seed of a database from before the outcomes had an index of their own (SQL, both
 * dialects): device 'a' failed job 'j1' (queued at 10) and succeeded 'j4' (at 5), then was
 * canceled from 'j2' and is queued in 'j3'; 'b' succeeded 'j1' then timed out in 'j2'; 'c' was
 * only ever canceled.
 */
export const LATEST_OUTCOMES_SEED = `
  INSERT INTO jobs (job_id, artifact_name, artifact_version, status, created_at) VALUES
    ('j1', 'fw', '1', 'COMPLETED', 1), ('j2', 'fw', '2', 'CANCELED', 2), ('j3', 'fw', '3', 'IN_PROGRESS', 3), ('j4', 'fw', '0', 'COMPLETED', 0);
  INSERT INTO executions (job_id, device_id, status, details, queued_at, updated_at, version) VALUES
    ('j1', 'a', 'FAILED', '{}', 10, 11, 1), ('j4', 'a', 'SUCCEEDED', '{}', 5, 6, 1), ('j2', 'a', 'CANCELED', '{}', 20, 21, 1), ('j3', 'a', 'QUEUED', '{}', 30, 30, 1),
    ('j1', 'b', 'SUCCEEDED', '{}', 10, 11, 1), ('j2', 'b', 'TIMED_OUT', '{}', 20, 21, 1),
    ('j2', 'c', 'CANCELED', '{}', 20, 21, 1)`;

/**
 * After the migration that indexed the outcomes, over `LATEST_OUTCOMES_SEED`: each device's
 * outcomes from before it, newest first, those without one skipped, a device without any
 * absent; an outcome written after it (a's queued execution succeeding) comes first.
 */
export async function checkMigratedLatestOutcomes(store: StateStore): Promise<void> {
  const outcomes = async () => Object.fromEntries([...(await store.listLatestOutcomesOfDevices(['a', 'b', 'c'], 5))].map(([d, es]) => [d, es.map((e) => `${e.jobId}:${e.status}`)]));
  assert.deepEqual(await outcomes(), { a: ['j1:FAILED', 'j4:SUCCEEDED'], b: ['j2:TIMED_OUT', 'j1:SUCCEEDED'] }, 'the outcomes written before the migration, newest first; canceled and queued skipped, c absent');
  const queued = (await store.getExecution('j3', 'a'))!;
  assert.equal(await store.updateExecution({ ...queued, status: 'SUCCEEDED', updatedAt: 40, version: queued.version + 1 }, new Set(['status'])), true);
  assert.deepEqual((await outcomes()).a, ['j3:SUCCEEDED', 'j1:FAILED', 'j4:SUCCEEDED'], 'an outcome written after it, first');
}
