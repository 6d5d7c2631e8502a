/**
 * The contract every BlobStore implementation passes against its real back-end (STYLE.md
 * habit 2): the local directory in `local-blob-store.test.ts`, S3 (s3rver) in
 * `s3-blob-store.test.ts`.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { describe, it } from 'node:test';
import { UpdraftError } from '../../src/errors.ts';
import type { BlobStore } from '../../src/artifacts/blob-store.ts';

/** A store on an empty back-end (not started) and how to dispose of it. */
export interface OpenedBlobStore {
  store: BlobStore;
  cleanup: () => Promise<void>;
}

/** Registers the BlobStore contract under `describe(name)`; `open` is called once per case. */
export function blobStoreContract(name: string, open: () => Promise<OpenedBlobStore>): void {
  async function withStore(fn: (store: BlobStore) => Promise<void>): Promise<void> {
    const opened = await open();
    try {
      await opened.store.start();
      await fn(opened.store);
    } finally {
      await opened.store.stop();
      await opened.cleanup();
    }
  }

  describe(`BlobStore contract: ${name}`, () => {
    it('stores bytes under their SHA-256 and reads them back exactly', () =>
      withStore(async (store) => {
        const bytes = randomBytes(100_000);
        const stored = await store.write(Readable.from(chunks(bytes, 4096)), 1 << 20);
        assert.deepEqual(stored, { sha256: sha(bytes), size: bytes.length });
        assert.equal(await store.stat(stored.sha256), bytes.length);
        assert.deepEqual(await collect(await store.read(stored.sha256)), bytes);
      }));

    it('streams a blob larger than one upload part without corrupting it', () =>
      withStore(async (store) => {
        // 13 MiB in odd-sized chunks: crosses any part boundary up to 8 MiB at an odd offset
        const bytes = randomBytes(13 * 1024 * 1024 + 17);
        const stored = await store.write(Readable.from(chunks(bytes, 65_521)), 64 << 20);
        assert.deepEqual(stored, { sha256: sha(bytes), size: bytes.length });
        const back = await collect(await store.read(stored.sha256));
        assert.equal(back.length, bytes.length);
        assert.equal(sha(back), stored.sha256);
      }));

    it('reads byte ranges, inclusive, as HTTP Range does', () =>
      withStore(async (store) => {
        const bytes = randomBytes(10_000);
        const { sha256 } = await store.write(Readable.from([bytes]), 1 << 20);
        assert.deepEqual(await collect(await store.read(sha256, { start: 0, end: 0 })), bytes.subarray(0, 1));
        assert.deepEqual(await collect(await store.read(sha256, { start: 1234, end: 5677 })), bytes.subarray(1234, 5678));
        assert.deepEqual(await collect(await store.read(sha256, { start: 9_000, end: 9_999 })), bytes.subarray(9_000));
      }));

    it('stores the same bytes once, under the same key', () =>
      withStore(async (store) => {
        const bytes = Buffer.from('same build');
        const a = await store.write(Readable.from([bytes]), 1024);
        const b = await store.write(Readable.from([bytes.subarray(0, 4), bytes.subarray(4)]), 1024);
        assert.deepEqual(a, b);
        assert.deepEqual(await collect(await store.read(a.sha256)), bytes);
      }));

    it('stores an empty blob', () =>
      withStore(async (store) => {
        const stored = await store.write(Readable.from([]), 1024);
        assert.deepEqual(stored, { sha256: sha(Buffer.alloc(0)), size: 0 });
        assert.equal(await store.stat(stored.sha256), 0);
        assert.deepEqual(await collect(await store.read(stored.sha256)), Buffer.alloc(0));
      }));

    it('refuses a blob past maxBytes with TOO_LARGE and stores nothing of it', () =>
      withStore(async (store) => {
        const bytes = randomBytes(5_000);
        await assert.rejects(store.write(Readable.from(chunks(bytes, 1000)), 4_999), isCode('TOO_LARGE'));
        assert.equal(await store.stat(sha(bytes)), undefined);
        assert.equal(await store.stat(sha(bytes.subarray(0, 4_000))), undefined, 'no prefix stored either');
        // exactly maxBytes is fine
        assert.deepEqual(await store.write(Readable.from([bytes]), 5_000), { sha256: sha(bytes), size: 5_000 });
      }));

    it('answers undefined for an absent blob and NOT_FOUND when reading it', () =>
      withStore(async (store) => {
        const absent = sha(Buffer.from('never stored'));
        assert.equal(await store.stat(absent), undefined);
        await assert.rejects(store.read(absent), isCode('NOT_FOUND'));
      }));

    it('deletes a blob, and answers false for one that is not there; other blobs stay', () =>
      withStore(async (store) => {
        const gone = Buffer.from('a build nobody runs any more');
        const kept = Buffer.from('a build still in use');
        await store.write(Readable.from([gone]), 1_000);
        await store.write(Readable.from([kept]), 1_000);
        assert.equal(await store.delete(sha(gone)), true);
        assert.equal(await store.stat(sha(gone)), undefined);
        await assert.rejects(store.read(sha(gone)), isCode('NOT_FOUND'));
        assert.equal(await store.delete(sha(gone)), false, 'already gone');
        assert.equal(await store.stat(sha(kept)), kept.length);
      }));

    it('refuses keys that are not a SHA-256 with BAD_REQUEST', () =>
      withStore(async (store) => {
        for (const key of ['../etc/passwd', 'A'.repeat(64), 'abc']) {
          await assert.rejects(store.stat(key), isCode('BAD_REQUEST'), key);
          await assert.rejects(store.read(key), isCode('BAD_REQUEST'), key);
          await assert.rejects(store.delete(key), isCode('BAD_REQUEST'), key);
        }
      }));
  });
}

function sha(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function* chunks(bytes: Buffer, size: number): Generator<Buffer> {
  for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size);
}

async function collect(stream: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of stream) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

function isCode(code: string): (err: unknown) => boolean {
  return (err) => err instanceof UpdraftError && err.code === code;
}
