/**
 * Ids `.` and `..` are refused wherever an id or name is made (device ids, group names,
 * artifact names, shadow names): WHATWG URL parsing resolves them as dot segments (`%2E`
 * forms included), so `/api/v1/devices/../revoke` reaches `/api/v1/revoke` and no request
 * could ever name them. Ids that merely hold dots (`a..b`, `.hidden`) stay valid.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseRequestTopic } from '../../src/protocol/topics.ts';
import { runCli } from '../helpers/cli.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';

const WHY = '"." and ".." cannot be ids: a URL path cannot hold them';

describe('ids "." and ".."', () => {
  let ts: TestServer;
  let dir: string;
  let file: string;
  before(async () => {
    ts = await startTestServer();
    dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-dot-ids-'));
    file = path.join(dir, 'fw.bin');
    await writeFile(file, 'firmware');
    await registerDevice(ts, 'dev-1');
  });
  after(async () => {
    await ts.close();
    await rm(dir, { recursive: true, force: true });
  });

  const api = (method: string, route: string, body?: unknown) =>
    fetch(`${ts.httpUrl}${route}`, {
      method,
      headers: { authorization: `Bearer ${ts.token}`, 'content-type': 'application/json' },
      ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
    }).then(async (r) => ({ status: r.status, body: (await r.json()) as { error?: { message: string } } & Record<string, unknown> }));

  const cli = (...args: string[]) => runCli([...args, '--server', ts.httpUrl, '--token', ts.token]);

  /** A CLI refusal: exit code 2 and one line naming the id and why. */
  function assertRefused(r: { code: number | null; stderr: string }, what: string, id: string): void {
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stderr.split('\n').filter((l) => l !== '').length, 1, r.stderr);
    assert.ok(r.stderr.includes(`${what} "${id}" is refused: ${WHY}`), r.stderr);
  }

  it('refuses them as device ids, over the API (one and in bulk) and the CLI, registering nothing', async () => {
    for (const id of ['.', '..']) {
      const one = await api('POST', '/api/v1/devices', { deviceId: id });
      assert.deepEqual([one.status, one.body.error?.message], [400, `device id "${id}" is refused: ${WHY}`]);
      const bulk = await api('POST', '/api/v1/devices/bulk', { devices: [{ deviceId: 'bulk-ok' }, { deviceId: id }] });
      assert.equal(bulk.status, 400);
      assert.match(bulk.body.error!.message, /cannot be ids: a URL path cannot hold them/);
      assertRefused(await cli('device', 'register', id), 'device id', id);
    }
    assert.equal(await ts.server.store.getDevice('..'), undefined);
    assert.equal(await ts.server.store.getDevice('.'), undefined);
    assert.equal(await ts.server.store.getDevice('bulk-ok'), undefined, 'a bulk registration is all or nothing');
  });

  it('refuses them as group names, over the API and the CLI', async () => {
    for (const name of ['.', '..']) {
      const r = await api('POST', '/api/v1/groups', { name, devices: ['dev-1'] });
      assert.deepEqual([r.status, r.body.error?.message], [400, `group name "${name}" is refused: ${WHY}`]);
      assertRefused(await cli('group', 'create', name, '--device', 'dev-1'), 'group name', name);
    }
    assert.equal(await ts.server.store.getGroup('..'), undefined);
  });

  it('refuses them as artifact names, over the API and the CLI', async () => {
    for (const name of ['.', '..']) {
      const r = await api('POST', `/api/v1/artifacts?name=${encodeURIComponent(name)}&version=1.0.0`, 'firmware');
      assert.deepEqual([r.status, r.body.error?.message], [400, `artifact name "${name}" is refused: ${WHY}`]);
      assertRefused(await cli('artifact', 'add', file, '--name', name, '--version', '1.0.0'), 'artifact name', name);
    }
    assert.deepEqual((await api('GET', '/api/v1/artifacts')).body.items, []);
  });

  it('refuses them as shadow names and device id levels of a topic', () => {
    assert.equal(parseRequestTopic('state/../update'), undefined);
    assert.equal(parseRequestTopic('state/./get'), undefined);
    assert.equal(parseRequestTopic('state/dev-1/shadow/../update')?.nameProblem, 'Invalid shadow name: it is "..", which a URL path cannot hold; a shadow name is 1 to 128 characters of letters, digits, _ . : -, other than "." and ".."');
    assert.deepEqual(parseRequestTopic('state/dev-1/shadow/a..b/update'), { deviceId: 'dev-1', name: 'a..b', op: 'update' });
  });

  it('still takes ids that only hold dots, and reaches them by URL', async () => {
    for (const id of ['a..b', '.hidden', '...']) {
      const reg = await cli('device', 'register', id);
      assert.equal(reg.code, 0, reg.stderr);
      const shown = await api('GET', `/api/v1/devices/${encodeURIComponent(id)}`);
      assert.deepEqual([shown.status, shown.body.deviceId], [200, id]);
      const group = await api('POST', '/api/v1/groups', { name: id, devices: [id] });
      assert.equal(group.status, 201, JSON.stringify(group.body));
      assert.equal((await api('GET', `/api/v1/groups/${encodeURIComponent(id)}`)).status, 200);
      const added = await cli('artifact', 'add', file, '--name', id, '--version', '1.0.0');
      assert.equal(added.code, 0, added.stderr);
      assert.equal((await api('GET', `/api/v1/artifacts/${encodeURIComponent(id)}/1.0.0`)).status, 200);
      const revoked = await cli('device', 'revoke', id);
      assert.equal(revoked.code, 0, revoked.stderr);
    }
  });
});
