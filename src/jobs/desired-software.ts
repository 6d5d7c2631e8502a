/**
 * Writing a device's desired software for a job (pattern step 3), and taking it back.
 * Everything goes through the replica, the same path as `state/{id}/update`, so the delta
 * (the update command, with a freshly signed URL) reaches the device online or later.
 * Every write here is conditional on the shadow version read: two instances can lead the
 * rollouts for a moment (deployment.md, the bound), and neither replaces unseen a command
 * the other wrote since its read (the engine fences what the version cannot, the execution
 * canceled meanwhile: RolloutEngine.fenceCommand).
 *
 * Taking a command back: the agent stops a download only when a newer command arrives (or
 * when a `get` shows nothing desired), so a cancel writes a "stay" command: the software the
 * device reports running, under the job id `<id>.cancel`. The agent calls off the download
 * (its report for the job is a FAILURE the tracker records as CANCELED) and finds the stay
 * command already installed. When the catalogue does not hold what the device runs, the
 * desired software is cleared instead: no delta says so, but the update's accepted answer
 * (`desired.software: null`) reaches the agent, which calls the download off on it. The
 * clear names the attempt it takes back (`softwareCanceled`, clearedFor), so that the agent
 * also ignores a late command of it, as it does one whose stay it heard.
 */
import type { ArtifactService } from '../artifacts/artifact-service.ts';
import type { Sender } from '../broker/message-bus.ts';
import { UpdraftError } from '../errors.ts';
import { isJsonObject, type JsonObject } from '../protocol/json.ts';
import { parseAgentJobId } from './agent-job-id.ts';
import { parseReportedSoftware, type DesiredSoftware, type ReportedSoftware } from '../protocol/software.ts';
import type { ShadowReplica } from '../shadow/replica.ts';
import type { ArtifactRecord, ShadowRecord, StateStore } from '../store/state-store.ts';

/** Desired state is written as the operator: only operators may set `desired.software`. */
export const ROLLOUT_SENDER: Sender = { kind: 'operator', id: 'rollouts' };

/** What the writer needs. */
export interface DesiredSoftwareDeps {
  store: StateStore;
  replica: ShadowReplica;
  artifacts: ArtifactService;
}

/** The desired software section for `artifact` under a device-side job id. */
export function softwareFor(artifact: ArtifactRecord, jobId: string): DesiredSoftware {
  return { name: artifact.name, version: artifact.version, sha256: artifact.sha256, size: artifact.size, jobId };
}

/** The version a write conditional on `shadow` (as read) names: 0 for a shadow that does not exist (or was deleted). */
export function versionOf(shadow: ShadowRecord | undefined): number {
  return shadow && !shadow.deleted ? shadow.version : 0;
}

/**
 * Writes the update command, only over the shadow version the caller read (`onVersion`,
 * versionOf): CONFLICT when anything wrote the shadow since (a report, or another instance's
 * command, stay or rollback, which an unconditional write would replace unseen: two leaders
 * overlap for a moment, deployment.md). The caller reads again and decides again.
 */
export async function sendCommand(deps: DesiredSoftwareDeps, deviceId: string, software: DesiredSoftware, shadow: ShadowRecord | undefined): Promise<void> {
  const state: { desired: JsonObject; reported?: JsonObject } = { desired: { software: { ...software } } };
  const superseded = supersededBy(shadow, software.jobId);
  if (superseded !== undefined) {
    state.desired.softwareSupersedes = superseded;
    state.reported = { softwareSupersedes: superseded };
  }
  await deps.replica.update({ deviceId, name: '' }, { state, version: versionOf(shadow) }, ROLLOUT_SENDER);
}

/** How many commands a command names as superseded (`softwareSupersedes`), the latest first. */
export const MAX_SUPERSEDED = 8;

/**
 * The commands a command for `agentJobId` written over `shadow` (as read) supersedes without
 * the device having answered them, to write as `softwareSupersedes` (protocol.md, "The software
 * section"): the command it replaces, unless the device reported finishing it (it heard it,
 * and what that one named), and those that one named, the latest first, at most
 * MAX_SUPERSEDED. `null` removes a list left from before; undefined: nothing to write (the
 * common case, so a plain command's write is as before). Without it, a job superseded before
 * the device heard its command (a second deploy while it was away) was started by a late
 * delta of it (one a server instance cut off from the broker held and sent after its
 * reconnect), after the newer job's build: the device ended on the superseded build. Like
 * `softwareCanceled`, written on both sides with one value, so it makes no delta, and read by
 * the agent from its `get` and the update's accepted answer.
 */
