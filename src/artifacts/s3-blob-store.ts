/**
 * BlobStore on S3-compatible object storage (AWS S3, MinIO, Ceph RGW...) through the AWS
 * SDK v3 (docs/design.md §5, §7). Keys: `<prefix>sha256/<first two hex>/<sha256>`.
 *
 * The key is the SHA-256 of the bytes, known only after the last byte. A blob that fits in
 * one part is buffered, hashed and stored with one PutObject under its final key. A larger
 * one is streamed as a multipart upload to `<prefix>tmp/<uuid>` while hashing, then copied
 * to its final key and the temporary object deleted; a failed upload is aborted, so no
 * partial object is ever visible under a content key.
 *
 * Devices download straight from the store with S3 pre-signed URLs (`presign`), so artifact
 * traffic never passes through Updraft.
 */
import { createHash, randomUUID } from 'node:crypto';
import { Transform, type Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CopyObjectCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
  type CompletedPart,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { UpdraftError, isUnreachable } from '../errors.ts';
import type { BlobStore, ByteRange, StoredBlob } from './blob-store.ts';

const SHA256_HEX = /^[0-9a-f]{64}$/;

/** Where and how to reach the bucket. */
export interface S3BlobStoreOptions {
  bucket: string;
  /** Key prefix, e.g. `updraft/` ('' for none). */
  prefix?: string;
  /** Custom endpoint for S3-compatible stores, e.g. `http://minio:9000`; absent for AWS. */
  endpoint?: string;
  region?: string;
  /** Path-style addressing (`endpoint/bucket/key`), which MinIO and most self-hosted stores need. */
  forcePathStyle?: boolean;
  /** Explicit credentials; absent: the SDK's default chain (AWS_* env, profile, instance role). */
  credentials?: { accessKeyId: string; secretAccessKey: string };
  /** Create the bucket on start when missing (tests, first setup); otherwise a missing bucket is an error. */
  createBucket?: boolean;
  /** Bytes per multipart part (S3's minimum is 5 MiB). */
  partSize?: number;
  /** Milliseconds to connect to the store (name lookup and TCP) before a request fails; default 5 000. */
  connectTimeoutMs?: number;
  /**
   * Milliseconds a request may go with no byte either way before it fails (the SDK's
   * `socketTimeout`: a limit on silence, not on a whole transfer); default 120 000.
   */
  idleTimeoutMs?: number;
  /** Sockets open to the store at once, at most (`MAX_SOCKETS`, 4096, by default). */
  maxSockets?: number;
}

const DEFAULT_PART_SIZE = 8 * 1024 * 1024;
const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
/**
 * Long enough for silences a working store has: a server-side CopyObject of a multi-GB build
 * on a store that may send nothing until it is done (AWS S3 sends whitespace meanwhile), or a
 * download relayed to a device that stopped reading for a while (the device resumes with a
 * Range if it is cut). Short enough that a wedged store frees the socket in minutes.
 */
const DEFAULT_IDLE_TIMEOUT_MS = 120_000;
/**
 * Sockets the client may open to the store at once (the SDK's default is 50). A build too
 * large for the memory cache is relayed from the store to each device on its own request, a
 * socket held for the device's whole transfer: with 50, a wave of 50 such downloads left every
 * other request (downloads, the engine's and /readyz's probe, uploads) waiting for a socket,
 * and since the SDK starts its connect timer when a request is made, not when it gets a socket,
 * they failed after the connect timeout as if the store were down (503, rollouts held).
 */
const MAX_SOCKETS = 4096;

/** Artifacts in an S3 bucket. */
export class S3BlobStore implements BlobStore {
  private readonly opts: S3BlobStoreOptions;
  private client: S3Client | undefined;

  constructor(opts: S3BlobStoreOptions) {
    this.opts = opts;
  }

  /** `s3://bucket/prefix` for messages. */
  get where(): string {
    return `s3://${this.opts.bucket}/${this.opts.prefix ?? ''}`;
  }

  /** Creates the client and checks (or creates) the bucket. */
  async start(): Promise<void> {
    if (this.client) return;
    const o = this.opts;
    const client = new S3Client({
      region: o.region ?? 'us-east-1',
      forcePathStyle: o.forcePathStyle ?? o.endpoint !== undefined,
      ...(o.endpoint ? { endpoint: o.endpoint } : {}),
      ...(o.credentials ? { credentials: o.credentials } : {}),
      // checksums only where S3 requires them: S3-compatible stores that do not know the
      // newer flexible checksums (aws-chunked trailers) would store the framing as data
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      // without these a store that accepts connections and never answers holds each request,
      // and its socket (50 per client), for ever. Not requestTimeout: in @smithy/node-http-handler
      // 4.x it is a limit on the whole request up to the answer's headers (uploads included)
      // and only logs unless throwOnRequestTimeout; socketTimeout is the idle limit, and also
      // covers a response body that stops coming
      requestHandler: {
        connectionTimeout: o.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
        socketTimeout: o.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS,
        httpAgent: { maxSockets: o.maxSockets ?? MAX_SOCKETS },
        httpsAgent: { maxSockets: o.maxSockets ?? MAX_SOCKETS },
      },
    });
    try {
      await client.send(new HeadBucketCommand({ Bucket: o.bucket }));
    } catch (err) {
      if (!isNotFound(err)) {
        client.destroy();
        throw new UpdraftError('CONFIG', `cannot reach artifact bucket ${this.where}: ${messageOf(err)}; check --blob, the endpoint and the credentials`, { cause: err });
      }
      if (!o.createBucket) {
        client.destroy();
        throw new UpdraftError('CONFIG', `artifact bucket ${o.bucket} does not exist; create it, or add create=true to the --blob URL`);
      }
      await client.send(new CreateBucketCommand({ Bucket: o.bucket }));
    }
    this.client = client;
  }

  async stop(): Promise<void> {
    this.client?.destroy();
    this.client = undefined;
  }

  private s3(): S3Client {
    if (!this.client) throw new UpdraftError('INTERNAL', `blob store ${this.where} is not started`);
    return this.client;
  }

  /**
   * A failure of the bucket: UNAVAILABLE (503, with Retry-After, to a device downloading) when
   * it could not be reached or did not answer in time, or answered with a 5xx (S3's
   * InternalError, SlowDown: after the SDK's own retries), since that passes with no change
   * anywhere; INTERNAL (500) otherwise (AccessDenied: credentials or a policy to fix).
   */
  private fault(what: string, err: unknown): UpdraftError {
    if (isUnreachable(err)) return new UpdraftError('UNAVAILABLE', `artifact storage unreachable: ${what}: ${messageOf(err)}`, { cause: err });
    return new UpdraftError('INTERNAL', `${what}: ${messageOf(err)}`, { cause: err });
  }

  private keyOf(sha256: string): string {
    if (!SHA256_HEX.test(sha256)) throw new UpdraftError('BAD_REQUEST', `not a SHA-256: ${sha256}`);
    return `${this.opts.prefix ?? ''}sha256/${sha256.slice(0, 2)}/${sha256}`;
  }

  async write(source: Readable, maxBytes: number): Promise<StoredBlob> {
    const s3 = this.s3();
    const partSize = this.opts.partSize ?? DEFAULT_PART_SIZE;
    const hash = createHash('sha256');
    let size = 0;
    let buffered: Buffer[] = [];
    let bufferedBytes = 0;
    let upload: { key: string; id: string; parts: CompletedPart[] } | undefined;
    const Bucket = this.opts.bucket;

    const sendPart = async (body: Buffer) => {
      if (!upload) {
        const key = `${this.opts.prefix ?? ''}tmp/${randomUUID()}`;
        const created = await s3.send(new CreateMultipartUploadCommand({ Bucket, Key: key, ContentType: 'application/octet-stream' }));
        upload = { key, id: created.UploadId!, parts: [] };
      }
      const PartNumber = upload.parts.length + 1;
      const r = await s3.send(new UploadPartCommand({ Bucket, Key: upload.key, UploadId: upload.id, PartNumber, Body: body, ContentLength: body.length }));
      upload.parts.push({ PartNumber, ETag: r.ETag! });
    };

    try {
      for await (const chunk of source as AsyncIterable<Buffer>) {
        size += chunk.length;
        if (size > maxBytes) {
          source.destroy();
          throw new UpdraftError('TOO_LARGE', `artifact exceeds the maximum size of ${maxBytes} bytes`);
        }
        hash.update(chunk);
        buffered.push(chunk);
        bufferedBytes += chunk.length;
        if (bufferedBytes >= partSize) {
          const body = Buffer.concat(buffered);
          buffered = [];
          bufferedBytes = 0;
          await sendPart(body);
        }
      }
      const sha256 = hash.digest('hex');
      const Key = this.keyOf(sha256);
      const rest = Buffer.concat(buffered);
      if (!upload) {
        // one part's worth: straight to the final key
        await s3.send(new PutObjectCommand({ Bucket, Key, Body: rest, ContentLength: rest.length, ContentType: 'application/octet-stream' }));
        return { sha256, size };
      }
      if (rest.length > 0) await sendPart(rest);
      const up = upload as { key: string; id: string; parts: CompletedPart[] };
      await s3.send(new CompleteMultipartUploadCommand({ Bucket, Key: up.key, UploadId: up.id, MultipartUpload: { Parts: up.parts } }));
      upload = undefined;
      try {
        // content-addressed: the same bytes under the same key are already there
        if ((await this.stat(sha256)) !== size) {
          await s3.send(new CopyObjectCommand({ Bucket, Key, CopySource: `${Bucket}/${up.key}`, ContentType: 'application/octet-stream' }));
        }
      } finally {
        await s3.send(new DeleteObjectCommand({ Bucket, Key: up.key })).catch(() => {});
      }
      return { sha256, size };
    } catch (err) {
      const pending = upload as { key: string; id: string } | undefined;
      if (pending) await s3.send(new AbortMultipartUploadCommand({ Bucket, Key: pending.key, UploadId: pending.id })).catch(() => {});
      if (err instanceof UpdraftError) throw err;
      throw this.fault(`cannot store the artifact in ${this.where}`, err);
    }
  }

  /** As BlobStore's; `signal` ends the request (its socket closed) when aborted, e.g. by a probe that stopped waiting. */
  async stat(sha256: string, opts: { signal?: AbortSignal } = {}): Promise<number | undefined> {
    const Key = this.keyOf(sha256);
    try {
      const head = await this.s3().send(new HeadObjectCommand({ Bucket: this.opts.bucket, Key }), opts.signal ? { abortSignal: opts.signal } : {});
      return head.ContentLength ?? 0;
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw this.fault(`cannot read ${Key} in ${this.where}`, err);
    }
  }

  async delete(sha256: string): Promise<boolean> {
    // S3's DeleteObject succeeds on an absent key too: ask first, to answer what was there
    if ((await this.stat(sha256)) === undefined) return false;
    const Key = this.keyOf(sha256);
    try {
      await this.s3().send(new DeleteObjectCommand({ Bucket: this.opts.bucket, Key }));
      return true;
    } catch (err) {
      throw this.fault(`cannot delete ${Key} in ${this.where}`, err);
    }
  }

  async read(sha256: string, range?: ByteRange): Promise<Readable> {
    const Key = this.keyOf(sha256);
    try {
      const r = await this.s3().send(new GetObjectCommand({ Bucket: this.opts.bucket, Key, ...(range ? { Range: `bytes=${range.start}-${range.end}` } : {}) }));
      const body = r.Body as Readable;
      if (!range) return body;
      // a store may ignore Range, or widen it (s3rver sends everything for bytes=0-0): cut here
      const sent = /^bytes (\d+)-(\d+)\//.exec(r.ContentRange ?? '');
      const from = sent ? Number(sent[1]) : 0;
      const to = sent ? Number(sent[2]) : Number.POSITIVE_INFINITY;
      return from === range.start && to === range.end ? body : body.pipe(slice(range, from));
    } catch (err) {
      if (isNotFound(err)) throw new UpdraftError('NOT_FOUND', `artifact blob ${sha256} is missing from the store`);
      throw this.fault(`cannot read ${Key} in ${this.where}`, err);
    }
  }

  /**
   * A pre-signed GET URL for one blob, valid `expiresInSeconds` (S3 allows at most 7 days).
   * `filename` becomes the signed Content-Disposition, so the URL also names who it was for.
   */
  async presign(sha256: string, expiresInSeconds: number, filename?: string): Promise<string> {
    const command = new GetObjectCommand({
      Bucket: this.opts.bucket,
      Key: this.keyOf(sha256),
      ...(filename ? { ResponseContentDisposition: `attachment; filename="${filename.replace(/["\\]/g, '_')}"` } : {}),
    });
    return getSignedUrl(this.s3(), command, { expiresIn: expiresInSeconds });
  }
}

/** Passes on only bytes start..end (inclusive) of a stream that begins at byte `offset`. */
function slice(range: ByteRange, offset: number): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc, done) {
      const from = Math.max(range.start - offset, 0);
      const to = Math.min(range.end + 1 - offset, chunk.length);
      offset += chunk.length;
      done(null, to > from ? chunk.subarray(from, to) : undefined);
    },
  });
}

function isNotFound(err: unknown): boolean {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e?.name === 'NotFound' || e?.name === 'NoSuchKey' || e?.name === 'NoSuchBucket' || e?.$metadata?.httpStatusCode === 404;
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message || err.name : String(err);
}
