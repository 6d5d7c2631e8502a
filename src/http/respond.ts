/** JSON responses, body reading and the one place where UpdraftError maps to HTTP. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { UNAVAILABLE_RETRY_AFTER_SECONDS, UpdraftError, asUpdraftError, publicMessage } from '../errors.ts';
import { jsonDefect, requireJsonObject, type JsonTextMessages } from '../protocol/json.ts';
import { repeatedKeyMessage } from '../protocol/json-keys.ts';

/** Sends a JSON body with a status (and extra headers). */
export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string | number> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { ...headers, 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/**
 * Sends an error as `{ error: { code, message } }` with its HTTP status; `public`: a fault's
 * message is not told (`publicMessage`). UNAVAILABLE (503: a dependency cannot be reached)
 * says when to try again, `Retry-After` (RFC 9110 §10.2.3), which the agent honours: the
 * request was fine, and a client should neither give up nor come back at once.
 */
export function sendError(res: ServerResponse, err: unknown, opts: { public?: boolean } = {}): void {
  const e = asUpdraftError(err);
  if (res.headersSent) {
    res.destroy(e);
    return;
  }
  const headers = e.code === 'UNAVAILABLE' ? { 'retry-after': UNAVAILABLE_RETRY_AFTER_SECONDS } : undefined;
  sendJson(res, e.status, { error: { code: e.code, message: opts.public ? publicMessage(e) : e.message } }, headers);
}

/** What an API client is answered when its body is no JSON object. */
const BODY_JSON_MESSAGES: JsonTextMessages = {
  'not-utf8': 'request body is not UTF-8: send JSON encoded as UTF-8',
  'not-json': 'request body is not valid JSON',
  'not-object': 'request body must be a JSON object',
};

/**
 * Deepest nesting of objects and arrays in a request body (`{}` is 1 level, `{"a":[1]}` 2).
 * The deepest body a route takes has 5 (a job's `plan.windows[].days`): 64 leaves room for
 * every route's, and for what a route may take later.
 */
export const MAX_BODY_DEPTH = 64;

/** How `readJson` reads a body. */
export interface ReadJsonOptions {
  /** A route whose body may be left out: no body (or only white space) reads as `{}`. Default false: it is "not valid JSON". */
  optional?: boolean;
}

/** A request's body, at most `maxBytes` (413 past them; at once, unread, when its Content-Length says so). */
export async function readBody(req: IncomingMessage, maxBytes: number): Promise<Buffer> {
  if (Number(req.headers['content-length']) > maxBytes) throw new UpdraftError('TOO_LARGE', `request body exceeds ${maxBytes} bytes`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes) throw new UpdraftError('TOO_LARGE', `request body exceeds ${maxBytes} bytes`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

/** True for no bytes or only JSON white space (RFC 8259 section 2). */
export function isBlank(bytes: Buffer): boolean {
  for (const b of bytes) if (b !== 0x20 && b !== 0x09 && b !== 0x0a && b !== 0x0d) return false;
  return true;
}

/**
 * Reads a JSON object body of at most `maxBytes`; 400/413 naming the problem. Its bytes must
 * be UTF-8 (RFC 8259 section 8.1): `Buffer.toString` put U+FFFD in place of each bad byte,
 * and that was stored. Its numbers must be finite: JSON.parse makes a number beyond the
 * double range (`1e999`) Infinity, which JSON.stringify writes as null, so
 * `{"attributes":{"big":1e999}}` was answered 200 and stored `big: null`. No body takes
 * such a number, and JSON.parse yields a non-finite number from nothing else, so every body
 * is checked. Its objects and arrays nest at most `MAX_BODY_DEPTH` levels: JSON.parse builds
 * half a million levels from a 1 MiB body of brackets without recursion, and any code after
 * this that walked the value recursively would overflow the stack. No object of it may give a
 * key more than once (`repeatedKeyMessage`).
 */
export async function readJson(req: IncomingMessage, maxBytes = 1 << 20, opts: ReadJsonOptions = {}): Promise<Record<string, unknown>> {
  const bytes = await readBody(req, maxBytes);
  // the content type is not read: a body is JSON whatever its label (curl -d sends
  // application/x-www-form-urlencoded), so a field is never dropped for how it was labelled
  if (opts.optional && isBlank(bytes)) return {};
  const parsed = requireJsonObject(bytes, BODY_JSON_MESSAGES, (r) => repeatedKeyMessage('request body', r));
  for (const key of Object.keys(parsed)) {
    // the body itself is the first level: its fields may nest one level less
    const defect = jsonDefect(parsed[key]!, MAX_BODY_DEPTH - 1, key);
    if (defect?.kind === 'depth') throw new UpdraftError('BAD_REQUEST', `request body is nested too deep: objects and arrays may nest at most ${MAX_BODY_DEPTH} levels`);
    if (defect?.kind === 'number') throw new UpdraftError('BAD_REQUEST', `${defect.path} is not a finite number: a JSON number beyond the double range (about ±1.8e308) cannot be stored`);
  }
  return parsed;
}
