/**
 * `GET /api/v1/broker/crl` on real servers (pki/revocation-list.ts through the route): the
 * CRL kept while the revocations are unchanged is given back without reading a CA key; and
 * two instances on one PostgreSQL store, the second's clock behind, issue their changed lists
 * in order (the second's later than the first's), so that OpenSSL, which keeps the CRL of the
 * latest thisUpdate, takes the newer revocations.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cp, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { BACKDATE_MS, caPaths } from '../../src/pki/certificate-authority.ts';
import { caFingerprint, claimIssue } from '../../src/pki/revocation-list.ts';
import { startTestPostgres, unavailable } from '../helpers/postgres.ts';
import { Scratch } from '../helpers/scratch.ts';
import { apiJson, registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';

const scratch = new Scratch();
after(() => scratch.release());

const pgResult = await startTestPostgres();

/** Registers `deviceId` and has the server issue it a certificate (recorded, so revocable); resolves with the certificate (PEM). */
async function enrol(ts: TestServer, deviceId: string): Promise<string> {
  await registerDevice(ts, deviceId);
  const r = await apiJson(ts, 'POST', `/api/v1/devices/${deviceId}/certificate`);
  assert.equal(r.status, 201, `certificate of ${deviceId}: ${JSON.stringify(r.body)}`);
  return r.body.certificate as string;
}

function openssl(args: string[]): { code: number | null; out: string } {
  const r = spawnSync('openssl', args, { encoding: 'utf8' });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}

/** The thisUpdate (ms) of a CRL file, as OpenSSL reads it. */
function lastUpdate(file: string): number {
  const r = openssl(['crl', '-in', file, '-noout', '-lastupdate']);
  assert.equal(r.code, 0, `openssl reads ${file}: ${r.out}`);
  const at = Date.parse(/lastUpdate=(.+)/.exec(r.out)?.[1] ?? '');
  assert.ok(Number.isFinite(at), `a lastUpdate in: ${r.out}`);
  return at;
}

async function remove(ts: TestServer, deviceId: string): Promise<void> {
  const r = await apiJson(ts, 'DELETE', `/api/v1/devices/${deviceId}`);
  assert.ok(r.status === 200 || r.status === 204, `delete ${deviceId}: ${r.status} ${JSON.stringify(r.body)}`);
}

