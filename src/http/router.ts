/**
 * A minimal method + path router over node:http: segments starting with `:` capture.
 * Enough for a dozen routes without a framework; downloads need the raw response stream.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { UpdraftError } from '../errors.ts';
import { unstorableChar } from '../protocol/json.ts';

/** Who called the operator API: the operator, or a read-only viewer token (its name). */
/** Who called the API: the data directory's operator token (no name), a named operator token, or a read-only viewer token (`server/named-tokens.ts`). */
export type Caller = { role: 'operator'; name?: string; expiresAt?: number } | { role: 'viewer'; name: string; expiresAt?: number };

/**
 * What a change made, for its line in the operator's audit trail (`HttpServer`): the handler
 * sets what its path does not name (`jobId`, `deviceId`, a count of devices). Written after
 * the line's own fields; never a secret (a device's secret, a token).
 */
export type AuditNote = Record<string, string | number | boolean>;

/** What a handler receives. */
export interface RouteContext {
  req: IncomingMessage;
  res: ServerResponse;
  params: Record<string, string>;
  url: URL;
  /** Set on `/api/` routes, whose token was checked. */
  caller?: Caller;
  /** What the change did, for its audit line (ignored on reads, which are not logged). */
  audit: AuditNote;
}

/** A route handler; throw UpdraftError for refusals. */
export type Handler = (ctx: RouteContext) => Promise<void>;

interface Route {
  method: string;
  parts: string[];
  /** As given to `add`, normalized (`/api/v1/devices/:id`): what access checks read. */
  pattern: string;
  handler: Handler;
}

/** Routes requests by method and path pattern. */
export class Router {
  private readonly routes: Route[] = [];
  private fallback: Handler | undefined;

  /** Adds a route, e.g. `add('GET', '/api/v1/devices/:id', h)`. */
  add(method: string, pattern: string, handler: Handler): this {
    const parts = pattern.split('/').filter(Boolean);
    this.routes.push({ method, parts, pattern: `/${parts.join('/')}`, handler });
    return this;
  }

  /** Every route, as `add` was given it (`GET /api/v1/devices/:id`): what the OpenAPI document must describe. */
  list(): string[] {
    return this.routes.map((r) => `${r.method} ${r.pattern}`);
  }

  /** Handles GET and HEAD requests that no route matches (the dashboard's client-side routes). */
  setFallback(handler: Handler): this {
    this.fallback = handler;
    return this;
  }

  /**
   * The handler and params for a request, and the route's pattern (what access checks read);
   * `allowed` lists methods when only the path matched.
   *
   * A route's fixed words match only as written: `/%61pi/v1/whoami` and `/api/v1//whoami`
   * are no route. Were they decoded or squeezed here, a check made in front of the router on
   * the raw path (the token on `/api/`, a viewer's limits) would read another path than the
   * one routed, and let `/%61pi/...` reach the API without a token. Only what a route
   * captures (`:id`) is decoded: ids may hold any character but U+0000, which no store keeps
   * (`unstorableChar`; the other it names, a lone surrogate, no percent-encoding decodes to).
   */
  match(method: string, pathname: string): { handler: Handler; params: Record<string, string>; pattern?: string } | { allowed: string[] } | undefined {
    const segs = pathname.split('/').slice(1);
    if (segs.at(-1) === '') segs.pop(); // a trailing slash (and `/` itself)
    const routable = !segs.includes('');
    const allowed: string[] = [];
    for (const route of routable ? this.routes : []) {
      if (route.parts.length !== segs.length) continue;
      const params: Record<string, string> = {};
      let ok = true;
      for (let i = 0; i < segs.length && ok; i++) {
        const p = route.parts[i]!;
        if (!p.startsWith(':')) {
          ok = p === segs[i];
          continue;
        }
        let param: string;
        try {
          param = decodeURIComponent(segs[i]!);
        } catch {
          throw new UpdraftError('BAD_REQUEST', `the path segment "${segs[i]!.slice(0, 64)}" is not valid percent-encoding`);
        }
        // nothing is named so (a NUL, `%00`): refused here, the same on both stores, not by
        // PostgreSQL in its own words (SQLite looked it up, and found nothing)
        const bad = unstorableChar(param);
        if (bad !== undefined) throw new UpdraftError('BAD_REQUEST', `the path segment "${segs[i]!.slice(0, 64)}" holds ${bad}: nothing stored holds one`);
        params[p.slice(1)] = param;
      }
      if (!ok) continue;
      if (route.method === method || (method === 'HEAD' && route.method === 'GET')) return { handler: route.handler, params, pattern: route.pattern };
      allowed.push(route.method);
    }
    if (allowed.length > 0) return { allowed };
    return this.fallback && (method === 'GET' || method === 'HEAD') ? { handler: this.fallback, params: {} } : undefined;
  }
}
