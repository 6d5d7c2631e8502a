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

/**
 * The file by which a server (on this machine) shows it runs on `dataDir`: its embedded
 * `updraft.db`, or with --db its `server.lock`, open in another process; undefined when
 * neither is. For `updraft restore` (which refuses) and `token rotate --offline` (which warns).
 */
export function serverHeldFile(dataDir: string): 'updraft.db' | typeof SERVER_LOCK | undefined {
  // a file that is not there is open nowhere (and a directory that is not there holds none)
  for (const name of ['updraft.db', SERVER_LOCK] as const) {
    const file = path.join(dataDir, name);
    if (existsSync(file) && sqliteInUse(file)) return name;
  }
  return undefined;
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
