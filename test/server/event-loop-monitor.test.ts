/**
 * The event-loop figures of GET /api/v1/metrics: since start, and over the last complete
 * window, so a stall shows in the window it happened in and leaves the next one.
 */
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { EventLoopMonitor } from '../../src/server/event-loop-monitor.ts';

/** Holds this thread, as a long synchronous job in the server would. */
function block(ms: number): void {
  const start = performance.now();
  while (performance.now() - start < ms);
}

describe('event loop monitor', () => {
  it('reports a stall in the window it happened in, and since start; the next window starts afresh', async () => {
    const monitor = new EventLoopMonitor();
    await monitor.start();
    try {
      await sleep(30);
      const fresh = monitor.figures();
      assert.ok(fresh.lastMinute.seconds < 60, 'before a window ends, lastMinute is the time since start');
      block(300);
      await sleep(30); // the delay timer fires, late
      monitor.endWindow();
      const stalled = monitor.figures();
      // lower bounds only: a slower machine makes them larger, never smaller
      assert.ok(stalled.lastMinute.delayMs.max >= 250, `the stall is in its window: ${JSON.stringify(stalled)}`);
      assert.ok(stalled.lastMinute.utilization >= 0.5, `the window was mostly busy: ${JSON.stringify(stalled.lastMinute)}`);
      assert.ok(stalled.delayMs.max >= 250, `and since start: ${JSON.stringify(stalled.delayMs)}`);
      await sleep(100);
      monitor.endWindow();
      const after = monitor.figures();
      assert.ok(after.lastMinute.delayMs.max < stalled.lastMinute.delayMs.max, `the next window does not carry the stall: ${JSON.stringify([stalled.lastMinute, after.lastMinute])}`);
      assert.ok(after.delayMs.max >= stalled.delayMs.max, 'the figures since start keep it');
      assert.ok(after.activeMs >= stalled.activeMs && after.idleMs > stalled.idleMs, 'the cumulative times only grow');
    } finally {
      await monitor.stop();
    }
  });
});
