/** A ramped job held by the MQTT connection's outage keeps its ramp, as a storage hold does (the rate's clock moves on by the wait). */
import assert from 'node:assert/strict';
import { afterEach, it } from 'node:test';
import { startRolloutFixture, type RolloutFixture } from './rollout-fixture.ts';

let f: RolloutFixture;
afterEach(() => f?.close());

const sent = async (ids: string[], jobId: string) => {
  let n = 0;
  for (const id of ids) if ((await f.desired(id))?.jobId === jobId) n++;
  return n;
};

it('ten minutes of broker outage do not advance a ramp-up: after the reconnect, the first minute rate', async () => {
  let connected = true;
  f = await startRolloutFixture({ builds: ['1.0.0', '2.0.0'], mqttConnected: () => connected });
  const ids = await f.fleet('d', 40);
  connected = false;
  const jobId = (await f.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { devices: ids }, plan: { maxPerMinute: 1000, rampUp: { initialPerMinute: 2, factor: 2 } } })).job.jobId;
  await f.tick();
  assert.equal(await sent(ids, jobId), 0, 'held');
  for (let i = 0; i < 10; i++) {
    f.advance(60_000);
    await f.tick();
  }
  assert.equal(await sent(ids, jobId), 0, 'held ten minutes');
  const progress = (await f.job(jobId)).progress;
  assert.equal(progress?.heldBy, 'mqtt', 'the hold is kept with the job, with its reason');
  assert.ok(progress?.storageHeldSince !== undefined);
  connected = true;
  f.advance(1_000);
  await f.tick();
  const n = await sent(ids, jobId);
  assert.ok(n <= 4, `sent ${n} of 40 at once after the reconnect: the ramp (2 a minute, doubling) went on during the outage`);
  assert.equal((await f.job(jobId)).progress?.storageHeldSince, undefined, 'the hold is over');
});