export function supersededBy(shadow: ShadowRecord | undefined, agentJobId: string): string[] | null | undefined {
  if (!shadow || shadow.deleted) return undefined;
  const desired = shadow.state.desired;
  const before = desired?.software;
  const beforeId = isJsonObject(before) && typeof before.jobId === 'string' ? before.jobId : undefined;
  const listed = desired?.softwareSupersedes;
  const carried = Array.isArray(listed) ? listed.filter((id): id is string => typeof id === 'string') : [];
  const heard = beforeId !== undefined && beforeId !== agentJobId && finished(parseReportedSoftware(shadow.state.reported?.software), beforeId);
  const ids = heard ? [] : [...(beforeId !== undefined ? [beforeId] : []), ...carried];
  const list = [...new Set(ids)].filter((id) => id !== agentJobId).slice(0, MAX_SUPERSEDED);
  if (list.length > 0) return list;
  return listed !== undefined || shadow.state.reported?.softwareSupersedes !== undefined ? null : undefined;
}

/**
 * True when the device reported SUCCESS or FAILURE of the command `agentJobId`: it never
 * applies a job id twice, so there is nothing left to stop, and a stay would stand pending
 * over a device that finished.
 */
export function finished(reported: ReportedSoftware | undefined, agentJobId: string): boolean {
  return reported?.jobId === agentJobId && (reported.status === 'SUCCESS' || reported.status === 'FAILURE');
}

async function catalogued(deps: DesiredSoftwareDeps, name: string | undefined, version: string | undefined): Promise<ArtifactRecord | undefined> {
  if (!name || !version) return undefined;
  return deps.store.getArtifact(name, version);
}

/**
 * Takes back the command `agentJobId` if it is still what the device is asked to run.
 * Resolves with what was written: 'stay' (a stay command), 'cleared', or 'none' (a newer
 * command is desired already, or nothing is). Written on the version read, so a command
 * written meanwhile (another job's, another instance's) stands: on a conflict it reads again.
 * A stay the shadow cannot hold (413: its document near its size limit, the stay a few bytes
 * longer than the command) clears the desired software instead, which the agent takes as a
 * cancel too: a command that cannot be taken back would be installed later.
 * 'finished' when the device reported finishing that very command (`finished`), and nothing
 * is written: checked on the version written on, so a report landing meanwhile is seen (the
 * write conflicts, read again). Every take-back goes through here: a timeout's, a cancel's,
 * the fence's, an owed one, the sweep of stranded commands. Until 2026-12-05 only the owed one
 * (retractOwed) checked, and the others wrote a stay over a device whose SUCCESS had just
 * reached its shadow. A caller that ends the execution itself must not end it as if the
 * device had not reported (the stop's QUEUED rows): its outcome is in the shadow, on its way
 * to the tracker.
 */
export async function retractCommand(deps: DesiredSoftwareDeps, deviceId: string, agentJobId: string): Promise<'stay' | 'cleared' | 'none' | 'finished'> {
  for (let attempt = 1; ; attempt++) {
    const { shadow, askedJobId } = await currentCommand(deps, deviceId);
    if (!shadow || askedJobId !== agentJobId) return 'none';
    const reported = parseReportedSoftware(shadow.state.reported?.software);
    if (finished(reported, agentJobId)) return 'finished';
    const onVersion = { version: shadow.version };
    try {
      const running = await catalogued(deps, reported?.name, reported?.version);
      if (running) {
        try {
          await deps.replica.update({ deviceId, name: '' }, { state: { desired: { software: { ...softwareFor(running, `${agentJobId}.cancel`) } } }, ...onVersion }, ROLLOUT_SENDER);
          return 'stay';
        } catch (err) {
          if (!(err instanceof UpdraftError && err.code === 'TOO_LARGE')) throw err;
        }
      }
      await deps.replica.update({ deviceId, name: '' }, { state: clearedFor(agentJobId), ...onVersion }, ROLLOUT_SENDER);
      return 'cleared';
    } catch (err) {
      if (err instanceof UpdraftError && err.code === 'CONFLICT' && attempt < 3) continue;
      throw err;
    }
  }
}

/**
 * The state a take-back that cannot write a stay writes: desired software cleared, and the
 * attempt taken back named (`softwareCanceled`, protocol.md "The software section"). No
 * message named the job before: a late delta of it (held by an instance cut off from the
 * broker) started it on an agent that never heard its command. The agent remembers the name
 * (`get`, the update's accepted answer) and ignores that job's commands. Written on both sides,
 * the same value: it makes no delta, so an agent that does not know the key is told nothing
 * new, and goes on calling its download off on `desired.software: null` as before.
 */
