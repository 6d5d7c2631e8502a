/**
 * The group commit labels a database out of reach itself: its writes are rejected UNAVAILABLE
 * (503 with Retry-After), as the store throws them, not INTERNAL for another layer to
 * re-label. A real pool against a port nothing listens on (connection refused); the store's
 * own tests (postgres-store.test.ts) stop a real server under it.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pg from 'pg';
import { UpdraftError } from '../../src/errors.ts';
import { mapPgError, PgGroupCommit } from '../../src/store/postgres-group-commit.ts';
import { silentLogger } from '../../src/util/logger.ts';
import { freePort } from '../helpers/free-port.ts';

describe('PgGroupCommit with PostgreSQL out of reach', () => {
  it('rejects each write of the batch UNAVAILABLE, naming where; mapPgError says the same of a refused connection', async () => {
    const port = await freePort();
    const pool = new pg.Pool({ connectionString: `postgres://updraft@127.0.0.1:${port}/updraft`, connectionTimeoutMillis: 5000 });
    pool.on('error', () => {});
    try {
      const writes = new PgGroupCommit({ pool, logger: silentLogger, maxBatch: 100, where: `127.0.0.1:${port}/updraft` });
      const results = await Promise.allSettled([writes.enqueue(async (c) => c.query('SELECT 1')), writes.enqueue(async (c) => c.query('SELECT 2'))]);
      for (const r of results) {
        assert.equal(r.status, 'rejected');
        const err = r.reason as unknown;
        assert.ok(err instanceof UpdraftError, String(err));
        assert.equal(err.code, 'UNAVAILABLE');
        assert.match(err.message, new RegExp(`^cannot reach PostgreSQL at 127\\.0\\.0\\.1:${port}/updraft: .*ECONNREFUSED`));
      }
      const raw = await pool.query('SELECT 1').then(() => assert.fail('answered'), (e: unknown) => e);
      const mapped = mapPgError(raw);
      assert.equal(mapped.code, 'UNAVAILABLE');
      assert.match(mapped.message, /^PostgreSQL: .*ECONNREFUSED/);
      assert.equal(mapped.cause, raw);
    } finally {
      await pool.end();
    }
  });
});
