/**
 * Whether another process has an SQLite database file open. Every SQLite connection holds a
 * shared lock on the file while it is open (in WAL mode, for its whole life), and an
 * exclusive lock asked for without waiting fails while one does. Used where this process
 * must be the file's only user: a server starting on a data directory (two servers on one
 * file would each drive its rollouts and remove the other's job creations as interrupted),
 * and `updraft restore`, which moves the file aside.
 */
import Database from 'better-sqlite3';
import { UpdraftError } from '../errors.ts';

/** True when another process has `file` open; false when none has (or SQLite cannot read it: no server serves from it). */
export function sqliteInUse(file: string): boolean {
  let db: Database.Database | undefined;
  try {
    db = new Database(file, { fileMustExist: true, timeout: 0 });
    // EXCLUSIVE before the first access: SQLite then takes an exclusive lock on the file
    // itself, which fails at once while any other connection holds its shared lock. (When no
    // one holds it, closing folds a crashed server's WAL into the file, as the next opening
    // would: nothing in it is lost.)
    db.pragma('locking_mode = EXCLUSIVE');
    db.exec('BEGIN EXCLUSIVE');
    db.exec('COMMIT');
    return false;
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (code === 'SQLITE_BUSY' || code === 'SQLITE_LOCKED') return true;
    // a file SQLite cannot read, or none at all: nobody serves from it; whoever opens it next says what is wrong
    if (code === 'SQLITE_NOTADB' || code === 'SQLITE_CORRUPT' || code === 'SQLITE_CANTOPEN') return false;
    throw new UpdraftError('INTERNAL', `cannot check whether another process uses ${file}: ${(err as Error).message}`, { cause: err });
  } finally {
    db?.close();
  }
}
