/**
 * The event stream's backpressure, over real HTTP: a client that stops reading is cut off
 * once a bounded backlog waits for it, and its subscriptions go with it; a client that
 * reads gets every event.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { EventBus } from '../../src/events/event-bus.ts';
import { addEventStream } from '../../src/http/event-stream.ts';
import { HttpServer } from '../../src/http/http-server.ts';
import { Router } from '../../src/http/router.ts';
import type { ExecutionRecord } from '../../src/store/state-store.ts';
import { createLogger } from '../../src/util/logger.ts';

const TOKEN = 'op-token-for-this-test';
const BACKLOG = 64 * 1024;

describe('GET /api/v1/events backpressure', () => {
  const events = new EventBus();
  const logged: string[] = [];
  const router = new Router();
  addEventStream(router, { events, maxBacklogBytes: BACKLOG, logger: createLogger({ level: 'warn', write: (l) => logged.push(l) }) });
  const http = new HttpServer({ port: 0, host: '127.0.0.1', router, operatorToken: TOKEN, logger: createLogger({ level: 'silent' }) });
  before(() => http.start());
  after(() => http.stop());

  /** One execution event of about 1 KB. */
  const emit = (i: number) => {
    const current: ExecutionRecord = { jobId: 'job', deviceId: `d${i}`, status: 'IN_PROGRESS', details: { pad: 'x'.repeat(900) }, queuedAt: 1, updatedAt: 1, version: 2 };
    events.emit('execution.changed', { previous: undefined, current });
  };

  /** Resolves once `cond` holds, looking after each turn of the event loop (at most `turns`). */
  async function until(cond: () => boolean, turns = 20_000): Promise<void> {
    for (let i = 0; i < turns && !cond(); i++) await new Promise((r) => setTimeout(r, 1));
    assert.ok(cond(), 'condition never held');
  }

  /** A raw client that sends the request and then never reads. */
  async function stalledClient(): Promise<net.Socket> {
    const socket = net.connect(http.port, '127.0.0.1');
    await new Promise((r) => socket.once('connect', r));
    socket.pause();
    socket.write(`GET /api/v1/events?types=execution.changed HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${TOKEN}\r\n\r\n`);
    return socket;
  }

  it('cuts off a client that stops reading, and drops its subscription', async () => {
    const baseline = events.listenerCount('execution.changed');
    const socket = await stalledClient();
    await until(() => events.listenerCount('execution.changed') === baseline + 1);
    // far more than the kernel's socket buffers hold, so the rest waits in the server
    for (let i = 0; i < 100 && events.listenerCount('execution.changed') > baseline; i++) {
      for (let k = 0; k < 500; k++) emit(i * 500 + k);
      await new Promise((r) => setImmediate(r));
    }
    await until(() => events.listenerCount('execution.changed') === baseline);
    assert.ok(logged.some((l) => l.includes('event stream cut')), 'the cut is logged');
    socket.destroy();
  });

  it('keeps a client that reads, which gets every event', async () => {
    const res = await fetch(`http://127.0.0.1:${http.port}/api/v1/events?types=execution.changed`, { headers: { authorization: `Bearer ${TOKEN}` } });
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    await until(() => events.listenerCount('execution.changed') === 1);
    let text = '';
    const n = 200;
    for (let i = 0; i < n; i++) {
      emit(i);
      // a reader keeps up: the backlog never reaches the bound between its reads
      if (i % 20 === 19) while ((text.match(/event: execution\.changed/g) ?? []).length < i + 1) text += (await reader.read()).value ?? '';
    }
    assert.equal((text.match(/event: execution\.changed/g) ?? []).length, n);
    await reader.cancel();
  });
});
