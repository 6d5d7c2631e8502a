/** The S3 BlobStore against the shared contract, on s3rver in-process; plus pre-signed URLs. */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { S3UrlIssuer } from '../../src/artifacts/download-url-issuer.ts';
import { S3BlobStore } from '../../src/artifacts/s3-blob-store.ts';
import { UpdraftError } from '../../src/errors.ts';
import { startTestS3, type TestS3 } from '../helpers/s3.ts';
import { blobStoreContract } from './blob-store.contract.ts';

const s3 = await startTestS3();
after(() => s3.stop());
let bucketNo = 0;

function s3Store(bucket: string, extra: Partial<ConstructorParameters<typeof S3BlobStore>[0]> = {}): S3BlobStore {
  // 5 MiB parts, S3's minimum, so the contract's 13 MiB blob takes the multipart path
  return new S3BlobStore({ bucket, endpoint: s3.endpoint, credentials: s3.credentials, forcePathStyle: true, createBucket: true, partSize: 5 * 1024 * 1024, ...extra });
}

blobStoreContract('S3BlobStore', async () => ({
  store: s3Store(`contract-${bucketNo++}`, { prefix: 'fleet-a/' }),
  cleanup: async () => {},
}));

describe('S3BlobStore specifics', () => {
  let store: S3BlobStore;
  before(async () => {
    store = s3Store('specifics');
    await store.start();
  });
  after(() => store.stop());

  it('refuses a missing bucket with a CONFIG error unless asked to create it', async () => {
    const missing = s3Store('no-such-bucket', { createBucket: false });
    await assert.rejects(missing.start(), (err: unknown) => err instanceof UpdraftError && err.code === 'CONFIG' && /does not exist/.test(err.message));
  });

  it('issues pre-signed URLs that download the exact bytes, ranges too', async () => {
    const bytes = randomBytes(50_000);
    const { sha256 } = await store.write(Readable.from([bytes]), 1 << 20);
    const url = await new S3UrlIssuer({ blobs: store }).issue({ deviceId: 'dev-1', name: 'fw', version: '2.0.0', sha256, expiresAt: Math.floor(Date.now() / 1000) + 600 });
    const u = new URL(url);
    assert.equal(u.origin, s3.endpoint);
    assert.ok(u.searchParams.get('X-Amz-Signature'), 'signed');
    const expires = Number(u.searchParams.get('X-Amz-Expires'));
    assert.ok(expires > 0 && expires <= 600, `expires within the grant: ${expires}`);
    assert.match(u.searchParams.get('response-content-disposition') ?? '', /fw-2\.0\.0-dev-1\.bin/);
    const whole = await fetch(url);
    assert.equal(whole.status, 200);
    assert.equal(createHash('sha256').update(Buffer.from(await whole.arrayBuffer())).digest('hex'), sha256);
    const part = await fetch(url, { headers: { range: 'bytes=100-199' } });
    assert.equal(part.status, 206);
    assert.deepEqual(Buffer.from(await part.arrayBuffer()), bytes.subarray(100, 200));
  });
});
