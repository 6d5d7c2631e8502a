/**
 * A query's listing (`GET /api/v1/fleet/devices?query=`) and a dynamic group's members
 * (`GET /api/v1/groups/{name}`) read at most 10,000 devices per request, as /fleet/search
 * does: on a fleet of 12,001 with two rare matches, one request answers the first with `next`
 * at the 10,000th device, and the next request the other. The CLI (`device list --query`,
 * `group show`, `doctor`) follows `next`. A real server with the fleet registered over HTTP,
 * a device reporting over MQTT, on the embedded SQLite store and on PostgreSQL.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { runCli } from '../helpers/cli.ts';
import { connectDevice, type TestClient } from '../helpers/mqtt-client.ts';
import { apiJson, type TestServer } from '../helpers/server.ts';
import { storeServers, type StoreServer } from '../helpers/store-servers.ts';

/** d-00001 ... d-12000, the rare ones on both sides of the 10,000th. */
const FLEET = 12_000;
const RARE = ['d-00002', 'd-11000'];
const id = (i: number) => `d-${String(i).padStart(5, '0')}`;

function budgetSuite(name: string, start: () => Promise<StoreServer>): void {
  describe(`fleet listings read at most 10,000 devices a request (${name})`, () => {
    let ts: TestServer;
    let stop = async () => {};
    let skip: string | false = false;
    let late: TestClient | undefined;
    const api = (method: string, route: string, body?: unknown) => apiJson(ts, method, route, body);
    const cli = (...args: string[]) => runCli([...args, '--server', ts.httpUrl, '--token', ts.token]);

    before(async () => {
      const started = await start();
      if (typeof started === 'string') {
        skip = started;
        return;
      }
      ({ ts, stop } = started);
      for (let from = 1; from <= FLEET; from += 10_000) {
        const devices = Array.from({ length: Math.min(10_000, FLEET - from + 1) }, (_, k) => {
          const deviceId = id(from + k);
          return { deviceId, ...(RARE.includes(deviceId) ? { attributes: { rare: true } } : {}) };
        });
        const r = await api('POST', '/api/v1/devices/bulk', { devices });
        assert.equal(r.status, 201, JSON.stringify(r.body).slice(0, 500));
      }
      // past every d-: an agent that installs unsigned software, as doctor looks for
      late = await connectDevice(ts, 'z-late');
      await late.subscribe('state/z-late/#');
      const answer = await late.request('state/z-late/update', { state: { reported: { agent: { trust: 'unsigned' } } } });
      assert.equal(answer.topic, 'state/z-late/update/accepted', JSON.stringify(answer.body));
    });
    after(async () => {
      await late?.end();
      await stop();
    });

    it('?query= answers what the first 10,000 devices hold, with next at the 10,000th; the next request the rest', async (t) => {
      if (skip) return t.skip(skip);
      const q = encodeURIComponent('attributes.rare = true');
      const first = await api('GET', `/api/v1/fleet/devices?query=${q}`);
      assert.equal(first.status, 200, JSON.stringify(first.body));
      assert.deepEqual(first.body.items.map((d: { deviceId: string }) => d.deviceId), ['d-00002']);
      assert.equal(first.body.next, id(10_000), 'the last device read');
      assert.equal(first.body.scanned, 10_000, 'the devices read: the whole budget');
      const rest = await api('GET', `/api/v1/fleet/devices?query=${q}&after=${first.body.next}`);
      assert.equal(rest.status, 200, JSON.stringify(rest.body));
      assert.deepEqual(rest.body.items.map((d: { deviceId: string }) => d.deviceId), ['d-11000']);
      assert.equal(rest.body.next, undefined, 'the fleet is read');
      assert.equal(rest.body.scanned, 2_001, 'd-10001 ... d-12000 and z-late');
      // none in the first 10,000: an empty page that goes on
      const none = await api('GET', `/api/v1/fleet/devices?query=${encodeURIComponent('deviceId = z-late')}`);
      assert.deepEqual(none.body, { items: [], next: id(10_000), scanned: 10_000 });
      // as the OpenAPI document says
      const doc = (await api('GET', '/api/v1/openapi.json')).body;
      for (const path of ['/api/v1/fleet/devices', '/api/v1/groups/{name}']) assert.match(doc.paths[path].get.summary, /at most 10,000 devices.*follow next until it is absent/, path);
      const answer = doc.paths['/api/v1/fleet/devices'].get.responses['200'].content['application/json'].schema;
      assert.equal(answer.properties.scanned.type, 'integer');
      assert.ok(answer.required.includes('scanned'));
    });

    it('a page of matches is cut by limit as before, and a listing without a query is not bounded by it', async (t) => {
      if (skip) return t.skip(skip);
      const some = await api('GET', `/api/v1/fleet/devices?limit=3&query=${encodeURIComponent('deviceId exists')}`);
      assert.deepEqual(some.body.items.map((d: { deviceId: string }) => d.deviceId), [id(1), id(2), id(3)]);
      assert.equal(some.body.next, id(3));
      assert.equal(some.body.scanned, 3, 'a full page ends at its last match');
      const full = await api('GET', `/api/v1/fleet/devices?limit=1000&after=${id(9500)}&query=${encodeURIComponent('deviceId exists')}`);
      assert.equal(full.body.items.length, 1000);
      assert.equal(full.body.next, id(10_500));
      assert.equal(full.body.scanned, 1000);
      const all = await api('GET', `/api/v1/fleet/devices?limit=1000&after=${id(11_500)}`);
      assert.equal(all.body.items.length, 501);
      assert.equal(all.body.next, undefined);
      assert.equal(all.body.scanned, 501, 'without a query every device read is listed');
    });

    it("a dynamic group's members come the same way: a page of what 10,000 devices hold, and next", async (t) => {
      if (skip) return t.skip(skip);
      const created = await api('POST', '/api/v1/groups', { name: 'rare', query: 'attributes.rare = true' });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      const first = await api('GET', '/api/v1/groups/rare');
      assert.equal(first.status, 200, JSON.stringify(first.body));
      assert.deepEqual(first.body.members, ['d-00002']);
      assert.equal(first.body.next, id(10_000));
      assert.equal(first.body.scanned, 10_000, 'the devices read: the whole budget');
      const rest = await api('GET', `/api/v1/groups/rare?after=${first.body.next}`);
      assert.deepEqual(rest.body.members, ['d-11000']);
      assert.equal(rest.body.next, undefined);
      assert.equal(rest.body.scanned, 2_001, 'd-10001 ... d-12000 and z-late');
      const some = await api('GET', '/api/v1/groups/rare?limit=1');
      assert.deepEqual({ members: some.body.members, next: some.body.next, scanned: some.body.scanned }, { members: ['d-00002'], next: 'd-00002', scanned: 2 }, 'a full page ends at its last match');
      // a static group's page reads its members listed
      assert.equal((await api('POST', '/api/v1/groups', { name: 'pair', devices: [id(5), id(7)] })).status, 201);
      assert.deepEqual((await api('GET', '/api/v1/groups/pair')).body.scanned, 2);
      // as the OpenAPI document says
      const doc = (await api('GET', '/api/v1/openapi.json')).body;
      const answer = doc.paths['/api/v1/groups/{name}'].get.responses['200'].content['application/json'].schema;
      assert.equal(answer.properties.scanned.type, 'integer');
      assert.ok(answer.required.includes('scanned'));
    });

    it('the CLI follows next: device list --query, group show and doctor find what lies past the 10,000th', async (t) => {
      if (skip) return t.skip(skip);
      const listed = await cli('device', 'list', '--query', 'attributes.rare = true');
      assert.equal(listed.code, 0, listed.stderr);
      assert.deepEqual(listed.stdout.trim().split('\n').map((l) => l.split(' ')[0]), RARE, listed.stdout);
      const json = await cli('device', 'list', '--query', 'attributes.rare = true', '--json');
      assert.deepEqual(JSON.parse(json.stdout).items.map((d: { deviceId: string }) => d.deviceId), RARE);
      assert.equal(JSON.parse(json.stdout).scanned, 12_001, 'the devices read by every request it made');
      // a full page stops there and names where to go on
      const one = await cli('device', 'list', '--query', 'attributes.rare = true', '--limit', '1');
      assert.match(one.stdout, /^d-00002 .*\n\(more: --after d-00002\)\n?$/);
      const late = await cli('device', 'list', '--query', 'deviceId = z-late');
      assert.match(late.stdout, /^z-late /);

      const shown = await cli('group', 'show', 'rare');
      assert.equal(shown.code, 0, shown.stderr);
      assert.deepEqual(shown.stdout.trim().split('\n').slice(1).map((l) => l.trim()), RARE, shown.stdout);
      const shownJson = await cli('group', 'show', 'rare', '--json');
      assert.equal(JSON.parse(shownJson.stdout).scanned, 12_001, 'the devices read by every request it made');

      const doctor = await cli('doctor');
      assert.match(doctor.stdout, /^warn {2}devices {6}z-late accept unsigned software/m, doctor.stdout);
    });
  });
}

for (const [name, start] of storeServers('the PostgreSQL scan budget test')) budgetSuite(name, start);
