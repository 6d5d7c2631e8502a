/**
 * The offline root key and the certificates it signs for the online software signing key
 * (`protocol/key-certificate.ts`): made and used away from the server (`updraft keys
 * root-generate`, `updraft keys certify`), so that whoever takes the server takes the
 * signing key, which can be replaced, and not the root, which devices are provisioned with.
 *
 * On the server, `<dataDir>/keys/software-signing.cert` is the certificate of its signing
 * key and `<dataDir>/keys/root.pub` the root that signed it (`updraft keys install-cert`);
 * every update command then carries the certificate.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, sign, verify, type KeyObject } from 'node:crypto';
import { mkdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { UpdraftError } from '../errors.ts';
import { writeAtomic } from '../pki/certificate-authority.ts';
import { keyCertificateBytes, parseKeyCertificate, type KeyCertificate } from '../protocol/key-certificate.ts';
import { keyIdOf, parsePublicKey, type SoftwareSigningKey } from './signing-key.ts';

/** Files of an installed certificate under a data directory. */
export function keyCertificatePaths(dataDir: string): { cert: string; rootPub: string } {
  const dir = path.join(path.resolve(dataDir), 'keys');
  return { cert: path.join(dir, 'software-signing.cert'), rootPub: path.join(dir, 'root.pub') };
}

/** Makes a root key pair: `<dir>/root.key` (PKCS #8 PEM, 0600) and `<dir>/root.pub` (SPKI PEM). CONFLICT if one is there. */
export async function generateRootKey(dir: string): Promise<{ keyId: string; keyFile: string; publicFile: string }> {
  const keyFile = path.join(path.resolve(dir), 'root.key');
  const publicFile = path.join(path.resolve(dir), 'root.pub');
  if (await exists(keyFile)) throw new UpdraftError('CONFLICT', `a root key already exists (${keyFile}); devices trust it, and a new one would be trusted by none`);
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  await mkdir(path.dirname(keyFile), { recursive: true, mode: 0o700 });
  await writeAtomic(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), 0o600);
  await writeAtomic(publicFile, publicKey.export({ type: 'spki', format: 'pem' }).toString(), 0o644);
  return { keyId: keyIdOf(publicKey), keyFile, publicFile };
}

/** Reads an Ed25519 private key (PKCS #8 PEM) from a file; CONFIG naming what is wrong. */
export async function readRootPrivateKey(file: string): Promise<KeyObject> {
  const pem = await readFile(file, 'utf8').catch((err: Error) => {
    throw new UpdraftError('CONFIG', `cannot read the root key ${file}: ${err.message}`);
  });
  let key: KeyObject;
  try {
    key = createPrivateKey(pem);
  } catch (err) {
    throw new UpdraftError('CONFIG', `${file} is not a PEM private key: ${(err as Error).message}`);
  }
  if (key.asymmetricKeyType !== 'ed25519') throw new UpdraftError('CONFIG', `${file} is not an Ed25519 key`);
  return key;
}

/** The root's certificate for `signingPublicKey`. */
export function certifySigningKey(rootKey: KeyObject, signingPublicKey: KeyObject, serial: number, expiresAt: number): KeyCertificate {
  const body = {
    rootKeyId: keyIdOf(createPublicKey(rootKey)),
    keyId: keyIdOf(signingPublicKey),
    publicKey: signingPublicKey.export({ type: 'spki', format: 'der' }).toString('base64'),
    serial,
    expiresAt,
  };
  return { ...body, signature: sign(null, keyCertificateBytes(body), rootKey).toString('base64') };
}

/**
 * The signing key `cert` certifies, when `root` signed it; INTEGRITY with the reason
 * otherwise. Expiry and serial are the caller's to judge (a device against its clock and
 * the highest serial it has seen; the server against the certificate it replaces).
 */
export function verifyKeyCertificate(cert: KeyCertificate, root: KeyObject): KeyObject {
  const rootKeyId = keyIdOf(root);
  if (cert.rootKeyId !== rootKeyId) throw new UpdraftError('INTEGRITY', `key certificate signed by root ${cert.rootKeyId}, but the trusted root is ${rootKeyId}`);
  let ok = false;
  try {
    ok = verify(null, keyCertificateBytes(cert), root, Buffer.from(cert.signature, 'base64'));
  } catch {
    ok = false;
  }
  if (!ok) throw new UpdraftError('INTEGRITY', 'bad key certificate signature');
  let key: KeyObject;
  try {
    key = createPublicKey({ key: Buffer.from(cert.publicKey, 'base64'), format: 'der', type: 'spki' });
  } catch {
    throw new UpdraftError('INTEGRITY', 'the key certificate holds no readable public key');
  }
  if (key.asymmetricKeyType !== 'ed25519' || keyIdOf(key) !== cert.keyId) throw new UpdraftError('INTEGRITY', `the key certificate's public key is not the Ed25519 key ${cert.keyId}`);
  return key;
}

/** An installed certificate and the root that signed it. */
export interface InstalledKeyCertificate {
  certificate: KeyCertificate;
  /** The root's public key (SPKI PEM): what devices are provisioned with. */
  rootPublicKeyPem: string;
}

