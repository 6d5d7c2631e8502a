/**
 * `POST /api/v1/devices/:id/certificate` refuses a revoked device, and its answer names what
 * re-admits it: reinstating (the real CLI command), not a new secret, which does not lift a
 * revocation (QA: it said "rotate its secret first to re-admit it", and doing so changed
 * nothing). Real server, real HTTP, the real CLI.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { runCli } from '../helpers/cli.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';

describe('a certificate for a revoked device', () => {
  let ts: TestServer;
  const post = async (route: string): Promise<{ status: number; message?: string }> => {
    const res = await fetch(`${ts.httpUrl}${route}`, { method: 'POST', headers: { authorization: `Bearer ${ts.token}` } });
    const json = (await res.json()) as { error?: { message: string } };
    return { status: res.status, ...(json.error ? { message: json.error.message } : {}) };
  };

  before(async () => {
    ts = await startTestServer();
    await registerDevice(ts, 'rev-1');
  });
  after(() => ts.close());

  it('is refused, naming reinstatement; a new secret does not help, reinstating does', async () => {
    assert.equal((await post('/api/v1/devices/rev-1/revoke')).status, 200);
    const refused = { status: 409, message: 'device rev-1 is revoked; reinstate it first (updraft device reinstate rev-1): a new secret does not lift a revocation' };
    assert.deepEqual(await post('/api/v1/devices/rev-1/certificate'), refused);
    // what the old message advised: still refused
    assert.equal((await post('/api/v1/devices/rev-1/rotate-secret')).status, 200);
    assert.deepEqual(await post('/api/v1/devices/rev-1/certificate'), refused);
    // what the message names, as written
    const reinstated = await runCli(['device', 'reinstate', 'rev-1', '--server', ts.httpUrl, '--token', ts.token]);
    assert.equal(reinstated.code, 0, reinstated.stderr);
    assert.equal((await post('/api/v1/devices/rev-1/certificate')).status, 201);
  });
});
