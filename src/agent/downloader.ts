/**
 * Resumable, bounded, verified artifact download (pattern step 7: "downloads (resumable),
 * verifies hash").
 *
 * - Resumes a partial file with `Range: bytes=<have>-` (RFC 9110 §14.2): 206 appends, 200
 *   starts over (so does a 206 from byte 0), a 206 from another byte is refused (the server's
 *   fault; the file kept), 416 fails at once (the file is incomplete, or it would not be asked for).
 * - Only bytes beyond the most the file has held are progress (the retry budget starts over),
 *   and a resumed file that fails verification is fetched again from the start once per
 *   download (`fetchedFromStart` carries it over calls: the agent's restarts, fresh URLs): a
 *   server that makes the same bytes be lost and fetched again runs the budget out.
 * - Never writes more than the announced size: a server that sends more (an endless-data
 *   attack) is cut off at once with an INTEGRITY error.
 * - A failure that may pass (no connection, a connection cut, a 5xx, 429, 408) is retried with
 *   capped exponential backoff and jitter, resuming from what is on disk, for as long as
 *   `retryForMs` (10 minutes) of attempts without net progress: a storage blip or a device in
 *   a tunnel is ridden out, where a count of attempts (5, about 15 s) failed a whole wave for
 *   a 20-second outage. A `Retry-After` (RFC 9110 §10.2.3, seconds or a date, judged by the
 *   server's `Date`) lengthens the pause, up to `maxRetryDelayMs`. Refusals that waiting does
 *   not change (404, 410, a 4xx, a bad file, a URL that cannot be used, a server certificate
 *   refused) fail at once; the job's timeouts, on the server, bound the whole.
 * - The whole file is verified (size and SHA-256) at the end; a mismatching file is deleted.
 * - Before a byte is fetched, the free space of the download's file system must hold what is
 *   left to fetch: a device short of space fails at once with the figures, rather than
 *   spending its (metered) link on a download that ends in ENOSPC. Running out while writing
 *   anyway (something else filled the disk) fails with the same kind of reason, and the
 *   partial file is deleted to give the space back.
 * - The URL carries a signature: only its redacted form is ever logged, and no error this
 *   module throws quotes it (`describe`, `readReason`).
 */
import { randomInt } from 'node:crypto';
import { mkdir, open, rm, stat, statfs } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { UpdraftError, asUpdraftError } from '../errors.ts';
import { silentLogger, type Logger } from '../util/logger.ts';
import { clipped, redactUrlsIn } from '../util/redact-url.ts';
import { hashFile } from './file-hash.ts';

/** What to download and how. */
export interface DownloadOptions {
  /** The (pre-signed) download URL. */
  url: string;
  /** Destination, e.g. `<stateDir>/downloads/<jobId>.part`; an existing file there is resumed. */
  file: string;
  /** Announced size in bytes: nothing beyond it is ever written. */
  size: number;
  /** Expected lower-case hex SHA-256 of the whole file. */
  sha256: string;
  /** Aborts the download (the partial file stays for a later resume). */
  signal?: AbortSignal;
  /** Called as bytes arrive, with the bytes on disk and the announced size. */
  onProgress?: (received: number, size: number) => void;
  /**
   * Called when the download starts over from byte 0 on purpose: the one fetch from the start
   * after a resumed file failed verification, whose bytes are progress again (a caller that
   * counts only bytes beyond the most held, as the agent's expiry budget does, starts over too).
   * Awaited before that fetch is made: the agent saves that it is made (`fetchedFromStart`).
   */
  onRestart?: () => Promise<void> | void;
  /**
   * The one fetch from the start was already made for this download, by an earlier call (before
   * a restart, or before a fresh URL): a resumed file that fails verification then fails.
   */
  fetchedFromStart?: boolean;
  /** Awaited before the whole file is hashed (the agent reports VERIFYING here). */
  beforeVerify?: () => Promise<void> | void;
  /**
   * How long failures that may pass (no connection, a 5xx, 429) are retried without a byte
   * gained before the download fails, in ms (default 600 000: 10 minutes). Each byte gained
   * starts it over, so a slow, often cut link goes on as long as it moves.
   */
  retryForMs?: number;
  /** Fail also after this many failed attempts in a row without net progress (default: no bound but `retryForMs`). */
  maxAttempts?: number;
  /** First retry delay in ms, doubled per failed attempt (default 1000). */
  retryDelayMs?: number;
  /** Longest retry delay in ms (default 30 000), also of one a `Retry-After` asks for. */
  maxRetryDelayMs?: number;
  /**
   * Most bytes per second to take from the network (absent: as fast as it comes), for
   * devices on metered or shared links: the body is read no faster than this, so TCP's flow
   * control slows the sender down, and the link keeps room for the device's own traffic.
   */
  maxBytesPerSecond?: number;
  /** The clock the pacing and the retries read and wait on (tests); default the real one. */
  clock?: { now(): number; sleep(ms: number, signal?: AbortSignal): Promise<void> };
  /** Extra request headers (e.g. `Authorization` for a temporary credential). */
  headers?: Record<string, string>;
  logger?: Logger;
  /** The fetch implementation (default: Node's global fetch). */
  fetch?: typeof fetch;
  /** Bytes free to this process in a directory (tests); default the file system's (statfs). */
  freeBytes?: (dir: string) => Promise<number>;
}

