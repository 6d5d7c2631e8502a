/**
 * What the offline commands (`token rotate --offline`, `keys generate`, `keys install-cert
 * --offline`, `keys rotate-url --offline`) write into a data directory is what a server's
 * first start creates there: the operator token, the signing key, the URL key ring. A
 * server starting while such a command ran could read a file half replaced or write its own
 * over it, so each takes the lock a starting server takes (`whileSettingUp`,
 * server/data-dir-lock.ts) around its writes, and waits while a server sets the directory up.
 */
import path from 'node:path';
import { UpdraftError } from '../errors.ts';
import { isBadDirPath, makeDir } from '../util/make-dir.ts';

/** Runs `write` holding `dataDir`'s setup lock (the directory is created, mode 0700, when missing). */
export async function whileWritingOffline<T>(dataDir: string, write: () => Promise<T>): Promise<T> {
  const dir = path.resolve(dataDir);
  await makeDir(dir, 0o700).catch((err: Error) => {
    // a path that cannot be a directory is a bad --data-dir (exit code 2), as for the server
    throw new UpdraftError('CONFIG', `cannot create the data directory ${dir}: ${err.message}`, { cause: err, ...(isBadDirPath(err) ? { status: 400 } : {}) });
  });
  const { whileSettingUp } = await import('../server/data-dir-lock.ts'); // better-sqlite3: loaded only to write
  return whileSettingUp(dir, write, {
    waiting: () => process.stderr.write(`updraft: waiting for another process setting up ${dir} (a server starting on it) before writing into it\n`),
  });
}
