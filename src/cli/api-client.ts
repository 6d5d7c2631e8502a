/**
 * The CLI's client of the operator REST API. Finds the server (`--server`, UPDRAFT_SERVER,
 * default http://127.0.0.1:8080) and the token (`--token`, UPDRAFT_TOKEN, or the token file
 * the server wrote into its data directory). A read (GET) waits through answers the server
 * cannot give for now (429, 502, 503, 504) for up to UPDRAFT_RETRY_FOR seconds. A creation
 * sent with an Idempotency-Key is sent again, with the key, when no answer came (`CallOptions.idempotencyKey`).
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { retryAfterMs } from '../agent/downloader.ts';
import { UpdraftError } from '../errors.ts';
import { operatorTokenPath } from '../server/operator-token.ts';
import { clipped, safeUrl } from '../util/redact-url.ts';
import { MIN_BODY_BYTES_PER_SECOND, readTextWithin, startRequestDeadline, type DeadlineExpiry } from './request-deadline.ts';

/** Connection options shared by every API command. */
export interface ApiOptions {
  server?: string;
  token?: string;
  dataDir?: string;
  /** How long a GET waits through passing answers, in ms, instead of UPDRAFT_RETRY_FOR's (`updraft doctor`: 0). */
  retryForMs?: number;
  /**
   * Each request's time limit, in ms (request-deadline.ts): to the answer's head, then between
   * two pieces of its body, and a floor on the body's rate (8 KiB/s over twice the limit);
   * none (the default): undici's 300 s each, and no floor. `mosquitto-config --watch`
   * (--request-timeout-seconds): a server that never answers must not hold up its passes.
   */
  requestTimeoutMs?: number;
  /**
   * Ends every request in flight, and any started after (the watch's stop: SIGTERM): the call
   * throws at once, its message saying it was stopped, not a timeout or the network.
   */
  signal?: AbortSignal;
}

/** Options of one call. */
export interface CallOptions {
  /** A GET waits through answers the server cannot give for now (default true); `job watch` says false, as it waits on its own terms. */
  retry?: boolean;
  /**
   * Sent as the `Idempotency-Key` header of a creation (`POST /api/v1/jobs`, `/deployments`):
   * the call then sends the same request again, with the same key, when no answer came (the
   * connection dropped or could not be made) or a proxy answered for the server (502, 503, 504),
   * at most CREATE_TRIES times in all; while the key's first try is still creating (409 with
   * Retry-After) it asks again for up to CREATE_IN_PROGRESS_MS, those answers not counted as
   * tries: the server creates one job for the key whatever the tries (docs/api.md).
   */
  idempotencyKey?: string;
  /** More request headers (`If-None-Match`: the CRL's digest held, cli/mosquitto-crl.ts); an answer not 2xx, 304 included, is an error with its `status`. */
  headers?: Record<string, string>;
}

/** Tries of a creation sent with an Idempotency-Key, the first included. */
export const CREATE_TRIES = 4;
/** The pause before a creation's second try; doubled for each next one (with jitter): 0.5, 1, 2 s. */
const CREATE_PAUSE_MS = 500;
/**
 * How long a creation asks again while the server answers that the key's job is still being
 * created (409 with Retry-After): a job of a million devices is created in pieces for 5-9 s,
 * which 4 tries (about 4-5 s) did not cover.
 */
export const CREATE_IN_PROGRESS_MS = 60_000;

/**
 * Answers that say "not now" rather than "no": the server busy (429, RFC 6585 §4), a proxy
 * without an upstream (502, 504), the server or its database down for now (503, RFC 9110 §15.6.4).
 */
export const PASSING_STATUSES: ReadonlySet<number> = new Set([429, 502, 503, 504]);

/** Seconds a read waits through passing answers unless UPDRAFT_RETRY_FOR says otherwise. */
export const DEFAULT_RETRY_FOR_SECONDS = 30;
/** The longest single pause, whatever `Retry-After` asks: the bound, not the server, sets the total. */
const MAX_PAUSE_MS = 10_000;
/** The shortest: a `Retry-After: 0` must not make a busy loop. */
const MIN_PAUSE_MS = 250;

