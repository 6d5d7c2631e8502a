/**
 * Whether the rollout engine sends a job's build to a device, by what the device reported:
 * not a lower version than it runs unless the job allows a downgrade, and not a build for
 * another device type or over another version (`protocol/compatibility.ts`). Such an
 * execution ends REJECTED, nothing sent. The dry run counts the same refusals.
 */
import { incompatibility } from '../protocol/compatibility.ts';
import { isJsonObject, type JsonObject } from '../protocol/json.ts';
import { STORED_SEMVER, compareSemver, parseReportedSoftware } from '../protocol/software.ts';
import type { ArtifactRecord } from '../store/state-store.ts';

/** Why the build is not sent to the device (REJECTED), with the version it runs; or undefined. */
export interface Refusal {
  kind: 'downgrade' | 'incompatible';
  error: string;
  /** The version the device reported, if it did. */
  version?: string;
}

/** The refusal of `artifact` for a device that reported `reportedState` (the shadow's `state.reported`; `reported`, its software, when the caller parsed it already), or undefined. */
export function refusalOf(artifact: ArtifactRecord, allowDowngrade: boolean, reportedState: JsonObject | undefined, reported = parseReportedSoftware(reportedState?.software)): Refusal | undefined {
  // downgrade protection: reported is the truth about what runs
  if (!allowDowngrade && reported && STORED_SEMVER.test(reported.version) && compareSemver(artifact.version, reported.version) < 0) {
    return { kind: 'downgrade', error: `downgrade refused: the device runs ${reported.version}, the job installs ${artifact.version}; create the job with allowDowngrade to allow it`, version: reported.version };
  }
  const c = artifact.compatibility;
  if (!c) return undefined;
  // the device type rule only when the device reported a type; one that did not decides itself
  const agent = reportedState?.agent;
  const deviceType = isJsonObject(agent) && typeof agent.deviceType === 'string' ? agent.deviceType : undefined;
  const rules = { ...(c.deviceTypes && deviceType !== undefined ? { deviceTypes: c.deviceTypes } : {}), ...(c.requires !== undefined && reported ? { requires: c.requires } : {}) };
  const reason = incompatibility(rules, { ...(deviceType !== undefined ? { deviceType } : {}), ...(reported ? { running: reported } : {}), name: artifact.name });
  return reason ? { kind: 'incompatible', error: `not compatible: ${reason.replace('this device', 'the device')}`, ...(reported ? { version: reported.version } : {}) } : undefined;
}
