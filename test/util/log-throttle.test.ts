/** ThrottledLog: a failure repeated per request while a dependency is down is one line per interval. */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { ThrottledLog } from '../../src/util/log-throttle.ts';
import { createLogger } from '../../src/util/logger.ts';
import { eventually } from '../helpers/cli.ts';

it('writes the first line at once, counts those of the interval, and says how many were left out in the next', () => {
  const lines: string[] = [];
  let now = 0;
  const log = new ThrottledLog(createLogger({ level: 'info', write: (l) => lines.push(l.replace(/^\S+ /, '')) }), 30_000, () => now);
  log.warn('requests failed', { deviceId: 'd-1' });
  for (let i = 2; i <= 179; i++) {
    now += 100;
    log.warn('requests failed', { deviceId: `d-${i}` });
  }
  assert.deepEqual(lines, ['WARN  requests failed deviceId=d-1'], 'one line for 179 failures within 30 s');
  now = 30_000;
  log.warn('requests failed', { deviceId: 'd-180' });
  assert.deepEqual(lines.slice(1), ['WARN  requests failed deviceId=d-180 suppressed=178']);
  now = 90_000;
  log.warn('requests failed', { deviceId: 'd-181' });
  assert.deepEqual(lines.slice(2), ['WARN  requests failed deviceId=d-181'], 'nothing left out since');
});

/** A ThrottledLog on an injected clock, and the lines it writes (without their timestamp). */
function throttled(intervalMs = 30_000) {
  const lines: string[] = [];
  const clock = { now: 0 };
  const log = new ThrottledLog(createLogger({ level: 'info', write: (l) => lines.push(l.replace(/^\S+ /, '')) }), intervalMs, () => clock.now);
  return { lines, clock, log };
}

it('says how many were left out of a single burst once the interval has passed, with no later failure', () => {
  const { lines, clock, log } = throttled();
  // a bucket gone for 5 s cuts 200 downloads, then is back: nothing fails after
  for (let i = 1; i <= 200; i++) {
    clock.now = i * 25;
    log.warn('download cut', { device: `d-${i}` });
  }
  assert.deepEqual(lines, ['WARN  download cut device=d-1']);
  clock.now = 20_000;
  log.flush();
  assert.equal(lines.length, 1, 'not before the interval has passed since the line written');
  clock.now = 30_025;
  log.flush();
  assert.deepEqual(lines.slice(1), ['WARN  download cut suppressed=199']);
  log.flush();
  assert.equal(lines.length, 2, 'said once');
  // the count's line is the interval's line: a failure soon after it is left out and counted in turn
  clock.now = 35_000;
  log.warn('download cut', { device: 'd-201' });
  assert.equal(lines.length, 2);
  clock.now = 70_000;
  log.warn('download cut', { device: 'd-202' });
  assert.deepEqual(lines.slice(2), ['WARN  download cut device=d-202 suppressed=1'], 'not counted twice');
  log.close();
  assert.equal(lines.length, 3, 'nothing left out: nothing to say at close');
});

it('writes the count from its own timer', async () => {
  const { lines, clock, log } = throttled(50);
  log.warn('requests failed', { op: 'update' });
  clock.now = 10;
  log.warn('requests failed', { op: 'update' });
  clock.now = 50; // the interval has passed by the injected clock; the timer (40 ms) writes the count
  await eventually(async () => (lines.length === 2 ? true : undefined), 10_000, 'the count written');
  assert.deepEqual(lines, ['WARN  requests failed op=update', 'WARN  requests failed suppressed=1']);
  log.close();
});

it('writes the count at close, whatever the interval', () => {
  const { lines, clock, log } = throttled();
  log.warn('requests failed', { op: 'get' });
  clock.now = 1_000;
  log.warn('requests failed', { op: 'get' });
  log.warn('requests failed', { op: 'get' });
  log.close();
  assert.deepEqual(lines, ['WARN  requests failed op=get', 'WARN  requests failed suppressed=2']);
});

it('repeats the fields it is told to carry from the last line left out in the count line (who was refused last)', () => {
  const lines: string[] = [];
  const clock = { now: 0 };
  const log = new ThrottledLog(createLogger({ level: 'info', write: (l) => lines.push(l.replace(/^\S+ /, '')) }), 10_000, () => clock.now, ['lastFrom']);
  for (let i = 1; i <= 3; i++) {
    clock.now = i;
    log.warn('refused', { lastFrom: `10.0.0.${i}`, other: i });
  }
  clock.now = 10_001;
  log.flush();
  assert.deepEqual(lines, ['WARN  refused lastFrom=10.0.0.1 other=1', 'WARN  refused lastFrom=10.0.0.3 suppressed=2']);
  clock.now = 20_002;
  log.warn('refused', { lastFrom: '10.0.0.4' });
  clock.now = 20_003;
  log.warn('refused', {});
  log.close();
  assert.deepEqual(lines.slice(2), ['WARN  refused lastFrom=10.0.0.4', 'WARN  refused suppressed=1'], 'nothing carried over from an earlier count');
});

it('writes ERROR lines the same way, and their count at ERROR too (a build whose bytes are missing)', () => {
  const { lines, clock, log } = throttled();
  log.error('bytes missing', { artifact: 'fw@2.0.0' });
  clock.now = 1_000;
  log.error('bytes missing', { artifact: 'fw@2.0.0' });
  clock.now = 30_000;
  log.flush();
  assert.deepEqual(lines, ['ERROR bytes missing artifact=fw@2.0.0', 'ERROR bytes missing suppressed=1']);
});
