/**
 * AWS `stepTimeoutInMinutes` sent by a device about an attempt that timed out while its
 * command could not be taken back for now (the replica answered 429), its retry queued and
 * owing that retract (src/jobs/pending-retract.ts): the step timer is the device's attempt's,
 * not the retry's, which keeps its due time until the command is taken back. Real parts (the
 * jobs door on the rollout fixture's SQLite store, replica, tracker and engine) with a fake
 * clock; the replica is kept busy by another device's update whose answers the broker
 * connection has not taken yet (the fixture's bus, held).
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { AwsThings } from '../../src/aws/aws-things.ts';
import { AwsJobsDoor } from '../../src/aws/jobs-door.ts';
import { RETRACT_RETRY_MS } from '../../src/jobs/pending-retract.ts';
import { silentLogger } from '../../src/util/logger.ts';
import { startRolloutFixture, type RolloutFixture } from '../jobs/rollout-fixture.ts';

describe('stepTimeoutInMinutes on an attempt that timed out, its retry queued owing the retract', () => {
  let f: RolloutFixture;
  let door: AwsJobsDoor;
  const answers: { topic: string; body: any }[] = [];
  beforeEach(async () => {
    f = await startRolloutFixture({ builds: ['1.0.0', '2.0.0'], maxPending: 1 });
    door = new AwsJobsDoor({
      store: f.store,
      replica: f.replica,
      tracker: f.tracker,
      events: f.events,
      things: new AwsThings(),
      publish: async (topic, payload) => void answers.push({ topic, body: JSON.parse(payload) }),
      logger: silentLogger,
      now: () => f.clock.now,
    });
    await door.start();
  });
  afterEach(async () => {
    await door.stop();
    await f.close();
  });

  /** Sends a Jobs request as device `d` and resolves with the door's answer. */
  const request = async (d: string, rest: string, body: object) => {
    const topic = `$aws/things/${d}/jobs/${rest}`;
    await door.handle({ topic, payload: Buffer.from(JSON.stringify(body)), sender: { kind: 'device', id: d } });
    const answer = answers.filter((a) => a.topic.startsWith(`${topic}/`)).at(-1);
    assert.ok(answer, `no answer to ${topic}`);
    return answer;
  };

  it('leaves the retry due: the command is taken back at a later tick, and the retry gets no step deadline of the attempt before', async () => {
    const [d, busy] = await f.fleet('t', 2);
    const jobId = (await f.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { devices: [d!] }, timeouts: { inProgressSeconds: 600 }, retries: { limit: 1 } })).job.jobId;
    assert.equal((await f.desired(d!))?.jobId, jobId, 'the first attempt was sent');
    await f.rollouts.jobs.pause(jobId);
    // the device is offline past its timeout, while the replica's only place is taken: the retract is refused with 429
    const release = f.occupyReplica(busy!);
    f.advance(601_000);
    await f.tick();
    const queued = await f.execution(jobId, d!);
    assert.deepEqual([queued.status, queued.attempt, queued.details.retractPending], ['QUEUED', 2, jobId], 'the retry is queued, owing the retract');
    assert.equal(typeof queued.dueAt, 'number', 'and due, to try the retract again');
    assert.equal((await f.desired(d!))?.jobId, jobId, 'the device is still asked for the timed-out attempt');
    await release();

    // the device comes back before that next try and starts what it is asked for, with a step timer of 1 minute
    const started = await request(d!, 'start-next', { stepTimeoutInMinutes: 1 });
    assert.match(started.topic, /\/accepted$/, JSON.stringify(started.body));
    assert.deepEqual([started.body.execution?.jobId, started.body.execution?.executionNumber], [jobId, 1], 'the device got the attempt that timed out');
    const after = await f.execution(jobId, d!);
    assert.deepEqual([after.status, after.attempt, after.details.retractPending, after.dueAt], ['QUEUED', 2, jobId, queued.dueAt], "the retry keeps its mark and its due time: the device's timer is not the retry's");
    assert.equal(after.details.stepDeadlineAt, undefined, 'no step deadline set on the retry');

    f.advance(RETRACT_RETRY_MS);
    await f.tick();
    const asked = await f.desired(d!);
    assert.deepEqual([asked?.jobId, asked?.version], [`${jobId}.cancel`, '1.0.0'], 'the device is told to stay on 1.0.0 while the job is paused');

    // the retry, sent once the job resumes and started without a step timer of its own, has only the job's timeout
    await f.rollouts.jobs.resume(jobId);
    await f.tick();
    assert.equal((await f.desired(d!))?.jobId, `${jobId}.2`, 'the retry goes out under its own id');
    const retry = await request(d!, 'start-next', {});
    assert.equal(retry.body.execution?.executionNumber, 2, JSON.stringify(retry.body));
    const running = await f.execution(jobId, d!);
    assert.equal(running.status, 'IN_PROGRESS');
    assert.equal(running.dueAt, running.dispatchedAt! + 600_000, 'due at the in-progress timeout of the retry, not at the step deadline the device set for the attempt before');
  });
});
