/** The production settings (--db, --blob, --mqtt-url): validated as URLs, all errors at once; adapters chosen from them. */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { S3BlobStore } from '../../src/artifacts/s3-blob-store.ts';
import { LocalBlobStore } from '../../src/artifacts/local-blob-store.ts';
import { loadConfig } from '../../src/config/load-config.ts';
import { UpdraftError } from '../../src/errors.ts';
import { createBlobStore, createStateStore, parseS3Url } from '../../src/server/adapters.ts';
import { PostgresStore } from '../../src/store/postgres-store.ts';
import { SqliteStore } from '../../src/store/sqlite-store.ts';
import { silentLogger } from '../../src/util/logger.ts';

it('defaults to the embedded adapters and accepts postgres, s3 and mqtt URLs', () => {
  const embedded = loadConfig({});
  assert.deepEqual([embedded.db, embedded.blob, embedded.mqtt.url, embedded.mqtt.shareGroup], ['', '', '', 'updraft']);
  assert.ok(createStateStore(embedded, '/tmp/x', silentLogger) instanceof SqliteStore);
  assert.ok(createBlobStore(embedded, '/tmp/x') instanceof LocalBlobStore);
  const prod = loadConfig({
    flags: { db: 'postgres://u:p@db:5432/updraft', blob: 's3://fw/fleet?endpoint=http://minio:9000&create=true' },
    env: { UPDRAFT_MQTT_URL: 'mqtts://broker:8883' },
  });
  assert.equal(prod.mqtt.url, 'mqtts://broker:8883');
  assert.ok(createStateStore(prod, '/tmp/x', silentLogger) instanceof PostgresStore);
  assert.ok(createBlobStore(prod, '/tmp/x') instanceof S3BlobStore);
});

it('reports every bad URL at once, without the password', () => {
  assert.throws(
    () => loadConfig({ flags: { db: 'mysql://u:hunter2@h/db', blob: 'not a url', 'mqtt-url': 'http://broker' } }),
    (err: unknown) => {
      assert.ok(err instanceof UpdraftError && err.code === 'CONFIG');
      assert.match(err.message, /db \(flag --db\) must be a postgres or postgresql URL/);
      assert.match(err.message, /blob \(flag --blob\) must be a URL/);
      assert.match(err.message, /mqtt\.url \(flag --mqtt-url\) must be a mqtt or mqtts URL/);
      assert.ok(!err.message.includes('hunter2'));
      return true;
    },
  );
});

it('parses s3:// URLs into bucket, prefix and endpoint', () => {
  assert.deepEqual(parseS3Url('s3://fw/fleet-a?endpoint=http://minio:9000&region=eu-west-1&pathStyle=true&create=true'), {
    bucket: 'fw',
    prefix: 'fleet-a/',
    endpoint: 'http://minio:9000',
    region: 'eu-west-1',
    forcePathStyle: true,
    createBucket: true,
  });
  assert.deepEqual(parseS3Url('s3://fw'), { bucket: 'fw', prefix: '' });
  assert.throws(() => parseS3Url('s3://fw?endpont=x'), /unknown parameters endpont/);
  assert.throws(() => parseS3Url('s3://fw?create=yes'), /true or false/);
});
