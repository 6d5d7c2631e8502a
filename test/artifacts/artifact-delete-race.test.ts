/**
 * Blobs are shared by content: a build added with the same bytes as one being deleted must
 * not end up as a record that names no bytes. Real stores (SQLite, local disk); the blob
 * store's write is held open after it finished, to put the deletion exactly in between.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, it } from 'node:test';
import { ArtifactService } from '../../src/artifacts/artifact-service.ts';
import type { BlobStore } from '../../src/artifacts/blob-store.ts';
import { LocalBlobStore } from '../../src/artifacts/local-blob-store.ts';
import { SqliteStore } from '../../src/store/sqlite-store.ts';

let dir: string;
let store: SqliteStore;
let blobs: LocalBlobStore;
before(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-artifact-race-'));
  store = new SqliteStore({ path: path.join(dir, 'state.db') });
  await store.start();
  blobs = new LocalBlobStore({ dir: path.join(dir, 'blobs') });
  await blobs.start();
});
after(async () => {
  await store.stop();
  await rm(dir, { recursive: true, force: true });
});

it('an artifact added with the bytes of one deleted meanwhile is refused, not recorded without its bytes', async () => {
  let written!: () => void;
  const writeDone = new Promise<void>((resolve) => (written = resolve));
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  // the real store; the second write's answer waits until the test lets it through
  let writes = 0;
  const gated = afterEachWrite(async () => {
    if (++writes === 2) {
      written();
      await held;
    }
  });
  const artifacts = new ArtifactService({ store, blobs: gated, maxArtifactBytes: 1 << 20 });
  const bytes = Buffer.from('the same build under two names');
  const first = await artifacts.add('fw', '1.0.0', Readable.from([bytes]));

  const adding = artifacts.add('fw-copy', '1.0.0', Readable.from([bytes]));
  await writeDone; // fw-copy's bytes are written (the same file), its record not yet
  assert.deepEqual(await artifacts.delete('fw', '1.0.0'), { artifact: first, bytesDeleted: true }, 'no record named the bytes yet');
  release();
  await assert.rejects(adding, { code: 'CONFLICT', message: 'the bytes of fw-copy@1.0.0 were deleted with another artifact while they were being added; add it again' });
  assert.equal(await store.getArtifact('fw-copy', '1.0.0'), undefined, 'no record without bytes');

  // added again, it is whole
  const again = await artifacts.add('fw-copy', '1.0.0', Readable.from([bytes]));
  assert.equal(await blobs.stat(again.sha256), bytes.length);
});

it('two adds of one name@version with different bytes: the loser is refused and its bytes are not left in storage', async () => {
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  let bothWritten!: () => void;
  const written = new Promise<void>((resolve) => (bothWritten = resolve));
  let writes = 0;
  // both uploads pass the "already exists?" look before either records: their writes wait for each other
  const gated = afterEachWrite(async () => {
    if (++writes === 2) bothWritten();
    await written;
    await held;
  });
  const artifacts = new ArtifactService({ store, blobs: gated, maxArtifactBytes: 1 << 20 });
  const a = artifacts.add('race', '1.0.0', Readable.from([Buffer.from('build A')]));
  const b = artifacts.add('race', '1.0.0', Readable.from([Buffer.from('build B')]));
  await written;
  release();
  const [ra, rb] = await Promise.allSettled([a, b]);
  const won = [ra, rb].filter((r) => r.status === 'fulfilled');
  const lost = [ra, rb].filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  assert.equal(won.length, 1);
  assert.equal(lost.length, 1);
  assert.equal((lost[0]!.reason as { code: string }).code, 'CONFLICT');
  // told as a later retry is told (the README's wording), not the store's own
  assert.equal((lost[0]!.reason as Error).message, 'artifact race@1.0.0 already exists; versions are immutable, add a new version');
  const recorded = (await store.getArtifact('race', '1.0.0'))!;
  const other = recorded.sha256 === sha('build A') ? sha('build B') : sha('build A');
  assert.equal(await blobs.stat(recorded.sha256), 7, "the winner's bytes stay");
  assert.equal(await blobs.stat(other), undefined, "the loser's bytes are gone");
});

it('an empty build is refused and leaves no blob behind', async () => {
  const artifacts = new ArtifactService({ store, blobs, maxArtifactBytes: 1 << 20 });
  await assert.rejects(artifacts.add('empty', '1.0.0', Readable.from([Buffer.alloc(0)])), { code: 'BAD_REQUEST' });
  assert.equal(await blobs.stat(sha('')), undefined);
});

function sha(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/** The real blob store, whose writes answer only once `hold` (run after each write) resolves. */
function afterEachWrite(hold: () => Promise<void>): BlobStore {
  return {
    start: () => blobs.start(),
    stop: () => blobs.stop(),
    stat: (sha) => blobs.stat(sha),
    read: (sha, range) => blobs.read(sha, range),
    delete: (sha) => blobs.delete(sha),
    write: async (source, max) => {
      const r = await blobs.write(source, max);
      await hold();
      return r;
    },
  };
}
