/**
 * Per-device secrets: 32 random bytes, shown once at registration, stored only as SHA-256.
 * A fast hash is right here (unlike for human passwords): the secret has 256 bits of
 * entropy, so there is nothing to brute-force, and a slow KDF would make every CONNECT of a
 * 100,000-device fleet cost tens of milliseconds of CPU.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';

/** A new device secret. */
export function newDeviceSecret(): string {
  return `updr_dev_${randomBytes(32).toString('base64url')}`;
}

/** The stored form of a secret. */
export function hashDeviceSecret(secret: string | Buffer): string {
  return createHash('sha256').update(secret).digest('hex');
}

/** Constant-time check of a presented secret against the stored hash. */
export function deviceSecretMatches(presented: Buffer | undefined, storedHash: string | undefined): boolean {
  if (!presented || !storedHash) return false;
  const a = Buffer.from(hashDeviceSecret(presented), 'hex');
  const b = Buffer.from(storedHash, 'hex');
  return a.length === b.length && timingSafeEqual(a, b);
}
