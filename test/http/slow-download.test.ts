/**
 * A device that reads its download slowly (a thin link, `updraft agent --max-download-rate`)
 * still gets every byte in one request. The kernel's socket buffers take megabytes at once,
 * so the server is done writing seconds before such a device has read the last bytes; a
 * keep-alive timer started then (5 s) closed the connection under the reader, and fetch
 * (undici) refuses a persistent connection that closes before it has parsed the end of the
 * response: the download was cut near its end ('terminated', UND_ERR_SOCKET), and the agent
 * resumed it with Range, with a warning, extra requests and, with short URL lifetimes, a
 * URL refresh.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { loadOrCreateKeyRing } from '../../src/artifacts/key-ring.ts';
import { UrlSigner } from '../../src/artifacts/url-signer.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';

/** Reads `url` with fetch at most at `bytesPerSecond`, as the agent's rate limit does; resolves with the body. */
async function readSlowly(url: string, bytesPerSecond: number): Promise<Buffer> {
  const res = await fetch(url);
  assert.equal(res.status, 200);
  const reader = res.body!.getReader();
  const chunks: Uint8Array[] = [];
  let received = 0;
  const started = Date.now();
  for (;;) {
    const { done, value } = await reader.read(); // a cut connection rejects here ('terminated')
    if (done) return Buffer.concat(chunks);
    chunks.push(value);
    received += value.length;
    const due = started + (received / bytesPerSecond) * 1000;
    if (due > Date.now()) await sleep(due - Date.now());
  }
}

describe('a slow download', () => {
  let ts: TestServer;
  // sizes the kernel's buffers take at once (the server is done writing at once) and rates
  // at which each takes several seconds more than the server's keep-alive timer (5 s) to read
  const builds = [
    { version: '1.0.0', bytes: randomBytes(1024 * 1024), rate: 130_000 },
    { version: '1.5.0', bytes: randomBytes(1536 * 1024), rate: 200_000 },
    { version: '2.0.0', bytes: randomBytes(2048 * 1024), rate: 260_000 },
  ];
  const api = (method: string, route: string, body?: Buffer) =>
    fetch(ts.httpUrl + route, { method, headers: { authorization: `Bearer ${ts.token}`, 'content-type': 'application/octet-stream' }, ...(body ? { body: new Uint8Array(body) } : {}) });

  before(async () => {
    ts = await startTestServer();
    await registerDevice(ts, 'dev-slow');
    for (const b of builds) {
      const added = await api('POST', `/api/v1/artifacts?name=fw&version=${b.version}`, b.bytes);
      assert.equal(added.status, 201, await added.clone().text());
    }
  });
  after(() => ts.close());

  it('is delivered whole, in one request each, to devices that read slowly', async () => {
    const signer = new UrlSigner({ keys: await loadOrCreateKeyRing(ts.dataDir), baseUrl: ts.httpUrl });
    type Downloads = { downloads: { served: number; bytes: number; cut: number } };
    const metrics = async () => ((await (await api('GET', '/api/v1/metrics')).json()) as Downloads).downloads;
    const before = await metrics();
    const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
    const results = await Promise.allSettled(
      builds.map((b) => readSlowly(signer.sign({ deviceId: 'dev-slow', name: 'fw', version: b.version, sha256: sha(b.bytes), expiresAt: Math.floor(Date.now() / 1000) + 300 }), b.rate)),
    );
    results.forEach((r, i) => {
      const b = builds[i]!;
      assert.equal(r.status, 'fulfilled', `fw@${b.version}: ${r.status === 'rejected' ? (r.reason as Error).message : ''}`);
      const got = (r as PromiseFulfilledResult<Buffer>).value;
      assert.equal(got.length, b.bytes.length, `fw@${b.version}`);
      assert.equal(sha(got), sha(b.bytes), `fw@${b.version}`);
    });
    const now = await metrics();
    const total = builds.reduce((n, b) => n + b.bytes.length, 0);
    assert.deepEqual({ served: now.served - before.served, cut: now.cut - before.cut, bytes: now.bytes - before.bytes }, { served: builds.length, cut: 0, bytes: total });
  });
});
