/** The downloader against a real HTTP server: resume, bounds, integrity, HTTP errors. */
import assert from 'node:assert/strict';
import { lstat, mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { getEventListeners } from 'node:events';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import { UpdraftError } from '../../src/errors.ts';
import { createLogger } from '../../src/util/logger.ts';
import { downloadArtifact, type DownloadOptions } from '../../src/agent/downloader.ts';
import { memoryDownloader } from '../../src/sim/memory-downloader.ts';
import { ArtifactServer, sha256, testContent } from './support/artifact-server.ts';

const SIZE = 1024 * 1024 + 17;
const content = testContent(SIZE);
const digest = sha256(content);

describe('downloadArtifact', () => {
  let server: ArtifactServer;
  let dir: string;
  let file: string;

  before(async () => {
    server = new ArtifactServer(content);
    await server.start();
  });
  after(() => server.close());
  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-dl-'));
    file = path.join(dir, 'downloads', 'job-1.part');
    server.mode = 'normal';
    server.cuts = 1;
    server.requests.length = 0;
  });
  afterEach(() => rm(dir, { recursive: true, force: true }));

  const opts = (extra: Partial<DownloadOptions> = {}): DownloadOptions => ({ url: server.url(), file, size: SIZE, sha256: digest, retryDelayMs: 5, ...extra });
  const exists = (f: string) => stat(f).then(() => true, () => false);

  it('downloads and verifies, reporting monotonic progress up to the size', async () => {
    const seen: number[] = [];
    let verifying = false;
    const result = await downloadArtifact(opts({ onProgress: (r) => seen.push(r), beforeVerify: () => void (verifying = true) }));
    assert.equal(result.file, file);
    assert.equal(result.resumedFrom, 0);
    assert.ok(verifying);
    assert.deepEqual(await readFile(file), content);
    assert.ok(seen.length > 0);
    assert.deepEqual([...seen].sort((a, b) => a - b), seen);
    assert.equal(seen[seen.length - 1], SIZE);
  });

  it('takes the bytes no faster than maxBytesPerSecond: each chunk waits until the bytes before it are within the rate', async () => {
    // a fake clock: waiting moves it on, so the pacing is checked exactly and at full speed
    let t = 1_000;
    const waits: number[] = [];
    const clock = { now: () => t, sleep: async (ms: number) => void (waits.push(ms), (t += ms)) };
    const seen: number[] = [];
    await downloadArtifact(opts({ maxBytesPerSecond: 200_000, clock, onProgress: (r) => seen.push(r) }));
    assert.deepEqual(await readFile(file), content);
    // the last chunk may go once the bytes before it are within the rate: SIZE minus that chunk, at 200,000 a second
    const beforeLast = seen[seen.length - 2] ?? 0;
    assert.ok(waits.length > 0);
    assert.ok(Math.abs(t - 1_000 - (beforeLast / 200_000) * 1000) < 1e-6, `waited ${t - 1_000} ms for ${beforeLast} bytes`);
    // and no limit: no wait at all
    const untouched = { now: () => 0, sleep: async () => assert.fail('no pacing without a rate') };
    await rm(file);
    await downloadArtifact(opts({ clock: untouched }));
  });

  it('resumes with a Range request after the connection is cut halfway', async () => {
    server.mode = 'cut';
    await downloadArtifact(opts());
    assert.deepEqual(await readFile(file), content);
    assert.equal(server.requests.length, 2);
    assert.equal(server.requests[0]!.range, undefined);
    const resumedAt = Number(/^bytes=(\d+)-$/.exec(server.requests[1]!.range ?? '')?.[1]);
    assert.ok(resumedAt > 0 && resumedAt < SIZE, `resumed at ${resumedAt}`);
    assert.equal(server.requests[1]!.status, 206);
  });

  it('resumes a partial file left by an earlier run', async () => {
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, content.subarray(0, 1000));
    const result = await downloadArtifact(opts());
    assert.equal(result.resumedFrom, 1000);
    assert.equal(server.requests[0]!.range, 'bytes=1000-');
    assert.deepEqual(await readFile(file), content);
  });

  it('starts over when the server ignores the range (200)', async () => {
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, content.subarray(0, 5000));
    server.mode = 'no-range';
    await downloadArtifact(opts());
    assert.equal(server.requests[0]!.status, 200);
    assert.deepEqual(await readFile(file), content);
  });

  it('downloads again from scratch when a resumed file turns out corrupt', async () => {
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, Buffer.alloc(3000, 9)); // not the artifact's first bytes
    await downloadArtifact(opts());
    assert.deepEqual(await readFile(file), content);
    assert.equal(server.requests.length, 2);
    assert.equal(server.requests[1]!.range, undefined);
  });

  it('takes a body cut after its last byte as whole, without a retry', async () => {
    server.mode = 'cut-after-last';
    const logged: string[] = [];
    await downloadArtifact(opts({ logger: createLogger({ level: 'info', write: (l) => logged.push(l) }) }));
    assert.deepEqual(await readFile(file), content);
    assert.equal(server.requests.length, 1, 'no second request');
    assert.ok(!logged.some((l) => /interrupted/.test(l)), logged.join('\n'));
  });

  it('never accepts a truncated file: retries, then fails with DOWNLOAD', async () => {
    server.mode = 'short';
    await assert.rejects(downloadArtifact(opts({ maxAttempts: 3 })), (err: unknown) => {
      assert.ok(err instanceof UpdraftError);
      assert.equal(err.code, 'DOWNLOAD');
      assert.match(err.message, /without progress/);
      return true;
    });
    assert.ok(server.requests.length >= 3);
  });

  it('rejects a tampered byte with INTEGRITY and deletes the file', async () => {
    server.mode = 'tamper';
    await assert.rejects(downloadArtifact(opts()), (err: unknown) => {
      assert.ok(err instanceof UpdraftError);
      assert.equal(err.code, 'INTEGRITY');
      assert.match(err.message, new RegExp(`^sha256 mismatch: expected ${digest}, got [0-9a-f]{64}$`));
      return true;
    });
    assert.equal(await exists(file), false);
  });

  it('stops an endless body at the announced size with INTEGRITY', async () => {
    server.mode = 'endless';
    server.endless = { written: 0, closedByClient: false };
    let maxSeen = 0;
    await assert.rejects(downloadArtifact(opts({ onProgress: (r) => (maxSeen = Math.max(maxSeen, r)) })), (err: unknown) => {
      assert.ok(err instanceof UpdraftError);
      assert.equal(err.code, 'INTEGRITY');
      assert.match(err.message, /more than the announced/);
      return true;
    });
    assert.ok(maxSeen <= SIZE, `wrote ${maxSeen} bytes`);
    assert.equal(await exists(file), false);
    // the client hung up on the server (the test's own timeout is the hang guard)
    while (!server.endless.closedByClient) await new Promise((r) => setTimeout(r, 5));
  });

  it('refuses a response that announces more than the artifact size', async () => {
    server.mode = 'oversize-announced';
    await assert.rejects(downloadArtifact(opts()), (err: unknown) => err instanceof UpdraftError && err.code === 'INTEGRITY');
    assert.equal(await exists(file), false);
  });

  it('surfaces a 403 with its status and reason, without retrying', async () => {
    server.mode = 'forbidden';
    await assert.rejects(downloadArtifact(opts()), (err: unknown) => {
      assert.ok(err instanceof UpdraftError);
      assert.equal(err.code, 'DOWNLOAD');
      assert.equal(err.status, 403);
      assert.equal(err.message, 'HTTP 403: download URL has expired; ask for a fresh one');
      return true;
    });
    assert.equal(server.requests.length, 1);
  });

  it('fails at once, fetching nothing, when the file system cannot hold the download', async () => {
    // the real file system's free space (statfs) against a petabyte
    await assert.rejects(downloadArtifact(opts({ size: 1e15 })), (err: unknown) => {
      assert.ok(err instanceof UpdraftError && err.code === 'DOWNLOAD', String(err));
      assert.match(err.message, /^not enough space for the download: 1000000\.00 GB to fetch, [\d.]+ (GB|MB|kB|bytes) free in .*downloads; nothing fetched$/);
      return true;
    });
    assert.equal(server.requests.length, 0);
  });

  it('counts only what is left to fetch against the free space when resuming', async () => {
    const half = Math.floor(SIZE / 2);
    await mkdir(path.dirname(file), { recursive: true });
    await writeFile(file, content.subarray(0, half));
    await assert.rejects(downloadArtifact(opts({ freeBytes: async () => SIZE - half - 1 })), /not enough space for the download: 524\.3 kB to fetch, 524\.3 kB free/);
    assert.equal(server.requests.length, 0);
    await downloadArtifact(opts({ freeBytes: async () => SIZE - half }));
    assert.deepEqual(await readFile(file), content);
    assert.equal(server.requests.at(-1)!.range, `bytes=${half}-`);
  });

  it('a disk that fills while writing (ENOSPC, from /dev/full) fails at once, not retried as a network fault, and gives the space back', async () => {
    await mkdir(path.dirname(file), { recursive: true });
    await symlink('/dev/full', file); // every write to it fails with ENOSPC
    await assert.rejects(downloadArtifact(opts({ freeBytes: async () => 1e12 })), (err: unknown) => {
      assert.ok(err instanceof UpdraftError && err.code === 'DOWNLOAD', String(err));
      assert.match(err.message, /^no space left for the download in .*downloads \(1048593 bytes announced\); the partial file was deleted$/);
      return true;
    });
    assert.equal(server.requests.length, 1, 'no retry');
    assert.equal(await lstat(file).then(() => true, () => false), false, 'the partial file is gone');
  });

  it('stops on abort and keeps the partial file for a later resume', async () => {
    server.mode = 'stall';
    const ctrl = new AbortController();
    const p = downloadArtifact(opts({ signal: ctrl.signal }));
    await server.stalled();
    // wait until the first half reached the disk (hang guard: the test timeout)
    while (((await stat(file).catch(() => undefined))?.size ?? 0) === 0) await new Promise((r) => setTimeout(r, 5));
    ctrl.abort();
    await assert.rejects(p, (err: unknown) => (err as Error).name === 'AbortError');
    const partial = (await stat(file)).size;
    assert.ok(partial > 0 && partial < SIZE);
    server.mode = 'normal';
    const result = await downloadArtifact(opts());
    assert.equal(result.resumedFrom, partial);
    assert.deepEqual(await readFile(file), content);
  });

  it('never logs the signed part of the URL', async () => {
    server.mode = 'cut';
    const lines: string[] = [];
    await downloadArtifact(opts({ url: server.url(undefined, { sig: 'SECRET-SIGNATURE', exp: '4000000000' }), logger: createLogger({ level: 'debug', write: (l) => lines.push(l) }) }));
    assert.ok(lines.length > 0);
    assert.ok(lines.every((l) => !l.includes('SECRET-SIGNATURE')), lines.join('\n'));
  });
});

