/** ThrottledLog: a failure repeated per request while a dependency is down is one line per interval. */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { ThrottledLog } from '../../src/util/log-throttle.ts';
import { createLogger } from '../../src/util/logger.ts';

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
