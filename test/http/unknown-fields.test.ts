/**
 * Write routes refuse a field they do not take (400 `unknown field "<name>"`) rather than drop
 * it: a misspelt option changes what the request does (QA: `{"dryrun": true}` pruned for real,
 * `{"expiresIn": 60}` made a token that never expires, `{"activateIn": 3600}` put a URL key to
 * signing at once, `{"tag": [...]}` registered a device with no tags). Real server, real HTTP;
 * each refusal is checked to have changed nothing.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestServer, type TestServer } from '../helpers/server.ts';

describe('write routes refuse unknown fields', () => {
  let ts: TestServer;
  const call = async (method: string, route: string, body: unknown): Promise<{ status: number; message?: string }> => {
    const res = await fetch(`${ts.httpUrl}${route}`, { method, headers: { authorization: `Bearer ${ts.token}`, 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const json = (await res.json()) as { error?: { message: string } };
    return { status: res.status, ...(json.error ? { message: json.error.message } : {}) };
  };
  const urlKeys = async () => ((await (await fetch(`${ts.httpUrl}/api/v1/keys`, { headers: { authorization: `Bearer ${ts.token}` } })).json()) as { url: unknown[] }).url;

  before(async () => {
    ts = await startTestServer();
    for (const version of ['1.0.0', '2.0.0']) {
      const res = await fetch(`${ts.httpUrl}/api/v1/artifacts?name=p&version=${version}`, { method: 'POST', headers: { authorization: `Bearer ${ts.token}` }, body: new Uint8Array(randomBytes(100)) });
      assert.equal(res.status, 201);
    }
  });
  after(() => ts.close());

  it('POST /api/v1/artifacts/prune: a misspelt dryRun deletes nothing', async () => {
    assert.deepEqual(await call('POST', '/api/v1/artifacts/prune', { keep: 1, name: 'p', dryrun: true }), { status: 400, message: 'unknown field "dryrun" (fields: keep, name, dryRun)' });
    assert.deepEqual((await ts.server.artifacts.all()).map((a) => a.version).sort(), ['1.0.0', '2.0.0']);
  });

  for (const role of ['viewer', 'operator']) {
    it(`POST /api/v1/${role}-tokens: a misspelt expiry makes no token`, async () => {
      assert.deepEqual(await call('POST', `/api/v1/${role}-tokens`, { name: 'x', expiresIn: 60 }), { status: 400, message: 'unknown field "expiresIn" (fields: name, expiresInSeconds)' });
      const list = (await (await fetch(`${ts.httpUrl}/api/v1/${role}-tokens`, { headers: { authorization: `Bearer ${ts.token}` } })).json()) as { items: unknown[] };
      assert.deepEqual(list.items, []);
    });
  }

  it('POST /api/v1/keys/url/rotate: a misspelt delay adds no key', async () => {
    const before = await urlKeys();
    assert.deepEqual(await call('POST', '/api/v1/keys/url/rotate', { activateIn: 3600 }), { status: 400, message: 'unknown field "activateIn" (fields: retire, activateInSeconds)' });
    assert.deepEqual(await urlKeys(), before);
  });

  it('POST /api/v1/keys/url/retire: an unknown field retires nothing', async () => {
    assert.equal((await call('POST', '/api/v1/keys/url/rotate', {})).status, 200);
    const before = await urlKeys();
    // the key the rotation put behind: one that may be retired
    const kid = (before[1] as { kid: string }).kid;
    assert.deepEqual(await call('POST', '/api/v1/keys/url/retire', { kid, force: true }), { status: 400, message: 'unknown field "force" (fields: kid)' });
    assert.deepEqual(await urlKeys(), before);
  });

  it('POST /api/v1/devices: a misspelt tags registers nothing; the fields it takes still work', async () => {
    assert.deepEqual(await call('POST', '/api/v1/devices', { deviceId: 'dev-2', tag: ['line-3'] }), { status: 400, message: 'unknown field "tag" of device dev-2 (fields: deviceId, attributes, tags)' });
    assert.equal(await ts.server.registry.find('dev-2'), undefined);
    assert.equal((await call('POST', '/api/v1/devices', { deviceId: 'dev-3', attributes: { region: 'eu' }, tags: ['line-3'] })).status, 201);
    assert.deepEqual((await ts.server.registry.find('dev-3'))?.tags, ['line-3']);
  });

  it('POST /api/v1/devices/bulk: a misspelt field of one device registers none', async () => {
    const bulk = await call('POST', '/api/v1/devices/bulk', { devices: [{ deviceId: 'bulk-1', tags: ['a'] }, { deviceId: 'bulk-2', tag: ['a'] }] });
    assert.deepEqual(bulk, { status: 400, message: 'unknown field "tag" of device bulk-2 (fields: deviceId, attributes, tags)' });
    assert.equal(await ts.server.registry.find('bulk-1'), undefined, 'all or nothing');
    // and a field beside the list: {"dryRun": true} would register them all
    const top = await call('POST', '/api/v1/devices/bulk', { devices: [{ deviceId: 'bulk-3' }], dryRun: true });
    assert.deepEqual(top, { status: 400, message: 'unknown field "dryRun" (fields: devices)' });
    assert.equal(await ts.server.registry.find('bulk-3'), undefined, 'nothing registered');
  });

  it('names every misspelt field at once', async () => {
    assert.deepEqual(await call('POST', '/api/v1/artifacts/prune', { keep: 1, dryrun: true, nmae: 'p' }), { status: 400, message: 'unknown field "dryrun", "nmae" (fields: keep, name, dryRun)' });
  });

  it('POST /api/v1/devices/:id/certificate: a misspelt csr issues nothing', async () => {
    await ts.server.registry.register({ deviceId: 'cert-1' });
    // {"CSR": ...} would have the key made here and sent back, where the device meant to keep its own
    assert.deepEqual(await call('POST', '/api/v1/devices/cert-1/certificate', { CSR: '-----BEGIN CERTIFICATE REQUEST-----' }), { status: 400, message: 'unknown field "CSR" (fields: csr)' });
  });

  it('PUT /api/v1/keys/signing/certificate: an unknown field is refused', async () => {
    assert.deepEqual(await call('PUT', '/api/v1/keys/signing/certificate', { certificate: {}, rootKey: 'x' }), { status: 400, message: 'unknown field "rootKey" (fields: certificate, rootPublicKey, rootRotations)' });
  });
});
