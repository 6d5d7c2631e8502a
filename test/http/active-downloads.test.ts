/**
 * The download tracker (http/active-downloads.ts) keeps a download until its connection
 * closes. One whose device went away before it was tracked (while the route looked the
 * artifact up) has a connection already closed, whose 'close' never comes again: it was kept
 * for good, and each later credentials event of its device asked the store about it.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { Socket, type AddressInfo } from 'node:net';
import { once } from 'node:events';
import { describe, it } from 'node:test';
import { EventBus } from '../../src/events/event-bus.ts';
import { ActiveDownloads } from '../../src/http/active-downloads.ts';
import { silentLogger } from '../../src/util/logger.ts';

describe('ActiveDownloads', () => {
  it('does not keep a download whose connection closed before it was tracked', async () => {
    const events = new EventBus();
    let asked = 0;
    const active = new ActiveDownloads({ events, logger: silentLogger, refusal: async () => (asked++, undefined) });
    await active.start();
    const tracked = new Promise<void>((resolve) => {
      const server = http.createServer((req, res) => {
        // the device goes away while the route looks the artifact up
        req.socket.once('close', () => {
          active.add('dev-1', res);
          server.close();
          resolve();
        });
      });
      server.listen(0, '127.0.0.1', () => {
        const client = http.get({ port: (server.address() as AddressInfo).port, host: '127.0.0.1', path: '/v1/download/fw/1.0.0' });
        client.on('error', () => undefined);
        server.once('request', () => client.destroy());
      });
    });
    await tracked;
    events.emit('device.credentials', { deviceId: 'dev-1' });
    await new Promise((r) => setImmediate(r));
    assert.equal(asked, 0, 'nothing tracked for dev-1: its credentials event asks nothing');
    await active.stop();
  });

  it("ends a download's connection once: the device's close does not make Node end it again (an error built and dropped)", async () => {
    const events = new EventBus();
    const active = new ActiveDownloads({ events, logger: silentLogger, refusal: async () => undefined });
    await active.start();
    // Socket.prototype.end on a socket whose write side already finished builds ERR_STREAM_ALREADY_FINISHED
    const original = Socket.prototype.end;
    let again = 0;
    Socket.prototype.end = function (this: Socket, ...args: unknown[]) {
      if (this.writableFinished) again++;
      return original.apply(this, args as Parameters<Socket['end']>);
    } as Socket['end'];
    const closed: Promise<unknown>[] = [];
    const server = http.createServer((req, res) => {
      closed.push(once(req.socket, 'close'));
      active.add('dev-1', res);
      res.writeHead(200, { 'content-length': '5', connection: 'close' }).end('build');
    });
    try {
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      for (let i = 0; i < 3; i++) {
        const res = await new Promise<http.IncomingMessage>((resolve, reject) => http.get({ port: (server.address() as AddressInfo).port, host: '127.0.0.1', path: '/v1/download/fw/1.0.0', agent: false }, resolve).on('error', reject));
        let body = '';
        for await (const chunk of res) body += String(chunk);
        assert.equal(body, 'build');
        // the device, having read it all, closes its side; the server's side then closes
        await once(res.socket, 'close');
      }
      // and the server's side of each is closed too, not held until the drain timeout
      await Promise.all(closed);
      assert.equal(closed.length, 3);
      assert.equal(again, 0, 'end() called again on a finished connection');
    } finally {
      Socket.prototype.end = original;
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await active.stop();
    }
  });
});
