/**
 * Start-time recovery (STYLE.md habit 7) of update commands that versions before 2026-12-05
 * left desired on devices after their executions had moved on: a timed-out attempt's command
 * not taken back (a crash between the TIMED_OUT and the retract, a retract refused and never
 * tried again: the TIMED_OUT row's deadline was cleared at once, so nothing revisits it), and,
 * before 4ccd518, every timed-out attempt whose retry was queued, left to the retry, which a
 * cancel, an abort or a refusal at dispatch ended unsent. A device offline across the upgrade
 * would still install such a build when it comes back, outside the job's control and after
 * its records say it timed out or was canceled. Today's engine keeps such state in the
 * deadline index (the TIMED_OUT mark, pending-retract.ts), which those rows are not in.
 *
 * The rows cannot be told by a look at the executions (a legacy TIMED_OUT row and one whose
 * command was taken back look the same), and the executions of every job ever run outnumber
 * the devices: the pass reads each device's classic shadow instead, once per store (the shared
 * setting `STRANDED_SWEEP_KEY` records that it finished), a page at a time with a turn of the
 * event loop between, in the background of the instance that leads. Where it stands is saved
 * after each page (`STRANDED_PROGRESS_KEY`): a pass cut short (a stop, a lead lost) goes on
 * from there at the next start, and a device it could not write for now, after a few tries
 * within the pass, is all the next start reads again. Without that, one device the replica
 * refused (a 429 at a busy moment) had every later start read the whole fleet again, for ever. It writes only where a
 * device is asked for an attempt of a job that it has not finished (no SUCCESS or FAILURE of
 * that command reported) and whose execution is past it: ended without an outcome of it
 * (TIMED_OUT, CANCELED, REJECTED, REMOVED), or on a later attempt not sent, or gone with its
 * job (a job deleted since: deleteJob does not see what such a row owes). That command is
 * taken back as a timeout takes it back (a stay on what the device runs, retractCommand).
 */
import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises';
import { asUpdraftError, type UpdraftError } from '../errors.ts';
import { isJsonObject } from '../protocol/json.ts';
import { parseReportedSoftware } from '../protocol/software.ts';
import type { ExecutionRecord } from '../store/state-store.ts';
import type { Logger } from '../util/logger.ts';
import { parseAgentJobId } from './agent-job-id.ts';
import { finished, retractCommand, type DesiredSoftwareDeps } from './desired-software.ts';
import { isTerminal } from './execution-state.ts';
import { isTransient } from './pending-retract.ts';

/** The shared setting that records the pass finished on this store (its value: when, ms since the epoch). */
export const STRANDED_SWEEP_KEY = 'jobs:stranded-commands-swept';

/** The shared setting that records where an unfinished pass stands (JSON, `SweepProgress`). */
export const STRANDED_PROGRESS_KEY = 'jobs:stranded-commands-progress';

/** Where an unfinished pass stands. */
interface SweepProgress {
  /** The registry's cursor: the devices before it were looked at. */
  after?: string;
  /** True once every registered device was listed. */
  listed?: boolean;
  /** Devices whose command could not be taken back for now: the next start tries them again. */
  left: string[];
}

/** How the pass is run. */
export interface SweepOptions {
  /** True once the server stops: the pass ends after the page it is on (its progress saved). */
  stopping?: () => boolean;
  /**
   * Waits before the given try (1, 2, ...) of the devices of a page that could not be written
   * for now; default 1 s, then 5 s, cut short by a stop.
   */
  pause?: (round: number) => Promise<void>;
  /** Devices read a page (default 500). */
  pageSize?: number;
}

const PAGE = 500;
/** Waits before each new try of a page's devices that failed for now (ms): two more tries. */
const RETRY_PAUSES_MS = [1_000, 5_000];
/**
 * Most devices an unfinished pass keeps to try again (the setting's size): past it the pass
 * stops where it is (the replica is in trouble) and the next start goes on from there.
 */
const MAX_LEFT = 1_000;

/**
 * Takes back, once per store, the commands earlier versions left desired after their
 * executions moved on (see above). Resolves with how many it took back. A device refused for
 * good (a 4xx but 429: a device deleted meanwhile) counts as done, with a warning; one that
 * fails for now (429, 5xx, a write conflicting three times, the database) is tried again
 * within the pass, twice, and then left to the next start, which reads only such devices and
 * the ones the pass did not reach (a stop).
 */
