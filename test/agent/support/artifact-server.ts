/**
 * A real HTTP server for artifact downloads in tests, with Range support and misbehaviours on
 * demand: cut the connection halfway, end short, send endless or extra data, tamper a byte,
 * refuse with 403, ignore Range, or stall halfway (for "crash mid-download" tests).
 */
import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/** How the next responses behave. */
export type ServeMode = 'normal' | 'cut' | 'short' | 'endless' | 'oversize-announced' | 'tamper' | 'forbidden' | 'no-range' | 'stall' | 'cut-after-last';

/** One request as the server saw it. */
export interface SeenRequest {
  path: string;
  query: URLSearchParams;
  range: string | undefined;
  /** The bearer token of its `Authorization` header, if any. */
  token: string | undefined;
  status: number;
}

/** Deterministic test content. */
export function testContent(size: number, seed = 1): Buffer {
  const out = Buffer.alloc(size);
  let x = seed;
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    out[i] = x >>> 16;
  }
  return out;
}

/** Hex SHA-256. */
export function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** The artifact HTTP server; `mode` switches its behaviour between requests. */
export class ArtifactServer {
  content: Buffer;
  mode: ServeMode = 'normal';
  /** In 'cut' mode: how many responses are cut before serving normally again. */
  cuts = 1;
  /** Query `sig` values answered with 403 (a revoked or skewed URL). */
  readonly revokedSigs = new Set<string>();
  /** How many of the next requests are refused with `refuseStatus`, whatever their URL (a transient refusal). */
  refuseNext = 0;
  refuseStatus = 403;
  /** Extra headers of those refusals (`Retry-After`). */
  refuseHeaders: Record<string, string> = {};
  readonly requests: SeenRequest[] = [];
  /**
   * Temporary credentials (`Authorization: Bearer <token>`) accepted, and when each expires
   * (seconds); a request with another, or an expired one, is refused with 403.
   */
  readonly tokens = new Map<string, number>();
  /** The server's clock (ms), by which a URL's `exp` and a token's expiry are judged; a test may move it. */
  now: () => number = () => Date.now();
  /**
   * Called as each response starts (its status decided), before the client can read a byte
   * of it: where a test's clock moves while a response is on its way (a slow link).
   */
  onResponse: ((seen: SeenRequest) => void) | undefined;
  /** Bytes written by 'endless' responses, and whether the client hung up on them. */
  endless = { written: 0, closedByClient: false };
  private readonly server: http.Server;
  private readonly sockets = new Set<Socket>();
  private stallWaiters: (() => void)[] = [];
  private stalledCount = 0;

  constructor(content: Buffer) {
    this.content = content;
    this.server = http.createServer((req, res) => this.handle(req, res));
    this.server.on('connection', (s) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
  }

  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  /** A URL of this server; `query` becomes the (signed-looking) query string. */
  url(path = '/v1/download/fw/2.0.0', query: Record<string, string> = { sig: 'valid' }): string {
    return `http://127.0.0.1:${this.port}${path}?${new URLSearchParams(query).toString()}`;
  }

  /** Resolves once a 'stall' response has sent its first half (counting from the first stall). */
  stalled(n = 1): Promise<void> {
    if (this.stalledCount >= n) return Promise.resolve();
    return new Promise((resolve) => this.stallWaiters.push(() => this.stalledCount >= n && resolve()));
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    const u = new URL(req.url ?? '/', 'http://x');
    const range = req.headers.range;
    const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
    const seen: SeenRequest = { path: u.pathname, query: u.searchParams, range, token: bearer, status: 0 };
    this.requests.push(seen);
    const send = (status: number, headers: Record<string, string | number>) => {
      seen.status = status;
      res.writeHead(status, headers);
      this.onResponse?.(seen);
    };
    if (this.refuseNext > 0) {
      this.refuseNext--;
      send(this.refuseStatus, { ...this.refuseHeaders, 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { message: this.refuseStatus === 403 ? 'injected forbidden' : `injected ${this.refuseStatus}` } }));
      return;
    }
    const exp = u.searchParams.get('exp');
    const tokenExp = bearer === undefined ? undefined : (this.tokens.get(bearer) ?? 0);
    const expired = (seconds: number | undefined) => seconds !== undefined && seconds < this.now() / 1000;
    if (this.mode === 'forbidden' || expired(exp === null ? undefined : Number(exp)) || expired(tokenExp) || this.revokedSigs.has(u.searchParams.get('sig') ?? '')) {
      send(403, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { code: 'FORBIDDEN', message: 'download URL has expired; ask for a fresh one' } }));
      return;
    }
    let body = this.content;
    if (this.mode === 'tamper') {
      body = Buffer.from(this.content);
      body[Math.floor(body.length / 2)]! ^= 0xff;
    }
    if (this.mode === 'endless') {
      send(200, { 'content-type': 'application/octet-stream' });
      const chunk = Buffer.alloc(64 * 1024, 7);
      res.on('close', () => (this.endless.closedByClient = !res.writableFinished));
      const pump = () => {
        while (!res.destroyed && res.write(chunk)) this.endless.written += chunk.length;
        if (!res.destroyed) res.once('drain', pump);
      };
      pump();
      return;
    }
    if (this.mode === 'oversize-announced') {
      send(200, { 'content-length': body.length + 100 });
      res.end(Buffer.concat([body, Buffer.alloc(100, 1)]));
      return;
    }
    if (this.mode === 'cut-after-last') {
      // every byte, chunked, then the connection dies before the chunk that ends the body (a
      // server closing an idle connection while a slow client still reads the last bytes)
      send(200, { 'content-type': 'application/octet-stream' });
      res.write(body, () => setTimeout(() => res.socket?.destroy(), 50));
      return;
    }
    if (this.mode === 'short') {
      const half = body.subarray(0, Math.floor(body.length / 2));
      send(200, { 'content-length': half.length });
      res.end(half);
      return;
    }
    let start = 0;
    const m = range && this.mode !== 'no-range' ? /^bytes=(\d+)-$/.exec(range) : null;
    if (m) {
      start = Number(m[1]);
      if (start >= body.length) {
        send(416, { 'content-range': `bytes */${body.length}` });
        res.end();
        return;
      }
      send(206, { 'content-range': `bytes ${start}-${body.length - 1}/${body.length}`, 'content-length': body.length - start, 'accept-ranges': 'bytes' });
    } else {
      send(200, { 'content-length': body.length, 'accept-ranges': 'bytes' });
    }
    const rest = body.subarray(start);
    if (this.mode === 'cut' && this.cuts > 0) {
      this.cuts--;
      // half of what was asked, then the connection dies. A moment after the write, not at
      // once: fetch's body stream drops a chunk still queued when the connection's end errors
      // it (WHATWG streams discard the queue on error), so a chunk and the close read together
      // while the downloader was writing the one before were lost, and a test counting on each
      // cut bringing bytes saw none come (2 runs in 8: 'no progress in 5 s ... 8 attempts')
      res.write(rest.subarray(0, Math.max(1, Math.floor(rest.length / 2))), () => setTimeout(() => res.socket?.destroy(), 50).unref());
      return;
    }
    if (this.mode === 'stall') {
      res.write(rest.subarray(0, Math.max(1, Math.floor(rest.length / 2))), () => {
        this.stalledCount++;
        for (const w of this.stallWaiters) w();
      });
      return;
    }
    res.end(rest);
  }
}
