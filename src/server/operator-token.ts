/**
 * The operator token: generated on first start, printed once, required on every API call.
 * Kept in `<dataDir>/operator-token` with mode 0600 so the CLI of the same user on the same
 * machine finds it (as a kubeconfig is found); remote CLIs pass it in UPDRAFT_TOKEN.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';

/** Path of the token file in a data directory. */
export function operatorTokenPath(dataDir: string): string {
  return path.join(dataDir, 'operator-token');
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
  const token = `updr_${randomBytes(24).toString('base64url')}`;
  await mkdir(dataDir, { recursive: true });
  await writeFile(`${file}.tmp`, token + '\n', { mode: 0o600 });
  await rename(`${file}.tmp`, file);
  return { token, created: true };
}
