/**
 * Read-only viewer tokens (src/server/named-tokens.ts) on a real server: added and removed
 * with the real CLI, used over HTTP, MQTT and the live event stream.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import mqtt from 'mqtt';
import { runCli } from '../helpers/cli.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact } from '../security/support.ts';

describe('viewer tokens', () => {
  let ts: TestServer;
  let viewer: string;
  const cli = (...args: string[]) => runCli([...args, '--server', ts.httpUrl, '--token', ts.token]);
  const call = (token: string, method: string, route: string, body?: unknown, headers: Record<string, string> = {}) =>
    fetch(`${ts.httpUrl}${route}`, { method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', ...headers }, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });

  before(async () => {
    ts = await startTestServer();
    await addArtifact(ts, '2.0.0', randomBytes(1000));
    await registerDevice(ts, 'v-1');
  });
  after(() => ts.close());

  it('is added with the CLI, shown once, and listed by name only', async () => {
    const added = await cli('token', 'viewer', 'add', 'prometheus', '--json');
    assert.equal(added.code, 0, added.stderr);
    const r = JSON.parse(added.stdout) as { name: string; token: string };
    assert.equal(r.name, 'prometheus');
    assert.match(r.token, /^updr_view_[A-Za-z0-9_-]{32}$/);
    viewer = r.token;
    const listed = await cli('token', 'viewer', 'list');
    assert.match(listed.stdout, /^prometheus  added \d{4}-\d\d-\d\dT/m);
    assert.ok(!listed.stdout.includes(viewer), 'never the token itself');
    const again = await cli('token', 'viewer', 'add', 'prometheus');
    assert.equal(again.code, 2);
    assert.match(again.stderr.trim(), /a viewer token named prometheus exists: remove it first/);
    const bad = await cli('token', 'viewer', 'add', 'no spaces');
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /a viewer token name is 1 to 64 characters/);
  });

  it('reads: metrics for Prometheus, devices, jobs, a dry run; the CLI with it too', async () => {
    const metrics = await call(viewer, 'GET', '/api/v1/metrics', undefined, { accept: 'text/plain' });
    assert.equal(metrics.status, 200);
    assert.match(await metrics.text(), /^updraft_online_devices 0$/m);
    assert.equal((await call(viewer, 'GET', '/api/v1/devices/v-1')).status, 200);
    assert.deepEqual(await (await call(viewer, 'GET', '/api/v1/whoami')).json(), { role: 'viewer', name: 'prometheus' });
    assert.deepEqual(await (await call(ts.token, 'GET', '/api/v1/whoami')).json(), { role: 'operator' });
    const preview = await call(viewer, 'POST', '/api/v1/jobs/preview', { artifact: 'fw@2.0.0', targets: { devices: ['v-1'] } });
    assert.equal(preview.status, 200, await preview.clone().text());
    const listed = await runCli(['device', 'list', '--server', ts.httpUrl, '--token', viewer]);
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout, /v-1/);
  });

  it('changes nothing: every change is refused with 403 and the reason, and nothing is stored', async () => {
    const jobsBefore = await (await call(ts.token, 'GET', '/api/v1/jobs')).json();
    const refused: [string, string, unknown][] = [
      ['POST', '/api/v1/jobs', { artifact: 'fw@2.0.0', targets: { devices: ['v-1'] } }],
      ['POST', '/api/v1/deployments', { devices: ['v-1'], artifact: 'fw@2.0.0' }],
      ['POST', '/api/v1/devices/v-1/revoke', {}],
      ['DELETE', '/api/v1/artifacts/fw/2.0.0', undefined],
      ['POST', '/api/v1/operator-token/rotate', {}],
      ['POST', '/api/v1/viewer-tokens', { name: 'mine' }],
    ];
    for (const [method, route, body] of refused) {
      const res = await call(viewer, method, route, body);
      assert.equal(res.status, 403, `${method} ${route}`);
      assert.deepEqual(((await res.json()) as { error: unknown }).error, { code: 'FORBIDDEN', message: `the viewer token prometheus is read-only: ${method} ${route} needs the operator token` });
    }
    // reads that hand out secrets are the operator's, and the broker's CRL (RSA signatures on a change)
    for (const route of ['/api/v1/broker/credentials?ids=v-1', '/api/v1/broker/crl', '/api/v1/viewer-tokens']) assert.equal((await call(viewer, 'GET', route)).status, 403, route);
    assert.deepEqual(await (await call(ts.token, 'GET', '/api/v1/jobs')).json(), jobsBefore, 'no job created');
    assert.equal((await (await call(ts.token, 'GET', '/api/v1/devices/v-1')).json() as { device: { revoked: boolean } }).device.revoked, false);
    const revoke = await runCli(['device', 'revoke', 'v-1', '--server', ts.httpUrl, '--token', viewer]);
    assert.equal(revoke.code, 2);
    assert.equal(revoke.stderr.trim().split('\n').length, 1, revoke.stderr);
    assert.match(revoke.stderr, /read-only/);
  });

  it('is no MQTT password: the broker refuses it as the operator', async () => {
    const client = mqtt.connect(ts.mqttUrl, { username: 'operator', password: viewer, reconnectPeriod: 0, connectTimeout: 5000 });
    const err = await new Promise<Error & { code?: number }>((resolve, reject) => {
      client.once('connect', () => reject(new Error('connected with a viewer token')));
      client.once('error', resolve);
    });
    client.end(true);
    assert.match(err.message, /Not authorized|Bad username or password/);
  });

  it('may expire: taken until then, refused after, listed as expired', async () => {
    const added = await cli('token', 'viewer', 'add', 'contractor', '--expires-in', '2s', '--json');
    assert.equal(added.code, 0, added.stderr);
    const r = JSON.parse(added.stdout) as { token: string; createdAt: number; expiresAt: number };
    assert.equal(r.expiresAt - r.createdAt, 2000);
    assert.equal((await call(r.token, 'GET', '/api/v1/devices')).status, 200, 'taken before its expiry');
    const stream = await call(r.token, 'GET', '/api/v1/events');
    assert.equal(stream.status, 200);
    const ended = (async () => {
      for await (const _chunk of stream.body!) {
        /* reads until the server ends it */
      }
      return Date.now();
    })();
    await sleep(Math.max(0, r.expiresAt - Date.now()) + 100);
    const refused = await call(r.token, 'GET', '/api/v1/devices');
    assert.equal(refused.status, 401, 'refused after it');
    // told it expired, not that it is wrong
    assert.deepEqual(((await refused.json()) as { error: unknown }).error, { code: 'UNAUTHORIZED', message: `the viewer token "contractor" expired at ${new Date(r.expiresAt).toISOString()}; ask an operator for a new one` });
    const endedAt = await Promise.race([ended, sleep(10_000).then(() => undefined)]);
    assert.ok(endedAt !== undefined && endedAt >= r.expiresAt, 'its live stream ended at its expiry');
    assert.match((await cli('token', 'viewer', 'list')).stdout, /^contractor  added \S+  last used \S+  EXPIRED at \S+$/m);
    const bad = await cli('token', 'viewer', 'add', 'forever', '--expires-in', '5 years');
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--expires-in must be a duration like 90, 30s, 10m, 1h or 2d, got 5 years/);
    assert.equal((await call(ts.token, 'POST', '/api/v1/viewer-tokens', { name: 'x', expiresInSeconds: 0 })).status, 400);
    assert.equal((await cli('token', 'viewer', 'remove', 'contractor')).code, 0);
  });

  it('removed: refused at once, and its live event stream ends', async () => {
    const stream = await call(viewer, 'GET', '/api/v1/events');
    assert.equal(stream.status, 200);
    const ended = (async () => {
      for await (const _chunk of stream.body!) {
        /* reads until the server ends it */
      }
      return true;
    })();
    const removed = await cli('token', 'viewer', 'remove', 'prometheus');
    assert.equal(removed.code, 0, removed.stderr);
    assert.equal(removed.stdout.trim(), 'viewer token prometheus removed: refused from now on');
    assert.equal(await Promise.race([ended, sleep(10_000).then(() => false)]), true, 'the stream ended');
    const res = await call(viewer, 'GET', '/api/v1/devices');
    assert.equal(res.status, 401);
    const missing = await cli('token', 'viewer', 'remove', 'prometheus');
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /no viewer token is named prometheus/);
    assert.equal((await cli('token', 'viewer', 'list')).stdout.trim(), 'no viewer token');
  });
});
