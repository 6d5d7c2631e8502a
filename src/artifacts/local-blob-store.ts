/** BlobStore on a local directory: `<dir>/sha256/<first two hex>/<sha256>`. */
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, readdir, rename, rm, stat, unlink } from 'node:fs/promises';
import path from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { UpdraftError } from '../errors.ts';
import type { Logger } from '../util/logger.ts';
import { DISK_ERRORS, checkWritableDir, whyNotWritable } from '../util/writable-dir.ts';
import type { BlobStore, ByteRange, StoredBlob } from './blob-store.ts';

const SHA256_HEX = /^[0-9a-f]{64}$/;

/** Artifacts on local disk, written to a temp file and renamed into place once hashed. */
export class LocalBlobStore implements BlobStore {
  private readonly dir: string;
  private readonly leftoverAgeMs: number;
  private readonly logger: Logger | undefined;
  private readonly writableCheckMs: number;
  /** The last write check and when it began (shared by the callers meanwhile). */
  private writable: { at: number; why: Promise<string | undefined> } | undefined;

  /**
   * `leftoverAgeMs`: how long untouched a file of `tmp/` is before `start` takes it for a
   * leftover (0: every file). `logger`: where a write that fails on the disk is told with its
   * file (the caller is told only what failed, not where). `writableCheckMs`: how long a
   * `whyNotWritable` answer holds before the disk is asked again (5 s).
   */
  constructor(deps: { dir: string; leftoverAgeMs?: number; logger?: Logger; writableCheckMs?: number }) {
    this.dir = deps.dir;
    this.writableCheckMs = deps.writableCheckMs ?? 5000;
    this.leftoverAgeMs = deps.leftoverAgeMs ?? 0;
    this.logger = deps.logger;
  }

  /**
   * Removes what uploads left in `tmp/`: an upload writes there until its hash is known, and
   * one cut by a crash (kill -9, power lost) left its partial file for good, up to
   * `--max-artifact-bytes` each (QA: a 1 MiB part of a 5 MiB upload, still there after
   * restarts). Every file, when nothing else can be uploading into the directory (the
   * embedded store holds it alone); else those untouched for `leftoverAgeMs`.
   */
  async start(): Promise<void> {
    const tmp = path.join(this.dir, 'tmp');
    // a directory the server cannot write refuses the start in one line naming it: it was
    // found at the first upload, a 500 naming the file, while /readyz said ready (QA)
    const hint = 'give the server\'s user write access to it (or use --blob for S3)';
    await checkWritableDir(this.dir, 'artifact directory', { hint });
    await checkWritableDir(tmp, 'artifact directory', { hint });
    await checkWritableDir(path.join(this.dir, 'sha256'), 'artifact directory', { hint });
    const now = Date.now();
    for (const name of await readdir(tmp)) {
      const file = path.join(tmp, name);
      // With no age every file goes without a look at its time: a file written in the same
      // millisecond can carry an mtime a fraction ahead of Date.now() (which truncates), and
      // `now - touched >= 0` then kept it (a CI failure).
      if (this.leftoverAgeMs > 0) {
        const touched = await stat(file).then((st) => st.mtimeMs, () => undefined);
        if (touched === undefined || now - touched < this.leftoverAgeMs) continue;
      }
      await rm(file, { recursive: true, force: true });
    }
  }

  async stop(): Promise<void> {}

  /**
   * Undefined while uploads can be written, else why not (words after "the artifact
   * directory is"): a byte is written to a file, synced and removed in `tmp/` and `sha256/` (checkWritableDir), where an upload
   * writes and then renames, for the readiness probe (server/readiness.ts). A directory made
   * unwritable, or a disk that filled, after the start showed only as upload 500s while
   * /readyz said ready (QA). The answer is kept `writableCheckMs`, so a balancer polling
   * /readyz every second writes no file each time.
   */
  whyNotWritable(): Promise<string | undefined> {
    const now = Date.now();
    if (!this.writable || now - this.writable.at >= this.writableCheckMs) {
      const why = (async () => {
        try {
          for (const sub of ['tmp', 'sha256']) await checkWritableDir(path.join(this.dir, sub), 'artifact directory');
          return undefined;
        } catch (err) {
          return whyNotWritable((err as Error).cause ?? err);
        }
      })();
      this.writable = { at: now, why };
    }
    return this.writable.why;
  }

  private pathOf(sha256: string): string {
    if (!SHA256_HEX.test(sha256)) throw new UpdraftError('BAD_REQUEST', `not a SHA-256: ${sha256}`);
    return path.join(this.dir, 'sha256', sha256.slice(0, 2), sha256);
  }

  async write(source: Readable, maxBytes: number): Promise<StoredBlob> {
    const tmp = path.join(this.dir, 'tmp', randomUUID());
    const hash = createHash('sha256');
    let size = 0;
    const meter = new Transform({
      transform(chunk: Buffer, _enc, done) {
        size += chunk.length;
        if (size > maxBytes) return done(new UpdraftError('TOO_LARGE', `artifact exceeds the maximum size of ${maxBytes} bytes`));
        hash.update(chunk);
        done(null, chunk);
      },
    });
    try {
      await pipeline(source, meter, createWriteStream(tmp, { flags: 'wx' }));
      const sha256 = hash.digest('hex');
      const final = this.pathOf(sha256);
      await mkdir(path.dirname(final), { recursive: true });
      await rename(tmp, final);
      return { sha256, size };
    } catch (err) {
      await rm(tmp, { force: true }).catch(() => {});
      if (!DISK_ERRORS.has((err as NodeJS.ErrnoException).code ?? '')) throw err;
      // the disk refused (permissions, a full disk): the file is for the log, the caller is
      // told what failed without the server's paths
      this.logger?.error('an artifact could not be written to the local artifact directory', { dir: this.dir, error: (err as Error).message });
      throw new UpdraftError('INTERNAL', `the artifact could not be stored: the artifact directory is ${whyNotWritable(err)} (the server's log names the file)`, { cause: err });
    }
  }

  async stat(sha256: string): Promise<number | undefined> {
    try {
      return (await stat(this.pathOf(sha256))).size;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  async delete(sha256: string): Promise<boolean> {
    try {
      await unlink(this.pathOf(sha256));
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw err;
    }
  }

  async read(sha256: string, range?: ByteRange): Promise<Readable> {
    const file = this.pathOf(sha256);
    const stream = createReadStream(file, range ? { start: range.start, end: range.end } : {});
    await new Promise<void>((resolve, reject) => {
      stream.once('open', () => resolve());
      stream.once('error', (err: NodeJS.ErrnoException) =>
        reject(err.code === 'ENOENT' ? new UpdraftError('NOT_FOUND', `artifact blob ${sha256} is missing from the store`) : err),
      );
    });
    return stream;
  }
}
