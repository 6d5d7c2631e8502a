/**
 * Query paths into arrays and quoted keys, end to end: devices report arrays of modules and
 * labels and keys with a dash, a dot or a space over MQTT into their shadow; the listing
 * (`GET /api/v1/fleet/devices?query=`), a dynamic group, a job's targets and
 * `updraft device list --query` select on them, on the embedded SQLite store and on
 * PostgreSQL. `[name = modem]` holds both conditions on one element, where two `[*]`
 * conditions may each be met by a different module.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { runCli } from '../helpers/cli.ts';
import { connectDevice, type TestClient } from '../helpers/mqtt-client.ts';
import { apiJson, type TestServer } from '../helpers/server.ts';
import { storeServers, type StoreServer } from '../helpers/store-servers.ts';

/** Each device and what it reports. */
const FLEET: Record<string, Record<string, unknown>> = {
  'm-old': { modules: [{ name: 'modem', version: '1.2.0' }, { name: 'wifi', version: '2.0.0' }], labels: ['lab', 'eu'], 'fw-version': '1.0', 'cfg.v2': true, 'boot slot': 'a' },
  // its modem is new, its wifi module old: two [*] conditions both hold, on different modules
  'm-new': { modules: [{ name: 'modem', version: '1.4.0' }, { name: 'wifi', version: '1.0.0' }], labels: ['eu'], 'fw-version': '2.0' },
  'm-gps': { modules: [{ name: 'gps', version: '0.9.0' }] },
  // not an array: an index or a condition finds nothing in it
  'm-str': { modules: 'modem' },
};

