/**
 * The HTTP server: device downloads (`/v1/download/...`, authorized by the signed URL),
 * the operator API (`/api/v1/...`, behind the operator token) and `/healthz`.
 */
import http from 'node:http';
import https from 'node:https';
import { UpdraftError, asUpdraftError } from '../errors.ts';
import { secretMatches } from '../broker/authenticator.ts';
import { ThrottledLog } from '../util/log-throttle.ts';
import type { Logger } from '../util/logger.ts';
import { listenOn } from '../util/listen.ts';
import { FileLimitGate } from '../util/open-file-limit.ts';
import { sendError, sendJson } from './respond.ts';
import { contractOf, refuseBody, refuseUnknownQuery } from './route-contract.ts';
import type { AuditNote, Caller, Router } from './router.ts';

/** POSTs that change nothing (they carry a request body to read against): not changes, so not audited or counted as such. */
const READS_BY_POST = new Set(['/api/v1/jobs/preview']);
/** Reads that hand out secrets (the broker's password hashes), the broker's CRL (signed on each change: not for every dashboard) or manage tokens: the operator's only. */
const OPERATOR_READS = ['/api/v1/broker/credentials', '/api/v1/broker/crl', '/api/v1/viewer-tokens', '/api/v1/operator-tokens'];

/** True when a read-only viewer token may make this call (`server/named-tokens.ts`). */
export function viewerMay(method: string, pathname: string): boolean {
  const reads = method === 'GET' || method === 'HEAD' || (method === 'POST' && READS_BY_POST.has(pathname));
  return reads && !OPERATOR_READS.some((p) => pathname === p || pathname.startsWith(p + '/'));
}

/** A set of named tokens (server/named-tokens.ts): the one a token is, or the one it was when it has expired. */
export interface NamedTokenCheck {
  match(token: string): { name: string; expiresAt?: number } | undefined;
  expired(token: string): { name: string; expiresAt: number } | undefined;
}

/** Options of the HTTP server. */
export interface HttpServerOptions {
  port: number;
  host: string;
  router: Router;
  /** Required as `Authorization: Bearer <token>` on every `/api/` call. */
  operatorToken: string;
  /** Read-only tokens also taken, for reads only: the viewer's name of a token, or undefined. */
  viewerTokens?: NamedTokenCheck;
  /** Named operator tokens also taken, with the operator token's rights: the name of a token, or undefined. */
  operatorTokens?: NamedTokenCheck;
  logger: Logger;
  /** Serve HTTPS with this key and certificate chain (PEM) instead of plain HTTP. */
  tls?: { key: string; cert: string };
  /**
   * Routes are still being added after `start()` (the server listens first, since the routes
   * need its port): until `routesComplete()`, a request no route matches is answered 503
   * "starting" with `Retry-After`, not 404 (`STARTING_RETRY_AFTER_SECONDS`).
   */
  routesPending?: boolean;
}

/**
 * What a request that no route matches yet is told to wait while the server starts: its
 * routes are added within a second of its listening, and a client told 404 draws the wrong
 * conclusion (the CRL watch read a 404 as a server without the route, "upgrade it", and a
 * balancer's health check saw 404 for /readyz: QA of 2026-12-07, 0.4 s of 404s per start).
 */
export const STARTING_RETRY_AFTER_SECONDS = 1;

/** A change's audit line in the making (`HttpServer.audit`). */
interface AuditEntry {
  /** Who asked, once the token is checked. */
  by: string;
  /** What the route's handler says it made or changed. */
  note: AuditNote;
  /** Called when the handler (or the error's answer) is done. */
  handled(): void;
}

/** node:http server with the router, the token check and error mapping. */
export class HttpServer {
  private readonly opts: HttpServerOptions;
  private server: http.Server | undefined;
  private operatorToken: string;
  /** False from construction with `routesPending` until `routesComplete()`. */
  private routesDone: boolean;
  /**
   * Counted into `GET /api/v1/metrics`: changes asked of the API, calls refused for their
   * token, and connections (API, downloads, dashboard) refused at the open-file limit.
   */
  readonly stats = { changes: 0, refusedTokens: 0, refusedConnections: 0 };
  /** Connections refused at the process's open-file limit (util/open-file-limit.ts); set at start. */
  private fileLimit: FileLimitGate | undefined;

