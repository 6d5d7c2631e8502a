/** The note `updraft job watch` and `job show` append to a job's line: why it is where it is. */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { jobNote } from '../../src/cli/job-watch.ts';

it('names a storage outage holding a job back, with when it began; nothing once it is over', () => {
  const since = Date.UTC(2026, 11, 5, 8, 0, 0);
  assert.equal(
    jobNote({ status: 'IN_PROGRESS', progress: { wave: 0, storageHeldSince: since } }),
    '  (held: the artifact storage has not answered since 2026-12-05T08:00:00.000Z; nothing new is sent until it does, devices already updating go on)',
  );
  assert.equal(
    jobNote({ status: 'IN_PROGRESS', progress: { wave: 0, storageHeldSince: since, heldBy: 'mqtt' } }),
    '  (held: the MQTT broker has not been reachable since 2026-12-05T08:00:00.000Z; nothing new is sent until it is, devices already updating go on)',
    'the same hold, for the MQTT broker',
  );
  assert.equal(jobNote({ status: 'IN_PROGRESS', progress: { wave: 0 } }), '');
  assert.equal(jobNote({ status: 'PAUSED', progress: { wave: 0, storageHeldSince: since, pause: { message: 'paused by an operator' } } }), '  (paused by an operator)', 'a pause says more');
});
