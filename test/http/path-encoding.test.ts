/**
 * The API's token and the viewer's limits hold whatever way a path is written: the router
 * and the checks in front of it read one path. A path that spells a route's fixed words
 * percent-encoded (`/%61pi/...`), or with an empty segment (`/api/v1//broker/...`), is no
 * route: it reached the handlers while the token check, which read the raw path, let it by.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { runCli } from '../helpers/cli.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';

describe('API paths written another way', () => {
  let ts: TestServer;
  let viewer: string;
  const call = (method: string, route: string, token?: string, body?: unknown) =>
    fetch(`${ts.httpUrl}${route}`, { method, headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), 'content-type': 'application/json' }, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });

  before(async () => {
    ts = await startTestServer();
    await registerDevice(ts, 'dev-1');
    const added = await runCli(['token', 'viewer', 'add', 'grafana', '--json', '--server', ts.httpUrl, '--token', ts.token]);
    assert.equal(added.code, 0, added.stderr);
    viewer = (JSON.parse(added.stdout) as { token: string }).token;
  });
  after(() => ts.close());

  it('gives nothing of the API without a token to a path whose fixed words are percent-encoded', async () => {
    for (const route of ['/%61pi/v1/whoami', '/%61pi/v1/broker/credentials', '/api/%761/broker/credentials', '/%61%70%69/v1/devices']) {
      const res = await call('GET', route);
      const text = await res.text();
      assert.ok(!/"role"|brokerHash|"dev-1"/.test(text), `${route}: ${res.status} ${text.slice(0, 200)}`);
    }
    const registered = await call('POST', '/%61pi/v1/devices', undefined, { deviceId: 'evil-1' });
    assert.equal(registered.status, 404, await registered.text());
    assert.equal(await ts.server.store.getDevice('evil-1'), undefined, 'no device registered');
    const minted = await call('POST', '/%61pi/v1/operator-tokens', undefined, { name: 'mallory' });
    assert.equal(minted.status, 404, await minted.text());
    const tokens = (await (await call('GET', '/api/v1/operator-tokens', ts.token)).json()) as { items: { name: string }[] };
    assert.deepEqual(tokens.items.map((t) => t.name), [], 'no operator token minted');
  });

  it("keeps a viewer token from the operator's reads however the path is written", async () => {
    for (const route of ['/api/v1/broker/%63redentials', '/api/v1//broker/credentials', '/api/v1/broker//credentials', '/api/v1/viewer%2Dtokens', '/api//v1/operator-tokens']) {
      const res = await call('GET', route, viewer);
      assert.ok(res.status === 403 || res.status === 404, `${route}: ${res.status}`);
      const text = await res.text();
      assert.ok(!/brokerHash|grafana/.test(text), `${route}: ${text.slice(0, 200)}`);
    }
    assert.equal((await call('GET', '/api/v1/broker/credentials', viewer)).status, 403);
  });

  it('still decodes what a route captures', async () => {
    const res = await call('GET', '/api/v1/devices/dev%2D1', ts.token);
    assert.equal(res.status, 200);
    assert.equal(((await res.json()) as { device: { deviceId: string } }).device.deviceId, 'dev-1');
  });
});
