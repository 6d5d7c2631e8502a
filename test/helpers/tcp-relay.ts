/**
 * A TCP relay to a real server (PostgreSQL, mostly) on a port of its own, for tests of what a
 * dependency's outage does to Updraft: `down()` refuses new connections and closes those it
 * carries (a server stopped or restarted), `up()` carries them again on the same port; `hang()`
 * keeps every connection open and writable but forwards nothing, neither bytes nor closes (a
 * network partition that drops packets, a stuck server), and `resume()` delivers what it held,
 * in order, as TCP does once a partition heals (a close made meanwhile reaches the server
 * then, which frees that session's locks).
 */
import net from 'node:net';
import { freePort } from './free-port.ts';

export interface TcpRelay {
  readonly port: number;
  /** Connections accepted so far. */
  readonly connections: number;
  down(): Promise<void>;
  up(): Promise<void>;
  hang(): void;
  resume(): void;
  /** Closes everything; the relay is done. */
  stop(): Promise<void>;
}

/** Starts a relay to `target`, carrying connections. */
export async function startRelay(target: { host: string; port: number }): Promise<TcpRelay> {
  const port = await freePort();
  const sockets = new Set<net.Socket>();
  let server: net.Server | undefined;
  let held: (() => void)[] | undefined;
  let connections = 0;
  const later = (fn: () => void) => (held ? held.push(fn) : fn());
  const closeAll = async () => {
    const s = server;
    server = undefined;
    held = undefined;
    for (const socket of sockets) socket.destroy();
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
  };
  const relay: TcpRelay = {
    port,
    get connections() {
      return connections;
    },
    async up(): Promise<void> {
      if (server) return;
      const s = net.createServer((client) => {
        connections++;
        const upstream = net.connect(target.port, target.host);
        for (const [a, b] of [[client, upstream], [upstream, client]] as const) {
          sockets.add(a);
          a.on('data', (chunk) => later(() => b.write(chunk)));
          a.on('error', () => later(() => b.destroy()));
          a.on('close', () => {
            sockets.delete(a);
            later(() => b.destroy());
          });
        }
      });
      await new Promise<void>((resolve, reject) => s.once('error', reject).listen(port, '127.0.0.1', () => resolve()));
      server = s;
    },
    down: closeAll,
    hang(): void {
      held ??= [];
    },
    resume(): void {
      const queued = held ?? [];
      held = undefined;
      for (const fn of queued) fn();
    },
    stop: closeAll,
  };
  await relay.up();
  return relay;
}