/**
 * One request's outcome: its JSON (`replayed`: answered with `Idempotent-Replayed: true`), or its
 * error and whether (and after how long) to try again; `unanswered`: no answer came (no
 * connection, or one closed before the answer was read), `sendAgain`: a keyed creation may be sent again.
 */
type Attempt<T> = { ok: true; value: T; replayed: boolean } | { ok: false; error: UpdraftError; passing: boolean; pauseMs: number; sendAgain: boolean; inProgress?: boolean };

/**
 * The server's URL for every command that talks to it: `--server`, else UPDRAFT_SERVER (an
 * empty variable is one not set), else http://127.0.0.1:8080, without trailing slashes. One
 * that is no http(s) URL is bad input, BAD_REQUEST (exit code 2) in one line naming the
 * option or the variable, the URL shown without its password: it was a server unreachable
 * (exit 1, 'cannot reach the Updraft server at notaurl: Invalid URL; is it running ...', config
 * QA). So is one with a user or password, which fetch refuses to send ('Request cannot be
 * constructed from a URL that includes credentials', the password quoted twice): the operator
 * token is --token.
 */
export function serverUrl(server: string | undefined): string {
  const url = (server ?? (process.env.UPDRAFT_SERVER || 'http://127.0.0.1:8080')).replace(/\/+$/, '');
  const name = server === undefined ? '--server (env UPDRAFT_SERVER)' : '--server';
  const shown = JSON.stringify(clipped(safeUrl(url), 200));
  const parsed = URL.canParse(url) ? new URL(url) : undefined;
  if (!parsed || !/^https?:$/.test(parsed.protocol)) throw new UpdraftError('BAD_REQUEST', `${name} must be the server's http or https URL (http://host:8080), got ${shown}`);
  if (parsed.username !== '' || parsed.password !== '') {
    throw new UpdraftError('BAD_REQUEST', `${name} must be the server's URL without a user or password (the operator token is given with --token or UPDRAFT_TOKEN), got ${shown}`);
  }
  return url;
}

/** A small JSON client; every failure becomes an UpdraftError with a readable message. */
export class ApiClient {
  readonly baseUrl: string;
  /** The operator token in use. */
  readonly token: string;
  /** How long a GET waits through passing answers, in ms (UPDRAFT_RETRY_FOR; 0: not at all). */
  readonly retryForMs: number;
  /** Each request's time limit in ms (`ApiOptions.requestTimeoutMs`); undefined: undici's own. */
  readonly requestTimeoutMs: number | undefined;
  /** `ApiOptions.signal`. */
  private readonly signal: AbortSignal | undefined;
  /** Whether the server ever answered this client: only then is "no connection" a server down for now. */
  private reached = false;

  constructor(opts: ApiOptions) {
    // an empty variable (UPDRAFT_TOKEN= in a unit file or a script) is one not set
    this.baseUrl = serverUrl(opts.server);
    this.retryForMs = opts.retryForMs ?? retryForMs(process.env.UPDRAFT_RETRY_FOR);
    this.requestTimeoutMs = opts.requestTimeoutMs;
    this.signal = opts.signal;
    this.token = opts.token ?? (process.env.UPDRAFT_TOKEN || readTokenFile(opts.dataDir ?? (process.env.UPDRAFT_DATA_DIR || './data')));
  }

