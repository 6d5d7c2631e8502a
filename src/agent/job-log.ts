/**
 * The agent's log of the job in flight (`protocol/job-log.ts`): every line the job's logger
 * writes at info level and above (phases, download retries, refusals, the installer's and the
 * health check's output), kept within the protocol's bounds. A long job keeps its first lines
 * (how it started) and its latest ones (how it ended), counting those dropped in between. It
 * is persisted with the job's phases and within a second of each line, so a restart keeps
 * what came before, and sent once the job's FAILURE is acknowledged.
 */
import { JOB_LOG_HEAD_LINES, JOB_LOG_MAX_CHARS, JOB_LOG_MAX_LINES, JOB_LOG_MAX_LINE_CHARS } from '../protocol/job-log.ts';
import { formatTextLine, type LogLevel, type Logger } from '../util/logger.ts';

/** What is persisted and sent. */
export interface JobLogData {
  lines: string[];
  dropped: number;
}

/**
 * A line as it was logged. Its text (the logger's text format, the time in UTC, cut to the
 * longest allowed) is made when first read, and kept: most jobs succeed, and the log of a
 * job that succeeds is read only where the state is written to a file. A simulator's
 * thousands of agents formatted every line of every job, 35 µs of its CPU per update
 * (profiled, docs/benchmarks-history.md, thirty-third session), for logs nobody read.
 */
interface Line {
  text?: string;
  at: number;
  level: Exclude<LogLevel, 'silent' | 'debug'>;
  component: string;
  msg: string;
  fields: Record<string, unknown> | undefined;
}

const cut = (text: string) => (text.length > JOB_LOG_MAX_LINE_CHARS ? `${text.slice(0, JOB_LOG_MAX_LINE_CHARS - 1)}…` : text);
const textOf = (l: Line): string => (l.text ??= cut(formatTextLine(new Date(l.at).toISOString(), l.level, l.component, l.msg, l.fields)));
const written = (text: string): Line => ({ text: cut(text), at: 0, level: 'info', component: '', msg: '', fields: undefined });

/**
 * The log as it was at one moment, its lines made when first read (`lines`, or the JSON the
 * state file is written with). It holds copies of the lists, so what follows does not change
 * it: a saved state stays as it was saved.
 */
class JobLogSnapshot implements JobLogData {
  private readonly head: readonly Line[];
  private readonly tail: readonly Line[];
  private readonly before: number;
  private made: JobLogData | undefined;

  constructor(head: readonly Line[], tail: readonly Line[], dropped: number) {
    this.head = head;
    this.tail = tail;
    this.before = dropped;
  }

  get lines(): string[] {
    return this.make().lines;
  }

  get dropped(): number {
    return this.make().dropped;
  }

  toJSON(): JobLogData {
    return this.make();
  }

  /**
   * The lines within the characters a log may hold: the latest lines after the first ones,
   * as many as fit, the older dropped. The same lines as dropping at each line added would
   * keep: adding only makes every run of latest lines longer, so a line once too much stays
   * too much.
   */
  private make(): JobLogData {
    if (this.made) return this.made;
    const head = this.head.map(textOf);
    const tail = this.tail.map(textOf);
    let chars = 0;
    for (const l of head) chars += l.length;
    for (const l of tail) chars += l.length;
    // the first lines fit the bounds by themselves (20 × 500 characters), so the tail always has what to drop
    let from = 0;
    while (chars > JOB_LOG_MAX_CHARS) chars -= tail[from++]!.length;
    this.made = { lines: [...head, ...tail.slice(from)], dropped: this.before + from };
    return this.made;
  }
}

/** A bounded log of one job. */
export class JobLog {
  private readonly head: Line[] = [];
  private readonly tail: Line[] = [];
  private dropped = 0;
  /** Writes into this log (info and above, in the text format, the time in UTC), its lines marked `component`. */
  readonly logger: Logger;

  /** `onLine` is told of each line the logger writes (not of the saved ones taken back). */
  constructor(component: string, saved?: JobLogData, onLine?: () => void) {
    const push = (line: Line) => {
      this.push(line);
      onLine?.();
    };
    this.logger = lineLogger(component, push);
    if (!saved) return;
    for (const line of saved.lines) this.add(line);
    this.dropped += saved.dropped;
  }

  /** Appends a line of text (cut to the longest allowed), dropping the oldest after the first ones when over the bounds. */
  add(text: string): void {
    this.push(written(text));
  }

  /** The lines kept, oldest first, and how many were dropped. */
  data(): JobLogData {
    const { lines, dropped } = this.snapshot();
    return { lines, dropped };
  }

  /** The same as `data()`, its lines made only when read (saved with each phase of the job, read if it fails). */
  snapshot(): JobLogData {
    return new JobLogSnapshot(this.head.slice(), this.tail.slice(), this.dropped);
  }

  private push(line: Line): void {
    (this.head.length < JOB_LOG_HEAD_LINES ? this.head : this.tail).push(line);
    // the characters are counted when the lines are made (JobLogSnapshot), the lines here
    if (this.head.length + this.tail.length > JOB_LOG_MAX_LINES) {
      this.tail.shift();
      this.dropped++;
    }
  }
}

/** A logger keeping what info and above log as lines of `push`, children marking theirs `component.child`. */
function lineLogger(component: string, push: (line: Line) => void): Logger {
  const at = (level: Line['level']) => (msg: string, fields?: Record<string, unknown>) => push({ at: Date.now(), level, component, msg, fields });
  return { debug: () => {}, info: at('info'), warn: at('warn'), error: at('error'), enabled: (level) => level !== 'debug', child: (c) => lineLogger(`${component}.${c}`, push) };
}

/** A logger that writes every line to both `a` and `b` (children too). */
export function teeLogger(a: Logger, b: Logger): Logger {
  return {
    debug: (m, f) => (a.debug(m, f), b.debug(m, f)),
    info: (m, f) => (a.info(m, f), b.info(m, f)),
    warn: (m, f) => (a.warn(m, f), b.warn(m, f)),
    error: (m, f) => (a.error(m, f), b.error(m, f)),
    enabled: (level) => a.enabled(level) || b.enabled(level),
    child: (c) => teeLogger(a.child(c), b.child(c)),
  };
}
