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
 * event loop between, in the background of the instance that leads. It writes only where a
 * device is asked for an attempt of a job that it has not finished (no SUCCESS or FAILURE of
 * that command reported) and whose execution is past it: ended without an outcome of it
 * (TIMED_OUT, CANCELED, REJECTED, REMOVED), or on a later attempt not sent. That command is
 * taken back as a timeout takes it back (a stay on what the device runs, retractCommand).
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import { asUpdraftError } from '../errors.ts';
import { isJsonObject } from '../protocol/json.ts';
import { parseReportedSoftware } from '../protocol/software.ts';
import type { ExecutionRecord } from '../store/state-store.ts';
import type { Logger } from '../util/logger.ts';
import { parseAgentJobId } from './agent-job-id.ts';
import { retractCommand, type DesiredSoftwareDeps } from './desired-software.ts';
import { isTerminal } from './execution-state.ts';

/** The shared setting that records the pass finished on this store (its value: when, ms since the epoch). */
export const STRANDED_SWEEP_KEY = 'jobs:stranded-commands-swept';

const PAGE = 500;

/**
 * Takes back, once per store, the commands earlier versions left desired after their
 * executions moved on (see above). Resolves with how many it took back; a device it could not
 * write, or a pass cut short (`stopping`: the server stops), leaves it to be done again at the
 * next start (a warning each).
 */
export async function sweepStrandedCommands(deps: DesiredSoftwareDeps & { logger: Logger }, now: number, stopping: () => boolean = () => false): Promise<number> {
  const { store } = deps;
  if ((await store.getSetting(STRANDED_SWEEP_KEY)) !== undefined) return 0;
  let taken = 0;
  let failed = 0;
  let after: string | undefined;
  do {
    const page = await store.listDevices({ limit: PAGE, ...(after ? { after } : {}) });
    for (const { deviceId } of page.items) {
      const shadow = await store.getShadow(deviceId, '');
      if (!shadow || shadow.deleted) continue;
      const desired = shadow.state.desired?.software;
      const askedId = isJsonObject(desired) ? desired.jobId : undefined;
      if (typeof askedId !== 'string') continue;
      const asked = parseAgentJobId(askedId);
      if (!asked || asked.control) continue;
      // the device finished that command: it never applies a job id twice
      const reported = parseReportedSoftware(shadow.state.reported?.software);
      if (reported?.jobId === askedId && (reported.status === 'SUCCESS' || reported.status === 'FAILURE')) continue;
      const e = await store.getExecution(asked.jobId, deviceId);
      if (!e || !isPast(e, asked.attempt)) continue;
      try {
        if ((await retractCommand(deps, deviceId, askedId)) !== 'none') taken++;
      } catch (err) {
        failed++;
        deps.logger.warn('command left by an earlier version not taken back; tried again at the next start', { deviceId, jobId: askedId, error: asUpdraftError(err).message });
      }
    }
    after = page.next;
    if (after) await nextTurn();
    if (stopping()) return taken;
  } while (after);
  if (taken > 0) deps.logger.warn('took back update commands an earlier version left on devices after their attempts timed out or were canceled', { devices: taken });
  if (failed === 0) await store.putSetting(STRANDED_SWEEP_KEY, String(now));
  return taken;
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