/** Defaults of the optional settings. */
export const DOWNLOAD_DEFAULTS = {
  retryForMs: 600_000,
  retryDelayMs: 1000,
  maxRetryDelayMs: 30_000,
} as const;

/**
 * The download seam of the agent (`downloadArtifact` by default; the simulator may fake it).
 * `inMemory`: the downloader never writes `file`, so the agent has no part file to remove.
 */
export type Downloader = ((opts: DownloadOptions) => Promise<DownloadResult>) & { inMemory?: boolean };

/** A verified download. */
export interface DownloadResult {
  file: string;
  /** Bytes that were already on disk when the call started. */
  resumedFrom: number;
}

/** Fails at once, with the figures, when the download's file system cannot hold `needed` more bytes. */
async function ensureSpace(opts: DownloadOptions, needed: number): Promise<void> {
  const dir = path.dirname(opts.file);
  let free: number;
  try {
    free = opts.freeBytes ? await opts.freeBytes(dir) : await statfs(dir).then((s) => s.bavail * s.bsize);
  } catch {
    return; // a file system that cannot tell: the write will say
  }
  if (free < needed) {
    throw new UpdraftError('DOWNLOAD', `not enough space for the download: ${formatBytes(needed)} to fetch, ${formatBytes(free)} free in ${dir}; nothing fetched`);
  }
}

function isNoSpace(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOSPC' || code === 'EDQUOT';
}

