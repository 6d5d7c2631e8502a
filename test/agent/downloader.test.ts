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
    server.refuseNext = 0;
    server.refuseStatus = 403;
    server.refuseHeaders = {};
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

  /** A clock that moves only when the downloader waits on it: the pauses are seen exactly, at full speed. */
  const fakeClock = () => {
    const c = { t: 0, waits: [] as number[], now: () => c.t, sleep: async (ms: number) => void (c.waits.push(ms), (c.t += ms)) };
    return c;
  };

  it('rides out a storage outage of minutes (20 answers 503: 4 to 9 minutes of pauses, by its clock): failures that may pass are retried for retryForMs without progress, not 5 times', async () => {
    // the server's storage is down: 503 with Retry-After, as the download route answers
    server.refuseNext = 20;
    server.refuseStatus = 503;
    server.refuseHeaders = { 'retry-after': '5' };
    const clock = fakeClock();
    const lines: string[] = [];
    await downloadArtifact(opts({ clock, logger: createLogger({ level: 'info', write: (l) => lines.push(l) }) }));
    assert.deepEqual(await readFile(file), content);
    assert.equal(server.requests.length, 21, '20 refused, then served');
    // the backoff from 1 s (at least the 5 s asked for) doubles to its cap of 30 s, with jitter
    assert.ok(clock.waits.every((w) => w >= 5000 && w <= 30_000), clock.waits.join());
    assert.ok(clock.t > 200_000 && clock.t < 600_000, `waited ${clock.t} ms`);
    assert.equal(lines.filter((l) => /WARN .*download interrupted, retrying .*error="HTTP 503: injected 503" attempt=\d+ delayMs=\d+ retryAfterMs=5000$/.test(l)).length, 20, lines.join('\n'));
  });

  it('gives up after retryForMs of failures without progress, the last attempt at its end, saying how long and how many', async () => {
    server.refuseNext = Number.POSITIVE_INFINITY;
    server.refuseStatus = 502;
    const clock = fakeClock();
    await assert.rejects(downloadArtifact(opts({ clock, retryForMs: 120_000 })), (err: unknown) => {
      assert.ok(err instanceof UpdraftError && err.code === 'DOWNLOAD', String(err));
      assert.match(err.message, /^download failed: no progress in 120 s of retrying \(\d+ attempts\): HTTP 502: injected 502$/);
      return true;
    });
    assert.equal(clock.t, 120_000, 'the pauses add up to the budget: the last one is cut to it');
    assert.equal(server.requests.length, clock.waits.length + 1);
    assert.ok(server.requests.length > 5, `${server.requests.length} attempts`);
  });

  it('a byte gained starts the budget over: a link cut every time goes on as long as it moves', async () => {
    server.mode = 'cut';
    server.cuts = 12; // each response cut halfway: the file grows by half of what is left each time
    const clock = fakeClock();
    // pauses of 0.5 to 1 s: 12 failures in a row would take 6 s or more, past the budget
    await downloadArtifact(opts({ clock, retryForMs: 5000, retryDelayMs: 1000, maxRetryDelayMs: 1000 }));
    assert.deepEqual(await readFile(file), content);
    assert.equal(server.requests.length, 13);
  });

  it('waits as long as Retry-After asks (seconds, or a date by the server\'s clock), up to maxRetryDelayMs', async () => {
    server.refuseStatus = 503;
    const asked = async (retryAfter: string, extra: Partial<DownloadOptions> = {}, date?: string) => {
      server.refuseNext = 1;
      server.refuseHeaders = { 'retry-after': retryAfter, ...(date ? { date } : {}) };
      const clock = fakeClock();
      await rm(file, { force: true });
      await downloadArtifact(opts({ clock, ...extra }));
      return clock.waits;
    };
    const [twenty] = await asked('20');
    assert.ok(twenty! >= 20_000 && twenty! <= 25_000, `${twenty} ms for Retry-After: 20 (a quarter more at most, spreading a fleet)`);
    assert.deepEqual(await asked('3600'), [30_000], 'an hour asked: the longest pause, 30 s');
    assert.deepEqual(await asked('3600', { maxRetryDelayMs: 50_000 }), [50_000]);
    // a date: judged against the response's own Date header, not the device's clock. The
    // server's clock is an hour behind the device's here: by the device's, the date would be
    // an hour past (no wait beyond the backoff); by the server's it is 40 s ahead
    const serverNow = Date.now() - 3_600_000;
    const [dated] = await asked(new Date(serverNow + 40_000).toUTCString(), { maxRetryDelayMs: 120_000 }, new Date(serverNow).toUTCString());
    assert.ok(dated! >= 38_000 && dated! <= 52_000, `${dated} ms for a date 40 s ahead by the server's clock`);
    const [unreadable] = await asked('soon');
    assert.ok(unreadable! <= 5, `${unreadable} ms: an unreadable one is ignored, the backoff (5 ms, jittered) is the pause`);
  });

  it('fails at once on a refusal that waiting does not change (404, 410, 400), with its status', async () => {
    for (const status of [404, 410, 400]) {
      server.requests.length = 0;
      server.refuseNext = 1;
      server.refuseStatus = status;
      const clock = fakeClock();
      await assert.rejects(downloadArtifact(opts({ clock })), (err: unknown) => err instanceof UpdraftError && err.code === 'DOWNLOAD' && err.status === status && err.message === `HTTP ${status}: injected ${status}`);
      assert.equal(server.requests.length, 1, `${status}: no retry`);
      assert.deepEqual(clock.waits, []);
    }
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
