/**
 * `updraft backup` while the server runs and writes, then a server started on the copy:
 * the same devices (their secrets work), artifacts (their bytes), keys and operator token.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runCli } from '../helpers/cli.ts';
import { TestClient, connackCode } from '../helpers/mqtt-client.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';

describe('updraft backup', () => {
  let ts: TestServer;
  let restored: TestServer | undefined;
  let dir: string;
  let secret: string;
  const build = randomBytes(30_000);
  const api = (server: TestServer, route: string, init: RequestInit = {}) => fetch(server.httpUrl + route, { ...init, headers: { authorization: `Bearer ${server.token}`, ...init.headers } });

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-backup-'));
    ts = await startTestServer();
    secret = await registerDevice(ts, 'dev-1', { tags: ['lab'] });
    assert.equal((await api(ts, '/api/v1/artifacts?name=fw&version=2.0.0', { method: 'POST', body: new Uint8Array(build) })).status, 201);
  });
  after(async () => {
    await restored?.close();
    await ts.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('copies a running, writing server; a server started on the copy has its devices, artifacts, keys and token', async () => {
    const dev = await TestClient.connect(ts.mqttUrl, 'dev-1', { username: 'dev-1', password: secret });
    await dev.subscribe('state/dev-1/update/+');
    const before = await dev.request('state/dev-1/update', { state: { reported: { software: { name: 'fw', version: '1.0.0', status: 'IDLE' } } } });
    // the device keeps writing while the backup runs
    let writing = true;
    const writes = (async () => {
      for (let i = 0; writing; i++) await dev.request('state/dev-1/update', { state: { reported: { counter: i } } });
    })();
    const out = path.join(dir, 'copy');
    const r = await runCli(['backup', '--data-dir', ts.dataDir, '--out', out]);
    writing = false;
    await writes;
    await dev.end();
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^backed up .+ to .+\n {2}database: updraft\.db, as of one instant; 1 artifact\(s\), 30000 bytes\n {2}files: /);
    assert.match(r.stdout, /keys\/software-signing\.key/);
    assert.match(r.stdout, /operator-token/);
    assert.equal((await stat(out)).mode & 0o777, 0o700, 'it holds secrets');
    assert.equal((await stat(path.join(out, 'operator-token'))).mode & 0o777, 0o600, 'modes kept');
    const keyBefore = await (await api(ts, '/api/v1/keys')).json();
    await ts.stop();

    restored = await startTestServer({ dataDir: out });
    assert.equal(restored.token, ts.token, 'the same operator token');
    assert.deepEqual(await (await api(restored, '/api/v1/keys')).json(), keyBefore, 'the same signing keys');
    const device = await (await api(restored, '/api/v1/devices/dev-1')).json();
    assert.deepEqual(device.device.tags, ['lab']);
    assert.ok(device.shadow.version >= before.body.version, 'the shadow as of the copy, at least as new as before it began');
    assert.equal(await connackCode(restored.mqttUrl, { clientId: 'dev-1', username: 'dev-1', password: secret }), undefined, "the device's secret works");
    const sha = createHash('sha256').update(build).digest('hex');
    assert.deepEqual(await readFile(path.join(out, 'artifacts', 'sha256', sha.slice(0, 2), sha)), build, 'the bytes');
    assert.equal((await (await api(restored, '/api/v1/artifacts/fw/2.0.0')).json()).sha256, sha);
  });

  it('copies only the files of a data directory whose state is in PostgreSQL, and says where the rest is', async () => {
    const data = path.join(dir, 'pg-data');
    await mkdir(path.join(data, 'keys'), { recursive: true });
    await writeFile(path.join(data, 'keys', 'software-signing.key'), 'key', { mode: 0o600 });
    await writeFile(path.join(data, 'operator-token'), 'updr_token', { mode: 0o600 });
    const out = path.join(dir, 'pg-copy');
    const r = await runCli(['backup', '--data-dir', data, '--out', out]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `backed up ${data} to ${out}\n  no embedded database here: a server with --db keeps its state in PostgreSQL (pg_dump it), and with --blob its artifacts in the bucket\n  files: keys/software-signing.key, operator-token\n`);
    assert.equal(await readFile(path.join(out, 'keys', 'software-signing.key'), 'utf8'), 'key');
    assert.equal((await stat(path.join(out, 'keys', 'software-signing.key'))).mode & 0o777, 0o600);
  });

  it('refuses, in one line, a directory that is not empty, one inside the data directory, and a missing data directory', async () => {
    const full = path.join(dir, 'full');
    await rm(full, { recursive: true, force: true });
    await runCli(['backup', '--data-dir', restored!.dataDir, '--out', full]);
    await writeFile(path.join(full, 'extra'), 'x');
    for (const [args, message] of [
      [['--data-dir', restored!.dataDir, '--out', full], /^updraft: error: .+full exists and is not empty; back up into a new directory$/],
      [['--data-dir', restored!.dataDir, '--out', path.join(restored!.dataDir, 'inside')], /^updraft: error: the backup cannot go inside the data directory /],
      [['--data-dir', path.join(dir, 'nothing'), '--out', path.join(dir, 'new')], /^updraft: error: data directory .+nothing does not exist$/],
    ] as const) {
      const r = await runCli(['backup', ...args]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr.trim(), message);
      assert.equal(r.stderr.trim().split('\n').length, 1);
    }
    assert.deepEqual(await readdir(path.join(dir)).then((d) => d.includes('new')), false, 'nothing created for a missing data directory');
  });
});
