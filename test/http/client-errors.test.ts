/**
 * Requests Node's HTTP parser refuses before any route sees them are answered in the API's
 * error shape, so a client can say why (the dashboard said "HTTP 431"). Real server, real
 * sockets.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { startTestServer, type TestServer } from '../helpers/server.ts';

describe('requests the HTTP parser refuses', () => {
  let ts: TestServer;
  before(async () => {
    ts = await startTestServer();
  });
  after(() => ts.close());

  it('answers a request whose URL is too long with 431 and a message', async () => {
    const res = await fetch(`${ts.httpUrl}/api/v1/fleet/search?id=${'x'.repeat(20_000)}`, { headers: { authorization: `Bearer ${ts.token}` } });
    assert.equal(res.status, 431);
    assert.deepEqual(await res.json(), { error: { code: 'TOO_LARGE', message: "the request's headers exceed 16384 bytes: a URL (its query) or a header is too long" } });
    // the server is still there
    assert.equal((await fetch(`${ts.httpUrl}/healthz`)).status, 200);
  });

  it('answers bytes that are not HTTP with 400 and a message', async () => {
    const port = Number(new URL(ts.httpUrl).port);
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1', () => socket.write('HELLO THERE\r\n\r\n'));
      let text = '';
      socket.on('data', (d) => (text += d.toString()));
      socket.on('end', () => resolve(text));
      socket.on('error', reject);
    });
    assert.match(answer, /^HTTP\/1\.1 400 Bad Request\r\n/);
    assert.ok(answer.endsWith('\r\n\r\n{"error":{"code":"BAD_REQUEST","message":"the request is not valid HTTP"}}'), answer);
  });
});
