/**
 * Connections refused at the process's open-file limit (RLIMIT_NOFILE, `ulimit -n`), said in
 * the log and counted.
 *
 * At the limit the kernel refuses accept() with EMFILE, and Node (libuv 1.46, Node 20) says
 * nothing of it: libuv closes a file it keeps in reserve, accepts the waiting connections and
 * closes them at once, then takes its reserve back; no `error`, no `connection` event reaches
 * JavaScript. Measured with a real server under `ulimit -n 256`: of 300 MQTT connections 75
 * were opened and closed by the server with no line in its log and no count. (When libuv
 * cannot take its reserve back, the connections wait in the backlog unaccepted while the loop
 * polls the listening socket without pause: still nothing in JavaScript.)
 *
 * So the server refuses first, while it can still tell: Linux gives a new file the lowest free
 * number, so an accepted socket numbered `limit - reserved` or more means fewer than
 * `reserved` files are left for everything else (the store, artifacts being read, uploads,
 * logs). Such a connection is closed at once, counted, and logged: the first of a burst at
 * once, the others counted and written when 10 s have passed (ThrottledLog). What is not a
 * connection can still open its files meanwhile, where it failed with EMFILE before.
 */
import { readFileSync } from 'node:fs';
import type net from 'node:net';
import { ThrottledLog } from './log-throttle.ts';
import type { Logger } from './logger.ts';

/** The soft limit on open files from /proc/self/limits; undefined where it cannot be read (not Linux) or is unlimited. */
export function openFileLimit(read: () => string = () => readFileSync('/proc/self/limits', 'utf8')): number | undefined {
  let text: string;
  try {
    text = read();
  } catch {
    return undefined;
  }
  const m = /^Max open files\s+(\d+|unlimited)\s/m.exec(text);
  if (!m || m[1] === 'unlimited') return undefined;
  return Number(m[1]);
}

/** Files kept free for what is not a connection: an eighth of the limit, 8 to 128. */
export function reservedFiles(limit: number): number {
  return Math.min(128, Math.max(8, Math.floor(limit / 8)));
}

/** The file number of an accepted socket (Node's handle; undefined where it has none, e.g. Windows). */
function fdOf(socket: net.Socket): number | undefined {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

/** Options of a FileLimitGate. */
export interface FileLimitGateOptions {
  logger: Logger;
  /** The listener, as the log line names it (`mqtt`, `mqtts`, `http`). */
  listener: string;
  /** The open-file limit; read from the system when absent; undefined: none known, nothing refused. */
  limit?: number | undefined;
  /** The interval of the log lines (10 s). */
  intervalMs?: number;
  /**
   * How many `reservedFiles` this listener leaves free (1). The MQTT listeners leave two: a
   * fleet of idle connections then stops where the HTTP listener (the operator's API, its
   * metrics, the downloads) still has `reservedFiles` of its own, so the operator can see and
   * act on what happens; with one cut-off for all, devices' connections took the last file
   * and every API request was refused (review).
   */
  reserveFactor?: number;
}

/** Refuses a listener's connections that would leave the process fewer than `reservedFiles` free files. */
export class FileLimitGate {
  /** Connections refused since start. */
  refused = 0;
  private readonly listener: string;
  private readonly limit: number | undefined;
  private readonly reserved: number;
  private readonly log: ThrottledLog;
  /** The sockets refused, for a TLS listener whose handshake then fails (`refusedSocket`). */
  private readonly refusedSockets = new WeakSet<object>();

  constructor(opts: FileLimitGateOptions) {
    this.listener = opts.listener;
    this.limit = 'limit' in opts ? opts.limit : openFileLimit();
    this.reserved = this.limit === undefined ? 0 : reservedFiles(this.limit) * (opts.reserveFactor ?? 1);
    // the count's line says where the last one came from
    this.log = new ThrottledLog(opts.logger, opts.intervalMs ?? 10_000, Date.now, ['listener', 'limit', 'lastFrom']);
  }

  /** True when `socket` may be served; false when it was refused (closed, counted and logged). */
  admit(socket: net.Socket): boolean {
    if (this.limit === undefined) return true;
    const fd = fdOf(socket);
    if (fd === undefined || fd < this.limit - this.reserved) return true;
    this.refused++;
    this.refusedSockets.add(socket);
    const lastFrom = socket.remoteAddress ?? '';
    socket.destroy();
    this.log.warn('connections refused: the process is at its open-file limit; raise it (ulimit -n, LimitNOFILE)', { listener: this.listener, limit: this.limit, reserved: this.reserved, lastFrom });
    return false;
  }

  /** True when `socket` (a TLS socket's underlying one) was refused here. */
  refusedSocket(socket: unknown): boolean {
    return typeof socket === 'object' && socket !== null && this.refusedSockets.has(socket);
  }

  /** Writes the count of the lines left out, if any (the listener stops). */
  close(): void {
    this.log.close();
  }
}
