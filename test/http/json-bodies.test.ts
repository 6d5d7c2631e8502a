/**
 * What an operator's JSON body holds is stored as it was sent, or refused with 400 naming the
 * problem (readJson in src/http/respond.ts): QA saw `PATCH /api/v1/devices/:id` with
 * `{"attributes":{"big":1e999}}` answered 200 and `big` stored as null (JSON.parse makes the
 * number Infinity, JSON.stringify writes that as null), and a body whose bytes are not UTF-8
 * stored with U+FFFD in place of them. Real server, real HTTP; each refusal changes nothing.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestServer, type TestServer } from '../helpers/server.ts';

describe('JSON request bodies', () => {
  let ts: TestServer;
  /** Sends `body` as it is (bytes or text). */
  const call = async (method: string, route: string, body: string | Uint8Array<ArrayBuffer>): Promise<{ status: number; message?: string; json: Record<string, unknown> }> => {
    const res = await fetch(`${ts.httpUrl}${route}`, { method, headers: { authorization: `Bearer ${ts.token}`, 'content-type': 'application/json' }, body });
    const json = (await res.json()) as Record<string, unknown> & { error?: { message: string } };
    return { status: res.status, json, ...(json.error ? { message: json.error.message } : {}) };
  };

  before(async () => {
    ts = await startTestServer();
    await ts.server.registry.register({ deviceId: 'jb-1', attributes: { big: 1, site: 'Zürich' } });
  });
  after(() => ts.close());

  it('refuses a number beyond the double range, naming it, and stores nothing', async () => {
    for (const literal of ['1e999', '-1e999', '1' + '0'.repeat(400)]) {
      const r = await call('PATCH', '/api/v1/devices/jb-1', `{"attributes":{"big":${literal}}}`);
      assert.equal(r.status, 400, literal);
      assert.equal(r.message, 'attributes.big is not a finite number: a JSON number beyond the double range (about ±1.8e308) cannot be stored');
    }
    assert.deepEqual((await ts.server.registry.get('jb-1')).attributes, { big: 1, site: 'Zürich' });

    const bulk = await call('POST', '/api/v1/devices/bulk', '{"devices":[{"deviceId":"jb-2"},{"deviceId":"jb-3","attributes":{"n":-2e400}}]}');
    assert.equal(bulk.status, 400);
    assert.match(bulk.message!, /^devices\[1\]\.attributes\.n is not a finite number/);
    assert.equal(await ts.server.registry.find('jb-2'), undefined, 'nothing registered');

    // a large finite number and a small one are numbers as ever
    const ok = await call('PATCH', '/api/v1/devices/jb-1', '{"attributes":{"big":1.7e308,"tiny":1e-400}}');
    assert.equal(ok.status, 200);
    assert.deepEqual((await ts.server.registry.get('jb-1')).attributes, { big: 1.7e308, site: 'Zürich', tiny: 0 });
  });

  it('refuses a body nested deeper than 64 levels with 400 naming the limit, however deep, and stores nothing', async () => {
    const deepMessage = 'request body is nested too deep: objects and arrays may nest at most 64 levels';
    const before = (await ts.server.registry.get('jb-1')).attributes;
    const nested = (levels: number) => '['.repeat(levels) + '"x"' + ']'.repeat(levels);
    // the body is level 1, attributes level 2: 62 arrays make 64 levels, which the route itself answers
    const at = await call('PATCH', '/api/v1/devices/jb-1', `{"attributes":{"x":${nested(62)}}}`);
    assert.deepEqual([at.status, at.message], [400, 'attribute x must be a string, number or boolean']);
    const past = await call('PATCH', '/api/v1/devices/jb-1', `{"attributes":{"x":${nested(63)}}}`);
    assert.deepEqual([past.status, past.message], [400, deepMessage]);
    // half a million levels fit in the 1 MiB limit: JSON.parse builds them, the check stops at 65
    const deep = `{"attributes":{"x":${nested(500_000)}}}`;
    assert.ok(deep.length <= 1 << 20);
    const huge = await call('PATCH', '/api/v1/devices/jb-1', deep);
    assert.deepEqual([huge.status, huge.message], [400, deepMessage]);
    const objects = await call('POST', '/api/v1/devices', `{"deviceId":"jb-5","attributes":${'{"a":'.repeat(100_000)}1${'}'.repeat(100_000)}}`);
    assert.deepEqual([objects.status, objects.message], [400, deepMessage]);
    assert.equal(await ts.server.registry.find('jb-5'), undefined, 'nothing registered');
    // where a route turned such a value into text (an id, a group name), that recursed: a 500
    // 'Maximum call stack size exceeded' at 200,000 levels
    const deepArray = nested(200_000);
    const id = await call('POST', '/api/v1/devices', `{"deviceId":${deepArray}}`);
    assert.deepEqual([id.status, id.message], [400, deepMessage]);
    const group = await call('POST', '/api/v1/groups', `{"name":${deepArray},"devices":["jb-1"]}`);
    assert.deepEqual([group.status, group.message], [400, deepMessage]);
    assert.deepEqual((await ts.server.registry.get('jb-1')).attributes, before, 'nothing changed');
  });

  it('refuses a body whose bytes are not UTF-8, and stores nothing', async () => {
    const bytes = (s: string, bad: number[]) => {
      const [head, tail] = s.split('<bad>');
      return new Uint8Array(Buffer.concat([Buffer.from(head!), Buffer.from(bad), Buffer.from(tail!)]));
    };
    const patch = await call('PATCH', '/api/v1/devices/jb-1', bytes('{"attributes":{"site":"<bad>"}}', [0xff, 0xfe, 0xc3]));
    assert.deepEqual([patch.status, patch.message], [400, 'request body is not UTF-8: send JSON encoded as UTF-8']);
    assert.equal((await ts.server.registry.get('jb-1')).attributes.site, 'Zürich');

    const register = await call('POST', '/api/v1/devices', bytes('{"deviceId":"jb-4","attributes":{"site":"Z<bad>rich"}}', [0xfc]));
    assert.deepEqual([register.status, register.message], [400, 'request body is not UTF-8: send JSON encoded as UTF-8']);
    assert.equal(await ts.server.registry.find('jb-4'), undefined);

    // UTF-8 as it should be, four-byte characters included, is taken as sent
    const good = await call('PATCH', '/api/v1/devices/jb-1', new TextEncoder().encode('{"attributes":{"site":"Zürich 🏔"}}'));
    assert.equal(good.status, 200);
    assert.equal((await ts.server.registry.get('jb-1')).attributes.site, 'Zürich 🏔');
  });
});
