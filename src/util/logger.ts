/**
 * A small structured logger, passed to every part through its deps (no global logger).
 * Lines go to stderr so that CLI output on stdout stays machine-readable. Callers must not
 * pass secrets, tokens or signed URLs: use `redactUrl` for URLs.
 *
 * Two formats, one event per line either way:
 * - `text` (default): time, level, [component], message, then `key=value` fields; a value
 *   with a space, a quote, an `=` or a control character is written as a JSON string, so
 *   fields parse unambiguously (logfmt) and no value (an error message from a device, say)
 *   can start a line of its own;
 * - `json`: one JSON object per line, `{"time","level","component","msg",...fields}`, for
 *   log pipelines (Loki, Elasticsearch, CloudWatch) that index fields.
 */
import { DiskErrorLog } from './disk-error-log.ts';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';

/** How lines are written. */
export type LogFormat = 'text' | 'json';

/** Keys of a JSON line the logger sets itself; a field of the same name is written as `_<name>`. */
const RESERVED = new Set(['time', 'level', 'component', 'msg']);
/** What makes a text value need quoting: space, quote, equals sign, backslash, control characters, or nothing at all. */
const NEEDS_QUOTES = /^$|[\s"=\\\x00-\x1f\x7f]/;

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

/** The logging surface every part receives. */
export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  /** Whether a line at `level` is written (a caller can skip the work of one that would be dropped). */
  enabled(level: Exclude<LogLevel, 'silent'>): boolean;
  /** A logger whose lines carry `component`. */
  child(component: string): Logger;
  /**
   * Writes what is held back (the counts of repeated full-disk lines, disk-error-log.ts), for
   * a process about to exit: its timers are unref'd, and a count due later was lost (review).
   */
  flush?(): void;
}

/** A field's value in the text format: as it is when that is unambiguous, else a JSON string. */
function textValue(v: unknown): string {
  const text = typeof v === 'string' ? v : v instanceof Error ? v.message : (JSON.stringify(v) ?? String(v));
  return NEEDS_QUOTES.test(text) ? JSON.stringify(text) : text;
}

/** One event as a line of the text format: time, level, [component], message, then `key=value` fields. */
export function formatTextLine(time: string, level: Exclude<LogLevel, 'silent'>, component: string | undefined, msg: string, fields?: Record<string, unknown>): string {
  // no fields (none given, or {}): no trailing space after the message
  const extra = fields && Object.keys(fields).length > 0 ? ' ' + Object.entries(fields).map(([k, v]) => `${k}=${textValue(v)}`).join(' ') : '';
  // a message carrying text from elsewhere (an error's) stays on its line
  const oneLine = msg.includes('\n') || msg.includes('\r') ? msg.replace(/\r?\n|\r/g, '\\n') : msg;
  return `${time} ${level.toUpperCase().padEnd(5)} ${component ? `[${component}] ` : ''}${oneLine}${extra}`;
}

/**
 * Creates a logger writing one line per event to `write` (stderr by default). Repeated
 * full-disk WARN and ERROR lines are written once, then counted every `diskErrorIntervalMs`
 * (30 s; 0: every line written): disk-error-log.ts.
 */
export function createLogger(options: { level?: LogLevel; format?: LogFormat; component?: string; write?: (line: string) => void; diskErrorIntervalMs?: number } = {}): Logger {
  const min = RANK[options.level ?? 'info'];
  const json = options.format === 'json';
  const write = options.write ?? ((line: string) => process.stderr.write(line + '\n'));
  const line = (level: Exclude<LogLevel, 'silent'>, component: string | undefined, msg: string, fields?: Record<string, unknown>) => {
    const time = new Date().toISOString();
    if (json) {
      const event: Record<string, unknown> = { time, level, ...(component ? { component } : {}), msg };
      if (fields) for (const [k, v] of Object.entries(fields)) event[RESERVED.has(k) ? `_${k}` : k] = v instanceof Error ? v.message : v;
      write(JSON.stringify(event));
      return;
    }
    write(formatTextLine(time, level, component, msg, fields));
  };
  // one for the logger and its children: a part's lines and its children's are one log
  const interval = options.diskErrorIntervalMs ?? 30_000;
  const diskErrors = interval > 0 ? new DiskErrorLog(line, interval) : undefined;
  const make = (component: string | undefined): Logger => {
    const log = (level: Exclude<LogLevel, 'silent'>, msg: string, fields?: Record<string, unknown>) => {
      if (RANK[level] < min) return;
      if (diskErrors && (level === 'warn' || level === 'error') && !diskErrors.pass(level, component, msg, fields)) return;
      line(level, component, msg, fields);
    };
    return {
      debug: (m, f) => log('debug', m, f),
      info: (m, f) => log('info', m, f),
      warn: (m, f) => log('warn', m, f),
      error: (m, f) => log('error', m, f),
      enabled: (level) => RANK[level] >= min,
      child: (c) => make(component ? `${component}.${c}` : c),
      flush: () => diskErrors?.flush(),
    };
  };
  return make(options.component);
}

/** A logger that drops everything (tests, library users who bring none). */
export const silentLogger: Logger = createLogger({ level: 'silent' });

/** A URL safe to log: query string (signatures, tokens) removed. */
export function redactUrl(url: string): string {
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q) + '?<redacted>';
}