function formatBytes(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} GB`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)} MB`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} kB`;
  return `${n} bytes`;
}

/** The clock of a download without `clock`: the real one (its pauses end early when `signal` aborts). */
export const REAL_CLOCK: NonNullable<DownloadOptions['clock']> = { now: () => performance.now(), sleep: (ms, signal) => sleep(ms, undefined, signal ? { signal } : {}) };

/** After a failed attempt: wait `delayMs` before attempt `attempt + 1`, or give up, saying why. */
export type RetryDecision = { attempt: number; delayMs: number } | { giveUp: string };

/**
 * The retry policy of one download after failures that may pass: retried for `retryForMs`
 * without progress (each attempt that gains bytes starts it over), `maxAttempts` in a row if
 * given, with the backoff or the server's `Retry-After` (`retryPause`), the last attempt at the
 * end of the budget. `downloadArtifact` follows it, and so does the simulator's in-memory
 * downloader (src/sim), so that simulated devices ride out an outage as agents do.
 */
export class DownloadRetries {
  private readonly opts: Pick<DownloadOptions, 'retryForMs' | 'maxAttempts' | 'retryDelayMs' | 'maxRetryDelayMs'>;
  private readonly now: () => number;
  private failures = 0;
  /** When the attempts began failing without progress (`now`'s ms), or undefined. */
  private stalledSince: number | undefined;

  constructor(opts: Pick<DownloadOptions, 'retryForMs' | 'maxAttempts' | 'retryDelayMs' | 'maxRetryDelayMs'>, now: () => number) {
    this.opts = opts;
    this.now = now;
  }

  /**
   * An attempt failed in a way that may pass; `progressed`: it gained bytes (net: more than
   * the download had before it), `retryAfterMs`: the server's `Retry-After`.
   */
  failed(progressed: boolean, retryAfterMs: number | undefined): RetryDecision {
    // only net progress renews the budget: a server that restarts at byte 0 every time must not be retried forever
    if (progressed) {
      this.failures = 0;
      this.stalledSince = undefined;
    }
    const failures = ++this.failures;
    const now = this.now();
    this.stalledSince ??= now;
    const left = this.stalledSince + (this.opts.retryForMs ?? DOWNLOAD_DEFAULTS.retryForMs) - now;
    if (left <= 0 || failures >= (this.opts.maxAttempts ?? Infinity)) {
      return { giveUp: left <= 0 ? `no progress in ${formatSeconds(now - this.stalledSince)} of retrying (${failures} attempt${failures === 1 ? '' : 's'})` : `${failures} attempts without progress` };
    }
    // the last attempt is made when the budget ends, not after it
    return { attempt: failures, delayMs: Math.min(retryPause(failures, retryAfterMs, this.opts), left) };
  }
}

/** HTTP statuses of a failure that may pass, retried: 408, 429 and 5xx. */
export function isTransientStatus(status: number): boolean {
  return status === 408 || status === 429 || status >= 500;
}

/**
 * Certificate verification failures, as Node names OpenSSL's (X509_V_ERR_*) and its own host
 * check: the server's certificate, the device's trusted CAs or the device's clock has to be
 * changed; another attempt meets the same certificate. (A handshake cut by the network, e.g.
 * ECONNRESET, is not one of them and is retried.)
 */
const CERT_CODES = new Set([
  'UNABLE_TO_GET_ISSUER_CERT', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'UNABLE_TO_DECRYPT_CERT_SIGNATURE', 'UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY',
  'CERT_SIGNATURE_FAILURE', 'CERT_NOT_YET_VALID', 'CERT_HAS_EXPIRED', 'ERROR_IN_CERT_NOT_BEFORE_FIELD', 'ERROR_IN_CERT_NOT_AFTER_FIELD',
  'DEPTH_ZERO_SELF_SIGNED_CERT', 'SELF_SIGNED_CERT_IN_CHAIN', 'CERT_CHAIN_TOO_LONG', 'CERT_REVOKED', 'INVALID_CA', 'PATH_LENGTH_EXCEEDED', 'INVALID_PURPOSE',
  'CERT_UNTRUSTED', 'CERT_REJECTED', 'HOSTNAME_MISMATCH', 'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/**
 * Of those, the ones a device's clock decides (one never set after a power loss reads 1970,
 * one back after weeks off reads the day it shut down): NTP sets it right soon after boot,
 * and the download host's certificate, renewed meanwhile, is "not yet valid" until then. The
 * device gets its command at once over MQTT (the broker's older certificate still passes),
 * so these are retried for the budget like a refused connection, the log saying to check
 * the clock; failing at once failed the job, and counted towards the abort rule.
 */
const CLOCK_CODES = new Set(['CERT_NOT_YET_VALID', 'CERT_HAS_EXPIRED']);

/**
 * Why a request that failed before any answer will fail the same way however long the device
 * waits, or undefined when it may pass: a URL that does not parse (ERR_INVALID_URL) or is not
 * http(s), or a server certificate refused (`CERT_CODES`) for another reason than its dates;
 * and what undici says only in words: a URL with user info (fetch will not send it), redirects
 * that do not end (a loop), a redirect to a scheme that is not http(s) (`file:`). A name that does not resolve
 * (ENOTFOUND) may pass: a device whose network just came up, or whose DNS or VPN is not up
 * yet, gets it for names that exist, and the URL comes from the server, which names itself;
 * it is retried for the budget like a refused connection.
 */
export function permanentFetchFailure(err: unknown, url: string): string | undefined {
  let e: unknown = err;
  for (let depth = 0; depth < 5 && e !== null && typeof e === 'object'; depth++) {
    const code = (e as { code?: unknown }).code;
    if (code === 'ERR_INVALID_URL') return `${describe(err)}: the URL cannot be used; waiting does not change that`;
    if (typeof code === 'string' && CLOCK_CODES.has(code)) return undefined; // the clock may yet be set (above)
    if (typeof code === 'string' && CERT_CODES.has(code)) {
      return `the server's TLS certificate is refused: ${redactUrlsIn((e as Error).message)} (${code}); waiting does not change that: check the certificate the download host presents and the CAs the device trusts`;
    }
    e = (e as { cause?: unknown }).cause;
  }
  const scheme = URL.canParse(url) ? new URL(url).protocol : undefined;
  if (scheme !== undefined && scheme !== 'http:' && scheme !== 'https:') return `the URL's scheme is ${scheme}, not http: or https:; waiting does not change that`;
  // what undici says only in words (no code): the same redirects, the same URL every time
  const said = (e: unknown) => (e !== null && typeof e === 'object' && typeof (e as Error).message === 'string' ? (e as Error).message : '');
  const words = [said(err), said((err as { cause?: unknown } | null)?.cause)];
  if (words.some((m) => m.startsWith('Request cannot be constructed from a URL that includes credentials'))) {
    return 'the URL includes credentials (user:password@), which fetch refuses to send (Request cannot be constructed from a URL that includes credentials); waiting does not change that';
  }
  if (words.includes('redirect count exceeded')) return "the server's redirects do not end (redirect count exceeded: more than 20, or a loop); waiting does not change that";
  if (words.includes('URL scheme must be a HTTP(S) scheme')) return 'a redirect leads to a URL that is not http: or https: (URL scheme must be a HTTP(S) scheme); waiting does not change that';
  return undefined;
}