  /** Requests failed because a dependency is down: one line per 30 s. */
  private readonly unavailableLog: ThrottledLog;
  /** The listening server's errors ('HTTP server error'): one line per 30 s. */
  private readonly listenerErrorLog: ThrottledLog;

  constructor(opts: HttpServerOptions) {
    this.opts = opts;
    this.operatorToken = opts.operatorToken;
    this.routesDone = !opts.routesPending;
    this.unavailableLog = new ThrottledLog(opts.logger);
    // the count's line says where the last came from, and to what
    this.refusedLog = new ThrottledLog(opts.logger, 10_000, Date.now, ['lastFrom', 'path']);
    // an accept error repeats per connection attempt (EMFILE at the open-file limit): the
    // first at once, then one line per 30 s with the count, the listener and the code
    this.listenerErrorLog = new ThrottledLog(opts.logger, 30_000, Date.now, ['listener', 'code']);
  }

  /** The routes served. */
  get router(): Router {
    return this.opts.router;
  }

  /** Every route is added: from now on a request no route matches is answered 404 (`routesPending`). */
  routesComplete(): void {
    this.routesDone = true;
  }

  /** Replaces the operator token (`updraft token rotate`): from the next request on, only the new one is accepted. */
  setOperatorToken(token: string): void {
    this.operatorToken = token;
  }

  /** Serves `tls` from the next handshake on, with HTTPS (a renewed server certificate: server/server-tls-renewal.ts); open connections keep theirs. */
  setTls(tls: { key: string; cert: string }): void {
    if (this.server instanceof https.Server) this.server.setSecureContext({ key: tls.key, cert: tls.cert });
  }

  /** The port actually listened on. */
  get port(): number {
    const addr = this.server?.address();
    return typeof addr === 'object' && addr ? addr.port : this.opts.port;
  }

  async start(): Promise<void> {
    const handler = (req: http.IncomingMessage, res: http.ServerResponse) => void this.dispatch(req, res);
    const tls = this.opts.tls;
    const server = tls ? https.createServer({ key: tls.key, cert: tls.cert }, handler) : http.createServer(handler);
    server.keepAliveTimeout = 5_000;
    server.on('clientError', answerClientError);
    // at the open-file limit the kernel refuses accept() and Node says nothing: refused here
    // first, while a few files are left, with a line and a count; before TLS takes the socket
    const gate = new FileLimitGate({ logger: this.opts.logger, listener: tls ? 'https' : 'http' });
    this.fileLimit = gate;
    server.prependListener('connection', (socket: import('node:net').Socket) => {
      if (!gate.admit(socket)) this.stats.refusedConnections++;
    });
    this.server = server;
    // a fleet reconnecting at once overflows the default backlog (511): SYNs dropped cost seconds
    await listenOn(server, { port: this.opts.port, host: this.opts.host, backlog: 4096 }, (err) =>
      err.code === 'EADDRINUSE'
        ? new UpdraftError('PORT_IN_USE', `HTTP port ${this.opts.port} on ${this.opts.host} is already in use; stop what uses it or pick another port with --http-port`)
        : new UpdraftError('CONFIG', `cannot listen for HTTP on ${this.opts.host}:${this.opts.port}: ${err.message}`, { cause: err }),
    );
    // an error of the listening server (an accept failing) is written, and the server goes on
    // listening; unheard, node would end the process with it
    server.on('error', (err: NodeJS.ErrnoException) => this.listenerErrorLog.error('HTTP server error', { listener: tls ? 'https' : 'http', error: err.message, ...(err.code ? { code: err.code } : {}) }));
  }

