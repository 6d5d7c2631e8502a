/** Validation of AWS Jobs request bodies (src/protocol/aws-jobs-messages.ts) against AWS's documented limits. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AwsJobsError, parseAwsJobsBody, salvageJobsClientToken } from '../../src/protocol/aws-jobs-messages.ts';

const body = (statusDetails: unknown) => Buffer.from(JSON.stringify({ status: 'IN_PROGRESS', statusDetails }));
const refusal = (statusDetails: unknown) => {
  try {
    parseAwsJobsBody(body(statusDetails));
  } catch (err) {
    assert.ok(err instanceof AwsJobsError);
    return `${err.code}: ${err.message}`;
  }
  return undefined;
};

describe('statusDetails (UpdateJobExecution, StartNextPendingJobExecution)', () => {
  it('takes what AWS takes: any number of entries, keys of 1 to 128 of [a-zA-Z0-9:_-], values of 1 to 1,024 characters (code points)', () => {
    const edge = { [`k${'x'.repeat(127)}`]: 'v'.repeat(1024), 'a:b_c-D9': 'é 😀 \u00a0 any text' };
    assert.deepEqual(parseAwsJobsBody(body(edge)).statusDetails, edge);
    // AWS's DetailsMap bounds the number of entries nowhere (the payload's size does)
    const many = Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`k${i}`, 'v']));
    assert.deepEqual(parseAwsJobsBody(body(many)).statusDetails, many);
    const emoji = { reason: '😀'.repeat(1024) };
    assert.deepEqual(parseAwsJobsBody(body(emoji)).statusDetails, emoji);
    assert.deepEqual(parseAwsJobsBody(body({})).statusDetails, {});
  });

  it('refuses anything else with InvalidRequest naming the entry', () => {
    assert.equal(refusal({ '': '' }), `InvalidRequest: statusDetails key "" must be 1 to 128 characters of a-z, A-Z, 0-9, ':', '_' and '-'`);
    assert.match(refusal({ 'a b/c': 'x' })!, /^InvalidRequest: statusDetails key "a b\/c" must be/);
    assert.match(refusal({ ['k'.repeat(129)]: 'x' })!, /^InvalidRequest: statusDetails key "k{64}\.\.\." must be/);
    assert.equal(refusal({ reason: '' }), 'InvalidRequest: statusDetails.reason must be 1 to 1024 characters, not 0');
    assert.equal(refusal({ reason: 'v'.repeat(1025) }), 'InvalidRequest: statusDetails.reason must be 1 to 1024 characters, not 1025');
    for (const v of ['line 1\nline 2', 'tab\t', 'zero\u200dwidth', '\u0000']) assert.match(refusal({ reason: v })!, /^InvalidRequest: statusDetails\.reason must not hold control/, JSON.stringify(v));
    assert.equal(refusal({ reason: 42 }), 'InvalidRequest: statusDetails.reason must be a string');
    assert.equal(refusal(['x']), 'InvalidRequest: statusDetails must be a map of strings to strings');
    assert.equal(refusal({ reason: '😀'.repeat(1025) }), 'InvalidRequest: statusDetails.reason must be 1 to 1024 characters, not 1025');
  });
});

describe('stepTimeoutInMinutes', () => {
  it('takes -1 on an update only (it cancels the step timer), and says so when refusing', () => {
    const update = { thing: 't', op: 'update', jobId: 'j' } as const;
    const payload = (n: unknown) => Buffer.from(JSON.stringify({ status: 'IN_PROGRESS', stepTimeoutInMinutes: n }));
    assert.deepEqual(parseAwsJobsBody(payload(-1), update), { status: 'IN_PROGRESS', cancelStepTimer: true });
    assert.deepEqual(parseAwsJobsBody(payload(30), update), { status: 'IN_PROGRESS', stepTimeoutInMinutes: 30 });
    assert.throws(() => parseAwsJobsBody(payload(0), update), (err: unknown) => err instanceof AwsJobsError && err.message === 'stepTimeoutInMinutes must be an integer from 1 to 10080, or -1 to cancel the step timer an earlier update set');
    assert.throws(() => parseAwsJobsBody(Buffer.from('{"stepTimeoutInMinutes":-1}'), { thing: 't', op: 'start-next' }), (err: unknown) => err instanceof AwsJobsError && err.message === 'stepTimeoutInMinutes must be an integer from 1 to 10080');
  });
});

describe('the payload bytes', () => {
  it('refuses bytes that are not UTF-8 as InvalidJson, instead of storing U+FFFD in their place, and echoes no token from them', () => {
    const bad = Buffer.concat([Buffer.from('{"status":"IN_PROGRESS","statusDetails":{"reason":"'), Buffer.from([0xff, 0xfe, 0xc3]), Buffer.from('"},"clientToken":"t1"}')]);
    assert.throws(() => parseAwsJobsBody(bad), (err: unknown) => err instanceof AwsJobsError && err.code === 'InvalidJson' && /not UTF-8/.test(err.message));
    assert.equal(salvageJobsClientToken(bad), undefined);
    assert.equal(salvageJobsClientToken(Buffer.from('{"clientToken":"t2","status":5}')), 't2', 'a well-formed payload still has its token echoed');
  });

  it('counts a clientToken in characters (code points), as its message says: 64 emoji are taken, 65 are not', () => {
    const payload = (token: string) => Buffer.from(JSON.stringify({ clientToken: token, status: 'IN_PROGRESS' }));
    for (const token of ['😀'.repeat(33), '😀'.repeat(64), 'x'.repeat(64)]) {
      assert.equal(parseAwsJobsBody(payload(token)).clientToken, token);
      assert.equal(salvageJobsClientToken(payload(token)), token);
    }
    // an empty token is refused as well, and not echoed either (until 2026-12-06 its rejection carried clientToken "")
    for (const token of ['😀'.repeat(65), 'x'.repeat(65), '']) {
      assert.throws(() => parseAwsJobsBody(payload(token)), (err: unknown) => err instanceof AwsJobsError && err.message === 'clientToken must be a string of 1 to 64 characters');
      assert.equal(salvageJobsClientToken(payload(token)), undefined);
    }
  });
});

describe('the fields of a request', () => {
  const parse = (req: Parameters<typeof parseAwsJobsBody>[1], body: object) => {
    try {
      return parseAwsJobsBody(Buffer.from(JSON.stringify(body)), req);
    } catch (err) {
      assert.ok(err instanceof AwsJobsError);
      return `${err.code}: ${err.message}`;
    }
  };
  const thing = 'thing-1';

  it("takes every field AWS documents for each operation, and the topic's own thingName and jobId", () => {
    assert.deepEqual(parse({ thing, op: 'get' }, { clientToken: 't', thingName: thing }), { clientToken: 't' });
    assert.deepEqual(parse({ thing, op: 'start-next' }, { clientToken: 't', thingName: thing, statusDetails: { a: 'b' }, stepTimeoutInMinutes: 5 }), { clientToken: 't', statusDetails: { a: 'b' }, stepTimeoutInMinutes: 5 });
    assert.deepEqual(parse({ thing, op: 'describe', jobId: '$next' }, { clientToken: 't', thingName: thing, jobId: '$next', executionNumber: 2, includeJobDocument: false }), { clientToken: 't', executionNumber: 2, includeJobDocument: false });
    const update = { clientToken: 't', status: 'IN_PROGRESS', statusDetails: {}, expectedVersion: 3, executionNumber: 1, includeJobExecutionState: true, includeJobDocument: true, stepTimeoutInMinutes: 10 };
    assert.deepEqual(parse({ thing, op: 'update', jobId: 'j1' }, { ...update, thingName: thing, jobId: 'j1' }), update);
    assert.deepEqual(parse(undefined, update), update, "without a topic: an update's fields");
  });

  it('refuses any other field by name (InvalidRequest), and a thingName or jobId that is not the topic\'s', () => {
    assert.equal(parse({ thing, op: 'update', jobId: 'j1' }, { status: 'IN_PROGRESS', expectedversion: 1 }), 'InvalidRequest: Request contains an invalid field: "expectedversion" (did you mean "expectedVersion"?); UpdateJobExecution takes clientToken, status, statusDetails, expectedVersion, executionNumber, includeJobExecutionState, includeJobDocument, stepTimeoutInMinutes');
    assert.equal(parse({ thing, op: 'describe', jobId: 'j1' }, { includeJobDocument: true, stepTimeoutInMinutes: 1, x: 1 }), 'InvalidRequest: Request contains invalid fields: "stepTimeoutInMinutes", "x"; DescribeJobExecution takes clientToken, executionNumber, includeJobDocument');
    assert.equal(parse({ thing, op: 'get' }, { jobId: 'j1' }), 'InvalidRequest: Request contains an invalid field: "jobId"; GetPendingJobExecutions takes clientToken', 'the topic names no job');
    assert.equal(parse({ thing, op: 'start-next' }, { thingName: 'other' }), `InvalidRequest: thingName "other" does not match the topic's thing 'thing-1': the topic says which thing a request is for`);
    assert.equal(parse({ thing, op: 'update', jobId: 'j1' }, { status: 'SUCCEEDED', jobId: 'j2' }), `InvalidRequest: jobId "j2" does not match the topic's job 'j1': the topic says which job a request is for`);
    assert.match(String(parse(undefined, { status: 'SUCCEEDED', thingName: thing })), /^InvalidRequest: Request contains an invalid field: "thingName"/, 'without a topic there is nothing to match');
    const many = Object.fromEntries(Array.from({ length: 7 }, (_, i) => [`f${i}`, i]));
    assert.match(String(parse({ thing, op: 'get' }, many)), /"f4", and 2 more; /);
  });
});
