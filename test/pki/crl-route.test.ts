/**
 * `GET /api/v1/broker/crl` on real servers (pki/revocation-list.ts through the route): the
 * CRL kept while the revocations are unchanged is given back without reading a CA key; and
 * two instances on one PostgreSQL store, the second's clock behind, issue their changed lists
 * in order (the second's later than the first's), so that OpenSSL, which keeps the CRL of the
 * latest thisUpdate, takes the newer revocations.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cp, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { BACKDATE_MS, caPaths } from '../../src/pki/certificate-authority.ts';
import { claimIssue } from '../../src/pki/revocation-list.ts';
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
    // the key file gone for a moment (a restore, a permission change): nothing to sign with,
    // and nothing needs signing
    await rename(key, `${key}.aside`);
    try {
      const again = await apiJson(ts, 'GET', '/api/v1/broker/crl');
      assert.equal(again.status, 200, `the kept CRL is given without the key: ${JSON.stringify(again.body)}`);
      assert.equal(again.body.crl, first.body.crl, 'the same CRL while the revocations are the same');
      assert.equal(again.body.digest, first.body.digest, 'the same digest');
    } finally {
      await rename(`${key}.aside`, key);
    }
    // a change signs a new list (the key back)
    await enrol(ts, 'k-next');
    await remove(ts, 'k-next');
    const changed = await apiJson(ts, 'GET', '/api/v1/broker/crl');
    assert.equal(changed.status, 200, `a new CRL is made: ${JSON.stringify(changed.body)}`);
    assert.equal(changed.body.revoked, 2, 'listing both deleted devices');
    assert.notEqual(changed.body.crl, first.body.crl, 'a new list');
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
    const [x, y] = await Promise.all([claimIssue(a.server.store, Date.now()), claimIssue(b.server.store, Date.now())]);
    assert.notEqual(x, y, `two instances never issue in the same second: ${x} ${y}`);
    assert.ok(Math.min(x, y) > lastUpdate(f('a2.pem')) + BACKDATE_MS, `both later than the lists issued before (thisUpdate is a day before the issue): ${x} ${y}`);
    const left = await a.server.store.listSettings('crl.issued.');
    assert.ok(left.length <= 2, `the claims below the latest are deleted: ${left.map((l) => l.key).join(', ')}`);
  });
});
