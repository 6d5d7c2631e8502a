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
import { mkdir, readFile, readdir, rename, rmdir } from 'node:fs/promises';
import path from 'node:path';
import { UpdraftError } from '../errors.ts';
import { BACKUP_MARKER, copyKeepingMode, isDirectory, type BackupMarker } from './data-dir-files.ts';
import { SERVER_LOCK, serverHeldFile } from './data-dir-lock.ts';

/** What a restore did. */
export interface RestoreReport {
  /** Files put into the data directory, relative to it. */
  files: string[];
  /** Where the data directory's previous contents went; absent when it was empty or did not exist. */
  aside?: string;
  /** Names moved aside (top level of the data directory). */
  movedAside: string[];
}

/** Restores `backupDir` into `dataDir`; `now` names the directory the old contents go to. */
export async function restoreDataDir(backupDir: string, dataDir: string, now: Date = new Date()): Promise<RestoreReport> {
  const from = path.resolve(backupDir);
  const to = path.resolve(dataDir);
  await readMarker(from, backupDir);
  if (from === to || from.startsWith(to + path.sep) || to.startsWith(from + path.sep)) {
    throw new UpdraftError('BAD_REQUEST', `the backup ${backupDir} and the data directory ${dataDir} must not be one inside the other`);
  }

  const report: RestoreReport = { files: [], movedAside: [] };
  const held = serverHeldFile(to);
  if (held === 'updraft.db') throw new UpdraftError('CONFLICT', `a server is using ${dataDir} (its updraft.db is open in another process): stop it, then restore`);
  if (held) throw new UpdraftError('CONFLICT', `a server with --db is using ${dataDir} (it holds its ${SERVER_LOCK}): stop it, then restore`);
  // listed after the check, which may have folded a crashed server's WAL into the old file
  const present = await readdir(to).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw new UpdraftError('BAD_REQUEST', `cannot use the data directory ${dataDir}: ${err.message}`);
  });
  if (present === undefined) await mkdir(to, { recursive: true, mode: 0o700 });
  else if (present.length > 0) {
    const aside = `${to}.before-restore-${now.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z')}`;
    await mkdir(aside, { mode: 0o700 }).catch((err: NodeJS.ErrnoException) => {
      throw new UpdraftError('CONFLICT', `cannot make ${aside} for the data directory's current contents: ${err.message}; try again in a second`, { cause: err });
    });
    await moveAll(to, aside, present.sort(), dataDir);
    report.aside = aside;
    report.movedAside = present;
  }

  for (const rel of await backupFiles(from, '')) {
    await copyKeepingMode(path.join(from, rel), path.join(to, rel));
    report.files.push(rel);
  }
  return report;
}

/** Refuses a directory that is not a whole copy made by `updraft backup` (which writes its marker last). */
async function readMarker(from: string, backupDir: string): Promise<void> {
  if (!(await isDirectory(from))) throw new UpdraftError('BAD_REQUEST', `backup ${backupDir} does not exist`);
  let marker: Partial<BackupMarker> | undefined;
  try {
    marker = JSON.parse(await readFile(path.join(from, BACKUP_MARKER), 'utf8')) as Partial<BackupMarker>;
  } catch {
    marker = undefined;
  }
  if (marker?.format !== 'updraft-backup' || marker.version !== 1) {
    throw new UpdraftError('BAD_REQUEST', `${backupDir} is not a whole backup made by updraft backup (it has no valid ${BACKUP_MARKER}, which a backup writes last): restore only a backup that finished`);
  }
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
