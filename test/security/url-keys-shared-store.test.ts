/**
 * The URL key ring is per data directory: on a database other instances may share
 * (PostgreSQL), an online `updraft keys rotate-url` says that the other instances need the
 * new key too, and when (docs/deployment.md); on the embedded store it says nothing. A real
 * server on a private PostgreSQL, the real CLI.
 */
import assert from 'node:assert/strict';
import { after, it } from 'node:test';
import { runCli } from '../helpers/cli.ts';
import { startTestPostgres, unavailable } from '../helpers/postgres.ts';
import { startTestServer } from '../helpers/server.ts';

const started = await startTestPostgres();
if (!started.ok) {
  const message = unavailable(started, 'URL key rotation on a shared store');
  it('URL key rotation on a shared store', (t) => t.skip(message));
} else {
  const pg = started.server;
  after(() => pg.stop());

  it('an online URL key rotation on PostgreSQL says the other instances need the key, and by when', async () => {
    const ts = await startTestServer({ flags: { db: await pg.createDatabase() } });
    try {
      const api = ['--server', ts.httpUrl, '--token', ts.token];
      const now = await runCli(['keys', 'rotate-url', ...api]);
      assert.equal(now.code, 0, now.stderr);
      assert.match(now.stdout, /^rotated: [0-9a-f]+ signs from now on/);
      assert.match(now.stderr, /^updraft: warning: this instance's key ring changed, not the others': instances on one database verify each other's URLs only with the same keys\/url-signing\.json\. Copy it to every instance \(and restart them\): the new key signs at once, so stage the next one \(--activate-in 1h\) or rotate offline \(docs\/deployment\.md\)\n$/);
      const staged = await runCli(['keys', 'rotate-url', '--activate-in', '1h', ...api]);
      assert.equal(staged.code, 0, staged.stderr);
      assert.match(staged.stderr, /Copy it to every instance \(and restart them\) before \S+, when the new key starts signing/);
    } finally {
      await ts.close();
    }
  });
}

it('on the embedded store, an online URL key rotation warns of nothing', async () => {
  const ts = await startTestServer();
  try {
    const r = await runCli(['keys', 'rotate-url', '--server', ts.httpUrl, '--token', ts.token]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
  } finally {
    await ts.close();
  }
});
