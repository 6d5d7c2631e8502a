/**
 * Execution deadlines (src/jobs/deadlines.ts): AWS Jobs `stepTimeoutInMinutes`
 * (details.stepDeadlineAt), and the step timeout of a device waiting for its install gate.
 */
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

describe('a device waiting for its install gate', () => {
  const spec = { timeouts: { stepSeconds: 60 } } as never;
  const waiting = { reason: 'vehicle moving', count: 2, nextCheckInSeconds: 300 };
  it('has the time until it asks its gate again on top of the step timeout, from its last report', () => {
    assert.equal(deadlineOf(spec, { status: 'IN_PROGRESS', dispatchedAt: 0, details: { agentStatus: 'VERIFYING', phaseStartedAt: 1000 } }), 61_000);
    assert.equal(deadlineOf(spec, { status: 'IN_PROGRESS', dispatchedAt: 0, details: { agentStatus: 'VERIFYING', phaseStartedAt: 1000, waiting } }), 361_000);
    assert.equal(deadlineOf({ timeouts: { stepSeconds: 60, inProgressSeconds: 120 } } as never, { status: 'IN_PROGRESS', dispatchedAt: 0, details: { phaseStartedAt: 1000, waiting } }), 120_000, 'the in-progress timeout still bounds the whole wait');
    assert.equal(deadlineOf(spec, { status: 'IN_PROGRESS', dispatchedAt: 0, details: { phaseStartedAt: 1000, waiting: { reason: 'x', count: 0, nextCheckInSeconds: 1e9 } } }), 61_000, 'a malformed wait gives nothing more');
  });

  it('names the gate and its reason when the device went silent while waiting', () => {
    const e = { status: 'IN_PROGRESS' as const, dispatchedAt: 0, details: { agentStatus: 'VERIFYING', phaseStartedAt: 1000, waiting } };
    assert.equal(timeoutReason(spec, e, 361_000), "step timeout: the device's install gate put the install off (vehicle moving; 2 times), and it did not report within 360 s of that");
    assert.match(timeoutReason(spec, { ...e, details: { agentStatus: 'VERIFYING', phaseStartedAt: 1000 } }, 61_000), /^step timeout: no progress past VERIFYING within 60 s$/);
  });
});
