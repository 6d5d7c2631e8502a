/**
 * A file or directory the operator names on the command line (`--out`, `--save-devices`): one
 * that cannot be written is bad input, said in one line naming the option and the path given,
 * not the temporary file writeFileAtomic makes beside it (`ENOENT: ... open
 * '/nonexist/dir/.x.11820fc3.tmp'`, exit 1).
 */
import { randomBytes } from 'node:crypto';
import { statSync } from 'node:fs';
import { lstat, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { UpdraftError } from '../errors.ts';
import { writeFileAtomic } from '../util/atomic-file.ts';
import { makeDir } from '../util/make-dir.ts';

/** Why `file` cannot be written, from the error of writing it (or a file beside it); undefined for an error that is not about the path. */
export function unwritableReason(err: unknown, file: string): string | undefined {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  const dir = path.dirname(file);
  // a directory that is there and makes no file: procfs (keys export-public --out /proc/x said 'there is no directory /proc')
  if (code === 'ENOENT' && statSync(dir, { throwIfNoEntry: false })?.isDirectory()) return `the file system makes no file in ${dir} (a virtual file system such as /proc or /sys)`;
  // a file where the path needs a directory: named (`--out /srv/x/` with /srv/x a file said 'there is no directory /srv')
  if (code === 'ENOTDIR') return notADirectory(file) ?? `there is no directory ${dir}`;
  if (code === 'ENOENT') return `there is no directory ${dir}`;
  if (code === 'EACCES' || code === 'EPERM') return `${dir} is not writable`;
  if (code === 'EROFS') return `${dir} is on a read-only file system`;
  if (code === 'EISDIR') return `${file} is a directory: name a file`;
  return undefined;
}

/** The first part of `file`'s path that is a file where a directory is needed, said as such; undefined when none is. */
function notADirectory(file: string): string | undefined {
  const parts = path.resolve(file).split(path.sep).filter(Boolean);
  // every part of the path but the last must be a directory, and the last too when the path ends with a separator
  const last = /[\\/]$/.test(file) ? parts.length : parts.length - 1;
  for (let i = 1; i <= last; i++) {
    const p = path.sep + parts.slice(0, i).join(path.sep);
    const st = statSync(p, { throwIfNoEntry: false });
    if (st === undefined) return undefined;
    if (!st.isDirectory()) return `${p} is a file, not a directory`;
  }
  return undefined;
}

/** Writes `data` to the file given with `flag`, atomically; a path that cannot be written is BAD_REQUEST (exit 2). */
export async function writeOutputFile(flag: string, file: string, data: string | Buffer, mode: number): Promise<void> {
  try {
    await writeFileAtomic(file, data, mode);
  } catch (err) {
    const why = unwritableReason(err, file);
    if (why === undefined) throw err;
    throw new UpdraftError('BAD_REQUEST', `cannot write ${flag} ${file}: ${why}`, { cause: err });
  }
}

/** A directory given on the command line, made (or found) and checked to take files: see makeOutputDir. */
export interface OutputDir {
  /** The directory, resolved. */
  dir: string;
  /** Removes what this run made there (the files written through `write` that were not there before, the directories made), after a failure: no partial output left. */
  undo(): Promise<void>;
  /** Writes `name` in the directory, atomically; a failure is said in one line naming the flag and the file. */
  write(name: string, data: string | Buffer, mode: number): Promise<string>;
}

/**
 * Makes the directory given with `flag` (`--out`) and its missing parents, and checks that a
 * file can be made in it, before anything is asked or written. One that cannot be made or
 * written (a file in the way, a file system that makes none there such as /proc, no permission,
 * read-only) is bad input, BAD_REQUEST (exit code 2), in one line naming the flag, the path and
 * why, and nothing is left behind: it was the file system's error (`ENOENT: the file system makes
 * no directory /proc/x ...`, `EPERM: operation not permitted, mkdir '/sys/x'`), exit 1, as the
 * data directory's was until aef6fdf.
 */
export async function makeOutputDir(flag: string, given: string, mode?: number): Promise<OutputDir> {
  const dir = path.resolve(given);
  const fail = (err: unknown, making?: 'directory' | 'file'): never => {
    const why = dirUnusableReason(err, given, making);
    if (why === undefined) throw err;
    throw new UpdraftError('BAD_REQUEST', `cannot write ${flag} ${given}: ${why}`, { cause: err });
  };
  // the directories this run makes, outermost first: removed again on a failure
  const missing: string[] = [];
  for (let d = dir; ; d = path.dirname(d)) {
    // ENOTDIR: a file on the way up, named below
    const there = await stat(d).then(
      (st) => st,
      (err: NodeJS.ErrnoException) => (err.code === 'ENOENT' || err.code === 'ENOTDIR' ? undefined : fail(err)),
    );
    if (there && !there.isDirectory()) {
      throw new UpdraftError('BAD_REQUEST', `cannot write ${flag} ${given}: ${d === dir ? `it is a file, not a directory: name a directory` : `${d} is a file, not a directory`}`);
    }
    if (there || path.dirname(d) === d) break;
    missing.unshift(d);
  }
  const created = new Set<string>();
  const undo = async () => {
    for (const f of created) await rm(f, { force: true }).catch(() => {});
    for (const d of [...missing].reverse()) await rmdir(d).catch(() => {});
  };
  await makeDir(dir, mode).catch(async (err: unknown) => {
    await undo();
    fail(err, 'directory');
  });
  // a directory may be there and take no file (procfs, a read-only mount, another user's)
  const probe = path.join(dir, `.updraft-probe-${randomBytes(4).toString('hex')}`);
  await writeFile(probe, '', { flag: 'wx' }).catch(async (err: unknown) => {
    await undo();
    fail(err, 'file');
  });
  await rm(probe, { force: true });
  return {
    dir,
    undo,
    async write(name, data, fileMode) {
      const file = path.join(dir, name);
      const existed = await lstat(file).then(
        () => true,
        () => false,
      );
      await writeOutputFile(flag, file, data, fileMode);
      if (!existed) created.add(file);
      return file;
    },
  };
}

/**
 * Why the directory `given` cannot be made or written into, from the error of making it (or a
 * file in it: `making`); undefined for one that is not about the path (a full disk).
 */
function dirUnusableReason(err: unknown, given: string, making?: 'directory' | 'file'): string | undefined {
  const e = err as NodeJS.ErrnoException | undefined;
  const at = making === 'file' ? given : (e?.path ?? given);
  switch (e?.code) {
    case 'ENOENT':
      // its parent is a directory and the file system still says ENOENT (util/make-dir.ts)
      return making === 'file' ? `the file system makes no file in ${at} (a virtual file system such as /proc or /sys)` : `the file system makes no directory ${at} (a virtual file system such as /proc or /sys)`;
    case 'ENOTDIR':
    case 'EEXIST':
      return `${at} is a file, not a directory`;
    case 'EACCES':
    case 'EPERM':
      return `permission denied ${making === 'file' ? `writing into ${at}` : `making ${at}`}`;
    case 'EROFS':
      return `${at} is on a read-only file system`;
    default:
      return undefined;
  }
}
