/**
 * Instances on one PostgreSQL database must hold the same operator token, signing key, URL
 * key ring and CA (docs/deployment.md, "Every instance needs the same secrets"). Real
 * instances on a private PostgreSQL, the real CLI: one started with other copies is refused
 * with one line naming the files; rotations (online, and offline with --db) record the new
 * copy, so instances given it start and those still holding the old one are told.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { cp, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { PostgresStore } from '../../src/store/postgres-store.ts';
import { createLogger } from '../../src/util/logger.ts';
import { runCli, startCli } from '../helpers/cli.ts';
import { startTestPostgres, unavailable, type TestPostgres } from '../helpers/postgres.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

const started = await startTestPostgres();
if (!started.ok) {
  const message = unavailable(started, 'shared secrets test');
  it('shared secrets', (t) => t.skip(message));
} else {
  describe('instances on one PostgreSQL database hold the same secrets', () => {
    const pg: TestPostgres = started.server;
    let root: string;
    const running: TestServer[] = [];
    before(async () => {
      root = await mkdtemp(path.join(os.tmpdir(), 'updraft-secrets-'));
    });
    after(async () => {
      for (const s of running) await s.stop().catch(() => {});
      await pg.stop();
      await rm(root, { recursive: true, force: true });
    });

    /** An in-process instance on `db` with `dataDir`, its error lines captured. */
    const instance = async (db: string, dataDir: string) => {
      const errors: string[] = [];
      const logger = createLogger({ level: 'error', write: (line) => errors.push(line) });
      const ts = await startTestServer({ dataDir, flags: { db, 'mqtt-tls-port': -1 }, logger });
      running.push(ts);
      return { ts, errors };
    };
    /** `updraft server` as a process that is expected to be refused: its exit code and output (code 'started' if it was not). */
    const serverCli = async (db: string, dataDir: string): Promise<{ code: number | null | 'started'; stderr: string }> => {
      const proc = startCli(['server', '--data-dir', dataDir, '--db', db, '--http-host', '127.0.0.1', '--http-port', '0', '--mqtt-port', '0', '--mqtt-tls-port', '-1']);
      const exited = new Promise<number | null>((resolve) => proc.child.on('close', resolve));
      const up = proc.waitFor(/HTTP API and downloads on/, 60_000).then(() => 'started' as const, () => undefined);
      const first = await Promise.race([exited, up]);
      if (first === 'started') await proc.kill('SIGTERM');
      return { code: first ?? (await exited), stderr: proc.output() };
    };

    it('a copy of the first data directory starts; one with its own secrets is refused, naming each file, and records nothing', async () => {
      const db = await pg.createDatabase();
      const dataA = path.join(root, 'a1');
      const a = await instance(db, dataA);
      const dataB = path.join(root, 'b1');
      await cp(dataA, dataB, { recursive: true });
      await instance(db, dataB);

      const stray = path.join(root, 'stray1');
      const r = await serverCli(db, stray);
      assert.equal(r.code, 1, r.stderr);
      const lines = r.stderr.trim().split('\n');
      assert.equal(lines.length, 1, r.stderr);
      assert.match(lines[0]!, /^updraft: error: this instance's operator-token, keys\/software-signing\.key and \.pub, keys\/url-signing\.json, pki\/ca\.key and pki\/ca\.crt differ from what the other instances on this database hold \(.+\): copy them from an instance already running into .+stray1 \(recorded from [^ ]+:.+a1 at \S+\), then start this one again; /);

      // only the URL key ring differs: only it is named
      const dataC = path.join(root, 'c1');
      await cp(dataA, dataC, { recursive: true });
      assert.equal((await runCli(['keys', 'rotate-url', '--offline', '--data-dir', dataC])).code, 0);
      const c = await serverCli(db, dataC);
      assert.equal(c.code, 1, c.stderr);
      assert.match(c.stderr, /^updraft: error: this instance's keys\/url-signing\.json differs from what the other instances on this database hold \(download URLs and tokens signed by one instance are refused by the other's\): copy it from an instance already running/);

      // what is stored is no secret: the token under scrypt with a salt, never the token or its SHA-256
      const store = new PostgresStore({ url: db, logger: createLogger({ level: 'silent' }) });
      await store.start();
      try {
        const settings = await store.listSettings('shared-secret:');
        assert.deepEqual(settings.map((s) => s.key), ['shared-secret:ca', 'shared-secret:operator-token', 'shared-secret:software-signing-key', 'shared-secret:url-signing-keys']);
        const token = a.ts.token;
        const ring = await readFile(path.join(dataA, 'keys', 'url-signing.json'), 'utf8');
        const secrets = (JSON.parse(ring) as { keys: { secret: string }[] }).keys.map((k) => k.secret);
        for (const s of settings) {
          assert.ok(!s.value.includes(token) && !s.value.includes(createHash('sha256').update(token).digest('hex')), s.key);
          for (const secret of secrets) assert.ok(!s.value.includes(secret), s.key);
        }
        const tokenRecord = JSON.parse(settings.find((s) => s.key === 'shared-secret:operator-token')!.value) as { salt?: string; fingerprint: string };
        assert.ok(tokenRecord.salt && tokenRecord.fingerprint.length === 64);
      } finally {
        await store.stop();
      }
    });

    it('an offline rotation with --db is recorded: the instance given the new file starts, the running ones are told, one restarted with the old file is refused', async () => {
      const db = await pg.createDatabase();
      const dataA = path.join(root, 'a2');
      const a = await instance(db, dataA);
      const dataB = path.join(root, 'b2');
      await cp(dataA, dataB, { recursive: true });
      const b = await instance(db, dataB);

      // staged on a copy, as docs/deployment.md says, recorded in the database
      const next = path.join(root, 'next2');
      await cp(dataA, next, { recursive: true });
      const rotated = await runCli(['keys', 'rotate-url', '--offline', '--activate-in', '1h', '--data-dir', next, '--db', db]);
      assert.equal(rotated.code, 0, rotated.stderr);
      assert.match(rotated.stdout, /\n {2}recorded in postgres:\/\/.+: instances on it start only with this copy; those holding the old one are told\n/);

      // A, still on the old ring, is told (once), at its next comparison
      await a.ts.server.sharedSecrets!.sync();
      await a.ts.server.sharedSecrets!.sync();
      const told = a.errors.filter((l) => l.includes('keys/url-signing.json was replaced on'));
      assert.equal(told.length, 1, a.errors.join('\n'));
      assert.match(told[0]!, /this instance still holds the old one, so download URLs and tokens signed by one instance are refused by the other's: copy it from there into .+a2 and restart this instance/);

      // B restarted with the new file starts; A restarted with the old one is refused
      await b.ts.stop();
      await cp(path.join(next, 'keys', 'url-signing.json'), path.join(dataB, 'keys', 'url-signing.json'));
      await instance(db, dataB);
      await a.ts.stop();
      const refused = await serverCli(db, dataA);
      assert.equal(refused.code, 1, refused.stderr);
      assert.match(refused.stderr, /^updraft: error: this instance's keys\/url-signing\.json differs/);

      // the signing key replaced offline (keys generate --force --db) likewise
      assert.equal((await runCli(['keys', 'generate', '--force', '--data-dir', next, '--db', db])).code, 0);
      const old = await serverCli(db, dataB);
      assert.match(old.stderr, /^updraft: error: this instance's keys\/software-signing\.key and \.pub differ from .*devices provisioned with the other public key refuse the commands this instance signs/);
    });

    it('an online URL key rotation or retirement is recorded at once, and the others are told at their next comparison', async () => {
      const db = await pg.createDatabase();
      const dataA = path.join(root, 'a4');
      const a = await instance(db, dataA);
      const dataB = path.join(root, 'b4');
      await cp(dataA, dataB, { recursive: true });
      const b = await instance(db, dataB);
      const r = await runCli(['keys', 'rotate-url', '--activate-in', '1h', '--server', a.ts.httpUrl, '--token', a.ts.token]);
      assert.equal(r.code, 0, r.stderr);
      // recorded by the rotation itself, before A's own comparison runs
      await b.ts.server.sharedSecrets!.sync();
      assert.ok(b.errors.some((l) => /keys\/url-signing\.json was replaced on .+a4 at /.test(l)), b.errors.join('\n'));
      // an instance started with A's new ring is let in at once
      const dataC = path.join(root, 'c4');
      await cp(dataA, dataC, { recursive: true });
      const c = await instance(db, dataC);
      const recorded = await c.ts.server.store.getSetting('shared-secret:url-signing-keys');
      // a retirement too: C retires the staged key (a rotation called off), and its ring is the record from then on
      const auth = { authorization: `Bearer ${c.ts.token}`, 'content-type': 'application/json' };
      const ring = (await (await fetch(`${c.ts.httpUrl}/api/v1/keys`, { headers: auth })).json()) as { url: { kid: string; active: boolean }[] };
      const staged = ring.url.find((k) => !k.active);
      assert.ok(staged, JSON.stringify(ring.url));
      const retired = await fetch(`${c.ts.httpUrl}/api/v1/keys/url/retire`, { method: 'POST', headers: auth, body: JSON.stringify({ kid: staged.kid }) });
      assert.equal(retired.status, 200, await retired.text());
      assert.notEqual(await c.ts.server.store.getSetting('shared-secret:url-signing-keys'), recorded, 'the retirement is recorded');
      await a.ts.server.sharedSecrets!.sync();
      assert.ok(a.errors.some((l) => /keys\/url-signing\.json was replaced on .+c4 at /.test(l)), a.errors.join('\n'));
      assert.deepEqual(c.errors, []);
    });

    it('an online token rotation is recorded: an instance restarted with the old token is refused until given the new file; one replaced offline without --db is recorded with keys record-shared', async () => {
      const db = await pg.createDatabase();
      const dataA = path.join(root, 'a3');
      const a = await instance(db, dataA);
      const dataB = path.join(root, 'b3');
      await cp(dataA, dataB, { recursive: true });
      const b = await instance(db, dataB);

      const rotated = await runCli(['token', 'rotate', '--server', a.ts.httpUrl, '--token', a.ts.token]);
      assert.equal(rotated.code, 0, rotated.stderr);
      await b.ts.server.sharedSecrets!.sync();
      assert.ok(b.errors.some((l) => /the operator-token was replaced on .+a3 at .+ this instance still holds the old one/.test(l)), b.errors.join('\n'));

      await b.ts.stop();
      const refused = await serverCli(db, dataB);
      assert.equal(refused.code, 1, refused.stderr);
      assert.match(refused.stderr, /^updraft: error: this instance's operator-token differs from what the other instances on this database hold \(the token is refused by the instances that hold the other one, and the broker admits only one\): copy it from an instance already running/);
      await cp(path.join(dataA, 'operator-token'), path.join(dataB, 'operator-token'));
      const b2 = await instance(db, dataB);

      // rotated offline without the database: refused, until recorded
      await a.ts.stop();
      const offline = await runCli(['token', 'rotate', '--offline', '--data-dir', dataA]);
      assert.equal(offline.code, 0, offline.stderr);
      assert.doesNotMatch(offline.stdout, /recorded in/);
      assert.match((await serverCli(db, dataA)).stderr, /this instance's operator-token differs .*record it first: updraft keys record-shared --data-dir .+a3 --db <url>/);
      const recorded = await runCli(['keys', 'record-shared', '--data-dir', dataA, '--db', db]);
      assert.equal(recorded.code, 0, recorded.stderr);
      assert.match(recorded.stdout, /^recorded in postgres:\/\/\S+: operator-token, keys\/software-signing\.key and \.pub, keys\/url-signing\.json, pki\/ca\.key and pki\/ca\.crt of /);
      const a2 = await instance(db, dataA);

      // rotated offline with --db: recorded; the instance given it starts, the other is refused
      await a2.ts.stop();
      const withDb = await runCli(['token', 'rotate', '--offline', '--data-dir', dataA, '--db', db]);
      assert.equal(withDb.code, 0, withDb.stderr);
      assert.match(withDb.stdout, /\n {2}recorded in postgres:\/\/.+: instances on it start only with this copy/);
      await instance(db, dataA);
      await b2.ts.stop();
      assert.match((await serverCli(db, dataB)).stderr, /^updraft: error: this instance's operator-token differs/);
    });
  });
}

it('the embedded store (one instance) compares nothing: a token replaced offline is used at the next start', async () => {
  const first = await startTestServer();
  await first.stop();
  const r = await runCli(['token', 'rotate', '--offline', '--data-dir', first.dataDir]);
  assert.equal(r.code, 0, r.stderr);
  assert.doesNotMatch(r.stdout, /recorded in/);
  const again = await startTestServer({ dataDir: first.dataDir });
  try {
    assert.equal(again.server.sharedSecrets, undefined);
    assert.notEqual(again.token, first.token);
  } finally {
    await again.close();
  }
});
