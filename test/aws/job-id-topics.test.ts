/**
 * Jobs topics naming a job id that AWS IoT never accepts (DescribeJobExecution's jobId:
 * `[a-zA-Z0-9_-]`, 1 to 64 characters), over MQTT with the embedded broker: the topic maps to
 * no operation, InvalidTopic on its `.../rejected` (AWS's code for "a topic in the Jobs
 * namespace that does not map to any API operation"), not ResourceNotFound, which says a
 * well-formed job has no execution here. Updraft's rollback ids (`<jobId>.rollback`) are ids.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { TestClient, connectDevice } from '../helpers/mqtt-client.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

const jobs = (thing: string, rest: string) => `$aws/things/${thing}/jobs/${rest}`;

describe('AWS Jobs: a job id in the topic that AWS never accepts', () => {
  let ts: TestServer;
  let dev: TestClient;

  before(async () => {
    ts = await startTestServer();
    dev = await connectDevice(ts, 'ids-1');
    await dev.subscribe(jobs('ids-1', '#'));
  });
  after(async () => {
    await dev.end();
    await ts.close();
  });

  it('is InvalidTopic on get and update', async () => {
    const bad = ['..', '.', 'a.b', 'a:b', 'x'.repeat(65), `${'x'.repeat(65)}.rollback`, 'j.2', 'j.cancel', 'j.rollback.x', '.rollback', 'é'];
    for (const id of bad) {
      for (const [op, body] of [['get', {}], ['update', { status: 'SUCCEEDED' }]] as const) {
        const topic = jobs('ids-1', `${id}/${op}`);
        const r = await dev.request(topic, body);
        assert.deepEqual([r.topic, r.body.code], [`${topic}/rejected`, 'InvalidTopic'], `${topic}: ${JSON.stringify(r.body)}`);
        assert.equal(r.body.message, `Invalid topic: ${topic}`);
      }
    }
  });

  it('a well-formed id of no job here is ResourceNotFound, a rollback id too', async () => {
    for (const id of ['x'.repeat(64), 'no_such-job', 'no-such-job.rollback']) {
      const r = await dev.request(jobs('ids-1', `${id}/get`), {});
      assert.deepEqual([r.topic, r.body.code], [jobs('ids-1', `${id}/get/rejected`), 'ResourceNotFound'], `${id}: ${JSON.stringify(r.body)}`);
    }
  });
});
