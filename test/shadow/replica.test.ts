/** The replica over a real broker (TCP) and a real SQLite store: docs/design.md §2 end to end. */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { eventually } from '../helpers/cli.ts';
import { TestClient, connectDevice } from '../helpers/mqtt-client.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

describe('replica over MQTT', () => {
  let ts: TestServer;
  let dev: TestClient;

  before(async () => {
    ts = await startTestServer();
    dev = await connectDevice(ts, 'dev-1');
    await dev.subscribe('state/dev-1/#');
  });
  after(async () => {
    await dev.end();
    await ts.close();
  });

  it('accepts an update, echoes clientToken, publishes documents and delta', async () => {
    const ans = await dev.request('state/dev-1/update', { state: { reported: { color: 'blue' } } }, 'tok-1');
    assert.equal(ans.topic, 'state/dev-1/update/accepted');
    assert.equal(ans.body.version, 1);
    assert.deepEqual(ans.body.state, { reported: { color: 'blue' } });
    assert.equal(typeof ans.body.metadata.reported.color.timestamp, 'number');
    const docs = await dev.next((m) => m.topic === 'state/dev-1/update/documents' && m.body.clientToken === 'tok-1');
    assert.equal(docs.body.previous, null);
    assert.equal(docs.body.current.version, 1);

    // an operator sets desired: the delta is published to the device
    const op = await TestClient.connect(ts.mqttUrl, 'ops-1', { username: 'operator', password: ts.token });
    await op.publish('state/dev-1/update', { state: { desired: { color: 'red', cfg: { a: 1 } } }, clientToken: 'tok-2' });
    const delta = await dev.next((m) => m.topic === 'state/dev-1/update/delta' && m.body.clientToken === 'tok-2');
    assert.deepEqual(delta.body.state, { color: 'red', cfg: { a: 1 } });
    assert.equal(delta.body.version, 2);
    await op.end();

    // reporting what is desired clears the delta: get shows none
    await dev.request('state/dev-1/update', { state: { reported: { color: 'red', cfg: { a: 1 } } } });
    const got = await dev.request('state/dev-1/get', {});
    assert.equal(got.topic, 'state/dev-1/get/accepted');
    assert.equal(got.body.state.delta, undefined);
    assert.equal(got.body.version, 3);
  });

  it('rejects each kind of bad request with a code, leaving state untouched', async () => {
    const before = (await dev.request('state/dev-1/get', {})).body;
    const cases: [unknown, number, RegExp][] = [
      ['{oops', 400, /^Invalid JSON$/],
      [{ clientToken: 'bad-1' }, 400, /Missing required node: state/],
      [{ state: 'x', clientToken: 'bad-2' }, 400, /State node must be an object/],
      [{ state: { desired: 5 }, clientToken: 'bad-3' }, 400, /Desired node must be an object/],
      [{ state: { reported: { a: 1 } }, version: 'x', clientToken: 'bad-4' }, 400, /Invalid version/],
      [{ state: { reported: { a: { b: { c: { d: { e: { f: { g: 1 } } } } } } } }, clientToken: 'bad-5' }, 400, /nesting/],
      [{ state: { reported: { big: 'x'.repeat(9000) } }, clientToken: 'bad-6' }, 413, /maximum size/],
      [{ state: { reported: { a: 1 } }, version: 1, clientToken: 'bad-7' }, 409, /^Version conflict$/],
      [{ state: { desired: { software: { name: 'fw' } } }, clientToken: 'bad-8' }, 403, /operators only/],
      // the software section the server reads back (a job's outcome): a typo is refused, not ignored
      [{ state: { reported: { software: '2.0.0' } }, clientToken: 'bad-10' }, 400, /^state\.reported\.software must be an object$/],
      [{ state: { reported: { software: { version: '2.0.0', status: 'SUCESS' } } }, clientToken: 'bad-11' }, 400, /^state\.reported\.software\.status must be one of IDLE, DOWNLOADING, VERIFYING, INSTALLING, SUCCESS, FAILURE$/],
      [{ state: { reported: { software: { version: 2, status: 'IDLE' } } }, clientToken: 'bad-12' }, 400, /^state\.reported\.software\.version must be a string$/],
      [{ state: { reported: { software: { status: 'DOWNLOADING', progress: 50 } } }, clientToken: 'bad-13' }, 400, /progress must be a number from 0 to 1$/],
      [{ state: { reported: { software: { size: -1 } } }, clientToken: 'bad-14' }, 400, /size must be a non-negative integer$/],
      [{ state: { reported: { software: { jobId: 7 } } }, clientToken: 'bad-15' }, 400, /jobId must be a string$/],
      [{ state: { reported: { software: { keySerial: '2' } } }, clientToken: 'bad-16' }, 400, /^state\.reported\.software\.keySerial must be a non-negative integer$/],
      [{ state: { reported: { software: { status: 'VERIFYING', waiting: { reason: 'battery low', count: 1, nextCheckInSeconds: 86_401 } } } }, clientToken: 'bad-17' }, 400, /^state\.reported\.software\.waiting must be null or \{reason: a string of at most 500 characters, count: a whole number from 1, nextCheckInSeconds: above 0 and at most 86400\}$/],
      [{ state: { reported: { software: { status: 'VERIFYING', waiting: { reason: 'x'.repeat(501), count: 1, nextCheckInSeconds: 60 } } } }, clientToken: 'bad-18' }, 400, /waiting must be null or/],
      [{ state: { reported: { software: { status: 'VERIFYING', waiting: { count: 2 } } } }, clientToken: 'bad-19' }, 400, /waiting must be null or/],
      [{ state: { reported: { software: { status: 'SUCCESS', version: '3.0.0', jobVersion: 2 } } }, clientToken: 'bad-20' }, 400, /^state\.reported\.software\.jobVersion must be a string$/],
    ];
    for (const [body, code, message] of cases) {
      const token = typeof body === 'object' ? (body as { clientToken: string }).clientToken : undefined;
      const wait = dev.next((m) => m.topic === 'state/dev-1/update/rejected' && (token ? m.body.clientToken === token : m.body.clientToken === undefined && m.body.message === 'Invalid JSON'));
      await dev.publish('state/dev-1/update', body);
      const rej = await wait;
      assert.equal(rej.body.code, code, `code for ${JSON.stringify(body).slice(0, 60)}`);
      assert.match(rej.body.message, message);
      assert.equal(typeof rej.body.timestamp, 'number');
    }
    // an own "__proto__" (only raw JSON makes one): merged, it would have reached Object.prototype
    const wait = dev.next((m) => m.topic === 'state/dev-1/update/rejected' && m.body.clientToken === 'bad-9');
    await dev.publish('state/dev-1/update', '{"state":{"reported":{"cfg":{"__proto__":{"polluted":1}}}},"clientToken":"bad-9"}');
    const rej = await wait;
    assert.equal(rej.body.code, 400);
    assert.match(rej.body.message, /Invalid attribute name "__proto__" in the reported node/);
    assert.equal(({} as Record<string, unknown>).polluted, undefined, 'Object.prototype untouched');
    const after = (await dev.request('state/dev-1/get', {})).body;
    assert.equal(after.version, before.version, 'no rejected request changed the version');
    assert.deepEqual(after.state, before.state);
  });

  it('accepts a partial software report: only the fields present are checked, null deletes one', async () => {
    const d = await connectDevice(ts, 'dev-sw');
    await d.subscribe('state/dev-sw/#');
    const full = { name: 'fw', version: '1.0.0', sha256: null, size: 1024, jobId: 'job-1', status: 'DOWNLOADING', progress: 0.5, error: null, vendorField: { any: 'thing' } };
    assert.equal((await d.request('state/dev-sw/update', { state: { reported: { software: full } } })).topic, 'state/dev-sw/update/accepted');
    const partial = await d.request('state/dev-sw/update', { state: { reported: { software: { status: 'INSTALLING', progress: null } } } });
    assert.equal(partial.topic, 'state/dev-sw/update/accepted');
    const got = await d.request('state/dev-sw/get', {});
    assert.deepEqual(got.body.state.reported.software, { name: 'fw', version: '1.0.0', size: 1024, jobId: 'job-1', status: 'INSTALLING', vendorField: { any: 'thing' } });
    await d.end();
  });

  it('answers get and delete of a missing shadow with 404', async () => {
    const other = await connectDevice(ts, 'dev-404');
    await other.subscribe('state/dev-404/#');
    const got = await other.request('state/dev-404/get', {});
    assert.equal(got.topic, 'state/dev-404/get/rejected');
    assert.equal(got.body.code, 404);
    assert.equal(got.body.message, "No shadow exists with name: 'dev-404'");
    const del = await other.request('state/dev-404/delete', {});
    assert.equal(del.body.code, 404);
    await other.end();
  });

  it('lets a device clear a desired state of its own that holds no software', async () => {
    const d = await connectDevice(ts, 'dev-own');
    await d.subscribe('state/dev-own/#');
    for (const desired of [{ software: null }, null]) {
      assert.equal((await d.request('state/dev-own/update', { state: { desired: { color: 'red' } } })).topic, 'state/dev-own/update/accepted');
      const cleared = await d.request('state/dev-own/update', { state: { desired } });
      assert.equal(cleared.topic, 'state/dev-own/update/accepted', JSON.stringify(cleared.body));
    }
    assert.equal((await d.request('state/dev-own/get', {})).body.state.desired, undefined);
    await d.end();
  });

  it("refuses a device's delete of its shadow while it holds desired.software (the operator's command); the operator may", async () => {
    const d = await connectDevice(ts, 'dev-cmd');
    await d.subscribe('state/dev-cmd/#');
    const op = await TestClient.connect(ts.mqttUrl, 'ops-del', { username: 'operator', password: ts.token });
    await op.subscribe('state/dev-cmd/#');
    const software = { name: 'fw', version: '2.0.0', sha256: 'a'.repeat(64), size: 10, jobId: 'job-del' };
    assert.equal((await op.request('state/dev-cmd/update', { state: { desired: { software } } })).topic, 'state/dev-cmd/update/accepted');
    const refused = await d.request('state/dev-cmd/delete', {});
    assert.equal(refused.topic, 'state/dev-cmd/delete/rejected');
    assert.deepEqual([refused.body.code, refused.body.message], [403, 'desired.software can be removed by operators only: this shadow holds it']);
    const kept = await d.request('state/dev-cmd/get', {});
    assert.equal(kept.body.state.desired.software.jobId, 'job-del', 'the command is still there');
    // nor may it clear the command with desired: null, or software: null
    for (const desired of [null, { software: null }]) {
      const cleared = await d.request('state/dev-cmd/update', { state: { desired } });
      assert.deepEqual([cleared.body.code, cleared.body.message], [403, 'desired.software can be removed by operators only: this shadow holds it'], JSON.stringify(desired));
    }
    assert.equal((await d.request('state/dev-cmd/get', {})).body.state.desired.software.jobId, 'job-del');
    // a named shadow is the device's own
    await d.request('state/dev-cmd/shadow/cfg/update', { state: { reported: { a: 1 } } });
    assert.equal((await d.request('state/dev-cmd/shadow/cfg/delete', {})).topic, 'state/dev-cmd/shadow/cfg/delete/accepted');
    assert.equal((await op.request('state/dev-cmd/delete', {})).topic, 'state/dev-cmd/delete/accepted');
    await op.end();
    await d.end();
  });

  it('never reuses a version across delete, and supports named shadows', async () => {
    const a = await connectDevice(ts, 'dev-del');
    await a.subscribe('state/dev-del/#');
    await a.request('state/dev-del/update', { state: { reported: { a: 1 } } });
    const v2 = await a.request('state/dev-del/update', { state: { reported: { a: 2 } } });
    assert.equal(v2.body.version, 2);
    const del = await a.request('state/dev-del/delete', {});
    assert.equal(del.topic, 'state/dev-del/delete/accepted');
    assert.equal((await a.request('state/dev-del/get', {})).body.code, 404);
    const again = await a.request('state/dev-del/update', { state: { reported: { b: 1 } } });
    assert.ok(again.body.version > 2, `version ${again.body.version} must not be reused`);
    const named = await a.request('state/dev-del/shadow/config/update', { state: { reported: { mode: 'eco' } } });
    assert.equal(named.topic, 'state/dev-del/shadow/config/update/accepted');
    assert.equal(named.body.version, 1, 'a named shadow has its own version');
    await a.end();
  });

  it('keeps devices apart: refused cross-device subscription, dropped cross-device publish', async () => {
    const eve = await connectDevice(ts, 'dev-eve');
    const granted = await eve.subscribe('state/dev-1/update/delta', 'state/+/update/delta', 'state/dev-eve/update/accepted');
    assert.deepEqual(granted, [128, 128, 1]);
    const before = (await dev.request('state/dev-1/get', {})).body.version;
    await eve.publish('state/dev-1/update', { state: { reported: { hacked: true } } });
    await eve.publish('state/dev-1/update/accepted', { fake: true });
    // a later request of dev-1 is answered in order after anything eve could have caused
    const after = await dev.request('state/dev-1/get', {});
    assert.equal(after.body.version, before);
    assert.equal(after.body.state.reported.hacked, undefined);
    assert.ok(!dev.log.some((m) => m.body?.fake === true), 'a device cannot publish answers');
    assert.ok(eve.client.connected, 'the offender stays connected: its publish is dropped, not fatal');
    await eve.end();
  });
  it("discards a device's presence messages: this broker sees connections itself (neither routed, retained nor counted)", async () => {
    const tool = await TestClient.connect(ts.mqttUrl, 'ops-presence', { username: 'operator', password: ts.token });
    await tool.subscribe('state/dev-pres/#');
    const pres = await connectDevice(ts, 'dev-pres');
    await pres.subscribe('state/dev-pres/update/accepted');
    const published = () => ts.server.broker.stats.published;
    const before = published();
    await pres.publish('state/dev-pres/presence', { online: true }, { retain: true });
    await pres.request('state/dev-pres/update', { state: { reported: { n: 1 } } }, 'pres-1');
    // the request, sent after the presence message on the same connection, is routed after
    // anything the broker routed of that message (it handles a connection's packets in order)
    await tool.next((m) => m.topic === 'state/dev-pres/update');
    await eventually(async () => (published() - before >= 3 ? true : undefined), 10_000, 'the request counted');
    assert.deepEqual(tool.log.map((m) => m.topic).sort(), ['state/dev-pres/update', 'state/dev-pres/update/accepted', 'state/dev-pres/update/documents']);
    assert.equal(published() - before, 3, 'the request, its accepted and its documents; the presence message went nowhere');
    // a subscriber that comes later gets no retained presence (it would come before the answer)
    const late = await TestClient.connect(ts.mqttUrl, 'ops-presence-late', { username: 'operator', password: ts.token });
    await late.subscribe('state/dev-pres/#');
    await pres.request('state/dev-pres/update', { state: { reported: { n: 2 } } }, 'pres-2');
    await late.next((m) => m.topic === 'state/dev-pres/update');
    assert.ok(!late.log.some((m) => m.topic === 'state/dev-pres/presence'), 'nothing retained');
    assert.ok(pres.client.connected, 'the device stays connected');
    const device = await (await fetch(`${ts.httpUrl}/api/v1/devices/dev-pres`, { headers: { authorization: `Bearer ${ts.token}` } })).json();
    assert.equal(device.online, true, 'presence comes from the connection');
    await Promise.all([tool.end(), late.end(), pres.end()]);
  });
  it('publishes update/documents only while someone subscribes to it (agents never do)', async () => {
    const lean = await connectDevice(ts, 'dev-lean');
    await lean.subscribe('state/dev-lean/update/accepted', 'state/dev-lean/update/rejected', 'state/dev-lean/update/delta');
    const published = () => ts.server.broker.stats.published;
    const before = published();
    await lean.request('state/dev-lean/update', { state: { reported: { n: 1 } } }, 'lean-1');
    // the request is counted as aedes forwards it, after its PUBACK, which waits for the answers
    await eventually(async () => (published() - before >= 2 ? true : undefined), 10_000, 'the request counted');
    assert.equal(published() - before, 2, 'the request and its accepted, no documents');
    // a tool subscribing to every shadow's documents brings them back
    const tool = await TestClient.connect(ts.mqttUrl, 'ops-docs', { username: 'operator', password: ts.token });
    await tool.subscribe('state/+/update/documents');
    await lean.request('state/dev-lean/update', { state: { reported: { n: 2 } } }, 'lean-2');
    const docs = await tool.next((m) => m.topic === 'state/dev-lean/update/documents' && m.body.clientToken === 'lean-2');
    assert.equal(docs.body.current.state.reported.n, 2);
    await tool.end();
    // the tool's clean session ended: nobody listens again (once the broker has seen it go)
    await eventually(async () => (ts.server.broker.hasSubscribers('state/dev-lean/update/documents') ? undefined : true), 10_000, 'the subscription gone');
    const mark = published();
    await lean.request('state/dev-lean/update', { state: { reported: { n: 3 } } }, 'lean-3');
    await eventually(async () => (published() - mark >= 2 ? true : undefined), 10_000, 'the request counted');
    assert.equal(published() - mark, 2);
    await lean.end();
  });
});
