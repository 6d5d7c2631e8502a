/**
 * Crash-safe small files (agent state, keys, certificates, configuration): write a temporary file beside the target, fsync it, rename it over
 * the target, fsync the directory. After a power cut the target holds either the old or the
 * new content, never a mix (rename is atomic on POSIX file systems).
 */
import { randomBytes } from 'node:crypto';
import { open, rename, rm, type FileHandle } from 'node:fs/promises';
import path from 'node:path';

/**
 * Atomically replaces `file` with `data` (mode 0600 by default: agent state may hold a signed
 * URL, a key file a secret). A failure names `file` as its `path` where the system's error named
 * none or the temporary file (a write on a full disk says `ENOSPC: no space left on device,
 * write`, without a path): the CLI's error line names the file it could not write.
 * `prepare` is given the temporary file before it is written (its mode or owner set there).
 */
export async function writeFileAtomic(file: string, data: string | Buffer, mode = 0o600, prepare?: (handle: FileHandle) => Promise<void>): Promise<void> {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${randomBytes(4).toString('hex')}.tmp`);
  const handle = await open(tmp, 'w', mode).catch((err: unknown) => {
    throw naming(err, file, tmp);
  });
  try {
    // the temporary file's rights and owner set before anything is written (`prepare`): no
    // reader ever sees the file without them
    await prepare?.(handle);
    await handle.writeFile(data);
    await handle.sync();
  } catch (err) {
    await handle.close().catch(() => {});
    await rm(tmp, { force: true });
    throw naming(err, file, tmp);
  }
  await handle.close();
  try {
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw naming(err, file, tmp);
  }
  await syncDir(path.dirname(file));
}

/** `err` with `file` as its path, where it had none or the temporary file's (its message and code unchanged). */
function naming(err: unknown, file: string, tmp: string): unknown {
  const e = err as NodeJS.ErrnoException | undefined;
  if (e && typeof e === 'object' && (e.path === undefined || e.path === tmp)) e.path = file;
  return err;
}

/** fsyncs a directory so that a rename or a new entry in it survives a power cut. */
export async function syncDir(dir: string): Promise<void> {
  let handle;
  try {
    handle = await open(dir, 'r');
    await handle.sync();
  } catch {
    // some platforms (and file systems) refuse fsync on directories: best effort
  } finally {
    await handle?.close().catch(() => {});
  }
}
