/**
 * A continuous job's later devices all join its last wave, where no canary or threshold
 * applies: its abort rules are all that stops it. Its dry run warns when it has none. Real
 * parts (SQLite store, replica, tracker, engine) with a fake clock; the CLI's rendering of it.
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { describePreview } from '../../src/cli/rollout-commands.ts';
import { startRolloutFixture, type RolloutFixture } from './rollout-fixture.ts';

describe('the dry run of a continuous job', () => {
  let f: RolloutFixture;
  beforeEach(async () => {
    f = await startRolloutFixture();
    await f.addArtifact('2.0.0');
    await f.fleet('c', 2, '1.0.0', { tags: ['grp'] });
  });
  afterEach(() => f.close());

  const preview = (body: Record<string, unknown>) => f.rollouts.jobs.preview({ artifact: 'fw@2.0.0', targets: { query: 'tags = grp' }, ...body });
  const WARNING = /^a continuous job has no abort rule: the devices that match after its creation join its last wave, where no canary or success threshold applies, so nothing would stop it if they fail \(add one, e\.g\. --abort FAILED:10:20, with --rollback to set failed devices back\)$/;

  it('warns when it has no abort rule, in the answer and in the CLI', async () => {
    const p = await preview({ type: 'continuous' });
    assert.equal(p.warnings?.length, 1);
    assert.match(p.warnings![0]!, WARNING);
    assert.match(describePreview(p, f.clock.now), /\n {2}warning: a continuous job has no abort rule: /);
  });

  it('says nothing of it with an abort rule, nor for a snapshot job', async () => {
    assert.equal((await preview({ type: 'continuous', abort: { rules: [{ type: 'FAILED', thresholdPercent: 10, minFinished: 20 }] } })).warnings, undefined);
    assert.equal((await preview({})).warnings, undefined);
  });
});
