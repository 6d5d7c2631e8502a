/**
 * `updraft restore`: puts a copy made by `updraft backup` in place of a data directory.
 *
 * Copying a backup's files over a data directory is not a restore: a server killed (or a
 * machine that lost power) leaves `updraft.db-wal` beside the database, and SQLite replays
 * that WAL over the restored `updraft.db` at the next start, bringing back the state the
 * backup was meant to replace. So the old directory's contents, its `-wal` and `-shm` with
 * them, are moved aside whole (renamed into `<dir>.before-restore-<time>`: nothing of the
 * operator's is deleted), and only then is the copy put in. (The check below that no server
 * holds the file usually folds such a WAL into the old file first, as SQLite does whenever
 * the last connection closes: the state moved aside is then the crashed server's, whole.)
 *
 * A server still running on the directory would go on writing into the files moved aside
 * and serve the old state, so the restore refuses while the database is open elsewhere:
 * every SQLite connection holds a shared lock on the file while it is open (in WAL mode, for
 * its whole life), and an exclusive lock taken without waiting fails while one does. A
 * server with --db has no `updraft.db`, and holds `server.lock` open the same way for that
 * (data-dir-lock.ts).
 */
import { mkdir, readFile, readdir, rename, rmdir, stat } from 'node:fs/promises';
import path from 'node:path';
import Database from 'better-sqlite3';
import { UpdraftError } from '../errors.ts';
import { caPaths } from '../pki/certificate-authority.ts';
import { signingKeyPaths } from '../signing/signing-key.ts';
import { BACKUP_MARKER, DATABASE, copyKeepingMode, isDirectory, isFile, type BackupMarker } from './data-dir-files.ts';
import { SERVER_LOCK, serverHeldFile } from './data-dir-lock.ts';
import { operatorTokenPath } from './operator-token.ts';
import { readStoreKind, recordStoreKind } from './store-kind.ts';
import { makeDir } from '../util/make-dir.ts';

/** What a restore did. */
export interface RestoreReport {
  /** Files put into the data directory, relative to it. */
  files: string[];
  /** Where the data directory's previous contents went; absent when it was empty or did not exist. */
  aside?: string;
  /** Names moved aside (top level of the data directory). */
  movedAside: string[];
  /**
   * True when the data directory's server last ran on PostgreSQL (its `store.json`) and the
   * backup says otherwise (SQLite, or nothing: one made before 2026-12-06): the record is
   * kept, so that the backup's `updraft.db` is not read as the store (store-kind.ts).
   */
  keptPostgresRecord?: true;
}

/** How a restore runs. */
export interface RestoreOptions {
  /** The operator says the backup finished though it has no marker (made by an Updraft before 2026-12-04, which wrote none); what can be checked of it is (checkUnmarked). */
  unmarked?: boolean;
  /** Hears a line before a step that may take long (the database check of an unmarked backup: minutes on a database of several GB). */
  progress?: (line: string) => void;
}

/** Restores `backupDir` into `dataDir`; `now` names the directory the old contents go to. */
export async function restoreDataDir(backupDir: string, dataDir: string, now: Date = new Date(), options: RestoreOptions = {}): Promise<RestoreReport> {
  const from = path.resolve(backupDir);
  const to = path.resolve(dataDir);
  if (!(await hasMarker(from, backupDir))) {
    if (!options.unmarked) {
      throw new UpdraftError('BAD_REQUEST', `${backupDir} is not a whole backup made by updraft backup (it has no valid ${BACKUP_MARKER}, which a backup writes last): restore only a backup that finished; a backup made by an Updraft older than 2026-12-04 has none: if it finished, restore it with --unmarked (its database and builds are checked)`);
    }
    await checkUnmarked(from, backupDir, options.progress ?? (() => {}));
  }
  if (from === to || from.startsWith(to + path.sep) || to.startsWith(from + path.sep)) {
    throw new UpdraftError('BAD_REQUEST', `the backup ${backupDir} and the data directory ${dataDir} must not be one inside the other`);
  }

  const report: RestoreReport = { files: [], movedAside: [] };
  const held = serverHeldFile(to);
  if (held === 'updraft.db') throw new UpdraftError('CONFLICT', `a server is using ${dataDir} (its updraft.db is open in another process): stop it, then restore`);
  // the lock is a --db server's for its whole life, and any server's while it sets the directory up (data-dir-lock.ts)
  if (held) throw new UpdraftError('CONFLICT', `a server is using ${dataDir} (it holds its ${SERVER_LOCK}: a server with --db, or one still setting the directory up): stop it, then restore`);
  // what the server of the directory last ran on: a backup of its SQLite days (or one made
  // before store.json) would otherwise put back a record saying sqlite, or none, and the
  // offline readers would take the backup's updraft.db for the store it now keeps in PostgreSQL
  const lastRanOn = await readStoreKind(to);
  // listed after the check, which may have folded a crashed server's WAL into the old file
  const present = await readdir(to).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw new UpdraftError('BAD_REQUEST', `cannot use the data directory ${dataDir}: ${err.message}`);
  });
  if (present === undefined) await makeDir(to, 0o700);
  else if (present.length > 0) {
    const aside = await makeAside(`${to}.before-restore-${now.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')}`);
    await moveAll(to, aside, present.sort(), dataDir);
    report.aside = aside;
    report.movedAside = present;
  }

  for (const rel of await backupFiles(from, '')) {
    await copyKeepingMode(path.join(from, rel), path.join(to, rel));
    report.files.push(rel);
  }
  if (lastRanOn === 'postgres' && (await readStoreKind(to)) !== 'postgres') {
    await recordStoreKind(to, 'postgres');
    report.keptPostgresRecord = true;
  }
  return report;
}

