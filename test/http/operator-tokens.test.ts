/**
 * Named operator tokens (src/server/named-tokens.ts) on a real server: one per person or
 * tool, with the operator token's rights over the API, added and removed with the real CLI,
 * used over HTTP and the live event stream; no MQTT password, and not ended by a rotation of
 * the data directory's operator token.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import mqtt from 'mqtt';
import { eventually, runCli } from '../helpers/cli.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact } from '../security/support.ts';

describe('named operator tokens', () => {
  let ts: TestServer;
  let operatorToken: string;
  let alice: string;
  const cli = (...args: string[]) => runCli([...args, '--server', ts.httpUrl, '--token', operatorToken]);
  const call = (token: string, method: string, route: string, body?: unknown) =>
    fetch(`${ts.httpUrl}${route}`, { method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
  /** Opens the event stream with `token`; `ended` resolves true when the server ends it. */
  const openStream = async (token: string): Promise<{ ended: Promise<boolean> }> => {
    const stream = await call(token, 'GET', '/api/v1/events');
    assert.equal(stream.status, 200);
    const ended = (async () => {
      for await (const _chunk of stream.body!) {
        /* reads until the server ends it */
      }
      return true;
    })();
    return { ended };
  };

  before(async () => {
    ts = await startTestServer();
    operatorToken = ts.token;
    await addArtifact(ts, '2.0.0', randomBytes(1000));
  });
  after(() => ts.close());

  it('is added with the CLI, shown once, listed by name only; names are unique', async () => {
    const added = await cli('token', 'operator', 'add', 'alice', '--json');
    assert.equal(added.code, 0, added.stderr);
    const r = JSON.parse(added.stdout) as { name: string; token: string };
    assert.equal(r.name, 'alice');
    assert.match(r.token, /^updr_oper_[A-Za-z0-9_-]{32}$/);
    alice = r.token;
    const listed = await cli('token', 'operator', 'list');
    assert.match(listed.stdout, /^alice  added \d{4}-\d\d-\d\dT\S+  never used$/m);
    assert.ok(!listed.stdout.includes(alice), 'never the token itself');
    const again = await cli('token', 'operator', 'add', 'alice');
    assert.equal(again.code, 2);
    assert.equal(again.stderr, 'updraft: error: a named operator token named alice exists: remove it first (updraft token operator remove alice)\n');
    // the two kinds are apart: a viewer of the same name is another token
    assert.equal((await cli('token', 'viewer', 'add', 'alice')).code, 0);
    assert.equal((await cli('token', 'viewer', 'list')).stdout.trim().split('\n').length, 1);
  });

  it('may do what the operator token may: changes, secrets, tokens', async () => {
    assert.deepEqual(await (await call(alice, 'GET', '/api/v1/whoami')).json(), { role: 'operator', name: 'alice' });
    const registered = await runCli(['device', 'register', 'by-alice', '--server', ts.httpUrl, '--token', alice]);
    assert.equal(registered.code, 0, registered.stderr);
    assert.equal((await call(operatorToken, 'GET', '/api/v1/devices/by-alice')).status, 200);
    assert.equal((await call(alice, 'POST', '/api/v1/deployments', { devices: ['by-alice'], artifact: 'fw@2.0.0' })).status, 201);
    assert.equal((await call(alice, 'GET', '/api/v1/broker/credentials?ids=by-alice')).status, 200);
    assert.equal((await call(alice, 'GET', '/api/v1/operator-tokens')).status, 200);
    // the list says when each was last used: a token long unused is one to remove
    const listed = await cli('token', 'operator', 'list');
    const at = /^alice  added \S+  last used (\S+)$/m.exec(listed.stdout)?.[1];
    assert.ok(at !== undefined, listed.stdout);
    assert.ok(Date.now() - Date.parse(at) < 60_000, 'just now');
    const recorded = JSON.parse((await ts.server.store.getSetting('token-used:operator:alice'))!) as { at: number };
    assert.equal(new Date(recorded.at).toISOString(), at, 'kept in the store, for every instance');
  });

  it('says who added each token; removing an operator says what it added, which stays', async () => {
    const bob = await call(alice, 'POST', '/api/v1/operator-tokens', { name: 'bob' });
    assert.equal(bob.status, 201);
    assert.equal((await call(alice, 'POST', '/api/v1/viewer-tokens', { name: 'alices-screen' })).status, 201);
    assert.match((await cli('token', 'operator', 'list')).stdout, /^bob  added \S+ by alice  never used$/m);
    assert.match((await cli('token', 'operator', 'list')).stdout, /^alice  added \S+  /m, 'added with the operator token: no "by"');
    assert.match((await cli('token', 'viewer', 'list')).stdout, /^alices-screen  added \S+ by alice  never used$/m);
  });

  it('a viewer token may not see or add operator tokens', async () => {
    const viewer = (await (await call(operatorToken, 'POST', '/api/v1/viewer-tokens', { name: 'wall' })).json()) as { token: string };
    const list = await call(viewer.token, 'GET', '/api/v1/operator-tokens');
    assert.equal(list.status, 403);
    const add = await call(viewer.token, 'POST', '/api/v1/operator-tokens', { name: 'mallory' });
    assert.equal(add.status, 403);
    assert.deepEqual(((await add.json()) as { error: unknown }).error, { code: 'FORBIDDEN', message: 'the viewer token wall is read-only: POST /api/v1/operator-tokens needs the operator token' });
    assert.doesNotMatch((await cli('token', 'operator', 'list')).stdout, /mallory/);
  });

  it('is no MQTT password: the broker refuses it as the operator', async () => {
    const client = mqtt.connect(ts.mqttUrl, { username: 'operator', password: alice, reconnectPeriod: 0, connectTimeout: 5000 });
    const err = await new Promise<Error>((resolve, reject) => {
      client.once('connect', () => reject(new Error('connected with a named operator token')));
      client.once('error', resolve);
    });
    client.end(true);
    assert.match(err.message, /Not authorized|Bad username or password/);
  });

  it('outlives a rotation of the operator token, whose streams end while its own goes on', async () => {
    const main = await openStream(operatorToken);
    let aliceEnded = false;
    const aliceStream = await openStream(alice);
    void aliceStream.ended.then(() => (aliceEnded = true));
    // not with her own token: the answer is the shared token, the MQTT password she does not have
    const refused = await runCli(['token', 'rotate', '--server', ts.httpUrl, '--token', alice]);
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /^updraft: error: the operator token is replaced with itself, not with a named token \(operator alice\): /);
    assert.equal((await call(operatorToken, 'GET', '/api/v1/devices')).status, 200, 'the operator token was not replaced');
    const rotated = await runCli(['token', 'rotate', '--server', ts.httpUrl, '--token', operatorToken, '--json']);
    assert.equal(rotated.code, 0, rotated.stderr);
    operatorToken = (JSON.parse(rotated.stdout) as { token: string }).token;
    assert.equal(await Promise.race([main.ended, sleep(10_000).then(() => false)]), true, 'the old operator token\'s stream ended');
    assert.equal((await call(alice, 'GET', '/api/v1/devices')).status, 200, 'alice goes on');
    await sleep(300);
    assert.equal(aliceEnded, false, 'her stream goes on');
  });

  it('removed: refused at once, and its live event stream ends; expiring: refused after', async () => {
    const { ended } = await openStream(alice);
    const removed = await cli('token', 'operator', 'remove', 'alice');
    assert.equal(removed.code, 0, removed.stderr);
    assert.equal(removed.stdout.trim(), 'operator token alice removed: refused from now on\n  it added: viewer token alices-screen, operator token bob; they stay valid (remove them too if they should go with it)');
    assert.equal(await Promise.race([ended, sleep(10_000).then(() => false)]), true, 'the stream ended');
    assert.equal((await call(alice, 'GET', '/api/v1/devices')).status, 401);
    const missing = await cli('token', 'operator', 'remove', 'alice');
    assert.equal(missing.code, 2);
    assert.equal(missing.stderr, 'updraft: error: no named operator token is named alice\n');
    assert.equal(await ts.server.store.getSetting('token-used:operator:alice'), undefined, 'its use record went with it');
    // added again under the same name: a new token, never used
    assert.equal((await cli('token', 'operator', 'add', 'alice')).code, 0);
    assert.match((await cli('token', 'operator', 'list')).stdout, /^alice  added \S+  never used$/m);

    const temp = (await (await call(operatorToken, 'POST', '/api/v1/operator-tokens', { name: 'contractor', expiresInSeconds: 1 })).json()) as { token: string; expiresAt: number };
    assert.equal((await call(temp.token, 'GET', '/api/v1/devices')).status, 200, 'taken before its expiry');
    await eventually(async () => ((await call(temp.token, 'GET', '/api/v1/devices')).status === 401 ? true : undefined), 10_000, 'refused after its expiry');
    assert.ok(Date.now() >= temp.expiresAt);
    const told = await runCli(['device', 'list', '--server', ts.httpUrl, '--token', temp.token]);
    assert.equal(told.code, 2);
    assert.equal(told.stderr, `updraft: error: the operator token "contractor" expired at ${new Date(temp.expiresAt).toISOString()}; ask an operator for a new one\n`);
    assert.match((await cli('token', 'operator', 'list')).stdout, /^contractor  added \S+  last used \S+  EXPIRED at \S+$/m);
  });
});
