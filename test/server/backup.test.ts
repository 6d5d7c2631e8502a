/**
 * `updraft backup` while the server runs and writes, then a server started on the copy:
 * the same devices (their secrets work), artifacts (their bytes), keys and operator token.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { lstat, mkdir, mkdtemp, readFile, readdir, rename, rm, stat, symlink, truncate, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runCli } from '../helpers/cli.ts';
import { TestClient, connackCode, connectDevice } from '../helpers/mqtt-client.ts';
import { startTestPostgres, unavailable, type TestPostgres } from '../helpers/postgres.ts';
import { startTestS3, type TestS3 } from '../helpers/s3.ts';
import { whileSettingUp } from '../../src/server/data-dir-lock.ts';
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
    // a second build with the same bytes: stored once, copied once, counted as a build
    assert.equal((await api(ts, '/api/v1/artifacts?name=fw-lab&version=2.0.0', { method: 'POST', body: new Uint8Array(build) })).status, 201);
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
    assert.match(r.stdout, /^backed up .+ to .+\n {2}database: updraft\.db, as of one instant; 2 artifact\(s\), 30000 bytes\n {2}files: /);
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

  it('copies only the files of a data directory whose state is in PostgreSQL and bytes in a bucket, and says where the rest is', async () => {
    const data = path.join(dir, 'pg-data');
    await mkdir(path.join(data, 'keys'), { recursive: true });
    await writeFile(path.join(data, 'keys', 'software-signing.key'), 'key', { mode: 0o600 });
    await writeFile(path.join(data, 'operator-token'), 'updr_token', { mode: 0o600 });
    const out = path.join(dir, 'pg-copy');
    // nothing to read from the database: no server listens there
    const r = await runCli(['backup', '--data-dir', data, '--out', out, '--blob', 's3://fw'], { env: { UPDRAFT_DB: 'postgres://u:pw@127.0.0.1:1/x' } });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `backed up ${data} to ${out}\n  database: PostgreSQL postgres://u:***@127.0.0.1:1/x, not copied: back it up with pg_dump; artifacts in the bucket\n  files: keys/software-signing.key, operator-token\n`);
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
      [['--data-dir', path.join(dir, 'pg-data'), '--out', path.join(dir, 'new')], /^updraft: error: no updraft\.db in .+pg-data: a server with --db keeps its state in PostgreSQL; give the backup its settings as the server has them \(--db, --blob, or --config, or UPDRAFT_DB and UPDRAFT_BLOB\)$/],
    ] as const) {
      const r = await runCli(['backup', ...args]);
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr.trim(), message);
      assert.equal(r.stderr.trim().split('\n').length, 1);
    }
    assert.deepEqual(await readdir(path.join(dir)).then((d) => d.includes('new')), false, 'nothing created for a missing data directory');
  });
});

describe('updraft backup of keys and a token mounted as symbolic links (a Kubernetes secret volume)', () => {
  let ts: TestServer | undefined;
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-backup-links-'));
  });
  after(async () => {
    await ts?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('copies what the links point to, as regular files, and a server restored from the copy has the same key and token', async () => {
    ts = await startTestServer();
    const keyBefore = await (await fetch(`${ts.httpUrl}/api/v1/keys`, { headers: { authorization: `Bearer ${ts.token}` } })).json();
    await ts.stop();
    // the layout of a secret volume: <name> -> ..data/<name>, ..data -> ..<time>/
    const keys = path.join(ts.dataDir, 'keys');
    const volume = path.join(keys, '..2026_12_04_10_00_00.1');
    await mkdir(volume);
    for (const name of ['software-signing.key', 'url-signing.json']) {
      await rename(path.join(keys, name), path.join(volume, name));
      await symlink(path.join('..data', name), path.join(keys, name));
    }
    await symlink('..2026_12_04_10_00_00.1', path.join(keys, '..data'));
    const secrets = path.join(dir, 'secrets');
    await mkdir(secrets);
    await rename(path.join(ts.dataDir, 'operator-token'), path.join(secrets, 'operator-token'));
    await symlink(path.join(secrets, 'operator-token'), path.join(ts.dataDir, 'operator-token'));

    const out = path.join(dir, 'copy');
    const r = await runCli(['backup', '--data-dir', ts.dataDir, '--out', out]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /files: .*keys\/software-signing\.key.*keys\/url-signing\.json.*operator-token/);
    assert.doesNotMatch(r.stdout, /\.\.data|\.\.2026/, "the volume's own names are not copied");
    for (const rel of ['operator-token', 'keys/software-signing.key', 'keys/url-signing.json']) {
      assert.ok((await lstat(path.join(out, rel))).isFile(), `${rel}: a regular file`);
    }
    // a server setting a directory up (its first seconds) holds server.lock as a --db server does
    const settingUp = path.join(dir, 'setting-up');
    await mkdir(settingUp);
    let entered!: () => void;
    let release!: () => void;
    const inside = new Promise<void>((resolve) => (entered = resolve));
    const holder = whileSettingUp(settingUp, () => new Promise<void>((resolve) => ((release = resolve), entered())));
    await inside;
    const during = await runCli(['restore', out, '--data-dir', settingUp]);
    release();
    await holder;
    assert.equal(during.code, 2, during.stderr);
    assert.equal(during.stderr, `updraft: error: a server is using ${settingUp} (it holds its server.lock: a server with --db, or one still setting the directory up): stop it, then restore\n`);
    const data = path.join(dir, 'restored');
    assert.equal((await runCli(['restore', out, '--data-dir', data])).code, 0);
    const restored = await startTestServer({ dataDir: data });
    try {
      assert.equal(restored.token, ts.token, 'the same operator token');
      assert.deepEqual(await (await fetch(`${restored.httpUrl}/api/v1/keys`, { headers: { authorization: `Bearer ${restored.token}` } })).json(), keyBefore, 'the same signing keys');
    } finally {
      await restored.stop();
    }
  });

  it('refuses, in one line and before copying anything, a link to a file that is not there', async () => {
    await rm(path.join(dir, 'secrets', 'operator-token'));
    const out = path.join(dir, 'dangling');
    const r = await runCli(['backup', '--data-dir', ts!.dataDir, '--out', out]);
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.stderr, `updraft: error: ${path.join(ts!.dataDir, 'operator-token')} is a symbolic link to ${path.join(dir, 'secrets', 'operator-token')}, which does not exist (a secret volume not mounted?): mount what it points to, or replace the link with the file, then back up again\n`);
    await assert.rejects(stat(out), { code: 'ENOENT' }, 'nothing copied');
  });
});

describe('updraft backup of a server on PostgreSQL with its artifacts in the data directory', () => {
  let pg: TestPostgres | undefined;
  let skip: string | undefined;
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-backup-pg-'));
    const started = await startTestPostgres();
    if (!started.ok) skip = unavailable(started, 'PostgreSQL backup test');
    else pg = started.server;
  });
  after(async () => {
    await pg?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('copies the bytes of the builds the database names (settings from --config, as the server reads them); a server restored on the copy serves them', async (t) => {
    if (skip || !pg) return t.skip(skip);
    const db = await pg.createDatabase();
    const build = randomBytes(20_000);
    const ts = await startTestServer({ flags: { db } });
    let restored: TestServer | undefined;
    try {
      const added = await fetch(`${ts.httpUrl}/api/v1/artifacts?name=fw&version=3.0.0`, { method: 'POST', headers: { authorization: `Bearer ${ts.token}` }, body: new Uint8Array(build) });
      assert.equal(added.status, 201);
      const config = path.join(dir, 'updraft.json');
      await writeFile(config, JSON.stringify({ dataDir: ts.dataDir, db }));
      const out = path.join(dir, 'copy');
      const r = await runCli(['backup', '--config', config, '--out', out]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /\n {2}database: PostgreSQL postgres:.+, not copied: back it up with pg_dump; 1 artifact\(s\) it names, 20000 bytes, copied from .+\/artifacts\n/);
      const sha = createHash('sha256').update(build).digest('hex');
      assert.deepEqual(await readFile(path.join(out, 'artifacts', 'sha256', sha.slice(0, 2), sha)), build);
      assert.deepEqual((await readdir(out)).filter((n) => n.startsWith('server.lock')), [], "the running server's lock is not copied");
      // a restore under the running server would move its keys and builds aside while it serves
      const refused = await runCli(['restore', out, '--data-dir', ts.dataDir]);
      assert.equal(refused.code, 2, refused.stderr);
      assert.equal(refused.stderr, `updraft: error: a server is using ${ts.dataDir} (it holds its server.lock: a server with --db, or one still setting the directory up): stop it, then restore\n`);
      assert.ok((await readdir(ts.dataDir)).includes('operator-token'), 'nothing moved aside');
      await ts.stop();
      const afterStop = path.join(dir, 'after-stop');
      assert.equal((await runCli(['restore', out, '--data-dir', afterStop])).code, 0);
      // the database is the same one (as pg_dump and pg_restore would give back); the data directory the copy
      const data = path.join(dir, 'restored');
      assert.equal((await runCli(['restore', out, '--data-dir', data])).code, 0);
      restored = await startTestServer({ dataDir: data, flags: { db } });
      const dev = await connectDevice(restored, 'dev-1');
      try {
        await dev.subscribe('state/dev-1/#');
        const deploy = await fetch(`${restored.httpUrl}/api/v1/deployments`, { method: 'POST', headers: { authorization: `Bearer ${restored.token}`, 'content-type': 'application/json' }, body: JSON.stringify({ devices: ['dev-1'], artifact: 'fw@3.0.0' }) });
        assert.equal(deploy.status, 201, await deploy.text());
        const url = (await dev.next((m) => m.topic === 'state/dev-1/update/delta' && m.body.state?.software?.url)).body.state.software.url as string;
        const res = await fetch(url);
        assert.equal(res.status, 200, 'the download is served, not a 404');
        assert.deepEqual(Buffer.from(await res.arrayBuffer()), build);
      } finally {
        await dev.end();
      }
    } finally {
      await restored?.stop();
      await ts.close();
    }
  });
});

describe('updraft backup of an embedded store with its artifacts in S3, and of a backup that fails', () => {
  let s3: TestS3;
  let dir: string;
  const saved = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY };
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-backup-s3-'));
    s3 = await startTestS3();
    process.env.AWS_ACCESS_KEY_ID = s3.credentials.accessKeyId;
    process.env.AWS_SECRET_ACCESS_KEY = s3.credentials.secretAccessKey;
  });
  after(async () => {
    process.env.AWS_ACCESS_KEY_ID = saved.id;
    process.env.AWS_SECRET_ACCESS_KEY = saved.secret;
    if (saved.id === undefined) delete process.env.AWS_ACCESS_KEY_ID;
    if (saved.secret === undefined) delete process.env.AWS_SECRET_ACCESS_KEY;
    await s3.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('copies the database, keys and token, and says the builds are in the bucket; a server restored on the copy has them', async () => {
    const blob = `s3://backup-s3?endpoint=${encodeURIComponent(s3.endpoint)}&pathStyle=true&create=true&region=us-east-1`;
    const ts = await startTestServer({ flags: { blob } });
    let restored: TestServer | undefined;
    try {
      const added = await fetch(`${ts.httpUrl}/api/v1/artifacts?name=fw&version=2.0.0`, { method: 'POST', headers: { authorization: `Bearer ${ts.token}` }, body: new Uint8Array(randomBytes(5_000)) });
      assert.equal(added.status, 201);
      const out = path.join(dir, 'copy');
      const r = await runCli(['backup', '--data-dir', ts.dataDir, '--out', out], { env: { UPDRAFT_BLOB: blob } });
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /\n {2}database: updraft\.db, as of one instant; its 1 artifact\(s\) are in the bucket s3:\/\/backup-s3\?.+, not copied: back it up with its versioning or replication\n {2}files: .*operator-token/);
      assert.ok(!(await readdir(out)).includes('artifacts'));
      await ts.stop();
      const data = path.join(dir, 'restored');
      assert.equal((await runCli(['restore', out, '--data-dir', data])).code, 0);
      restored = await startTestServer({ dataDir: data, flags: { blob } });
      assert.equal((await fetch(`${restored.httpUrl}/api/v1/artifacts/fw/2.0.0`, { headers: { authorization: `Bearer ${restored.token}` } })).status, 200);
    } finally {
      await restored?.close();
      await ts.close();
    }
  });

  it('removes the copy of a backup that fails, and says so', async () => {
    const ts = await startTestServer();
    try {
      const build = randomBytes(1_000);
      const added = await fetch(`${ts.httpUrl}/api/v1/artifacts?name=fw&version=2.0.0`, { method: 'POST', headers: { authorization: `Bearer ${ts.token}` }, body: new Uint8Array(build) });
      assert.equal(added.status, 201);
      const sha = createHash('sha256').update(build).digest('hex');
      await rm(path.join(ts.dataDir, 'artifacts', 'sha256', sha.slice(0, 2), sha));
      const out = path.join(dir, 'failed');
      const r = await runCli(['backup', '--data-dir', ts.dataDir, '--out', out]);
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stderr, `updraft: error: the bytes of fw@2.0.0 were not in ${path.join(ts.dataDir, 'artifacts')} (deleted while the backup ran, or storage is damaged; or the server keeps them in S3: give the backup its --blob): back up again; the backup is not complete: ${out} was removed\n`);
      await assert.rejects(stat(out), { code: 'ENOENT' });
    } finally {
      await ts.close();
    }
  });

  it('refuses an artifact whose file is shorter than its record, as a damaged store, and removes the copy', async () => {
    const ts = await startTestServer();
    try {
      const build = randomBytes(4_000);
      const added = await fetch(`${ts.httpUrl}/api/v1/artifacts?name=fw&version=2.0.0`, { method: 'POST', headers: { authorization: `Bearer ${ts.token}` }, body: new Uint8Array(build) });
      assert.equal(added.status, 201);
      const sha = createHash('sha256').update(build).digest('hex');
      const file = path.join(ts.dataDir, 'artifacts', 'sha256', sha.slice(0, 2), sha);
      await truncate(file, 1_000);
      const out = path.join(dir, 'truncated');
      const r = await runCli(['backup', '--data-dir', ts.dataDir, '--out', out]);
      assert.equal(r.code, 1, r.stderr);
      assert.equal(r.stderr, `updraft: error: the bytes of fw@2.0.0 (1000 of 4000 bytes in ${file}) are not what their records say (storage is damaged): put the files back from an older backup, or delete those builds and add them again, then back up again; the backup is not complete: ${out} was removed\n`);
      await assert.rejects(stat(out), { code: 'ENOENT' });
    } finally {
      await ts.close();
    }
  });
});
