/** AWS Jobs `stepTimeoutInMinutes` as an execution deadline (src/jobs/deadlines.ts, details.stepDeadlineAt). */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { deadlineOf, timeoutReason } from '../../src/jobs/deadlines.ts';

describe('stepTimeoutInMinutes', () => {
  const at = 1_000_000;
  it('is the deadline of an execution under way, alone or as the earliest of several', () => {
    assert.equal(deadlineOf(undefined, { status: 'IN_PROGRESS', dispatchedAt: 0, details: { stepDeadlineAt: at } }), at);
    assert.equal(deadlineOf({ timeouts: { inProgressSeconds: 10 } } as never, { status: 'IN_PROGRESS', dispatchedAt: 0, details: { stepDeadlineAt: at } }), 10_000);
    assert.equal(deadlineOf(undefined, { status: 'QUEUED', dispatchedAt: 0, details: { stepDeadlineAt: at } }), undefined, 'not before the device started');
  });

  it('names itself as the reason once it passed', () => {
    assert.match(timeoutReason(undefined, { status: 'IN_PROGRESS', dispatchedAt: 0, details: { stepDeadlineAt: at } }, at + 1), /stepTimeoutInMinutes/);
  });
});
