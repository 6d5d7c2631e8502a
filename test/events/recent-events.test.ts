/**
 * The recent-events feed (GET /api/v1/events/recent, the dashboard's overview) lists a job's
 * changes of state, not its progress. It judged that by its memory of each job's last status,
 * which a restart empties: a running job's next wave, the first write seen after a restart,
 * was listed as a change to IN_PROGRESS; and a record relayed late from another instance could
 * list a status going back. The feed and the bus are the real ones, fed as RolloutEngine's
 * writes and the event relay feed them.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { EventBus } from '../../src/events/event-bus.ts';
import { RecentEvents } from '../../src/events/recent-events.ts';
import type { JobRecord } from '../../src/store/state-store.ts';

function job(version: number, status: string, wave: number): JobRecord {
  return { jobId: 'j-1', status, version, createdAt: 0, updatedAt: version, progress: { wave } } as unknown as JobRecord;
}

async function feed(): Promise<{ bus: EventBus; listed: () => string[] }> {
  const bus = new EventBus();
  const recent = new RecentEvents({ events: bus });
  await recent.start();
  return { bus, listed: () => recent.list({ jobId: 'j-1', limit: 100 }).reverse().map((e) => e.status) };
}

describe('the recent-events feed', () => {
  it('after a restart, lists a running job moving to its next wave as nothing, and its pause as a change', async () => {
    const { bus, listed } = await feed();
    // the first write seen (memory empty): wave 1 -> 2, IN_PROGRESS both
    bus.emit('job.changed', { job: job(7, 'IN_PROGRESS', 2), previous: job(6, 'IN_PROGRESS', 1) });
    assert.deepEqual(listed(), []);
    bus.emit('job.changed', { job: job(8, 'PAUSED', 2), previous: job(7, 'IN_PROGRESS', 2) });
    assert.deepEqual(listed(), ['PAUSED']);
  });

  it('does not go back on an older record seen after a newer one, nor list one record twice', async () => {
    const { bus, listed } = await feed();
    bus.emit('job.changed', { job: job(2, 'PAUSED', 1), previous: job(1, 'IN_PROGRESS', 1) });
    bus.emit('job.changed', { job: job(3, 'IN_PROGRESS', 1), previous: job(2, 'PAUSED', 1) });
    // version 2 again, relayed late by another instance
    bus.emit('job.changed', { job: job(2, 'PAUSED', 1), previous: job(1, 'IN_PROGRESS', 1) });
    // version 3 again without the record it replaced (a notice that wrote nothing)
    bus.emit('job.changed', { job: job(3, 'IN_PROGRESS', 1) });
    assert.deepEqual(listed(), ['PAUSED', 'IN_PROGRESS']);
    // without previous, memory decides as before: a change of state is listed, progress is not
    bus.emit('job.changed', { job: job(4, 'IN_PROGRESS', 2) });
    bus.emit('job.changed', { job: job(5, 'COMPLETED', 2) });
    assert.deepEqual(listed(), ['PAUSED', 'IN_PROGRESS', 'COMPLETED']);
  });
});
