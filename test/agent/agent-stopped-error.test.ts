/** The error everything still waiting gets when an agent stops: an expected end, cheap to make. */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { UpdraftError } from '../../src/errors.ts';
import { AgentStoppedError, isRetryable } from '../../src/agent/shadow-requester.ts';

it('AgentStoppedError carries no stack frames, leaves stack traces on for everything else, and is final', () => {
  const before = Error.stackTraceLimit;
  const err = new AgentStoppedError();
  assert.ok(err instanceof UpdraftError);
  assert.equal(err.name, 'AgentStoppedError');
  assert.equal(err.message, 'the agent is stopping');
  assert.doesNotMatch(String(err.stack), /\n\s+at /, 'no frames captured');
  assert.equal(Error.stackTraceLimit, before, 'the limit is restored');
  assert.match(String(new Error('other').stack), /\n\s+at /, 'other errors still have their stack');
  assert.equal(isRetryable(err), false);
});