/**
 * The certificate installed in `dataDir` for `signingKey`, or undefined when none is. CONFIG
 * when the files are unreadable, disagree, or certify another key (the signing key was
 * replaced and its certificate was not).
 */
export async function loadKeyCertificate(dataDir: string, signingKey: SoftwareSigningKey): Promise<InstalledKeyCertificate | undefined> {
  const p = keyCertificatePaths(dataDir);
  let text: string;
  try {
    text = await readFile(p.cert, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new UpdraftError('CONFIG', `cannot read the key certificate ${p.cert}: ${(err as Error).message}`);
  }
  const rootPublicKeyPem = await readFile(p.rootPub, 'utf8').catch((err: Error) => {
    throw new UpdraftError('CONFIG', `${p.cert} is there but its root public key ${p.rootPub} cannot be read: ${err.message}`);
  });
  let certificate: KeyCertificate;
  try {
    certificate = parseKeyCertificate(JSON.parse(text));
    verifyKeyCertificate(certificate, parsePublicKey(rootPublicKeyPem));
  } catch (err) {
    throw new UpdraftError('CONFIG', `${p.cert}: ${(err as Error).message}`);
  }
  if (certificate.keyId !== signingKey.keyId) {
    throw new UpdraftError('CONFIG', `${p.cert} certifies signing key ${certificate.keyId}, but the signing key is ${signingKey.keyId}: devices that trust the root would refuse every update. Certify the new key (updraft keys certify) and install it (updraft keys install-cert)`);
  }
  return { certificate, rootPublicKeyPem };
}

/**
 * Installs `certificate` into `dataDir` after checking it: signed by `rootPublicKeyPem` (or,
 * when omitted, by the root already installed), for the data directory's signing key, not
 * expired at `nowSeconds`, and with a serial above the installed one's (devices refuse a
 * lower one, and an equal one for another key could not tell the two apart). A different
 * root than the installed one is refused: devices trust the installed one.
 */
export async function installKeyCertificate(
  dataDir: string,
  signingKey: SoftwareSigningKey,
  certificate: KeyCertificate,
  options: { rootPublicKeyPem?: string; nowSeconds?: number } = {},
): Promise<InstalledKeyCertificate> {
  const p = keyCertificatePaths(dataDir);
  const installedRoot = await readFile(p.rootPub, 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw new UpdraftError('CONFIG', `cannot read ${p.rootPub}: ${err.message}`);
  });
  const rootPem = options.rootPublicKeyPem ?? installedRoot;
  if (rootPem === undefined) throw new UpdraftError('BAD_REQUEST', 'no root public key is installed yet: give the root public key (--root-public) the first time');
  const root = parsePublicKey(rootPem);
  const installedId = installedRoot !== undefined ? keyIdOf(parsePublicKey(installedRoot)) : undefined;
  if (installedId !== undefined && installedId !== keyIdOf(root)) {
    throw new UpdraftError('CONFLICT', `the installed root is ${installedId}, not ${keyIdOf(root)}: devices trust the installed one, so a certificate of another root would be refused by all of them`);
  }
  try {
    verifyKeyCertificate(certificate, root);
  } catch (err) {
    // the operator's input: refused as bad input (400, exit 2), not as an integrity fault of the server
    throw new UpdraftError('BAD_REQUEST', (err as Error).message);
  }
  if (certificate.keyId !== signingKey.keyId) throw new UpdraftError('BAD_REQUEST', `the certificate is for signing key ${certificate.keyId}, but this data directory's signing key is ${signingKey.keyId}`);
  const now = options.nowSeconds ?? Math.floor(Date.now() / 1000);
  if (certificate.expiresAt <= now) throw new UpdraftError('BAD_REQUEST', `the certificate expired at ${new Date(certificate.expiresAt * 1000).toISOString()}`);
  const previousSerial = await readSerial(p.cert);
  if (previousSerial !== undefined && certificate.serial <= previousSerial) {
    throw new UpdraftError('CONFLICT', `the certificate's serial ${certificate.serial} is not above the installed one's (${previousSerial}); certify with --serial ${previousSerial + 1}`);
  }
  await mkdir(path.dirname(p.cert), { recursive: true, mode: 0o700 });
  if (installedRoot === undefined) await writeAtomic(p.rootPub, root.export({ type: 'spki', format: 'pem' }).toString(), 0o644);
  await writeAtomic(p.cert, JSON.stringify(certificate, null, 2) + '\n', 0o644);
  return { certificate, rootPublicKeyPem: root.export({ type: 'spki', format: 'pem' }).toString() };
}

/** The serial of the installed certificate, whatever key it certifies (a replaced one, say), or undefined. */
async function readSerial(file: string): Promise<number | undefined> {
  try {
    const serial = (JSON.parse(await readFile(file, 'utf8')) as { serial?: unknown }).serial;
    return typeof serial === 'number' ? serial : undefined;
  } catch {
    return undefined;
  }
}

async function exists(file: string): Promise<boolean> {
  return stat(file).then(
    () => true,
    () => false,
  );
}
