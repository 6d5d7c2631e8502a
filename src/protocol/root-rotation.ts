/**
 * The replacement of the offline root key, in band (TUF's root rotation, reduced to one key
 * per root): the root that devices trust signs the next root's public key, and the next root
 * signs the same statement too, proving that whoever made the rotation holds it (a mistyped
 * or foreign public key cannot be rotated to). Every update command of a server whose root
 * was rotated carries the chain of rotations from the first root on; a device walks it from
 * the root it trusts to the root of the command's key certificate, and trusts the last one
 * from then on, refusing certificates of the roots before it.
 *
 * Both roots sign the canonical bytes (`rootRotationBytes`), so field order in transit does
 * not matter.
 */
import { UpdraftError } from '../errors.ts';
import { isJsonObject } from './json.ts';

/** One step of the root chain (a type, not an interface, so that it is a JSON object). */
export type RootRotation = {
  /** Id of the root it replaces (`keyIdOf` its public key): the one that signs `signature`. */
  previousRootKeyId: string;
  /** Id of the new root. */
  rootKeyId: string;
  /** The new root's Ed25519 public key: base64 of its SPKI DER form. */
  publicKey: string;
  /** Base64 Ed25519 signature of the previous root over `rootRotationBytes`. */
  signature: string;
  /** Base64 Ed25519 signature of the new root over the same bytes. */
  newRootSignature: string;
};

/** The canonical signed form: a fixed header and each field on its own line. */
export function rootRotationBytes(r: Pick<RootRotation, 'previousRootKeyId' | 'rootKeyId' | 'publicKey'>): Buffer {
  return Buffer.from(['updraft-root-rotation-v1', r.previousRootKeyId, r.rootKeyId, r.publicKey].join('\n'), 'utf8');
}

/** How many rotations a chain may hold: a root replaced every year would take a century to fill it. */
export const MAX_ROOT_ROTATIONS = 100;

const KEY_ID = /^[0-9a-f]{16}$/;
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

/** Validates a rotation (from a command, a file or the API); BAD_REQUEST naming the field. */
export function parseRootRotation(value: unknown, where = 'rootRotation'): RootRotation {
  if (!isJsonObject(value)) throw new UpdraftError('BAD_REQUEST', `${where} must be an object`);
  const str = (k: string, pattern: RegExp, what: string) => {
    const v = value[k];
    if (typeof v !== 'string' || v.length > 200 || !pattern.test(v)) throw new UpdraftError('BAD_REQUEST', `${where}.${k} must be ${what}`);
    return v;
  };
  const r: RootRotation = {
    previousRootKeyId: str('previousRootKeyId', KEY_ID, '16 hex digits'),
    rootKeyId: str('rootKeyId', KEY_ID, '16 hex digits'),
    publicKey: str('publicKey', BASE64, 'base64'),
    signature: str('signature', BASE64, 'base64'),
    newRootSignature: str('newRootSignature', BASE64, 'base64'),
  };
  if (r.previousRootKeyId === r.rootKeyId) throw new UpdraftError('BAD_REQUEST', `${where} rotates root ${r.rootKeyId} to itself`);
  return r;
}

/** Validates a chain of rotations, in order; BAD_REQUEST naming the step. */
export function parseRootRotations(value: unknown, where = 'rootRotations'): RootRotation[] {
  if (!Array.isArray(value)) throw new UpdraftError('BAD_REQUEST', `${where} must be an array`);
  if (value.length > MAX_ROOT_ROTATIONS) throw new UpdraftError('BAD_REQUEST', `${where} holds ${value.length} rotations, more than ${MAX_ROOT_ROTATIONS}`);
  const chain = value.map((r, i) => parseRootRotation(r, `${where}[${i}]`));
  for (let i = 1; i < chain.length; i++) {
    if (chain[i]!.previousRootKeyId !== chain[i - 1]!.rootKeyId) throw new UpdraftError('BAD_REQUEST', `${where}[${i}] replaces root ${chain[i]!.previousRootKeyId}, but the step before it leads to ${chain[i - 1]!.rootKeyId}`);
  }
  return chain;
}
