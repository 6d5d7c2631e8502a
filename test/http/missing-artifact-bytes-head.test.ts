/**
 * A HEAD of a download URL, and a download of an empty (0-byte) build, whose bytes are missing
 * from the artifact storage. 1d19c44 answered a GET of such a build 503 with Retry-After, an
 * ERROR and `downloads.missing`; a HEAD and an empty build read no bytes and skipped that
 * check: 200, nothing logged or counted, while every GET of the same URL was 503. Now they ask
 * the storage whether it holds the bytes (a stat of the file, S3's HeadObject) and are answered
 * as the GET. Real server, real HTTP, the blob file removed from the data directory or the
 * object deleted from a real s3rver bucket.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { S3BlobStore } from '../../src/artifacts/s3-blob-store.ts';
import { parseS3Url } from '../../src/artifacts/s3-url.ts';
import { createLogger } from '../../src/util/logger.ts';
import { TestClient, connectIdleDevice } from '../helpers/mqtt-client.ts';
import { startRestartableS3, type RestartableS3 } from '../helpers/s3.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact, deploy } from '../security/support.ts';

const EMPTY_SHA256 = createHash('sha256').digest('hex');

/** A server logging at info into `logged`, a device connected, and the helpers of the cases. */
function fixture(flags: () => Record<string, unknown>) {
  const f = {
    ts: undefined as unknown as TestServer,
    dev: undefined as unknown as TestClient,
    logged: [] as string[],
    async start() {
      f.ts = await startTestServer({ flags: { 'download-cache-bytes': 80_000, ...flags() }, logger: createLogger({ level: 'info', write: (l) => f.logged.push(l) }) });
      f.dev = await connectIdleDevice(f.ts, 'dev-1');
    },
    async close() {
      await f.dev?.end();
      await f.ts?.close();
    },
    /** Deploys fw@version to dev-1: the download URL the device was sent. */
    async deployed(version: string) {
      await deploy(f.ts, ['dev-1'], `fw@${version}`);
      const delta = await f.dev.next((m) => m.topic === 'state/dev-1/update/delta' && m.body.state?.software?.version === version && m.body.state?.software?.url !== undefined);
      return delta.body.state.software.url as string;
    },
    blobFile: (sha256: string) => path.join(f.ts.dataDir, 'artifacts', 'sha256', sha256.slice(0, 2), sha256),
    async downloads() {
      const r = await fetch(`${f.ts.httpUrl}/api/v1/metrics`, { headers: { authorization: `Bearer ${f.ts.token}` } });
      assert.equal(r.status, 200);
      return ((await r.json()) as { downloads: { missing: number; unavailable: number; served: number } }).downloads;
    },
    errors: (artifact: string) => f.logged.filter((l) => / ERROR .*the artifact's bytes are missing from artifact storage/.test(l) && l.includes(`artifact=${artifact} `)),
  };
  return f;
}

/** Asserts the answer is the missing-bytes 503 (a HEAD has no body to read). */
function assertMissing(r: Response, what: string) {
  assert.equal(r.status, 503, what);
  assert.equal(r.headers.get('retry-after'), '5', what);
  assert.equal(r.headers.get('etag'), null, `${what}: no download headers`);
}

describe('HEAD and an empty build, their bytes removed from the artifact directory', () => {
  const f = fixture(() => ({}));
  before(() => f.start());
  after(() => f.close());

  for (const [what, version, size] of [['streamed from storage', '2.0.0', 40_000], ['held in memory once read', '3.0.0', 2_000]] as const) {
    it(`a HEAD of a build ${what} is answered 503 as its GET, logged and counted`, async () => {
      const { sha256 } = await addArtifact(f.ts, version, Buffer.alloc(size, version.charCodeAt(0)));
      const url = await f.deployed(version);
      const head = await fetch(url, { method: 'HEAD' });
      assert.equal(head.status, 200, 'the URL is good');
      assert.equal(head.headers.get('content-length'), String(size));
      await rm(f.blobFile(sha256));
      const before = await f.downloads();

      assertMissing(await fetch(url, { method: 'HEAD' }), 'HEAD');
      const get = await fetch(url);
      await get.arrayBuffer();
      assertMissing(get, 'GET');

      assert.equal(f.errors(`fw@${version}`).length, 1, f.logged.join('\n'));
      const after = await f.downloads();
      assert.deepEqual({ missing: after.missing - before.missing, unavailable: after.unavailable - before.unavailable }, { missing: 2, unavailable: 0 });
    });
  }

  it('an empty build (stored before they were refused) is answered 503 by GET and HEAD, logged and counted', async () => {
    // an empty build can no longer be added (400), but one stored before can still be deployed
    await mkdir(path.dirname(f.blobFile(EMPTY_SHA256)), { recursive: true });
    await writeFile(f.blobFile(EMPTY_SHA256), '');
    await f.ts.server.store.putArtifact({ name: 'fw', version: '4.0.0', sha256: EMPTY_SHA256, size: 0, createdAt: Date.now() });
    const url = await f.deployed('4.0.0');
    for (const method of ['GET', 'HEAD']) {
      const r = await fetch(url, { method });
      assert.equal(r.status, 200, `${method}: the URL is good while the bytes are there`);
      assert.equal((await r.arrayBuffer()).byteLength, 0);
    }
    await rm(f.blobFile(EMPTY_SHA256));
    const before = await f.downloads();

    for (const method of ['GET', 'HEAD']) {
      const r = await fetch(url, { method });
      await r.arrayBuffer();
      assertMissing(r, method);
    }
    assert.equal(f.errors('fw@4.0.0').length, 1, f.logged.join('\n'));
    const after = await f.downloads();
    assert.deepEqual({ missing: after.missing - before.missing, served: after.served - before.served }, { missing: 2, served: 0 });
  });
});

describe('a HEAD of a build whose S3 object was deleted', () => {
  let s3: RestartableS3;
  const f = fixture(() => ({ blob: s3.blobUrl('missing-head') }));
  before(async () => {
    s3 = await startRestartableS3();
    await f.start();
  });
  after(async () => {
    await f.close();
    await s3?.close();
  });

  it('is answered 503 (HeadObject), logged naming the bucket, and counted', async () => {
    const { sha256 } = await addArtifact(f.ts, '2.0.0', Buffer.alloc(40_000, 2));
    const url = await f.deployed('2.0.0');
    assert.equal((await fetch(url, { method: 'HEAD' })).status, 200, 'the URL is good');
    const bucket = new S3BlobStore(parseS3Url(s3.blobUrl('missing-head')));
    await bucket.start();
    assert.equal(await bucket.delete(sha256), true);
    await bucket.stop();

    assertMissing(await fetch(url, { method: 'HEAD' }), 'HEAD');
    const lines = f.errors('fw@2.0.0');
    assert.equal(lines.length, 1, f.logged.join('\n'));
    assert.ok(lines[0]!.includes('storage="bucket s3://missing-head/"'), lines[0]);
    assert.equal((await f.downloads()).missing, 1);
  });
});
