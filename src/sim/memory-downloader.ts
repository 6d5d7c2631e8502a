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
import { setTimeout as sleep } from 'node:timers/promises';
import { UpdraftError } from '../errors.ts';
import { DOWNLOAD_DEFAULTS, type DownloadOptions, type DownloadResult, type Downloader } from '../agent/downloader.ts';

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
 * Downloads into memory: stops at the announced size, verifies, never touches the disk. A
 * cut connection or a 5xx is retried with backoff, as the agent's downloader does (a server
 * accepting thousands of connections at once resets some of them).
 */
export const memoryDownloader: Downloader = async (opts) => {
  const attempts = opts.maxAttempts ?? DOWNLOAD_DEFAULTS.maxAttempts;
  for (let attempt = 1; ; attempt++) {
    try {
      return await downloadOnce(opts);
    } catch (err) {
      const status = (err as { status?: number }).status;
      const retryable = !(err instanceof UpdraftError) || (status !== undefined && status >= 500);
      if (!retryable || attempt >= attempts || opts.signal?.aborted) throw err;
      const delay = Math.min((opts.retryDelayMs ?? DOWNLOAD_DEFAULTS.retryDelayMs) * 2 ** (attempt - 1), opts.maxRetryDelayMs ?? DOWNLOAD_DEFAULTS.maxRetryDelayMs);
      await sleep(delay * (0.5 + Math.random() / 2));
    }
  }
};
memoryDownloader.inMemory = true;

async function downloadOnce(opts: DownloadOptions): Promise<DownloadResult> {
  opts.signal?.throwIfAborted();
  const { response, abort } = get(new URL(opts.url), opts.headers);
  const onAbort = () => abort(opts.signal!.reason);
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  const hash = createHash('sha256');
  let size = 0;
  try {
    const res = await response;
    if (res.statusCode !== 200) {
      let body = '';
      for await (const chunk of res) if ((body += String(chunk)).length > 200) break;
      throw Object.assign(new UpdraftError('DOWNLOAD', `HTTP ${res.statusCode}: ${body.slice(0, 200)}`), { status: res.statusCode });
    }
    for await (const chunk of res as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > opts.size) throw new UpdraftError('INTEGRITY', `server sent more than the announced ${opts.size} bytes; download stopped`);
      hash.update(chunk);
      opts.onProgress?.(size, opts.size);
    }
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
  }
  await opts.beforeVerify?.();
  const sha256 = hash.digest('hex');
  if (size !== opts.size) throw new UpdraftError('INTEGRITY', `size mismatch: expected ${opts.size} bytes, got ${size}`);
  if (sha256 !== opts.sha256) throw new UpdraftError('INTEGRITY', `sha256 mismatch: expected ${opts.sha256}, got ${sha256}`);
  return { file: opts.file, resumedFrom: 0 };
}
