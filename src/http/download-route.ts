/**
 * The download endpoint a device's pre-signed URL points at (pattern step 7): verifies the
 * signature (device, artifact, expiry, IP), or instead a temporary credential sent as
 * `Authorization: Bearer <token>` (with `?device=<id>`), refuses revoked devices, then streams the bytes with HTTP Range support so
 * an interrupted download resumes where it stopped. A device revoked while it downloads loses
 * the download at once (`active-downloads.ts`). Every refusal is a 403 with the reason
 * and is logged without the signature or token.
 *
 * A download that cannot be served because storage cannot be reached (the S3 bucket down or
 * not answering, PostgreSQL restarting: `isUnreachable`) is answered 503 with `Retry-After`,
 * not 500: nothing is wrong with the request or the build, and the agent waits and tries
 * again (for minutes, not seconds) where a 500 says only that something broke. Such an
 * outage is logged once when it begins and once when downloads are served again, with the
 * count answered 503 meanwhile: a fleet retrying through it would otherwise write an error
 * line per request; they are counted in the metrics too (`unavailable`). It ends only when
 * what failed was read again: a build served from memory reads no bucket, and says nothing of
 * one that is down; a build loaded into memory by this download did read it, and so did a
 * HEAD or an empty build, which ask storage whether it holds the bytes.
 *
 * A build whose record is stored but whose bytes storage says it does not hold is no outage:
 * answered 503 too (the device tries again), logged at ERROR per build and counted apart
 * (`missing`, below).
 */
import { pipeline } from 'node:stream/promises';
import type { ArtifactCache } from '../artifacts/artifact-cache.ts';
import { wasCutOff, type ActiveDownloads } from './active-downloads.ts';
import type { ArtifactService } from '../artifacts/artifact-service.ts';
import type { BlobStore } from '../artifacts/blob-store.ts';
import { requireSignedQuery, type UrlSigner } from '../artifacts/url-signer.ts';
import type { DownloadTokens } from '../credentials/download-token.ts';
import { UNAVAILABLE_RETRY_AFTER_SECONDS, UpdraftError, asUpdraftError, isUnreachable } from '../errors.ts';
import { ThrottledLog } from '../util/log-throttle.ts';
import type { Logger } from '../util/logger.ts';
import { parseRange } from './range.ts';
import { sendError, sendJson } from './respond.ts';
import type { Handler, RouteContext } from './router.ts';

/** What the download endpoint counted. */
export interface DownloadStats {
  /** Downloads started (a 200 or 206 with a body). */
  served: number;
  /** Downloads refused (403). */
  refused: number;
  /** Bytes of the downloads handed to the network whole (a 206 counts its range), also those reset after, their device revoked. */
  bytes: number;
  /** Downloads that ended before their last byte (the device went away; it resumes with Range). */
  cut: number;
  /** Downloads answered 503: storage (the bucket, the database) could not be reached; the device tries again. */
  unavailable: number;
  /** Downloads answered 503 because the build's record is stored but its bytes are not in the artifact storage (`missing`). */
  missing: number;
}

/** Builds the GET /v1/download/:name/:version handler. */
export function downloadRoute(deps: {
  artifacts: ArtifactService;
  blobs: BlobStore;
  signer: UrlSigner;
  logger: Logger;
  /** Accepts temporary credentials as an alternative to the URL signature. */
  tokens?: DownloadTokens;
  /**
   * Why the device may not download (`device revoked`, not registered, registered again
   * since `issuedAt`, ms, when the URL or token was issued, if it says), or undefined;
   * absent: not checked.
   */
  deviceRefusal?: (deviceId: string, issuedAt?: number) => Promise<string | undefined>;
  /** Downloads in progress, so that a device revoked meanwhile loses them (`active-downloads.ts`); absent: not tracked. */
  active?: Pick<ActiveDownloads, 'add'>;
  /** Serves hot artifacts from memory. */
  cache?: ArtifactCache;
  /** The artifact storage, for the log (`bucket s3://firmware/`, `artifact directory /var/lib/updraft/artifacts`). */
  storage?: string;
  /** Counted into (GET /api/v1/metrics). */
  stats?: DownloadStats;
}): Handler {
  const outage = new StorageOutage(deps.logger);
  const serve = serveDownload(deps, outage);
  return async (ctx) => {
    const at: { part: StoragePart } = { part: 'registry' };
    try {
      await serve(ctx, at);
    } catch (err) {
      const e = asUpdraftError(err);
      if (e.code !== 'UNAVAILABLE' || ctx.res.headersSent) throw err;
      if (deps.stats) deps.stats.unavailable++;
      outage.refused(e, `${ctx.params.name}@${ctx.params.version}`, at.part);
      sendError(ctx.res, e, { public: true });
    }
  };
}

