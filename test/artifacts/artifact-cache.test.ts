/** The in-memory artifact cache over a real local blob store: loads once, evicts the least recently used, never holds damaged bytes. */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, it } from 'node:test';
import { ArtifactCache } from '../../src/artifacts/artifact-cache.ts';
import type { ByteRange } from '../../src/artifacts/blob-store.ts';
import { LocalBlobStore } from '../../src/artifacts/local-blob-store.ts';

let dir: string;
let blobs: LocalBlobStore;
const reads: string[] = [];
/** The real store, counting reads. */
const counting = () => ({
  start: () => blobs.start(),
  stop: () => blobs.stop(),
  write: blobs.write.bind(blobs),
  stat: blobs.stat.bind(blobs),
  delete: blobs.delete.bind(blobs),
  read: (sha256: string, range?: ByteRange) => {
    reads.push(sha256);
    return blobs.read(sha256, range);
  },
});

before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-cache-'));
  blobs = new LocalBlobStore({ dir });
  await blobs.start();
});
after(() => rm(dir, { recursive: true, force: true }));

const put = async (bytes: Buffer) => blobs.write(Readable.from([bytes]), 1 << 30);

it('reads an artifact from storage once, however many devices ask at once', async () => {
  reads.length = 0;
  const bytes = randomBytes(100_000);
  const b = await put(bytes);
  const cache = new ArtifactCache({ blobs: counting(), maxBytes: 1 << 20 });
  const got = await Promise.all(Array.from({ length: 50 }, () => cache.get(b.sha256, b.size)));
  for (const g of got) assert.ok(g?.bytes.equals(bytes));
  const again = await cache.get(b.sha256, b.size);
  assert.ok(again?.bytes.equals(bytes));
  assert.deepEqual(reads, [b.sha256]);
  // whether the store was read by this call: a download route ends a storage outage on it
  assert.deepEqual([...new Set(got.map((g) => g?.loaded))], [true], 'all 50 waited for the one read of the store');
  assert.equal(again?.loaded, false, 'held from before: the store was not read');
  assert.equal(cache.size, bytes.length);
});

it('lets the least recently used artifact go first, and never holds one over the item limit', async () => {
  reads.length = 0;
  const [a, b, c] = await Promise.all([put(randomBytes(40_000)), put(randomBytes(40_000)), put(randomBytes(40_000))]);
  const cache = new ArtifactCache({ blobs: counting(), maxBytes: 100_000, maxItemBytes: 50_000 });
  await cache.get(a!.sha256, a!.size);
  await cache.get(b!.sha256, b!.size);
  await cache.get(a!.sha256, a!.size); // a is now the most recently used
  await cache.get(c!.sha256, c!.size); // 120,000 > 100,000: b leaves
  assert.equal(cache.size, 80_000);
  reads.length = 0;
  await cache.get(a!.sha256, a!.size);
  await cache.get(c!.sha256, c!.size);
  assert.deepEqual(reads, [], 'a and c stayed');
  await cache.get(b!.sha256, b!.size);
  assert.deepEqual(reads, [b!.sha256], 'b was read again');
  const big = await put(randomBytes(60_000));
  assert.equal(await cache.get(big.sha256, big.size), undefined, 'over maxItemBytes: streamed instead');
});

it('does not hold bytes that do not match their SHA-256 (damaged storage)', async () => {
  const bytes = randomBytes(10_000);
  const b = await put(bytes);
  const sha = createHash('sha256').update(bytes).digest('hex');
  const file = path.join(dir, 'sha256', sha.slice(0, 2), sha);
  await chmod(file, 0o644);
  await writeFile(file, Buffer.concat([bytes.subarray(0, 9_999), Buffer.from([bytes[9_999]! ^ 1])]));
  const cache = new ArtifactCache({ blobs: counting(), maxBytes: 1 << 20 });
  assert.equal(await cache.get(b.sha256, b.size), undefined);
  assert.equal(cache.size, 0);
});

it("lets go of a deleted build's bytes", async () => {
  reads.length = 0;
  const b = await put(randomBytes(20_000));
  const kept = await put(randomBytes(10_000));
  const cache = new ArtifactCache({ blobs: counting(), maxBytes: 1 << 20 });
  await cache.get(b.sha256, b.size);
  await cache.get(kept.sha256, kept.size);
  cache.forget(b.sha256);
  cache.forget(b.sha256); // twice: nothing more to let go
  assert.equal(cache.size, 10_000);
  reads.length = 0;
  await cache.get(kept.sha256, kept.size);
  await cache.get(b.sha256, b.size);
  assert.deepEqual(reads, [b.sha256], 'only the forgotten one is read again');
});
