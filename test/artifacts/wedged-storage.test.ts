/**
 * An S3 store that accepts connections but never answers (a wedged endpoint), then answers
 * again: the probe's own request is ended at its timeout, so probes every few seconds do not
 * pile up hung sockets and the probe sees the store once it answers; a request of the store
 * itself gives up after its idle timeout instead of waiting for ever.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { Readable } from 'node:stream';
import { after, describe, it } from 'node:test';
import { probeBlobStore } from '../../src/artifacts/blob-store-probe.ts';
import { S3BlobStore } from '../../src/artifacts/s3-blob-store.ts';
import { UpdraftError } from '../../src/errors.ts';
import { startTestS3 } from '../helpers/s3.ts';

const s3 = await startTestS3();
after(() => s3.stop());

/**
 * A TCP front for s3rver. Answering, it pipes each new connection to s3rver; wedged, it
 * accepts new connections, reads what comes and never answers. `wedge` closes the piped
 * connections (the client's idle keep-alive sockets), so every later request meets the
 * wedge; connections it held stay held when it answers again.
 */
async function startFront() {
  const target = new URL(s3.endpoint);
  let wedged = false;
  const held = new Set<net.Socket>();
  const piped = new Set<net.Socket>();
  let accepted = 0;
  const server = net.createServer((socket) => {
    accepted++;
    socket.on('error', () => {});
    if (wedged) {
      held.add(socket);
      socket.on('close', () => held.delete(socket));
      socket.resume();
      return;
    }
    const upstream = net.connect(Number(target.port), target.hostname);
    upstream.on('error', () => socket.destroy());
    socket.on('close', () => {
      piped.delete(socket);
      upstream.destroy();
    });
    upstream.on('close', () => socket.destroy());
    piped.add(socket);
    socket.pipe(upstream).pipe(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    endpoint: `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    /** Connections accepted and never answered, still open. */
    get held() {
      return held.size;
    },
    get accepted() {
      return accepted;
    },
    wedge() {
      wedged = true;
      for (const s of piped) s.destroy();
    },
    answer() {
      wedged = false;
    },
    async close() {
      for (const s of [...held, ...piped]) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** Polls `f` until it holds, up to `ms` (a generous bound: it fails only when the behaviour is absent). */
async function eventually(f: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (!f()) {
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}

describe('an S3 store that accepts connections and never answers', () => {
  it('probed more times than the client has sockets: no hung request is left open, and the probe sees the store once it answers', async () => {
    const front = await startFront();
    const store = new S3BlobStore({ bucket: 'wedged-probe', endpoint: front.endpoint, credentials: s3.credentials, forcePathStyle: true, createBucket: true });
    try {
      await store.start();
      front.wedge();
      // more probes than the SDK's 50 sockets, as the engine makes every ~2 s of an outage
      for (let i = 0; i < 55; i++) {
        assert.equal((await probeBlobStore(store, 50)).state, 'timeout', `probe ${i}`);
      }
      assert.ok(front.accepted >= 55, `each probe asked the wedged store (${front.accepted} connections)`);
      assert.ok(await eventually(() => front.held === 0, 5000), `${front.held} hung requests still open after their probes gave up`);

      front.answer();
      assert.deepEqual(await probeBlobStore(store, 2000), { state: 'ok' }, 'the store answers again: so does the probe');
      // and the store's own work goes on: nothing waits for a socket
      assert.equal(await store.stat('0'.repeat(64)), undefined);
    } finally {
      await store.stop();
      await front.close();
    }
  });

  it('a request of the store itself (not a probe) fails UNAVAILABLE after the idle timeout instead of waiting for ever', async () => {
    const front = await startFront();
    const store = new S3BlobStore({ bucket: 'wedged-stat', endpoint: front.endpoint, credentials: s3.credentials, forcePathStyle: true, createBucket: true, idleTimeoutMs: 200 });
    try {
      await store.start();
      front.wedge();
      let timer: NodeJS.Timeout | undefined;
      const hung = new Promise<'still waiting'>((resolve) => (timer = setTimeout(() => resolve('still waiting'), 20_000)));
      const outcome = await Promise.race([store.stat('0'.repeat(64)).then((v) => v, (err: unknown) => err), hung]);
      clearTimeout(timer);
      assert.ok(outcome instanceof UpdraftError, `a failure, not ${String(outcome)}`);
      assert.equal(outcome.code, 'UNAVAILABLE');
      assert.match(outcome.message, /artifact storage unreachable: .*timed out/);
      assert.ok(await eventually(() => front.held === 0, 5000), `${front.held} hung requests still open`);
    } finally {
      await store.stop();
      await front.close();
    }
  });
});

describe('an S3 store serving more long downloads at once than the SDK has sockets by default (50)', () => {
  it('answers a request made while 60 relayed downloads are under way, instead of failing it after the connect timeout', async () => {
    const store = new S3BlobStore({ bucket: 'many-streams', endpoint: s3.endpoint, credentials: s3.credentials, forcePathStyle: true, createBucket: true, connectTimeoutMs: 1000 });
    const streams: Readable[] = [];
    try {
      await store.start();
      // larger than loopback's socket buffers hold, so a download not read holds its socket
      const stored = await store.write(Readable.from([Buffer.alloc(16 * 1024 * 1024, 7)]), 32 * 1024 * 1024);
      for (let i = 0; i < 60; i++) {
        const body = await store.read(stored.sha256);
        body.pause(); // a device reading slowly: the relay holds the store's socket meanwhile
        streams.push(body);
      }
      assert.equal(await store.stat('0'.repeat(64)), undefined, 'answered, not failed waiting for a socket');
    } finally {
      for (const s of streams) s.destroy();
      await store.stop();
    }
  });
});
