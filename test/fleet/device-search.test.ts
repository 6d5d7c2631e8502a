/**
 * The device search's states (dashboard Devices page, `GET /api/v1/fleet/search?state=`), on
 * real rollout parts: what "updating" and "failed" mean once a job has sent its commands and
 * the devices answered.
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { searchDevices, type DeviceState } from '../../src/fleet/device-search.ts';
import { startRolloutFixture, type RolloutFixture } from '../jobs/rollout-fixture.ts';

describe('device search by state', () => {
  let f: RolloutFixture;
  beforeEach(async () => {
    f = await startRolloutFixture({ builds: ['1.0.0', '2.0.0'] });
  });
  afterEach(() => f.close());

  const search = async (state: DeviceState) =>
    (await searchDevices({ store: f.store, groups: f.rollouts.groups, isOnline: () => true }, { state, limit: 50 })).items.map((d) => d.deviceId);

  it('"updating" is a command not answered yet or an update under way; a failed update is "failed", not "updating"', async () => {
    const [done, failed, downloading, silent] = await f.fleet('d', 5);
    const { jobId } = (await f.rollouts.jobs.create({ artifact: 'fw@2.0.0', targets: { devices: [done, failed, downloading, silent] } })).job;
    await f.tick();
    await f.complete(done!);
    await f.complete(failed!, 'FAILURE');
    await f.report(downloading!, { name: 'fw', version: '1.0.0', jobId, status: 'DOWNLOADING', progress: 0.3 });
    assert.deepEqual(await search('updating'), [downloading, silent]);
    assert.deepEqual(await search('failed'), [failed]);
    // the job ends (canceled): the failed device's desired software still names the build it did not take
    await f.rollouts.jobs.cancel(jobId);
    assert.equal((await f.desired(failed!))?.version, '2.0.0');
    assert.ok(!(await search('updating')).includes(failed!), 'a device whose update failed is not under way');
  });
});
