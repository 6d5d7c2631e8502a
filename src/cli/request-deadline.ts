/**
 * The time limit of one API request (`ApiOptions.requestTimeoutMs`, `mosquitto-config --watch
 * --request-timeout-seconds`): fetch's own limits are undici's, 300 s for the answer's head
 * and 300 s between two pieces of its body, so a server, or a proxy in front of it, that took
 * the connection and never answered held the caller that long.
 *
 * Two waits of `ms` each, one after the other, on one AbortSignal given to fetch:
 * - from the start to the answer's head (connecting, sending, the server's work): the whole
 *   wait, since nothing comes back before the head;
 * - then between two pieces of the body (`touch()` at each): an idle limit, not a total one.
 *   The CRL's list is ~66 bytes per revoked certificate, about 60 MB of JSON at 1,000,000: a
 *   total limit of 30 s would cut a slow but working link (60 MB in 30 s is 16 Mbit/s) and
 *   the watch would fetch it again and again, never finishing; a body that keeps coming is
 *   never cut, one that stops for `ms` is.
 */

/** One request's limit; `clear()` once the body is read, or the request failed. */
export interface RequestDeadline {
  /** Aborted when a wait ran out. */
  readonly signal: AbortSignal;
  /** Whether a wait ran out (the request's failure is the timeout's, not the network's). */
  readonly expired: boolean;
  /** A piece of the body came: the wait starts again. */
  touch(): void;
  clear(): void;
}

/** Starts the limit of one request now: the first wait (to the answer's head) runs from here. */
export function startRequestDeadline(ms: number): RequestDeadline {
  const ctl = new AbortController();
  let expired = false;
  const arm = () =>
    setTimeout(() => {
      expired = true;
      ctl.abort(new Error(`no answer within ${ms} ms`));
    }, ms);
  let timer = arm();
  return {
    signal: ctl.signal,
    get expired() {
      return expired;
    },
    touch() {
      clearTimeout(timer);
      if (!expired) timer = arm();
    },
    clear() {
      clearTimeout(timer);
    },
  };
}

/**
 * The body of `res` as text, each piece restarting `deadline`'s wait (an idle limit: a large
 * body that keeps coming is read whatever it takes). Decoded as `Response.text()` does (UTF-8,
 * a BOM dropped).
 */
export async function readTextWithin(res: Response, deadline: RequestDeadline): Promise<string> {
  if (res.body === null) return '';
  const chunks: Uint8Array[] = [];
  for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
    deadline.touch();
    chunks.push(chunk);
  }
  return new TextDecoder().decode(Buffer.concat(chunks));
}
