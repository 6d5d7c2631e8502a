/**
 * `updraft ca drop-previous` counts who is still on the previous CA (docs/security.md, "When the
 * CA nears its end"): agents report their certificate's issuer (reported.agent.certificateIssuer,
 * updated after a renewal), the command reads them from the store the stopped server uses
 * (the embedded SQLite store, or PostgreSQL with --db) and refuses while any reported a
 * certificate of the previous CA, naming how many and how to list them; --force drops anyway.
 * `updraft doctor` warns of them from the running server. Real servers, real agents over
 * MQTTS with client certificates, the real CLI (QA: a drop run too early locked out 5 devices).
 * Neither refuses for revoked devices (never moved: their renewal is refused) nor for those of
 * an expired previous CA (refused already); --config gives the data directory; a directory
 * moved from SQLite to PostgreSQL is not counted in its stale updraft.db (review of a896f56).
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync, renameSync, statSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { caPaths } from '../../src/pki/certificate-authority.ts';
import { eventually, runCli } from '../helpers/cli.ts';
import { startTestPostgres, unavailable } from '../helpers/postgres.ts';
import { apiJson, type TestServer } from '../helpers/server.ts';
import { RolloverFixture, expiredCa, issuedBy, reportedIssuer, reportsIssuer, rolledOver } from './ca-rollover-fixture.ts';

/** A CA's subject as agents report an issuer: Node's DN, its lines joined with ', ' (docs/protocol.md). */
const nameOf = (pem: string) => new X509Certificate(pem).subject.split('\n').join(', ');
const api = (ts: TestServer) => ['--server', ts.httpUrl, '--token', ts.token];
/** The devices `updraft device list --query <query>` lists. */
const listed = async (ts: TestServer, query: string) => {
  const r = await runCli(['device', 'list', '--query', query, ...api(ts)]);
  assert.equal(r.code, 0, `device list: ${r.stderr}`);
  return r.stdout.split('\n').filter((l) => l.trim() !== '' && l !== 'no devices').map((l) => l.split(/\s+/)[0]);
};
/** The query of a line's `updraft device list --query '...'` (single-quoted, as printed). */
const queryIn = (line: string) => {
  const m = /updraft device list --query '((?:[^']|'\\'')*)'/.exec(line);
  assert.ok(m, `a list command in: ${line}`);
  return m[1]!.replace(/'\\''/g, "'");
};