export function clearedFor(agentJobId: string): { desired: JsonObject; reported: JsonObject } {
  return { desired: { software: null, softwareCanceled: agentJobId }, reported: { softwareCanceled: agentJobId } };
}

/**
 * Puts `software` (a command) in place of the command `staleJobId` if the device is still
 * asked for that one; resolves with 'none' when the shadow holds anything else (the command
 * already, or what another instance wrote since: it stands). Written on the version read,
 * read again on a conflict. Used by the engine's fence: an older attempt's command written
 * over its retry's by a second leader (RolloutEngine.fenceCommand).
 */
export async function replaceCommand(deps: DesiredSoftwareDeps, deviceId: string, staleJobId: string, software: DesiredSoftware): Promise<'replaced' | 'none'> {
  for (let attempt = 1; ; attempt++) {
    const { shadow, askedJobId } = await currentCommand(deps, deviceId);
    if (!shadow || askedJobId !== staleJobId) return 'none';
    try {
      await sendCommand(deps, deviceId, software, shadow);
      return 'replaced';
    } catch (err) {
      if (err instanceof UpdraftError && err.code === 'CONFLICT' && attempt < 3) continue;
      throw err;
    }
  }
}

/**
 * Withdraws the stay command `stayJobId` (`<id>.cancel`) if the device is still asked for it:
 * the device reported it finished the job the stay was to call off (it had the build before
 * the cancel or timeout reached it: offline, its reports not yet in), so the stay no longer
 * says what it runs and would be pending for good. The desired software is cleared; written
 * only on the version read, so a command written meanwhile (another job) stands. Resolves
 * with true when it was withdrawn.
 */
export async function withdrawStay(deps: DesiredSoftwareDeps, deviceId: string, stayJobId: string): Promise<boolean> {
  const { shadow, askedJobId } = await currentCommand(deps, deviceId);
  if (!shadow || askedJobId !== stayJobId) return false;
  try {
    await deps.replica.update({ deviceId, name: '' }, { state: { desired: { software: null } }, version: shadow.version }, ROLLOUT_SENDER);
    return true;
  } catch (err) {
    if (err instanceof UpdraftError && err.code === 'CONFLICT') return false;
    throw err;
  }
}

/**
 * Automatic rollback of a failed device: its desired software goes back to what it ran
 * before the job (`previous`), if the catalogue holds that build, else it is cleared so the
 * failed update stops being asked for. Resolves with the version asked for (null: cleared),
 * or with the job the device was asked for since: a later job's command is never undone by
 * this job's rollback (it would take the device back from that job's build). Written on the
 * version read, so a command written meanwhile (another job's, another instance's) is seen:
 * on a conflict it reads again.
 */
export async function rollBack(deps: DesiredSoftwareDeps, deviceId: string, jobId: string, previous: JsonObject | undefined): Promise<{ to: string | null } | { supersededBy: string }> {
  const prev = await catalogued(deps, typeof previous?.name === 'string' ? previous.name : undefined, typeof previous?.version === 'string' ? previous.version : undefined);
  for (let attempt = 1; ; attempt++) {
    const { shadow, askedJobId } = await currentCommand(deps, deviceId);
    const asked = askedJobId === undefined ? undefined : parseAgentJobId(askedJobId);
    if (asked && asked.jobId !== jobId) return { supersededBy: asked.jobId };
    const software = prev ? { ...softwareFor(prev, `${jobId}.rollback`) } : null;
    try {
      await deps.replica.update({ deviceId, name: '' }, { state: { desired: { software } }, version: versionOf(shadow) }, ROLLOUT_SENDER);
      return { to: prev ? prev.version : null };
    } catch (err) {
      if (err instanceof UpdraftError && err.code === 'CONFLICT' && attempt < 3) continue;
      throw err;
    }
  }
}

/** The device's classic shadow, and the (agent) job id of the command its desired software holds, if any. */
async function currentCommand(deps: DesiredSoftwareDeps, deviceId: string): Promise<{ shadow: ShadowRecord | undefined; askedJobId: string | undefined }> {
  const shadow = await deps.store.getShadow(deviceId, '');
  const desired = shadow && !shadow.deleted ? shadow.state.desired?.software : undefined;
  return { shadow, askedJobId: isJsonObject(desired) && typeof desired.jobId === 'string' ? desired.jobId : undefined };
}
