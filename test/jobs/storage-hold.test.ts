/**
 * The rollout engine sends no new update command while the artifact storage does not answer
 * (the check of /readyz): the commands it sent during an outage of the S3 bucket went to
 * devices whose downloads failed (HTTP 500 then), filling the in-flight window and counting
 * towards the abort rules. It goes on by itself once the storage answers, and logs the outage
 * once each way. First on the rollout parts with a fake clock (the rate's clock is moved on by
 * the wait), then on a real server: both against an s3rver stopped and started.
 */
import assert from 'node:assert/strict';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import { probeBlobStore } from '../../src/artifacts/blob-store-probe.ts';
import { S3BlobStore } from '../../src/artifacts/s3-blob-store.ts';
import { createLogger } from '../../src/util/logger.ts';
import { startRestartableS3, type RestartableS3 } from '../helpers/s3.ts';
import { eventually } from '../helpers/cli.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact, deploy } from '../security/support.ts';
import { startRolloutFixture, type RolloutFixture } from './rollout-fixture.ts';

describe('the rollout engine while the artifact storage does not answer (fake clock)', () => {
  let s3: RestartableS3;
  let blobs: S3BlobStore;
  let f: RolloutFixture;
  const lines: string[] = [];

  before(async () => {
    s3 = await startRestartableS3();
    blobs = new S3BlobStore({ bucket: 'hold', endpoint: s3.endpoint, createBucket: true, credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });
    await blobs.start();
  });
  after(async () => {
    await blobs?.stop();
    await s3?.close();
  });
  beforeEach(async () => {
    lines.length = 0;
    await s3.up();
    f = await startRolloutFixture({ builds: ['1.0.0', '2.0.0'], artifactStorage: () => probeBlobStore(blobs), logger: createLogger({ level: 'info', write: (l) => lines.push(l) }) });
  });
  afterEach(() => f.close());

  const sent = async (ids: string[], jobId: string) => {
    let n = 0;
    for (const id of ids) if ((await f.desired(id))?.jobId === jobId) n++;
    return n;
  };

  /** A job of 10 devices at 6 a minute, its first command sent, then eleven minutes of the storage down: held from the first. */
  const heldEleven = async () => {
    const ids = await f.fleet('d', 10);
    const jobId = (await f.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { devices: ids }, plan: { maxPerMinute: 6 } })).job.jobId;
    assert.equal(await sent(ids, jobId), 1, 'one at once');
    await s3.down();
    f.advance(60_000);
    await f.tick();
    assert.equal(await sent(ids, jobId), 1, 'a minute at 6 a minute, but the storage does not answer');
    for (let i = 0; i < 10; i++) {
      f.advance(60_000);
      await f.tick();
    }
    assert.equal(await sent(ids, jobId), 1, 'ten minutes more');
    return { ids, jobId };
  };

  it('sends nothing new until it answers, then goes on at its rate, the wait left out of the rate; logged once each way', async () => {
    const { ids, jobId } = await heldEleven();
    const executions = (await f.store.listJobExecutions(jobId, { limit: 20 })).items;
    assert.equal(executions.filter((e) => e.status === 'QUEUED' && e.dispatchedAt === undefined).length, 9, 'nine not sent');
    assert.equal((await f.job(jobId)).status, 'IN_PROGRESS');

    await s3.up();
    f.advance(1_000);
    await f.tick();
    // held from the first minute's tick to now: the rate's clock stands at that minute, whose
    // allowance (6) goes now; the eleven minutes of the outage do not (all 9 would go at once)
    assert.equal(await sent(ids, jobId), 7);
    f.advance(60_000);
    await f.tick();
    assert.equal(await sent(ids, jobId), 10, 'and on at its rate');

    const down = lines.filter((l) => l.includes('the artifact storage does not answer'));
    assert.equal(down.length, 1, lines.join('\n'));
    assert.match(down[0]!, /WARN +\[?.*the artifact storage does not answer: no new update commands are sent until it does .* storage=unreachable error=".*ECONNREFUSED/);
    const back = lines.filter((l) => l.includes('the artifact storage answers again'));
    assert.equal(back.length, 1, lines.join('\n'));
    assert.match(back[0]!, /INFO .*the artifact storage answers again: sending update commands seconds=601 jobsHeld=1$/);
  });

  it('keeps the wait with the job: an instance taking the lead during the outage does not send what built up at once', async () => {
    const { ids, jobId } = await heldEleven();
    // the rollout parts started again, as an instance taking the lead: none of the first one's memory
    await f.restart();
    f.advance(60_000);
    await f.tick();
    assert.equal(await sent(ids, jobId), 1, 'still held');
    await s3.up();
    f.advance(1_000);
    await f.tick();
    // as without the change of leader: the first minute's allowance (6), not the twelve minutes' (all 9)
    assert.equal(await sent(ids, jobId), 7);
    assert.equal((await f.job(jobId)).progress?.storageHeldSince, undefined, 'the hold is over');
    f.advance(60_000);
    await f.tick();
    assert.equal(await sent(ids, jobId), 10, 'and on at its rate');
  });

  it('keeps what the rate gave up above its cap when the wait ends: no minute\'s worth at once', async () => {
    const ids = await f.fleet('d', 30);
    const jobId = (await f.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { devices: ids }, plan: { maxPerMinute: 6, maxInFlight: 8 } })).job.jobId;
    const dispatched = async () => (await f.store.listJobExecutions(jobId, { limit: 50 })).items.filter((e) => e.dispatchedAt !== undefined);
    const completeInFlight = async () => {
      for (const e of await dispatched()) if (e.status === 'QUEUED') await f.complete(e.deviceId);
    };
    f.advance(60_000);
    await f.tick();
    f.advance(60_000);
    await f.tick();
    assert.equal((await dispatched()).length, 8, 'the in-flight window full at 2 minutes');
    for (let i = 0; i < 10; i++) {
      f.advance(60_000);
      await f.tick();
    }
    // 12 minutes at 6 a minute built 65; a minute's worth and the one (7) goes, 58 are given up
    await completeInFlight();
    await f.tick();
    assert.equal((await dispatched()).length, 15);
    assert.equal(((await f.job(jobId)).progress as { rateForfeit?: { count: number } }).rateForfeit?.count, 58);

    // ten seconds on, one is allowed: the storage does not answer, held for five minutes
    await s3.down();
    await completeInFlight();
    f.advance(10_000);
    await f.tick();
    for (let i = 0; i < 5; i++) {
      f.advance(60_000);
      await f.tick();
    }
    assert.equal((await dispatched()).length, 15, 'held');
    await s3.up();
    f.advance(1_000);
    await f.tick();
    // the rate's clock back where the wait began, and what it gave up still given up: the one
    // allowed then, not a minute's worth (7)
    assert.equal((await dispatched()).length, 16);
  });

  it('asks the storage only when a job has a command to send', async () => {
    const ids = await f.fleet('d', 2);
    const jobId = (await f.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { devices: ids } })).job.jobId;
    assert.equal(await sent(ids, jobId), 2, 'both at once: the storage answers');
    await s3.down();
    f.advance(60_000);
    await f.tick();
    assert.deepEqual(lines.filter((l) => l.includes('artifact storage')), [], 'nothing left to send: not asked, nothing logged');
    // the devices already sent their command go on (their agents retry their downloads)
    await f.complete('d001');
    await f.complete('d002');
    await f.tick();
    assert.equal((await f.job(jobId)).status, 'COMPLETED');
  });
});