  /**
   * Calls the API; `body` is JSON unless it is a stream or buffer (sent as bytes). A GET, which
   * changes nothing and can be sent again, waits through passing answers (honouring
   * `Retry-After`), and through no connection once the server was reached, for up to
   * `retryForMs`, saying so once on stderr; then fails with the server's message. Other methods
   * never repeat: their effect may have happened although the answer says otherwise; except a
   * creation with `opts.idempotencyKey`, which the server makes once whatever the tries.
   */
  async call<T>(method: string, route: string, body?: unknown, opts: CallOptions = {}): Promise<T> {
    if (opts.idempotencyKey !== undefined) return this.createOnce<T>(method, route, body, opts.idempotencyKey);
    const waits = method.toUpperCase() === 'GET' && opts.retry !== false;
    const deadline = Date.now() + this.retryForMs;
    let said = false;
    for (;;) {
      const a = await this.attempt<T>(method, route, body, opts.headers);
      if (a.ok) return a.value;
      const left = deadline - Date.now();
      if (!waits || !a.passing || left <= 0) throw a.error;
      if (!said) process.stderr.write(`updraft: the server cannot answer for now (${a.error.message}); trying again for up to ${this.retryForMs / 1000} s\n`);
      said = true;
      await sleep(Math.min(a.pauseMs, left));
    }
  }

  /**
   * A creation sent with `Idempotency-Key: key` and sent again with it while no answer came
   * (`CallOptions.idempotencyKey`), saying so on stderr, and, when the answer is the job an
   * earlier try created, that too. A server not running (refused before it was ever reached)
   * or an untrusted certificate is said at once: no try reached the server.
   */
  private async createOnce<T>(method: string, route: string, body: unknown, key: string): Promise<T> {
    let retried = false;
    // when the server first said the key's job is being created (those answers are not tries)
    let creatingSince: number | undefined;
    for (let tried = 1; ; tried++) {
      const a = await this.attempt<T>(method, route, body, { 'idempotency-key': key });
      if (a.ok) {
        if (retried && a.replayed) process.stderr.write(`updraft: an earlier try had created it; this is that job (Idempotent-Replayed), none other was created\n`);
        return a.value;
      }
      if (a.inProgress) {
        tried--;
        const now = Date.now();
        creatingSince ??= now;
        const left = creatingSince + CREATE_IN_PROGRESS_MS - now;
        if (left <= 0) {
          // not bad input (exit 1, not 2): the same command later gets the job
          throw new UpdraftError(
            'UNAVAILABLE',
            `the job of Idempotency-Key ${key} is still being created (the server said so for ${Math.round((now - creatingSince) / 1000)} s): run the same command again with --idempotency-key ${key} to get its answer (it creates one job at most), or look with: updraft job list`,
            { cause: a.error },
          );
        }
        if (now === creatingSince) process.stderr.write(`updraft: the job of Idempotency-Key ${key} is being created (by an earlier try, or another request with the key); asking for it again for up to ${CREATE_IN_PROGRESS_MS / 1000} s\n`);
        retried = true;
        await sleep(Math.min(a.pauseMs, MAX_PAUSE_MS, left));
        continue;
      }
      if (!a.sendAgain || tried >= CREATE_TRIES) {
        if (retried) process.stderr.write(`updraft: ${tried} tries with Idempotency-Key ${key} got no answer; whether it was created is not known: send it again with --idempotency-key ${key} (it creates one job at most), or look with: updraft job list\n`);
        throw a.error;
      }
      const pause = Math.max(a.pauseMs, CREATE_PAUSE_MS * 2 ** (tried - 1) * (1 + Math.random() / 2));
      process.stderr.write(`updraft: no answer to ${method} ${route} (${a.error.message}); sending it again with the same Idempotency-Key ${key}, which creates one job at most (try ${tried + 1} of ${CREATE_TRIES})\n`);
      retried = true;
      await sleep(Math.min(pause, MAX_PAUSE_MS));
    }
  }

