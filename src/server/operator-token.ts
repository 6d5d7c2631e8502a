/**
 * The operator token: generated on first start, printed once, required on every API call.
 * Kept in `<dataDir>/operator-token` with mode 0600 so the CLI of the same user on the same
 * machine finds it (as a kubeconfig is found); remote CLIs pass it in UPDRAFT_TOKEN.
 */
import { randomBytes } from 'node:crypto';
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { makeDir } from '../util/make-dir.ts';
import { isFile } from './data-dir-files.ts';

/** Path of the token file in a data directory. */
export function operatorTokenPath(dataDir: string): string {
  return path.join(dataDir, 'operator-token');
}

/**
 * Beside a token that the server start which made it did not print: the token is made early
 * in a start (the broker and the API need it), and a first start can fail after it (the MQTT
 * port taken by another broker, as on a machine that runs Mosquitto). Such a start leaves this
 * mark, and the next start that serves prints the token and removes it. Before, only the start
 * that made the token printed it, and that one had ended with an error: the token was never
 * seen. A token replaced by a command that prints it (`token rotate`) removes the mark too.
 */
function unshownMarkPath(dataDir: string): string {
  return path.join(dataDir, 'operator-token.unshown');
}

/**
 * A new operator token, written over the old one (mode 0600, renamed into place): it is the
 * one read at the next start. The caller shows it: a mark of an earlier token not shown goes.
 */
export async function replaceOperatorToken(dataDir: string): Promise<string> {
  const token = await writeNewToken(dataDir);
  await markOperatorTokenShown(dataDir);
  return token;
}

async function writeNewToken(dataDir: string): Promise<string> {
  const file = operatorTokenPath(dataDir);
  const token = `updr_${randomBytes(24).toString('base64url')}`;
  await makeDir(dataDir);
  // a stale temporary file (a crash) may have other rights: remove it, never write into it
  await rm(`${file}.tmp`, { force: true });
  await writeFile(`${file}.tmp`, token + '\n', { mode: 0o600, flag: 'wx' });
  await rename(`${file}.tmp`, file);
  return token;
}

/**
 * Reads the token, creating one when absent. `created`: made now; `unshown`: the start must
 * print it (made now, or by an earlier start that failed: `markOperatorTokenUnshown`), then
 * call `markOperatorTokenShown`.
 */
export async function loadOrCreateOperatorToken(dataDir: string): Promise<{ token: string; created: boolean; unshown: boolean }> {
  const file = operatorTokenPath(dataDir);
  try {
    const token = (await readFile(file, 'utf8')).trim();
    if (token.length >= 32) return { token, created: false, unshown: await isFile(unshownMarkPath(dataDir)) };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  return { token: await writeNewToken(dataDir), created: true, unshown: true };
}

/** A start that made the token failed before printing it: the next start that serves prints it. */
export async function markOperatorTokenUnshown(dataDir: string): Promise<void> {
  await writeFile(unshownMarkPath(dataDir), '', { mode: 0o600 });
}

/** The token has been printed: later starts do not print it again. */
export async function markOperatorTokenShown(dataDir: string): Promise<void> {
  await rm(unshownMarkPath(dataDir), { force: true });
}
