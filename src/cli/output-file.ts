/**
 * A file the operator names on the command line (`--out`, `--save-devices`): one that cannot be
 * written is bad input, said in one line naming the option and the path given, not the temporary
 * file writeFileAtomic makes beside it (`ENOENT: ... open '/nonexist/dir/.x.11820fc3.tmp'`, exit 1).
 */
import path from 'node:path';
import { UpdraftError } from '../errors.ts';
import { writeFileAtomic } from '../util/atomic-file.ts';

/** Why `file` cannot be written, from the error of writing it (or a file beside it); undefined for an error that is not about the path. */
export function unwritableReason(err: unknown, file: string): string | undefined {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  const dir = path.dirname(file);
  if (code === 'ENOENT' || code === 'ENOTDIR') return `there is no directory ${dir}`;
  if (code === 'EACCES' || code === 'EPERM') return `${dir} is not writable`;
  if (code === 'EROFS') return `${dir} is on a read-only file system`;
  if (code === 'EISDIR') return `${file} is a directory: name a file`;
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
