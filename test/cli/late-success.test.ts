/**
 * What `job show` and `device show` add to an execution whose device finished the job after
 * it timed out or was canceled (execution-tracker.ts, lateSuccess).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { lateNote } from '../../src/cli/api-commands.ts';
import type { ExecutionRecord } from '../../src/store/state-store.ts';

const execution = (details: ExecutionRecord['details']): ExecutionRecord =>
  ({ jobId: 'j1', deviceId: 'd1', status: 'TIMED_OUT', details, queuedAt: 0, updatedAt: 0, version: 3 }) as ExecutionRecord;

describe('the CLI: a late success', () => {
  it('names the version the device runs and when it said so', () => {
    const at = Date.UTC(2026, 11, 4, 12, 0, 0);
    assert.equal(lateNote(execution({ error: 'in-progress timeout', lateSuccess: { version: '2.0.0', at } })), 'then reported SUCCESS at 2026-12-04T12:00:00.000Z: runs 2.0.0');
  });

  it('adds nothing to an execution without one', () => {
    assert.equal(lateNote(execution({ error: 'in-progress timeout' })), undefined);
  });
});