function pathSuite(name: string, start: () => Promise<StoreServer>): void {
  describe(`fleet queries into arrays and quoted keys (${name})`, () => {
    let ts: TestServer;
    let stop = async () => {};
    let skip: string | false = false;
    const devices: TestClient[] = [];
    const api = (method: string, route: string, body?: unknown) => apiJson(ts, method, route, body);
    const listed = async (query: string): Promise<string[]> => {
      const r = await api('GET', `/api/v1/fleet/devices?query=${encodeURIComponent(query)}`);
      assert.equal(r.status, 200, `${query}: ${JSON.stringify(r.body)}`);
      return r.body.items.map((d: { deviceId: string }) => d.deviceId).sort();
    };
    /** Creates a job by query; resolves with the ids of the devices it targets (then cancels it). */
    const targetsOf = async (query: string): Promise<string[]> => {
      const created = await api('POST', '/api/v1/jobs', { artifact: 'fw@3.0.0', targets: { query } });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      const jobId = created.body.job.jobId as string;
      const execs = await api('GET', `/api/v1/jobs/${jobId}/executions?limit=100`);
      assert.equal((await api('POST', `/api/v1/jobs/${jobId}/cancel`)).status, 200);
      return execs.body.items.map((x: { deviceId: string }) => x.deviceId).sort();
    };

    before(async () => {
      const started = await start();
      if (typeof started === 'string') {
        skip = started;
        return;
      }
      ({ ts, stop } = started);
      const added = await fetch(`${ts.httpUrl}/api/v1/artifacts?name=fw&version=3.0.0`, { method: 'POST', headers: { authorization: `Bearer ${ts.token}`, 'content-type': 'application/octet-stream' }, body: new Uint8Array(Buffer.from('three')) });
      assert.equal(added.status, 201, await added.text());
      for (const [id, reported] of Object.entries(FLEET)) {
        const dev = await connectDevice(ts, id);
        devices.push(dev);
        await dev.subscribe(`state/${id}/#`);
        const answer = await dev.request(`state/${id}/update`, { state: { reported } });
        assert.equal(answer.topic, `state/${id}/update/accepted`, JSON.stringify(answer.body));
      }
    });
    after(async () => {
      for (const d of devices) await d.end();
      await stop();
    });

    it('selects on array elements: [n], [*] and [condition]', async (t) => {
      if (skip) return t.skip(skip);
      assert.deepEqual(await listed('reported.modules[name = modem].version < 1.3'), ['m-old']);
      assert.deepEqual(await listed('reported.modules[name = modem and version < 1.3] exists'), ['m-old']);
      // the trap [condition] avoids: each [*] condition is met by some module of m-new
      assert.deepEqual(await listed('reported.modules[*].name = modem and reported.modules[*].version < 1.3'), ['m-new', 'm-old']);
      assert.deepEqual(await listed('reported.modules[*].name = modem'), ['m-new', 'm-old']);
      assert.deepEqual(await listed('reported.modules[*].name != modem'), ['m-gps', 'm-str'], 'no module is named modem');
      assert.deepEqual(await listed('reported.modules[0].version >= 1.4'), ['m-new']);
      assert.deepEqual(await listed('reported.modules[1] exists'), ['m-new', 'm-old']);
      assert.deepEqual(await listed('reported.modules[0] exists'), ['m-gps', 'm-new', 'm-old'], 'a string has no element 0');
      assert.deepEqual(await listed('reported.labels[*] = lab'), ['m-old']);
      assert.deepEqual(await listed('reported.labels[0] = eu'), ['m-new']);
      assert.deepEqual(await listed('reported.labels[1] = eu'), ['m-old']);

      assert.deepEqual(await targetsOf('reported.modules[name = modem].version < 1.3'), ['m-old']);
      const group = await api('POST', '/api/v1/groups', { name: 'old-modem', query: 'reported.modules[name = modem].version < 1.3' });
      assert.equal(group.status, 201, JSON.stringify(group.body));
      assert.deepEqual((await api('GET', '/api/v1/groups/old-modem')).body.members, ['m-old']);
      const cli = await runCli(['device', 'list', '--query', 'reported.modules[name = gps] exists', '--server', ts.httpUrl, '--token', ts.token]);
      assert.equal(cli.code, 0, cli.stderr);
      assert.deepEqual(cli.stdout.trim().split('\n').map((l) => l.split(' ')[0]), ['m-gps'], cli.stdout);
    });

    it('selects on keys quoted as values are: a dash, a dot, a space', async (t) => {
      if (skip) return t.skip(skip);
      assert.deepEqual(await listed('reported."fw-version" = "1.0"'), ['m-old']);
      assert.deepEqual(await listed("reported.'fw-version' >= 2"), ['m-new'], 'a key ending in version compares as a version');
      assert.deepEqual(await listed('reported."cfg.v2" = true'), ['m-old']);
      assert.deepEqual(await listed('reported."boot slot" = a and reported.modules[name = "modem"] exists'), ['m-old']);
      assert.deepEqual(await targetsOf('reported."fw-version" exists'), ['m-new', 'm-old']);
    });

    it('refuses a malformed path with a 400 naming the position', async (t) => {
      if (skip) return t.skip(skip);
      const cases: [string, RegExp][] = [
        ['reported.modules[0', /position 19: expected "\]" to close the "\[" at position 17, found the end of the query/],
        ['reported.modules[-1] exists', /position 18: an index counts elements from 0: -1 is negative/],
        ['reported.modules[] exists', /position 18: empty "\[\]"/],
        ['attributes.model[0] = x', /position 17: attributes hold text, numbers and booleans, never arrays/],
        ['tags[*] = a', /position 5: tags has no elements to index/],
        ['reported."fw-version = 1', /unterminated string/],
        ['reported. "fw-version" = 1', /position 9: "\." is not followed by a name/],
      ];
      for (const [query, re] of cases) {
        const r = await api('GET', `/api/v1/fleet/devices?query=${encodeURIComponent(query)}`);
        assert.equal(r.status, 400, `${query}: ${JSON.stringify(r.body)}`);
        assert.match(r.body.error.message, re, query);
        const g = await api('POST', '/api/v1/groups', { name: 'bad', query });
        assert.equal(g.status, 400, `${query}: ${JSON.stringify(g.body)}`);
      }
    });
  });
}

for (const [name, start] of storeServers('the PostgreSQL fleet query path test')) pathSuite(name, start);
