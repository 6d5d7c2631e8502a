/**
 * A TCP port free right now on 127.0.0.1 (for restarts that must reuse the same port), taken
 * below Linux's ephemeral range (32768-60999). A port the kernel gave out (`listen(0)`) is in
 * that range, and while its server was down for a restart, a client reconnecting to it could
 * be given the same number as its own local port: a TCP self-connect, which holds the port,
 * and the restart failed with EADDRINUSE (a CI failure of the simulator's broker-gone test).
 */
import net from 'node:net';

const LOW = 20_000;
const HIGH = 32_767;

export async function freePort(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const port = LOW + Math.floor(Math.random() * (HIGH - LOW + 1));
    const free = await new Promise<boolean>((resolve) => {
      const s = net.createServer();
      s.once('error', () => resolve(false));
      s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
    });
    if (free) return port;
  }
  throw new Error(`no free port found between ${LOW} and ${HIGH}`);
}
