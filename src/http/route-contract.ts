/**
 * What each operator API route takes, read from the OpenAPI document (openapi.ts): its query
 * parameters, and whether it takes a body. The document is the one list of them, so what is documented is what is taken,
 * and what is not is refused by name in one place (HttpServer.dispatch), never dropped: a
 * misspelt `?devicetype=rpi4` on `POST /api/v1/artifacts` stored a build for every device
 * type, and versions are immutable. A route the document lacks is not checked here:
 * test/http/openapi-routes.test.ts fails for it (and for an entry no route serves).
 */
import type { IncomingMessage } from 'node:http';
import { UpdraftError } from '../errors.ts';
import { parseJsonObject, unstorableChar } from '../protocol/json.ts';
import { openApiDocument } from './openapi.ts';
import { isBlank, readBody } from './respond.ts';

/** What a route takes, as documented. */
export interface RouteContract {
  /** Its query parameters, in the document's order. */
  query: readonly string[];
  /** Whether it documents a request body. */
  body: boolean;
}

type Operation = { parameters?: { name: string; in: string }[]; requestBody?: unknown };

/** Every documented route's contract, by `METHOD /router/:pattern` (the router's form of `{id}`). */
export function routeContracts(doc: { paths: Record<string, Record<string, Operation>> }): Map<string, RouteContract> {
  const contracts = new Map<string, RouteContract>();
  for (const [path, operations] of Object.entries(doc.paths)) {
    const pattern = path.replace(/\{([^}]+)\}/g, ':$1');
    for (const [method, operation] of Object.entries(operations)) {
      const query = (operation.parameters ?? []).filter((p) => p.in === 'query').map((p) => p.name);
      contracts.set(`${method.toUpperCase()} ${pattern}`, { query, body: operation.requestBody !== undefined });
    }
  }
  return contracts;
}

let served: Map<string, RouteContract> | undefined;

/** The contract of the route `pattern` (as the router gives it) for `method` (HEAD: GET's), or undefined when undocumented. */
export function contractOf(method: string, pattern: string): RouteContract | undefined {
  served ??= routeContracts(openApiDocument() as { paths: Record<string, Record<string, Operation>> });
  return served.get(`${method === 'HEAD' ? 'GET' : method} ${pattern}`);
}

/**
 * Throws BAD_REQUEST `unknown query parameter "a" (parameters: x, y)` naming every parameter of
 * `url` the route does not take, then `query parameter "x" is given 2 times: ...` for one the
 * route takes given more than once: every handler reads one value (`searchParams.get`), so
 * `deviceTypes=rpi4&deviceTypes=rpi5` would store an immutable build for rpi4 only. A list is
 * one comma-separated value. Then `query parameter "after" holds a NUL character (U+0000)` for
 * a value holding what no store keeps (`unstorableChar`).
 */
export function refuseUnknownQuery(url: URL, contract: RouteContract): void {
  const counts = new Map<string, number>();
  for (const k of url.searchParams.keys()) counts.set(k, (counts.get(k) ?? 0) + 1);
  const unknown = [...counts.keys()].filter((k) => !contract.query.includes(k));
  if (unknown.length > 0) {
    const taken = contract.query.length > 0 ? `parameters: ${contract.query.join(', ')}` : 'it takes none';
    const names = unknown.map((k) => `"${k.slice(0, 64)}"`).join(', ');
    throw new UpdraftError('BAD_REQUEST', `unknown query parameter${unknown.length > 1 ? 's' : ''} ${names} (${taken})`);
  }
  for (const [k, n] of counts) {
    if (n > 1) throw new UpdraftError('BAD_REQUEST', `query parameter "${k}" is given ${n} times: give it once (a list is comma-separated)`);
  }
  // a name, a cursor or a query holding a NUL (`?after=%00`) is refused here, the same on both
  // stores: PostgreSQL refused it in its own words, SQLite looked it up and found nothing
  for (const [k, v] of url.searchParams) {
    const bad = unstorableChar(v);
    if (bad !== undefined) throw new UpdraftError('BAD_REQUEST', `query parameter "${k}" holds ${bad}: nothing stored holds one`);
  }
}

/**
 * Reads the body of a route that takes none and refuses it unless it is empty: no bytes, white
 * space, or `{}` (what a client that always sends JSON sends) are taken; anything else is 400
 * naming its fields. Read whole (up to 1 MiB, as every body) before the route acts. GET and
 * HEAD are not read: their bodies have no meaning (RFC 9110 section 9.3.1).
 */
export async function refuseBody(req: IncomingMessage, method: string, pathname: string): Promise<void> {
  if (method === 'GET' || method === 'HEAD') return;
  const bytes = await readBody(req, 1 << 20);
  if (isBlank(bytes)) return;
  const parsed = parseJsonObject(bytes);
  if (typeof parsed === 'object' && Object.keys(parsed).length === 0) return;
  const what = typeof parsed === 'object' ? `: ${Object.keys(parsed).slice(0, 10).map((k) => `"${k.slice(0, 64)}"`).join(', ')} refused, not dropped` : '';
  throw new UpdraftError('BAD_REQUEST', `${method} ${pathname} takes no request body${what}; send none, or {}`);
}
