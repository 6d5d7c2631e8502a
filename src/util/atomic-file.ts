/**
 * Crash-safe small files (agent state, keys, certificates, configuration): write a temporary file beside the target, fsync it, rename it over
 * the target, fsync the directory. After a power cut the target holds either the old or the
 * new content, never a mix (rename is atomic on POSIX file systems).
 */
import { randomBytes } from 'node:crypto';
import { open, rename, rm } from 'node:fs/promises';
import path from 'node:path';

/** Atomically replaces `file` with `data` (mode 0600 by default: agent state may hold a signed URL, a key file a secret). */
export async function writeFileAtomic(file: string, data: string | Buffer, mode = 0o600): Promise<void> {
  const tmp = path.join(path.dirname(file), `.${path.basename(file)}.${randomBytes(4).toString('hex')}.tmp`);
  const handle = await open(tmp, 'w', mode);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } catch (err) {
    await handle.close().catch(() => {});
    await rm(tmp, { force: true });
    throw err;
  }
  await handle.close();
  try {
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
  await syncDir(path.dirname(file));
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
