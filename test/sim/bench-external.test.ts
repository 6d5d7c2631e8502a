/**
 * The bench's synchronous stop of its private PostgreSQL (bench/external.ts), as an exit runs
 * it: the postmaster the test helper says it started gets SIGQUIT and the helper's directory
 * goes. It found the postmaster by reading /proc for a `postgres -D ... -k ...` child of the
 * bench, as the helper did not say its pid or data directory.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { postgresQuickStop } from '../../bench/external.ts';
import { eventually } from '../helpers/cli.ts';
import { startTestPostgres, unavailable } from '../helpers/postgres.ts';

/** Whether `pid` is a process (this process reaps the helper's postmaster once it exits). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('bench --external: the private PostgreSQL', () => {
  it("the helper says its postmaster and data directory, and the bench's quick stop ends the one and removes the other's temp dir", async (t) => {
    if (process.env.UPDRAFT_TEST_POSTGRES_URL) return t.skip('UPDRAFT_TEST_POSTGRES_URL: no private server to stop');
    const started = await startTestPostgres();
    if (!started.ok) return t.skip(unavailable(started, 'the quick stop test'));
    const server = started.server;
    try {
      const { pid, dataDir } = server;
      assert.ok(pid !== undefined && dataDir !== undefined, 'a private server has both');
      // postmaster.pid's first line is the postmaster's pid (PostgreSQL's own record)
      assert.equal(Number(readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]), pid);
      const quickStop = postgresQuickStop(server);
      assert.ok(quickStop, 'a quick stop for a server the helper started');
      quickStop();
      assert.equal(existsSync(path.dirname(dataDir)), false, 'its directory removed at once');
      await eventually(async () => (alive(pid) ? undefined : true), 30_000, 'the postmaster ended');
    } finally {
      await server.stop().catch(() => undefined);
    }
  });
});