/** What a download reads: the catalogue and the registry (the state store), then the bytes (the blob store). */
type StoragePart = 'registry' | 'blobs';

/**
 * An outage of storage as downloads see it: logged when the first download is answered 503,
 * and when every part that failed has been read again, with how many were answered 503 in
 * between. A download that did not read a part says nothing of it: the bucket down, a build
 * held in memory is served (the registry read) while one that is not gets 503; ending the
 * outage at each such download logged a pair of lines per request.
 */
class StorageOutage {
  private since: number | undefined;
  private answered = 0;
  /** Parts that failed since the outage began and have not been read since. */
  private readonly failing = new Set<StoragePart>();

  constructor(private readonly logger: Logger) {}

  /** A download answered 503: `part` could not be read. */
  refused(e: UpdraftError, artifact: string, part: StoragePart): void {
    this.answered++;
    // failing at the bytes, the download read the registry
    if (part === 'blobs') this.failing.delete('registry');
    this.failing.add(part);
    if (this.since !== undefined) return;
    this.since = Date.now();
    this.logger.warn('downloads answered 503 (try again later): storage cannot be reached; logged again when they are served', { artifact, error: e.message });
  }

  /** A download is served, having read `parts`. */
  read(parts: readonly StoragePart[]): void {
    if (this.since === undefined) return;
    for (const p of parts) this.failing.delete(p);
    if (this.failing.size > 0) return;
    this.logger.info('downloads served again', { answered503: this.answered, seconds: Math.round((Date.now() - this.since) / 1000) });
    this.since = undefined;
    this.answered = 0;
  }
}

