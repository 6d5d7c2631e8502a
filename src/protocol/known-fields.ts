/**
 * Checks every write body gets: a field the request does not take is refused by name, not
 * dropped. A misspelt field changes what the request does without a word ("dryrun" deleted
 * builds a dry run would have listed; "expiresIn" made a token that never expires).
 */
import { UpdraftError } from '../errors.ts';

/**
 * Throws BAD_REQUEST `unknown field "a", "b" <where> (fields: x, y<hint>)` naming every field of
 * `body` not in `fields`; `where` says whose fields they are when a request holds several
 * (`of device dev-2`), `hint` adds to the list (`; a job with a plan: POST /api/v1/jobs`).
 */
export function refuseUnknownFields(body: object, fields: readonly string[], opts: { where?: string; hint?: string } = {}): void {
  const unknown = Object.keys(body).filter((k) => !fields.includes(k));
  if (unknown.length === 0) return;
  const where = opts.where ? ` ${opts.where}` : '';
  throw new UpdraftError('BAD_REQUEST', `unknown field ${unknown.map((k) => `"${k}"`).join(', ')}${where} (fields: ${fields.join(', ')}${opts.hint ?? ''})`);
}

/** The longest description a job, deployment or group takes: it goes out with every list and event. */
export const MAX_DESCRIPTION = 1000;

/** The problem with a description (undefined when it is fine or absent): not a string, or longer than MAX_DESCRIPTION. */
export function descriptionProblem(description: unknown): string | undefined {
  if (description === undefined || (typeof description === 'string' && description.length <= MAX_DESCRIPTION)) return undefined;
  return `description must be a string of at most ${MAX_DESCRIPTION} characters`;
}
