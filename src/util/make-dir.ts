/**
 * `mkdir -p` that ends. Node's `mkdir(dir, { recursive: true })` takes ENOENT as "a parent is
 * missing", makes the parent and tries again, for ever: a file system that answers ENOENT for a
 * directory whose parent exists (procfs: `updraft server --data-dir /proc/foo`) had the command
 * hang, spinning a core (config QA). Here each missing directory is made once, parents first,
 * with non-recursive mkdir; an ENOENT whose parent exists is the file system's answer, and
 * thrown (see `isBadDirPath`).
 */
import { mkdir, stat } from 'node:fs/promises';
import path from 'node:path';

/** Makes `dir` and its missing parents (each with `mode`, as `mkdir -p`); a directory already there passes. */
export async function makeDir(dir: string, mode?: number): Promise<void> {
  const abs = path.resolve(dir);
  const opts = mode !== undefined ? { mode } : {};
  const first = await mkdir(abs, opts).then(
    () => undefined,
    (err: NodeJS.ErrnoException) => err,
  );
  if (first === undefined) return;
  if (first.code === 'EEXIST') return existingDirectory(abs, first);
  const parent = path.dirname(abs);
  if (first.code !== 'ENOENT' || parent === abs) throw first;
  await makeDir(parent, mode);
  await mkdir(abs, opts).catch(async (err: NodeJS.ErrnoException) => {
    if (err.code === 'EEXIST') return existingDirectory(abs, err); // made meanwhile by another process
    if (err.code !== 'ENOENT') throw err;
    // the parent is a directory now, and the file system still says ENOENT
    throw Object.assign(new Error(`ENOENT: the file system makes no directory ${abs} although its parent is one (a virtual file system such as /proc or /sys)`), {
      code: 'ENOENT',
      syscall: 'mkdir',
      path: abs,
      cause: err,
    });
  });
}

async function existingDirectory(dir: string, err: NodeJS.ErrnoException): Promise<void> {
  const st = await stat(dir).catch(() => undefined);
  if (!st?.isDirectory()) throw err;
}

/**
 * Whether a failure to make or use a directory says the path itself cannot be one (a file in
 * the way, a file system that makes none there): a bad setting, where permission denied or a
 * full disk is the machine's state.
 */
export function isBadDirPath(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR' || code === 'EEXIST';
}