  private async attempt<T>(method: string, route: string, body?: unknown, extraHeaders: Record<string, string> = {}): Promise<Attempt<T>> {
    const isBytes = body instanceof Uint8Array || (typeof body === 'object' && body !== null && 'pipe' in body);
    let res: Response;
    let text: string;
    const deadline = this.requestTimeoutMs === undefined && this.signal === undefined ? undefined : startRequestDeadline(this.requestTimeoutMs, this.signal);
    try {
      res = await fetch(this.baseUrl + route, {
        method,
        headers: {
          authorization: `Bearer ${this.token}`,
          ...(body === undefined ? {} : { 'content-type': isBytes ? 'application/octet-stream' : 'application/json' }),
          ...extraHeaders,
        },
        ...(body === undefined ? {} : { body: isBytes ? (body as BodyInit) : JSON.stringify(body), duplex: 'half' }),
        ...(deadline ? { signal: deadline.signal } : {}),
      } as RequestInit);
    } catch (err) {
      deadline?.clear();
      if (deadline?.stopped) throw this.stopped(method, route, err);
      if (deadline?.expired) return this.timedOut(method, route, deadline.expiry!, err);
      // UNAVAILABLE (503): a watch waits through it (job-watch.ts); the exit code stays 1. Not
      // reached yet, it is a server not running, a wrong URL or an untrusted certificate: waiting
      // mends none of them
      const error = new UpdraftError('UNAVAILABLE', `cannot reach the Updraft server at ${this.baseUrl}: ${whyUnreachable(err)}`, { cause: err });
      return { ok: false, error, passing: this.reached, pauseMs: defaultPause(), sendAgain: mayHaveArrived(err, this.reached) };
    }
    this.reached = true;
    try {
      text = deadline ? await readTextWithin(res, deadline) : await res.text();
    } catch (err) {
      if (deadline?.stopped) throw this.stopped(method, route, err);
      if (deadline?.expired) return this.timedOut(method, route, deadline.expiry!, err);
      // the connection closed while the answer came: the request was handled, its answer lost
      const error = new UpdraftError('UNAVAILABLE', `the connection to ${this.baseUrl} closed before the answer was read: ${whyUnreachable(err)}`, { cause: err });
      return { ok: false, error, passing: true, pauseMs: defaultPause(), sendAgain: true };
    } finally {
      deadline?.clear();
    }
    let parsed: unknown;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = undefined;
    }
    if (!res.ok) {
      const message = (parsed as { error?: { message?: string } } | undefined)?.error?.message ?? `HTTP ${res.status}`;
      const error = new UpdraftError('INTERNAL', message, { status: res.status });
      // a proxy's answer for a server it did not reach (or whose answer it lost), and a key's first try still creating (409 with Retry-After)
      const inProgress = res.status === 409 && res.headers.has('retry-after');
      const sendAgain = UNANSWERED_STATUSES.has(res.status) || inProgress;
      return { ok: false, error, passing: PASSING_STATUSES.has(res.status), pauseMs: pauseFor(res.headers.get('retry-after'), res.headers.get('date')), sendAgain, inProgress };
    }
    return { ok: true, value: parsed as T, replayed: res.headers.get('idempotent-replayed') === 'true' };
  }

  /**
   * A request cut by its time limit (`requestTimeoutMs`): UNAVAILABLE, one line naming the
   * method, the route's path (not its query: a page's ids) and the limit; never the token,
   * which is sent in a header. It may have reached the server: a GET may be sent again, and
   * within `retryForMs` is (a server that cannot answer for now).
   */
  private timedOut<T>(method: string, route: string, expiry: DeadlineExpiry, cause: unknown): Attempt<T> {
    const limit = `the request timeout of ${this.requestTimeoutMs! / 1000} s`;
    const from = safeUrl(this.baseUrl);
    const what =
      expiry === 'head'
        ? `no answer from ${from} within ${limit}`
        : expiry === 'idle'
          ? `the answer from ${from} stopped coming for ${limit}`
          : `the answer from ${from} came slower than ${MIN_BODY_BYTES_PER_SECOND / 1024} KiB/s over twice ${limit}`;
    const error = new UpdraftError('UNAVAILABLE', `${method.toUpperCase()} ${route.split('?')[0]}: ${what}`, { cause });
    return { ok: false, error, passing: true, pauseMs: defaultPause(), sendAgain: true };
  }

  /** A request ended by `ApiOptions.signal`: thrown, never tried again (the caller is ending). */
  private stopped(method: string, route: string, cause: unknown): UpdraftError {
    return new UpdraftError('UNAVAILABLE', `${method.toUpperCase()} ${route.split('?')[0]}: stopped (the command is ending)`, { cause });
  }
}