/**
 * Makes the directory the current contents go aside into: `base`, or `base-2`, `base-3`, ...
 * when a restore of the same second made it (a second restore within the second failed,
 * "try again in a second": review, 2026-12-06). CONFLICT naming it when none can be made.
 */
async function makeAside(base: string): Promise<string> {
  for (let n = 1; ; n++) {
    const aside = n === 1 ? base : `${base}-${n}`;
    try {
      await mkdir(aside, { mode: 0o700 });
      return aside;
    } catch (err) {
      const e = err as NodeJS.ErrnoException;
      if (e.code !== 'EEXIST' || n >= 100) throw new UpdraftError('CONFLICT', `cannot make ${aside} for the data directory's current contents: ${e.message}`, { cause: err });
    }
  }
}

/** Whether `from` holds the marker `updraft backup` writes last (a whole copy); refuses a directory that does not exist. */
async function hasMarker(from: string, backupDir: string): Promise<boolean> {
  if (!(await isDirectory(from))) throw new UpdraftError('BAD_REQUEST', `backup ${backupDir} does not exist`);
  let marker: Partial<BackupMarker> | undefined;
  try {
    marker = JSON.parse(await readFile(path.join(from, BACKUP_MARKER), 'utf8')) as Partial<BackupMarker>;
  } catch {
    marker = undefined;
  }
  return marker?.format === 'updraft-backup' && marker.version === 1;
}

/**
 * What can be checked of a backup with no marker (one made before the marker existed, which
 * its operator says finished; one cut short looks the same): the secrets a server needs to go
 * on as before (its operator token, which devices on an external broker and every tool hold,
 * the software signing key devices verify commands with, and the device CA: a server started
 * without them makes new ones), an embedded database SQLite finds whole, and the bytes of
 * every build it names, at their recorded sizes, when the backup holds builds (it holds none
 * when they are in S3). A backup of a server with --db is refused (below). Refuses, naming
 * what is wrong, otherwise.
 *
 * The database check is `PRAGMA quick_check`, not `integrity_check`: the question is whether
 * the copy is whole. Every backup without a marker had its database written by `VACUUM INTO`
 * (backup.ts since it began) from one read transaction, tables and indexes alike, so a copy
 * cut short is a file short of pages, and one damaged since shows in its pages and records:
 * both are what quick_check reads. What it leaves out, that every index holds exactly its
 * table's rows, is what made integrity_check run for minutes, silent, on a database of
 * several GB, and is not what a copy cut short upsets. One check at every size: the one
 * tested is the one run.
 */
