/**
 * A small structured logger, passed to every part through its deps (no global logger).
 * Lines go to stderr so that CLI output on stdout stays machine-readable. Callers must not
 * pass secrets, tokens or signed URLs: use `redactUrl` for URLs.
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent';

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 };

/** The logging surface every part receives. */
export interface Logger {
  debug(msg: string, fields?: Record<string, unknown>): void;
  info(msg: string, fields?: Record<string, unknown>): void;
  warn(msg: string, fields?: Record<string, unknown>): void;
  error(msg: string, fields?: Record<string, unknown>): void;
  /** A logger whose lines carry `component`. */
  child(component: string): Logger;
}

/** Creates a logger writing one line per event to `write` (stderr by default). */
export function createLogger(options: { level?: LogLevel; component?: string; write?: (line: string) => void } = {}): Logger {
  const min = RANK[options.level ?? 'info'];
  const write = options.write ?? ((line: string) => process.stderr.write(line + '\n'));
  const make = (component: string | undefined): Logger => {
    const log = (level: Exclude<LogLevel, 'silent'>, msg: string, fields?: Record<string, unknown>) => {
      if (RANK[level] < min) return;
      const extra = fields ? ' ' + Object.entries(fields).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join(' ') : '';
      write(`${new Date().toISOString()} ${level.toUpperCase().padEnd(5)} ${component ? `[${component}] ` : ''}${msg}${extra}`);
    };
    return {
      debug: (m, f) => log('debug', m, f),
      info: (m, f) => log('info', m, f),
      warn: (m, f) => log('warn', m, f),
      error: (m, f) => log('error', m, f),
      child: (c) => make(component ? `${component}.${c}` : c),
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
