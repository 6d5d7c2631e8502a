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
import { mkdir, readFile, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { UpdraftError } from '../errors.ts';
import { writeFileAtomic } from '../util/atomic-file.ts';
import { keyCertificateBytes, parseKeyCertificate, type KeyCertificate } from '../protocol/key-certificate.ts';
import { MAX_ROOT_ROTATIONS, parseRootRotations, rootRotationBytes, type RootRotation } from '../protocol/root-rotation.ts';
import { keyIdOf, parsePublicKey, type SoftwareSigningKey } from './signing-key.ts';

/** Files of an installed certificate under a data directory. */
export function keyCertificatePaths(dataDir: string): { cert: string; rootPub: string; rotations: string } {
  const dir = path.join(path.resolve(dataDir), 'keys');
  return { cert: path.join(dir, 'software-signing.cert'), rootPub: path.join(dir, 'root.pub'), rotations: path.join(dir, 'root-rotations.json') };
}

/** Makes a root key pair: `<dir>/root.key` (PKCS #8 PEM, 0600) and `<dir>/root.pub` (SPKI PEM). CONFLICT if one is there. */
export async function generateRootKey(dir: string): Promise<{ keyId: string; keyFile: string; publicFile: string }> {
  const keyFile = path.join(path.resolve(dir), 'root.key');
  const publicFile = path.join(path.resolve(dir), 'root.pub');
  if (await exists(keyFile)) throw new UpdraftError('CONFLICT', `a root key already exists (${keyFile}); devices trust it, and a new one would be trusted by none`);
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  await mkdir(path.dirname(keyFile), { recursive: true, mode: 0o700 });
  await writeFileAtomic(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), 0o600);
  // no root.key without its root.pub: one left alone (a full disk) made the next run refuse
  // ("a root key already exists") a key whose public half was nowhere
  await writeFileAtomic(publicFile, publicKey.export({ type: 'spki', format: 'pem' }).toString(), 0o644).catch(async (err: unknown) => {
    await rm(keyFile, { force: true });
    throw err;
  });
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
 * The rotation from `previousRoot` to `nextRoot` (`updraft keys root-rotate`), signed by both:
 * devices that trust the previous root take the next one from it.
 */
export function rotateRoot(previousRoot: KeyObject, nextRoot: KeyObject): RootRotation {
  const next = createPublicKey(nextRoot);
  const body = { previousRootKeyId: keyIdOf(createPublicKey(previousRoot)), rootKeyId: keyIdOf(next), publicKey: next.export({ type: 'spki', format: 'der' }).toString('base64') };
  if (body.previousRootKeyId === body.rootKeyId) throw new UpdraftError('BAD_REQUEST', 'the new root key is the old one');
  const bytes = rootRotationBytes(body);
  return { ...body, signature: sign(null, bytes, previousRoot).toString('base64'), newRootSignature: sign(null, bytes, nextRoot).toString('base64') };
}

function signedBy(bytes: Buffer, key: KeyObject, signature: string): boolean {
  try {
    return verify(null, bytes, key, Buffer.from(signature, 'base64'));
  } catch {
    return false;
  }
}

/** The new root of `r`, checked against its own signature; INTEGRITY otherwise. The previous root's signature is the caller's. */
function newRootOf(r: RootRotation): KeyObject {
  let key: KeyObject;
  try {
    key = createPublicKey({ key: Buffer.from(r.publicKey, 'base64'), format: 'der', type: 'spki' });
  } catch {
    throw new UpdraftError('INTEGRITY', `the rotation to root ${r.rootKeyId} holds no readable public key`);
  }
  if (key.asymmetricKeyType !== 'ed25519' || keyIdOf(key) !== r.rootKeyId) throw new UpdraftError('INTEGRITY', `the rotation's public key is not the Ed25519 root ${r.rootKeyId}`);
  if (!signedBy(rootRotationBytes(r), key, r.newRootSignature)) throw new UpdraftError('INTEGRITY', `the rotation to root ${r.rootKeyId} is not signed by that root`);
  return key;
}

/**
 * The root that `chain` leads to from `trusted`, up to the root `targetKeyId`: each step
 * from there on signed by the root before it and by its own. `trusted` itself when it is the
 * target. INTEGRITY with the reason when no verified path leads there (a step not signed by
 * the root it replaces, a gap, or a chain that does not pass through `trusted`).
 */
export function followRootChain(trusted: KeyObject, chain: readonly RootRotation[], targetKeyId: string): { root: KeyObject; steps: number } {
  let current = trusted;
  let currentId = keyIdOf(trusted);
  if (currentId === targetKeyId) return { root: trusted, steps: 0 };
  let i = chain.findIndex((r) => r.previousRootKeyId === currentId);
  if (i < 0) throw new UpdraftError('INTEGRITY', `key certificate signed by root ${targetKeyId}, but the trusted root is ${currentId} and no root rotation leads from it`);
  let steps = 0;
  for (; i < chain.length; i++) {
    const r = chain[i]!;
    if (r.previousRootKeyId !== currentId) throw new UpdraftError('INTEGRITY', `the root rotation to ${r.rootKeyId} replaces ${r.previousRootKeyId}, not ${currentId}`);
    if (!signedBy(rootRotationBytes(r), current, r.signature)) throw new UpdraftError('INTEGRITY', `the root rotation to ${r.rootKeyId} is not signed by root ${currentId}`);
    current = newRootOf(r);
    currentId = r.rootKeyId;
    steps++;
    if (currentId === targetKeyId) return { root: current, steps };
  }
  throw new UpdraftError('INTEGRITY', `key certificate signed by root ${targetKeyId}, but the root rotations from the trusted root lead to ${currentId}`);
}

/**
 * Checks what can be checked of a chain without its first root (an instance that takes the
 * chain with its first certificate): each step signed by its new root, and each after the
 * first by the root before it; the last must be `rootKeyId`. INTEGRITY otherwise.
 */
function checkChainShape(chain: readonly RootRotation[], rootKeyId: string): void {
  let previous: KeyObject | undefined;
  for (const r of chain) {
    if (previous && !signedBy(rootRotationBytes(r), previous, r.signature)) throw new UpdraftError('INTEGRITY', `the root rotation to ${r.rootKeyId} is not signed by root ${r.previousRootKeyId}`);
    previous = newRootOf(r);
  }
  const last = chain.at(-1);
  if (last && last.rootKeyId !== rootKeyId) throw new UpdraftError('INTEGRITY', `the root rotations lead to ${last.rootKeyId}, but the root is ${rootKeyId}`);
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
  /**
   * The rotations from the first root installed to this one, in order (empty when it was
   * never rotated): every command carries them, so that devices provisioned with an older
   * root follow them.
   */
  rootRotations: RootRotation[];
  /** The root this installation replaced (it took rotations to a new one), if it did. */
  replacedRootKeyId?: string;
}

/** The rotations recorded in `dataDir` (`keys/root-rotations.json`), none when absent; CONFIG when unreadable. */
export async function readRootRotations(dataDir: string): Promise<RootRotation[]> {
  const file = keyCertificatePaths(dataDir).rotations;
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new UpdraftError('CONFIG', `cannot read the root rotations ${file}: ${(err as Error).message}`);
  }
  try {
    return parseRootRotations(JSON.parse(text));
  } catch (err) {
    throw new UpdraftError('CONFIG', `${file}: ${(err as Error).message}`);
  }
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
  let rootPublicKeyPem = await readFile(p.rootPub, 'utf8').catch((err: Error) => {
    throw new UpdraftError('CONFIG', `${p.cert} is there but its root public key ${p.rootPub} cannot be read: ${err.message}`);
  });
  const recorded = await readRootRotations(dataDir);
  let certificate: KeyCertificate;
  let rootRotations: RootRotation[];
  try {
    certificate = parseKeyCertificate(JSON.parse(text));
    const installed = parsePublicKey(rootPublicKeyPem);
    // a rotation stopped between the certificate and the root's file: the chain leads from the old root to the new one
    const root = followRootChain(installed, recorded, certificate.rootKeyId).root;
    verifyKeyCertificate(certificate, root);
    rootRotations = chainUpTo(recorded, certificate.rootKeyId);
    checkChainShape(rootRotations, certificate.rootKeyId);
    if (root !== installed) {
      rootPublicKeyPem = root.export({ type: 'spki', format: 'pem' }).toString();
      await writeFileAtomic(p.rootPub, rootPublicKeyPem, 0o644);
    }
  } catch (err) {
    throw new UpdraftError('CONFIG', `${p.cert}: ${(err as Error).message}`);
  }
  if (certificate.keyId !== signingKey.keyId) {
    throw new UpdraftError('CONFIG', `${p.cert} certifies signing key ${certificate.keyId}, but the signing key is ${signingKey.keyId}: devices that trust the root would refuse every update. Certify the new key (updraft keys certify) and install it (updraft keys install-cert)`);
  }
  return { certificate, rootPublicKeyPem, rootRotations };
}

