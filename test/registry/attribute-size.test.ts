/**
 * A device's attributes are bounded as a whole (MAX_ATTRIBUTES_BYTES, 16 KiB as JSON): each
 * PATCH under the 1 MiB body limit once merged another megabyte in, and 20 of them made a
 * 20 MB device record and a 20 MB first page of `GET /api/v1/devices`. Registration and
 * PATCH agree on the bound; a refusal is 413 and writes nothing.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestServer, type TestServer } from '../helpers/server.ts';

const LIMIT = 16 * 1024;
const size = (attributes: unknown) => Buffer.byteLength(JSON.stringify(attributes));

describe('the size of a device\'s attributes', () => {
  let ts: TestServer;
  before(async () => {
    ts = await startTestServer();
  });
  after(() => ts.close());

  const api = (method: string, route: string, body?: unknown) =>
    fetch(`${ts.httpUrl}${route}`, {
      method,
      headers: { authorization: `Bearer ${ts.token}`, 'content-type': 'application/json' },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    }).then(async (r) => ({ status: r.status, body: (await r.json()) as { error?: { message: string } } & Record<string, unknown> }));

  it('refuses PATCHes that would grow them beyond 16 KiB, writing nothing', async () => {
    assert.equal((await api('POST', '/api/v1/devices', { deviceId: 'grow-1', attributes: { site: 'Zürich' } })).status, 201);
    const statuses: number[] = [];
    for (let i = 0; i < 20; i++) {
      const r = await api('PATCH', '/api/v1/devices/grow-1', { attributes: { [`blob${i}`]: 'x'.repeat(1_000_000) } });
      statuses.push(r.status);
      if (i === 0) assert.match(r.body.error!.message, /^attributes of device grow-1 would take 1000\d{3} bytes as JSON; a device's attributes take at most 16384 \(16 KiB\): set fewer or shorter ones \(a null value removes a key\); nothing was changed$/);
    }
    assert.deepEqual(statuses, Array(20).fill(413));
    const device = await ts.server.registry.get('grow-1');
    assert.deepEqual([device.attributes, device.version], [{ site: 'Zürich' }, 1], 'nothing written');

    // many small PATCHes: the merged whole is what is bounded
    let accepted = 0;
    for (let i = 0; i < 20; i++) {
      const r = await api('PATCH', '/api/v1/devices/grow-1', { attributes: { [`note${i}`]: 'y'.repeat(1000) } });
      if (r.status === 200) accepted++;
      else assert.equal(r.status, 413, JSON.stringify(r.body));
    }
    const after = ((await api('GET', '/api/v1/devices/grow-1')).body.device as { attributes: Record<string, unknown> }).attributes;
    assert.equal(accepted, 16, 'sixteen 1,000-character notes fit in 16 KiB, the seventeenth does not');
    assert.ok(size(after) <= LIMIT, `${size(after)} bytes`);
    const page = await fetch(`${ts.httpUrl}/api/v1/devices`, { headers: { authorization: `Bearer ${ts.token}` } }).then((r) => r.text());
    assert.ok(page.length < 2 * LIMIT, `the first page is ${page.length} characters`);
    // removing a key while setting another one works as long as the result fits
    const swap = await api('PATCH', '/api/v1/devices/grow-1', { attributes: { note0: null, other: 'z'.repeat(900) } });
    assert.equal(swap.status, 200, JSON.stringify(swap.body));
  });

  it('bounds registration the same way: 16 KiB are taken, a byte more is refused', async () => {
    // {"a":"..."} is 8 bytes around the value
    const exact = { a: 'x'.repeat(LIMIT - 8) };
    assert.equal(size(exact), LIMIT);
    assert.equal((await api('POST', '/api/v1/devices', { deviceId: 'reg-fit', attributes: exact })).status, 201);
    const over = await api('POST', '/api/v1/devices', { deviceId: 'reg-over', attributes: { a: 'x'.repeat(LIMIT - 7) } });
    assert.deepEqual([over.status, over.body.error?.message], [413, `attributes of device reg-over would take ${LIMIT + 1} bytes as JSON; a device's attributes take at most 16384 (16 KiB): give fewer or shorter ones (a null value removes a key); nothing was changed`]);
    assert.equal(await ts.server.registry.find('reg-over'), undefined);
    const bulk = await api('POST', '/api/v1/devices/bulk', { devices: [{ deviceId: 'bulk-fit' }, { deviceId: 'bulk-over', attributes: { a: 'x'.repeat(LIMIT) } }] });
    assert.equal(bulk.status, 413, JSON.stringify(bulk.body));
    assert.equal(await ts.server.registry.find('bulk-fit'), undefined, 'all or nothing');
    // a device at the limit takes a PATCH that keeps it there
    assert.equal((await api('PATCH', '/api/v1/devices/reg-fit', { attributes: { a: 'y'.repeat(LIMIT - 8) } })).status, 200);
    assert.equal((await api('PATCH', '/api/v1/devices/reg-fit', { attributes: { b: 1 } })).status, 413);
  });

  it('lets a record stored before the bound shrink step by step', async () => {
    assert.equal((await api('POST', '/api/v1/devices', { deviceId: 'old-1' })).status, 201);
    const stored = await ts.server.store.getDevice('old-1');
    const big = { a: 'x'.repeat(30_000), b: 'x'.repeat(30_000), c: 1 };
    assert.ok(await ts.server.store.updateDevice({ ...stored!, attributes: big, version: stored!.version + 1 }));
    assert.equal((await api('PATCH', '/api/v1/devices/old-1', { attributes: { d: 'grow' } })).status, 413, 'it may not grow');
    assert.equal((await api('PATCH', '/api/v1/devices/old-1', { attributes: { a: null } })).status, 200, 'it may shrink, still over the bound');
    assert.equal((await api('PATCH', '/api/v1/devices/old-1', { attributes: { c: 2 } })).status, 200, 'a change that does not grow it is taken');
  });
});
