/**
 * A shadow request whose payload is not UTF-8, over MQTT with a real server: on the AWS
 * topics it is refused as AWS IoT documents it, 415 `Unsupported documented encoding;
 * supported encoding is UTF-8` (Device Shadow error messages); on Updraft's own topics with
 * its own 400 (docs/protocol.md#rejections). Nothing is stored either way.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { TestClient, connectDevice } from '../helpers/mqtt-client.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

const shadow = (thing: string, rest: string) => `$aws/things/${thing}/shadow/${rest}`;

// JSON whose string holds a byte that no UTF-8 text has (0xff)
const notUtf8 = Buffer.concat([Buffer.from('{"state":{"reported":{"name":"'), Buffer.from([0xff]), Buffer.from('"}},"clientToken":"t-1"}')]);

describe('AWS shadow: a payload that is not UTF-8', () => {
  let ts: TestServer;
  let dev: TestClient;

  before(async () => {
    ts = await startTestServer();
    dev = await connectDevice(ts, 'enc-1');
    await dev.subscribe(shadow('enc-1', '#'), 'state/enc-1/#');
  });
  after(async () => {
    await dev.end();
    await ts.close();
  });

  it('is refused with 415 and AWS message on the AWS topics, classic and named, every operation', async () => {
    for (const topic of [shadow('enc-1', 'update'), shadow('enc-1', 'name/cfg/update'), shadow('enc-1', 'get'), shadow('enc-1', 'delete')]) {
      dev.log.length = 0;
      const answer = dev.next((m) => m.topic === `${topic}/rejected` || m.topic === `${topic}/accepted`);
      await dev.publish(topic, notUtf8);
      const got = await answer;
      assert.equal(got.topic, `${topic}/rejected`, topic);
      assert.deepEqual([got.body.code, got.body.message, got.body.clientToken], [415, 'Unsupported documented encoding; supported encoding is UTF-8', undefined], `${topic}: ${JSON.stringify(got.body)}`);
    }
    assert.equal(await ts.server.store.getShadow('enc-1', ''), undefined, 'nothing stored');
  });

  it("is refused with Updraft's own 400 on its own topics", async () => {
    dev.log.length = 0;
    const answer = dev.next((m) => m.topic === 'state/enc-1/update/rejected' || m.topic === 'state/enc-1/update/accepted');
    // the answer of a request on the own topics, mirrored onto the AWS ones, is that answer
    const mirrored = dev.next((m) => m.topic === shadow('enc-1', 'update/rejected'));
    await dev.publish('state/enc-1/update', notUtf8);
    const got = await answer;
    assert.equal(got.topic, 'state/enc-1/update/rejected');
    assert.deepEqual([got.body.code, got.body.message], [400, 'Invalid JSON: the payload is not UTF-8']);
    assert.equal((await mirrored).body.code, 400);
  });

  it('a payload over the size limit is 413 on the AWS topics too, whatever its bytes', async () => {
    const big = Buffer.concat([notUtf8, Buffer.alloc(9000, 0x20)]);
    dev.log.length = 0;
    const answer = dev.next((m) => m.topic === shadow('enc-1', 'update/rejected'));
    await dev.publish(shadow('enc-1', 'update'), big);
    const got = await answer;
    assert.equal(got.body.code, 413, JSON.stringify(got.body));
  });
});
