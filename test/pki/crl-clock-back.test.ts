/**
 * CRL issue order across a clock stepped back (an NTP step, a failover to a database whose
 * clock is behind): a list issued while the clock was ahead, by less than the day thisUpdate
 * is backdated by, is still in effect, so the next changed list must be issued after it, or
 * OpenSSL, holding both, keeps the older and admits the device deleted in between (second
 * review of 2026-12-07: with claims dropped 5 minutes ahead, a 10-minute step did that).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, it } from 'node:test';
import { caPaths } from '../../src/pki/certificate-authority.ts';
import { Scratch } from '../helpers/scratch.ts';
import { apiJson, registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';

const scratch = new Scratch();
after(() => scratch.release());

function openssl(args: string[]): string {
  const r = spawnSync('openssl', args, { encoding: 'utf8' });
  return `${r.stdout}${r.stderr}`;
}

async function enrol(ts: TestServer, id: string): Promise<string> {
  await registerDevice(ts, id);
  const r = await apiJson(ts, 'POST', `/api/v1/devices/${id}/certificate`);
  assert.equal(r.status, 201, `certificate of ${id}: ${JSON.stringify(r.body)}`);
  return r.body.certificate as string;
}

async function remove(ts: TestServer, id: string): Promise<void> {
  const r = await apiJson(ts, 'DELETE', `/api/v1/devices/${id}`);
  assert.ok(r.status < 300, `delete ${id}: ${r.status}`);
}

/** GET /broker/crl with this process's clock moved by `offsetMs`. */
async function crlAt(ts: TestServer, offsetMs: number) {
  const real = Date.now;
  Date.now = () => real() + offsetMs;
  try {
    return await apiJson(ts, 'GET', '/api/v1/broker/crl');
  } finally {
    Date.now = real;
  }
}

for (const hours of [1 / 6, 12]) {
  it(`issues the next changed list after one issued while the clock was ${hours * 60} minutes ahead, and OpenSSL holding both refuses the device deleted in between`, async () => {
    const ts = await startTestServer();
    scratch.onRelease(() => ts.close());
    const dir = await scratch.tmp('updraft-crl-back-');
    const f = (n: string) => path.join(dir, n);
    await writeFile(f('ca.pem'), await readFile(caPaths(ts.dataDir).cert, 'utf8'));
    await enrol(ts, 'g-1');
    await remove(ts, 'g-1');
    const a = await crlAt(ts, hours * 3_600_000);
    assert.equal(a.status, 200, `the list issued ahead: ${JSON.stringify(a.body)}`);
    await writeFile(f('a.pem'), a.body.crl);
    await writeFile(f('g2.pem'), await enrol(ts, 'g-2'));
    await remove(ts, 'g-2');
    const b = await crlAt(ts, 0);
    assert.equal(b.status, 200, `the list issued with the clock put right: ${JSON.stringify(b.body)}`);
    await writeFile(f('b.pem'), b.body.crl);
    const lastUpdate = (file: string) => Date.parse(/lastUpdate=(.+)/.exec(openssl(['crl', '-in', f(file), '-noout', '-lastupdate']))?.[1] ?? '');
    assert.ok(lastUpdate('b.pem') > lastUpdate('a.pem'), `the second list after the first: ${new Date(lastUpdate('b.pem')).toISOString()} vs ${new Date(lastUpdate('a.pem')).toISOString()}`);
    assert.ok(lastUpdate('b.pem') <= Date.now(), 'the second list in effect now');
    await writeFile(f('both.pem'), a.body.crl + b.body.crl);
    assert.match(openssl(['verify', '-crl_check', '-CAfile', f('ca.pem'), '-CRLfile', f('both.pem'), f('g2.pem')]), /certificate revoked/, 'OpenSSL holding both lists refuses the device deleted in between');
  });
}