  private async dispatch(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    let audit: AuditEntry | undefined;
    try {
      const url = new URL(req.url ?? '/', 'http://localhost');
      const method = req.method ?? 'GET';
      // answered before routing (no token, no store), but by method as /readyz is: GET and HEAD only
      if (url.pathname === '/healthz') {
        if (method === 'GET' || method === 'HEAD') return sendJson(res, 200, { status: 'ok' });
        res.setHeader('allow', 'GET');
        throw new UpdraftError('METHOD_NOT_ALLOWED', `method ${method} is not allowed on /healthz (allowed: GET)`);
      }
      let caller: Caller | undefined;
      // the token before the route is looked up: without one, no path under /api/ says
      // whether it exists
      if (url.pathname.startsWith('/api/')) {
        audit = this.audit(req, res, url);
        caller = this.checkToken(req);
        if (audit) audit.by = caller.name === undefined ? caller.role : `${caller.role} ${caller.name}`;
      }
      const found = this.opts.router.match(method, url.pathname);
      if (!found && !this.routesDone) {
        // not a dependency down (no WARN) nor a fault: the route may be added in a moment
        if (req.readable) req.resume();
        return sendJson(res, 503, { error: { code: 'UNAVAILABLE', message: `the server is starting: try again in ${STARTING_RETRY_AFTER_SECONDS} s` } }, { 'retry-after': STARTING_RETRY_AFTER_SECONDS });
      }
      if (!found) throw new UpdraftError('NOT_FOUND', `no route for ${method} ${url.pathname}`);
      if ('allowed' in found) {
        res.setHeader('allow', found.allowed.join(', '));
        throw new UpdraftError('METHOD_NOT_ALLOWED', `method ${method} is not allowed on ${url.pathname} (allowed: ${found.allowed.join(', ')})`);
      }
      // who may call it, by the route found, which is what is served (not by the path as
      // written: the router matches fixed words only as written, but the route is the truth)
      if (found.pattern?.startsWith('/api/')) {
        caller ??= this.checkToken(req);
        if (caller.role === 'viewer' && !viewerMay(method, found.pattern)) {
          throw new UpdraftError('FORBIDDEN', `the viewer token ${caller.name} is read-only: ${method} ${url.pathname} needs the operator token`);
        }
        // what the route does not take is refused before it acts, never dropped (route-contract.ts)
        const contract = contractOf(method, found.pattern);
        if (contract) refuseUnknownQuery(url, contract);
        if (contract && !contract.body) await refuseBody(req, method, url.pathname);
      }
      await found.handler({ req, res, params: found.params, url, ...(caller ? { caller } : {}), audit: audit?.note ?? {} });
    } catch (err) {
      // a request whose body was cut off (over its limit) took its connection with it, and one
      // refused before its body was read closes it unread (`closesUnread`): the answer says
      // so, or a client would send its next request on a connection being reset
      if (req.destroyed) {
        if (!res.headersSent) res.setHeader('connection', 'close');
      } else if (closesUnread(req)) {
        if (!res.headersSent) closeUnread(req, res);
      } else if (req.readable) req.resume(); // drop a small unread body: the connection stays usable
      const e = asUpdraftError(err);
      const pathname = (req.url ?? '/').split('?')[0]!;
      // a client that went away mid-request (an upload aborted) is no fault of the server's,
      // also when a part wrapped the request's error in its own (the S3 store's "cannot store")
      const cause = err instanceof UpdraftError && err.cause !== undefined ? err.cause : err;
      const gone = req.destroyed && (cause as NodeJS.ErrnoException | undefined)?.code === 'ECONNRESET';
      if (gone) this.opts.logger.info('request abandoned by its client', { method: req.method ?? 'GET', path: pathname });
      // a dependency down fails every request alike: one line per 30 s, counting the rest
      else if (e.code === 'UNAVAILABLE') this.unavailableLog.warn('requests failed: a dependency cannot be reached', { method: req.method ?? 'GET', path: pathname, error: e.message });
      else if (e.status >= 500) this.opts.logger.error('request failed', { method: req.method ?? 'GET', path: pathname, error: e.message });
      // downloads and the dashboard's files answer devices and browsers before any token: a
      // fault's own text (files, hosts, a library's internals) is for the log and the API's callers
      sendError(res, e, pathname.startsWith('/api/') ? undefined : { public: true });
    } finally {
      audit?.handled();
    }
  }