/**
 * A failure worth another attempt (connection cut, 5xx, wrong resume offset). It carries
 * only text already redacted (`describe`), never the network's error as its cause: that one
 * quotes the URL (undici's message, ERR_INVALID_URL's `input`), and the DOWNLOAD error that
 * ends the retries keeps this as its cause, which a crash or a logger may print.
 */
class Retryable extends Error {
  /** How long the server asked to be left alone (`Retry-After`), in ms. */
  readonly retryAfterMs: number | undefined;
  constructor(message: string, retryAfterMs?: number) {
    super(message);
    this.retryAfterMs = retryAfterMs;
  }
}

/**
 * Downloads `url` to `file`, resuming, bounded by `size`, verified against `sha256`.
 * Throws UpdraftError INTEGRITY (size or hash mismatch, too much data) or DOWNLOAD (HTTP error
 * with `status`, or retries exhausted).
 */
export async function downloadArtifact(opts: DownloadOptions): Promise<DownloadResult> {
  const log = (opts.logger ?? silentLogger).child('downloader');
  const clock = opts.clock ?? REAL_CLOCK;
  const retries = new DownloadRetries(opts, () => clock.now());
  await mkdir(path.dirname(opts.file), { recursive: true });
  const resumedFrom = (await sizeOnDisk(opts.file)) ?? 0;
  // the file holds bytes of more than one fetch (an earlier run's, a resumed attempt's): if
  // it then fails verification, it is fetched again from scratch, once, before giving up
  let resumed = resumedFrom > 0;
  let fetchedAgain = opts.fetchedFromStart === true;
  // bytes were asked for in this call: a file found whole (kept after a restart) was not downloaded here
  let transferred = false;
  // the most bytes the file has held: only bytes beyond it are progress, so a server that
  // makes the same bytes be lost and fetched again (a 206 refused, a 200 cut at the same
  // place) runs the budget out instead of renewing it every cycle
  let mostHeld = resumedFrom;
  for (;;) {
    opts.signal?.throwIfAborted();
    let have = await sizeOnDisk(opts.file);
    if (have !== undefined && have > opts.size) {
      await rm(opts.file, { force: true });
      have = undefined;
    }
    if (have === undefined || have < opts.size) {
      await ensureSpace(opts, opts.size - (have ?? 0));
      try {
        transferred = true;
        await transfer(opts, have ?? 0, log, (start) => (resumed = start > 0));
        const now = (await sizeOnDisk(opts.file)) ?? 0;
        if (now < opts.size) throw new Retryable(`connection closed after ${now} of ${opts.size} bytes`);
      } catch (err) {
        if (opts.signal?.aborted) throw opts.signal.reason;
        if (err instanceof UpdraftError) throw err;
        if (isNoSpace(err)) {
          await rm(opts.file, { force: true });
          throw new UpdraftError('DOWNLOAD', `no space left for the download in ${path.dirname(opts.file)} (${opts.size} bytes announced); the partial file was deleted`, { cause: err });
        }
        if (!(err instanceof Retryable)) throw new UpdraftError('DOWNLOAD', `download failed: ${describe(err)}`, { cause: err });
        const held = (await sizeOnDisk(opts.file)) ?? 0;
        const next = retries.failed(held > mostHeld, err.retryAfterMs);
        mostHeld = Math.max(mostHeld, held);
        if ('giveUp' in next) throw new UpdraftError('DOWNLOAD', `download failed: ${next.giveUp}: ${err.message}`, { cause: err });
        log.warn('download interrupted, retrying', { url: shownUrl(opts.url), error: err.message, attempt: next.attempt, delayMs: next.delayMs, ...(err.retryAfterMs !== undefined ? { retryAfterMs: err.retryAfterMs } : {}) });
        await clock.sleep(next.delayMs, opts.signal).catch(() => opts.signal?.throwIfAborted());
        continue;
      }
    }
    await opts.beforeVerify?.();
    const actual = await hashFile(opts.file, opts.signal);
    if (actual.size === opts.size && actual.sha256 === opts.sha256) return { file: opts.file, resumedFrom };
    await rm(opts.file, { force: true });
    if (resumed && !fetchedAgain) {
      // the one fetch from the start: its bytes up to the size are progress again, once
      fetchedAgain = true;
      resumed = false;
      mostHeld = 0;
      await opts.onRestart?.();
      log.warn('resumed download failed verification, downloading again from the start', { url: shownUrl(opts.url) });
      continue;
    }
    // what the reason says is what happened: a file found whole was not downloaded by this
    // call, though the job's one fetch from the start was made before (a restart since)
    const again = !fetchedAgain ? '' : transferred ? ' (after downloading it again from the start)' : ' (the file kept on the device, not downloaded again: this job already made its one download from the start)';
    if (actual.size !== opts.size) throw new UpdraftError('INTEGRITY', `size mismatch: expected ${opts.size} bytes, got ${actual.size}${again}`);
    throw new UpdraftError('INTEGRITY', `sha256 mismatch: expected ${opts.sha256}, got ${actual.sha256}${again}`);
  }
}

