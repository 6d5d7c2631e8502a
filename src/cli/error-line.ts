/**
 * The line a failed command ends with, and its exit code (README, CLI reference): one readable
 * line, `updraft: error: ...`, or, for a server logging JSON (`--log-format json`), a JSON
 * object like the logger's own lines, so that every line of its log parses.
 */
import { UpdraftError } from '../errors.ts';
import { createLogger, type LogFormat } from '../util/logger.ts';

/** 2 for bad input (a usage error, or a request the server refuses as a 4xx), 1 for anything else. */
export function exitCodeOf(err: unknown): number {
  return err instanceof UpdraftError && err.status >= 400 && err.status < 500 ? 2 : 1;
}

/** The line (with its newline) saying why a command failed, in `format`; the first line of the message only. */
export function errorLine(err: unknown, format: LogFormat = 'text'): string {
  const message = (fullDisk(err) ?? (err instanceof Error ? err.message : String(err))).split('\n')[0]!;
  if (format === 'text') return `updraft: error: ${message}\n`;
  let line = '';
  createLogger({ format: 'json', write: (l) => (line = l) }).error(message, err instanceof UpdraftError ? { code: err.code } : undefined);
  return line + '\n';
}

/**
 * A full disk (or a spent quota) said as such, with the file that could not be written:
 * Node's own words name neither (`ENOSPC: no space left on device, write`).
 */
function fullDisk(err: unknown): string | undefined {
  const e = err as NodeJS.ErrnoException | undefined;
  if (!e || typeof e !== 'object' || (e.code !== 'ENOSPC' && e.code !== 'EDQUOT')) return undefined;
  const what = e.code === 'ENOSPC' ? 'no space left on the device' : 'the disk quota is spent';
  return e.path ? `cannot write ${e.path}: ${what} (${e.code}); free some space and run it again` : `${what} (${e.code}); free some space and run it again`;
}
