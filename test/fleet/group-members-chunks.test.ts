/**
 * A large change of a static group's members (`POST /api/v1/groups/{name}/members`) is
 * written 5,000 members at a time (group-service.ts, MEMBERS_CHUNK), not in one transaction
 * every other write of the instance waits behind (QA: removing 100,000 took 1.73 s, adding
 * them 2.45 s). A real server over HTTP on SQLite and on a private PostgreSQL: the members
 * right after a change of 20,000; on PostgreSQL, with the queries seen at the driver
 * (test/helpers/pg-query-count.ts), a write issued while the change is being written is sent
 * before the change's last statement, where it used to wait for the whole change. Creating a
 * group of more than 5,000 (`POST /api/v1/groups`) is written the same way.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { watchPgQueries, type QueryLog } from '../helpers/pg-query-count.ts';
import { apiJson, type TestServer } from '../helpers/server.ts';
import { storeServers, type StoreServer } from '../helpers/store-servers.ts';

const FLEET = 25_000;
const id = (i: number) => `g-${String(i).padStart(5, '0')}`;
const range = (from: number, to: number) => Array.from({ length: to - from }, (_, k) => id(from + k));

function chunkSuite(name: string, start: () => Promise<StoreServer>): void {
  describe(`a large change of a group's members (${name})`, () => {
    let ts: TestServer;
    let stop = async () => {};
    let skip: string | false = false;
    let log: QueryLog | undefined;
    const api = (method: string, route: string, body?: unknown) => apiJson(ts, method, route, body);

    /** Every member of `group`, paged. */
    async function members(group: string): Promise<string[]> {
      const out: string[] = [];
      let after: string | undefined;
      do {
        const r = await api('GET', `/api/v1/groups/${group}?limit=1000${after ? `&after=${after}` : ''}`);
        assert.equal(r.status, 200, JSON.stringify(r.body));
        out.push(...r.body.members);
        after = r.body.next;
      } while (after);
      return out;
    }

    before(async () => {
      if (name === 'PostgreSQL') log = watchPgQueries();
      const started = await start();
      if (typeof started === 'string') {
        skip = started;
        return;
      }
      ({ ts, stop } = started);
      for (let from = 0; from < FLEET; from += 10_000) {
        const r = await api('POST', '/api/v1/devices/bulk', { devices: range(from, Math.min(FLEET, from + 10_000)).map((deviceId) => ({ deviceId })) });
        assert.equal(r.status, 201, JSON.stringify(r.body).slice(0, 300));
      }
      assert.equal((await api('POST', '/api/v1/groups', { name: 'big', devices: range(0, 5_000) })).status, 201);
    });
    after(async () => {
      log?.restore();
      await stop();
    });

    it('adding 20,000 and removing 2,000 at once: the members right after it', async (t) => {
      if (skip) return t.skip(skip);
      // g-04000 in both lists ends a member
      const r = await api('POST', '/api/v1/groups/big/members', { add: [...range(5_000, 25_000), id(4_000)], remove: [...range(0, 2_000), id(4_000)] });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.body.size, 23_000);
      assert.deepEqual(await members('big'), range(2_000, 25_000));
      const removed = await api('POST', '/api/v1/groups/big/members', { remove: range(3_000, 23_000) });
      assert.equal(removed.status, 200, JSON.stringify(removed.body));
      assert.equal(removed.body.size, 3_000);
      assert.deepEqual(await members('big'), [...range(2_000, 3_000), ...range(23_000, 25_000)]);
    });

    it('a refusal writes nothing: an unregistered device among 20,000', async (t) => {
      if (skip) return t.skip(skip);
      const before = await members('big');
      const r = await api('POST', '/api/v1/groups/big/members', { add: [...range(3_000, 23_000), 'nobody'], remove: range(23_000, 25_000) });
      assert.equal(r.status, 404, JSON.stringify(r.body));
      assert.deepEqual(await members('big'), before);
    });

    it('another write issued while the change is written is not held until its end (PostgreSQL)', async (t) => {
      if (skip) return t.skip(skip);
      if (!log) return t.skip('the queries are seen on PostgreSQL only');
      let write: Promise<void> | undefined;
      const { value: r, queries } = await log.during(
        async () => {
          const answer = await api('POST', '/api/v1/groups/big/members', { add: range(3_000, 23_000) });
          await write; // its query seen too, however late
          return answer;
        },
        (text) => {
          // the change's first statement on its way: another write of the instance now
          if (!write && /INSERT INTO group_members|DELETE FROM group_members/.test(text)) write = ts.server.store.putSetting('test:interleaved', 'yes');
        },
      );
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.body.size, 23_000);
      const written = queries.findIndex((q) => /INSERT INTO settings/.test(q));
      const lastOfChange = queries.reduce((last, q, n) => (/INSERT INTO group_members/.test(q) ? n : last), -1);
      assert.ok(written >= 0 && lastOfChange >= 0, 'both seen');
      assert.ok(written < lastOfChange, `the other write (query ${written}) waited for the whole change (its last statement: query ${lastOfChange})`);
    });

    it('creating a group of 25,000: its members right after, the answer as stored', async (t) => {
      if (skip) return t.skip(skip);
      const r = await api('POST', '/api/v1/groups', { name: 'created', devices: [...range(0, FLEET)].reverse(), description: 'whole fleet' });
      assert.equal(r.status, 201, JSON.stringify(r.body).slice(0, 300));
      assert.equal(r.body.size, FLEET);
      const stored = await api('GET', '/api/v1/groups/created?limit=1');
      assert.deepEqual(r.body, stored.body.group, 'the answer is the group as stored');
      assert.equal(stored.body.group.description, 'whole fleet');
      assert.deepEqual(await members('created'), range(0, FLEET));
      const taken = await api('POST', '/api/v1/groups', { name: 'created', devices: range(0, 6_000) });
      assert.equal(taken.status, 409, JSON.stringify(taken.body));
      assert.deepEqual((await api('GET', '/api/v1/groups/created?limit=1')).body.group, stored.body.group, 'a taken name changes nothing');
    });

    it('a creation refused writes nothing: an unregistered device among 20,000', async (t) => {
      if (skip) return t.skip(skip);
      const r = await api('POST', '/api/v1/groups', { name: 'refused', devices: [...range(0, 20_000), 'nobody'] });
      assert.equal(r.status, 404, JSON.stringify(r.body));
      assert.equal((await api('GET', '/api/v1/groups/refused')).status, 404);
    });

    it('another write issued while a group is created is not held until its end (PostgreSQL)', async (t) => {
      if (skip) return t.skip(skip);
      if (!log) return t.skip('the queries are seen on PostgreSQL only');
      let write: Promise<void> | undefined;
      const { value: r, queries } = await log.during(
        async () => {
          const answer = await api('POST', '/api/v1/groups', { name: 'interleaved', devices: range(0, 20_000) });
          await write; // its query seen too, however late
          return answer;
        },
        (text) => {
          // the creation's first statement on its way: another write of the instance now
          if (!write && /INSERT INTO device_groups/.test(text)) write = ts.server.store.putSetting('test:interleaved-create', 'yes');
        },
      );
      assert.equal(r.status, 201, JSON.stringify(r.body));
      assert.equal(r.body.size, 20_000);
      const written = queries.findIndex((q) => /INSERT INTO settings/.test(q));
      const lastOfCreation = queries.reduce((last, q, n) => (/INSERT INTO group_members/.test(q) ? n : last), -1);
      assert.ok(written >= 0 && lastOfCreation >= 0, 'both seen');
      assert.ok(written < lastOfCreation, `the other write (query ${written}) waited for the whole creation (its last statement: query ${lastOfCreation})`);
    });

    /**
     * Creates `group` of 20,000 (four chunks) with the store's third chunk write refused, as a
     * database lost part way does, after `meanwhile` (another request) has run: a delegating
     * wrapper over the real store's changeGroupMembers. Resolves with the creation's answer.
     */
    async function createFailingPartWay(group: string, meanwhile: () => Promise<void>): Promise<{ status: number; body: any }> {
      const store = ts.server.store;
      const real = store.changeGroupMembers;
      let chunks = 0;
      let other = false;
      store.changeGroupMembers = async function (this: typeof store, name, change) {
        if (name === group && !other && ++chunks === 3) {
          other = true;
          await meanwhile();
          throw new Error('connection to the database lost');
        }
        return real.call(this, name, change);
      };
      try {
        return await api('POST', '/api/v1/groups', { name: group, devices: range(0, 20_000) });
      } finally {
        store.changeGroupMembers = real;
      }
    }

    it('a creation failing part way is deleted again, but not a group another request changed or made again meanwhile', async (t) => {
      if (skip) return t.skip(skip);
      const alone = await createFailingPartWay('undone', async () => {});
      assert.equal(alone.status, 500, JSON.stringify(alone.body));
      assert.equal((await api('GET', '/api/v1/groups/undone')).status, 404, 'deleted again');
      assert.equal((await api('POST', '/api/v1/groups', { name: 'undone', devices: range(0, 6_000) })).status, 201, 'and can be created again');

      const changed = await createFailingPartWay('changed', async () => {
        assert.equal((await api('POST', '/api/v1/groups/changed/members', { add: [id(24_000)] })).status, 200);
      });
      assert.equal(changed.status, 500, JSON.stringify(changed.body));
      const kept = await api('GET', '/api/v1/groups/changed?limit=1');
      assert.equal(kept.status, 200, 'a group another request changed meanwhile stays');
      assert.ok((await members('changed')).includes(id(24_000)), 'with that request\'s member');

      const remade = await createFailingPartWay('remade', async () => {
        assert.equal((await api('DELETE', '/api/v1/groups/remade')).status, 200);
        assert.equal((await api('POST', '/api/v1/groups', { name: 'remade', devices: [id(24_001)], description: 'the other one' })).status, 201);
      });
      assert.equal(remade.status, 500, JSON.stringify(remade.body));
      const other = await api('GET', '/api/v1/groups/remade');
      assert.equal(other.status, 200, 'a group deleted and created again meanwhile stays');
      assert.equal(other.body.group.description, 'the other one');
      assert.deepEqual(await members('remade'), [id(24_001)]);
    });
  });
}

for (const [name, start] of storeServers("the PostgreSQL group members' chunks test")) chunkSuite(name, start);