/** One HTTP request for the bytes from `have` on. Returns the bytes written. */
async function transfer(opts: DownloadOptions, have: number, log: Logger, onStart: (start: number) => void): Promise<number> {
  const ctrl = new AbortController();
  const onAbort = () => ctrl.abort(opts.signal?.reason);
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    const headers: Record<string, string> = { ...opts.headers };
    if (have > 0) headers.range = `bytes=${have}-`;
    let res: Response;
    try {
      res = await (opts.fetch ?? fetch)(opts.url, { headers, signal: ctrl.signal });
    } catch (err) {
      const permanent = permanentFetchFailure(err, opts.url);
      if (permanent) throw new UpdraftError('DOWNLOAD', `download failed: ${permanent}`);
      throw new Retryable(`request failed: ${describe(err)}`);
    }
    const answer = rangeAnswer(res.status, res.headers.get('content-range'), have, opts.size);
    if (answer === undefined) {
      const reason = await readReason(res);
      const message = `HTTP ${res.status}: ${reason}`;
      if (isTransientStatus(res.status)) throw new Retryable(message, retryAfterMs(res.headers.get('retry-after'), res.headers.get('date')));
      throw new UpdraftError('DOWNLOAD', message, { status: res.status });
    }
    if (!('start' in answer)) {
      await res.body?.cancel().catch(() => {});
      // the bytes on disk stay after a 206 from the wrong byte (the server's fault)
      if ('fail' in answer || answer.startOver) await rm(opts.file, { force: true });
      if ('fail' in answer) throw new UpdraftError('DOWNLOAD', `${answer.fail}; the partial file was deleted`, { status: 416 });
      throw new Retryable(answer.retry);
    }
    const start = answer.start;
    if (have > 0 && start === 0) log.info('server ignored the range request, downloading from the start', { url: shownUrl(opts.url) });
    onStart(start);
    const limit = opts.size - start;
    const announced = Number(res.headers.get('content-length') ?? NaN);
    if (announced > limit) {
      await res.body?.cancel().catch(() => {});
      await rm(opts.file, { force: true });
      throw new UpdraftError('INTEGRITY', `server announced ${announced} more bytes, but the artifact has only ${limit} left of ${opts.size}; refused`);
    }
    return await writeBody(res, opts, start, limit, ctrl);
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
  }
}

