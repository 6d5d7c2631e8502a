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

/** A key of the ring as listed to operators (never the secret). */
export interface KeyInfo {
  kid: string;
  createdAt: string;
  /** True for the key that signs new URLs and tokens. */
  active: boolean;
}

async function readKeyFile(file: string): Promise<KeyFile> {
  try {
    const parsed = JSON.parse(await readFile(file, 'utf8')) as KeyFile;
    if (!Array.isArray(parsed.keys) || parsed.keys.length === 0) throw new Error('it holds no keys');
    return parsed;
  } catch (err) {
    throw new UpdraftError('CONFIG', `cannot read URL signing keys from ${file}: ${(err as Error).message}`);
  }
}

async function writeKeyFile(file: string, content: KeyFile): Promise<void> {
  const tmp = `${file}.tmp`;
  await writeFile(tmp, JSON.stringify(content, null, 2), { mode: 0o600 });
  await rename(tmp, file);
}

/**
 * Rotates the URL key ring of `dataDir`: a new key goes in front (it signs from now on), older
 * keys keep verifying what they signed until it expires. `retire` removes a key (URLs and
 * tokens it signed are refused from then on); the active key cannot be retired. `ring`, the
 * live array a running signer uses, is changed in place.
 */
export async function rotateKeyRing(dataDir: string, options: { add?: boolean; retire?: string; ring?: SigningKey[] }): Promise<KeyInfo[]> {
  const file = path.join(dataDir, 'keys', 'url-signing.json');
  const content = await readKeyFile(file);
  if (options.retire !== undefined) {
    const i = content.keys.findIndex((k) => k.kid === options.retire);
    if (i < 0) throw new UpdraftError('NOT_FOUND', `no URL signing key ${options.retire}; list them with: updraft keys list-url`);
    if (i === 0 && !options.add) throw new UpdraftError('BAD_REQUEST', `key ${options.retire} is the active key; rotate first (updraft keys rotate-url), then retire it`);
  }
  if (options.add) content.keys.unshift(newKey());
  if (options.retire !== undefined) content.keys = content.keys.filter((k) => k.kid !== options.retire);
  await writeKeyFile(file, content);
  if (options.ring) options.ring.splice(0, options.ring.length, ...content.keys.map((k) => ({ kid: k.kid, secret: Buffer.from(k.secret, 'base64') })));
  return listKeys(content);
}

/** The keys of the ring of `dataDir`, newest (active) first. */
export async function listKeyRing(dataDir: string): Promise<KeyInfo[]> {
  return listKeys(await readKeyFile(path.join(dataDir, 'keys', 'url-signing.json')));
}

function listKeys(content: KeyFile): KeyInfo[] {
  return content.keys.map((k, i) => ({ kid: k.kid, createdAt: k.createdAt, active: i === 0 }));
}
