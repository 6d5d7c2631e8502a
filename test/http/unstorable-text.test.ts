/**
 * Text holding U+0000 or an unpaired surrogate is refused at the edge with a 400 naming where,
 * the same on both stores (src/protocol/json.ts `requireJsonObject`, the router, the route
 * contract's query check, `pageParams`). QA saw SQLite store it and PostgreSQL refuse it in
 * its own words: a job whose `targets.query` held `\ud800` answered 500 INTERNAL "PostgreSQL:
 * invalid input syntax for type json" with an ERROR line, a device's report holding one
 * rejected with code 500, `?after=%00` answered 400 in the database's words. Real server,
 * real MQTT and HTTP, on SQLite and on a private PostgreSQL (test/helpers/postgres.ts).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createLogger } from '../../src/util/logger.ts';
import { TestClient, connectIdleDevice } from '../helpers/mqtt-client.ts';
import { startTestPostgres, unavailable, type TestPostgres } from '../helpers/postgres.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact } from '../security/support.ts';

const NUL = 'holds a NUL character (U+0000), which cannot be stored';
const LONE = 'holds an unpaired surrogate (U+D800), which cannot be stored';

for (const store of ['SQLite', 'PostgreSQL'] as const) {
  describe(`text no store keeps, on ${store}`, () => {
    let pg: TestPostgres | undefined;
    let skip: string | undefined;
    let ts: TestServer;
    let dev: TestClient;
    const logged: string[] = [];

    const call = async (method: string, route: string, body?: unknown): Promise<{ status: number; code?: string; message?: string; json: Record<string, unknown> }> => {
      const res = await fetch(`${ts.httpUrl}${route}`, {
        method,
        headers: { authorization: `Bearer ${ts.token}`, 'content-type': 'application/json' },
        // JSON.stringify writes U+0000 and a lone surrogate as escapes, as a client sends them
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      const json = (await res.json()) as Record<string, unknown> & { error?: { code: string; message: string } };
      return { status: res.status, json, ...(json.error ? { code: json.error.code, message: json.error.message } : {}) };
    };

    before(async () => {
      let db: string | undefined;
      if (store === 'PostgreSQL') {
        const started = await startTestPostgres();
        if (!started.ok) {
          skip = unavailable(started, 'PostgreSQL text refusal test');
          return;
        }
        pg = started.server;
        db = await pg.createDatabase();
      }
      ts = await startTestServer({ flags: db ? { db } : {}, logger: createLogger({ level: 'info', write: (l) => logged.push(l) }) });
      dev = await connectIdleDevice(ts, 'dev-1');
      await addArtifact(ts, '2.0.0', Buffer.alloc(1000, 7));
    });
    after(async () => {
      await dev?.end();
      await ts?.close();
      await pg?.stop();
    });

    it("rejects a device's report holding one with code 400 naming where, and leaves its shadow as it was; a surrogate pair is stored", async (t) => {
      if (skip) return t.skip(skip);
      const before = await dev.request('state/dev-1/get', {});
      assert.equal(before.topic, 'state/dev-1/get/accepted');
      // the payload's text, escapes as a device sends them
      const cases: [string, string][] = [
        ['{"state":{"reported":{"x":"\\ud800x"}},"clientToken":"t-lone"}', `state.reported.x ${LONE}`],
        ['{"state":{"reported":{"x":"a\\u0000b"}},"clientToken":"t-nul"}', `state.reported.x ${NUL}`],
        ['{"state":{"reported":{"cfg":{"list":[1,"\\udc00"]}}},"clientToken":"t-low"}', 'state.reported.cfg.list[1] holds an unpaired surrogate (U+DC00), which cannot be stored'],
        ['{"state":{"reported":{"k\\u0000":1}},"clientToken":"t-key"}', `the key "k\\u0000" in state.reported ${NUL}`],
      ];
      for (const [payload, message] of cases) {
        const token = (JSON.parse(payload) as { clientToken: string }).clientToken;
        const answer = dev.next((m) => m.topic.startsWith('state/dev-1/update/') && m.body?.clientToken === token);
        await dev.publish('state/dev-1/update', payload);
        const got = await answer;
        assert.equal(got.topic, 'state/dev-1/update/rejected', payload);
        assert.equal(got.body.code, 400, payload);
        assert.equal(got.body.message, message);
      }
      const unchanged = await dev.request('state/dev-1/get', {});
      assert.deepEqual(unchanged.body.state, before.body.state);
      assert.equal(unchanged.body.version, before.body.version);

      // an emoji is a surrogate pair: a character like any other, stored and given back
      const emoji = await dev.request('state/dev-1/update', { state: { reported: { mood: '\ud83d\ude00' } } });
      assert.equal(emoji.topic, 'state/dev-1/update/accepted', JSON.stringify(emoji.body));
      assert.equal((await dev.request('state/dev-1/get', {})).body.state.reported.mood, '😀');
      assert.deepEqual(logged.filter((l) => l.includes('ERROR')), []);
    });

    it('refuses a job, a group and a device whose body holds one, naming where, and stores none', async (t) => {
      if (skip) return t.skip(skip);
      const job = await call('POST', '/api/v1/jobs', { artifact: 'fw@2.0.0', targets: { devices: ['dev-1'], query: 'tags.region = "\ud800"' } });
      assert.deepEqual([job.status, job.code, job.message], [400, 'BAD_REQUEST', `targets.query ${LONE}`]);
      const nulJob = await call('POST', '/api/v1/jobs', { artifact: 'fw@2.0.0', targets: { devices: ['dev-1'], query: 'tags.region = "a\u0000"' } });
      assert.deepEqual([nulJob.status, nulJob.message], [400, `targets.query ${NUL}`]);
      assert.deepEqual((await call('GET', '/api/v1/jobs')).json.items, []);

      const group = await call('POST', '/api/v1/groups', { name: 'g-1', query: 'tags.region = "a\u0000"' });
      assert.deepEqual([group.status, group.message], [400, `query ${NUL}`]);
      assert.equal((await call('GET', '/api/v1/groups/g-1')).status, 404);

      const device = await call('POST', '/api/v1/devices', { deviceId: 'dev-2', attributes: { site: '\ud800' } });
      assert.deepEqual([device.status, device.message], [400, `attributes.site ${LONE}`]);
      assert.equal(await ts.server.registry.find('dev-2'), undefined);
      const key = await call('POST', '/api/v1/devices', { deviceId: 'dev-3', attributes: { ['s\u0000']: 'x' } });
      assert.deepEqual([key.status, key.message], [400, `the key "s\\u0000" in attributes ${NUL}`]);

      // the same bodies without it are taken
      assert.equal((await call('POST', '/api/v1/devices', { deviceId: 'dev-2', attributes: { site: 'Zürich 😀' } })).status, 201);
      assert.equal((await call('POST', '/api/v1/groups', { name: 'g-1', query: 'tags.region = eu' })).status, 201);
      assert.deepEqual(logged.filter((l) => l.includes('ERROR')), []);
    });

    it('refuses a name, a cursor or a limit in a URL that no store could hold or that is not a plain number, before any store is asked', async (t) => {
      if (skip) return t.skip(skip);
      const nulQuery = (name: string) => `query parameter "${name}" holds a NUL character (U+0000): nothing stored holds one`;
      const cases: [string, string][] = [
        ['/api/v1/fleet/devices?after=%00', nulQuery('after')],
        ['/api/v1/fleet/search?after=%00', nulQuery('after')],
        ['/api/v1/fleet/search?group=%00', nulQuery('group')],
        ['/api/v1/devices?after=a%00', nulQuery('after')],
        ['/api/v1/groups/a%00b', 'the path segment "a%00b" holds a NUL character (U+0000): nothing stored holds one'],
        ['/api/v1/jobs/x%00/executions', 'the path segment "x%00" holds a NUL character (U+0000): nothing stored holds one'],
        ['/api/v1/devices?limit=0x10', 'limit must be an integer from 1 to 1000, got 0x10'],
        ['/api/v1/devices?limit=1e2', 'limit must be an integer from 1 to 1000, got 1e2'],
        ['/api/v1/devices?limit=%20%205', 'limit must be an integer from 1 to 1000, got   5'],
      ];
      for (const [route, message] of cases) {
        const r = await call('GET', route);
        assert.deepEqual([r.status, r.code, r.message], [400, 'BAD_REQUEST', message], route);
      }
      assert.equal((await call('GET', '/api/v1/devices?limit=05')).status, 200, 'decimal digits, a leading zero among them');
      assert.deepEqual(logged.filter((l) => l.includes('ERROR')), []);
    });
  });
}
