/**
 * A PostgreSQL database restored to an earlier point under a running instance (a point-in-time
 * restore, a failover to a replica that was behind): versions go back, and other writers can
 * bring a shadow back up to the version number this instance has cached, with other content.
 * The replica built its next write on its cached copy, whose conditional write (same version)
 * then passed, and the pre-restore content came back (QA, 2026-12-06: with two instances, a
 * job the restore had removed had its command written again into shadows). The store now says
 * when the database may have gone back (its connections lost), and the caches are dropped.
 *
 * Real PostgreSQL: pg_dump, then the database dropped (its connections ended), made again
 * and pg_restore'd; the "other instance" is a second store on the same database.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { PostgresStore } from '../../src/store/postgres-store.ts';
import { createLogger } from '../../src/util/logger.ts';
import { eventually } from '../helpers/cli.ts';
import { postgresTool, startTestPostgres, unavailable, type TestPostgres } from '../helpers/postgres.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

const pgResult = await startTestPostgres();

if (!pgResult.ok) {
  const message = unavailable(pgResult as { ok: false; reason: string }, 'PostgreSQL restore cache test');
  it('a restored database: caches dropped', (t) => t.skip(message));
} else {
  describe('PostgreSQL restored to an earlier point under a running instance', () => {
    const server: TestPostgres = pgResult.server;
    let url: string;
    let ts: TestServer;
    let dir: string;
    const lines: { level: string; msg: string }[] = [];

    before(async () => {
      url = await server.createDatabase();
      dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-pg-restore-'));
      const logger = createLogger({ level: 'info', format: 'json', write: (l) => lines.push(JSON.parse(l)) });
      ts = await startTestServer({ logger, flags: { db: url } });
    });
    after(async () => {
      await ts?.close();
      await server.stop();
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    const run = (tool: string, args: string[]) => {
      const r = spawnSync(postgresTool(tool), args, { encoding: 'utf8' });
      assert.equal(r.status, 0, `${tool}: ${r.stderr}`);
    };
    const admin = async (sql: string) => {
      const u = new URL(url);
      u.pathname = '/postgres';
      const c = new pg.Client({ connectionString: u.toString() });
      await c.connect();
      try {
        await c.query(sql);
      } finally {
        await c.end();
      }
    };
    const device = (id: string) => ({ kind: 'device' as const, id });

    it("the instance's next update starts from what the restored database holds, not from its cached copy", async () => {
      const ref = { deviceId: 'r-1', name: '' };
      await ts.server.replica.update(ref, { state: { reported: { base: 1 } } }, device('r-1'));
      const dump = path.join(dir, 'at-v1.dump');
      run('pg_dump', ['-Fc', '-f', dump, url]);
      // written after the snapshot, and cached by the instance: what the restore loses
      await ts.server.replica.update(ref, { state: { reported: { lost: 'a' } } }, device('r-1'));
      await ts.server.replica.update(ref, { state: { reported: { lost: 'b' } } }, device('r-1'));
      assert.equal((await ts.server.store.getShadow('r-1', ''))?.version, 3);

      // the restore: the database dropped (its sessions ended), made again, the snapshot put back
      const name = new URL(url).pathname.slice(1);
      await admin(`DROP DATABASE ${name} WITH (FORCE)`);
      await admin(`CREATE DATABASE ${name}`);
      run('pg_restore', ['-d', url, dump]);

      // another instance writes the restored shadow up to version 3 again, with other content
      const other = new PostgresStore({ url });
      await other.start();
      try {
        for (const [version, extra] of [[2, { after: 'x' }], [3, { after: 'y' }]] as const) {
          const cur = (await other.getShadow('r-1', ''))!;
          assert.equal(cur.version, version - 1);
          const state = { reported: { ...cur.state.reported, ...extra } };
          assert.equal(await other.putShadow({ ...cur, version, state, timestamp: cur.timestamp + 1 }, version - 1), true);
        }
      } finally {
        await other.stop();
      }

      // the instance's next update: from the store's version 3, not from its cached version 3
      const next = await eventually(
        async () => {
          try {
            return await ts.server.replica.update(ref, { state: { reported: { now: 1 } } }, device('r-1'));
          } catch {
            return undefined; // the pool's first query after the restore may meet a dead session
          }
        },
        20_000,
        'an update after the restore',
      );
      assert.ok(next);
      const stored = (await ts.server.store.getShadow('r-1', ''))!;
      assert.equal(stored.version, 4);
      assert.deepEqual(stored.state.reported, { base: 1, after: 'y', now: 1 }, 'the restored content, the other writer\'s, and the update; nothing the restore lost');
      assert.ok(
        lines.some((l) => l.level === 'warn' && l.msg === 'idle PostgreSQL connection lost'),
        'the disruption is logged',
      );
    });
  });
}
