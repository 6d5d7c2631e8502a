/**
 * ApiClient's requestTimeoutMs and signal (request-deadline.ts) against a real local HTTP
 * server: the head's limit, then the body's idle limit restarted at the head (review of
 * 090236f: the first piece got only what the head had left), the floor on the body's rate
 * (a few bytes per window is cut; a large body that keeps coming is read), the caller's stop
 * (said as such, its listener removed) and a network error still said as one. No wall-clock
 * speed assertion: only whether, and how, a call was cut.
 */
import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, describe, it } from 'node:test';
import { ApiClient } from '../../src/cli/api-client.ts';

const LIMIT_MS = 1000;

describe('ApiClient requestTimeoutMs and signal (request-deadline.ts)', () => {
  const servers: http.Server[] = [];
  after(() => servers.forEach((s) => (s.closeAllConnections(), s.close())));
  async function serve(handler: http.RequestListener): Promise<string> {
    const s = http.createServer(handler);
    servers.push(s);
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
    return `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
  }
  const client = (server: string, signal?: AbortSignal) => new ApiClient({ server, token: 't', retryForMs: 0, requestTimeoutMs: LIMIT_MS, ...(signal ? { signal } : {}) });

  it('an answer whose head comes at 0.7 of the limit and its body 0.7 of the limit later is read (the body gets a whole wait from the head)', async () => {
    const url = await serve((req, res) => {
      setTimeout(() => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.flushHeaders();
        setTimeout(() => res.end('{"ok":true}'), LIMIT_MS * 0.7);
      }, LIMIT_MS * 0.7);
    });
    const got = await client(url).call<{ ok: boolean }>('GET', '/x').catch((err: Error) => err);
    assert.deepEqual(got, { ok: true }, `no silence of ${LIMIT_MS} ms, yet: ${(got as Error).message}`);
  });

  it('an answer that keeps coming a few bytes at a time (12 bytes every 0.8 of the limit) is cut by the rate floor, said so', async () => {
    const url = await serve((req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"items": [ ');
      let n = 0;
      const next = () => {
        if (res.destroyed) return;
        if (++n >= 8) return void res.end(']}');
        res.write('            ');
        setTimeout(next, LIMIT_MS * 0.8);
      };
      setTimeout(next, LIMIT_MS * 0.8);
    });
    const got = await client(url).call('GET', '/api/v1/broker/crl?x=1').then(
      (v) => new Error(`read to the end: ${JSON.stringify(v)}`),
      (err: Error) => err,
    );
    assert.match(got.message, /^GET \/api\/v1\/broker\/crl: the answer from http:\/\/127\.0\.0\.1:\d+ came slower than 8 KiB\/s over twice the request timeout of 1 s$/, `cut by the floor, said in one line: ${got.message}`);
  });

  it('a large answer that keeps coming above the floor, longer in all than the limit, is read to the end', async () => {
    const piece = ' '.repeat(64 * 1024);
    const url = await serve((req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"ok":true}');
      let n = 0;
      const next = () => {
        if (res.destroyed) return;
        if (++n >= 10) return void res.end();
        res.write(piece);
        setTimeout(next, LIMIT_MS * 0.3);
      };
      next();
    });
    const got = await client(url).call<{ ok: boolean }>('GET', '/x').catch((err: Error) => err);
    assert.deepEqual(got, { ok: true }, `64 KiB every 0.3 of the limit, 2.7 limits in all, yet: ${(got as Error).message}`);
  });

  it('the caller\'s signal ends a request held without an answer at once, said as stopped (not a timeout), and leaves no listener on it', async () => {
    let held = 0;
    const url = await serve((req) => {
      if (req.url?.startsWith('/held')) held++;
      else req.socket.destroy(); // the others: a quick failure
    });
    const stop = new AbortController();
    const api = new ApiClient({ server: url, token: 't', retryForMs: 0, requestTimeoutMs: 60_000, signal: stop.signal });
    // requests that ended by themselves take their listeners with them
    for (let i = 0; i < 20; i++) await api.call('GET', '/fail').catch(() => undefined);
    assert.equal(getEventListeners(stop.signal, 'abort').length, 0, 'no listener left on the signal by requests that ended');
    const call = api.call('GET', '/held?ids=a').then(
      () => new Error('answered'),
      (err: Error) => err,
    );
    while (held === 0) await new Promise((r) => setTimeout(r, 20));
    stop.abort();
    // a hang guard far below the request's own limit (60 s), not a speed check
    const got = await Promise.race([call, new Promise<Error>((r) => setTimeout(() => r(new Error('still held 10 s after the stop')), 10_000))]);
    assert.equal(got.message, 'GET /held: stopped (the command is ending)', `the held request ends with the stop, said as such: ${got.message}`);
    const after = await api.call('GET', '/fail').catch((err: Error) => err);
    assert.match((after as Error).message, /stopped/, `a request after the stop is not sent: ${(after as Error).message}`);
  });

  it('a network error with the limit (and a signal) set is said as a network error, not a timeout', async () => {
    const stop = new AbortController();
    // refused: a port nothing listens on (one just closed)
    const closed = http.createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', () => r()));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const refused = await client(`http://127.0.0.1:${port}`, stop.signal).call('GET', '/x').catch((err: Error) => err);
    assert.match((refused as Error).message, /^cannot reach the Updraft server at http:\/\/127\.0\.0\.1:\d+: is it running\?/, `a refused connection: ${(refused as Error).message}`);
    // reset in the middle of the body
    const url = await serve((req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.write('{"items": [');
      setTimeout(() => res.destroy(), 50);
    });
    const reset = await client(url, stop.signal).call('GET', '/x').catch((err: Error) => err);
    assert.match((reset as Error).message, /^the connection to http:\/\/127\.0\.0\.1:\d+ closed before the answer was read/, `a connection closed in the body: ${(reset as Error).message}`);
    for (const e of [refused, reset]) assert.doesNotMatch((e as Error).message, /timeout|stopped/, `not a timeout nor a stop: ${(e as Error).message}`);
  });
});