describe('GET /api/v1/broker/crl', () => {
  it('gives back the kept CRL while the revocations are unchanged without reading the CA key', async () => {
    const ts = await startTestServer();
    scratch.onRelease(() => ts.close());
    await enrol(ts, 'k-gone');
    await remove(ts, 'k-gone');
    const first = await apiJson(ts, 'GET', '/api/v1/broker/crl');
    assert.equal(first.status, 200, `the CRL is made: ${JSON.stringify(first.body)}`);
    assert.equal(first.body.revoked, 1, 'listing the deleted device');
    const key = caPaths(ts.dataDir).key;
    await enrol(ts, 'k-while-aside');
    // the key file gone for a moment (a restore, a permission change): nothing to sign with,
    // and nothing needs signing
    await rename(key, `${key}.aside`);
    try {
      const again = await apiJson(ts, 'GET', '/api/v1/broker/crl');
      assert.equal(again.status, 200, `the kept CRL is given without the key: ${JSON.stringify(again.body)}`);
      assert.equal(again.body.crl, first.body.crl, 'the same CRL while the revocations are the same');
      assert.equal(again.body.digest, first.body.digest, 'the same digest');
      // a change with the key gone: a server error the watch retries, not a 404 it reads as a
      // server without the route ("upgrade it") and stops asking on (review of 2026-12-07)
      await remove(ts, 'k-while-aside');
      const unsigned = await apiJson(ts, 'GET', '/api/v1/broker/crl');
      assert.equal(unsigned.status, 500, `no key to sign the change with: ${JSON.stringify(unsigned.body)}`);
      assert.match(String(unsigned.body.error?.message), /no CA key .* to sign the changed CRL with/, 'the message says what is missing');
    } finally {
      await rename(`${key}.aside`, key);
    }
    // a change signs a new list (the key back)
    await enrol(ts, 'k-next');
    await remove(ts, 'k-next');
    const changed = await apiJson(ts, 'GET', '/api/v1/broker/crl');
    assert.equal(changed.status, 200, `a new CRL is made: ${JSON.stringify(changed.body)}`);
    assert.equal(changed.body.revoked, 3, 'listing the three deleted devices');
    assert.notEqual(changed.body.crl, first.body.crl, 'a new list');
  });

  /** GET /broker/crl as the watch sends it: the digest it holds in If-None-Match, when it holds one. */
  async function crlHeld(ts: TestServer, digest?: string): Promise<{ status: number; etag: string | null; text: string }> {
    const res = await fetch(`${ts.httpUrl}/api/v1/broker/crl`, { headers: { authorization: `Bearer ${ts.token}`, ...(digest ? { 'if-none-match': `"${digest}"` } : {}) } });
    return { status: res.status, etag: res.headers.get('etag'), text: await res.text() };
  }

  /**
   * Renames device_certificates.issuer away (through a second connection to the running
   * server's SQLite file) for the time of `run`: every read of the revoked rows fails then
   * (listRevokedCertificates and listRevokedEntries both select it), the stamp's aggregate,
   * which reads none of the rows' issuers, does not.
   */
  async function rowsUnreadable(ts: TestServer, run: () => Promise<void>): Promise<void> {
    const db = new Database(path.join(ts.dataDir, 'updraft.db'));
    db.exec('ALTER TABLE device_certificates RENAME COLUMN issuer TO issuer_hidden');
    try {
      await run();
    } finally {
      db.exec('ALTER TABLE device_certificates RENAME COLUMN issuer_hidden TO issuer');
      db.close();
    }
  }

  it('reads no revoked row while the revocations are unchanged (QA 2026-12-07: every call read them all)', async () => {
    const ts = await startTestServer();
    scratch.onRelease(() => ts.close());
    await enrol(ts, 'r-gone');
    await remove(ts, 'r-gone');
    const first = await apiJson(ts, 'GET', '/api/v1/broker/crl');
    assert.equal(first.status, 200, `the CRL is made: ${JSON.stringify(first.body)}`);
    await enrol(ts, 'r-live'); // a certificate not revoked: the revocations are the same
    await rowsUnreadable(ts, async () => {
      const again = await apiJson(ts, 'GET', '/api/v1/broker/crl');
      assert.equal(again.status, 200, `the kept CRL is given with the rows unreadable, so none was read: ${JSON.stringify(again.body).slice(0, 300)}`);
      assert.equal(again.body.crl, first.body.crl, 'the same CRL');
      assert.equal(again.body.digest, first.body.digest, 'the same digest');
    });
    // a change is seen, and its list made from the rows
    await remove(ts, 'r-live');
    const changed = await apiJson(ts, 'GET', '/api/v1/broker/crl');
    assert.equal(changed.status, 200, `a new CRL: ${JSON.stringify(changed.body).slice(0, 300)}`);
    assert.equal(changed.body.revoked, 2, 'listing both deleted devices');
    assert.notEqual(changed.body.digest, first.body.digest, 'a new digest');
  });

  it('answers the digest as ETag, and 304 with no body to a client holding it, with no list made (even by an instance that keeps none)', async () => {
    const ts = await startTestServer();
    await enrol(ts, 'e-gone');
    await remove(ts, 'e-gone');
    const first = await crlHeld(ts);
    assert.equal(first.status, 200, `the CRL is made: ${first.text.slice(0, 300)}`);
    const digest = (JSON.parse(first.text) as { digest: string }).digest;
    assert.equal(first.etag, `W/"${digest}"`, 'the ETag is the digest');
    const same = await crlHeld(ts, digest);
    assert.equal(same.status, 304, `the digest held: not modified (${same.status} ${same.text.slice(0, 200)})`);
    assert.equal(same.text, '', 'no body');
    assert.equal(same.etag, `W/"${digest}"`, 'the ETag with it');
    const star = await fetch(`${ts.httpUrl}/api/v1/broker/crl`, { headers: { authorization: `Bearer ${ts.token}`, 'if-none-match': '*' } });
    assert.equal(star.status, 304, 'If-None-Match: * is answered 304: a list is current (RFC 9110 13.1.2)');
    const other = await crlHeld(ts, 'f'.repeat(64));
    assert.equal(other.status, 200, 'another digest held: the list');
    assert.equal(other.etag, `W/"${digest}"`, 'with its ETag');
    // restarted (no list kept), its rows unreadable and its key aside: nothing is made, or read, for a client holding the list
    await ts.stop();
    const again = await startTestServer({ dataDir: ts.dataDir });
    scratch.onRelease(() => again.close());
    const key = caPaths(again.dataDir).key;
    await rename(key, `${key}.aside`);
    try {
      await rowsUnreadable(again, async () => {
        const held = await crlHeld(again, digest);
        assert.equal(held.status, 304, `a restarted server, rows unreadable, key aside: not modified (${held.status} ${held.text.slice(0, 300)})`);
      });
    } finally {
      await rename(`${key}.aside`, key);
    }
    // a deletion since: the new list, whatever is held
    await enrol(again, 'e-next');
    await remove(again, 'e-next');
    const changed = await crlHeld(again, digest);
    assert.equal(changed.status, 200, `changed: the new list (${changed.status})`);
    const body = JSON.parse(changed.text) as { revoked: number; digest: string };
    assert.equal(body.revoked, 2, 'listing both deleted devices');
    assert.equal(changed.etag, `W/"${body.digest}"`, 'under its new ETag');
    assert.notEqual(body.digest, digest, 'a new digest');
  });

  it('orders the lists of two instances on one PostgreSQL store, the second with its clock a minute behind', { skip: pgResult.ok ? false : unavailable(pgResult, 'the two-instance CRL test') }, async () => {
    assert.ok(pgResult.ok);
    const pg = pgResult.server;
    scratch.onRelease(() => pg.stop());
    const db = await pg.createDatabase();
    const a = await startTestServer({ flags: { db } });
    scratch.onRelease(() => a.close());
    // the second instance shares the first's identity material and CA (deployment.md: its data directory copied)
    const bDir = await scratch.tmp('updraft-crl-b-');
    await cp(a.dataDir, bDir, { recursive: true });
    const b = await startTestServer({ dataDir: bDir, flags: { db } });
    scratch.onRelease(() => b.stop());
    const dir = await scratch.tmp('updraft-crl-files-');
    const f = (n: string) => path.join(dir, n);
    await writeFile(f('ca.pem'), await readFile(caPaths(a.dataDir).cert, 'utf8'));

    await enrol(a, 'c-1');
    await remove(a, 'c-1');
    const first = await apiJson(a, 'GET', '/api/v1/broker/crl');
    assert.equal(first.status, 200, `the first instance makes a CRL: ${JSON.stringify(first.body)}`);
    await writeFile(f('a.pem'), first.body.crl);
    // a second device deleted, and the list asked of the instance whose clock is a minute behind
    const second = await enrol(a, 'c-2');
    await writeFile(f('c-2.pem'), second);
    await remove(a, 'c-2');
    const realNow = Date.now;
    Date.now = () => realNow() - 60_000;
    let changed: Awaited<ReturnType<typeof apiJson>>;
    try {
      changed = await apiJson(b, 'GET', '/api/v1/broker/crl');
    } finally {
      Date.now = realNow;
    }
    assert.equal(changed.status, 200, `the second instance makes a CRL: ${JSON.stringify(changed.body)}`);
    assert.equal(changed.body.revoked, 2, 'listing both deleted devices');
    await writeFile(f('b.pem'), changed.body.crl);
    const [atA, atB] = [lastUpdate(f('a.pem')), lastUpdate(f('b.pem'))];
    assert.ok(atB > atA, `the second instance's changed list is later than the first's, its clock a minute behind: ${new Date(atB).toISOString()} vs ${new Date(atA).toISOString()}`);
    // a Mosquitto given both (the first's before the second's) goes by the latest thisUpdate: c-2 refused
    await writeFile(f('both.pem'), first.body.crl + changed.body.crl);
    const r = openssl(['verify', '-crl_check', '-CAfile', f('ca.pem'), '-CRLfile', f('both.pem'), f('c-2.pem')]);
    assert.match(r.out, /certificate revoked/, `OpenSSL holding both lists refuses the device deleted second: ${r.out}`);
    // and the first instance's next change is later again than the second's
    await enrol(b, 'c-3');
    await remove(b, 'c-3');
    const third = await apiJson(a, 'GET', '/api/v1/broker/crl');
    assert.equal(third.status, 200, `the first instance makes a CRL again: ${JSON.stringify(third.body)}`);
    await writeFile(f('a2.pem'), third.body.crl);
    assert.ok(lastUpdate(f('a2.pem')) > atB, 'the first instance issues after the second');
    // both instances claiming an issue time at once, from the same clock: two distinct seconds, above every earlier one
    const [x, y] = await Promise.all([claimIssue(a.server.store, Date.now(), Date.now()), claimIssue(b.server.store, Date.now(), Date.now())]);
    assert.notEqual(x, y, `two instances never issue in the same second: ${x} ${y}`);
    assert.ok(Math.min(x, y) > lastUpdate(f('a2.pem')) + BACKDATE_MS, `both later than the lists issued before (thisUpdate is a day before the issue): ${x} ${y}`);
    const left = await a.server.store.listSettings('crl.issued.');
    assert.ok(left.length <= 2, `the claims below the latest are deleted: ${left.map((l) => l.key).join(', ')}`);
  });
  /** GET /broker/crl with this process's clock `aheadMs` ahead (the server's clock, as NTP left it wrong). */
  async function crlAhead(ts: TestServer, aheadMs: number) {
    const realNow = Date.now;
    Date.now = () => realNow() + aheadMs;
    try {
      return await apiJson(ts, 'GET', '/api/v1/broker/crl');
    } finally {
      Date.now = realNow;
    }
  }

  /** A CRL in effect now: its thisUpdate not in the future, and a device never deleted admitted by OpenSSL with it. */
  async function inEffect(caPem: string, okCert: string, crlPem: string, label: string): Promise<void> {
    const dir = await scratch.tmp('updraft-crl-ahead-');
    const f = (n: string) => path.join(dir, n);
    await writeFile(f('ca.pem'), caPem);
    await writeFile(f('ok.pem'), okCert);
    await writeFile(f('crl.pem'), crlPem);
    assert.ok(lastUpdate(f('crl.pem')) <= Date.now(), `${label}: the CRL's thisUpdate is not in the future`);
    const v = openssl(['verify', '-crl_check', '-CAfile', f('ca.pem'), '-CRLfile', f('crl.pem'), f('ok.pem')]);
    assert.match(v.out, /: OK/, `${label}: a device never deleted is admitted (not "CRL is not yet valid"): ${v.out}`);
  }

  // QA 2026-12-07, an instance 2 h ahead: a deletion there revoked only the certificates valid
  // by its clock, and its lists left out revoked certificates expiring within those 2 h; OpenSSL
  // admitted both kinds until they really expired
  for (const backend of ['SQLite', 'PostgreSQL'] as const) {
    it(`deletes and lists, on an instance whose clock is 2 h ahead, certificates in force for another hour (${backend})`, { skip: backend === 'PostgreSQL' && !pgResult.ok ? unavailable(pgResult, 'the PostgreSQL case') : false }, async () => {
      const flags = backend === 'PostgreSQL' && pgResult.ok ? { db: await pgResult.server.createDatabase() } : undefined;
      const ts = await startTestServer(flags ? { flags } : {});
      scratch.onRelease(() => ts.close());
      const hour = 3_600_000;
      const now = Date.now();
      const issuer = caFingerprint(await readFile(caPaths(ts.dataDir).cert, 'utf8'));
      const record = (serial: string, deviceId: string) => ts.server.store.recordDeviceCertificate({ serial, deviceId, issuer, issuerSubject: 'CN=Updraft device CA', issuedAt: now - hour, notAfter: now + hour });
      await record('7e0001', 'never-here'); // its device not registered: recorded revoked
      await registerDevice(ts, 'near-1');
      await record('7e0002', 'near-1');
      const realNow = Date.now;
      Date.now = () => realNow() + 2 * hour;
      try {
        await remove(ts, 'near-1');
      } finally {
        Date.now = realNow;
      }
      const revoked = (await ts.server.store.listRevokedCertificates(now)).map((c) => c.serial);
      assert.ok(revoked.includes('7e0002'), `the certificate of the device deleted 2 h ahead is revoked: ${revoked.join(', ')}`);
      const crl = await crlAhead(ts, 2 * hour);
      assert.equal(crl.status, 200, `a CRL from the clock ahead: ${JSON.stringify(crl.body)}`);
      const dir = await scratch.tmp('updraft-crl-near-');
      await writeFile(path.join(dir, 'crl.pem'), crl.body.crl);
      const text = openssl(['crl', '-in', path.join(dir, 'crl.pem'), '-noout', '-text']);
      assert.match(text.out, /Serial Number: 7E0001/, `the certificate revoked before, expiring in an hour, is listed: ${text.out}`);
      assert.match(text.out, /Serial Number: 7E0002/, `the certificate of the device deleted 2 h ahead is listed: ${text.out}`);
      assert.equal(crl.body.revoked, 2, 'both listed');
      // the ETag path reads the stamp with the same bound: the list just made is current
      const held = await fetch(`${ts.httpUrl}/api/v1/broker/crl`, { headers: { authorization: `Bearer ${ts.token}`, 'if-none-match': `W/"${crl.body.digest}"` } });
      await held.arrayBuffer();
      assert.equal(held.status, 304, `the client holding it is answered 304: ${held.status}`);
    });
  }

  it('drops an issue time a clock ahead left in the store: once the clock is right again, lists are issued by it (review of 2026-12-07)', async () => {
    const ts = await startTestServer();
    const okCert = await enrol(ts, 'on-time');
    await enrol(ts, 'gone-1');
    await remove(ts, 'gone-1');
    const ahead = await crlAhead(ts, 3 * 86_400_000);
    assert.equal(ahead.status, 200, `a CRL with the clock three days ahead: ${JSON.stringify(ahead.body)}`);
    await ts.stop();
    // the clock put right, the server restarted
    const again = await startTestServer({ dataDir: ts.dataDir });
    scratch.onRelease(() => again.close());
    await enrol(again, 'gone-2');
    await remove(again, 'gone-2');
    const next = await apiJson(again, 'GET', '/api/v1/broker/crl');
    assert.equal(next.status, 200, `a CRL after the restart: ${JSON.stringify(next.body)}`);
    assert.equal(next.body.revoked, 2, 'both deleted devices listed');
    await inEffect(await readFile(caPaths(again.dataDir).cert, 'utf8'), okCert, next.body.crl, 'after the clock was put right');
    const claims = await again.server.store.listSettings('crl.issued.');
    assert.ok(claims.every((c) => Number(c.key.slice('crl.issued.'.length)) <= Date.now() + 5 * 60_000), `no claim left ahead of the clock: ${claims.map((c) => c.value).join(', ')}`);
  });

  it('issues by the database clock on PostgreSQL: an instance whose clock is two days ahead issues no list in the future, and puts none of the others there', { skip: pgResult.ok ? false : unavailable(pgResult, 'the two-instance CRL test') }, async () => {
    assert.ok(pgResult.ok);
    const db = await pgResult.server.createDatabase();
    const a = await startTestServer({ flags: { db } });
    scratch.onRelease(() => a.close());
    const bDir = await scratch.tmp('updraft-crl-b-');
    await cp(a.dataDir, bDir, { recursive: true });
    const b = await startTestServer({ dataDir: bDir, flags: { db } });
    scratch.onRelease(() => b.stop());
    const caPem = await readFile(caPaths(a.dataDir).cert, 'utf8');
    const okCert = await enrol(a, 'on-time');
    await enrol(a, 'gone-1');
    await remove(a, 'gone-1');
    const ahead = await crlAhead(a, 2 * 86_400_000);
    assert.equal(ahead.status, 200, `a CRL from the instance ahead: ${JSON.stringify(ahead.body)}`);
    await inEffect(caPem, okCert, ahead.body.crl, 'from the instance ahead');
    await enrol(b, 'gone-2');
    await remove(b, 'gone-2');
    const fromB = await apiJson(b, 'GET', '/api/v1/broker/crl');
    assert.equal(fromB.status, 200, `a CRL from the instance on time: ${JSON.stringify(fromB.body)}`);
    await inEffect(caPem, okCert, fromB.body.crl, 'from the instance on time');
  });
  // a clock stepped back (an NTP step, a failover to a database whose clock is behind): a list
  // issued while the clock was ahead, by less than the day thisUpdate is backdated by, is still
  // in effect, so the next changed list must come after it, or OpenSSL holding both keeps the
  // older and admits the device deleted in between (second review of 2026-12-07: with claims
  // dropped 5 minutes ahead, a 10-minute step did that)
  for (const hours of [1 / 6, 12]) {
    it(`issues the next changed list after one issued while the clock was ${hours * 60} minutes ahead, and OpenSSL holding both refuses the device deleted in between`, async () => {
      const ts = await startTestServer();
      scratch.onRelease(() => ts.close());
      const dir = await scratch.tmp('updraft-crl-back-');
      const f = (n: string) => path.join(dir, n);
      await writeFile(f('ca.pem'), await readFile(caPaths(ts.dataDir).cert, 'utf8'));
      await enrol(ts, 'g-1');
      await remove(ts, 'g-1');
      const a = await crlAhead(ts, hours * 3_600_000);
      assert.equal(a.status, 200, `the list issued ahead: ${JSON.stringify(a.body)}`);
      await writeFile(f('a.pem'), a.body.crl);
      await writeFile(f('g2.pem'), await enrol(ts, 'g-2'));
      await remove(ts, 'g-2');
      const b = await apiJson(ts, 'GET', '/api/v1/broker/crl');
      assert.equal(b.status, 200, `the list issued with the clock put right: ${JSON.stringify(b.body)}`);
      await writeFile(f('b.pem'), b.body.crl);
      assert.ok(lastUpdate(f('b.pem')) > lastUpdate(f('a.pem')), `the second list after the first: ${new Date(lastUpdate(f('b.pem'))).toISOString()} vs ${new Date(lastUpdate(f('a.pem'))).toISOString()}`);
      assert.ok(lastUpdate(f('b.pem')) <= Date.now(), 'the second list in effect now');
      await writeFile(f('both.pem'), a.body.crl + b.body.crl);
      assert.match(openssl(['verify', '-crl_check', '-CAfile', f('ca.pem'), '-CRLfile', f('both.pem'), f('g2.pem')]).out, /certificate revoked/, 'OpenSSL holding both lists refuses the device deleted in between');
    });
  }
  it('makes one list for requests that come together after a change (every watch asks at the same deletion event), all answered 200 (review of 2026-12-07: some got 503)', async () => {
    const ts = await startTestServer();
    scratch.onRelease(() => ts.close());
    await enrol(ts, 'together-gone');
    await remove(ts, 'together-gone');
    // enough revocations for the list to be built in the worker, so the requests overlap there
    const issuer = caFingerprint(await readFile(caPaths(ts.dataDir).cert, 'utf8'));
    const db = new Database(path.join(ts.dataDir, 'updraft.db'));
    try {
      const insert = db.prepare('INSERT INTO device_certificates (serial, device_id, issuer, issuer_subject, issued_at, not_after, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?)');
      const now = Date.now();
      db.transaction(() => {
        for (let i = 0; i < 20_000; i++) insert.run(randomBytes(16).toString('hex'), `bulk-${i}`, issuer, 'CN=bulk', now - 1e9, now + 1e10, now - i);
      })();
    } finally {
      db.close();
    }
    const answers = await Promise.all(Array.from({ length: 4 }, () => crlHeld(ts)));
    assert.deepEqual(answers.map((a) => a.status), [200, 200, 200, 200], `every request answered: ${answers.map((a) => `${a.status} ${a.status === 200 ? '' : a.text.slice(0, 200)}`).join(' | ')}`);
    const lists = new Set(answers.map((a) => (JSON.parse(a.text) as { crl: string }).crl));
    assert.equal(lists.size, 1, `one list made for the four (${lists.size})`);
    const claims = await ts.server.store.listSettings('crl.issued.');
    assert.equal(claims.length, 1, `one issue time claimed: ${claims.map((c) => c.value).join(', ')}`);
  });
});
