/**
 * The agent's `state.reported.software` (pattern step 8). Reports always carry the whole
 * truth (what runs, which job, which phase), never a change, so that sending one twice is
 * harmless and a newer one may replace an older one still queued.
 */
import type { JsonObject } from '../protocol/json.ts';
import type { AgentStatus, InstallWait, SoftwareCommand } from '../protocol/software.ts';
import type { AgentStateData, FinishedJob, JobOutcome } from './agent-state.ts';
import type { InstalledSoftware } from './installer.ts';

/** Version reported when the installer knows of no installed software. */
export const UNKNOWN_VERSION = '0.0.0';

/** The job part of a report. */
export interface ReportStatus {
  /** The job the report is about; omitted when there was none (leaves the server's value alone). */
  jobId?: string;
  status: AgentStatus;
  /** 0..1 while DOWNLOADING. */
  progress?: number;
  /** Why the job failed (FAILURE only). */
  error?: string;
  /** VERIFYING only: the install gate put the install off. */
  waiting?: InstallWait;
  /** A SUCCESS repeated after the device moved on: the version the job installed. */
  jobVersion?: string;
}

/**
 * The reported software section. Leaves that are unknown or do not apply are sent as `null`,
 * which deletes them in the shadow, so no stale `progress` or `error` outlives its job.
 */
export function softwareReport(running: InstalledSoftware | undefined, s: ReportStatus): JsonObject {
  const out: JsonObject = {
    name: running?.name ?? null,
    version: running?.version ?? UNKNOWN_VERSION,
    sha256: running?.sha256 ?? null,
    size: running?.size ?? null,
    status: s.status,
    progress: s.progress ?? null,
    error: s.error ?? null,
    waiting: s.waiting ? { reason: s.waiting.reason, count: s.waiting.count, nextCheckInSeconds: s.waiting.nextCheckInSeconds } : null,
    // null deletes the leaf in the shadow: it holds only in the report that says it
    jobVersion: s.jobVersion ?? null,
  };
  if (s.jobId !== undefined) out.jobId = s.jobId;
  return out;
}

/** A full update request carrying `software` as reported state. */
export function reportRequest(software: JsonObject): JsonObject {
  return { state: { reported: { software } } };
}

/** SUCCESS repeats the desired leaves (so the server's delta empties); FAILURE tells what still runs. */
export function outcomeReport(running: InstalledSoftware | undefined, command: SoftwareCommand, outcome: JobOutcome): JsonObject {
  if (outcome.status === 'SUCCESS') {
    const { name, version, sha256, size } = command;
    return softwareReport({ name, version, sha256, size }, { jobId: command.jobId, status: 'SUCCESS' });
  }
  return softwareReport(running, { jobId: command.jobId, status: 'FAILURE', ...(outcome.error !== undefined ? { error: outcome.error } : {}) });
}

/** The report of a finished job's outcome as it stands now (what runs is the truth). */
export function finishedReport(running: InstalledSoftware | undefined, job: FinishedJob, finished: readonly FinishedJob[] = []): JsonObject {
  return softwareReport(running, { jobId: job.jobId, status: job.status, ...(job.error !== undefined ? { error: job.error } : {}), ...(movedOnFrom(running, job, finished) ? { jobVersion: job.installed } : {}) });
}

/**
 * Whether the device moved on from `job`'s SUCCESS to a later job's build, which runs now
 * (`finished`: the agent's list, oldest first): then what runs is the truth, and `jobVersion`
 * says what `job` installed, so that a server asking again for it (its database went back)
 * records the success, not "runs X, not Y". Only a later job's install: a device that runs
 * another build for any other reason (its bootloader fell back, a re-flash) reports what runs
 * alone, and the server's verdict on that is the truth.
 */
function movedOnFrom(running: InstalledSoftware | undefined, job: FinishedJob, finished: readonly FinishedJob[]): boolean {
  const now = running?.version ?? UNKNOWN_VERSION;
  if (job.status !== 'SUCCESS' || job.installed === undefined || job.installed === now) return false;
  const at = finished.findIndex((f) => f.jobId === job.jobId);
  return at >= 0 && finished.slice(at + 1).some((f) => f.status === 'SUCCESS' && f.installed === now);
}

/**
 * The whole truth for a (re)connect: the update in flight, else the last outcome, else IDLE.
 * `finishedJob` names the job whose outcome the report repeats, if any.
 */
export function stateReport(running: InstalledSoftware | undefined, state: AgentStateData, progress: number): { software: JsonObject; finishedJob?: string } {
  const inFlight = state.inFlight;
  if (inFlight?.phase === 'REPORTING') return { software: outcomeReport(running, inFlight.command, inFlight.outcome!) };
  if (inFlight) {
    const p = inFlight.phase === 'DOWNLOADING' ? { progress } : inFlight.waiting ? { waiting: inFlight.waiting } : {};
    return { software: softwareReport(running, { jobId: inFlight.jobId, status: inFlight.phase, ...p }) };
  }
  const last = state.finished[state.finished.length - 1];
  if (last) return { software: finishedReport(running, last), finishedJob: last.jobId };
  return { software: softwareReport(running, { status: 'IDLE' }) };
}
