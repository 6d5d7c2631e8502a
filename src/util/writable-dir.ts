/**
 * Whether a directory can be written, asked once at start: a data directory (or its
 * artifacts/) that the server's user cannot write was found only at the first write, in
 * the words of whatever wrote (SQLite's "disk I/O error", a bare EACCES naming a key file,
 * an upload's 500 naming the file), or not at all until an operator uploaded (QA). A file
 * is created and removed in it: the only test that holds for every cause (modes, ACLs, a
 * read-only mount, a full disk, another owner), where access(W_OK) answers for the mode bits.
 */
import { randomBytes } from 'node:crypto';
import { access, constants, mkdir, open, stat, unlink } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { UpdraftError } from '../errors.ts';

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
    case 'ENOSPC':
      return 'on a full disk (no space left on device)';
    case 'EDQUOT':
      return "over the user's disk quota";
    case 'ENOTDIR':
    case 'EEXIST':
      return 'under a path with a file where a directory should be';
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
  const fail = (why: string, cause: unknown): never => {
    throw new UpdraftError('CONFIG', `the ${what} ${dir} is ${why}${opts.hint ? `; ${opts.hint}` : ''}`, { cause });
  };
  const st = await stat(dir).catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? undefined : fail(whyNotWritable(err), err)));
  if (st && !st.isDirectory()) fail('a file, not a directory', undefined);
  if (!st) {
    if (opts.create === false) return;
    await mkdir(dir, { recursive: true, ...(opts.mode !== undefined ? { mode: opts.mode } : {}) }).catch((err: unknown) => fail(whyNotWritable(err), err));
  }
  const probe = path.join(dir, `.write-check-${process.pid}-${randomBytes(4).toString('hex')}`);
  const handle = await open(probe, 'wx', 0o600).catch((err: unknown) => fail(whyNotWritable(err), err));
  await handle.close();
  await unlink(probe).catch((err: unknown) => fail(whyNotWritable(err), err));
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
