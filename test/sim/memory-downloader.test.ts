/**
 * The simulator's in-memory downloader retries as the agent's downloader does: failures that
 * may pass for `retryForMs` without progress, waiting as `Retry-After` asks, where it gave up
 * after 5 attempts (about 15 s), so simulated devices failed a storage outage real agents ride
 * out. Against a real HTTP server; the pauses on a fake clock (waiting moves it on).
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, beforeEach, describe, it } from 'node:test';
import type { DownloadOptions } from '../../src/agent/downloader.ts';
import { UpdraftError } from '../../src/errors.ts';
import { memoryDownloader } from '../../src/sim/memory-downloader.ts';
import { ArtifactServer, sha256, testContent } from '../agent/support/artifact-server.ts';

const SIZE = 64 * 1024 + 17;
const content = testContent(SIZE);
const digest = sha256(content);

/** A clock whose waits move it on at once, and the waits asked of it. */
function fakeClock(): { pauses: number[]; clock: NonNullable<DownloadOptions['clock']> } {
  let t = 1_000;
  const pauses: number[] = [];
  return { pauses, clock: { now: () => t, sleep: async (ms) => void (pauses.push(ms), (t += ms)) } };
}

const total = (pauses: number[]) => pauses.reduce((a, b) => a + b, 0);

describe("the simulator's memoryDownloader retries as the agent does", () => {
  let server: ArtifactServer;
  before(async () => {
    server = new ArtifactServer(content);
    await server.start();
  });
  after(() => server.close());
  beforeEach(() => {
    server.mode = 'normal';
    server.requests.length = 0;
    server.refuseNext = 0;
    server.refuseHeaders = {};
  });

  const opts = (extra: Partial<DownloadOptions> = {}): DownloadOptions => ({ url: server.url(), file: '(memory)', size: SIZE, sha256: digest, retryDelayMs: 10, ...extra });

  it('rides out 20 answers 503 with Retry-After: 5 (the server whose storage is down), waiting as asked', async () => {
    server.refuseNext = 20;
    server.refuseStatus = 503;
    server.refuseHeaders = { 'retry-after': '5' };
    const { pauses, clock } = fakeClock();
    await memoryDownloader(opts({ clock }));
    assert.equal(server.requests.length, 21);
    assert.equal(pauses.length, 20);
    // at least the 5 s asked, at most the longest pause (30 s); while the backoff (10 ms doubling)
    // is shorter, 5 s spread over a quarter more (a fleet told the same is not back at once)
    assert.ok(pauses.every((ms) => ms >= 5_000 && ms <= 30_000), pauses.join(','));
    assert.ok(pauses.slice(0, 9).every((ms) => ms <= 6_250), pauses.join(','));
  });

  it('gives up after retryForMs without progress, with the last attempt at its end, saying so', async () => {
    server.refuseNext = 1_000;
    server.refuseStatus = 503;
    const { pauses, clock } = fakeClock();
    await assert.rejects(memoryDownloader(opts({ clock, retryForMs: 60_000, maxRetryDelayMs: 1_000 })), (err: unknown) => {
      assert.ok(err instanceof UpdraftError && err.code === 'DOWNLOAD', String(err));
      assert.match(err.message, /^download failed: no progress in 60 s of retrying \(\d+ attempts\): HTTP 503: /);
      return true;
    });
    assert.equal(total(pauses), 60_000);
    assert.equal(server.requests.length, pauses.length + 1);
  });

  it('fails at once on a refusal waiting does not change (404), with its status', async () => {
    server.refuseNext = 1;
    server.refuseStatus = 404;
    const { pauses, clock } = fakeClock();
    await assert.rejects(memoryDownloader(opts({ clock })), (err: unknown) => err instanceof UpdraftError && err.code === 'DOWNLOAD' && (err as { status?: number }).status === 404);
    assert.equal(server.requests.length, 1);
    assert.deepEqual(pauses, []);
  });

  it('ends a pause at once when the job is stopped, with the reason it was given', async () => {
    server.refuseNext = 1;
    server.refuseStatus = 503;
    server.refuseHeaders = { 'retry-after': '30' };
    const ctrl = new AbortController();
    let pausing!: () => void;
    const paused = new Promise<void>((resolve) => (pausing = resolve));
    // a pause that ends only when the job's signal stops it
    const clock = { now: () => 0, sleep: (_ms: number, signal?: AbortSignal) => new Promise<void>((_, reject) => (pausing(), signal?.addEventListener('abort', () => reject(signal.reason)))) };
    const download = memoryDownloader(opts({ clock, signal: ctrl.signal }));
    const settled = download.then(() => 'downloaded', () => 'failed');
    assert.equal(await Promise.race([paused.then(() => 'pausing'), settled]), 'pausing');
    const reason = new Error('stopped');
    ctrl.abort(reason);
    await assert.rejects(download, (err: unknown) => err === reason);
    assert.equal(server.requests.length, 1);
  });

  it('counts a connection cut at the same byte every time as no progress', async () => {
    server.mode = 'cut';
    server.cuts = 1_000;
    const { pauses, clock } = fakeClock();
    await assert.rejects(memoryDownloader(opts({ clock, retryForMs: 3_000, retryDelayMs: 1_000, maxRetryDelayMs: 1_000 })), /no progress in 3 s of retrying .*: connection (interrupted|closed) after \d+ of/);
    assert.equal(total(pauses), 3_000);
  });
});

describe("the simulator's memoryDownloader: progress", () => {
  // attempt n sends n tenths of the artifact, then the connection is cut: each gets further
  let attempts = 0;
  const server = http.createServer((_req, res) => {
    attempts++;
    const part = Math.min(SIZE, Math.ceil((SIZE / 10) * attempts));
    res.writeHead(200, { 'content-length': SIZE });
    if (part === SIZE) res.end(content);
    else res.write(content.subarray(0, part), () => res.socket?.destroy());
  });
  before(() => new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve)));
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  it('starts the budget over at each attempt that gets further than any before it', async () => {
    const { pauses, clock } = fakeClock();
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/download/fw/2.0.0`;
    // 9 cuts, with pauses of 0.5-1 s: more than the 2.5 s budget in all, never without progress
    await memoryDownloader({ url, file: '(memory)', size: SIZE, sha256: digest, clock, retryForMs: 2_500, retryDelayMs: 1_000, maxRetryDelayMs: 1_000 });
    assert.equal(attempts, 10);
    assert.equal(pauses.length, 9);
    assert.ok(total(pauses) > 2_500, `${total(pauses)} ms of pauses`);
  });
});