describe("the simulator's memoryDownloader", () => {
  let server: ArtifactServer;
  before(async () => {
    server = new ArtifactServer(content);
    await server.start();
  });
  after(() => server.close());

  const opts = (extra: Partial<DownloadOptions> = {}): DownloadOptions => ({ url: server.url(), file: '(memory)', size: SIZE, sha256: digest, retryDelayMs: 5, ...extra });

  it('downloads and verifies, then leaves nothing listening to the job signal', async () => {
    server.mode = 'normal';
    const ctrl = new AbortController();
    await memoryDownloader(opts({ signal: ctrl.signal }));
    // a simulated device stops its job's signal when it retires: a listener left there
    // would destroy a finished request, and the profile showed that cost
    assert.equal(getEventListeners(ctrl.signal, 'abort').length, 0);
    server.mode = 'tamper';
    await assert.rejects(memoryDownloader(opts({ signal: ctrl.signal })), (err: unknown) => err instanceof UpdraftError && err.code === 'INTEGRITY');
    assert.equal(getEventListeners(ctrl.signal, 'abort').length, 0);
  });

  it('stops on abort with the reason it was given', async () => {
    server.mode = 'stall';
    const ctrl = new AbortController();
    const p = memoryDownloader(opts({ signal: ctrl.signal }));
    await server.stalled();
    const reason = new Error('stopped');
    ctrl.abort(reason);
    await assert.rejects(p, (err: unknown) => err === reason);
    await assert.rejects(memoryDownloader(opts({ signal: ctrl.signal })), (err: unknown) => err === reason);
  });
});