  /**
   * The operator's audit trail, in the log: every change asked of the API (any method but
   * GET and HEAD: artifacts added and deleted, devices registered, revoked and deleted,
   * jobs created and cancelled, tokens replaced), with its answer, what it made or changed
   * where the path does not name it (the route's `audit` note: a job's id, a device's id, a
   * count of devices), and every refused token. Path and query only, and the note: they name
   * devices, artifacts and jobs, never a secret (bodies and headers are not logged; download
   * URLs, which carry signatures, are not under /api/). Refused tokens are logged at most
   * every 10 s, the count of the others when the 10 s end, so guessing cannot flood the log.
   *
   * Written once, when the handler is done and the answer is over: sent (`finish`), or its
   * client gone before it was (`close` first: `clientGone=true`). A change goes on when its
   * client leaves (10,000 devices registered, a job created and started), and was logged on
   * `finish` alone, which never comes then: it left no line and no count. Waiting for the
   * handler too gives the line the status it set and what it created. Not for ever: a
   * handler still running AUDIT_PENDING_MS after its client left (a device deleted while the
   * external broker is down waits for the broker to come back) gets its line then,
   * `clientGone=true pending=true` with the time so far, counted, and its end a line of its
   * own (`operator request finished after its client left ... status=`), not counted again.
   */
  private audit(req: http.IncomingMessage, res: http.ServerResponse, url: URL): AuditEntry | undefined {
    const method = req.method ?? 'GET';
    if (method === 'GET' || method === 'HEAD' || READS_BY_POST.has(url.pathname)) return undefined;
    const started = performance.now();
    // taken now: a request cut short (a body over its limit) has no socket by the time its answer is finished
    const remote = req.socket.remoteAddress ?? '';
    let answer: 'sent' | 'gone' | undefined;
    let handled = false;
    /** 'pending': written while the handler still ran, its client gone (`pendingTimer`). */
    let written: 'done' | 'pending' | undefined;
    let pendingTimer: NodeJS.Timeout | undefined;
    const ms = () => Math.round(performance.now() - started);
    const write = () => {
      if (written === 'pending' && handled) {
        // what the handler did, once it is done: not counted again
        written = 'done';
        const line = { method, path: url.pathname + url.search, status: res.statusCode, ms: ms(), remote, by: entry.by };
        this.opts.logger.info('operator request finished after its client left', { ...line, ...entry.note, ...line });
        return;
      }
      if (answer === undefined || !handled || written) return;
      written = 'done';
      clearTimeout(pendingTimer);
      if (res.statusCode === 401) return; // counted and logged by checkToken
      this.stats.changes++;
      const line = { method, path: url.pathname + url.search, status: res.statusCode, ...(answer === 'gone' ? { clientGone: true } : {}), ms: ms(), remote, by: entry.by };
      // the note after the line's own fields, which it cannot replace
      this.opts.logger.info('operator request', { ...line, ...entry.note, ...line });
    };
    // the client gone and the handler still running (waiting on a broker that is down, say):
    // the line cannot wait for it, which may be for as long as an outage lasts
    const writePending = () => {
      pendingTimer = undefined;
      if (written || handled) return;
      written = 'pending';
      this.stats.changes++;
      // its answer may have been sent before the handler's end (review): only a client that left is said gone
      const line = { method, path: url.pathname + url.search, ...(answer === 'gone' ? { clientGone: true } : {}), pending: true, ms: ms(), remote, by: entry.by };
      this.opts.logger.info('operator request', { ...line, ...entry.note, ...line });
    };
    // who asked (the operator, or a viewer token refused with 403), once the token is checked
    const entry: AuditEntry = {
      by: '',
      note: {},
      handled: () => {
        handled = true;
        write();
      },
    };
    res.once('finish', () => {
      answer ??= 'sent';
      write();
    });
    res.once('close', () => {
      answer ??= 'gone';
      write();
      // unref'd: a line still to write never holds a process open
      if (!written) pendingTimer = setTimeout(writePending, AUDIT_PENDING_MS).unref();
    });
    return entry;
  }

  /** Refused tokens: the first of 10 s logged at once, the others counted and said when the 10 s end. */
  private readonly refusedLog: ThrottledLog;

  private noteRefusedToken(req: http.IncomingMessage): void {
    this.stats.refusedTokens++;
    this.refusedLog.warn('API calls refused: no or a wrong operator token', { lastFrom: req.socket?.remoteAddress ?? '', path: new URL(req.url ?? '/', 'http://localhost').pathname });
  }

