/** One segment of an API path the CLI builds from what it was given (an id, a name, a version). */
import { UpdraftError } from '../errors.ts';
import { DOT_SEGMENT_PROBLEM } from '../protocol/topics.ts';

/**
 * `value` encoded as one URL path segment; BAD_REQUEST (exit 2, before any request) for "."
 * or "..", in the server's words (`idProblem`): encodeURIComponent leaves dots as they are,
 * and a URL resolves such a segment away (RFC 3986 section 5.2.4), so `device delete ..`
 * asked for `DELETE /api/v1/` and `device show .` for the device list. `what` names the value
 * as the server does: `device id`, `job id`, `group name`.
 */
export function pathSegment(what: string, value: string): string {
  if (value === '.' || value === '..') throw new UpdraftError('BAD_REQUEST', `${what} "${value}" is refused: ${DOT_SEGMENT_PROBLEM}`);
  return encodeURIComponent(value);
}
