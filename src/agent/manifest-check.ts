/**
 * The agent's check of a signed update command (issue 5, docs/design.md §5): before anything is
 * downloaded, the manifest must be signed by the key the device was provisioned with (or,
 * on a device provisioned with the offline root key, by the key of the command's key
 * certificate: signed by the root, unexpired, and not older than the newest this device has
 * seen), unexpired (freeze attacks), name exactly what the command names (mix-and-match),
 * and not lower the running version unless it says so itself (rollback attacks). Every
 * refusal is an INTEGRITY error whose message becomes the job's FAILURE reason.
 */
import { verify, type KeyObject } from 'node:crypto';
import { UpdraftError } from '../errors.ts';
import { incompatibility } from '../protocol/compatibility.ts';
import { parseKeyCertificate } from '../protocol/key-certificate.ts';
import { manifestBytes, parseManifest } from '../protocol/manifest.ts';
import { compareSemver, type SoftwareCommand } from '../protocol/software.ts';
import { parseRootRotations } from '../protocol/root-rotation.ts';
import { followRootChain, verifyKeyCertificate } from '../signing/root-key.ts';
import { keyIdOf } from '../signing/signing-key.ts';
import { rememberLru } from '../util/lru.ts';
import type { InstalledSoftware } from './installer.ts';

/** Trusts the offline root key: a command's key is the one its key certificate names. */
export interface RootTrust {
  rootKey: KeyObject;
  /** The highest certificate serial this device has seen: lower ones are refused (their keys were replaced)... */
  minSerial: number;
  /**
   * ...unless they certify this key, the one the highest certifies: an older certificate of
   * the key still in use (an instance not yet given the renewed one) trusts nothing the newer
   * one does not. Unknown for a state saved before it was kept: then every lower one is refused.
   */
  minSerialKeyId?: string;
  /** `keyIdOf(rootKey)`, once computed (set with `rootKey`). */
  rootKeyId?: string;
}

/**
 * Key certificates verified (all their fields) under a trusted root, and what they gave: the
 * same one comes with every command, so its signature (and the rotations leading to its root)
 * is checked once per process, not per command. Process-wide, not per device: what a
 * certificate's bytes and the rotations' signatures prove under one root is the same for
 * every device trusting that root, and `updraft sim` runs thousands of devices in a process
 * (each verified it again, one Ed25519 verify per device: 2026-12-07). What is each device's
 * own (its clock against the expiry, the highest serial it has seen) is checked per command.
 * A few entries: one certificate is current at a time, two across a renewal or rotation.
 */
const verifiedCertificates = new Map<string, { key: KeyObject; root?: KeyObject }>();
const VERIFIED_KEPT = 8;

/**
 * Manifest signatures verified in this process, by the signature and the manifest's signed
 * bytes, with the key that verified them: the same bytes and signature under the same key
 * verify the same way every time, so they are checked once per process, as the certificates
 * above are. A real device, one agent per process, verifies each command once either way (a
 * download retried checks its command again: that check is saved); `updraft sim` runs
 * thousands of devices in a process, each given the same signed manifest (it names the job,
 * not the device), and each verified it again: one Ed25519 verify per device, 16% of the
 * simulator's busy time in a profiled 5,000-device update (2026-12-07, about 190 µs per
 * update there), CPU the server shares on the bench's machine and never on a real fleet's.
 * What is each device's own (the key it trusts, the manifest's expiry against its clock, the
 * command's fields, compatibility, downgrade) is still checked per command: a hit needs the
 * very key this device trusts (`KeyObject.equals`), the very signature text and the very
 * bytes. A few entries: one manifest per job, a few jobs at a time.
 */
const verifiedManifests = new Map<string, KeyObject>();
const MANIFESTS_KEPT = 16;
const MAX_KEPT_SIGNATURE = 88;

/** How the agent treats signatures: one provisioned signing key, the root key, or none (insecure). */
export type SignaturePolicy = { publicKey: KeyObject } | RootTrust | { allowUnsigned: true };

/** What a check learned: the serial of the key certificate it accepted, if any (the agent remembers the highest). */
export interface CommandCheck {
  certificateSerial?: number;
  /** The key that certificate certifies. */
  certificateKeyId?: string;
  /** The root that certificate is signed by, when the command's root rotations led to it from the trusted one: the agent trusts it from then on. */
  rotatedRoot?: KeyObject;
}

function refuse(reason: string): never {
  throw new UpdraftError('INTEGRITY', `refused: ${reason}; nothing installed`);
}

/**
 * Throws INTEGRITY with the reason unless `command` may be installed over `running` at
 * `nowSeconds` (this device's clock). With `allowUnsigned` only the version rule applies to
 * unsigned commands; signed ones are still checked as far as possible (expiry, fields,
 * downgrade). `clockHint` follows an expiry's date in a refusal: what is known of this
 * device's clock (agent/clock-offset.ts). The manifest's compatibility (device types, the
 * versions it installs over) is checked against `deviceType` and `running`.
 */