  private checkToken(req: http.IncomingMessage): Caller {
    const header = req.headers.authorization ?? '';
    const m = /^Bearer (.+)$/i.exec(header); // an auth scheme is case-insensitive (RFC 9110 §11.1)
    if (!m) {
      this.noteRefusedToken(req);
      throw new UpdraftError('UNAUTHORIZED', 'the operator token is required: send Authorization: Bearer <token>');
    }
    if (secretMatches(Buffer.from(m[1]!), this.operatorToken)) return { role: 'operator' };
    const operator = this.opts.operatorTokens?.match(m[1]!);
    if (operator !== undefined) return { role: 'operator', ...operator };
    const viewer = this.opts.viewerTokens?.match(m[1]!);
    if (viewer !== undefined) return { role: 'viewer', ...viewer };
    this.noteRefusedToken(req);
    // a named token past its expiry is told so (its holder had it; "wrong" would send them hunting for a typo)
    for (const [kind, tokens] of [['operator', this.opts.operatorTokens], ['viewer', this.opts.viewerTokens]] as const) {
      const gone = tokens?.expired(m[1]!);
      if (gone) throw new UpdraftError('UNAUTHORIZED', `the ${kind} token "${gone.name}" expired at ${new Date(gone.expiresAt).toISOString()}; ask an operator for a new one`);
    }
    throw new UpdraftError('UNAUTHORIZED', 'the operator token is wrong');
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    this.unavailableLog.close();
    this.refusedLog.close();
    this.listenerErrorLog.close();
    this.fileLimit?.close();
  }
}

/**
 * How long the audit line of a change whose client went away waits for its handler: most end
 * within it (the line then has their status and what they made); one still running after it
 * is logged `pending=true`, and its end on a line of its own.
 */
const AUDIT_PENDING_MS = 10_000;

/** The longest unread body still read (and dropped) after a refusal, to keep its connection (Go's net/http reads up to 256 KiB). */
const DRAIN_MAX_BYTES = 64 * 1024;

/**
 * How long a connection closed on an unread body stays open after its answer, unread: a client
 * still writing its body has that long to read the answer. Go's net/http waits 500 ms
 * (rstAvoidanceDelay); on a loaded host a client process sometimes took longer.
 */
const LINGER_MS = 2000;

/**
 * True when a refused request's body is not all read and is longer than DRAIN_MAX_BYTES, or
 * of unknown length (chunked): its answer closes the connection (`closeUnread`). Draining it
 * instead kept the connection for the next request, but a 500 MB upload refused for a
 * misspelt query parameter was read to its end before its 400. A request with no length and
 * no chunks has no body (RFC 9112 section 6.3).
 */
function closesUnread(req: http.IncomingMessage): boolean {
  if (req.complete) return false;
  if (req.headers['transfer-encoding'] !== undefined) return true;
  const length = req.headers['content-length'];
  return length !== undefined && Number(length) > DRAIN_MAX_BYTES;
}

/**
 * Answers with `Connection: close` (RFC 9112 section 9.6) and reads no more of the request:
 * Node ends the socket once the answer is sent (its FIN follows the answer), and the socket
 * is closed LINGER_MS later, not at once. Closed at once with the client's bytes unread, the
 * kernel resets the connection (RFC 2525 section 2.17), dropping an answer not yet
 * acknowledged, and fetch, still writing the body, mostly failed with EPIPE instead of
 * reporting the answer (`updraft artifact add` of a version that exists: "cannot reach the server"). Meanwhile
 * the client's bytes wait in the buffers: a client sees the answer and stops.
 */
function closeUnread(req: http.IncomingMessage, res: http.ServerResponse): void {
  res.setHeader('connection', 'close');
  const socket = req.socket;
  res.once('finish', () => {
    // Node's own 'finish' listener ran first: it ended the socket, asked for it to be
    // destroyed when its end is written (destroySoon), and resumed the request to discard
    // its body (that resumes reading on the next tick)
    socket.removeListener('finish', socket.destroy);
    setImmediate(() => socket.pause());
    setTimeout(() => socket.destroy(), LINGER_MS).unref();
  });
}

/**
 * A request Node could not parse, answered in the API's error shape (Node's own answer has
 * no body, so the dashboard and the CLI could only say "HTTP 431"): headers over Node's limit
 * (16 KiB, usually a URL grown too long), an unparsable request, a request too slow to arrive.
 */
function answerClientError(err: NodeJS.ErrnoException, socket: import('node:stream').Duplex): void {
  if (err.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy();
    return;
  }
  const [status, reason, code, message] =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? [431, 'Request Header Fields Too Large', 'TOO_LARGE', `the request's headers exceed ${http.maxHeaderSize} bytes: a URL (its query) or a header is too long`]
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [408, 'Request Timeout', 'TIMEOUT', 'the request did not arrive in time']
        : [400, 'Bad Request', 'BAD_REQUEST', 'the request is not valid HTTP'];
  const body = JSON.stringify({ error: { code, message } });
  socket.end(`HTTP/1.1 ${status} ${reason}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
}
