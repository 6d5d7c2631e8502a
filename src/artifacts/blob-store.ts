/**
 * Where artifact bytes live (STYLE.md habit 2). Content-addressed: the key of a blob is the
 * SHA-256 of its bytes, so a build stored twice is stored once and a key can never point at
 * different bytes. Local directory by default; S3-compatible storage satisfies the same
 * interface and contract suite.
 */
import type { Readable } from 'node:stream';

/** A blob written: its key (lower-case hex SHA-256) and size in bytes. */
export interface StoredBlob {
  sha256: string;
  size: number;
}

/** A byte range, inclusive, as in HTTP `Range: bytes=start-end`. */
export interface ByteRange {
  start: number;
  end: number;
}

/** Storage of artifact bytes. */
export interface BlobStore {
  start(): Promise<void>;
  stop(): Promise<void>;
  /** Streams `source` into the store, hashing as it goes; rejects past `maxBytes`. */
  write(source: Readable, maxBytes: number): Promise<StoredBlob>;
  /**
   * Size of a blob, or undefined when absent. `signal`: aborted when the caller stops waiting
   * (the storage probe's timeout); a store whose request can hang (a remote one) ends it then,
   * or each hung request keeps one of its sockets.
   */
  stat(sha256: string, opts?: { signal?: AbortSignal }): Promise<number | undefined>;
  /** A stream of the blob's bytes, or of one range of them. */
  read(sha256: string, range?: ByteRange): Promise<Readable>;
  /**
   * Removes a blob; resolves false when there was none. Content-addressed: the caller makes
   * sure no artifact record still names these bytes (`ArtifactService.delete`).
   */
  delete(sha256: string): Promise<boolean>;
}