/**
 * The Idempotency-Key of a creation command (`job create`, `deploy`): `--idempotency-key` as
 * given (a script's own, the same when the script runs again), else a fresh random one.
 */
export function creationKey(given: string | undefined): string {
  if (given === undefined) return randomUUID();
  // the server's rule (http/idempotency-key.ts), said before anything is sent
  if (!/^[\x21-\x7e]{1,255}$/.test(given)) throw new UpdraftError('BAD_REQUEST', `--idempotency-key must be 1 to 255 visible ASCII characters (no spaces), e.g. a UUID; got "${given}"`);
  return given;
}

/** UPDRAFT_RETRY_FOR in ms: seconds, 0 or more (0: never wait); unset or empty, the default. */
export function retryForMs(value: string | undefined): number {
  if (value === undefined || value.trim() === '') return DEFAULT_RETRY_FOR_SECONDS * 1000;
  if (!/^\d+(\.\d+)?$/.test(value.trim())) {
    throw new UpdraftError('BAD_REQUEST', `UPDRAFT_RETRY_FOR must be the seconds a read waits for a server that cannot answer for now, 0 or more (0: not at all), not "${value}"`);
  }
  return Math.round(Number(value) * 1000);
}

/** The pause a `Retry-After` asks for (the agent's reading of it: seconds, or an HTTP date by the server's clock), within 0.25 to 10 s; 1 to 2 s without one. */
function pauseFor(header: string | null, date: string | null): number {
  const ms = retryAfterMs(header, date);
  return ms === undefined ? defaultPause() : Math.min(MAX_PAUSE_MS, Math.max(MIN_PAUSE_MS, ms));
}

/** 1 to 2 s: jitter, so that scripts refused at once do not all come back at once. */
function defaultPause(): number {
  return 1000 + Math.random() * 1000;
}

function readTokenFile(dataDir: string): string {
  const file = operatorTokenPath(path.resolve(dataDir));
  try {
    return readFileSync(file, 'utf8').trim();
  } catch {
    throw new UpdraftError('UNAUTHORIZED', `no operator token: set UPDRAFT_TOKEN or --token, or run in the directory of the server's data dir (${file} not found)`);
  }
}

/** Answers of a proxy (a load balancer) that got none from the server: a keyed creation is sent again. */
const UNANSWERED_STATUSES: ReadonlySet<number> = new Set([502, 503, 504]);

/**
 * Whether a request that got no answer may have reached the server: not when the connection
 * was refused by a server never reached (not running, a wrong URL) or the certificate is not
 * trusted; otherwise (reset, closed, timed out) it may have been handled.
 */
function mayHaveArrived(err: unknown, reached: boolean): boolean {
  const code = (err as { cause?: { code?: string } } | undefined)?.cause?.code ?? '';
  if (UNTRUSTED.has(code)) return false;
  return reached || code !== 'ECONNREFUSED';
}

/** TLS errors of a certificate the client does not trust (Node's codes). */
const UNTRUSTED = new Set(['UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'CERT_HAS_EXPIRED', 'ERR_TLS_CERT_ALTNAME_INVALID']);

/**
 * Why a request got no answer, from fetch's cause (fetch itself only says "fetch failed"): a
 * refused connection is a server not running; an untrusted certificate, or anything else, is
 * named, since "is it running?" would send the operator after a server that is up.
 */
export function whyUnreachable(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } } | undefined)?.cause;
  const code = cause?.code ?? '';
  if (code === 'ECONNREFUSED') return 'is it running? (npm start)';
  if (UNTRUSTED.has(code)) return `its TLS certificate is not trusted (${cause?.message ?? code}); for Updraft's own CA, set NODE_EXTRA_CA_CERTS=<data-dir>/pki/ca.crt`;
  return `${cause?.message ?? (err as Error | undefined)?.message ?? String(err)}; is it running, and is the URL right (http or https)?`;
}
