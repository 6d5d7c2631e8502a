/**
 * Downloads while storage cannot be reached: 503 with Retry-After and a message that names
 * no host, not a 500 (which told the agent only that something broke); logged once when it
 * begins and once when downloads are served again, not an error line per request. Real
 * server and HTTP, an s3rver stopped and started under it (its bucket), and a private
 * PostgreSQL stopped under it (the state store the route reads).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createLogger } from '../../src/util/logger.ts';
import { startRestartableS3, type RestartableS3 } from '../helpers/s3.ts';
import { TestClient, connectIdleDevice } from '../helpers/mqtt-client.ts';
import { startTestPostgres, unavailable, type TestPostgres } from '../helpers/postgres.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact, deploy } from '../security/support.ts';

/** The download URL of the command the device is sent for `version`. */
async function commandUrl(dev: TestClient, version: string): Promise<string> {
  const delta = await dev.next((m) => m.topic === 'state/dev-1/update/delta' && m.body.state?.software?.version === version && m.body.state?.software?.url !== undefined);
  return delta.body.state.software.url as string;
}

describe('downloads while the S3 bucket cannot be reached', () => {
  let s3: RestartableS3;
  let ts: TestServer;
  let dev: TestClient;
  const logged: string[] = [];

  before(async () => {
    s3 = await startRestartableS3();
    // no memory cache: every download reads the bucket
    ts = await startTestServer({ flags: { blob: s3.blobUrl('outage'), 'download-cache-bytes': 0 }, logger: createLogger({ level: 'info', write: (l) => logged.push(l) }) });
    dev = await connectIdleDevice(ts, 'dev-1');
  });
  after(async () => {
    await dev?.end();
    await ts?.close();
    await s3?.close();
  });

  it('are answered 503 with Retry-After, then served once it is back; the outage is logged once, when it begins and when it ends', async () => {
    const bytes = Buffer.alloc(40_000, 3);
    await addArtifact(ts, '2.0.0', bytes);
    await deploy(ts, ['dev-1'], 'fw@2.0.0');
    const url = await commandUrl(dev, '2.0.0');
    assert.equal((await fetch(url)).status, 200, 'served while the bucket answers');

    await s3.down();
    for (const headers of [{}, { range: 'bytes=100-' }, {}] as Record<string, string>[]) {
      const r = await fetch(url, { headers });
      assert.equal(r.status, 503, JSON.stringify(headers));
      assert.equal(r.headers.get('retry-after'), '5');
      const body = (await r.json()) as { error: { code: string; message: string } };
      assert.deepEqual(body, { error: { code: 'UNAVAILABLE', message: 'unavailable (503): the server cannot reach its storage just now; try again in 5 s' } });
    }
    const began = logged.filter((l) => l.includes('downloads answered 503'));
    assert.equal(began.length, 1, logged.join('\n'));
    assert.match(began[0]!, /WARN +\[download\] downloads answered 503 \(try again later\): storage cannot be reached; .* artifact=fw@2\.0\.0 error="artifact storage unreachable: cannot read .* ECONNREFUSED/);
    assert.ok(!logged.some((l) => l.includes('request failed') || l.includes('download refused')), logged.join('\n'));

    await s3.up();
    const back = await fetch(url);
    assert.equal(back.status, 200);
    assert.deepEqual(Buffer.from(await back.arrayBuffer()), bytes);
    assert.equal(logged.filter((l) => l.includes('downloads served again')).length, 1);
    assert.match(logged.find((l) => l.includes('downloads served again'))!, /INFO +\[download\] downloads served again answered503=3 seconds=\d+$/);
  });

  it('a download of a build whose object is gone from the bucket is no outage: 503 for the build, an ERROR naming it, no outage line', async () => {
    await s3.up();
    // storage answers, and says the bytes are not there: no outage of storage, but bytes that
    // may come (a replica catching up, a file restored): the device tries again
    // (test/http/missing-artifact-bytes.test.ts)
    const outages = logged.filter((l) => l.includes('downloads answered 503 (try again later)')).length;
    await addArtifact(ts, '3.0.0', Buffer.alloc(1000, 4));
    await deploy(ts, ['dev-1'], 'fw@3.0.0');
    const url = await commandUrl(dev, '3.0.0');
    const { S3Client, DeleteObjectCommand, ListObjectsV2Command } = await import('@aws-sdk/client-s3');
    const client = new S3Client({ endpoint: s3.endpoint, region: 'us-east-1', forcePathStyle: true });
    try {
      const listed = await client.send(new ListObjectsV2Command({ Bucket: 'outage' }));
      for (const o of listed.Contents ?? []) await client.send(new DeleteObjectCommand({ Bucket: 'outage', Key: o.Key! }));
    } finally {
      client.destroy();
    }
    const r = await fetch(url);
    assert.equal(r.status, 503);
    assert.equal(r.headers.get('retry-after'), '5');
    assert.equal(logged.filter((l) => l.includes('downloads answered 503 (try again later)')).length, outages, 'not an outage of storage');
    assert.equal(logged.filter((l) => / ERROR .*the artifact's bytes are missing from artifact storage.* artifact=fw@3\.0\.0 /.test(l)).length, 1, logged.join('\n'));
  });
});

describe('downloads while the S3 bucket cannot be reached, some builds held in memory', () => {
  let s3: RestartableS3;
  let ts: TestServer;
  let dev: TestClient;
  const logged: string[] = [];
  const began = () => logged.filter((l) => l.includes('downloads answered 503'));
  const ended = () => logged.filter((l) => l.includes('downloads served again'));

  before(async () => {
    s3 = await startRestartableS3();
    // builds up to 10,000 bytes are held in memory once read
    ts = await startTestServer({ flags: { blob: s3.blobUrl('cached'), 'download-cache-bytes': 80_000 }, logger: createLogger({ level: 'info', write: (l) => logged.push(l) }) });
    dev = await connectIdleDevice(ts, 'dev-1');
  });
  after(async () => {
    await dev?.end();
    await ts?.close();
    await s3?.close();
  });

  it('log the outage once: a build served from memory does not end it; a HEAD asks the bucket, as its GET; a read of the bucket does', async () => {
    const urls: Record<string, string> = {};
    for (const [version, size] of [['2.0.0', 5_000], ['3.0.0', 40_000], ['4.0.0', 6_000]] as const) {
      await addArtifact(ts, version, Buffer.alloc(size, 7));
      await deploy(ts, ['dev-1'], `fw@${version}`);
      urls[version] = await commandUrl(dev, version);
    }
    const status = async (version: string, method = 'GET') => (await fetch(urls[version]!, { method })).status;
    assert.equal(await status('2.0.0'), 200, 'read once, held in memory');

    await s3.down();
    // 2.0.0 from memory; 3.0.0 is too large to hold; 4.0.0 was never read
    const answers = [await status('2.0.0'), await status('3.0.0'), await status('2.0.0'), await status('3.0.0', 'HEAD'), await status('4.0.0'), await status('2.0.0')];
    // a HEAD asks the bucket whether it holds the bytes (HeadObject): 503 as its GET
    assert.deepEqual(answers, [200, 503, 200, 503, 503, 200]);
    assert.equal(began().length, 1, logged.join('\n'));
    assert.equal(ended().length, 0, `"served again" while the bucket is down:\n${logged.join('\n')}`);

    await s3.up();
    assert.equal(await status('2.0.0'), 200);
    assert.equal(ended().length, 0, 'a build from memory says nothing of the bucket');
    assert.equal(await status('4.0.0'), 200, 'read from the bucket into memory');
    assert.equal(ended().length, 1, logged.join('\n'));
    assert.match(ended()[0]!, /downloads served again answered503=3 /);
    assert.equal(await status('3.0.0'), 200);
    assert.equal(ended().length, 1);

    // a build streamed from the bucket ends an outage too
    await s3.down();
    assert.equal(await status('3.0.0'), 503);
    await s3.up();
    assert.equal(await status('3.0.0'), 200);
    assert.deepEqual([began().length, ended().length], [2, 2], logged.join('\n'));
  });
});

describe('downloads while PostgreSQL cannot be reached', async () => {
  const pgResult = await startTestPostgres();
  const skip = pgResult.ok ? false : unavailable(pgResult, 'PostgreSQL outage');
  let pgServer: TestPostgres;
  let ts: TestServer;
  let dev: TestClient;
  const logged: string[] = [];

  before(async () => {
    if (!pgResult.ok) return;
    pgServer = pgResult.server;
    ts = await startTestServer({ flags: { db: await pgServer.createDatabase() }, logger: createLogger({ level: 'info', write: (l) => logged.push(l) }) });
    dev = await connectIdleDevice(ts, 'dev-1');
  });
  after(async () => {
    await dev?.end();
    await ts?.close();
    if (pgResult.ok) await pgResult.server.stop().catch(() => undefined);
  });

  it('are answered 503 with Retry-After: the registry, which every download reads, cannot be', { skip }, async () => {
    await addArtifact(ts, '2.0.0', Buffer.alloc(10_000, 5));
    await deploy(ts, ['dev-1'], 'fw@2.0.0');
    const url = await commandUrl(dev, '2.0.0');
    assert.equal((await fetch(url)).status, 200);

    await pgServer.stop(); // the database goes away: its sessions are ended, its port refuses
    const r = await fetch(url);
    assert.equal(r.status, 503, `${await r.clone().text()}\n${logged.join("\n")}`);
    assert.equal(r.headers.get('retry-after'), '5');
    assert.equal(((await r.json()) as { error: { code: string } }).error.code, 'UNAVAILABLE');
    assert.equal(logged.filter((l) => l.includes('downloads answered 503')).length, 1, logged.join('\n'));
  });
});
