/**
 * An HTTP proxy in front of a real server, for tests of what a client sends and of what a
 * slow answer does: it records each request whose path starts with `watched` (its
 * If-None-Match, the status answered) and how many of them were in flight at once, and
 * `holdNext()` keeps the next such request from the server until `release()` (a slow route).
 * Every other request, the event stream included, is carried through as it comes.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** One request to the watched path. */
export interface ProxiedRequest {
  ifNoneMatch: string | undefined;
  /** The server's status; undefined while it is held or in flight. */
  status?: number;
}

export interface HttpProxy {
  /** The proxy's base URL (http://127.0.0.1:port). */
  readonly url: string;
  /** The watched requests, in the order they came. */
  readonly requests: ProxiedRequest[];
  /** The most watched requests in flight (received, not yet answered) at one time. */
  readonly maxInFlight: number;
  /** Whether a watched request is held now. */
  readonly holding: boolean;
  /** Holds the next watched request (not sent to the server) until `release()`. */
  holdNext(): void;
  /** Sends the held request on; throws when none is held yet (released too early, the next request would be held for ever: wait for `holding`). */
  release(): void;
  close(): Promise<void>;
}

/** Starts a proxy to `target` (a base URL) watching requests whose path starts with `watched`. */
export async function startHttpProxy(target: string, watched: string): Promise<HttpProxy> {
  const to = new URL(target);
  const requests: ProxiedRequest[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  let holdOne = false;
  let held: (() => void) | undefined;
  const server = http.createServer((req, res) => {
    const isWatched = (req.url ?? '').startsWith(watched);
    let record: ProxiedRequest | undefined;
    if (isWatched) {
      const inm = req.headers['if-none-match'];
      record = { ifNoneMatch: Array.isArray(inm) ? inm.join(', ') : inm };
      requests.push(record);
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      res.once('close', () => inFlight--);
    }
    const forward = () => {
      const up = http.request({ host: to.hostname, port: to.port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
        if (record) record.status = answer.statusCode;
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
      });
      up.on('error', () => res.destroy());
      res.once('close', () => up.destroy());
      req.pipe(up);
    };
    if (isWatched && holdOne) {
      holdOne = false;
      held = forward;
    } else forward();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    get maxInFlight() {
      return maxInFlight;
    },
    get holding() {
      return held !== undefined;
    },
    holdNext() {
      holdOne = true;
    },
    release() {
      const h = held;
      if (h === undefined) throw new Error(holdOne ? 'release(): no request held yet (holdNext() is armed: wait for `holding` first)' : 'release(): nothing held (no holdNext())');
      held = undefined;
      h();
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
