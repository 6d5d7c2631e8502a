/**
 * Whether a directory can be written, asked once at start: a data directory (or its
 * artifacts/) that the server's user cannot write was found only at the first write, in
 * the words of whatever wrote (SQLite's "disk I/O error", a bare EACCES naming a key file,
 * an upload's 500 naming the file), or not at all until an operator uploaded (QA). A file
 * is created, written and removed in it: the only test that holds for every cause (modes,
 * ACLs, a read-only mount, a full disk, another owner), where access(W_OK) answers for the
 * mode bits. The file gets a byte, synced: an empty file needs no data block, and a full disk
 * created it (QA: /readyz said `"artifacts":"ok"` on a full disk). And the file system must
 * have `MIN_FREE_BYTES` left for unprivileged users (statfs `bavail`): a process running as
 * root writes on into the blocks ext4 reserves for root (5% by default), which are there for
 * the administrator to repair a full disk with, and a server filling them was full already.
 */
import { randomBytes } from 'node:crypto';
import { access, constants, open, stat, statfs, unlink } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { UpdraftError } from '../errors.ts';
import { isBadDirPath, makeDir } from './make-dir.ts';

/**
 * Below this much space left for unprivileged users a file system is full (1 MiB): a byte can
 * still be written there (by root into its reserved blocks, or into the last blocks), not an
 * upload or a database's growth.
 */
export const MIN_FREE_BYTES = 1024 * 1024;

/** The errno codes by which a file system refuses a write (not a peer's or a stream's failure). */
export const DISK_ERRORS = new Set(['EACCES', 'EPERM', 'EROFS', 'ENOSPC', 'EDQUOT', 'ENOTDIR', 'EEXIST', 'EISDIR', 'EIO', 'ENOENT', 'EMFILE', 'ENFILE']);

/** What an errno says of a directory, as words that follow "it is", without its path (the caller names it once). */
export function whyNotWritable(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case 'EACCES':
    case 'EPERM':
      return `not writable by this process's user (${userName()}): permission denied`;
    case 'EROFS':
      return 'on a read-only file system';
    case 'ENOSPC': {
      const free = (err as { freeBytes?: unknown }).freeBytes;
      return typeof free === 'number' ? `on a full disk (${Math.floor(free / 1024)} KiB left for unprivileged users, under the ${MIN_FREE_BYTES / 1024 / 1024} MiB kept free)` : 'on a full disk (no space left on device)';
    }
    case 'EDQUOT':
      return "over the user's disk quota";
    case 'ENOTDIR':
    case 'EEXIST':
      return 'under a path with a file where a directory should be';
    case 'ENOENT':
      // makeDir's answer for a file system that makes no directory there (procfs)
      if ((err as NodeJS.ErrnoException).syscall === 'mkdir') return 'not one that can be made: the file system makes no directory there (a virtual file system such as /proc or /sys)';
      return `not usable: ${String((err as Error)?.message ?? err).split(',')[0]}`;
    default:
      // Node's message is "CODE: what, syscall 'path'": the path is the caller's to name
      return `not usable: ${String((err as Error)?.message ?? err).split(',')[0]}`;
  }
}

function userName(): string {
  try {
    return os.userInfo().username;
  } catch {
    return `uid ${process.getuid?.() ?? '?'}`;
  }
}

/**
 * Makes sure `dir` is a directory in which this process can create files: created (with
 * `mode`) when missing, unless `create` is false, when a missing one passes (it is made
 * later, by whoever needs it). Throws CONFIG in one line naming `what`, the directory and
 * what is wrong, ending with `hint` (what to do).
 */
export async function checkWritableDir(dir: string, what: string, opts: { hint?: string; create?: boolean; mode?: number } = {}): Promise<void> {
  // a path that cannot be a directory (a file in the way, a file system that makes none
  // there) is a bad setting, status 400 (exit code 2); one the user cannot write is not
  const fail = (why: string, cause: unknown, badPath = false): never => {
    throw new UpdraftError('CONFIG', `the ${what} ${dir} is ${why}${opts.hint ? `; ${opts.hint}` : ''}`, { cause, ...(badPath ? { status: 400 } : {}) });
  };
  const st = await stat(dir).catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? undefined : fail(whyNotWritable(err), err, isBadDirPath(err))));
  if (st && !st.isDirectory()) fail('a file, not a directory', undefined, true);
  if (!st) {
    if (opts.create === false) return;
    await makeDir(dir, opts.mode).catch((err: unknown) => fail(whyNotWritable(err), err, isBadDirPath(err)));
  }
  const probe = path.join(dir, `.write-check-${process.pid}-${randomBytes(4).toString('hex')}`);
  const handle = await open(probe, 'wx', 0o600).catch((err: unknown) => fail(whyNotWritable(err), err));
  const written = await handle
    .write(Buffer.from([0]))
    .then(() => handle.datasync())
    .then(
      () => undefined,
      (err: unknown) => err,
    );
  await handle.close().catch(() => undefined);
  await unlink(probe).catch((err: unknown) => fail(whyNotWritable(err), err));
  if (written !== undefined) fail(whyNotWritable(written), written);
  const full = await spaceLeft(dir);
  if (full) fail(whyNotWritable(full), full);
}

/**
 * An ENOSPC error (with `freeBytes`) when the file system of `dir` has less than
 * `MIN_FREE_BYTES` left for unprivileged users; undefined otherwise, and for a file system
 * that reports no size (some virtual and network ones: a write told the truth already).
 */
async function spaceLeft(dir: string): Promise<NodeJS.ErrnoException | undefined> {
  const fs = await statfs(dir).catch(() => undefined);
  if (!fs || fs.blocks <= 0 || fs.bsize <= 0) return undefined;
  const freeBytes = fs.bavail * fs.bsize;
  if (freeBytes >= MIN_FREE_BYTES) return undefined;
  return Object.assign(new Error(`ENOSPC: ${freeBytes} bytes left for unprivileged users on the file system of ${dir}`), { code: 'ENOSPC', freeBytes });
}

/**
 * Makes sure the files the server keeps in its data directory can be read (and, for those it
 * writes in place, written) by this process's user: a data directory whose files another user
 * owns (`sudo updraft server` once, then the service's own user) had the server refuse in the
 * library's words, a bare "EACCES: permission denied, open '.../operator-token'" or SQLite's
 * "disk I/O error" (QA). Checks each of the files given that exists (the ones the server opens,
 * not every file an operator keeps there); missing ones pass (made later). Throws CONFIG
 * in one line naming the file, its owner and mode, and `hint`.
 */
export async function checkOwnFiles(spec: { readWrite: string[]; read: string[] }, hint: string): Promise<void> {
  const wanted: [string, number][] = [
    ...spec.readWrite.map((f): [string, number] => [f, constants.R_OK | constants.W_OK]),
    ...spec.read.map((f): [string, number] => [f, constants.R_OK]),
  ];
  for (const [file, mode] of wanted) {
    const st = await stat(file).catch(() => undefined);
    if (!st?.isFile()) continue;
    const err = await access(file, mode).then(() => undefined, (e: NodeJS.ErrnoException) => e);
    if (err === undefined) continue;
    const needs = mode & constants.W_OK ? 'readable and writable' : 'readable';
    const why =
      err.code === 'EROFS'
        ? 'on a read-only file system'
        : `not ${needs} by this process's user (${userName()}): owned by uid ${st.uid}, mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}`;
    throw new UpdraftError('CONFIG', `the file ${file} is ${why}; ${hint}`, { cause: err });
  }
}
