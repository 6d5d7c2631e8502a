/**
 * A device's log of one failed job attempt (its deployment log): what the agent did from the
 * command to the outcome (phases, download retries, refusals, the installer's and health
 * check's output), sent once after the FAILURE is acknowledged, on `state/{id}/job-log` →
 * `.../accepted|rejected` (clientToken echoed). The last line of an installer's stderr is the
 * job's reason; the log is the story behind it, for whoever has to find out why a device
 * failed without a shell on it.
 *
 * Bounded on both sides: the agent keeps the first lines and the latest ones of a long job and
 * counts those it dropped in between; the server refuses a log over these limits. A success
 * sends no log.
 */
import { UpdraftError } from '../errors.ts';
import type { JsonObject } from './json.ts';

/** Lines the agent keeps from the start of a job, whatever follows: dropped lines were after these. */
export const JOB_LOG_HEAD_LINES = 20;
/** Most lines a log holds. */
export const JOB_LOG_MAX_LINES = 300;
/** Longest line, in characters; the agent cuts longer ones. */
export const JOB_LOG_MAX_LINE_CHARS = 500;
/** Most characters in all the lines together (16 KiB of ASCII). */
export const JOB_LOG_MAX_CHARS = 16_384;
/** Largest request taken: the lines with their JSON quoting, the job id and the clientToken. */
export const JOB_LOG_MAX_REQUEST_BYTES = 32_768;

/** What a device sends. */
export interface JobLogUpload {
  /** The job id of the command, as the device saw it (`<jobId>`, `<jobId>.<attempt>`, ...`.rollback`). */
  jobId: string;
  /** The log's lines, oldest first. */
  lines: string[];
  /** Lines the agent dropped between the first ones and the latest (a long job), 0 when none. */
  dropped: number;
}

/** Checks an upload's body; BAD_REQUEST or TOO_LARGE naming what is wrong. */
export function parseJobLogUpload(body: JsonObject): JobLogUpload {
  const { jobId, lines, dropped } = body;
  if (typeof jobId !== 'string' || jobId === '' || jobId.length > 200) throw new UpdraftError('BAD_REQUEST', 'jobId must be the job id of the command the log is about');
  if (!Array.isArray(lines)) throw new UpdraftError('BAD_REQUEST', 'lines must be an array of strings');
  if (lines.length > JOB_LOG_MAX_LINES) throw new UpdraftError('TOO_LARGE', `a job log holds at most ${JOB_LOG_MAX_LINES} lines, got ${lines.length}`);
  let chars = 0;
  for (const [i, line] of lines.entries()) {
    if (typeof line !== 'string') throw new UpdraftError('BAD_REQUEST', `lines[${i}] must be a string`);
    if (line.length > JOB_LOG_MAX_LINE_CHARS) throw new UpdraftError('TOO_LARGE', `lines[${i}] is longer than ${JOB_LOG_MAX_LINE_CHARS} characters`);
    chars += line.length;
  }
  if (chars > JOB_LOG_MAX_CHARS) throw new UpdraftError('TOO_LARGE', `a job log holds at most ${JOB_LOG_MAX_CHARS} characters, got ${chars}`);
  if (dropped !== undefined && (typeof dropped !== 'number' || !Number.isSafeInteger(dropped) || dropped < 0)) throw new UpdraftError('BAD_REQUEST', 'dropped must be a non-negative integer');
  return { jobId, lines: lines as string[], dropped: (dropped as number | undefined) ?? 0 };
}
