/**
 * Two instances on one PostgreSQL database, each with its own cache of the shadows it last
 * wrote: a device on instance A, an operator on instance B (each instance's embedded broker).
 * When B writes, A's cached copy is stale; a refusal A would compute from that copy (413 too
 * large, 403 removing desired.software, 409 version) is confirmed against the store before it
 * is sent, and an acceptance that the store then refuses is retried on the store's copy. Before,
 * only a 409 was confirmed, and the device was refused on A for as long as the entry stayed.
 */
import assert from 'node:assert/strict';
import { cp, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ShadowRecord } from '../../src/store/state-store.ts';
import { TestClient } from '../helpers/mqtt-client.ts';
import { startTestPostgres, unavailable, type TestPostgres } from '../helpers/postgres.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';

const pgResult = await startTestPostgres();

if (!pgResult.ok) {
  it('stale cached shadows of two instances', (t) => t.skip(unavailable(pgResult, 'stale cache tests')));
} else {
  describe('replica: a shadow another instance wrote since this one cached it', () => {
    const pg: TestPostgres = pgResult.server;
    let a: TestServer;
    let b: TestServer;
    let dirB: string;
    const clients: TestClient[] = [];

    before(async () => {
      const db = await pg.createDatabase();
      a = await startTestServer({ flags: { db } });
      // every instance shares the identity material (docs/deployment.md): B gets A's keys and token
      dirB = await mkdtemp(path.join(os.tmpdir(), 'updraft-stale-b-'));
      await cp(a.dataDir, dirB, { recursive: true });
      b = await startTestServer({ dataDir: dirB, flags: { db } });
    });
    after(async () => {
      for (const c of clients) await c.end().catch(() => {});
      await b?.stop();
      await a?.close();
      await pg.stop();
      if (dirB) await rm(dirB, { recursive: true, force: true });
    });

    /** `deviceId` connected to A, and an operator connected to B, both subscribed to its answers. */
    const pair = async (deviceId: string) => {
      const secret = await registerDevice(a, deviceId);
      const dev = await TestClient.connect(a.mqttUrl, deviceId, { username: deviceId, password: secret });
      const op = await TestClient.connect(b.mqttUrl, `op-${deviceId}`, { username: 'operator', password: b.token });
      clients.push(dev, op);
      await dev.subscribe(`state/${deviceId}/+/+`);
      await op.subscribe(`state/${deviceId}/+/+`);
      const update = (c: TestClient, body: Record<string, unknown>) => c.request(`state/${deviceId}/update`, body);
      return { dev, op, update };
    };
    const outcome = (m: { topic: string; body: any }) => (m.topic.endsWith('/accepted') ? `accepted v${m.body.version}` : `rejected ${m.body.code} ${m.body.message}`);

    it('takes a report that fits the store, though not the copy A cached (413 before)', { timeout: 60_000 }, async () => {
      const { dev, op, update } = await pair('dev-413');
      assert.equal(outcome(await update(dev, { state: { reported: { big: 'x'.repeat(7000) } } })), 'accepted v1');
      assert.equal(outcome(await update(op, { state: { reported: { big: null } } })), 'accepted v2');
      // A's copy still holds `big`: 7,000 + 2,000 bytes would pass the 8 KiB limit; the store's does not
      assert.equal(outcome(await update(dev, { state: { reported: { other: 'y'.repeat(2000) } } })), 'accepted v3');
      assert.equal(outcome(await update(dev, { state: { reported: { other: 'z'.repeat(2000) } } })), 'accepted v4');
      const got = await dev.request('state/dev-413/get', {});
      assert.deepEqual(Object.keys(got.body.state.reported), ['other']);
      // a refusal the store confirms is still sent
      const tooBig = await update(dev, { state: { reported: { more: 'w'.repeat(7000) } } });
      assert.match(outcome(tooBig), /^rejected 413 /);
      assert.equal(outcome(await update(op, { state: { reported: { other: null } } })), 'accepted v5');
    });

    it('lets a device clear desired once the operator removed desired.software on another instance (403 before)', { timeout: 60_000 }, async () => {
      const { dev, op, update } = await pair('dev-403');
      const software = { name: 'fw', version: '2.0.0', sha256: 'a'.repeat(64), size: 10, jobId: 'job-stale-1' };
      assert.equal(outcome(await update(op, { state: { desired: { software, mode: 'eco' } } })), 'accepted v1');
      // A caches the shadow holding desired.software
      assert.equal(outcome(await update(dev, { state: { reported: { x: 1 } } })), 'accepted v2');
      assert.equal(outcome(await update(op, { state: { desired: { software: null } } })), 'accepted v3');
      assert.equal(outcome(await update(dev, { state: { desired: null } })), 'accepted v4');
      // while the store holds it, the 403 stands
      assert.equal(outcome(await update(op, { state: { desired: { software } } })), 'accepted v5');
      assert.match(outcome(await update(dev, { state: { desired: null } })), /^rejected 403 desired.software can be removed by operators only/);
    });

    it('judges a conditional update by the store\'s version, not the cached one', { timeout: 60_000 }, async () => {
      const { dev, op, update } = await pair('dev-409');
      assert.equal(outcome(await update(dev, { state: { reported: { n: 1 } } })), 'accepted v1');
      assert.equal(outcome(await update(op, { state: { desired: { n: 2 } } })), 'accepted v2');
      // the version A cached is no longer current: refused although the cached copy would take it
      assert.equal(outcome(await update(dev, { state: { reported: { n: 3 } }, version: 1 })), 'rejected 409 Version conflict');
      // the store's version is taken although the cached copy would refuse it
      assert.equal(outcome(await update(op, { state: { desired: { n: 4 } } })), 'accepted v3');
      assert.equal(outcome(await update(dev, { state: { reported: { n: 4 } }, version: 3 })), 'accepted v4');
    });

    it("a get refreshes A's copy: the next update does not first fail its conditional write", { timeout: 60_000 }, async () => {
      const { dev, op, update } = await pair('dev-get');
      assert.equal(outcome(await update(dev, { state: { reported: { n: 1 } } })), 'accepted v1');
      assert.equal(outcome(await update(op, { state: { desired: { n: 2 } } })), 'accepted v2');
      assert.equal((await dev.request('state/dev-get/get', {})).body.version, 2);
      // count A's writes of this shadow to the store: one, from the copy the get read
      const store = a.server.store;
      const putShadow = store.putShadow;
      const writes: boolean[] = [];
      store.putShadow = async (record: ShadowRecord, expected: number) => {
        const done = await putShadow.call(store, record, expected);
        if (record.deviceId === 'dev-get') writes.push(done);
        return done;
      };
      try {
        assert.equal(outcome(await update(dev, { state: { reported: { n: 2 } } })), 'accepted v3');
      } finally {
        store.putShadow = putShadow;
      }
      assert.deepEqual(writes, [true]);
    });
  });
}
