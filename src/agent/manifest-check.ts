/**
 * The agent's check of a signed update command (issue 5, DESIGN.md §5): before anything is
 * downloaded, the manifest must be signed by the key the device was provisioned with,
 * unexpired (freeze attacks), name exactly what the command names (mix-and-match), and not
 * lower the running version unless it says so itself (rollback attacks). Every refusal is an
 * INTEGRITY error whose message becomes the job's FAILURE reason.
 */
import { verify, type KeyObject } from 'node:crypto';
import { UpdraftError } from '../errors.ts';
import { manifestBytes, parseManifest } from '../protocol/manifest.ts';
import { compareSemver, type SoftwareCommand } from '../protocol/software.ts';
import { keyIdOf } from '../signing/signing-key.ts';
import type { InstalledSoftware } from './installer.ts';

/** How the agent treats signatures. */
export type SignaturePolicy = { publicKey: KeyObject } | { allowUnsigned: true };

function refuse(reason: string): never {
  throw new UpdraftError('INTEGRITY', `refused: ${reason}; nothing installed`);
}

/**
 * Throws INTEGRITY with the reason unless `command` may be installed over `running` at
 * `nowSeconds`. With `allowUnsigned` only the version rule applies to unsigned commands;
 * signed ones are still checked as far as possible (expiry, fields, downgrade).
 */
export function checkCommand(command: SoftwareCommand, policy: SignaturePolicy, running: InstalledSoftware | undefined, nowSeconds: number): void {
  const key = 'publicKey' in policy ? policy.publicKey : undefined;
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
      if (m.keyId !== keyIdOf(key)) refuse(`manifest signed with key ${m.keyId}, but this device trusts key ${keyIdOf(key)}`);
      let ok = false;
      try {
        ok = verify(null, manifestBytes(m), key, Buffer.from(command.signature, 'base64'));
      } catch {
        ok = false;
      }
      if (!ok) refuse('bad manifest signature');
    }
    if (m.expiresAt < nowSeconds) refuse(`manifest expired at ${new Date(m.expiresAt * 1000).toISOString()}`);
    for (const f of ['name', 'version', 'sha256', 'size', 'jobId'] as const) {
      if (m[f] !== command[f]) refuse(`manifest ${f} ${JSON.stringify(m[f])} differs from the command's ${JSON.stringify(command[f])}`);
    }
    allowDowngrade = m.allowDowngrade === true;
  }
  if (running && running.version && (running.name === undefined || running.name === command.name) && compareSemver(command.version, running.version) < 0 && !allowDowngrade) {
    refuse(`version ${command.version} is lower than the running ${running.version} and the manifest does not allow a downgrade`);
  }
}
