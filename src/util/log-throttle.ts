/**
 * One log line per interval for a failure that repeats per request while a dependency is down
 * (a database or a bucket outage): the first is written at once, the others of the interval
 * are counted and the next line written says how many were left out (`suppressed`). A
 * PostgreSQL outage of 30 s wrote one ERROR per device request, 179 lines for 30 devices in
 * flight (QA); a fleet's would flood the log and hide the line that matters.
 */
import type { Logger } from './logger.ts';

/** Writes `warn` lines at most once per `intervalMs`, counting those left out. */
export class ThrottledLog {
  private readonly logger: Logger;
  private readonly intervalMs: number;
  private readonly now: () => number;
  private lastAt: number | undefined;
  private suppressed = 0;

  constructor(logger: Logger, intervalMs = 30_000, now: () => number = Date.now) {
    this.logger = logger;
    this.intervalMs = intervalMs;
    this.now = now;
  }

  /** Writes the line now, or counts it when one was written less than the interval ago. */
  warn(msg: string, fields: Record<string, unknown>): void {
    const at = this.now();
    if (this.lastAt !== undefined && at - this.lastAt < this.intervalMs) {
      this.suppressed++;
      return;
    }
    this.logger.warn(msg, this.suppressed > 0 ? { ...fields, suppressed: this.suppressed } : fields);
    this.lastAt = at;
    this.suppressed = 0;
  }
}
