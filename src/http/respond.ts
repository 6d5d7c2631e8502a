/** JSON responses, body reading and the one place where UpdraftError maps to HTTP. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { UpdraftError, asUpdraftError, publicMessage } from '../errors.ts';

/** Sends a JSON body with a status. */
export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/** Sends an error as `{ error: { code, message } }` with its HTTP status; `public`: a fault's message is not told (`publicMessage`). */
export function sendError(res: ServerResponse, err: unknown, opts: { public?: boolean } = {}): void {
  const e = asUpdraftError(err);
  if (res.headersSent) {
    res.destroy(e);
    return;
  }
  sendJson(res, e.status, { error: { code: e.code, message: opts.public ? publicMessage(e) : e.message } });
}

/** Reads a JSON object body of at most `maxBytes`; 400/413 naming the problem. */
export async function readJson(req: IncomingMessage, maxBytes = 1 << 20): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes) throw new UpdraftError('TOO_LARGE', `request body exceeds ${maxBytes} bytes`);
    chunks.push(chunk);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new UpdraftError('BAD_REQUEST', 'request body is not valid JSON');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new UpdraftError('BAD_REQUEST', 'request body must be a JSON object');
  return parsed as Record<string, unknown>;
}
