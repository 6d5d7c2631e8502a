/**
 * What a build may be installed on: the device types it is made for, and the versions it may
 * be installed over (a stepping stone: `>=2.5.0` when 3.0.0 needs what 2.5.0 migrated). Set
 * when the artifact is added (`updraft artifact add --device-type rpi4 --requires '>=2.5.0'`),
 * carried in the signed manifest of every command for it, and checked by the agent against
 * the type it was given (`--device-type`) and the version it runs, before a byte is
 * downloaded: installing an image built for other hardware can brick a device, and no
 * rollout targeting mistake should be able to.
 */
import { UpdraftError } from '../errors.ts';
import { compareSemver, SEMVER, STORED_SEMVER } from './software.ts';
import { ID_RULE, idProblem } from './topics.ts';

/** A build's constraints; absent fields constrain nothing. */
export interface Compatibility {
  /** Device types the build is made for (ids: letters, digits, `_ . : -`). */
  deviceTypes?: string[];
  /** Versions it may be installed over: comparators joined by spaces, all of which must hold (`>=2.5.0 <3.0.0`). */
  requires?: string;
}

const COMPARATOR = /^(>=|<=|>|<|=)?(.+)$/;
const MAX_DEVICE_TYPES = 64;

/**
 * Checks and normalizes constraints given by an operator; BAD_REQUEST naming what is wrong.
 * `versions`: the rule for the versions in `requires`: SEMVER for new ones, STORED_SEMVER for
 * constraints read back (a signed manifest of a build added before SEMVER followed §9).
 */
export function parseCompatibility(input: { deviceTypes?: unknown; requires?: unknown }, versions: RegExp = SEMVER): Compatibility {
  const out: Compatibility = {};
  if (input.deviceTypes !== undefined) {
    const list = input.deviceTypes;
    if (!Array.isArray(list) || list.length === 0 || list.length > MAX_DEVICE_TYPES) throw new UpdraftError('BAD_REQUEST', `deviceTypes must list 1 to ${MAX_DEVICE_TYPES} device types`);
    for (const t of list) {
      const defect = typeof t === 'string' ? idProblem('device type', t) : `device type ${JSON.stringify(t)?.slice(0, 140)} must be a string of ${ID_RULE}`;
      if (defect !== undefined) throw new UpdraftError('BAD_REQUEST', defect);
    }
    out.deviceTypes = [...new Set(list as string[])].sort();
  }
  if (input.requires !== undefined) {
    if (typeof input.requires !== 'string') throw new UpdraftError('BAD_REQUEST', 'requires must be a version range like ">=2.5.0" or ">=2.5.0 <3.0.0"');
    const text = input.requires.trim().split(/\s+/).join(' ');
    comparators(text, versions); // throws when malformed
    out.requires = text;
  }
  return out;
}

/** `>=2.5.0 <3.0.0` → its comparators; BAD_REQUEST when one is not an operator and a semantic version. */
function comparators(range: string, versions: RegExp): { op: string; version: string }[] {
  const parts = range.split(/\s+/).filter((p) => p !== '');
  if (parts.length === 0 || parts.length > 8) throw new UpdraftError('BAD_REQUEST', `requires must hold 1 to 8 comparators like ">=2.5.0", got "${range.slice(0, 140)}"`);
  return parts.map((p) => {
    const m = COMPARATOR.exec(p)!;
    if (!versions.test(m[2]!)) throw new UpdraftError('BAD_REQUEST', `"${p.slice(0, 140)}" in requires is not an operator (>=, >, <=, <, =) and a semantic version`);
    return { op: m[1] ?? '=', version: m[2]! };
  });
}

/** Whether `version` satisfies every comparator of `range`. */
export function satisfies(version: string, range: string): boolean {
  if (!STORED_SEMVER.test(version)) return false;
  return comparators(range, STORED_SEMVER).every(({ op, version: v }) => {
    const c = compareSemver(version, v);
    return op === '>=' ? c >= 0 : op === '>' ? c > 0 : op === '<=' ? c <= 0 : op === '<' ? c < 0 : c === 0;
  });
}

/**
 * Why a build with these constraints may not be installed on a device of `deviceType` running
 * `running` (name and version), or undefined when it may. A device that does not know its type
 * cannot take a build made for given types; a device running another software name, or none
 * yet, satisfies no `requires`.
 */
export function incompatibility(c: Compatibility, device: { deviceType?: string; running?: { name?: string; version?: string }; name: string }): string | undefined {
  if (c.deviceTypes) {
    if (device.deviceType === undefined) return `the build is for device types ${c.deviceTypes.join(', ')}, and this device was given no type (--device-type)`;
    if (!c.deviceTypes.includes(device.deviceType)) return `the build is for device types ${c.deviceTypes.join(', ')}, not ${device.deviceType}`;
  }
  if (c.requires) {
    const r = device.running;
    if (!r?.version || (r.name !== undefined && r.name !== device.name)) return `the build installs only over ${device.name} ${c.requires}, and this device runs ${r?.version ? `${r.name ?? device.name} ${r.version}` : 'nothing known'}`;
    if (!satisfies(r.version, c.requires)) return `the build installs only over ${device.name} ${c.requires}, and this device runs ${r.version}: install a version in between first`;
  }
  return undefined;
}
