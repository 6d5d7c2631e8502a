/**
 * `updraft ca rollover --db` on PostgreSQL (docs/security.md "When the CA nears its end", step
 * 3): instances on one database refuse to start with a CA other than the recorded one, so the
 * rollover records the new CA; an instance given the new pki/ files starts, one still holding
 * the old CA is refused. A private PostgreSQL, real servers, the real CLI.
 */
import assert from 'node:assert/strict';
import { copyFile, cp, mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, it } from 'node:test';
import { caPaths } from '../../src/pki/certificate-authority.ts';
import { runCli } from '../helpers/cli.ts';
import { startTestPostgres, unavailable } from '../helpers/postgres.ts';
import { startTestServer } from '../helpers/server.ts';

const started = await startTestPostgres();
if (!started.ok) {
  const message = unavailable(started, 'CA rollover on PostgreSQL');
  it('CA rollover on PostgreSQL', (t) => t.skip(message));
} else {
  const pg = started.server;
  const dirs: string[] = [];
  after(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
    await pg.stop();
  });

  it('ca rollover --db records the new CA: an instance with the new files starts, one with the old CA is refused', async () => {
    const db = await pg.createDatabase();
    const root = await mkdtemp(path.join(os.tmpdir(), 'updraft-rollover-pg-'));
    dirs.push(root);
    const [a, b, stale] = ['a', 'b', 'stale'].map((n) => path.join(root, n)) as [string, string, string];
    const first = await startTestServer({ dataDir: a, flags: { db } });
    await first.stop();
    // the other instances' data directories, copied from the first (docs/deployment.md)
    await cp(a, b, { recursive: true });
    await cp(a, stale, { recursive: true });
    const oldCa = await readFile(caPaths(a).cert, 'utf8');

    const r = await runCli(['ca', 'rollover', '--data-dir', a, '--db', db]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /recorded in .*: instances on it start only with the new CA/);
    const newCa = await readFile(caPaths(a).cert, 'utf8');
    assert.notEqual(newCa, oldCa);
    for (const f of ['cert', 'key', 'previous'] as const) await copyFile(caPaths(a)[f], caPaths(b)[f]);

    const instanceA = await startTestServer({ dataDir: a, flags: { db } });
    const instanceB = await startTestServer({ dataDir: b, flags: { db } });
    try {
      assert.equal(instanceB.server.security.ca.certificate, newCa, 'the instance given the new files runs on the new CA');
      assert.equal(instanceB.server.security.ca.previousCertificate, oldCa);
      await assert.rejects(startTestServer({ dataDir: stale, flags: { db } }), /this instance's pki\/ca\.key and pki\/ca\.crt differ from what the other instances on this database hold/, 'the instance still holding the old CA is refused');
    } finally {
      await instanceB.stop();
      await instanceA.stop();
    }
  });
}
