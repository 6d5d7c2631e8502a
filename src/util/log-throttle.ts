/**
 * One log line per interval for a failure that repeats per request while a dependency is down
 * (a database or a bucket outage): the first is written at once, the others of the interval
 * are counted and the next line written says how many were left out (`suppressed`). A
 * PostgreSQL outage of 30 s wrote one ERROR per device request, 179 lines for 30 devices in
 * flight (QA); a fleet's would flood the log and hide the line that matters.
 *
 * The count does not wait for a later failure: once the interval has passed since the last
 * line, a timer writes it (`flush`). A single burst (a bucket gone for 5 s, 200 downloads cut,
 * then back) wrote one line and never said there were 199 more.
 */
import type { Logger } from './logger.ts';

/** Writes `warn` (or `error`) lines at most once per `intervalMs`, counting those left out. */
export class ThrottledLog {
  private readonly logger: Logger;
  private readonly intervalMs: number;
  private readonly now: () => number;
  private lastAt: number | undefined;
  private suppressed = 0;
  /** The message of the lines left out, for the line that counts them. */
  private msg = '';
  /** Set while lines are left out and their count is not written yet. */
  private timer: NodeJS.Timeout | undefined;
  /** Fields of the last line left out that the count's line repeats (`carry`). */
  private readonly carry: readonly string[];
  private carried: Record<string, unknown> = {};
  /** The level of the lines left out, for the line that counts them. */
  private level: 'info' | 'warn' | 'error' = 'warn';

  /** `carry`: fields of the last line left out that the count's line repeats (where refused calls came from). */
  constructor(logger: Logger, intervalMs = 30_000, now: () => number = Date.now, carry: readonly string[] = []) {
    this.logger = logger;
    this.intervalMs = intervalMs;
    this.now = now;
    this.carry = carry;
  }

  /** Writes the line now, or counts it when one was written less than the interval ago. */
  warn(msg: string, fields: Record<string, unknown>): void {
    this.line('warn', msg, fields);
  }

  /** As `warn`, at INFO: a refusal that repeats per device and is expected (a job's log budget spent), not a fault. */
  info(msg: string, fields: Record<string, unknown>): void {
    this.line('info', msg, fields);
  }

  /** As `warn`, at ERROR: a fault the operator must fix (a build's bytes missing), not an outage that passes. */
  error(msg: string, fields: Record<string, unknown>): void {
    this.line('error', msg, fields);
  }

  private line(level: 'info' | 'warn' | 'error', msg: string, fields: Record<string, unknown>): void {
    const at = this.now();
    if (this.lastAt !== undefined && at - this.lastAt < this.intervalMs) {
      this.suppressed++;
      this.msg = msg;
      this.level = level;
      for (const k of this.carry) if (k in fields) this.carried[k] = fields[k];
      this.schedule(this.lastAt + this.intervalMs - at);
      return;
    }
    this.logger[level](msg, this.suppressed > 0 ? { ...fields, suppressed: this.suppressed } : fields);
    this.lastAt = at;
    this.suppressed = 0;
    this.carried = {};
    this.cancel();
  }

  /**
   * Writes how many lines were left out (`<msg> suppressed=N`), when there were some and the
   * interval has passed since the last line; called by a timer set when a line is left out.
   * At the level of the lines it stands for (WARN, or ERROR): a log kept at `warn` would drop
   * an INFO, and with it the size of the outage.
   */
  flush(): void {
    if (this.suppressed === 0) return;
    const at = this.now();
    if (this.lastAt !== undefined && at - this.lastAt < this.intervalMs) {
      this.cancel();
      this.schedule(this.lastAt + this.intervalMs - at);
      return;
    }
    this.write(at);
  }

  /** Stops the timer (its part stops); the count of the lines left out, if any, is written now. */
  close(): void {
    this.cancel();
    if (this.suppressed > 0) this.write(this.now());
  }

  private write(at: number): void {
    this.logger[this.level](this.msg, { ...this.carried, suppressed: this.suppressed });
    this.carried = {};
    this.lastAt = at;
    this.suppressed = 0;
    this.cancel();
  }

  private schedule(ms: number): void {
    if (this.timer) return;
    // unref'd: a count still to write never holds a process open
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.flush();
    }, Math.max(ms, 0)).unref();
  }

  private cancel(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
