/** File helpers shared by `updraft backup` and `updraft restore` (server/backup.ts, server/restore.ts). */
import { chmod, copyFile, mkdir, stat } from 'node:fs/promises';
import path from 'node:path';

/** The file `updraft backup` writes last into a complete copy, and `updraft restore` requires. */
export const BACKUP_MARKER = 'updraft-backup.json';

/** The embedded store's database file in a data directory. */
export const DATABASE = 'updraft.db';

/** What the marker says. */
export interface BackupMarker {
  format: 'updraft-backup';
  version: 1;
  /** When the backup finished, ISO 8601. */
  createdAt: string;
}

/** Copies `src` (a symbolic link's target when it is one) to `dest`, making its directories 0700 and keeping the mode. */
export async function copyKeepingMode(src: string, dest: string): Promise<void> {
  await mkdir(path.dirname(dest), { recursive: true, mode: 0o700 });
  await copyFile(src, dest);
  await chmod(dest, (await stat(src)).mode & 0o777);
}

/** True when `p` is (or links to) a regular file. */
export async function isFile(p: string): Promise<boolean> {
  return stat(p).then((s) => s.isFile(), () => false);
}

/** True when `p` is (or links to) a directory. */
export async function isDirectory(p: string): Promise<boolean> {
  return stat(p).then((s) => s.isDirectory(), () => false);
}
