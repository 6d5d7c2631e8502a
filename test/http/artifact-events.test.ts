/**
 * `artifact.changed` on the event stream, over real HTTP: a build added, deleted or pruned is
 * announced to live views (the dashboard's artifact list and rollout form), a viewer's too;
 * what was refused is not; a stream about one job or device does not carry it.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startTestServer, type TestServer } from '../helpers/server.ts';

/** A live stream and the events it has brought so far, by type. */
interface Stream {
  seen(type: string): unknown[];
  /** Resolves once `n` events of `type` have come (the stream ends the wait with what it has if it ends). */
  until(type: string, n: number): Promise<unknown[]>;
  close(): void;
}

describe('artifact.changed on the event stream', () => {
  let ts: TestServer;
  const streams: Stream[] = [];
  const call = (method: string, route: string, body?: unknown) =>
    fetch(ts.httpUrl + route, { method, headers: { authorization: `Bearer ${ts.token}` }, ...(body instanceof Buffer ? { body: new Uint8Array(body) } : body !== undefined ? { body: JSON.stringify(body) } : {}) });

  /** Opens `GET /api/v1/events?query` with `token`; resolves once the server answered. */
  async function open(query: string, token = ts.token): Promise<Stream> {
    const controller = new AbortController();
    const res = await fetch(`${ts.httpUrl}/api/v1/events${query ? `?${query}` : ''}`, { headers: { authorization: `Bearer ${token}`, accept: 'text/event-stream' }, signal: controller.signal });
    if (res.status !== 200) assert.fail(`the stream ?${query} answered ${res.status}: ${await res.text()}`);
    const events: { type: string; data: unknown }[] = [];
    const waiters = new Set<() => void>();
    let ended = false;
    void (async () => {
      const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
      let text = '';
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          text += value;
          let end: number;
          while ((end = text.indexOf('\n\n')) >= 0) {
            const block = text.slice(0, end);
            text = text.slice(end + 2);
            const type = /^event: (.+)$/m.exec(block)?.[1];
            const data = /^data: (.+)$/m.exec(block)?.[1];
            if (type && data) events.push({ type, data: JSON.parse(data) });
          }
          for (const w of waiters) w();
        }
      } catch {
        /* aborted */
      }
      ended = true;
      for (const w of waiters) w();
    })();
    const seen = (type: string) => events.filter((e) => e.type === type).map((e) => e.data);
    const stream: Stream = {
      seen,
      until: (type, n) =>
        new Promise((resolve) => {
          const check = () => {
            if (seen(type).length < n && !ended) return;
            waiters.delete(check);
            resolve(seen(type));
          };
          waiters.add(check);
          check();
        }),
      close: () => controller.abort(),
    };
    streams.push(stream);
    return stream;
  }

  before(async () => {
    ts = await startTestServer();
  });
  after(async () => {
    for (const s of streams) s.close();
    await ts.close();
  });

  it('announces a build added, deleted and pruned, to viewers too; not what was refused, nor on a stream about one job or device', { timeout: 60_000 }, async () => {
    const { token: viewer } = await (await call('POST', '/api/v1/viewer-tokens', { name: 'wall' })).json();
    const all = await open(''); // no types: what a live view gets by default
    const asked = await open('types=artifact.changed', viewer);
    const ofJob = await open('types=artifact.changed&jobId=00000000-0000-4000-8000-000000000000');
    const ofDevice = await open('types=artifact.changed&deviceId=dev-1');

    assert.equal((await call('POST', '/api/v1/artifacts?name=fw&version=1.0.0', randomBytes(1000))).status, 201);
    // refused: an existing version, an empty build; neither changed the list
    assert.equal((await call('POST', '/api/v1/artifacts?name=fw&version=1.0.0', randomBytes(1000))).status, 409);
    assert.equal((await call('POST', '/api/v1/artifacts?name=fw&version=1.5.0', Buffer.alloc(0))).status, 400);
    assert.equal((await call('POST', '/api/v1/artifacts?name=fw&version=2.0.0', randomBytes(1000))).status, 201);
    assert.equal((await call('POST', '/api/v1/artifacts?name=fw&version=3.0.0', randomBytes(1000))).status, 201);
    assert.equal((await call('DELETE', '/api/v1/artifacts/fw/3.0.0')).status, 200);
    assert.equal((await call('DELETE', '/api/v1/artifacts/fw/3.0.0')).status, 404, 'deleted already: nothing changes');
    // a dry run deletes nothing; the real one deletes 1.0.0
    assert.deepEqual((await (await call('POST', '/api/v1/artifacts/prune', { keep: 1, dryRun: true })).json()).deleted, ['fw@1.0.0']);
    assert.deepEqual((await (await call('POST', '/api/v1/artifacts/prune', { keep: 1 })).json()).deleted, ['fw@1.0.0']);
    // a last change, after which every stream has had all it will have of the ones before
    assert.equal((await call('POST', '/api/v1/artifacts?name=last&version=1.0.0', randomBytes(10))).status, 201);

    const expected = [
      { name: 'fw', version: '1.0.0', change: 'added' },
      { name: 'fw', version: '2.0.0', change: 'added' },
      { name: 'fw', version: '3.0.0', change: 'added' },
      { name: 'fw', version: '3.0.0', change: 'deleted' },
      { name: 'fw', version: '1.0.0', change: 'deleted' },
      { name: 'last', version: '1.0.0', change: 'added' },
    ];
    assert.deepEqual(await all.until('artifact.changed', expected.length), expected);
    assert.deepEqual(await asked.until('artifact.changed', expected.length), expected, 'a viewer token sees them');
    // the filtered streams were opened before: had they carried artifact events, these would be in by now
    assert.deepEqual(ofJob.seen('artifact.changed'), []);
    assert.deepEqual(ofDevice.seen('artifact.changed'), []);
  });

  it('names artifact.changed among the types a stream may ask for', async () => {
    const res = await call('GET', '/api/v1/events?types=nope');
    assert.equal(res.status, 400);
    assert.match((await res.json()).error.message, /artifact\.changed/);
  });
});
