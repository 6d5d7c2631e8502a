/**
 * The URL signing keys, kept in `<dataDir>/keys/url-signing.json` (mode 0600) and created on
 * first start. Rotation adds a new key at the front; old keys keep verifying URLs already
 * issued until they are retired.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { UpdraftError } from '../errors.ts';
import type { SigningKey } from './url-signer.ts';

interface KeyFile {
  keys: { kid: string; secret: string; createdAt: string }[];
}

/** Loads the key ring, creating it with one fresh key when absent. */
export async function loadOrCreateKeyRing(dataDir: string): Promise<SigningKey[]> {
  const file = path.join(dataDir, 'keys', 'url-signing.json');
  let parsed: KeyFile;
  try {
    parsed = JSON.parse(await readFile(file, 'utf8')) as KeyFile;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new UpdraftError('CONFIG', `cannot read URL signing keys from ${file}: ${(err as Error).message}`);
    }
    parsed = { keys: [newKey()] };
    await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
    const tmp = `${file}.tmp`;
    await writeFile(tmp, JSON.stringify(parsed, null, 2), { mode: 0o600 });
    await rename(tmp, file);
  }
  if (!Array.isArray(parsed.keys) || parsed.keys.length === 0) throw new UpdraftError('CONFIG', `${file} holds no keys`);
  return parsed.keys.map((k) => ({ kid: k.kid, secret: Buffer.from(k.secret, 'base64') }));
}

function newKey(): KeyFile['keys'][number] {
  return { kid: randomBytes(4).toString('hex'), secret: randomBytes(32).toString('base64'), createdAt: new Date().toISOString() };
}
