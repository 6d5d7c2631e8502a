/**
 * The fleet query end to end: a real server, devices reporting their software over MQTT,
 * jobs created by query over HTTP, on the embedded SQLite store and on PostgreSQL. A job
 * created by query targets exactly the devices the query means: `2.10` is 2.10.0 (never the
 * double 2.1), and `deviceId = 7` is the device `7` (never `007` or `0x7`, which Number()
 * reads as 7). An empty query is a 400, never "every device".
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { runCli } from '../helpers/cli.ts';
import { connectIdleDevice, type TestClient } from '../helpers/mqtt-client.ts';
import { apiJson, type TestServer } from '../helpers/server.ts';
import { storeServers, type StoreServer } from '../helpers/store-servers.ts';

/** Each device and the version it reports. */
const FLEET: [string, string][] = [
  ['7', '1.0.0'],
  ['007', '1.0.0'],
  ['0x7', '1.0.0'],
  ['a-210', '2.10.0'],
  ['b-210', '2.10.0'],
  ['c-21', '2.1.0'],
  ['d-19', '1.9.0'],
];

function querySuite(name: string, start: () => Promise<StoreServer>): void {
  describe(`fleet queries end to end (${name})`, () => {
    let ts: TestServer;
    let stop = async () => {};
    let skip: string | false = false;
    const devices: TestClient[] = [];
    const api = (method: string, route: string, body?: unknown) => apiJson(ts, method, route, body);
    /** Creates a job by query; resolves with the ids of the devices it targets (then cancels it). */
    const targetsOf = async (query: string): Promise<string[]> => {
      const created = await api('POST', '/api/v1/jobs', { artifact: 'fw@3.0.0', targets: { query } });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      const jobId = created.body.job.jobId as string;
      const execs = await api('GET', `/api/v1/jobs/${jobId}/executions?limit=100`);
      // a device running a version above 3.0.0 is refused as a downgrade (REJECTED) at once:
      // a job of such devices alone may be COMPLETED before this cancel, which is then 409
      const cancel = await api('POST', `/api/v1/jobs/${jobId}/cancel`);
      if (cancel.status !== 200) {
        assert.equal(cancel.status, 409, JSON.stringify(cancel.body));
        assert.equal((await api('GET', `/api/v1/jobs/${jobId}`)).body.job.status, 'COMPLETED', JSON.stringify(cancel.body));
      }
      assert.equal(execs.body.items.length, created.body.total);
      return execs.body.items.map((x: { deviceId: string }) => x.deviceId).sort();
    };
    const listed = async (query: string): Promise<string[]> => {
      const r = await api('GET', `/api/v1/fleet/devices?query=${encodeURIComponent(query)}`);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      return r.body.items.map((d: { deviceId: string }) => d.deviceId).sort();
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
      // each reports the software it runs over MQTT, into its shadow
      for (const [id, version] of FLEET) devices.push(await connectIdleDevice(ts, id, version));
    });
    after(async () => {
      for (const d of devices) await d.end();
      await stop();
    });

    it('a job by `reported.software.version = 2.10` targets exactly the 2.10.0 devices', async (t) => {
      if (skip) return t.skip(skip);
      assert.deepEqual(await targetsOf('reported.software.version = 2.10'), ['a-210', 'b-210']);
      assert.deepEqual(await targetsOf('reported.software.version = 2.1'), ['c-21']);
      assert.deepEqual(await targetsOf('reported.software.version < 1.10'), ['0x7', '007', '7', 'd-19'].sort(), '1.9.0 precedes 1.10.0');
      assert.deepEqual(await listed('reported.software.version >= 2.10'), ['a-210', 'b-210']);
    });

    it('a job by `deviceId = 7` targets the device 7 only, not 007 or 0x7', async (t) => {
      if (skip) return t.skip(skip);
      assert.deepEqual(await targetsOf('deviceId = 7'), ['7']);
      assert.deepEqual(await targetsOf('deviceId in (7, "0x7")'), ['0x7', '7'].sort());
      assert.deepEqual(await listed('deviceId = 7'), ['7']);
      const group = await api('POST', '/api/v1/groups', { name: 'seven', query: 'deviceId = 7' });
      assert.equal(group.status, 201, JSON.stringify(group.body));
      assert.deepEqual((await api('GET', '/api/v1/groups/seven')).body.members, ['7']);
      assert.deepEqual((await api('GET', '/api/v1/fleet/search?group=seven')).body.items.map((d: { deviceId: string }) => d.deviceId), ['7']);
    });

    it('refuses an empty query (?query=, --query \'\') with 400; no query at all lists every device', async (t) => {
      if (skip) return t.skip(skip);
      for (const q of ['', '%20']) {
        const r = await api('GET', `/api/v1/fleet/devices?query=${q}`);
        assert.equal(r.status, 400, `query=${q}: ${JSON.stringify(r.body)}`);
        assert.match(r.body.error.message, /invalid query: it is empty/);
      }
      const all = await api('GET', '/api/v1/fleet/devices');
      assert.equal(all.status, 200);
      assert.equal(all.body.items.length, FLEET.length);
      assert.equal((await api('POST', '/api/v1/jobs', { artifact: 'fw@3.0.0', targets: { query: '' } })).status, 400);

      const cli = await runCli(['device', 'list', '--query', '', '--server', ts.httpUrl, '--token', ts.token]);
      assert.notEqual(cli.code, 0, cli.stdout);
      assert.match(cli.stderr, /invalid query: it is empty/);
      const cliAll = await runCli(['device', 'list', '--server', ts.httpUrl, '--token', ts.token]);
      assert.equal(cliAll.code, 0, cliAll.stderr);
      for (const [id] of FLEET) assert.match(cliAll.stdout, new RegExp(`^${id} `, 'm'));
    });

    it('the OpenAPI document says where an empty or blank query is refused, and the server refuses it there', async (t) => {
      if (skip) return t.skip(skip);
      const doc = (await api('GET', '/api/v1/openapi.json')).body;
      const param = doc.paths['/api/v1/fleet/devices'].get.parameters.find((p: { name: string }) => p.name === 'query');
      const places = {
        '?query=': param.schema,
        'a group\'s query': doc.paths['/api/v1/groups'].post.requestBody.content['application/json'].schema.properties.query,
        'a job\'s targets.query': doc.components.schemas.Targets.properties.query,
      };
      for (const [where, schema] of Object.entries(places)) {
        assert.equal(schema.type, 'string', where);
        assert.equal(schema.minLength, 1, `${where}: minLength 1`);
        assert.ok(new RegExp(schema.pattern).test('a') && !new RegExp(schema.pattern).test(' \t'), `${where}: a pattern refusing blank text (${schema.pattern})`);
        assert.match(schema.description, /invalid query: it is empty/, where);
      }
      assert.match(doc.paths['/api/v1/fleet/devices'].get.responses['400'].description, /invalid query: it is empty/);
      assert.match(doc.paths['/api/v1/groups'].post.responses['400'].description, /invalid query: it is empty/);
      // as documented
      for (const blank of ['', ' \t']) {
        const answers = [
          await api('GET', `/api/v1/fleet/devices?query=${encodeURIComponent(blank)}`),
          await api('POST', '/api/v1/groups', { name: 'blank', query: blank }),
          await api('POST', '/api/v1/jobs', { artifact: 'fw@3.0.0', targets: { query: blank } }),
        ];
        for (const r of answers) {
          assert.equal(r.status, 400, JSON.stringify(r.body));
          assert.match(r.body.error.message, /invalid query: it is empty/);
        }
      }
    });

    // these add devices to the fleet the tests above count
    it('an array of nulls is missing: `exists` false, as for [] (group, job and listing alike)', async (t) => {
      if (skip) return t.skip(skip);
      const lists: [string, unknown[]][] = [['l-nulls', [null]], ['l-empty', []], ['l-mixed', [null, 'eu']], ['l-zero', [0]]];
      for (const [id, list] of lists) {
        const dev = await connectIdleDevice(ts, id, '1.0.0');
        devices.push(dev);
        const answer = await dev.request(`state/${id}/update`, { state: { reported: { zones: list } } });
        assert.equal(answer.topic, `state/${id}/update/accepted`, JSON.stringify(answer.body));
        // the shadow keeps the array as reported (arrays are whole values)
        assert.deepEqual((await api('GET', `/api/v1/devices/${id}`)).body.shadow.state.reported.zones, list);
      }
      assert.deepEqual(await listed('reported.zones exists'), ['l-mixed', 'l-zero']);
      assert.deepEqual(await listed('deviceId in (l-nulls, l-empty, l-mixed, l-zero) and not reported.zones exists'), ['l-empty', 'l-nulls']);
      assert.deepEqual(await targetsOf('reported.zones exists'), ['l-mixed', 'l-zero']);
      const group = await api('POST', '/api/v1/groups', { name: 'zoned', query: 'reported.zones exists' });
      assert.equal(group.status, 201, JSON.stringify(group.body));
      assert.deepEqual((await api('GET', '/api/v1/groups/zoned')).body.members, ['l-mixed', 'l-zero']);
    });

    it('orders versions with parts past 2^53 by their digits: a job by query targets the one meant', async (t) => {
      if (skip) return t.skip(skip);
      devices.push(await connectIdleDevice(ts, 'big-992', '9007199254740992.0.0'));
      devices.push(await connectIdleDevice(ts, 'big-993', '9007199254740993.0.0'));
      devices.push(await connectIdleDevice(ts, 'rc-big', '2.10.0-rc.18446744073709551617'));
      // Number() read both as 9007199254740992: each matched the other's version
      assert.deepEqual(await targetsOf('reported.software.version = 9007199254740992.0.0'), ['big-992']);
      assert.deepEqual(await listed('reported.software.version > 9007199254740992.0.0'), ['big-993']);
      assert.deepEqual(await listed('reported.software.version >= 2.10.0-rc.18446744073709551616 and reported.software.version < 2.10'), ['rc-big']);
    });
  });
}

for (const [name, start] of storeServers('the PostgreSQL fleet query test')) querySuite(name, start);
