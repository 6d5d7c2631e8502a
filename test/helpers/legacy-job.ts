/** Jobs as a database upgraded from before rollouts holds them, for tests of that upgrade path. */
import path from 'node:path';
import Database from 'better-sqlite3';

/**
 * Rewrites job `jobId` in a stopped test server's SQLite database (`dataDir`) as a database
 * upgraded from before rollouts holds a job running then: no spec, no progress, no version.
 */
export function asPreRolloutJob(dataDir: string, jobId: string): void {
  const db = new Database(path.join(dataDir, 'updraft.db'));
  try {
    db.prepare('UPDATE jobs SET spec = NULL, progress = NULL, updated_at = NULL, version = NULL WHERE job_id = ?').run(jobId);
  } finally {
    db.close();
  }
}