describe('ca drop-previous: refused while devices report certificates of the previous CA', () => {
  const fx = new RolloverFixture();
  after(() => fx.release());

  it('an agent that has not moved: doctor warns, drop-previous refuses (exit 2, one line, how to list them), --force drops', async () => {
    const r = await rolledOver(fx, ['m-1', 's-1']);
    const oldName = nameOf(r.oldCa);
    const newName = nameOf(r.newCa);
    const ts = await fx.start(r.dataDir, { flags: r.ports });
    // m-1 renews onto the new CA by itself; s-1 does not renew (--renew-certificate-days 0): it stays
    const mover = await fx.agent(ts, 'm-1', r.pairs['m-1']!, r.bundle, { renew: true });
    const stayer = await fx.agent(ts, 's-1', r.pairs['s-1']!, r.bundle);
    await reportedIssuer(ts, 's-1', oldName);
    const pair = await eventually(async () => mover.renewed[0], 30_000, 'm-1 renewed onto the new CA');
    assert.ok(issuedBy(pair.certificate, r.newCa), 'the renewed certificate is of the new CA');
    await reportedIssuer(ts, 'm-1', newName); // said after the renewal, without a restart
    // a device whose certificate is of an unrelated CA (not Updraft's): on neither CA
    await reportsIssuer(ts, 'o-1', 'CN=Other CA, O=Elsewhere');

    const doctor = await runCli(['doctor', ...api(ts)]);
    const warning = doctor.stdout.split('\n').find((l) => /^warn\s+CA\s+1 device\(s\) \(s-1\) still report a client certificate of the previous CA \(pki\/previous-ca\.crt\)/.test(l));
    assert.ok(warning, `doctor warns of the device on the previous CA: ${doctor.stdout}`);
    assert.deepEqual(await listed(ts, queryIn(warning)), ['s-1'], "doctor's list command lists the device on the previous CA");

    await mover.agent.stop();
    await stayer.agent.stop();
    await ts.stop();
    const refused = await runCli(['ca', 'drop-previous', '--data-dir', r.dataDir]);
    assert.equal(refused.code, 2, `refused with exit code 2: ${refused.stdout}${refused.stderr}`);
    const lines = refused.stderr.trim().split('\n');
    assert.equal(lines.length, 1, `one line: ${refused.stderr}`);
    assert.match(lines[0]!, /^updraft: error: 1 device\(s\) reported a client certificate of the previous CA \(CN=.*\) in .*updraft\.db: dropping it locks them out from the next start; .*list them: updraft device list --query '.*'\), or drop it anyway with --force$/, 'how many, how to list them, --force');
    assert.ok(lines[0]!.includes(`(${oldName})`), `the previous CA named: ${lines[0]}`);
    assert.ok(existsSync(caPaths(r.dataDir).previous), 'pki/previous-ca.crt is kept');

    // the refusal's list command lists the device, on the server started again
    const again = await fx.start(r.dataDir, { flags: r.ports });
    assert.deepEqual(await listed(again, queryIn(lines[0]!)), ['s-1'], "the refusal's list command lists the device not moved");
    await again.stop();

    const forced = await runCli(['ca', 'drop-previous', '--data-dir', r.dataDir, '--force']);
    assert.equal(forced.code, 0, `--force drops: ${forced.stderr}`);
    assert.match(forced.stdout, /^previous CA removed/, forced.stdout);
    assert.match(forced.stderr, /1 device\(s\) reported a client certificate of the previous CA .*dropped anyway \(--force\)/, 'says who is locked out');
    const p = caPaths(r.dataDir);
    assert.ok(!existsSync(p.previous), 'pki/previous-ca.crt is gone');
    assert.equal(readFileSync(p.dropped, 'utf8'), r.oldCa, 'kept as pki/previous-ca.crt.dropped');
    // its key set aside too (deleted until the review of fe81e0f: an undo got no CRL of it)
    assert.ok(!existsSync(p.previousKey), 'pki/previous-ca.key is gone');
    assert.equal(statSync(p.droppedKey).mode & 0o777, 0o600, 'kept as pki/previous-ca.key.dropped, 0600');
    assert.ok(forced.stdout.includes(`to undo, with the server stopped: mv -n ${p.dropped} ${p.previous} && mv -n ${p.droppedKey} ${p.previousKey}, then start it`), forced.stdout);
    // started after the forced drop: doctor names the device it cut off (QA: every check said
    // ok, and the device showed only as offline), with the command that lists it
    const cut = await fx.start(r.dataDir, { flags: r.ports });
    const keys = await apiJson(cut, 'GET', '/api/v1/keys');
    assert.equal(keys.body.droppedCaSubject, oldName, 'GET /api/v1/keys names the CA the drop removed');
    const cutDoctor = await runCli(['doctor', ...api(cut)]);
    const cutLine = cutDoctor.stdout.split('\n').find((l) => /^warn\s+CA\s+1 device\(s\) \(s-1\) last reported a client certificate of the CA updraft ca drop-previous removed \(pki\/previous-ca\.crt\.dropped, /.test(l));
    assert.ok(cutLine, `doctor warns of the device the forced drop cut off: ${cutDoctor.stdout}`);
    assert.ok(cutLine.includes(oldName), `the dropped CA named: ${cutLine}`);
    assert.match(cutLine, /updraft device cert <id>.*mv -n pki\/previous-ca\.crt\.dropped pki\/previous-ca\.crt/, 'both ways out');
    assert.deepEqual(await listed(cut, queryIn(cutLine)), ['s-1'], "doctor's list command lists the device cut off");
    await cut.stop();
    // the undo it prints: the previous CA trusted again, and its CRL signed again
    renameSync(p.dropped, p.previous);
    renameSync(p.droppedKey, p.previousKey);
    const undone = await fx.start(r.dataDir, { flags: r.ports });
    assert.equal(undone.server.security.ca.previousCertificate, r.oldCa, 'the previous CA is back after the undo');
    const crl = await apiJson(undone, 'GET', '/api/v1/broker/crl');
    assert.equal(crl.status, 200, `a CRL of both CAs after the undo: ${JSON.stringify(crl.body)}`);
    assert.equal(crl.body.cas, 2, 'one CRL per CA, the previous one included');
    await undone.stop();
  });

  it("after a later rollover doctor no longer offers a forced drop's undo (it would overwrite that rollover's previous CA and key); a key without its certificate is not set aside", async () => {
    const r = await rolledOver(fx, []);
    const first = await fx.start(r.dataDir);
    await reportsIssuer(first, 'z-1', nameOf(r.oldCa));
    await first.stop();
    const forced = await runCli(['ca', 'drop-previous', '--data-dir', r.dataDir, '--force']);
    assert.equal(forced.code, 0, forced.stderr);
    const p = caPaths(r.dataDir);
    const droppedKey = readFileSync(p.droppedKey, 'utf8');
    // a second rollover: the CA of the first's end is the previous one now
    const again = await runCli(['ca', 'rollover', '--data-dir', r.dataDir]);
    assert.equal(again.code, 0, again.stderr);
    const ts = await fx.start(r.dataDir);
    const doctor = await runCli(['doctor', ...api(ts)]);
    const line = doctor.stdout.split('\n').find((l) => /^warn\s+CA\s+1 device\(s\) \(z-1\) last reported a client certificate of the CA updraft ca drop-previous removed/.test(l));
    assert.ok(line, `doctor names z-1: ${doctor.stdout}`);
    assert.doesNotMatch(line, /mv /, `no undo offered over the later rollover's previous CA: ${line}`);
    assert.match(line, /a later rollover's previous CA is in pki\/previous-ca\.crt now: the drop cannot be undone over it/, line);
    await ts.stop();
    // the certificate removed by hand, its key left: a drop sets nothing aside over the earlier drop's key
    renameSync(p.previous, `${p.previous}.by-hand`);
    const none = await runCli(['ca', 'drop-previous', '--data-dir', r.dataDir, '--force']);
    assert.equal(none.code, 0, none.stderr);
    assert.match(none.stdout, /no previous CA: nothing to remove/, none.stdout);
    assert.equal(readFileSync(p.droppedKey, 'utf8'), droppedKey, "the earlier drop's key is not replaced by a key without its certificate");
    assert.ok(existsSync(p.previousKey), 'the key left without its certificate stays where it is');
  });

  it('after the agents moved, drop-previous drops and says how many were counted on the current CA; doctor says nothing of them', async () => {
    const r = await rolledOver(fx, ['a-1', 'a-2']);
    const ts = await fx.start(r.dataDir, { flags: r.ports });
    for (const id of ['a-1', 'a-2']) await fx.agent(ts, id, r.pairs[id]!, r.bundle, { renew: true });
    for (const id of ['a-1', 'a-2']) await reportedIssuer(ts, id, nameOf(r.newCa));
    const doctor = await runCli(['doctor', ...api(ts)]);
    assert.doesNotMatch(doctor.stdout, /not of the current CA/, `no warning once every device moved: ${doctor.stdout}`);
    assert.match(doctor.stdout, /the previous CA \(pki\/previous-ca\.crt\) is trusted until/, 'the previous CA is still there');
    // refused while the server runs, in the drop's own words (it said "switch" until 2026-12-06)
    const running = await runCli(['ca', 'drop-previous', '--data-dir', r.dataDir]);
    assert.equal(running.code, 2, `refused while a server runs: ${running.stderr}`);
    assert.match(running.stderr, /^updraft: error: a server runs on .*: stop it first; the server reads the CA at start, so drop the previous CA while it is stopped, then start it\n$/, running.stderr);
    assert.ok(existsSync(caPaths(r.dataDir).previous), 'nothing dropped');
    await ts.stop();

    const dropped = await runCli(['ca', 'drop-previous', '--data-dir', r.dataDir]);
    assert.equal(dropped.code, 0, `dropped: ${dropped.stderr}`);
    assert.match(dropped.stdout, /^previous CA removed/);
    assert.match(dropped.stdout, /0 devices on the previous CA, 2 on the current CA, 0 reporting no issuer/, dropped.stdout);
    assert.match(dropped.stdout, /kept as .*previous-ca\.crt\.dropped, its key as .*previous-ca\.key\.dropped \(mode 0600\) \(nothing reads them\); to undo, with the server stopped: mv -n .* && mv -n .*previous-ca\.key\.dropped .*previous-ca\.key, then start it/, dropped.stdout);
    assert.ok(!existsSync(caPaths(r.dataDir).previous), 'pki/previous-ca.crt is gone');
    // nobody was left on it: doctor, after the drop, names no device cut off
    const later = await fx.start(r.dataDir, { flags: r.ports });
    const afterDoctor = await runCli(['doctor', ...api(later)]);
    assert.doesNotMatch(afterDoctor.stdout, /drop-previous removed/, `no device on the dropped CA: ${afterDoctor.stdout}`);
    await later.stop();
  });

  it('revoked devices on the previous CA do not hold the drop back (their renewal is refused): doctor and drop-previous say them apart', async () => {
    const r = await rolledOver(fx, []);
    const ts = await fx.start(r.dataDir);
    await reportsIssuer(ts, 'r-1', nameOf(r.oldCa));
    await reportsIssuer(ts, 'k-1', nameOf(r.newCa));
    const revoked = await runCli(['device', 'revoke', 'r-1', ...api(ts)]);
    assert.equal(revoked.code, 0, `device revoke: ${revoked.stderr}`);
    const doctor = await runCli(['doctor', ...api(ts)]);
    assert.doesNotMatch(doctor.stdout, /would lock them out/, `no warning for a revoked device: ${doctor.stdout}`);
    assert.ok(
      doctor.stdout.split('\n').some((l) => /^note\s+CA\s+1 revoked device\(s\) \(r-1\) report a client certificate of the previous CA \(pki\/previous-ca\.crt\): refused anyway \(revoked\)/.test(l)),
      `doctor says the revoked device apart: ${doctor.stdout}`,
    );
    await ts.stop();

    const dropped = await runCli(['ca', 'drop-previous', '--data-dir', r.dataDir]);
    assert.equal(dropped.code, 0, `dropped though a revoked device is on the previous CA: ${dropped.stderr}`);
    assert.match(dropped.stdout, /^previous CA removed/, dropped.stdout);
    assert.match(dropped.stdout, /counted in .*updraft\.db: 0 devices on the previous CA \(besides 1 revoked, refused anyway\), 1 on the current CA, 0 reporting no issuer/, dropped.stdout);
    assert.ok(!existsSync(caPaths(r.dataDir).previous), 'pki/previous-ca.crt is gone');
  });

  it('an expired previous CA: dropped without --force, saying its devices were refused since it expired; doctor does not say a drop locks them out', async () => {
    const dataDir = await fx.tmp('updraft-drop-expired-');
    const { ca: expired } = expiredCa('e-1');
    const first = await fx.start(dataDir);
    await first.stop();
    await writeFile(caPaths(dataDir).previous, expired);
    const ts = await fx.start(dataDir);
    await reportsIssuer(ts, 'e-1', nameOf(expired));
    const doctor = await runCli(['doctor', ...api(ts)]);
    assert.match(doctor.stdout, /the previous CA \(pki\/previous-ca\.crt\) expired on \d{4}-\d\d-\d\d and is ignored/, doctor.stdout);
    assert.doesNotMatch(doctor.stdout, /would lock them out/, `no drop warning for an expired previous CA: ${doctor.stdout}`);
    await ts.stop();

    const dropped = await runCli(['ca', 'drop-previous', '--data-dir', dataDir]);
    assert.equal(dropped.code, 0, `an expired previous CA is dropped: ${dropped.stderr}`);
    assert.equal(dropped.stderr, '', 'nothing forced, no warning');
    assert.match(dropped.stdout, /^previous CA removed/, dropped.stdout);
    assert.match(dropped.stdout, /the previous CA expired on \d{4}-\d\d-\d\d; counted in .*updraft\.db: 1 device\(s\) reported a client certificate of it; they were refused already since then/, dropped.stdout);
    assert.ok(!existsSync(caPaths(dataDir).previous), 'pki/previous-ca.crt is gone');
  });

  it('--config gives the data directory when --data-dir is not given (from another working directory); --data-dir wins when both are', async () => {
    const r = await rolledOver(fx, []);
    const ts = await fx.start(r.dataDir);
    await reportsIssuer(ts, 'c-1', nameOf(r.oldCa));
    await ts.stop();
    const elsewhere = await fx.tmp('updraft-drop-cwd-');
    const config = path.join(elsewhere, 'server.json');
    await writeFile(config, JSON.stringify({ dataDir: r.dataDir }));
    const env = { UPDRAFT_DATA_DIR: '' };

    const refused = await runCli(['ca', 'drop-previous', '--config', config], { cwd: elsewhere, env });
    assert.equal(refused.code, 2, `counted in the file's data directory, refused: ${refused.stdout}${refused.stderr}`);
    assert.ok(refused.stderr.includes(`1 device(s) reported a client certificate of the previous CA (${nameOf(r.oldCa)}) in ${path.join(r.dataDir, 'updraft.db')}`), refused.stderr);
    assert.ok(!existsSync(path.join(elsewhere, 'data')), 'nothing made in ./data of the working directory');

    const other = path.join(elsewhere, 'other');
    // an existing directory: a missing one is refused (offline-missing-data-dir.test.ts)
    await mkdir(other);
    const given = await runCli(['ca', 'drop-previous', '--config', config, '--data-dir', other], { cwd: elsewhere, env });
    assert.equal(given.code, 0, given.stderr);
    assert.equal(given.stdout, 'no previous CA: nothing to remove\n', '--data-dir wins over the file');
    const help = await runCli(['ca', 'drop-previous', '--help']);
    assert.match(help.stdout.replace(/\s+/g, ' '), /--data-dir and --db \(and UPDRAFT_DATA_DIR, UPDRAFT_DB\) win over it/, 'the help says which wins');

    const forced = await runCli(['ca', 'drop-previous', '--config', config, '--force'], { cwd: elsewhere, env });
    assert.equal(forced.code, 0, forced.stderr);
    assert.ok(!existsSync(caPaths(r.dataDir).previous), "dropped in the file's data directory");
    const prepared = await runCli(['ca', 'rollover', '--prepare', '--config', config], { cwd: elsewhere, env });
    assert.equal(prepared.code, 0, prepared.stderr);
    assert.ok(existsSync(caPaths(r.dataDir).nextCert), "ca rollover --config: the next CA made in the file's data directory");
    assert.ok(!existsSync(path.join(elsewhere, 'data')), 'nothing made in ./data of the working directory');
  });
});

const started = await startTestPostgres();
describe('ca drop-previous on PostgreSQL (--db)', () => {
  if (!started.ok) {
    const message = unavailable(started, 'ca drop-previous on PostgreSQL');
    it('counts on PostgreSQL', (t) => t.skip(message));
    return;
  }
  const pg = started.server;
  const fx = new RolloverFixture();
  after(async () => {
    await fx.release();
    await pg.stop();
  });

  it('counts in the store given by --db: refused without --db (a PostgreSQL data directory) and while a device is on the previous CA; --force drops', async () => {
    const db = await pg.createDatabase();
    const r = await rolledOver(fx, ['p-1'], { flags: { db }, rolloverArgs: ['--db', db] });
    const ts = await fx.start(r.dataDir, { flags: { ...r.ports, db } });
    const stayer = await fx.agent(ts, 'p-1', r.pairs['p-1']!, r.bundle);
    await reportedIssuer(ts, 'p-1', nameOf(r.oldCa));
    await stayer.agent.stop();
    await ts.stop();

    const noDb = await runCli(['ca', 'drop-previous', '--data-dir', r.dataDir], { env: { UPDRAFT_DB: '' } });
    assert.notEqual(noDb.code, 0, `refused without the store: ${noDb.stdout}`);
    assert.match(noDb.stderr.trim(), /^updraft: error: the devices still on the previous CA could not be counted \(the server of .* (runs|last started) on PostgreSQL.*\): not dropped; give the store the server uses \(--db <url> or --config <file>\), or drop it anyway with --force$/, noDb.stderr);

    const refused = await runCli(['ca', 'drop-previous', '--data-dir', r.dataDir, '--db', db]);
    assert.equal(refused.code, 2, `refused: ${refused.stderr}`);
    assert.match(refused.stderr.trim(), /^updraft: error: 1 device\(s\) reported a client certificate of the previous CA \(CN=[^)]*\) in postgres.*--force$/, refused.stderr);
    assert.ok(existsSync(caPaths(r.dataDir).previous), 'pki/previous-ca.crt is kept');

    const forced = await runCli(['ca', 'drop-previous', '--data-dir', r.dataDir, '--db', db, '--force']);
    assert.equal(forced.code, 0, forced.stderr);
    assert.ok(!existsSync(caPaths(r.dataDir).previous), 'pki/previous-ca.crt is gone');
  });

  it('a data directory moved from SQLite to PostgreSQL: its stale updraft.db is not counted in; drop-previous and ca rollover refuse without --db; back on SQLite it counts there again', async () => {
    const db = await pg.createDatabase();
    const r = await rolledOver(fx, []); // the server ran on SQLite, then the rollover
    assert.ok(existsSync(path.join(r.dataDir, 'updraft.db')), 'the SQLite store is left in the directory');
    const ts = await fx.start(r.dataDir, { flags: { db } });
    await reportsIssuer(ts, 'q-1', nameOf(r.oldCa));
    await ts.stop();
    assert.deepEqual(JSON.parse(readFileSync(path.join(r.dataDir, 'store.json'), 'utf8')), { store: 'postgres' }, 'the store recorded: its kind, no URL');

    const env = { UPDRAFT_DB: '' };
    const noDb = await runCli(['ca', 'drop-previous', '--data-dir', r.dataDir], { env });
    assert.notEqual(noDb.code, 0, `refused without the store: ${noDb.stdout}`);
    const lines = noDb.stderr.trim().split('\n');
    assert.equal(lines.length, 1, `one line: ${noDb.stderr}`);
    assert.match(lines[0]!, /^updraft: error: the devices still on the previous CA could not be counted \(the server of .* last started on PostgreSQL \(store\.json\), so its updraft\.db, if any, is not the store it uses\): not dropped; give the store the server uses \(--db <url> or --config <file>\), or drop it anyway with --force$/, lines[0]);
    assert.ok(existsSync(caPaths(r.dataDir).previous), 'pki/previous-ca.crt is kept');
    const rollover = await runCli(['ca', 'rollover', '--data-dir', r.dataDir], { env });
    assert.equal(rollover.code, 2, `ca rollover refused without the store: ${rollover.stdout}`);
    assert.match(rollover.stderr.trim(), /^updraft: error: the server of .* last started on PostgreSQL \(store\.json\).*; give that store with --db <url> or --config <file>: the new CA is recorded there .*; not rolled over, nothing changed$/, rollover.stderr);

    const withDb = await runCli(['ca', 'drop-previous', '--data-dir', r.dataDir, '--db', db]);
    assert.equal(withDb.code, 2, `refused: ${withDb.stdout}${withDb.stderr}`);
    assert.match(withDb.stderr, /1 device\(s\) reported a client certificate of the previous CA \(CN=[^)]*\) in postgres/, withDb.stderr);

    // moved back to SQLite: the record says so, and the file is read again
    const back = await fx.start(r.dataDir);
    await back.stop();
    const sqlite = await runCli(['ca', 'drop-previous', '--data-dir', r.dataDir], { env });
    assert.equal(sqlite.code, 0, sqlite.stderr);
    assert.match(sqlite.stdout, /counted in .*updraft\.db: 0 devices on the previous CA/, sqlite.stdout);
  });
});
