/**
 * The agent's log of the job in flight (`protocol/job-log.ts`): every line the job's logger
 * writes at info level and above (phases, download retries, refusals, the installer's and the
 * health check's output), kept within the protocol's bounds. A long job keeps its first lines
 * (how it started) and its latest ones (how it ended), counting those dropped in between. It
 * is persisted with the job's phases and within a second of each line, so a restart keeps
 * what came before, and sent once the job's FAILURE is acknowledged.
 */
import { JOB_LOG_HEAD_LINES, JOB_LOG_MAX_CHARS, JOB_LOG_MAX_LINES, JOB_LOG_MAX_LINE_CHARS } from '../protocol/job-log.ts';
import { createLogger, type Logger } from '../util/logger.ts';

/** What is persisted and sent. */
export interface JobLogData {
  lines: string[];
  dropped: number;
}


/** A bounded log of one job. */
export class JobLog {
  private readonly head: string[] = [];
  private readonly tail: string[] = [];
  private dropped = 0;
  private chars = 0;
  /** Writes into this log (info and above, in the text format, the time in UTC), its lines marked `component`. */
  readonly logger: Logger;

  /** `onLine` is told of each line the logger writes (not of the saved ones taken back). */
  constructor(component: string, saved?: JobLogData, onLine?: () => void) {
    this.logger = createLogger({
      level: 'info',
      component,
      write: (line) => {
        this.add(line);
        onLine?.();
      },
    });
    if (!saved) return;
    for (const line of saved.lines) this.add(line);
    this.dropped += saved.dropped;
  }

  /** Appends a line (cut to the longest allowed), dropping the oldest after the first ones when over the bounds. */
  add(text: string): void {
    const line = text.length > JOB_LOG_MAX_LINE_CHARS ? `${text.slice(0, JOB_LOG_MAX_LINE_CHARS - 1)}…` : text;
    (this.head.length < JOB_LOG_HEAD_LINES ? this.head : this.tail).push(line);
    this.chars += line.length;
    // the first lines fit the bounds by themselves (20 × 500 characters), so the tail always has what to drop
    while (this.head.length + this.tail.length > JOB_LOG_MAX_LINES || this.chars > JOB_LOG_MAX_CHARS) {
      this.chars -= this.tail.shift()!.length;
      this.dropped++;
    }
  }

  /** The lines kept, oldest first, and how many were dropped. */
  data(): JobLogData {
    return { lines: [...this.head, ...this.tail], dropped: this.dropped };
  }
}

/** A logger that writes every line to both `a` and `b` (children too). */
export function teeLogger(a: Logger, b: Logger): Logger {
  return {
    debug: (m, f) => (a.debug(m, f), b.debug(m, f)),
    info: (m, f) => (a.info(m, f), b.info(m, f)),
    warn: (m, f) => (a.warn(m, f), b.warn(m, f)),
    error: (m, f) => (a.error(m, f), b.error(m, f)),
    child: (c) => teeLogger(a.child(c), b.child(c)),
  };
}
