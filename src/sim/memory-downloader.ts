/**
 * The simulator's downloader: a real HTTP download of the real artifact, verified for size
 * and SHA-256 exactly like the agent's, but kept in memory instead of written and fsynced
 * to disk. Thousands of simulated devices share one process and one disk; their fsyncs
 * would serialize on libuv's four threads and measure the simulator's disk, not Updraft.
 *
 * It speaks HTTP with node:http rather than fetch: one process plays thousands of devices,
 * and fetch's web streams cost it about 15% of its CPU in a fleet update (profiled),
 * CPU the server under test then did not get on a shared machine. Each download opens its
 * own connection, as each real device does: a pool shared by thousands of simulated devices
 * would hide the server's cost of accepting them, and a pooled connection the server closed
 * while idle fails the next download with "socket hang up" (seen in a 100,000-device run).
 */
import { createHash } from 'node:crypto';
import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import { UpdraftError } from '../errors.ts';
import { DownloadRetries, REAL_CLOCK, isTransientStatus, permanentFetchFailure, rangeAnswer, retryAfterMs, type DownloadOptions, type DownloadResult, type Downloader } from '../agent/downloader.ts';

/**
 * Starts the request; `abort` is what the caller runs when the job is stopped while it
 * downloads. The request is not given the signal itself: node:http listened to it past the
 * end of the download (test/agent/downloader.test.ts), and a simulated device that retires
 * stops its job's signal, so every visit paid for destroying a finished request with an
 * AbortError and formatting its stack (source-mapped under tsx): 8% of a cycling
 * simulator, half of it the stack, profiled.
 */
function get(url: URL, headers: Record<string, string> | undefined): { response: Promise<IncomingMessage>; abort: (reason: unknown) => void } {
  const client = url.protocol === 'https:' ? https : url.protocol === 'http:' ? http : undefined;
  if (!client) return { response: Promise.reject(new UpdraftError('DOWNLOAD', `unsupported download URL scheme ${url.protocol}`)), abort: () => {} };
  let req: http.ClientRequest | undefined;
  const response = new Promise<IncomingMessage>((resolve, reject) => {
    req = client.get(url, { agent: false, ...(headers ? { headers } : {}) }, resolve);
    req.on('error', reject);
  });
  return { response, abort: (reason) => req!.destroy(reason instanceof Error ? reason : new UpdraftError('DOWNLOAD', 'download aborted')) };
}

/**
 * A failure of one attempt that may pass (no connection, a connection cut, 408, 429, a 5xx),
 * with the bytes that attempt received and the server's `Retry-After`.
 */
class Transient extends Error {
  readonly received: number;
  readonly retryAfterMs: number | undefined;
  constructor(message: string, received: number, retryAfterMs?: number) {
    super(message);
    this.received = received;
    this.retryAfterMs = retryAfterMs;
  }
}

/**
 * Downloads into memory: stops at the announced size, verifies, never touches the disk.
 * Failures that may pass are retried by the agent's policy (`DownloadRetries`: for
 * `retryForMs` without progress, the backoff or the server's `Retry-After`), so simulated
 * devices ride out a storage outage, or a server resetting some of thousands of connections
 * at once, as agents do. Nothing is kept between attempts (each starts at byte 0): an attempt
 * counts as progress when it got further than any before it, as bytes kept on disk would.
 * The pauses wait on `clock` (tests) and end when the job is stopped.
 */
export const memoryDownloader: Downloader = async (opts) => {
  const clock = opts.clock ?? REAL_CLOCK;
  const retries = new DownloadRetries(opts, () => clock.now());
  let furthest = 0;
  for (;;) {
    try {
      return await downloadOnce(opts);
    } catch (err) {
      if (opts.signal?.aborted || !(err instanceof Transient)) throw err;
      const next = retries.failed(err.received > furthest, err.retryAfterMs);
      furthest = Math.max(furthest, err.received);
      if ('giveUp' in next) throw new UpdraftError('DOWNLOAD', `download failed: ${next.giveUp}: ${err.message}`, { cause: err });
      await clock.sleep(next.delayMs, opts.signal).catch(() => opts.signal?.throwIfAborted());
    }
  }
};
memoryDownloader.inMemory = true;

async function downloadOnce(opts: DownloadOptions): Promise<DownloadResult> {
  opts.signal?.throwIfAborted();
  let url: URL;
  try {
    url = new URL(opts.url);
  } catch (err) {
    // TypeError's message quotes the whole URL, its signature included: the agent's words instead
    throw new UpdraftError('DOWNLOAD', `download failed: ${permanentFetchFailure(err, opts.url) ?? 'the URL cannot be used'}`);
  }
  const { response, abort } = get(url, opts.headers);
  const onAbort = () => abort(opts.signal!.reason);
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  const hash = createHash('sha256');
  let size = 0;
  try {
    let res: IncomingMessage;
    try {
      res = await response;
    } catch (err) {
      if (err instanceof UpdraftError || opts.signal?.aborted) throw err;
      // what waiting does not change (a server certificate refused) fails at once, as on the agent
      const permanent = permanentFetchFailure(err, opts.url);
      if (permanent) throw new UpdraftError('DOWNLOAD', `download failed: ${permanent}`);
      throw new Transient(`request failed: ${(err as Error).message}`, 0);
    }
    // a 206 and a 416 read as the agent reads them (it asks for no range: nothing is kept)
    const answer = rangeAnswer(res.statusCode ?? 0, res.headers['content-range'], 0, opts.size);
    if (answer !== undefined && !('start' in answer)) {
      res.destroy();
      if ('fail' in answer) throw Object.assign(new UpdraftError('DOWNLOAD', answer.fail), { status: 416 });
      throw new Transient(answer.retry, 0);
    }
    if (answer === undefined) {
      const status = res.statusCode ?? 0;
      let body = '';
      try {
        for await (const chunk of res) if ((body += String(chunk)).length > 200) break;
      } catch {
        // the reason is a courtesy
      }
      const message = `HTTP ${status}: ${body.slice(0, 200)}`;
      if (isTransientStatus(status)) throw new Transient(message, 0, retryAfterMs(res.headers['retry-after'], res.headers.date));
      throw Object.assign(new UpdraftError('DOWNLOAD', message), { status });
    }
    try {
      for await (const chunk of res as AsyncIterable<Buffer>) {
        size += chunk.length;
        if (size > opts.size) throw new UpdraftError('INTEGRITY', `server sent more than the announced ${opts.size} bytes; download stopped`);
        hash.update(chunk);
        opts.onProgress?.(size, opts.size);
      }
    } catch (err) {
      if (err instanceof UpdraftError || opts.signal?.aborted) throw err;
      throw new Transient(`connection interrupted after ${size} of ${opts.size} bytes: ${(err as Error).message}`, size);
    }
    if (size < opts.size) throw new Transient(`connection closed after ${size} of ${opts.size} bytes`, size);
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
  }
  await opts.beforeVerify?.();
  const sha256 = hash.digest('hex');
  if (size !== opts.size) throw new UpdraftError('INTEGRITY', `size mismatch: expected ${opts.size} bytes, got ${size}`);
  if (sha256 !== opts.sha256) throw new UpdraftError('INTEGRITY', `sha256 mismatch: expected ${opts.sha256}, got ${sha256}`);
  return { file: opts.file, resumedFrom: 0 };
}
