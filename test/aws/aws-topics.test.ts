/** Parsing and building the AWS IoT reserved topics (src/protocol/aws-topics.ts) and the ACL over them. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { mayPublish, maySubscribe } from '../../src/broker/topic-acl.ts';
import { awsJobsAnswerTopic, awsMirrorOfAnswer, parseAwsJobsRequest, parseAwsShadowRequest } from '../../src/protocol/aws-topics.ts';

describe('AWS topics', () => {
  it('parses shadow requests, classic and named, and nothing else', () => {
    assert.deepEqual(parseAwsShadowRequest('$aws/things/t-1/shadow/update'), { deviceId: 't-1', name: '', op: 'update' });
    assert.deepEqual(parseAwsShadowRequest('$aws/things/t-1/shadow/name/cfg/delete'), { deviceId: 't-1', name: 'cfg', op: 'delete' });
    for (const t of ['$aws/things/t-1/shadow/update/accepted', '$aws/things/t-1/shadow/name/cfg', '$aws/things/+/shadow/get', 'state/t-1/get', '$aws/things/t-1/jobs/get']) {
      assert.equal(parseAwsShadowRequest(t), undefined, t);
    }
    // a name breaking the rule: a request refused with 400, mirrored onto its own AWS topic
    assert.match(parseAwsShadowRequest('$aws/things/t-1/shadow/name/bad name/get')?.nameProblem ?? '', /^Invalid shadow name: it holds " "/);
    assert.equal(awsMirrorOfAnswer('state/t-1/shadow//get/rejected'), '$aws/things/t-1/shadow/name//get/rejected');
  });

  it('mirrors replica answers onto the AWS family', () => {
    assert.equal(awsMirrorOfAnswer('state/t-1/update/delta'), '$aws/things/t-1/shadow/update/delta');
    assert.equal(awsMirrorOfAnswer('state/t-1/shadow/cfg/get/rejected'), '$aws/things/t-1/shadow/name/cfg/get/rejected');
    assert.equal(awsMirrorOfAnswer('state/t-1/credentials/request/accepted'), undefined);
    assert.equal(awsMirrorOfAnswer('state/t-1/update'), undefined);
  });

  it('parses jobs requests; request-shaped topics with no valid operation are InvalidTopic', () => {
    assert.deepEqual(parseAwsJobsRequest('$aws/things/t-1/jobs/start-next'), { thing: 't-1', op: 'start-next' });
    assert.deepEqual(parseAwsJobsRequest('$aws/things/t-1/jobs/$next/get'), { thing: 't-1', op: 'describe', jobId: '$next' });
    assert.deepEqual(parseAwsJobsRequest('$aws/things/t-1/jobs/j-1/update'), { thing: 't-1', op: 'update', jobId: 'j-1' });
    assert.equal(parseAwsJobsRequest('$aws/things/t-1/jobs/j-1/update/accepted'), undefined);
    assert.equal(parseAwsJobsRequest('$aws/things/t-1/jobs/notify-next'), undefined);
    assert.deepEqual(parseAwsJobsRequest('$aws/things/t-1/jobs/$next/update'), { invalid: true, thing: 't-1', rejectTopic: '$aws/things/t-1/jobs/$next/update/rejected' });
    // job ids: AWS's ([a-zA-Z0-9_-]{1,64}) and Updraft's rollbacks of them; nothing else
    assert.deepEqual(parseAwsJobsRequest('$aws/things/t-1/jobs/j-1.rollback/get'), { thing: 't-1', op: 'describe', jobId: 'j-1.rollback' });
    assert.deepEqual(parseAwsJobsRequest('$aws/things/t-1/jobs/../get'), { invalid: true, thing: 't-1', rejectTopic: '$aws/things/t-1/jobs/../get/rejected' });
    assert.equal('invalid' in parseAwsJobsRequest(`$aws/things/t-1/jobs/${'x'.repeat(65)}/update`)!, true);
    assert.equal(awsJobsAnswerTopic({ thing: 't-1', op: 'describe', jobId: 'j' }, 'accepted'), '$aws/things/t-1/jobs/j/get/accepted');
  });

  it('ACL: a device publishes its own AWS requests and subscribes to its own AWS answers only', () => {
    const dev = { kind: 'device' as const, id: 't-1' };
    assert.equal(mayPublish(dev, '$aws/things/t-1/shadow/update'), true);
    assert.equal(mayPublish(dev, '$aws/things/t-1/jobs/j/update'), true);
    assert.equal(mayPublish(dev, '$aws/things/t-1/shadow/update/accepted'), false);
    assert.equal(mayPublish(dev, '$aws/things/t-2/shadow/update'), false);
    assert.equal(mayPublish(dev, '$aws/things/t-1/jobs/notify-next'), false);
    assert.equal(maySubscribe(dev, '$aws/things/t-1/shadow/get/+'), true);
    assert.equal(maySubscribe(dev, '$aws/things/t-1/jobs/#'), true);
    assert.equal(maySubscribe(dev, '$aws/things/+/jobs/#'), false);
    assert.equal(maySubscribe(dev, '$aws/things/t-1/#'), false);
    assert.equal(maySubscribe(dev, '$aws/things/t-2/shadow/#'), false);
    assert.equal(maySubscribe({ ...dev, things: ['t-2'] }, '$aws/things/t-2/shadow/#'), true);
  });
});
