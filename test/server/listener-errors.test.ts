/**
 * The listeners a listen leaves behind. `HttpServer.start()` and the embedded broker's listen
 * took the listen's failure with `once('error')` and its success with the `listen` callback
 * (a `once('listening')`): after a successful listen the error listener stayed, and an error
 * the server emitted later went to it, rejecting a promise already settled: it vanished
 * without a line. After a failed one the 'listening' listener stayed. Now each listen removes
 * the other's listener, and a listening server's later errors are logged (at error level, with
 * the listener and the code), not swallowed, and do not end the process.
 * Real servers on real ports (HTTP, and the embedded broker's MQTT and MQTTS listeners).
 */
import assert from 'node:assert/strict';
import nodeHttp from 'node:http';
import type net from 'node:net';
import { after, describe, it } from 'node:test';
import { HttpServer } from '../../src/http/http-server.ts';
import { Router } from '../../src/http/router.ts';
import { createLogger } from '../../src/util/logger.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

/** The 'listening' listeners node:http puts on every server of its own (its connection tracking). */
const HTTP_OWN_LISTENING = nodeHttp.createServer().listenerCount('listening');

type Line = { level: string; msg: string; component?: string; error?: string; code?: string; listener?: string };

function capture(): { lines: Line[]; logger: ReturnType<typeof createLogger> } {
  const lines: Line[] = [];
  return { lines, logger: createLogger({ level: 'info', format: 'json', write: (l) => lines.push(JSON.parse(l) as Line) }) };
}

/** An error as a listening server emits it (accept failing: EMFILE at the open-file limit). */
function acceptError(): NodeJS.ErrnoException {
  return Object.assign(new Error('accept EMFILE'), { code: 'EMFILE', syscall: 'accept' });
}

/** The node server a part listens with (a private field: what this test is about). */
function netServer(part: object, field: 'server' | 'tlsServer'): net.Server {
  const s = (part as Record<string, unknown>)[field] as net.Server | undefined;
  assert.ok(s, `${field} is set`);
  return s;
}

describe('listen: no listener of the listen left behind, later errors logged', () => {
  const stops: (() => Promise<void>)[] = [];
  after(async () => {
    for (const stop of stops.reverse()) await stop();
  });

  it('HttpServer: after start one error listener, which logs a later error; after a failed start no listening listener', async () => {
    const { lines, logger } = capture();
    const http = new HttpServer({ port: 0, host: '127.0.0.1', router: new Router(), operatorToken: 'updr_listen_test_token_xxxxxxxxxxxxxxxxxxxx', logger });
    await http.start();
    stops.push(() => http.stop());
    const server = netServer(http, 'server');
    assert.equal(server.listenerCount('listening'), HTTP_OWN_LISTENING, 'no listening listener of ours left');
    assert.equal(server.listenerCount('error'), 1, 'one error listener: the one that logs');
    server.emit('error', acceptError());
    const line = lines.find((l) => l.msg === 'HTTP server error');
    assert.ok(line, `a later error is logged: ${JSON.stringify(lines)}`);
    assert.equal(line.level, 'error');
    assert.equal(line.code, 'EMFILE');
    assert.match(line.error!, /accept EMFILE/);
    assert.equal(server.listening, true, 'still listening');

    // the same port again: the start fails, and leaves no 'listening' listener on its server
    const second = new HttpServer({ port: http.port, host: '127.0.0.1', router: new Router(), operatorToken: 'updr_listen_test_token_xxxxxxxxxxxxxxxxxxxx', logger });
    await assert.rejects(second.start(), (err: Error & { code?: string }) => err.code === 'PORT_IN_USE');
    const refused = netServer(second, 'server');
    assert.equal(refused.listenerCount('listening'), HTTP_OWN_LISTENING, 'no listening listener of ours left after a failed listen');
    assert.equal(refused.listenerCount('error'), 0, 'nor an error listener');
  });

  it('embedded broker: after start one error listener on each of its MQTT and MQTTS listeners, which logs a later error', async () => {
    const { lines, logger } = capture();
    const ts: TestServer = await startTestServer({ logger });
    stops.push(() => ts.close());
    for (const [field, listener] of [
      ['server', 'mqtt'],
      ['tlsServer', 'mqtts'],
    ] as const) {
      const server = netServer(ts.server.broker, field);
      assert.equal(server.listenerCount('listening'), 0, `${listener}: no listening listener left`);
      assert.equal(server.listenerCount('error'), 1, `${listener}: one error listener, the one that logs`);
      server.emit('error', acceptError());
      const line = lines.find((l) => l.msg === 'MQTT listener error' && l.listener === listener);
      assert.ok(line, `${listener}: a later error is logged: ${JSON.stringify(lines.filter((l) => l.level === 'error'))}`);
      assert.equal(line.level, 'error');
      assert.equal(line.code, 'EMFILE');
      assert.equal(server.listening, true, `${listener}: still listening`);
    }
  });

  it('an error storm (EMFILE per accept) writes one line at once, then the count: HTTP, MQTT and MQTTS listeners', async () => {
    const { lines, logger } = capture();
    const http = new HttpServer({ port: 0, host: '127.0.0.1', router: new Router(), operatorToken: 'updr_listen_test_token_xxxxxxxxxxxxxxxxxxxx', logger });
    await http.start();
    const ts: TestServer = await startTestServer({ logger });
    const servers = [
      ['HTTP server error', 'http', netServer(http, 'server')],
      ['MQTT listener error', 'mqtt', netServer(ts.server.broker, 'server')],
      ['MQTT listener error', 'mqtts', netServer(ts.server.broker, 'tlsServer')],
    ] as const;
    for (const [, , server] of servers) for (let i = 0; i < 100; i++) server.emit('error', acceptError());
    const of = (msg: string, listener: string) => lines.filter((l) => l.msg === msg && l.listener === listener);
    for (const [msg, listener] of servers) assert.equal(of(msg, listener).length, 1, `${listener}: one line for 100 errors, not one each`);
    // the count is written at the latest at stop
    await http.stop();
    await ts.close();
    for (const [msg, listener] of servers) {
      const count = of(msg, listener)[1] as (Line & { suppressed?: number }) | undefined;
      assert.equal(count?.suppressed, 99, `${listener}: the count of the lines left out: ${JSON.stringify(of(msg, listener))}`);
      assert.equal(count?.code, 'EMFILE');
    }
  });
});
