/**
 * One process at a time on a directory: an exclusive lock on a small SQLite file in it, held
 * from start() to stop(). SQLite's lock is the file system's own (fcntl on POSIX): it goes
 * with the process, also when it is killed, so no stale lock file is ever left to clean up,
 * and a second process, asking without waiting, is refused at once. The same mechanism as the
 * server's `server.lock` (server/data-dir-lock.ts), which takes a shared lock instead: several
 * servers may share a data directory, two agents may not share an install directory.
 */
import Database from 'better-sqlite3';
import { UpdraftError } from '../errors.ts';

/** Holds `file`'s exclusive lock from start() to stop(). */
export class ExclusiveLock {
  private db: Database.Database | undefined;

  /** `busy`: the message when another process holds it (say who, and what to do). */
  constructor(
    private readonly file: string,
    private readonly busy: string,
  ) {}

  /** Takes the lock, or refuses at once (CONFIG, with the `busy` message) when another process holds it. */
  async start(): Promise<void> {
    let db: Database.Database | undefined;
    try {
      db = new Database(this.file, { timeout: 0 });
      // in EXCLUSIVE locking mode a connection keeps the lock of its first write until it closes
      db.pragma('locking_mode = EXCLUSIVE');
      db.exec('CREATE TABLE IF NOT EXISTS holder (pid INTEGER)');
      db.exec('BEGIN EXCLUSIVE');
      db.prepare('DELETE FROM holder').run();
      db.prepare('INSERT INTO holder (pid) VALUES (?)').run(process.pid);
      db.exec('COMMIT');
      this.db = db;
    } catch (err) {
      db?.close();
      const code = (err as { code?: unknown }).code;
      if (code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED') throw new UpdraftError('CONFIG', this.busy, { cause: err });
      throw new UpdraftError('CONFIG', `cannot lock ${this.file}: ${(err as Error).message}`, { cause: err });
    }
  }

  /** Lets the lock go. */
  async stop(): Promise<void> {
    this.db?.close();
    this.db = undefined;
  }
}
