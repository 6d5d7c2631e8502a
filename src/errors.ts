/**
 * One error type for the whole system (STYLE.md habit 6). `code` is machine readable;
 * `status` is the HTTP-style status a rejection carries (the shadow contract reuses HTTP
 * codes on MQTT `.../rejected` topics). Mapped to MQTT in `shadow/replica.ts` and to HTTP in
 * `http/respond.ts`, nowhere else.
 */
export type ErrorCode =
  | 'BAD_REQUEST'
  | 'UNAUTHORIZED'
  | 'FORBIDDEN'
  | 'NOT_FOUND'
  | 'METHOD_NOT_ALLOWED'
  | 'CONFLICT'
  | 'TOO_LARGE'
  | 'TOO_MANY_REQUESTS'
  | 'INTERNAL'
  | 'UNAVAILABLE'
  | 'CONFIG'
  | 'PORT_IN_USE'
  | 'INTEGRITY'
  | 'DOWNLOAD'
  | 'INSTALL'
  | 'HEALTH_CHECK'
  | 'TIMEOUT';

const STATUS: Record<ErrorCode, number> = {
  BAD_REQUEST: 400,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  CONFLICT: 409,
  TOO_LARGE: 413,
  TOO_MANY_REQUESTS: 429,
  INTERNAL: 500,
  // a part the server depends on (the artifact storage, the database) cannot be reached now:
  // the request was fine and may succeed as it is, later (RFC 9110 §15.6.4)
  UNAVAILABLE: 503,
  CONFIG: 500,
  PORT_IN_USE: 500,
  INTEGRITY: 500,
  DOWNLOAD: 500,
  INSTALL: 500,
  HEALTH_CHECK: 500,
  TIMEOUT: 504,
};

/** Base error: a code, a message that says what was wrong and what to do, an optional cause. */
export class UpdraftError extends Error {
  readonly code: ErrorCode;
  readonly status: number;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown; status?: number }) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'UpdraftError';
    this.code = code;
    this.status = options?.status ?? STATUS[code];
  }
}

/**
 * Turns anything thrown into an UpdraftError, keeping the original as `cause`: UNAVAILABLE
 * when it says a dependency could not be reached (`isUnreachable`), also when a part wrapped
 * such a failure as INTERNAL (the PostgreSQL store's "PostgreSQL: connect ECONNREFUSED");
 * INTERNAL otherwise.
 */
export function asUpdraftError(err: unknown): UpdraftError {
  if (err instanceof UpdraftError) {
    return err.code === 'INTERNAL' && err.cause !== undefined && isUnreachable(err.cause) ? new UpdraftError('UNAVAILABLE', err.message, { cause: err }) : err;
  }
  const message = err instanceof Error ? err.message : String(err);
  return new UpdraftError(isUnreachable(err) ? 'UNAVAILABLE' : 'INTERNAL', message, { cause: err });
}

/**
 * Seconds a client is asked to wait before trying a request refused as UNAVAILABLE again
 * (HTTP `Retry-After`, RFC 9110 §10.2.3). Short: an outage of the storage or the database
 * is as often a few seconds (a failover, a restart) as minutes, and a client that is refused
 * again backs off on its own (the agent doubles its pause, up to 30 s, with jitter).
 */
export const UNAVAILABLE_RETRY_AFTER_SECONDS = 5;

/** Socket and DNS failures (Node's errno codes and undici's): nothing answered, or the answer was cut. */
const NETWORK_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'EHOSTDOWN', 'ENETUNREACH', 'ENETDOWN', 'ENOTFOUND', 'EAI_AGAIN',
  'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED',
]);

/** The AWS SDK's names for a request that got no answer in time, or a store that asks to be called later. */
const SDK_NAMES = new Set(['TimeoutError', 'RequestTimeout', 'RequestTimeoutException', 'ServiceUnavailable', 'SlowDown', 'InternalError', 'ThrottlingException']);

/**
 * HTTP statuses of a store's own answer that may pass: 500 internal error, 502 bad gateway,
 * 503 unavailable (S3's SlowDown too), 504 gateway timeout. Not every 5xx: 501 NotImplemented
 * (a feature the store lacks), 505 or 507 get the same answer however often asked.
 */
const PASSING_HTTP = new Set([500, 502, 503, 504]);

/**
 * PostgreSQL (Appendix A, class 08 and 57): the connection failures of class 08 (08000
 * connection_exception, 08003 connection_does_not_exist, 08006 connection_failure, 08001
 * sqlclient_unable_to_establish_sqlconnection, 08004
 * sqlserver_rejected_establishment_of_sqlconnection), 57P01-57P03 (the server shutting down,
 * crashed, or not accepting connections yet: a restart or a failover) and 53300 (too many
 * connections); and what node-postgres says, without a code, of a session that ended under a
 * query or a pool that found no connection in time. Not the rest of class 08: 08P01
 * protocol_violation is a fault of the client or a proxy, and 08007
 * transaction_resolution_unknown leaves a write's outcome unknown, not to be sent again blindly.
 */
const PG_STATES = new Set(['08000', '08003', '08006', '08001', '08004', '57P01', '57P02', '57P03', '53300']);
const PG_MESSAGES = new Set(['Connection terminated unexpectedly', 'Connection terminated', 'timeout exceeded when trying to connect', 'Client has encountered a connection error and is not queryable']);

/**
 * True when `err`, or an error it wraps (`cause`, a few levels down), says that a dependency
 * (the S3 bucket, PostgreSQL, any peer over the network) could not be reached or did not
 * answer in time, or answered with a server error of its own that may pass (an S3 500, 502,
 * 503 or 504): a failure that may pass without anything being changed. A refusal (S3's 403
 * AccessDenied, a PostgreSQL constraint), a permanent fault of the peer (S3's 501
 * NotImplemented, PostgreSQL's 08P01 protocol_violation) or a fault of ours (a full disk, a
 * bug) is not one: retrying does not fix those.
 */
export function isUnreachable(err: unknown): boolean {
  let e: unknown = err;
  for (let depth = 0; depth < 5 && e !== null && typeof e === 'object'; depth++) {
    const x = e as { code?: unknown; name?: unknown; message?: unknown; $metadata?: { httpStatusCode?: number }; cause?: unknown };
    if (x instanceof UpdraftError) {
      if (x.code === 'UNAVAILABLE') return true;
    } else {
      if (typeof x.code === 'string' && (NETWORK_CODES.has(x.code) || PG_STATES.has(x.code))) return true;
      if (typeof x.name === 'string' && SDK_NAMES.has(x.name)) return true;
      const http = x.$metadata?.httpStatusCode;
      if (typeof http === 'number' && PASSING_HTTP.has(http)) return true;
      if (typeof x.message === 'string' && PG_MESSAGES.has(x.message)) return true;
    }
    e = x.cause;
  }
  return false;
}

/**
 * What a device (or anyone who is not an operator) is told of a failure: the reason of a
 * refusal (4xx), which says what to change, and of a fault of the server (5xx) only that it
 * was one and that it may be tried again. The fault's own text, which can name files, tables,
 * hosts or a library's internals, is for the server's log and its operators.
 */
export function publicMessage(e: UpdraftError): string {
  if (e.code === 'UNAVAILABLE') return `unavailable (${e.status}): the server cannot reach its storage just now; try again in ${UNAVAILABLE_RETRY_AFTER_SECONDS} s`;
  return e.status >= 500 ? `internal error (${e.status}): the server could not answer; try again later` : e.message;
}
