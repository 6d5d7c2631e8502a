/**
 * The certificate of a software signing key: an offline root key vouches for the online
 * signing key that signs manifests (TUF's root and targets roles, reduced to one delegation).
 * A device provisioned with the root's public key learns each signing key from the
 * certificate that travels with every update command, so the signing key can be replaced
 * without touching a device. The serial only grows: a device refuses a certificate older
 * than the newest it has seen, so a replaced key (leaked, say) stops being trusted by every
 * device that has taken one command since. The expiry bounds how long a leaked key is
 * trusted by a device that has not.
 *
 * The root signs the canonical bytes of the certificate (`keyCertificateBytes`), so field
 * order in transit does not matter.
 */
import { UpdraftError } from '../errors.ts';
import { isJsonObject } from './json.ts';

/** What the root vouches for (a type, not an interface, so that it is a JSON object). */
export type KeyCertificate = {
  /** Id of the root key that signed it (`keyIdOf` its public key). */
  rootKeyId: string;
  /** Id of the certified signing key: the `keyId` of the manifests it signs. */
  keyId: string;
  /** The certified Ed25519 public key: base64 of its SPKI DER form. */
  publicKey: string;
  /** Grows with every new certificate; a device refuses one lower than the highest it has seen. */
  serial: number;
  /** Seconds since the epoch after which devices refuse it. */
  expiresAt: number;
  /** Base64 Ed25519 signature of the root over `keyCertificateBytes`. */
  signature: string;
};

/** The canonical signed form: a fixed header and each field on its own line. */
export function keyCertificateBytes(c: Omit<KeyCertificate, 'signature'>): Buffer {
  return Buffer.from(['updraft-key-certificate-v1', c.rootKeyId, c.keyId, c.publicKey, String(c.serial), String(c.expiresAt)].join('\n'), 'utf8');
}

/** Validates a certificate (from a command or a file); BAD_REQUEST naming the field. */
export function parseKeyCertificate(value: unknown, where = 'keyCertificate'): KeyCertificate {
  if (!isJsonObject(value)) throw new UpdraftError('BAD_REQUEST', `${where} must be an object`);
  const str = (k: string, pattern: RegExp, what: string) => {
    const v = value[k];
    if (typeof v !== 'string' || !pattern.test(v)) throw new UpdraftError('BAD_REQUEST', `${where}.${k} must be ${what}`);
    return v;
  };
  const int = (k: string, min: number) => {
    const v = value[k];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) throw new UpdraftError('BAD_REQUEST', `${where}.${k} must be an integer of at least ${min}`);
    return v;
  };
  const KEY_ID = /^[0-9a-f]{16}$/;
  const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;
  return {
    rootKeyId: str('rootKeyId', KEY_ID, '16 hex digits'),
    keyId: str('keyId', KEY_ID, '16 hex digits'),
    publicKey: str('publicKey', BASE64, 'base64'),
    serial: int('serial', 1),
    expiresAt: int('expiresAt', 0),
    signature: str('signature', BASE64, 'base64'),
  };
}