/** Streams the body to the file from `start`, stopping dead at `limit` bytes. */
async function writeBody(res: Response, opts: DownloadOptions, start: number, limit: number, ctrl: AbortController): Promise<number> {
  const fh = await open(opts.file, start === 0 ? 'w' : 'a');
  let written = 0;
  const rate = opts.maxBytesPerSecond;
  const clock = opts.clock ?? REAL_CLOCK;
  const began = clock.now();
  try {
    if (res.body) {
      for await (const chunk of res.body) {
        if (chunk.length > limit - written) {
          ctrl.abort();
          throw new UpdraftError('INTEGRITY', `server sent more than the announced ${opts.size} bytes; download stopped`);
        }
        // paced: what was taken so far may not exceed the rate since this request began
        if (rate !== undefined) {
          const wait = began + (written / rate) * 1000 - clock.now();
          if (wait > 0) await clock.sleep(wait, opts.signal);
        }
        await fh.write(chunk);
        written += chunk.length;
        opts.onProgress?.(start + written, opts.size);
      }
    }
    if (written === limit) await fh.sync();
    return written;
  } catch (err) {
    // aborted by the caller: what was written stays for a later resume
    if (opts.signal?.aborted) throw opts.signal.reason;
    if (err instanceof UpdraftError) {
      await fh.close().catch(() => {});
      await rm(opts.file, { force: true });
      throw err;
    }
    // a full disk is not a network fault: retrying cannot help
    if (isNoSpace(err)) throw err;
    // cut after its last byte (a slow reader, rate-limited, still draining what the server
    // had finished sending when it closed the idle connection): nothing is missing, and the
    // verification that follows checks every byte
    if (written === limit) {
      await fh.sync();
      return written;
    }
    // connection cut mid-body: what was written stays and is resumed
    throw new Retryable(`connection interrupted after ${start + written} of ${opts.size} bytes: ${describe(err)}`);
  } finally {
    await fh.close().catch(() => {});
  }
}

/**
 * Where the body of an answer to a request for the bytes from `have` on (no Range when 0)
 * goes, by its status and Content-Range; shared by downloadArtifact and the simulator's
 * memoryDownloader, so that simulated devices read a server as agents do:
 * - 200, or a 206 from byte 0: the file from the start (`start` 0);
 * - a 206 from `have`: the rest (`start` `have`);
 * - a 206 from another byte: the server's fault, a failed attempt without progress (`retry`),
 *   the bytes held kept; one without a readable Content-Range: where its bytes go is not
 *   known, a failed attempt that starts the file over (`startOver`);
 * - 416: asked only while the file is incomplete, so the server has no bytes where the
 *   artifact has more, and another attempt asks for the same range: fails at once (`fail`);
 * - any other status: undefined (an HTTP error, retried or not by its status).
 */
export function rangeAnswer(status: number, contentRange: string | null | undefined, have: number, size: number): { start: number } | { retry: string; startOver: boolean } | { fail: string } | undefined {
  if (status === 200) return { start: 0 };
  if (status === 416) {
    const total = /^bytes\s+\*\/(\d+)$/i.exec(contentRange?.trim() ?? '')?.[1];
    const says = total === undefined ? '' : ` (its file has ${total} bytes)`;
    return { fail: `HTTP 416: the server has no bytes from ${have} on${says}, but the artifact has ${size}` };
  }
  if (status !== 206) return undefined;
  const start = rangeStart(contentRange ?? null);
  if (start === -1) return { retry: 'server answered the range request with 206 and no readable Content-Range; starting over', startOver: true };
  if (start !== have && start !== 0) return { retry: `server answered the range from byte ${have} with bytes from ${start} (Content-Range: ${clipped(contentRange ?? '', 100)}); refused`, startOver: false };
  return { start };
}

/** `bytes 100-199/200` → 100. */
function rangeStart(header: string | null): number {
  const m = header ? /^bytes\s+(\d+)-\d+\/(?:\d+|\*)$/i.exec(header.trim()) : null;
  return m ? Number(m[1]) : -1;
}

/** The reason of an HTTP error, from a JSON `message`/`error`/`reason` or the first text line (bounded read). */
async function readRawReason(res: Response): Promise<string> {
  let text = '';
  try {
    if (res.body) {
      const decoder = new TextDecoder();
      for await (const chunk of res.body) {
        text += decoder.decode(chunk, { stream: true });
        if (text.length >= 2048) break;
      }
    }
  } catch {
    /* the reason is a courtesy */
  }
  text = text.slice(0, 2048).trim();
  try {
    const body = JSON.parse(text) as Record<string, unknown>;
    const nested = body.error as Record<string, unknown> | string | undefined;
    const found = body.message ?? body.reason ?? (typeof nested === 'string' ? nested : nested?.message);
    if (typeof found === 'string' && found.length > 0) return found;
  } catch {
    /* not JSON */
  }
  const line = text.split('\n')[0]?.trim();
  return line ? line.slice(0, 300) : res.statusText || 'no reason given';
}

