/**
 * What tells `updraft restore` that a server with `--db` uses a data directory. With the
 * embedded store, the server's open `updraft.db` does (store/sqlite-in-use.ts); with
 * PostgreSQL the directory holds no database, yet its keys, CA and artifacts are in use, and
 * a restore under a running server would move them aside while it goes on serving with the
 * copies in its memory. So such a server keeps `server.lock`, an empty SQLite file, open for
 * its whole life: every SQLite connection in WAL mode holds a shared lock on its file while
 * open, which the restore's exclusive lock, asked for without waiting, cannot get. The lock
 * goes with the process, also when it is killed: no stale lock file to clean up. Several
 * servers may hold it at once (each a shared lock): it refuses only the restore.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { UpdraftError } from '../errors.ts';
import { sqliteInUse } from '../store/sqlite-in-use.ts';

/** The lock file's name in the data directory (not copied by backups). */
export const SERVER_LOCK = 'server.lock';

/** True while a server runs on `dataDir` (on this machine): its `updraft.db`, or with --db its server lock, is open. */
export function serverRunningOn(dataDir: string): boolean {
  // a file that is not there is open nowhere (and a directory that is not there holds none)
  const inUse = (file: string) => existsSync(file) && sqliteInUse(file);
  return inUse(path.join(dataDir, 'updraft.db')) || inUse(path.join(dataDir, SERVER_LOCK));
}

/** Holds the data directory's server lock from start() to stop(). */
export class DataDirLock {
  private db: Database.Database | undefined;

  constructor(private readonly dataDir: string) {}

  /** Opens the lock file (created if missing) and takes its shared lock. */
  async start(): Promise<void> {
    const file = path.join(this.dataDir, SERVER_LOCK);
    try {
      const db = new Database(file);
      this.db = db;
      db.pragma('journal_mode = WAL');
      db.exec('CREATE TABLE IF NOT EXISTS lock (why TEXT)');
      db.prepare('SELECT count(*) FROM lock').get(); // a first read: the shared lock is taken now
    } catch (err) {
      this.db?.close();
      this.db = undefined;
      throw new UpdraftError('CONFIG', `cannot open ${file}, which tells updraft restore that this server uses ${this.dataDir}: ${(err as Error).message}`, { cause: err });
    }
  }

  /** Lets the lock go (closing the last connection also removes its -wal and -shm files). */
  async stop(): Promise<void> {
    this.db?.close();
    this.db = undefined;
  }
}