async function checkUnmarked(from: string, backupDir: string, progress: (line: string) => void): Promise<void> {
  // the device CA too: a server started without it makes a new one (logged at debug only), and
  // devices that trust the old one refuse the broker's TLS across the fleet
  const absent: string[] = [];
  for (const file of [operatorTokenPath(from), signingKeyPaths(from).key, caPaths(from).cert, caPaths(from).key]) if (!(await isFile(file))) absent.push(path.relative(from, file));
  if (absent.length > 0) throw new UpdraftError('BAD_REQUEST', `${backupDir} has no marker and no ${absent.join(' nor ')}: it is not a whole backup; restore another`);
  const dbFile = path.join(from, DATABASE);
  if (!(await isFile(dbFile))) {
    // a server with --db: backups before the marker copied no build's bytes for it (they went
    // by the embedded database's records), and the restore would move the data directory's
    // builds aside with the rest, to be deleted
    throw new UpdraftError('BAD_REQUEST', `${backupDir} has no marker and no ${DATABASE}: a backup of a server with --db made before 2026-12-04, which holds none of its builds' bytes; restoring it would move the data directory's builds aside. Stop the server and copy its keys/, pki/ and operator-token into the data directory instead`);
  }
  // a store.json of PostgreSQL beside an updraft.db: the stale file of the directory's SQLite
  // days, which the backups before 2026-12-06 copied as the database; checked as if it were one,
  // the backup passed (store-kind.ts). No marker, with a record written since 2026-12-06: cut short
  if ((await readStoreKind(from)) === 'postgres') {
    throw new UpdraftError('BAD_REQUEST', `${backupDir} has no marker, and its store.json says its server ran on PostgreSQL: its ${DATABASE} is a stale file of the SQLite days, not the database; it is not a whole backup of anything to restore. Restore a marked backup, or stop the server and copy its keys/, pki/ and operator-token into the data directory instead`);
  }
  let artifacts: { name: string; version: string; sha256: string; size: number }[];
  progress(`updraft restore: checking the database (${((await stat(dbFile)).size / 1e6).toFixed(1)} MB)...`);
  try {
    const db = new Database(dbFile, { readonly: true, fileMustExist: true });
    try {
      // a row may hold several lines ('*** in database main ***' and one per damaged cell): the error is one line
      const problems = (db.pragma('quick_check') as { quick_check: string }[]).flatMap((r) => r.quick_check.split('\n'));
      if (problems[0] !== 'ok') throw new Error(problems.filter((l) => !l.startsWith('*** ')).slice(0, 3).join('; '));
      artifacts = db.prepare('SELECT name, version, sha256, size FROM artifacts').all() as typeof artifacts;
    } finally {
      db.close();
    }
  } catch (err) {
    throw new UpdraftError('BAD_REQUEST', `${backupDir} has no marker and its ${DATABASE} is not whole (${(err as Error).message}): restore another backup`, { cause: err });
  }
  if (!(await isDirectory(path.join(from, 'artifacts')))) return; // the builds are in S3
  const short: string[] = [];
  for (const a of artifacts) {
    const size = await stat(path.join(from, 'artifacts', 'sha256', a.sha256.slice(0, 2), a.sha256)).then((st) => st.size, () => undefined);
    if (size !== a.size) short.push(`${a.name}@${a.version}`);
  }
  if (short.length > 0) throw new UpdraftError('BAD_REQUEST', `${backupDir} has no marker and lacks the bytes of ${short.join(', ')} (or holds them cut short): it is not a whole backup; restore another`);
}

/** Renames every entry of `dir` into `aside`; on a failure puts back those moved and refuses. */
async function moveAll(dir: string, aside: string, names: string[], dataDir: string): Promise<void> {
  const moved: string[] = [];
  try {
    for (const name of names) {
      await rename(path.join(dir, name), path.join(aside, name));
      moved.push(name);
    }
  } catch (err) {
    for (const name of moved.reverse()) await rename(path.join(aside, name), path.join(dir, name));
    await rmdir(aside);
    const e = err as NodeJS.ErrnoException;
    const hint = e.code === 'EXDEV' ? ` (${aside} is on another file system than the data directory's contents)` : e.code === 'EBUSY' ? ' (a mount point: move or unmount it first)' : '';
    throw new UpdraftError('CONFLICT', `cannot move the contents of ${dataDir} aside: ${e.message}${hint}; nothing was changed`, { cause: err });
  }
}

/** Files of the backup, relative to it, without its marker. */
async function backupFiles(dir: string, rel: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(path.join(dir, rel), { withFileTypes: true })) {
    const r = path.join(rel, e.name);
    if (rel === '' && e.name === BACKUP_MARKER) continue;
    if (e.isDirectory()) out.push(...(await backupFiles(dir, r)));
    else out.push(r);
  }
  return out.sort();
}
