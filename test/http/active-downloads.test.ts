/**
 * The download tracker (http/active-downloads.ts) keeps a download until its connection
 * closes. One whose device went away before it was tracked (while the route looked the
 * artifact up) has a connection already closed, whose 'close' never comes again: it was kept
 * for good, and each later credentials event of its device asked the store about it.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
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
});
