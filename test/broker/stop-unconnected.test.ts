/**
 * The embedded broker's stop ends connections that never finished their CONNECT. aedes closes
 * the clients it has admitted; a connection that has sent no CONNECT yet (or whose login was
 * still being checked, or a TLS handshake under way) was left open, and the listener's close
 * waited for it: until aedes's 30 s connect timeout, or for good once aedes had closed. A
 * SIGTERM under a fleet reconnecting hit the server's 30 s stop limit and exited 1 (soak,
 * 2026-12-06: 2 stops of 5 with 3,000 devices).
 *
 * A real server; raw TCP (and TLS) connections that send nothing. The bound waited for, 15 s,
 * is half of aedes's connect timeout: what is checked is that the stop does not wait for it.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it } from 'node:test';
import { startTestServer } from '../helpers/server.ts';

const BOUND_MS = 15_000;
const settles = (p: Promise<unknown>) => Promise.race([p.then(() => 'settled'), new Promise((r) => setTimeout(() => r('hung'), BOUND_MS).unref())]);

describe('embedded broker stop', () => {
  it('ends connections that sent no CONNECT (plain and TLS), without waiting for their timeout', async () => {
    const ts = await startTestServer();
    const port = Number(new URL(ts.mqttUrl).port);
    const sockets: net.Socket[] = [];
    const opened = (s: net.Socket, event: string) => new Promise<void>((resolve, reject) => s.once(event, () => resolve()).once('error', reject));
    const plain = net.connect(port, '127.0.0.1');
    sockets.push(plain);
    await opened(plain, 'connect');
    const tlsPort = ts.server.broker.tlsPort;
    if (tlsPort) {
      // a handshake the server waits on: a raw TCP connection to the TLS port that says nothing
      const raw = net.connect(tlsPort, '127.0.0.1');
      sockets.push(raw);
      await opened(raw, 'connect');
    }
    const closedByServer = sockets.map((s) => new Promise<void>((resolve) => s.once('close', () => resolve())));
    for (const s of sockets) s.on('error', () => {});
    // the server has accepted them (the broker counts connections as it admits them: give it a turn)
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(await settles(ts.close()), 'settled', `the stop waited for connections that never sent CONNECT (more than ${BOUND_MS / 1000} s)`);
    await Promise.all(closedByServer);
  });
});