describe('the rollout engine of a real server while its S3 bucket is down', () => {
  let s3: RestartableS3;
  let ts: TestServer;
  const lines: string[] = [];

  before(async () => {
    s3 = await startRestartableS3();
    ts = await startTestServer({ flags: { blob: s3.blobUrl('engine-outage') }, logger: createLogger({ level: 'info', write: (l) => lines.push(l) }) });
  });
  after(async () => {
    await ts?.close();
    await s3?.close();
  });

  it('sends no command while /readyz says artifacts: unreachable, and all of them once the bucket is back', async () => {
    await addArtifact(ts, '2.0.0', Buffer.alloc(2000, 1));
    const ids = ['dev-1', 'dev-2', 'dev-3'];
    for (const id of ids) await registerDevice(ts, id);
    await s3.down();
    const jobId = await deploy(ts, ids, 'fw@2.0.0');
    const commanded = async () => (await Promise.all(ids.map((id) => ts.server.store.getShadow(id, '')))).some((s) => s?.state.desired?.software !== undefined);
    // the job's first step ran when it was created (a command sent then, before the fix)
    await eventually(async () => (lines.some((l) => l.includes('the artifact storage does not answer')) || (await commanded()) ? true : undefined), 10_000, 'the engine finding the storage down');
    const ready = await fetch(`${ts.httpUrl}/readyz`);
    assert.equal(ready.status, 503);
    assert.equal(((await ready.json()) as { checks: { artifacts: string } }).checks.artifacts, 'unreachable');
    // ticks go on every 250 ms and ask the storage every second: let a few of each pass
    const ticked = lines.length;
    await new Promise((r) => setTimeout(r, 2500));
    for (const id of ids) assert.equal((await ts.server.store.getShadow(id, ''))?.state.desired?.software, undefined, `${id}: no command`);
    const executions = await ts.server.store.listJobExecutions(jobId, { limit: 10 });
    assert.deepEqual(executions.items.map((e) => [e.status, e.dispatchedAt]), ids.map(() => ['QUEUED', undefined]));
    assert.equal(lines.filter((l) => l.includes('the artifact storage does not answer')).length, 1, lines.slice(ticked).join('\n'));

    await s3.up();
    for (const id of ids) await eventually(async () => (await ts.server.store.getShadow(id, ''))?.state.desired?.software, 10_000, `${id}'s command`);
    assert.equal(lines.filter((l) => l.includes('the artifact storage answers again')).length, 1, lines.join('\n'));
  });
});
