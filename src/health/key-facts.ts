/**
 * The key and CA facts the checks read (findings.ts KeyFacts), read in the server's process as
 * `GET /api/v1/keys` answers them (http/security-routes.ts, which reads the root and the
 * dropped CA with this file's rootKey and droppedCaSubject): the signing key and its
 * certificate, the root's key id and rotations, the URL key ring, the CA, a rollover's previous
 * CA and the subject of the CA `ca drop-previous` removed.
 */
import { readFile } from 'node:fs/promises';
import { listKeyRing } from '../artifacts/key-ring.ts';
import { caPaths, type CertificateAuthority } from '../pki/certificate-authority.ts';
import { caSubject } from '../protocol/certificate-issuer.ts';
import type { ManifestSigner } from '../signing/manifest-signer.ts';
import { keyCertificatePaths } from '../signing/root-key.ts';
import { keyIdOf, parsePublicKey, type SoftwareSigningKey } from '../signing/signing-key.ts';
import type { KeyFacts } from './findings.ts';

/** What the facts are read from. */
export interface KeyFactsDeps {
  dataDir: string;
  signingKey: SoftwareSigningKey;
  manifests: ManifestSigner;
  ca: CertificateAuthority;
}

/** The installed root's public key, as devices are provisioned with it (`GET /api/v1/keys` and the facts). */
export async function rootKey(dataDir: string): Promise<{ keyId: string; publicKey: string }> {
  const pem = await readFile(keyCertificatePaths(dataDir).rootPub, 'utf8');
  return { keyId: keyIdOf(parsePublicKey(pem)), publicKey: pem };
}

/** The subject of the CA `ca drop-previous` removed (`pki/previous-ca.crt.dropped`), null without one (or an unreadable one: nothing reads it otherwise). */
export async function droppedCaSubject(dataDir: string): Promise<string | null> {
  const pem = await readFile(caPaths(dataDir).dropped, 'utf8').catch(() => undefined);
  if (pem === undefined) return null;
  try {
    return caSubject(pem);
  } catch {
    return null;
  }
}

/** Reads the facts now (the key ring and the dropped CA from the data directory: they change without a restart). */
export async function readKeyFacts(deps: KeyFactsDeps): Promise<KeyFacts> {
  const certificate = deps.manifests.certificate ?? null;
  const root = certificate ? { keyId: (await rootKey(deps.dataDir)).keyId, rotations: [...deps.manifests.rootRotations] } : null;
  return { signing: { keyId: deps.signingKey.keyId, certificate }, root, url: await listKeyRing(deps.dataDir), ca: deps.ca.certificate, previousCa: deps.ca.previousCertificate ?? null, droppedCaSubject: await droppedCaSubject(deps.dataDir) };
}
