/**
 * Artifacts held in memory for downloads. A rollout sends the same build to thousands of
 * devices in minutes: reading it from disk (or S3) once per device costs an open, reads and
 * a close (or an S3 GET) each time; from memory a download is one socket write. Blobs are
 * content-addressed, so a cached copy can never be stale; it is checked against its SHA-256
 * once when loaded, so a damaged disk or bucket object is not served from memory over and
 * over. Least recently used builds leave first; builds larger than `maxItemBytes` are
 * always streamed from the store.
 */
import { createHash } from 'node:crypto';
import type { BlobStore } from './blob-store.ts';

/** Limits of the cache. */
export interface ArtifactCacheOptions {
  blobs: BlobStore;
  /** Total bytes held; 0 turns the cache off. */
  maxBytes: number;
  /** Largest artifact held; default an eighth of maxBytes. */
  maxItemBytes?: number;
}

/**
 * A build's bytes as the cache gives them, and whether this call read them from the store.
 * A caller that watches the store (the download route ends an outage on a read that reached
 * it) needs to know: bytes held from before say nothing of a store that is down now.
 */
export interface CachedArtifact {
  bytes: Buffer;
  /** Read from the store by this call (it loaded them, or waited for a load in flight), not held from before. */
  loaded: boolean;
}

/** An LRU of whole artifacts by SHA-256. */
export class ArtifactCache {
  private readonly opts: ArtifactCacheOptions;
  private readonly items = new Map<string, Buffer>();
  private readonly loading = new Map<string, Promise<Buffer | undefined>>();
  private bytes = 0;

  constructor(opts: ArtifactCacheOptions) {
    this.opts = opts;
  }

  /** Bytes held now. */
  get size(): number {
    return this.bytes;
  }

  /** The artifact's bytes from memory (loading them once: `loaded`), or undefined when it is not to be cached. */
  async get(sha256: string, size: number): Promise<CachedArtifact | undefined> {
    const maxItem = this.opts.maxItemBytes ?? Math.floor(this.opts.maxBytes / 8);
    if (size === 0 || size > maxItem || size > this.opts.maxBytes) return undefined;
    const hit = this.items.get(sha256);
    if (hit) {
      this.items.delete(sha256); // most recently used goes last
      this.items.set(sha256, hit);
      return { bytes: hit, loaded: false };
    }
    let load = this.loading.get(sha256);
    if (!load) {
      load = this.load(sha256, size).finally(() => this.loading.delete(sha256));
      this.loading.set(sha256, load);
    }
    const bytes = await load;
    return bytes && { bytes, loaded: true };
  }

  /** Lets go of a build's bytes (its artifact was deleted: the memory is for builds in use). */
  forget(sha256: string): void {
    const held = this.items.get(sha256);
    if (!held) return;
    this.items.delete(sha256);
    this.bytes -= held.length;
  }

  private async load(sha256: string, size: number): Promise<Buffer | undefined> {
    const chunks: Buffer[] = [];
    for await (const chunk of await this.opts.blobs.read(sha256)) chunks.push(chunk as Buffer);
    const buf = Buffer.concat(chunks);
    // not what the catalogue says: leave it to the streaming path (the device's check refuses it)
    if (buf.length !== size || createHash('sha256').update(buf).digest('hex') !== sha256) return undefined;
    this.items.set(sha256, buf);
    this.bytes += buf.length;
    for (const [key, old] of this.items) {
      if (this.bytes <= this.opts.maxBytes) break;
      this.items.delete(key);
      this.bytes -= old.length;
    }
    return buf;
  }
}