/** The download handler; `at` says which part of storage it reads (for a 503's log). */
function serveDownload(deps: Parameters<typeof downloadRoute>[0], outage: StorageOutage): (ctx: RouteContext, at: { part: StoragePart }) => Promise<void> {
  const cutLog = new ThrottledLog(deps.logger);
  const missingLogs = new Map<string, ThrottledLog>();
  /**
   * The build's record is stored, its bytes are not in the artifact storage: a file or an
   * object removed by hand, a restore of the database without the bucket, or (the silent
   * one) several instances on one PostgreSQL each with its own artifact directory, the build
   * added through another. Storage answered (it is no outage): an ERROR naming the build and
   * the storage, one per build per 30 s with the count of those left out, as a fleet asks
   * for it in a wave. Answered 503 with Retry-After, not 404: the agent fails at once on a
   * 404, where bytes that are only not here yet (a bucket that copies them to this region
   * later, another instance's directory reached by the balancer at the next try, a file the
   * operator restores) are served at a retry; bytes gone for good fail the device when its
   * retries run out (10 minutes without progress), and the ERROR says so meanwhile.
   */
  const missing = (artifact: { name: string; version: string; sha256: string }, deviceId: string, res: RouteContext['res']) => {
    if (deps.stats) deps.stats.missing++;
    let log = missingLogs.get(artifact.sha256);
    if (!log) missingLogs.set(artifact.sha256, (log = new ThrottledLog(deps.logger)));
    log.error("download answered 503: the artifact's bytes are missing from artifact storage; restore them, or delete the build and add it again (with several instances on one PostgreSQL, every instance must share the artifact storage: --blob s3://...)", {
      artifact: `${artifact.name}@${artifact.version}`,
      sha256: artifact.sha256.slice(0, 12),
      storage: deps.storage ?? 'artifact storage',
      device: deviceId,
    });
    // storage answered (no such file or object): it can be read
    outage.read(['registry', 'blobs']);
    sendJson(res, 503, { error: { code: 'UNAVAILABLE', message: `${artifact.name}@${artifact.version} cannot be served just now: its bytes are not in this server's artifact storage; try again later` } }, { 'retry-after': UNAVAILABLE_RETRY_AFTER_SECONDS });
  };
  return async ({ req, res, params, url }, at) => {
    const name = params.name!;
    const version = params.version!;
    // read only when needed (an IP-bound URL, a refusal to log): it is a getpeername system
    // call per connection, and a device opens a connection per download (1.3% of the server)
    const ip = () => req.socket?.remoteAddress ?? ''; // no socket once the device went away
    let deviceId: string;
    let artifact;
    try {
      const bearer = /^Bearer (.+)$/i.exec(req.headers.authorization ?? '')?.[1]; // the scheme is case-insensitive
      if (bearer === undefined) requireSignedQuery(url.searchParams);
      const stored = await deps.artifacts.get(name, version).catch((err: unknown) => {
        if (err instanceof UpdraftError && err.code === 'NOT_FOUND') return undefined;
        throw err;
      });
      // an artifact not stored is checked as one whose credentials do not match (no build has
      // an empty hash): a forged URL or token gets the same answer whether or not the artifact
      // exists, so it learns nothing of what is stored (QA). A genuine URL of a build deleted
      // since gets that answer too (its MAC covers the build's hash); a build cannot be
      // deleted while a job that is not finished installs it
      const subject = stored ?? { name, version, sha256: '' };
      const now = Math.floor(Date.now() / 1000);
      let grant: { deviceId: string; issuedAt?: number };
      if (bearer === undefined) grant = deps.signer.verify(url.searchParams, subject, ip, now);
      else if (deps.tokens) grant = deps.tokens.verify(bearer, subject, url.searchParams.get('device'), now);
      else throw new UpdraftError('FORBIDDEN', 'download tokens are not accepted here; use the pre-signed URL');
      if (!stored) throw new UpdraftError('NOT_FOUND', `${name}@${version} is not stored`);
      artifact = stored;
      deviceId = grant.deviceId;
      const issuedAt = grant.issuedAt;
      // tracked before the check: a revocation committed after it ends the download (its event
      // finds it), one committed before is refused here
      deps.active?.add(deviceId, res);
      const refusal = await deps.deviceRefusal?.(deviceId, issuedAt === undefined ? undefined : issuedAt * 1000);
      if (refusal !== undefined) throw new UpdraftError('FORBIDDEN', refusal);
    } catch (err) {
      // the catalogue or the registry cannot be read now: no refusal, the device tries again
      if (asUpdraftError(err).code === 'UNAVAILABLE') throw err;
      const e = err instanceof UpdraftError && err.code === 'NOT_FOUND' ? new UpdraftError('FORBIDDEN', 'download URL does not name a stored artifact') : err;
      const method = req.headers.authorization ? 'token' : 'url';
      if (deps.stats && e instanceof UpdraftError && e.status === 403) deps.stats.refused++;
      deps.logger.warn('download refused', { artifact: `${name}@${version}`, device: url.searchParams.get('device') ?? '', ip: ip(), method, reason: (e as Error).message });
      throw e;
    }
    const size = artifact.size;
    const range = parseRange(req.headers.range, size);
    const headers: Record<string, string | number> = {
      'accept-ranges': 'bytes',
      'content-type': 'application/octet-stream',
      etag: `"${artifact.sha256}"`,
      'cache-control': 'private, no-store',
      // The connection ends with the download, said so up front (RFC 9112 §9.6): once the body
      // is handed to the kernel, Node ends the socket gracefully (FIN after the last byte).
      // Kept alive, the server's keep-alive timer (5 s) started at that moment, while a device
      // on a thin link or under --max-download-rate still had megabytes in the socket buffers
      // to read; the timer closed the connection under it, and fetch refuses a persistent
      // connection that closes before the end of the response: the download was cut near its
      // end, then resumed with Range. A longer timer for downloads would only move the race
      // (a device at 20 kB/s takes minutes to drain 4 MB of buffers) and hold an idle socket,
      // an fd and its memory per device for as long after every fast download, 15,000 of them
      // in a fleet update. Nothing is lost by closing: a device downloads once per update, and
      // a resumed download comes after a broken connection anyway.
      connection: 'close',
    };
    if (range === 'unsatisfiable') {
      headers['content-range'] = `bytes */${size}`;
      res.writeHead(416, headers);
      res.end();
      return;
    }
    // before the status line: a failed load is still answered with a clean error, and so are
    // bytes missing from storage (an instance that still knew a record another one deleted)
    at.part = 'blobs';
    let cached;
    let stream;
    // a HEAD and an empty build send no bytes, but say what a GET would: storage is asked
    // whether it holds them (a stat of the file, S3's HeadObject), or both answered 200 for a
    // build whose bytes were gone, which every GET of it then answered 503
    let probed = false;
    try {
      const head = req.method === 'HEAD';
      cached = head ? undefined : await deps.cache?.get(artifact.sha256, size);
      if (!cached?.bytes && (head || size === 0)) {
        probed = true;
        if ((await deps.blobs.stat(artifact.sha256)) === undefined) return missing(artifact, deviceId, res);
      } else if (!cached?.bytes) stream = await deps.blobs.read(artifact.sha256, range);
    } catch (err) {
      if (!(err instanceof UpdraftError && err.code === 'NOT_FOUND')) throw err;
      missing(artifact, deviceId, res);
      return;
    }
    const held = cached?.bytes;
    // the bucket counts as answering only when it was read: streamed, loaded into memory by
    // this download (whichever build it is), or asked for a HEAD or an empty build; held from
    // before, not
    outage.read(stream || probed || cached?.loaded ? ['registry', 'blobs'] : ['registry']);
    // the headers object is added to, not spread into a new one with the extra keys: Node
    // 20's V8 takes a slow path for the latter (about 1 µs, per download)
    if (range) {
      headers['content-range'] = `bytes ${range.start}-${range.end}/${size}`;
      headers['content-length'] = range.end - range.start + 1;
      res.writeHead(206, headers);
    } else {
      headers['content-length'] = size;
      res.writeHead(200, headers);
    }
    if (!held && !stream) {
      res.end();
      return;
    }
    const stats = deps.stats;
    const length = range ? range.end - range.start + 1 : size;
    if (stats) {
      stats.served++;
      // counted when the response ends: a transfer cut short adds to `cut`, not its bytes.
      // 'finish' (the last byte handed to the kernel), not writableFinished: a response sent
      // from memory in one write whose socket is gone has nothing left to write, and
      // writableFinished said it was delivered whole. One ended for a revoked device may
      // still have said 'finish' (its write done, its bytes dropped by the reset)
      let finished = false;
      res.once('finish', () => (finished = true));
      res.once('close', () => {
        if (finished && !wasCutOff(res)) stats.bytes += length;
        else stats.cut++;
      });
    }
    deps.logger.debug('download', { device: deviceId, artifact: `${name}@${version}`, range: range ? `${range.start}-${range.end}` : 'all' });
    if (held) {
      res.end(range ? held.subarray(range.start, range.end + 1) : held);
      return;
    }
    // storage that fails mid-transfer (a bad disk, a file gone, a bucket unreachable) cuts the
    // transfer as a device that goes away does, but it is the operator's to hear about
    let storageError: Error | undefined;
    stream!.once('error', (err: Error) => (storageError = err));
    // and storage that holds fewer bytes than the record says (a truncated file) ends the
    // stream early: the response is cut at once (the device retries, and sees it fail)
    // rather than left short of its content-length until the connection times out
    let sent = 0;
    stream!.on('data', (chunk: Buffer) => (sent += chunk.length));
    await pipeline(stream!, res).then(
      () => {
        if (sent >= length) return;
        deps.logger.error('download cut: storage holds fewer bytes than the artifact has (damaged or truncated)', { artifact: `${name}@${version}`, device: deviceId, sent, expected: length });
        res.destroy();
      },
      () => {
        // the device went away mid-transfer; it resumes with Range next time
        if (!storageError) return;
        const fields = { artifact: `${name}@${version}`, device: deviceId, error: storageError.message };
        // one line per 30 s, not per download, for a store gone: a bucket down mid-wave cuts
        // every transfer at once; a fault of the store's (a damaged file) each its own ERROR
        if (isUnreachable(storageError)) cutLog.warn('download cut: the artifact cannot be read from storage', fields);
        else deps.logger.error('download cut: the artifact cannot be read from storage', fields);
      },
    );
  };
}
