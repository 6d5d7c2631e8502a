/**
 * The signed software manifest (docs/design.md §5, issue 5 "signed software"): what the server
 * vouches for when it sends an update command. Built when the delta is issued (like the
 * URL), signed with the operator's Ed25519 key, verified by the agent against the public key
 * it was provisioned with. The signature covers the canonical bytes of the manifest
 * (`manifestBytes`), so field order in transit does not matter.
 */
import { UpdraftError } from '../errors.ts';
import { parseCompatibility } from './compatibility.ts';
import { isJsonObject, unstorableChar } from './json.ts';
import { STORED_SEMVER } from './software.ts';

/** What the signature vouches for (a type, not an interface, so that it is a JSON object). */
export type SoftwareManifest = {
  /** Artifact name. */
  name: string;
  /** Semantic version of the build. */
  version: string;
  /** Lower-case hex SHA-256 of the artifact bytes. */
  sha256: string;
  /** Size in bytes. */
  size: number;
  /** The job this manifest was issued for. */
  jobId: string;
  /** Seconds since the epoch after which the agent refuses the manifest (freeze attacks). */
  expiresAt: number;
  /** True when the job may install a version lower than the one the device runs (rollback attacks otherwise). */
  allowDowngrade?: boolean;
  /** Id of the signing key (`keyId` of its public key: the first 16 hex digits of its SHA-256). */
  keyId: string;
  /** The device types the build is made for (`protocol/compatibility.ts`); absent: any. */
  deviceTypes?: string[];
  /** The versions it may be installed over (`>=2.5.0 <3.0.0`); absent: any. */
  requires?: string;
};

/**
 * The canonical signed form: `updraft-manifest-v1` and each field on its own line in a fixed
 * order. None of the fields can contain a newline (ids, versions and hashes are validated).
 */
export function manifestBytes(m: SoftwareManifest): Buffer {
  const lines = ['updraft-manifest-v1', m.keyId, m.name, m.version, m.sha256, String(m.size), m.jobId, String(m.expiresAt), m.allowDowngrade === true ? 'downgrade' : 'no-downgrade'];
  // added after the first release, only when present: a manifest without them signs the same
  // bytes as before, so older agents keep verifying it (one with them fails their check: closed)
  if (m.deviceTypes !== undefined) lines.push(`device-types:${m.deviceTypes.join(',')}`);
  if (m.requires !== undefined) lines.push(`requires:${m.requires}`);
  return Buffer.from(lines.join('\n'), 'utf8');
}

/** Validates a manifest taken from a command; BAD_REQUEST naming the field. */
export function parseManifest(value: unknown, where = 'manifest'): SoftwareManifest {
  if (!isJsonObject(value)) throw new UpdraftError('BAD_REQUEST', `${where} must be an object`);
  const str = (k: string) => {
    const v = value[k];
    if (typeof v !== 'string' || v.length === 0 || v.includes('\n')) throw new UpdraftError('BAD_REQUEST', `${where}.${k} must be a non-empty single-line string`);
    // the signature covers manifestBytes, UTF-8, where a lone surrogate is written as U+FFFD:
    // "job-\ud800" would carry the signature of "job-\ufffd" (review of bba2cd7). The server
    // issues neither it nor U+0000 (no store keeps them: json.ts), so both are refused here
    const bad = unstorableChar(v);
    if (bad !== undefined) throw new UpdraftError('BAD_REQUEST', `${where}.${k} holds ${bad}`);
    return v;
  };
  const int = (k: string) => {
    const v = value[k];
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new UpdraftError('BAD_REQUEST', `${where}.${k} must be a non-negative integer`);
    return v;
  };
  const m: SoftwareManifest = { name: str('name'), version: str('version'), sha256: str('sha256'), size: int('size'), jobId: str('jobId'), expiresAt: int('expiresAt'), keyId: str('keyId') };
  if (value.allowDowngrade !== undefined) {
    if (typeof value.allowDowngrade !== 'boolean') throw new UpdraftError('BAD_REQUEST', `${where}.allowDowngrade must be a boolean`);
    if (value.allowDowngrade) m.allowDowngrade = true;
  }
  if (value.deviceTypes !== undefined || value.requires !== undefined) {
    let c;
    try {
      // read back: a build added before SEMVER followed §9 may require `>=1.0.0-rc.01`
      c = parseCompatibility({ deviceTypes: value.deviceTypes, requires: value.requires }, STORED_SEMVER);
    } catch (err) {
      throw new UpdraftError('BAD_REQUEST', `${where}: ${(err as Error).message}`);
    }
    // exactly as signed: a list reordered in transit would not verify, rather than pass
    if (c.deviceTypes) m.deviceTypes = value.deviceTypes as string[];
    if (c.requires !== undefined) m.requires = value.requires as string;
  }
  return m;
}
