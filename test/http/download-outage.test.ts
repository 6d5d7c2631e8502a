/**
 * An outage of the S3 bucket as an operator sees it from the download path, on a real server
 * with several devices downloading at once: the 503s counted in the metrics
 * (`downloads.unavailable`), one WARN for the outage and for the transfers it cut (not an
 * ERROR per request; the count of the others, said 30 s later, is ThrottledLog's own test),
 * and the outage's end logged on
 * the first download that read the bucket, also one of a build loaded into memory that no
 * device asked for during the outage. Real server and HTTP, an s3rver stopped and started
 * under it.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createLogger } from '../../src/util/logger.ts';
import { eventually } from '../helpers/cli.ts';
import { TestClient, connectIdleDevice } from '../helpers/mqtt-client.ts';
import { startRestartableS3, type RestartableS3 } from '../helpers/s3.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact, deploy } from '../security/support.ts';

const DEVICES = ['dev-1', 'dev-2', 'dev-3', 'dev-4'];
/** Streamed from the bucket (over the memory cache's item limit of 10,000 bytes). */
const STREAMED = '2.0.0';
/** Held in memory once read; no device asks for it before the bucket comes back. */
const COLD = '3.0.0';
/** Large enough to still be streaming from the bucket while the device reads its first bytes only. */
const LARGE = '4.0.0';

describe('downloads from several devices while the S3 bucket is down', () => {
  let s3: RestartableS3;
  let ts: TestServer;
  const devices: TestClient[] = [];
  /** urls[version][deviceId]: the download URL of the command the device was sent. */
  const urls: Record<string, Record<string, string>> = {};
  const logged: string[] = [];
  const lines = (text: string) => logged.filter((l) => l.includes(text));
  const errors = () => logged.filter((l) => / ERROR /.test(l));

  const metrics = async () => {
    const r = await fetch(`${ts.httpUrl}/api/v1/metrics`, { headers: { authorization: `Bearer ${ts.token}` } });
    assert.equal(r.status, 200);
    return ((await r.json()) as { downloads: { served: number; refused: number; cut: number; unavailable: number } }).downloads;
  };
  const status = async (version: string, deviceId: string) => {
    const r = await fetch(urls[version]![deviceId]!);
    await r.arrayBuffer();
    return r.status;
  };
  /** A download of LARGE whose first bytes have arrived and whose rest the device has not read yet. */
  const started = async (deviceId: string) => {
    const r = await fetch(urls[LARGE]![deviceId]!);
    assert.equal(r.status, 200);
    const reader = r.body!.getReader();
    assert.equal((await reader.read()).done, false);
    return async () => {
      for (;;) if ((await reader.read()).done) return;
    };
  };

  before(async () => {
    s3 = await startRestartableS3();
    ts = await startTestServer({ flags: { blob: s3.blobUrl('outage-log'), 'download-cache-bytes': 80_000 }, logger: createLogger({ level: 'info', write: (l) => logged.push(l) }) });
    for (const id of DEVICES) devices.push(await connectIdleDevice(ts, id));
    for (const [version, size] of [[STREAMED, 40_000], [COLD, 6_000], [LARGE, 64 * 1024 * 1024]] as const) {
      await addArtifact(ts, version, Buffer.alloc(size, 7));
      await deploy(ts, DEVICES, `fw@${version}`);
      urls[version] = {};
      for (const [i, dev] of devices.entries()) {
        const id = DEVICES[i]!;
        const delta = await dev.next((m) => m.topic === `state/${id}/update/delta` && m.body.state?.software?.version === version && m.body.state?.software?.url !== undefined);
        urls[version]![id] = delta.body.state.software.url as string;
      }
    }
  });
  after(async () => {
    for (const dev of devices) await dev.end();
    await ts?.close();
    await s3?.close();
  });

  it('counts the downloads answered 503 in the metrics, and logs one WARN, then the count when they are served again', async () => {
    const before = await metrics();
    await s3.down();
    // every device asks twice at once, as agents retrying through the outage do
    const answers = await Promise.all([...DEVICES, ...DEVICES].map((id) => status(STREAMED, id)));
    assert.deepEqual(answers, Array(8).fill(503));
    const during = await metrics();
    assert.deepEqual({ unavailable: during.unavailable - before.unavailable, served: during.served - before.served, refused: during.refused - before.refused }, { unavailable: 8, served: 0, refused: 0 });
    const prometheus = await (await fetch(`${ts.httpUrl}/api/v1/metrics`, { headers: { authorization: `Bearer ${ts.token}`, accept: 'text/plain' } })).text();
    assert.ok(prometheus.includes(`updraft_downloads_total{result="unavailable"} ${during.unavailable}\n`), prometheus);

    assert.equal(lines('downloads answered 503').length, 1, logged.join('\n'));
    assert.match(lines('downloads answered 503')[0]!, /WARN +\[download\] downloads answered 503 \(try again later\): storage cannot be reached/);
    assert.deepEqual(errors(), [], 'no ERROR line per request');

    await s3.up();
    assert.equal(await status(STREAMED, 'dev-1'), 200);
    assert.equal(lines('downloads served again').length, 1, logged.join('\n'));
    assert.match(lines('downloads served again')[0]!, /INFO +\[download\] downloads served again answered503=8 seconds=\d+$/);
    assert.equal((await metrics()).unavailable, during.unavailable, 'a download served is not counted unavailable');
  });

  it('ends the outage at a build loaded into memory from the bucket, though no device asked for it during the outage', async () => {
    const [began, ended] = [lines('downloads answered 503').length, lines('downloads served again').length];
    await s3.down();
    assert.equal(await status(STREAMED, 'dev-2'), 503);
    assert.equal(lines('downloads answered 503').length, began + 1, logged.join('\n'));
    await s3.up();
    // the devices now ask only for a build that is not in memory yet: its load reads the bucket
    assert.equal(await status(COLD, 'dev-2'), 200);
    assert.equal(lines('downloads served again').length, ended + 1, `the bucket was read, the outage not ended:\n${logged.join('\n')}`);
    assert.match(lines('downloads served again').at(-1)!, /downloads served again answered503=1 /);
    // from memory now: nothing more to say
    assert.equal(await status(COLD, 'dev-3'), 200);
    assert.equal(lines('downloads served again').length, ended + 1);
  });

  it('logs the transfers the outage cuts as one WARN, not one ERROR each (the count of those left out, said 30 s later: test/util/log-throttle.test.ts)', async () => {
    const cutLines = () => lines('download cut');
    const before = await metrics();
    const rests = await Promise.all(DEVICES.map((id) => started(id)));
    await s3.down();
    for (const rest of rests) await assert.rejects(rest(), 'the transfer is cut');
    await eventually(async () => ((await metrics()).cut - before.cut === DEVICES.length ? true : undefined), 10_000, 'every transfer counted cut');
    const first = await eventually(async () => cutLines()[0], 10_000, 'the cut logged');
    assert.equal(cutLines().length, 1, logged.join('\n'));
    assert.match(first, /WARN +\[download\] download cut: the artifact cannot be read from storage artifact=fw@4\.0\.0 device=dev-\d error=/);
    assert.doesNotMatch(first, /suppressed=/);
    assert.deepEqual(errors(), [], 'no ERROR line per transfer');

    await s3.up();
  });
});
