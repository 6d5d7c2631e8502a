/** Query-string parameters shared by list routes: `limit` (1..1000) and the `after` cursor. */
import { UpdraftError } from '../errors.ts';
import { unstorableChar } from '../protocol/json.ts';

/** Largest page a list route returns. */
export const MAX_PAGE = 1000;

/** A `limit` as written: decimal digits only (`Number` also read `0x10`, `1e2` and ` 5`). */
const DECIMAL = /^[0-9]+$/;

/**
 * `limit` and `after` of a list request; BAD_REQUEST for a limit that is not a plain decimal
 * integer in range, or a cursor holding what no store keeps (`unstorableChar`: a NUL, which
 * PostgreSQL refused in its own words while SQLite compared it).
 */
export function pageParams(url: URL, defaultLimit = 100): { limit: number; after?: string } {
  const limit = intParam(url, 'limit', defaultLimit, 1, MAX_PAGE);
  const after = url.searchParams.get('after');
  const bad = after ? unstorableChar(after) : undefined;
  if (bad !== undefined) throw new UpdraftError('BAD_REQUEST', `after holds ${bad}: it is no cursor a page gave`);
  return after ? { limit, after } : { limit };
}

/**
 * A whole-number parameter from `min` to `max` (`def` when absent); BAD_REQUEST for one that is
 * not plain decimal digits or out of range: every list route reads its numbers here.
 */
export function intParam(url: URL, key: string, def: number, min: number, max: number): number {
  const raw = url.searchParams.get(key);
  const v = raw === null ? def : DECIMAL.test(raw) ? Number(raw) : NaN;
  if (!Number.isInteger(v) || v < min || v > max) throw new UpdraftError('BAD_REQUEST', `${key} must be an integer from ${min} to ${max}, got ${raw}`);
  return v;
}

/** A comma-separated list parameter checked against the allowed values; undefined when absent. */
export function listParam<T extends string>(url: URL, key: string, allowed: readonly T[]): T[] | undefined {
  const raw = url.searchParams.get(key);
  if (raw === null) return undefined;
  // present and empty is refused, as `?name=` on artifacts is: it listed every job, which a
  // script whose "$STATUS" was empty did not ask for
  if (raw.trim() === '') throw new UpdraftError('BAD_REQUEST', `${key} is empty: give a comma-separated list of ${allowed.join(', ')}, or leave ${key} out`);
  const values = raw.split(',').map((v) => v.trim().toUpperCase());
  const badValue = values.find((v) => !(allowed as readonly string[]).includes(v));
  if (badValue !== undefined) throw new UpdraftError('BAD_REQUEST', `${key} must be a comma-separated list of ${allowed.join(', ')}; got ${badValue}`);
  return values as T[];
}