export async function sweepStrandedCommands(deps: DesiredSoftwareDeps & { logger: Logger }, now: number, options: SweepOptions = {}): Promise<number> {
  const { store, logger } = deps;
  const stopping = options.stopping ?? (() => false);
  const pause = options.pause ?? ((round: number) => waitUnlessStopping(RETRY_PAUSES_MS[round - 1] ?? 0, stopping));
  if ((await store.getSetting(STRANDED_SWEEP_KEY)) !== undefined) return 0;
  const saved = parseProgress(await store.getSetting(STRANDED_PROGRESS_KEY));
  let { after, listed = false } = saved;
  let taken = 0;
  const left: string[] = [];
  const sweep = async (ids: string[]) => {
    const r = await sweepDevices(deps, ids, pause, stopping);
    taken += r.taken;
    left.push(...r.left);
  };
  const save = () => store.putSetting(STRANDED_PROGRESS_KEY, JSON.stringify({ ...(after !== undefined ? { after } : {}), ...(listed ? { listed } : {}), left } satisfies SweepProgress));
  // first the devices an earlier pass could not write
  if (saved.left.length > 0) await sweep(saved.left);
  while (!listed && !stopping() && left.length <= MAX_LEFT) {
    const page = await store.listDevices({ limit: options.pageSize ?? PAGE, ...(after !== undefined ? { after } : {}) });
    await sweep(page.items.map((d) => d.deviceId));
    if (page.next === undefined) listed = true;
    else after = page.next;
    if (!listed || left.length > 0) await save();
    if (!listed) await nextTurn();
  }
  if (taken > 0) logger.warn('took back update commands an earlier version left on devices after their attempts timed out or were canceled', { devices: taken });
  if (!listed || left.length > 0) {
    await save();
    logger.warn('the look for commands left by an earlier version is not finished: the next start goes on from where it stopped', { devicesLeft: left.length, ...(listed ? {} : { after: after ?? '' }) });
    return taken;
  }
  await store.putSetting(STRANDED_SWEEP_KEY, String(now));
  await store.deleteSetting(STRANDED_PROGRESS_KEY);
  return taken;
}

/**
 * Looks at the devices and takes their stranded commands back; those that fail for now are
 * tried again after each pause (RETRY_PAUSES_MS). Resolves with how many were taken back and
 * the devices still failing. The devices' shadows, executions and jobs are read together
 * (strandedCommands), not one device after another: a round trip each on PostgreSQL.
 */
async function sweepDevices(deps: DesiredSoftwareDeps & { logger: Logger }, ids: string[], pause: (round: number) => Promise<void>, stopping: () => boolean): Promise<{ taken: number; left: string[] }> {
  let taken = 0;
  let failing = ids;
  for (let round = 0; failing.length > 0; round++) {
    if (round > 0) {
      if (round > RETRY_PAUSES_MS.length || stopping()) break;
      await pause(round);
    }
    const next: string[] = [];
    let lastError: UpdraftError | undefined;
    const failed = (deviceId: string, err: unknown) => {
      const error = asUpdraftError(err);
      if (isTransient(error) || error.code === 'CONFLICT') {
        next.push(deviceId);
        lastError = error;
      } else {
        // nothing to gain from trying again: counted as done
        deps.logger.warn('command left by an earlier version not taken back: the shadow refuses it', { deviceId, error: error.message });
      }
    };
    let stranded: Stranded[] = [];
    try {
      stranded = await strandedCommands(deps, failing);
    } catch (err) {
      // the reads of these devices failed together: each fails as its own read would have
      for (const deviceId of failing) failed(deviceId, err);
    }
    for (const { deviceId, askedId } of stranded) {
      try {
        if (await takeBack(deps, deviceId, askedId)) taken++;
      } catch (err) {
        failed(deviceId, err);
      }
    }
    if (lastError && round === RETRY_PAUSES_MS.length) deps.logger.warn('commands left by an earlier version not taken back for now; tried again at the next start', { devices: next.length, error: lastError.message });
    failing = next;
  }
  return { taken, left: failing };
}

/** A device asked for a command that is stranded (see above): the command's agent job id. */
interface Stranded {
  deviceId: string;
  askedId: string;
}

/**
 * The devices of `ids` whose command is stranded, in the order of `ids`. Their classic
 * shadows are read in one tick (the PostgreSQL store batches them into one query), then the
 * executions of the commands they are asked for with getExecutions, and the jobs of those
 * without one with getJobs: a few queries for a page of devices, whatever its size.
 */
