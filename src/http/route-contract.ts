/**
 * What each operator API route takes, read from the OpenAPI document (openapi.ts): its query
 * parameters. The document is the one list of them, so what is documented is what is taken,
 * and what is not is refused by name in one place (HttpServer.dispatch), never dropped: a
 * misspelt `?devicetype=rpi4` on `POST /api/v1/artifacts` stored a build for every device
 * type, and versions are immutable. A route the document lacks is not checked here
 * (test/http/jobs-api.test.ts fails for it).
 */
import { UpdraftError } from '../errors.ts';
import { openApiDocument } from './openapi.ts';

/** What a route takes, as documented. */
export interface RouteContract {
  /** Its query parameters, in the document's order. */
  query: readonly string[];
}

type Operation = { parameters?: { name: string; in: string }[] };

/** Every documented route's contract, by `METHOD /router/:pattern` (the router's form of `{id}`). */
export function routeContracts(doc: { paths: Record<string, Record<string, Operation>> }): Map<string, RouteContract> {
  const contracts = new Map<string, RouteContract>();
  for (const [path, operations] of Object.entries(doc.paths)) {
    const pattern = path.replace(/\{([^}]+)\}/g, ':$1');
    for (const [method, operation] of Object.entries(operations)) {
      const query = (operation.parameters ?? []).filter((p) => p.in === 'query').map((p) => p.name);
      contracts.set(`${method.toUpperCase()} ${pattern}`, { query });
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

/** Throws BAD_REQUEST `unknown query parameter "a" (parameters: x, y)` naming every parameter of `url` the route does not take. */
export function refuseUnknownQuery(url: URL, contract: RouteContract): void {
  const unknown = [...new Set(url.searchParams.keys())].filter((k) => !contract.query.includes(k));
  if (unknown.length === 0) return;
  const taken = contract.query.length > 0 ? `parameters: ${contract.query.join(', ')}` : 'it takes none';
  const names = unknown.map((k) => `"${k.slice(0, 64)}"`).join(', ');
  throw new UpdraftError('BAD_REQUEST', `unknown query parameter${unknown.length > 1 ? 's' : ''} ${names} (${taken})`);
}
