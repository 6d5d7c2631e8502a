/**
 * `HEAD /api/v1/events` answers at once with the stream's headers and no content, and holds
 * nothing open (QA: it never answered: the router gives HEAD the GET handler, Node drops a
 * HEAD answer's body writes, so the stream's headers were never sent while the handler held
 * the connection). Real server, real HTTP; a raw socket shows the connection is reused after it.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { eventually } from '../helpers/cli.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

/** Far more than an answer takes: a HEAD that never answers fails here, not at the runner's timeout. */
const NO_ANSWER_MS = 10_000;

describe('HEAD /api/v1/events', () => {
  let ts: TestServer;
  const head = (route: string, token: string) => fetch(`${ts.httpUrl}${route}`, { method: 'HEAD', headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(NO_ANSWER_MS) });

  before(async () => {
    ts = await startTestServer();
  });
  after(() => ts.close());

  it("answers 200 with the stream's headers and no content, and subscribes to nothing", async () => {
    const baseline = ts.server.events.listenerCount('job.changed');
    const res = await head('/api/v1/events', ts.token);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'text/event-stream; charset=utf-8');
    assert.equal(res.headers.get('cache-control'), 'no-store');
    assert.equal(await res.text(), '');
    await eventually(async () => (ts.server.events.listenerCount('job.changed') === baseline ? true : undefined), NO_ANSWER_MS, 'no subscription left by the HEAD');
  });

  it('refuses what GET refuses: a bad filter (400), no token (401)', async () => {
    assert.equal((await head('/api/v1/events?types=nope', ts.token)).status, 400);
    assert.equal((await head('/api/v1/events', 'wrong')).status, 401);
  });

  it("answers a viewer token's HEAD too (a viewer may read the stream)", async () => {
    const added = await fetch(`${ts.httpUrl}/api/v1/viewer-tokens`, { method: 'POST', headers: { authorization: `Bearer ${ts.token}`, 'content-type': 'application/json' }, body: JSON.stringify({ name: 'wall' }) });
    const { token } = (await added.json()) as { token: string };
    assert.equal((await head('/api/v1/events', token)).status, 200);
  });

  it('leaves the connection usable: the next request on it is answered', async () => {
    const socket = net.connect(Number(new URL(ts.httpUrl).port), '127.0.0.1');
    try {
      let text = '';
      socket.on('data', (d) => (text += d.toString()));
      const answers = (n: number) => eventually(async () => ((text.match(/^HTTP\/1\.1 /gm) ?? []).length >= n && text.endsWith(n === 2 ? '}' : '\r\n\r\n') ? text : undefined), NO_ANSWER_MS, `${n} answer(s) on one connection`);
      socket.write(`HEAD /api/v1/events HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${ts.token}\r\n\r\n`);
      assert.match(await answers(1), /^HTTP\/1\.1 200 OK\r\n[^]*\r\n\r\n$/);
      socket.write(`GET /api/v1/whoami HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${ts.token}\r\n\r\n`);
      assert.match(await answers(2), /\r\n\r\nHTTP\/1\.1 200 OK\r\n[^]*\r\n\r\n\{"role":"operator"\}$/);
    } finally {
      socket.destroy();
    }
  });
});
