/**
 * How many named shadows one device may have (`shadow.maxNamedShadows`): creating one more is
 * rejected with 403 on `.../update/rejected` and stores nothing; those it has are updated and
 * deleted as before, deleting one frees a place, its classic shadow is not counted. A QA pass
 * created 2,000 of 7 KB each before this. Real server, real MQTT over TCP.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { SETTINGS } from '../../src/config/schema.ts';
import { connectDevice } from '../helpers/mqtt-client.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

const LIMIT = SETTINGS.find((s) => s.path === 'shadow.maxNamedShadows')!.default as number;

describe('replica: named shadows per device', () => {
  let ts: TestServer;
  before(async () => {
    ts = await startTestServer();
  });
  after(async () => {
    await ts.close();
  });

  it(`refuses a device's named shadow beyond shadow.maxNamedShadows (${LIMIT}) with 403; updates, deletes and the classic shadow go on; a delete frees a place`, async () => {
    const dev = await connectDevice(ts, 'many-1');
    const filler = 'x'.repeat(1000);
    try {
      await dev.subscribe('state/many-1/+/accepted', 'state/many-1/+/rejected', 'state/many-1/shadow/+/+/accepted', 'state/many-1/shadow/+/+/rejected');
      for (let i = 0; i < LIMIT; i++) {
        const a = await dev.request(`state/many-1/shadow/n${i}/update`, { state: { reported: { filler } } });
        assert.equal(a.topic, `state/many-1/shadow/n${i}/update/accepted`, JSON.stringify(a.body));
      }
      const refused = await dev.request(`state/many-1/shadow/one-more/update`, { state: { reported: { filler } } }, 'c-1');
      assert.equal(refused.topic, 'state/many-1/shadow/one-more/update/rejected');
      assert.equal(refused.body.code, 403);
      assert.equal(refused.body.clientToken, 'c-1');
      assert.equal(
        refused.body.message,
        `device many-1 has ${LIMIT} named shadows, the most it may have (shadow.maxNamedShadows ${LIMIT}): shadow 'one-more' is not created; delete one first`,
      );
      assert.equal(await ts.server.store.getShadow('many-1', 'one-more'), undefined, 'nothing stored');
      // what it has: updated as before; the classic shadow is not counted
      assert.equal((await dev.request('state/many-1/shadow/n1/update', { state: { reported: { more: 1 } } })).topic, 'state/many-1/shadow/n1/update/accepted');
      assert.equal((await dev.request('state/many-1/update', { state: { reported: { ok: true } } })).topic, 'state/many-1/update/accepted');
      // a delete frees a place, for one: of a burst of creations, none waiting for another, one is created
      assert.equal((await dev.request('state/many-1/shadow/n0/delete', {})).topic, 'state/many-1/shadow/n0/delete/accepted');
      const burst = await Promise.all(Array.from({ length: 10 }, (_, i) => dev.request(`state/many-1/shadow/burst${i}/update`, { state: { reported: { filler } } })));
      assert.deepEqual(burst.map((a) => String(a.body.code ?? 'accepted')).sort(), [...Array<string>(9).fill('403'), 'accepted']);
      assert.equal((await dev.request('state/many-1/shadow/n0/update', { state: { reported: { filler } } })).body.code, 403);
      const names = (await ts.server.store.listShadowNames('many-1')).filter((n) => n !== '');
      assert.equal(names.length, LIMIT);
    } finally {
      await dev.end();
    }
  });

  it("keeps fewer tombstones than the limit per device: created and deleted ever new names do not grow its rows; a name whose tombstone went starts again at version 1", async () => {
    const small = await startTestServer({ flags: { 'shadow-max-named': 3 } });
    try {
      const dev = await connectDevice(small, 'churn-1');
      try {
        await dev.subscribe('state/churn-1/shadow/+/+/accepted', 'state/churn-1/shadow/+/+/rejected');
        const cycle = async (name: string) => {
          const created = await dev.request(`state/churn-1/shadow/${name}/update`, { state: { reported: { a: 1 } } });
          assert.equal(created.topic, `state/churn-1/shadow/${name}/update/accepted`, JSON.stringify(created.body));
          assert.equal((await dev.request(`state/churn-1/shadow/${name}/update`, { state: { reported: { a: 2 } } })).body.version, created.body.version + 1);
          assert.equal((await dev.request(`state/churn-1/shadow/${name}/delete`, {})).topic, `state/churn-1/shadow/${name}/delete/accepted`);
          return created.body.version as number;
        };
        assert.equal(await cycle('n0'), 1);
        for (let i = 1; i < 20; i++) await cycle(`n${i}`);
        const tombstones = await small.server.store.listShadowTombstones('churn-1');
        assert.deepEqual(tombstones.map((t) => t.name), ['n17', 'n18', 'n19'], 'the newest three: fewer than 3 before each creation, then its own deletion');
        // a kept tombstone's name goes on from its version; a removed one's starts again
        assert.equal(await cycle('n19'), 4, 'created, updated, deleted at 3: created again at 4');
        assert.equal(await cycle('n0'), 1);
      } finally {
        await dev.end();
      }
    } finally {
      await small.close();
    }
  });

  it("counts each device's own shadows: another device creates its own", async () => {
    const dev = await connectDevice(ts, 'many-2');
    try {
      await dev.subscribe('state/many-2/shadow/+/+/accepted', 'state/many-2/shadow/+/+/rejected');
      assert.equal((await dev.request('state/many-2/shadow/n0/update', { state: { reported: { a: 1 } } })).topic, 'state/many-2/shadow/n0/update/accepted');
    } finally {
      await dev.end();
    }
  });
});
