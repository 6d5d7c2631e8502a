/**
 * The operator token: generated on first start, printed once, required on every API call.
 * Kept in `<dataDir>/operator-token` with mode 0600 so the CLI of the same user on the same
 * machine finds it (as a kubeconfig is found); remote CLIs pass it in UPDRAFT_TOKEN.
 */
import { randomBytes } from 'node:crypto';
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { makeDir } from '../util/make-dir.ts';

/** Path of the token file in a data directory. */
export function operatorTokenPath(dataDir: string): string {
  return path.join(dataDir, 'operator-token');
}

/** A new operator token, written over the old one (mode 0600, renamed into place): it is the one read at the next start. */
export async function replaceOperatorToken(dataDir: string): Promise<string> {
  const file = operatorTokenPath(dataDir);
  const token = `updr_${randomBytes(24).toString('base64url')}`;
  await makeDir(dataDir);
  // a stale temporary file (a crash) may have other rights: remove it, never write into it
  await rm(`${file}.tmp`, { force: true });
  await writeFile(`${file}.tmp`, token + '\n', { mode: 0o600, flag: 'wx' });
  await rename(`${file}.tmp`, file);
  return token;
}

/** Reads the token, creating one when absent; `created` tells whether to print it. */
export async function loadOrCreateOperatorToken(dataDir: string): Promise<{ token: string; created: boolean }> {
  const file = operatorTokenPath(dataDir);
  try {
    const token = (await readFile(file, 'utf8')).trim();
    if (token.length >= 32) return { token, created: false };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  return { token: await replaceOperatorToken(dataDir), created: true };
}
