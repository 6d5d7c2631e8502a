/**
 * What an agent is provisioned with before it runs, and where: the files `updraft device
 * register <id> --save <install-dir>` writes (the signing and root public keys the agent
 * trusts, the device secret), and the broker it connects to by default. Light on purpose:
 * the `updraft` command reads it without loading the agent.
 *
 * Where the daemon keeps its device secret: `<install-dir>/.updraft/device-secret`, mode
 * 0600, written by `updraft device register <id> --save <install-dir>` and read by
 * `updraft agent` when no password is given on the command line or in the environment.
 */
import { constants, readFileSync } from 'node:fs';
import { access, readFile } from 'node:fs/promises';
import path from 'node:path';
import { writeFileAtomic } from '../util/atomic-file.ts';
import type { Logger } from '../util/logger.ts';
import { makeDir } from '../util/make-dir.ts';

/** Default broker of the daemon. */
export const DEFAULT_BROKER_URL = 'mqtt://127.0.0.1:1883';

/** Path of the secret file of an install directory. */
export function secretFilePath(installDir: string): string {
  return path.join(installDir, '.updraft', 'device-secret');
}

/** Where `updraft device register --save` puts the operator's public signing key. */
export function signingKeyFilePath(installDir: string): string {
  return path.join(installDir, '.updraft', 'signing-key.pub');
}

/** Where `updraft device register --save` puts the offline root's public key (when the server has a certificate from one). */
export function rootKeyFilePath(installDir: string): string {
  return path.join(installDir, '.updraft', 'root-key.pub');
}

/**
 * Makes the directory the secret goes to, and checks that a file can be written there:
 * before the server issues a secret (`device register`, `rotate-secret`), which it keeps
 * only as a hash, so that a secret it committed is not lost to a bad `--save` path.
 * Rejects with the file system's reason.
 */
export async function prepareSecretDir(installDir: string): Promise<void> {
  const dir = path.dirname(secretFilePath(installDir));
  await makeDir(dir, 0o700);
  await access(dir, constants.W_OK);
}

/** Writes the secret (atomically, owner-only). */
export async function saveDeviceSecret(installDir: string, secret: string): Promise<string> {
  const file = secretFilePath(installDir);
  await makeDir(path.dirname(file), 0o700);
  await writeFileAtomic(file, secret + '\n', 0o600);
  return file;
}

/** The saved secret, or undefined when there is none. */
export async function readDeviceSecret(installDir: string): Promise<string | undefined> {
  try {
    return (await readFile(secretFilePath(installDir), 'utf8')).trim() || undefined;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/**
 * For the agent's `renewPassword`: the secret in `file` when it differs from the one in use
 * (`current` at first), else undefined (also while the file is missing, empty or unreadable:
 * the secret in use stays). Synchronous: it runs before a reconnect attempt, on a few bytes.
 */
export function secretFileReader(file: string, current: string | undefined, log: Logger): () => string | undefined {
  let last = current;
  return () => {
    let secret: string | undefined;
    try {
      secret = readFileSync(file, 'utf8').trim() || undefined;
    } catch {
      return undefined;
    }
    if (secret === undefined || secret === last) return undefined;
    log.info('the device secret changed on disk: reconnecting with the new one', { file });
    last = secret;
    return secret;
  };
}
