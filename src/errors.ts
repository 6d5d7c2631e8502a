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

/** Turns anything thrown into an UpdraftError, keeping the original as `cause`. */
export function asUpdraftError(err: unknown): UpdraftError {
  if (err instanceof UpdraftError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new UpdraftError('INTERNAL', message, { cause: err });
}

/**
 * What a device (or anyone who is not an operator) is told of a failure: the reason of a
 * refusal (4xx), which says what to change, and of a fault of the server (5xx) only that it
 * was one and that it may be tried again. The fault's own text, which can name files, tables,
 * hosts or a library's internals, is for the server's log and its operators.
 */
export function publicMessage(e: UpdraftError): string {
  return e.status >= 500 ? `internal error (${e.status}): the server could not answer; try again later` : e.message;
}
