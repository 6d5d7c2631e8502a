/**
 * The retention sweeps' timer (src/util/periodic-pass.ts): passes one after another, never
 * two at once, a failed one reported and the next one run, stop() waiting for the pass under
 * way and `stopping` telling it to end. Real timers, a few milliseconds apart; nothing here
 * depends on how fast they fire, only on their order.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { PeriodicPass } from '../../src/util/periodic-pass.ts';
import { eventually } from '../helpers/cli.ts';

it('runs passes one after the other, reports a failed one and goes on, and stop() waits for the pass under way', async () => {
  const events: string[] = [];
  let running = 0;
  let n = 0;
  let release: (() => void) | undefined;
  const failures: string[] = [];
  const timer: PeriodicPass = new PeriodicPass(
    async () => {
      const mine = ++n;
      running++;
      assert.equal(running, 1, 'never two passes at once');
      events.push(`start ${mine}`);
      try {
        if (mine === 2) throw new Error('pass 2 failed');
        // the fourth pass is held until the test lets it go, after stop() was asked
        if (mine === 4) await new Promise<void>((resolve) => (release = resolve));
        events.push(`end ${mine}${timer.stopping ? ' (stopping)' : ''}`);
      } finally {
        running--;
      }
    },
    5,
    (err) => failures.push((err as Error).message),
  );
  assert.equal(timer.stopping, false);
  timer.start();
  await eventually(async () => (release ? true : undefined), 30_000, 'the fourth pass');
  let stopped = false;
  const stop = timer.stop().then(() => (stopped = true));
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(stopped, false, 'stop() waits for the pass under way');
  release!();
  await stop;
  await new Promise((resolve) => setTimeout(resolve, 30));
  assert.deepEqual(events, ['start 1', 'end 1', 'start 2', 'start 3', 'end 3', 'start 4', 'end 4 (stopping)'], 'no pass after stop()');
  assert.deepEqual(failures, ['pass 2 failed']);
});