/** The reason of an HTTP error, with any URL it quotes (a proxy's error page) redacted. */
async function readReason(res: Response): Promise<string> {
  return redactUrlsIn(await readRawReason(res));
}

/**
 * The pause before attempt `failures + 1` after a failure that may pass: the backoff
 * (`downloadRetryDelay`), or longer if the server asked for longer (`Retry-After`), but never
 * more than `maxRetryDelayMs`: a server that says "an hour" does not park the device past its
 * own longest pause, and the budget (`retryForMs`) keeps counting. A fleet told the same
 * pause is spread over a quarter more, as the backoff's jitter does.
 */
function retryPause(failures: number, retryAfterMs: number | undefined, opts: Pick<DownloadOptions, 'retryDelayMs' | 'maxRetryDelayMs'>): number {
  const backoff = downloadRetryDelay(failures, opts);
  if (retryAfterMs === undefined) return backoff;
  const longest = opts.maxRetryDelayMs ?? DOWNLOAD_DEFAULTS.maxRetryDelayMs;
  const asked = retryAfterMs + randomInt(Math.floor(retryAfterMs / 4) + 1);
  return Math.min(Math.max(backoff, asked), longest);
}

/**
 * A `Retry-After` header in ms (RFC 9110 §10.2.3): delay-seconds, or an HTTP-date, judged
 * against the response's own `Date` header (the server's clock: the device's may be wrong)
 * or, without one, the device's clock. Undefined when absent or unreadable.
 */
export function retryAfterMs(header: string | null | undefined, dateHeader: string | null | undefined): number | undefined {
  const value = header?.trim();
  if (!value) return undefined;
  if (/^\d+$/.test(value)) return Number(value) * 1000;
  const at = Date.parse(value);
  if (Number.isNaN(at)) return undefined;
  const serverNow = Date.parse(dateHeader ?? '');
  return Math.max(0, at - (Number.isNaN(serverNow) ? Date.now() : serverNow));
}

function formatSeconds(ms: number): string {
  return `${Math.round(ms / 1000)} s`;
}

/**
 * The pause before attempt `failures + 1`: `retryDelayMs` doubled per failure up to
 * `maxRetryDelayMs`, with jitter. Also the agent's pause after a refused (403) download.
 */
export function downloadRetryDelay(failures: number, opts: Pick<DownloadOptions, 'retryDelayMs' | 'maxRetryDelayMs'>): number {
  const base = Math.min(opts.retryDelayMs ?? DOWNLOAD_DEFAULTS.retryDelayMs, opts.maxRetryDelayMs ?? DOWNLOAD_DEFAULTS.maxRetryDelayMs);
  const delay = Math.min(base * 2 ** (failures - 1), opts.maxRetryDelayMs ?? DOWNLOAD_DEFAULTS.maxRetryDelayMs);
  // jitter: a fleet cut off together must not come back together
  return delay > 1 ? Math.round(delay / 2) + randomInt(Math.ceil(delay / 2)) : delay;
}

async function sizeOnDisk(file: string): Promise<number | undefined> {
  try {
    return (await stat(file)).size;
  } catch {
    return undefined;
  }
}

/**
 * The text of a failure, for the errors this module builds: the one place undici's and
 * fetch's messages come in, and they quote the URL ("Failed to parse URL from <url>"), whose
 * query is the signature: it is redacted here, so no download error carries it.
 */
function describe(err: unknown): string {
  const e = asUpdraftError(err);
  const cause = (err as { cause?: { code?: string; message?: string } } | undefined)?.cause;
  // undici's "fetch failed" says why in its cause: a code (ECONNREFUSED), or only words
  const why = cause?.code ? ` (${cause.code})` : typeof cause?.message === 'string' && cause.message !== '' && cause.message !== e.message ? ` (${cause.message})` : '';
  return clipped(redactUrlsIn(`${e.message}${why}`));
}

/** The URL as a log line shows it: redacted, and no more than 500 characters of it. */
function shownUrl(url: string): string {
  return clipped(redactUrlsIn(url));
}