async function strandedCommands(deps: DesiredSoftwareDeps, ids: string[]): Promise<Stranded[]> {
  const { store } = deps;
  const shadows = await Promise.all(ids.map((deviceId) => store.getShadow(deviceId, '')));
  const asked: (Stranded & { jobId: string; attempt: number })[] = [];
  shadows.forEach((shadow, n) => {
    if (!shadow || shadow.deleted) return;
    const desired = shadow.state.desired?.software;
    const askedId = isJsonObject(desired) ? desired.jobId : undefined;
    if (typeof askedId !== 'string') return;
    const parsed = parseAgentJobId(askedId);
    if (!parsed || parsed.control) return;
    // the device finished that command (before the reads below: retractCommand checks it again on the version it writes on)
    if (finished(parseReportedSoftware(shadow.state.reported?.software), askedId)) return;
    asked.push({ deviceId: ids[n]!, askedId, jobId: parsed.jobId, attempt: parsed.attempt });
  });
  if (asked.length === 0) return [];
  const executions = await store.getExecutions(asked.map(({ jobId, deviceId }) => ({ jobId, deviceId })));
  // a command without its execution: its job deleted since? (isDeletedJob)
  const unknownJobs = [...new Set(asked.filter((a, n) => !executions[n] && JOB_ID.test(a.jobId)).map((a) => a.jobId))];
  const jobs = unknownJobs.length > 0 ? await store.getJobs(unknownJobs, { omitSpec: true }) : new Map<string, unknown>();
  return asked
    .filter((a, n) => {
      const e = executions[n];
      return e ? isPast(e, a.attempt) : isDeletedJob(a.jobId, jobs);
    })
    .map(({ deviceId, askedId }) => ({ deviceId, askedId }));
}

/** Takes back the device's stranded command `askedId`; true when it wrote. */
async function takeBack(deps: DesiredSoftwareDeps, deviceId: string, askedId: string): Promise<boolean> {
  const outcome = await retractCommand(deps, deviceId, askedId);
  return outcome === 'stay' || outcome === 'cleared';
}

/** Job ids are UUIDs (JobService.create): a command whose id is not one was not written by a job. */
const JOB_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * True when `jobId` names a job that no longer exists (deleted, by hand or after
 * jobs.retentionDays). deleteJob counts the take-backs still owed from the deadline index, which
 * the rows this pass looks for are not in, so it deleted such a job with its command still
 * desired; nothing tracks that command any more, and the device would install it untracked.
 * A job being created has no command sent yet (its row is written before any dispatch).
 * `jobs`: the jobs read of such ids.
 */
function isDeletedJob(jobId: string, jobs: ReadonlyMap<string, unknown>): boolean {
  return JOB_ID.test(jobId) && !jobs.has(jobId);
}

/** The stored progress of an unfinished pass (none, or unreadable: from the start). */
function parseProgress(value: string | undefined): SweepProgress {
  if (value === undefined) return { left: [] };
  try {
    const p: unknown = JSON.parse(value);
    if (!isJsonObject(p)) return { left: [] };
    return {
      ...(typeof p.after === 'string' ? { after: p.after } : {}),
      ...(p.listed === true ? { listed: true } : {}),
      left: Array.isArray(p.left) ? p.left.filter((id): id is string => typeof id === 'string') : [],
    };
  } catch {
    return { left: [] };
  }
}

/** Waits `ms`, a tenth of a second at a time, ending early once `stopping()`. */
async function waitUnlessStopping(ms: number, stopping: () => boolean): Promise<void> {
  for (let waited = 0; waited < ms && !stopping(); waited += 100) await sleep(Math.min(100, ms - waited));
}

/**
 * True when the execution has moved past `attempt` without the device finishing it: that
 * attempt ended with no outcome of the device's (not SUCCEEDED or FAILED), or a later attempt
 * is the execution's and its command was not sent (a sent one would be what is desired).
 */
function isPast(e: ExecutionRecord, attempt: number): boolean {
  const current = e.attempt ?? 1;
  if (current === attempt) return isTerminal(e.status) && e.status !== 'SUCCEEDED' && e.status !== 'FAILED';
  return current > attempt && (e.dispatchedAt === undefined || isTerminal(e.status));
}
