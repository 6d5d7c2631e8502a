/**
 * The key and CA facts the checks read (findings.ts KeyFacts), read in the server's process as
 * `GET /api/v1/keys` answers them (http/security-routes.ts): the signing key and its
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

/** Reads the facts now (the key ring and the dropped CA from the data directory: they change without a restart). */
export async function readKeyFacts(deps: KeyFactsDeps): Promise<KeyFacts> {
  const certificate = deps.manifests.certificate ?? null;
  const root = certificate ? { keyId: keyIdOf(parsePublicKey(await readFile(keyCertificatePaths(deps.dataDir).rootPub, 'utf8'))), rotations: [...deps.manifests.rootRotations] } : null;
  const dropped = await readFile(caPaths(deps.dataDir).dropped, 'utf8').catch(() => undefined);
  let droppedCaSubject: string | null = null;
  try {
    if (dropped !== undefined) droppedCaSubject = caSubject(dropped);
  } catch {
    // unreadable: GET /api/v1/keys says null for it too
  }
  return { signing: { keyId: deps.signingKey.keyId, certificate }, root, url: await listKeyRing(deps.dataDir), ca: deps.ca.certificate, previousCa: deps.ca.previousCertificate ?? null, droppedCaSubject };
}
