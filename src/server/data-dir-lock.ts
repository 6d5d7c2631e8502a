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
import type { Logger } from '../util/logger.ts';

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

/**
 * Runs `create` while this process alone sets up `dataDir`: what a first start creates there
 * (the operator token, the signing and URL keys, the CA, the embedded store's file) is
 * created by one process, and another started at the same moment waits, then reads what
 * the first made (or, with the embedded store, is refused: the file is open in the first).
 * Each of those was loaded or created by a check, then a write renamed into place: two
 * servers started together on an empty directory each made its own token, keys and CA, the
 * last rename won on disk, and the other served with secrets no file held (QA). The lock
 * is the write lock of `server.lock` (BEGIN IMMEDIATE on the SQLite file): it goes with the
 * process, also when killed, so a crash mid-creation leaves no stale lock. Waits at most
 * `timeoutMs` (60 s), then refuses in one line. `waiting`: told once when it has to wait
 * (default: a log line of `logger`); the offline CLI commands that write the same files
 * (cli/offline-lock.ts) take it too, so they do not race a server starting.
 */
export async function whileSettingUp<T>(dataDir: string, create: () => Promise<T>, opts: { logger?: Logger; timeoutMs?: number; waiting?: () => void } = {}): Promise<T> {
  const file = path.join(dataDir, SERVER_LOCK);
  const timeoutMs = opts.timeoutMs ?? 60_000;
  let db: Database.Database;
  try {
    db = new Database(file, { timeout: 0 });
  } catch (err) {
    throw new UpdraftError('CONFIG', `cannot open ${file}, by which servers starting on ${dataDir} take turns to set it up: ${(err as Error).message}`, { cause: err });
  }
  try {
    const deadline = Date.now() + timeoutMs;
    let said = false;
    for (;;) {
      try {
        // WAL, as DataDirLock's: its readers' shared locks and this write lock go together
        db.pragma('journal_mode = WAL');
        db.exec('BEGIN IMMEDIATE');
        break;
      } catch (err) {
        const code = (err as { code?: unknown }).code;
        if (code !== 'SQLITE_BUSY' && code !== 'SQLITE_LOCKED') throw new UpdraftError('CONFIG', `cannot lock ${file}, by which servers starting on ${dataDir} take turns to set it up: ${(err as Error).message}`, { cause: err });
        if (Date.now() >= deadline) throw new UpdraftError('CONFIG', `another process has been setting up ${dataDir} for ${Math.round(timeoutMs / 1000)} s (it holds ${file}'s lock): stop it, or run this with another --data-dir`);
        if (!said && opts.waiting) opts.waiting();
        else if (!said) opts.logger?.info('waiting for another process setting up this data directory (a server starting on it): its operator token, keys and CA are read once it has made them', { dataDir });
        said = true;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
    return await create();
  } finally {
    try {
      if (db.inTransaction) db.exec('ROLLBACK');
    } finally {
      db.close();
    }
  }
}