/**
 * Installs `certificate` into `dataDir` after checking it: signed by `rootPublicKeyPem` (or,
 * when omitted, by the root already installed), for the data directory's signing key, not
 * expired at `nowSeconds`, and with a serial above the installed one's (devices refuse a
 * lower one, and an equal one for another key could not tell the two apart). A different
 * root than the installed one is refused (devices trust the installed one) unless
 * `rootRotations` lead to it from the installed root: then the new root replaces it, and the
 * rotations are added to the recorded chain, which every command carries from then on.
 */
export async function installKeyCertificate(
  dataDir: string,
  signingKey: SoftwareSigningKey,
  certificate: KeyCertificate,
  options: { rootPublicKeyPem?: string; rootRotations?: readonly RootRotation[]; nowSeconds?: number } = {},
): Promise<InstalledKeyCertificate> {
  const p = keyCertificatePaths(dataDir);
  const installedRoot = await readFile(p.rootPub, 'utf8').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw new UpdraftError('CONFIG', `cannot read ${p.rootPub}: ${err.message}`);
  });
  const given = options.rootRotations ?? [];
  // the operator's input: refused as bad input (400, exit 2), not as an integrity fault of the server
  const asBadInput = <T>(check: () => T): T => {
    try {
      return check();
    } catch (err) {
      throw new UpdraftError('BAD_REQUEST', (err as Error).message);
    }
  };
  let root: KeyObject;
  let chain: RootRotation[];
  let rotated: string | undefined;
  if (installedRoot === undefined) {
    if (options.rootPublicKeyPem === undefined) throw new UpdraftError('BAD_REQUEST', 'no root public key is installed yet: give the root public key (--root-public) the first time');
    root = parsePublicKey(options.rootPublicKeyPem);
    // an instance taking a rotated root with its first certificate: the chain devices follow to it
    chain = [...given];
    asBadInput(() => checkChainShape(chain, keyIdOf(root)));
  } else {
    const installed = parsePublicKey(installedRoot);
    const installedId = keyIdOf(installed);
    const claimed = options.rootPublicKeyPem !== undefined ? keyIdOf(parsePublicKey(options.rootPublicKeyPem)) : undefined;
    chain = await readRootRotations(dataDir);
    if (certificate.rootKeyId === installedId || given.length === 0) {
      if (claimed !== undefined && claimed !== installedId) {
        throw new UpdraftError('CONFLICT', `the installed root is ${installedId}, not ${claimed}: devices trust the installed one, so a certificate of another root would be refused by all of them (to replace the root: updraft keys root-rotate, then install-cert --root-rotation)`);
      }
      root = installed;
    } else {
      const followed = asBadInput(() => followRootChain(installed, given, certificate.rootKeyId));
      if (claimed !== undefined && claimed !== certificate.rootKeyId) throw new UpdraftError('BAD_REQUEST', `the root public key given is ${claimed}, but the certificate and the rotations name root ${certificate.rootKeyId}`);
      const from = given.findIndex((r) => r.previousRootKeyId === installedId);
      chain = [...chain, ...given.slice(from, from + followed.steps)];
      if (chain.length > MAX_ROOT_ROTATIONS) throw new UpdraftError('BAD_REQUEST', `the root would have been rotated more than ${MAX_ROOT_ROTATIONS} times`);
      root = followed.root;
      rotated = installedId;
    }
  }
  asBadInput(() => verifyKeyCertificate(certificate, root));
  if (certificate.keyId !== signingKey.keyId) throw new UpdraftError('BAD_REQUEST', `the certificate is for signing key ${certificate.keyId}, but this data directory's signing key is ${signingKey.keyId}`);
  const now = options.nowSeconds ?? Math.floor(Date.now() / 1000);
  if (certificate.expiresAt <= now) throw new UpdraftError('BAD_REQUEST', `the certificate expired at ${new Date(certificate.expiresAt * 1000).toISOString()}`);
  const previousSerial = await readSerial(p.cert);
  if (previousSerial !== undefined && certificate.serial <= previousSerial) {
    throw new UpdraftError('CONFLICT', `the certificate's serial ${certificate.serial} is not above the installed one's (${previousSerial}); certify with --serial ${previousSerial + 1}`);
  }
  const rootPublicKeyPem = root.export({ type: 'spki', format: 'pem' }).toString();
  await mkdir(path.dirname(p.cert), { recursive: true, mode: 0o700 });
  // in this order: a stop between two writes leaves a chain ahead of the certificate's root
  // (loading cuts it back: `chainUpTo`), or a new certificate beside the old root's file,
  // which the recorded chain leads to (loading follows it, and mends the file)
  if (rotated !== undefined || (installedRoot === undefined && chain.length > 0)) await writeFileAtomic(p.rotations, JSON.stringify(chain, null, 2) + '\n', 0o644);
  if (installedRoot === undefined) await writeFileAtomic(p.rootPub, rootPublicKeyPem, 0o644);
  await writeFileAtomic(p.cert, JSON.stringify(certificate, null, 2) + '\n', 0o644);
  if (rotated !== undefined) await writeFileAtomic(p.rootPub, rootPublicKeyPem, 0o644);
  return { certificate, rootPublicKeyPem, rootRotations: chain, ...(rotated !== undefined ? { replacedRootKeyId: rotated } : {}) };
}

/**
 * `chain` up to the root `rootKeyId` (a chain recorded ahead of its certificate, by an
 * installation stopped halfway, is cut back); INTEGRITY when the chain does not pass it.
 */
function chainUpTo(chain: RootRotation[], rootKeyId: string): RootRotation[] {
  if (chain.length === 0 || chain[0]!.previousRootKeyId === rootKeyId) return [];
  const i = chain.findIndex((r) => r.rootKeyId === rootKeyId);
  if (i < 0) throw new UpdraftError('INTEGRITY', `the root rotations do not lead to root ${rootKeyId}`);
  return chain.slice(0, i + 1);
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
