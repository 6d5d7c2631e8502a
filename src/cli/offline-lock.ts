/**
 * What the offline commands (`token rotate --offline`, `keys generate`, `keys install-cert
 * --offline`, `keys rotate-url --offline`) write into a data directory is what a server's
 * first start creates there: the operator token, the signing key, the URL key ring. A
 * server starting while such a command ran could read a file half replaced or write its own
 * over it, so each takes the lock a starting server takes (`whileSettingUp`,
 * server/data-dir-lock.ts) around its writes, and waits while a server sets the directory up.
 *
 * Only the commands whose job is to make what a first start makes (`ca init`, `keys
 * generate`, `token rotate --offline`) create a missing data directory. The others change
 * what is there (`ca rollover`, `ca drop-previous`, `keys install-cert --offline`, `keys
 * rotate-url --offline`): given a directory that does not exist (a mistyped --data-dir),
 * they made it and its `server.lock`, then said there was nothing to change (drop-previous:
 * "no previous CA: nothing to remove", exit 0). They are refused in one line, and nothing is
 * created (`missing`).
 */
import { stat } from 'node:fs/promises';
import path from 'node:path';
import { UpdraftError } from '../errors.ts';
import { isBadDirPath, makeDir } from '../util/make-dir.ts';

/**
 * Runs `write` holding `dataDir`'s setup lock. A missing directory is created (mode 0700),
 * unless `missing` is given: then it is refused (NOT_FOUND, exit code 2) with that text (what
 * the command had to work on), and nothing is created.
 */
export async function whileWritingOffline<T>(dataDir: string, write: () => Promise<T>, options: { missing?: string } = {}): Promise<T> {
  const dir = path.resolve(dataDir);
  if (options.missing !== undefined) await refuseMissingDataDir(dataDir, options.missing);
  await makeDir(dir, 0o700).catch((err: Error) => {
    // a path that cannot be a directory is a bad --data-dir (exit code 2), as for the server
    throw new UpdraftError('CONFIG', `cannot create the data directory ${dir}: ${err.message}`, { cause: err, ...(isBadDirPath(err) ? { status: 400 } : {}) });
  });
  const { whileSettingUp } = await import('../server/data-dir-lock.ts'); // better-sqlite3: loaded only to write
  return whileSettingUp(dir, write, {
    waiting: () => process.stderr.write(`updraft: waiting for another process setting up ${dir} (a server starting on it) before writing into it\n`),
  });
}

/** NOT_FOUND when `dataDir` does not exist (nor a path to it: a file where a parent should be); `missing`: what the command needed from it. */
export async function refuseMissingDataDir(dataDir: string, missing: string): Promise<void> {
  const gone = await stat(path.resolve(dataDir)).then(
    () => false,
    (err: NodeJS.ErrnoException) => err.code === 'ENOENT' || err.code === 'ENOTDIR',
  );
  // a file where the directory should be is said by makeDir's error, as for every command
  if (gone) throw new UpdraftError('NOT_FOUND', `the data directory ${dataDir} does not exist, so ${missing}; nothing was created: check --data-dir (or UPDRAFT_DATA_DIR, or the dataDir of --config)`);
}