export function checkCommand(command: SoftwareCommand, policy: SignaturePolicy, running: InstalledSoftware | undefined, nowSeconds: number, clockHint = '', deviceType?: string): CommandCheck {
  const result: CommandCheck = {};
  let key = 'publicKey' in policy ? policy.publicKey : undefined;
  let keyId: string | undefined;
  if ('rootKey' in policy) {
    const certified = certifiedKey(command, policy, nowSeconds, clockHint);
    key = certified.key;
    keyId = certified.keyId;
    result.certificateSerial = certified.serial;
    result.certificateKeyId = certified.keyId;
    if (certified.rotatedRoot) result.rotatedRoot = certified.rotatedRoot;
  }
  let allowDowngrade = false;
  if (command.manifest === undefined || command.signature === undefined) {
    if (key) refuse('the update command is not signed (no manifest or signature)');
  } else {
    let m;
    try {
      m = parseManifest(command.manifest);
    } catch (err) {
      refuse(`malformed manifest: ${(err as Error).message}`);
    }
    if (key) {
      keyId ??= keyIdOf(key);
      if (m.keyId !== keyId) refuse(`manifest signed with key ${m.keyId}, but this device trusts key ${keyId}`);
      const bytes = manifestBytes(m);
      const whole = `${command.signature} ${bytes.toString('utf8')}`;
      const verifiedWith = verifiedManifests.get(whole);
      if (verifiedWith === undefined || (verifiedWith !== key && !verifiedWith.equals(key))) {
        let ok = false;
        try {
          ok = verify(null, bytes, key, Buffer.from(command.signature, 'base64'));
        } catch {
          ok = false;
        }
        if (!ok) refuse('bad manifest signature');
        // an Ed25519 signature is 88 base64 characters; Buffer's decoding stops at the padding
        // and skips what is no base64, so a longer text may verify too: not kept (a command
        // padded so would hold its text here after its check; review of bba2cd7)
        if (command.signature.length <= MAX_KEPT_SIGNATURE) rememberLru(verifiedManifests, whole, key, MANIFESTS_KEPT);
      }
    }
    if (m.expiresAt < nowSeconds) refuse(`manifest expired at ${new Date(m.expiresAt * 1000).toISOString()}${clockHint}`);
    for (const f of ['name', 'version', 'sha256', 'size', 'jobId'] as const) {
      if (m[f] !== command[f]) refuse(`manifest ${f} ${JSON.stringify(m[f])} differs from the command's ${JSON.stringify(command[f])}`);
    }
    allowDowngrade = m.allowDowngrade === true;
    const wrong = incompatibility({ ...(m.deviceTypes ? { deviceTypes: m.deviceTypes } : {}), ...(m.requires !== undefined ? { requires: m.requires } : {}) }, { ...(deviceType !== undefined ? { deviceType } : {}), ...(running ? { running } : {}), name: command.name });
    if (wrong) refuse(`not compatible: ${wrong}`);
  }
  if (running && running.version && (running.name === undefined || running.name === command.name) && compareSemver(command.version, running.version) < 0 && !allowDowngrade) {
    refuse(`version ${command.version} is lower than the running ${running.version} and the manifest does not allow a downgrade`);
  }
  return result;
}

/**
 * The signing key the command's certificate vouches for under `trust`, and the certificate's
 * serial; refuses otherwise. A certificate of another root than the trusted one is accepted
 * when the command's root rotations lead to that root from the trusted one
 * (`followRootChain`): then `rotatedRoot` is that root.
 */
function certifiedKey(command: SoftwareCommand, trust: RootTrust, nowSeconds: number, clockHint: string): { key: KeyObject; keyId: string; serial: number; rotatedRoot?: KeyObject } {
  if (command.keyCertificate === undefined) refuse(`the update command carries no key certificate, and this device trusts root key ${keyIdOf(trust.rootKey)} only`);
  let cert;
  try {
    cert = parseKeyCertificate(command.keyCertificate);
  } catch (err) {
    refuse(`malformed key certificate: ${(err as Error).message}`);
  }
  let key: KeyObject;
  let rotatedRoot: KeyObject | undefined;
  const trustedId = (trust.rootKeyId ??= keyIdOf(trust.rootKey));
  // every field, not the signature alone: a copy with a raised serial or a later expiry must be
  // checked again, and fail; and under the root this device trusts now
  // and the rotations it came with when they lead to its root: a command whose chain is malformed
  // is refused, though the same certificate came with a good one before
  const via = cert.rootKeyId !== trustedId && command.rootRotations !== undefined ? ` ${JSON.stringify(command.rootRotations)}` : '';
  const whole = `${trustedId} ${cert.rootKeyId} ${cert.keyId} ${cert.publicKey} ${cert.serial} ${cert.expiresAt} ${cert.signature}${via}`;
  const known = verifiedCertificates.get(whole);
  if (known) {
    key = known.key;
    rotatedRoot = known.root;
  } else {
    let root = trust.rootKey;
    if (cert.rootKeyId !== trustedId && command.rootRotations !== undefined) {
      let chain;
      try {
        chain = parseRootRotations(command.rootRotations);
      } catch (err) {
        refuse(`malformed root rotations: ${(err as Error).message}`);
      }
      try {
        root = followRootChain(trust.rootKey, chain, cert.rootKeyId).root;
      } catch (err) {
        refuse((err as Error).message);
      }
      rotatedRoot = root;
    }
    try {
      key = verifyKeyCertificate(cert, root);
    } catch (err) {
      refuse((err as Error).message);
    }
    rememberLru(verifiedCertificates, whole, { key, ...(rotatedRoot ? { root: rotatedRoot } : {}) }, VERIFIED_KEPT);
  }
  if (cert.expiresAt < nowSeconds) refuse(`key certificate ${cert.serial} of key ${cert.keyId} expired at ${new Date(cert.expiresAt * 1000).toISOString()}${clockHint}`);
  if (cert.serial < trust.minSerial && cert.keyId !== trust.minSerialKeyId) refuse(`key certificate ${cert.serial} of key ${cert.keyId} is older than certificate ${trust.minSerial}, which this device has seen: that key was replaced`);
  // cert.keyId is the key's own id: verifyKeyCertificate checked keyIdOf(key) against it
  return { key, keyId: cert.keyId, serial: cert.serial, ...(rotatedRoot ? { rotatedRoot } : {}) };
}
