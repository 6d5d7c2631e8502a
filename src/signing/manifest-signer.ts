/**
 * Signs what the server vouches for (issue 5, signed software): the manifest of every update
 * command, built when the delta is issued (never stored, like the URL), and the record of
 * every artifact when it is added.
 */
import type { KeyCertificate } from '../protocol/key-certificate.ts';
import type { RootRotation } from '../protocol/root-rotation.ts';
import type { Compatibility } from '../protocol/compatibility.ts';
import type { DesiredSoftware } from '../protocol/software.ts';
import { manifestBytes, type SoftwareManifest } from '../protocol/manifest.ts';
import type { SoftwareSigningKey } from './signing-key.ts';

/** The signed part of an update command. */
export interface SignedManifest {
  manifest: SoftwareManifest;
  /** Base64 Ed25519 signature over `manifestBytes(manifest)`. */
  signature: string;
}

/** How an artifact's recorded signature stands against the current key (`ManifestSigner.checkArtifact`). */
export type ArtifactSignatureStatus = 'valid' | 'invalid' | 'previous_key';

/** The bytes an artifact signature covers. */
export function artifactBytes(keyId: string, a: { name: string; version: string; sha256: string; size: number }): Buffer {
  return Buffer.from(['updraft-artifact-v1', keyId, a.name, a.version, a.sha256, String(a.size)].join('\n'), 'utf8');
}

/** Signs manifests and artifact records with the operator's key. */
export class ManifestSigner {
  private readonly key: SoftwareSigningKey;
  /**
   * The root's certificate of the key (`updraft keys install-cert`), sent with every command
   * so that devices provisioned with the root learn the key from it; undefined without one.
   */
  certificate: KeyCertificate | undefined;
  /** The rotations from the first root to the certificate's (none when it was never rotated), sent with every command too. */
  rootRotations: readonly RootRotation[];

  constructor(deps: { key: SoftwareSigningKey; certificate?: KeyCertificate; rootRotations?: readonly RootRotation[] }) {
    this.key = deps.key;
    this.certificate = deps.certificate;
    this.rootRotations = deps.rootRotations ?? [];
  }

  /** Sends `installed` (a certificate and the root chain to its root) with every command from now on. */
  useCertificate(installed: { certificate: KeyCertificate; rootRotations: readonly RootRotation[] }): void {
    this.certificate = installed.certificate;
    this.rootRotations = installed.rootRotations;
  }

  /** The manifest of `software` for one command, valid until `expiresAt` (seconds since the epoch). */
  sign(software: DesiredSoftware, expiresAt: number, allowDowngrade = false, compatibility: Compatibility = {}): SignedManifest {
    const manifest: SoftwareManifest = {
      name: software.name,
      version: software.version,
      sha256: software.sha256,
      size: software.size,
      jobId: software.jobId,
      expiresAt,
      keyId: this.key.keyId,
      ...(allowDowngrade ? { allowDowngrade: true } : {}),
      ...(compatibility.deviceTypes ? { deviceTypes: compatibility.deviceTypes } : {}),
      ...(compatibility.requires !== undefined ? { requires: compatibility.requires } : {}),
    };
    return { manifest, signature: this.key.sign(manifestBytes(manifest)) };
  }

  /** The signature recorded with an artifact when it is added: `<keyId>:<base64 Ed25519>`. */
  signArtifact(a: { name: string; version: string; sha256: string; size: number }): string {
    return `${this.key.keyId}:${this.key.sign(artifactBytes(this.key.keyId, a))}`;
  }

  /**
   * How `signature` (as recorded by `signArtifact`) stands: `valid`, this key's over the
   * artifact; `previous_key`, another key's (one this key replaced: only this key's public
   * half is known here, so it is not checked); `invalid`, this key's id over other bytes.
   */
  checkArtifact(a: { name: string; version: string; sha256: string; size: number }, signature: string): ArtifactSignatureStatus {
    const [keyId, sig] = signature.split(':');
    if (keyId !== this.key.keyId) return 'previous_key';
    return sig !== undefined && this.key.verify(artifactBytes(keyId, a), sig) ? 'valid' : 'invalid';
  }
}
