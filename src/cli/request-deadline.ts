/**
 * The time limit of one API request (`ApiOptions.requestTimeoutMs`, `mosquitto-config --watch
 * --request-timeout-seconds`): fetch's own limits are undici's, 300 s for the answer's head
 * and 300 s between two pieces of its body, so a server, or a proxy in front of it, that took
 * the connection and never answered held the caller that long.
 *
 * Three limits of `ms` each, on one AbortSignal given to fetch:
 * - from the start to the answer's head (connecting, sending, the server's work): the whole
 *   wait, since nothing comes back before the head;
 * - from the head, then between two pieces of the body (`head()`, `piece()`): an idle limit,
 *   the first piece getting a whole wait as every next one does (review of 090236f: it got
 *   what the head had left of its wait);
 * - a floor on the body's rate (curl's --speed-limit/--speed-time): fewer than
 *   MIN_BODY_BYTES_PER_SECOND bytes a second over a window of twice `ms` (windows from the
 *   head, one after the other) and the answer is given up. Twice: a body that stops
 *   altogether is said as stopped (the idle limit, at `ms`), not as slow. Not a total limit: the CRL's list is ~66
 *   bytes per revoked certificate, about 60 MB of JSON at 1,000,000, which a slow but working
 *   link of 1 Mbit/s (125 KB/s) brings in 8 minutes, and a total limit of 30 s would cut it
 *   every time, the watch fetching it again and again. Without a floor, an answer that kept
 *   coming a few bytes at a time, each within the idle limit, was never cut (review of
 *   090236f: 12 bytes every 0.8 of the limit).
 *
 * `stop` (the caller's own end: the watch's SIGTERM) aborts it too, reported as `stopped`,
 * not as a timeout. A listener on it, removed by `clear()`: not AbortSignal.any, which on
 * Node 20 keeps every signal combined with a long-lived one (nodejs/node#55351), one per
 * request for the watch's life.
 */

/**
 * The floor on an answer's body, in bytes a second over each window of the request timeout:
 * 8 KiB/s (64 kbit/s), 16 times below a 1 Mbit/s link, which brings a 60 MB CRL in 8
 * minutes; a few bytes per window is cut after one window.
 */
export const MIN_BODY_BYTES_PER_SECOND = 8 * 1024;

/** Which limit ended a request: none reached its head, the body stopped, or it came slower than the floor. */
export type DeadlineExpiry = 'head' | 'idle' | 'slow';

/** One request's limit; `clear()` once the body is read, or the request failed. */
export interface RequestDeadline {
  /** Aborted when a limit was reached, or `stop` aborted. */
  readonly signal: AbortSignal;
  /** Whether a limit was reached (the request's failure is the timeout's, not the network's). */
  readonly expired: boolean;
  /** Which limit, when `expired`. */
  readonly expiry: DeadlineExpiry | undefined;
  /** Whether the caller's `stop` ended it (not a timeout, not the network). */
  readonly stopped: boolean;
  /** The answer's head came: the body's idle wait and its rate windows start. */
  head(): void;
  /** `bytes` of the body came: the idle wait starts again. */
  piece(bytes: number): void;
  clear(): void;
}

/**
 * Starts the limit of one request now: the first wait (to the answer's head) runs from here;
 * `ms` undefined: no time limit, only `stop`.
 */
export function startRequestDeadline(ms: number | undefined, stop?: AbortSignal): RequestDeadline {
  const ctl = new AbortController();
  let expiry: DeadlineExpiry | undefined;
  let stopped = false;
  let idle: NodeJS.Timeout | undefined;
  let window: NodeJS.Timeout | undefined;
  let bytes = 0;
  const windowMs = ms === undefined ? 0 : 2 * ms;
  const floor = Math.ceil((MIN_BODY_BYTES_PER_SECOND * windowMs) / 1000);
  const timers = () => {
    clearTimeout(idle);
    clearInterval(window);
  };
  const expire = (why: DeadlineExpiry, message: string) => {
    if (ctl.signal.aborted) return;
    expiry = why;
    timers();
    ctl.abort(new Error(message));
  };
  const arm = (why: 'head' | 'idle') => {
    clearTimeout(idle);
    if (ms !== undefined && !ctl.signal.aborted) idle = setTimeout(() => expire(why, why === 'head' ? `no answer within ${ms} ms` : `no piece of the answer within ${ms} ms`), ms);
  };
  const onStop = () => {
    if (ctl.signal.aborted) return;
    stopped = true;
    timers();
    ctl.abort(stop!.reason);
  };
  arm('head');
  if (stop?.aborted) onStop();
  else stop?.addEventListener('abort', onStop, { once: true });
  return {
    signal: ctl.signal,
    get expired() {
      return expiry !== undefined;
    },
    get expiry() {
      return expiry;
    },
    get stopped() {
      return stopped;
    },
    head() {
      arm('idle');
      if (ms === undefined || ctl.signal.aborted) return;
      clearInterval(window);
      window = setInterval(() => {
        if (bytes < floor) expire('slow', `fewer than ${floor} bytes of the answer in ${windowMs} ms`);
        bytes = 0;
      }, windowMs);
    },
    piece(n: number) {
      bytes += n;
      arm('idle');
    },
    clear() {
      timers();
      stop?.removeEventListener('abort', onStop);
    },
  };
}

/**
 * The body of `res` as text within `deadline` (`head()` first, `piece()` at each piece: a large
 * body that keeps coming above the floor is read whatever it takes). Decoded as
 * `Response.text()` does (UTF-8, a BOM dropped).
 */
export async function readTextWithin(res: Response, deadline: RequestDeadline): Promise<string> {
  deadline.head();
  if (res.body === null) return '';
  const chunks: Uint8Array[] = [];
  for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
    deadline.piece(chunk.byteLength);
    chunks.push(chunk);
  }
  return new TextDecoder().decode(Buffer.concat(chunks));
}
