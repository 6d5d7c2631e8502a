/**
 * A small real tmpfs for full-disk tests: mounted on a directory (the tests run as root on CI:
 * .ci/run), filled until the kernel says ENOSPC, unmounted. Where none can be mounted (not
 * root, no CAP_SYS_ADMIN) a test skips saying why, except under CI=true, where it fails
 * (`tmpfsOrSkip`).
 */
import { spawnSync } from 'node:child_process';
import { open, statfs } from 'node:fs/promises';
import path from 'node:path';

/** Mounts a tmpfs of `size` (mount's syntax: `8m`, `64k`) on `dir`; undefined when mounted, else why not. */
export function mountTmpfs(dir: string, size: string): string | undefined {
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir], { encoding: 'utf8' });
  return r.status === 0 ? undefined : `a tmpfs cannot be mounted here (${(r.stderr || r.error?.message || `exit ${r.status}`).trim()}): run as root with CAP_SYS_ADMIN`;
}

/**
 * Mounts a tmpfs on `dir` (mountTmpfs): undefined when mounted, else the reason to skip; throws
 * that reason under CI=true, where every test must run.
 */
export function tmpfsOrSkip(dir: string, size: string): string | undefined {
  const skip = mountTmpfs(dir, size);
  if (skip && process.env.CI === 'true') throw new Error(`CI=true: ${skip}`);
  return skip;
}

/** Unmounts `dir` (mounted by mountTmpfs). */
export function unmount(dir: string): void {
  spawnSync('umount', [dir]);
}

/** Writes `file` until the file system refuses (ENOSPC) or only `leave` bytes are left for unprivileged users. */
export async function fill(file: string, leave = 0): Promise<void> {
  const h = await open(file, 'a');
  try {
    for (let chunk = 1024 * 1024; chunk >= 512; ) {
      if (leave > 0) {
        const fs = await statfs(path.dirname(file));
        const free = fs.bavail * fs.bsize;
        if (free <= leave + chunk) {
          if (chunk === 512) break;
          chunk /= 2;
          continue;
        }
      }
      try {
        await h.write(Buffer.alloc(chunk, 1));
        await h.sync();
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
        chunk /= 2;
      }
    }
  } finally {
    await h.close();
  }
}
