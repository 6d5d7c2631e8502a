/**
 * The S3 bucket going away in the middle of a memory-cache load (a build small enough to be
 * held in memory, read from the bucket once for every device that asks while it loads): the
 * devices waiting on that load are answered 503 with Retry-After (storage unreachable, try
 * again), not 500, the answers are counted `unavailable`, and the log has the outage's one
 * WARN, no ERROR per request. Real server and HTTP, an s3rver stopped under it; the server
 * reaches it through a TCP front that can hold a response after its first bytes, so the load
 * is in flight, deterministically, when the bucket goes.
 */
import assert from 'node:assert/strict';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import type { IncomingMessage } from 'node:http';
import net from 'node:net';
import { setImmediate as turn } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { createLogger } from '../../src/util/logger.ts';
import { eventually } from '../helpers/cli.ts';
import { TestClient, connectIdleDevice } from '../helpers/mqtt-client.ts';
import { startRestartableS3, type RestartableS3 } from '../helpers/s3.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact, deploy } from '../security/support.ts';

const DEVICES = ['dev-1', 'dev-2', 'dev-3', 'dev-4'];
const BUCKET = 'cache-load-outage';
/** Memory-cached: under the cache's item limit (an eighth of 1,000,000 bytes). */
const BUILD_BYTES = 100_000;
/** Bytes of a held response let through: its headers and the first of its body. */
const LET_THROUGH = 8192;

/**
 * A TCP front for the bucket. Each connection is piped to it once the client has sent its
 * first bytes (so every request is counted, also one the bucket is not up to answer). Once
 * `hold` is called, the answer of a GET of a blob stops after its first LET_THROUGH bytes, and
 * the bucket closing the connection meanwhile is passed on only at `release`: the load is cut
 * mid-body, when the test says.
 */
async function startFront(target: URL) {
  let holding = false;
  let blobGets = 0;
  /** Client connections whose answer is held. */
  const held = new Set<net.Socket>();
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => {});
    client.once('data', (first: Buffer) => {
      client.pause();
      const upstream = net.connect(Number(target.port), target.hostname);
      sockets.add(upstream);
      upstream.on('close', () => sockets.delete(upstream));
      /** Bytes of the answer still let through. */
      let budget = Number.POSITIVE_INFINITY;
      const count = (b: Buffer) => {
        if (!b.toString('latin1', 0, 200).startsWith(`GET /${BUCKET}/sha256/`)) return;
        blobGets++;
        budget = holding ? LET_THROUGH : Number.POSITIVE_INFINITY;
      };
      count(first);
      upstream.on('error', () => client.destroy());
      upstream.on('connect', () => {
        upstream.write(first);
        client.on('data', (b: Buffer) => {
          count(b);
          upstream.write(b);
        });
        client.resume();
      });
      client.on('close', () => upstream.destroy());
      upstream.on('data', (b: Buffer) => {
        if (budget >= b.length) {
          budget -= b.length;
          client.write(b);
          return;
        }
        if (budget > 0) client.write(b.subarray(0, budget));
        budget = 0;
        held.add(client);
      });
      // the bucket gone: passed on at once, or at `release` for an answer held
      upstream.on('close', () => {
        if (!held.has(client)) client.destroy();
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    /** GET requests of a blob sent to the bucket so far. */
    get blobGets() {
      return blobGets;
    },
    /** Answers held after their first bytes. */
    get held() {
      return held.size;
    },
    /** From now on, holds each answer of a blob GET after its first bytes. */
    hold() {
      holding = true;
    },
    /** Cuts the held answers (their client sees the connection close mid-body), and holds no more. */
    release() {
      holding = false;
      for (const client of held) client.destroy();
      held.clear();
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

describe('devices waiting on a memory-cache load when the S3 bucket goes away', () => {
  let s3: RestartableS3;
  let front: Awaited<ReturnType<typeof startFront>>;
  let ts: TestServer;
  const devices: TestClient[] = [];
  const urls: Record<string, string> = {};
  const logged: string[] = [];
  const lines = (text: string) => logged.filter((l) => l.includes(text));

  before(async () => {
    s3 = await startRestartableS3();
    front = await startFront(new URL(s3.endpoint));
    const blob = s3.blobUrl(BUCKET).replace(encodeURIComponent(s3.endpoint), encodeURIComponent(front.endpoint));
    ts = await startTestServer({ flags: { blob, 'download-cache-bytes': 1_000_000 }, logger: createLogger({ level: 'info', write: (l) => logged.push(l) }) });
    for (const id of DEVICES) devices.push(await connectIdleDevice(ts, id));
    await addArtifact(ts, '2.0.0', Buffer.alloc(BUILD_BYTES, 9));
    await deploy(ts, DEVICES, 'fw@2.0.0');
    for (const [i, dev] of devices.entries()) {
      const id = DEVICES[i]!;
      const delta = await dev.next((m) => m.topic === `state/${id}/update/delta` && m.body.state?.software?.version === '2.0.0' && m.body.state?.software?.url !== undefined);
      urls[id] = delta.body.state.software.url as string;
    }
  });
  after(async () => {
    for (const dev of devices) await dev.end();
    await ts?.close();
    await front?.close();
    await s3?.close();
  });

  it('answers every waiting download 503 with Retry-After, counted unavailable, with one WARN and no ERROR', async () => {
    const metrics = async () => {
      const r = await fetch(`${ts.httpUrl}/api/v1/metrics`, { headers: { authorization: `Bearer ${ts.token}` } });
      return ((await r.json()) as { downloads: { served: number; unavailable: number } }).downloads;
    };
    const before = await metrics();
    // downloads that have reached the server (published as the request is handed to the route)
    let arrived = 0;
    const onRequest = (m: unknown) => {
      if ((m as { request: IncomingMessage }).request.url?.startsWith('/v1/download/')) arrived++;
    };
    subscribe('http.server.request.start', onRequest);
    try {
      front.hold();
      const answers = DEVICES.map((id) => fetch(urls[id]!).then(async (r) => ({ status: r.status, retryAfter: r.headers.get('retry-after'), body: await r.text() })));
      // the load is in flight (its answer held mid-body) and every device has asked
      await eventually(async () => (front.held === 1 && arrived === DEVICES.length ? true : undefined), 10_000, 'the load held, every device asking');
      // the route's reads before the cache (the catalogue, the registry: SQLite) are done
      for (let i = 0; i < 20; i++) await turn();
      await s3.down();
      front.release();
      const got = await Promise.all(answers);
      assert.equal(front.blobGets, 1, 'every device waited on the one load');
      assert.deepEqual(
        got.map((a) => [a.status, a.retryAfter]),
        DEVICES.map(() => [503, '5']),
        `storage unreachable, not a fault of the server: ${JSON.stringify(got)}\n${logged.join('\n')}`,
      );
      assert.match(got[0]!.body, /unavailable \(503\)/);
    } finally {
      unsubscribe('http.server.request.start', onRequest);
    }
    const during = await metrics();
    assert.equal(during.unavailable - before.unavailable, DEVICES.length);
    assert.equal(lines('downloads answered 503').length, 1, logged.join('\n'));
    assert.deepEqual(logged.filter((l) => / ERROR /.test(l)), [], 'no ERROR line per request');

    // back: the build loads, and the outage ends there
    await s3.up();
    const r = await fetch(urls['dev-1']!);
    assert.equal(r.status, 200);
    assert.equal((await r.arrayBuffer()).byteLength, BUILD_BYTES);
    assert.match(lines('downloads served again').at(-1) ?? '', /downloads served again answered503=4 /, logged.join('\n'));
  });
});
