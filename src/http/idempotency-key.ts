/**
 * The `Idempotency-Key` request header (draft-ietf-httpapi-idempotency-key-header) of the
 * routes that create a rollout (`POST /api/v1/jobs`, `POST /api/v1/deployments`): read and
 * checked here, with the request's fingerprint (route + canonical body digest, draft §2.4),
 * and the creation's answer: 201 when it created the job, 200 with `Idempotent-Replayed: true`
 * when the key's job was there already (nothing created). `jobs/idempotent-creation.ts` does
 * the rest.
 */
import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { UpdraftError } from '../errors.ts';
import { IN_PROGRESS_RETRY_SECONDS, KeyInProgress, type CreatedOnce } from '../jobs/idempotent-creation.ts';
import type { IdempotencyClaim } from '../store/state-store.ts';
import { sendJson } from './respond.ts';

/** The request header, as Node names it (lower case). */
export const IDEMPOTENCY_KEY = 'idempotency-key';
/** The answer's header saying it is the key's earlier creation, replayed: nothing was created now. */
export const IDEMPOTENT_REPLAYED = 'idempotent-replayed';
/** The longest key taken, in characters. */
export const MAX_KEY_LENGTH = 255;

/**
 * The claim of the request's Idempotency-Key, or undefined without one. The key is 1 to 255
 * visible ASCII characters (0x21-0x7E), sent as they are (`Idempotency-Key: 8e03978e-...`) or as
 * the draft's structured-field string (`Idempotency-Key: "8e03978e-..."`); BAD_REQUEST, saying
 * what is wrong, for anything else or for the header sent twice.
 */
export function idempotencyClaim(req: IncomingMessage, route: string, body: unknown): IdempotencyClaim | undefined {
  const raw = req.headers[IDEMPOTENCY_KEY];
  if (raw === undefined) return undefined;
  let sent = 0;
  for (let i = 0; i < req.rawHeaders.length; i += 2) if (req.rawHeaders[i]!.toLowerCase() === IDEMPOTENCY_KEY) sent++;
  if (sent > 1 || Array.isArray(raw)) throw new UpdraftError('BAD_REQUEST', `Idempotency-Key was sent ${sent} times: send one key per request`);
  const key = unquoted(raw.trim());
  if (key.length === 0) throw new UpdraftError('BAD_REQUEST', 'Idempotency-Key is empty: send 1 to 255 visible ASCII characters, e.g. a random UUID, the same for every retry of one request');
  if (key.length > MAX_KEY_LENGTH) throw new UpdraftError('BAD_REQUEST', `Idempotency-Key is ${key.length} characters long: at most ${MAX_KEY_LENGTH} are taken (a random UUID is 36)`);
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i);
    if (c < 0x21 || c > 0x7e) {
      throw new UpdraftError('BAD_REQUEST', `Idempotency-Key has ${c === 0x20 ? 'a space' : `character U+${c.toString(16).toUpperCase().padStart(4, '0')}`} at position ${i + 1}: only visible ASCII characters (0x21-0x7E) are taken, e.g. a random UUID`);
    }
  }
  return { key, fingerprint: fingerprintOf(route, body) };
}

/** The key inside a structured-field string (`"..."`, with `\"` and `\\`), or the value as sent. */
function unquoted(value: string): string {
  if (!value.startsWith('"')) return value;
  const m = /^"((?:[^"\\]|\\["\\])*)"$/.exec(value);
  if (!m) throw new UpdraftError('BAD_REQUEST', 'Idempotency-Key starts with a quote but is not a quoted string ("key", with \\" and \\\\ escaped): send the key plainly or quoted whole');
  return m[1]!.replace(/\\(["\\])/g, '$1');
}

/** SHA-256 (hex) of the method and route and the body as canonical JSON (object keys sorted): the same request however its fields are ordered. */
export function fingerprintOf(route: string, body: unknown): string {
  return createHash('sha256').update(`POST ${route}\n`).update(canonicalJson(body)).digest('hex');
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.keys(value)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`);
    return `{${entries.join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

/**
 * Runs a keyed creation and answers it: 201 for a job created now, 200 and
 * `Idempotent-Replayed: true` for the key's job answered again. A key whose first request is
 * still creating its job (409) is answered with `Retry-After`. Resolves with the outcome (for
 * the audit line).
 */
export async function answerCreation<T>(res: ServerResponse, run: () => Promise<CreatedOnce<T>>): Promise<CreatedOnce<T>> {
  let outcome: CreatedOnce<T>;
  try {
    outcome = await run();
  } catch (err) {
    if (err instanceof KeyInProgress) res.setHeader('retry-after', IN_PROGRESS_RETRY_SECONDS);
    throw err;
  }
  if (outcome.replayed) sendJson(res, 200, outcome.value, { [IDEMPOTENT_REPLAYED]: 'true' });
  else sendJson(res, 201, outcome.value);
  return outcome;
}
