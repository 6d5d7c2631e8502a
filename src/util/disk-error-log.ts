/**
 * Repeated full-disk errors in the log: the first in full, then a count per interval.
 *
 * A full disk refuses every write alike, and each refused request was two ERROR lines (the
 * store's `group commit failed`, then the API's or the replica's `request failed`), as many
 * as requests came: measured on a real server on a full 12 MiB tmpfs, 5 device updates wrote
 * 10 lines, a fleet's thousands a minute, burying whatever else the log had to say. The
 * logger passes every WARN and ERROR line through this: a line whose `error` says the disk
 * is full (ENOSPC, EDQUOT, SQLite's "database or disk is full", PostgreSQL's "No space left
 * on device") is written in full the first time; the same line again (the same level,
 * component and message, the same error but for its numbers) within the interval is
 * counted, and when the interval ends one line says how many there were (`suppressed=N`,
 * with the last one's fields), every interval while they go on. An interval without one ends
 * the run: the next is written in full again. Any other line, another error included, is
 * written as it comes.
 */

/** What an `error` field says when the disk is full: errno names and the messages of Node, SQLite and PostgreSQL. */
const DISK_FULL = /\bENOSPC\b|\bEDQUOT\b|no space left on device|disk quota exceeded|database or disk is full|\bSQLITE_FULL\b/i;

/** At most this many different lines are followed at once; others are written as they come (nothing is hidden for want of room). */
const MAX_RUNS = 1_000;

/** Writes one line (the logger's own writer, after its level check). */
export type LineWriter = (level: 'warn' | 'error', component: string | undefined, msg: string, fields: Record<string, unknown>) => void;

/** One repeated line: what was left out in its current interval. */
interface Run {
  level: 'warn' | 'error';
  component: string | undefined;
  msg: string;
  suppressed: number;
  /** The fields of the last one left out, for the count's line. */
  last: Record<string, unknown>;
  /** Ends the current interval (`tick`). */
  timer: NodeJS.Timeout;
}

/** The text of a field's value, as the logger writes it. */
function textOf(v: unknown): string {
  return typeof v === 'string' ? v : v instanceof Error ? v.message : '';
}

/** Throttles repeated full-disk lines; one per logger tree (the children share it). */
export class DiskErrorLog {
  private readonly runs = new Map<string, Run>();
  private readonly intervalMs: number;
  private readonly write: LineWriter;

  constructor(write: LineWriter, intervalMs = 30_000) {
    this.write = write;
    this.intervalMs = intervalMs;
  }

  /** True when the line is to be written now; false when it was counted, to be said when its interval ends. */
  pass(level: 'warn' | 'error', component: string | undefined, msg: string, fields: Record<string, unknown> | undefined): boolean {
    const error = textOf(fields?.error);
    if (!DISK_FULL.test(error)) return true;
    // numbers differ from one refusal to the next (`Commit of 3 writes`, sizes); the words do not
    const key = `${level}\u0000${component ?? ''}\u0000${msg}\u0000${error.replace(/\d+/g, '#')}`;
    const run = this.runs.get(key);
    if (run === undefined) {
      if (this.runs.size < MAX_RUNS) this.runs.set(key, { level, component, msg, suppressed: 0, last: {}, timer: this.schedule(key) });
      return true;
    }
    run.suppressed++;
    run.last = fields ?? {};
    return false;
  }

  /** Writes every count still pending and forgets the runs (the process stops). */
  flush(): void {
    for (const run of this.runs.values()) {
      clearTimeout(run.timer);
      if (run.suppressed > 0) this.write(run.level, run.component, run.msg, { ...run.last, suppressed: run.suppressed });
    }
    this.runs.clear();
  }

  // unref'd: a count still to write never holds a process open
  private schedule(key: string): NodeJS.Timeout {
    return setTimeout(() => this.tick(key), this.intervalMs).unref();
  }

  /** An interval ends: the count of the lines left out in it, and the next begins; one without any ends the run. */
  private tick(key: string): void {
    const run = this.runs.get(key);
    if (!run) return;
    if (run.suppressed === 0) {
      this.runs.delete(key);
      return;
    }
    this.write(run.level, run.component, run.msg, { ...run.last, suppressed: run.suppressed });
    run.suppressed = 0;
    run.last = {};
    run.timer = this.schedule(key);
  }
}
