/**
 * The URL signing keys, kept in `<dataDir>/keys/url-signing.json` (mode 0600) and created on
 * first start. Rotation adds a new key at the front, signing at once or from a later time
 * (staged: it verifies before it signs); old keys keep verifying URLs already issued until
 * they are retired.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { UpdraftError } from '../errors.ts';
import { activeKey, type SigningKey } from './url-signer.ts';

interface KeyFile {
  /** Newest first. `activeFrom` (ISO): the key signs from then on, and only verifies before. */
  keys: { kid: string; secret: string; createdAt: string; activeFrom?: string }[];
}

function toSigningKey(k: KeyFile['keys'][number]): SigningKey {
  return { kid: k.kid, secret: Buffer.from(k.secret, 'base64'), ...(k.activeFrom !== undefined ? { activeFrom: Date.parse(k.activeFrom) } : {}) };
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
  return parsed.keys.map(toSigningKey);
}

function newKey(activeFrom?: number): KeyFile['keys'][number] {
  return { kid: randomBytes(4).toString('hex'), secret: randomBytes(32).toString('base64'), createdAt: new Date().toISOString(), ...(activeFrom !== undefined ? { activeFrom: new Date(activeFrom).toISOString() } : {}) };
}

/** A key of the ring as listed to operators (never the secret). */
export interface KeyInfo {
  kid: string;
  createdAt: string;
  /** True for the key that signs new URLs and tokens. */
  active: boolean;
  /** A key staged to sign later: when it starts (ISO); it verifies already. */
  activeFrom?: string;
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
 * Rotates the URL key ring of `dataDir`: a new key goes in front and signs from now on, or
 * from `activateAt` (ms since the epoch) when given, verifying already: staged on every
 * instance of a cluster before any signs with it, it is never refused by one that lacks it.
 * Older keys keep verifying what they signed until it expires. `retire` removes a key (URLs
 * and tokens it signed are refused from then on); the key signing now cannot be retired.
 * `ring`, the live array a running signer uses, is changed in place.
 */
export async function rotateKeyRing(dataDir: string, options: { add?: boolean; activateAt?: number; retire?: string; ring?: SigningKey[]; now?: number }): Promise<KeyInfo[]> {
  const file = path.join(dataDir, 'keys', 'url-signing.json');
  const content = await readKeyFile(file);
  const now = options.now ?? Date.now();
  if (options.retire !== undefined) {
    const i = content.keys.findIndex((k) => k.kid === options.retire);
    if (i < 0) throw new UpdraftError('NOT_FOUND', `no URL signing key ${options.retire}; list them with: updraft keys list-url`);
    const signing = activeKey(content.keys.map(toSigningKey), now).kid;
    const signsAfter = options.add && (options.activateAt === undefined || options.activateAt <= now);
    if (options.retire === signing && !signsAfter) throw new UpdraftError('BAD_REQUEST', `key ${options.retire} signs now; rotate first (updraft keys rotate-url), then retire it once the new key signs`);
  }
  if (options.add) content.keys.unshift(newKey(options.activateAt !== undefined && options.activateAt > now ? options.activateAt : undefined));
  if (options.retire !== undefined) content.keys = content.keys.filter((k) => k.kid !== options.retire);
  await writeKeyFile(file, content);
  if (options.ring) options.ring.splice(0, options.ring.length, ...content.keys.map(toSigningKey));
  return listKeys(content, now);
}

/** The keys of the ring of `dataDir`, newest first. */
export async function listKeyRing(dataDir: string, now = Date.now()): Promise<KeyInfo[]> {
  return listKeys(await readKeyFile(path.join(dataDir, 'keys', 'url-signing.json')), now);
}

function listKeys(content: KeyFile, now: number): KeyInfo[] {
  const signing = activeKey(content.keys.map(toSigningKey), now).kid;
  return content.keys.map((k) => ({
    kid: k.kid,
    createdAt: k.createdAt,
    active: k.kid === signing,
    ...(k.activeFrom !== undefined && Date.parse(k.activeFrom) > now ? { activeFrom: k.activeFrom } : {}),
  }));
}
