/**
 * The operator's Ed25519 software signing key (docs/design.md §5): signs every artifact when it is
 * added and every update manifest when a delta is issued. Kept in
 * `<dataDir>/keys/software-signing.key` (PKCS #8 PEM, mode 0600); its public half, which
 * devices are provisioned with, in `software-signing.pub` (SPKI PEM) beside it.
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { UpdraftError } from '../errors.ts';
import { writeFileAtomic } from '../util/atomic-file.ts';

/** Files of the signing key under a data directory. */
export function signingKeyPaths(dataDir: string): { key: string; pub: string } {
  const dir = path.join(path.resolve(dataDir), 'keys');
  return { key: path.join(dir, 'software-signing.key'), pub: path.join(dir, 'software-signing.pub') };
}

/**
 * Ids of the keys asked about, by KeyObject (immutable): the export to DER costs about 80 µs of
 * CPU (measured 2026-12-07, Node 20), and an agent asks for the id of the key it trusts with
 * every command it checks and every report of its trust (`updraft sim`: thousands of devices
 * sharing one KeyObject, 78 of the 160 µs a command's check took).
 */
const keyIds = new WeakMap<KeyObject, string>();

/** The id of a public key: the first 16 hex digits of the SHA-256 of its SPKI DER form. */
export function keyIdOf(publicKey: KeyObject): string {
  let id = keyIds.get(publicKey);
  if (id === undefined) {
    id = createHash('sha256').update(publicKey.export({ type: 'spki', format: 'der' })).digest('hex').slice(0, 16);
    keyIds.set(publicKey, id);
  }
  return id;
}

/** Reads a public key given as PEM text or a path to a PEM file; CONFIG naming what is wrong. */
export async function readPublicKey(pemOrFile: string): Promise<KeyObject> {
  const text = pemOrFile.includes('-----BEGIN') ? pemOrFile : await readFile(pemOrFile, 'utf8').catch((err: Error) => {
    throw new UpdraftError('CONFIG', `cannot read the software signing public key ${pemOrFile}: ${err.message}`);
  });
  return parsePublicKey(text);
}

/** Parses an Ed25519 public key (SPKI PEM). */
export function parsePublicKey(pem: string): KeyObject {
  let key: KeyObject;
  try {
    key = createPublicKey(pem);
  } catch (err) {
    throw new UpdraftError('CONFIG', `not a PEM public key: ${(err as Error).message}`);
  }
  if (key.asymmetricKeyType !== 'ed25519') throw new UpdraftError('CONFIG', `the software signing key must be Ed25519, got ${key.asymmetricKeyType}`);
  return key;
}

/** Signs and verifies with the operator's key. */
export class SoftwareSigningKey {
  /** Public key (SPKI PEM): what devices are provisioned with. */
  readonly publicKeyPem: string;
  /** `keyIdOf` the public key. */
  readonly keyId: string;
  private readonly privateKey: KeyObject;

  /** Only assigns; use `loadSigningKey`, `generateSigningKey` or `loadOrCreateSigningKey`. */
  constructor(privateKey: KeyObject) {
    this.privateKey = privateKey;
    const pub = createPublicKey(privateKey);
    this.publicKeyPem = pub.export({ type: 'spki', format: 'pem' }).toString();
    this.keyId = keyIdOf(pub);
  }

  /** Base64 Ed25519 signature over `bytes`. */
  sign(bytes: Buffer): string {
    return sign(null, bytes, this.privateKey).toString('base64');
  }

  /** True when `signature` is this key's over `bytes`. */
  verify(bytes: Buffer, signature: string): boolean {
    return verify(null, bytes, createPublicKey(this.privateKey), Buffer.from(signature, 'base64'));
  }
}

/** Loads the key of `dataDir`, or undefined when there is none. */
export async function loadSigningKey(dataDir: string): Promise<SoftwareSigningKey | undefined> {
  const p = signingKeyPaths(dataDir);
  let pem: string;
  try {
    pem = await readFile(p.key, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new UpdraftError('CONFIG', `cannot read the software signing key ${p.key}: ${(err as Error).message}`);
  }
  const key = createPrivateKey(pem);
  if (key.asymmetricKeyType !== 'ed25519') throw new UpdraftError('CONFIG', `${p.key} is not an Ed25519 key`);
  return new SoftwareSigningKey(key);
}

/**
 * Generates a new key into `dataDir`. CONFLICT when one exists, unless `replace`: devices
 * provisioned with the old public key then refuse every update until re-provisioned.
 */
export async function generateSigningKey(dataDir: string, options: { replace?: boolean } = {}): Promise<SoftwareSigningKey> {
  const p = signingKeyPaths(dataDir);
  if (!options.replace && (await loadSigningKey(dataDir))) {
    throw new UpdraftError('CONFLICT', `a software signing key already exists (${p.key}); devices trust it. Replace it with --force only if you re-provision every device with the new public key, or if devices trust a root key (then certify the new key and install the certificate: docs/security.md)`);
  }
  const { privateKey } = generateKeyPairSync('ed25519');
  const key = new SoftwareSigningKey(privateKey);
  await mkdir(path.dirname(p.key), { recursive: true, mode: 0o700 });
  await writeFileAtomic(p.key, privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), 0o600);
  await writeFileAtomic(p.pub, key.publicKeyPem, 0o644);
  return key;
}

/** The key of `dataDir`, generated on first start so that `npm start` just works. */
export async function loadOrCreateSigningKey(dataDir: string): Promise<{ key: SoftwareSigningKey; created: boolean }> {
  const key = await loadSigningKey(dataDir);
  return key ? { key, created: false } : { key: await generateSigningKey(dataDir), created: true };
}
