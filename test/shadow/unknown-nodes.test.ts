/**
 * A node a request does not take is refused with 400 naming it, never dropped: a misspelt
 * section (`reportd`) wrote the rest and lost it, a misspelt `versoin` made a conditional
 * update unconditional. Real server, real MQTT over TCP, the QA pass's payloads, on both
 * doors (`state/...` and `$aws/things/...`).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { connectDevice, type Received, type TestClient } from '../helpers/mqtt-client.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

describe('unknown nodes in shadow requests', () => {
  let ts: TestServer;
  let dev: TestClient;
  before(async () => {
    ts = await startTestServer();
    dev = await connectDevice(ts, 'un-1');
    await dev.subscribe('state/un-1/#', '$aws/things/un-1/shadow/#');
  });
  after(async () => {
    await dev.end();
    await ts.close();
  });

  /** Publishes `payload` (raw) with `token` in it and resolves with its answer on `<topic>/accepted|rejected`. */
  async function send(topic: string, payload: string, token: string): Promise<Received> {
    const answer = dev.next((m) => (m.topic === `${topic}/accepted` || m.topic === `${topic}/rejected`) && m.body?.clientToken === token);
    await dev.publish(topic, payload);
    return answer;
  }
  const version = async (name = '') => (await ts.server.store.getShadow('un-1', name))?.version;

  it("refuses a misspelt section of state with AWS IoT's 400, and writes nothing of the request", async () => {
    const made = await send('state/un-1/update', '{"state":{"reported":{"mode":"city"}},"clientToken":"base"}', 'base');
    assert.equal(made.topic, 'state/un-1/update/accepted');
    const before = await version();
    const answer = await send('state/un-1/update', '{"state":{"desired":{"mode":"eco"},"reportd":{"mode":"eco"}},"clientToken":"typo"}', 'typo');
    assert.equal(answer.topic, 'state/un-1/update/rejected');
    assert.deepEqual([answer.body.code, answer.body.message], [400, "State contains an invalid node: 'reportd'"]);
    const several = await send('state/un-1/update', '{"state":{"reported":{"a":1},"delta":{"a":2},"metadata":{}},"clientToken":"two"}', 'two');
    assert.deepEqual([several.body.code, several.body.message], [400, "State contains invalid nodes: 'delta', 'metadata'"]);
    const shadow = await ts.server.store.getShadow('un-1', '');
    assert.equal(shadow?.version, before, 'nothing written');
    assert.equal(shadow?.state.desired, undefined, "the desired half of the refused request is not written either");
  });

  it('refuses a misspelt version instead of writing unconditionally', async () => {
    const before = await version();
    const answer = await send('state/un-1/update', '{"state":{"reported":{"mode":"eco"}},"versoin":1,"clientToken":"typo-version"}', 'typo-version');
    assert.equal(answer.topic, 'state/un-1/update/rejected');
    assert.deepEqual([answer.body.code, answer.body.message], [400, "Request contains an invalid node: 'versoin' (an update takes state, clientToken, version)"]);
    const more = await send('state/un-1/update', '{"state":{"reported":{"mode":"eco"}},"metadata":{},"timestamp":1,"clientToken":"more"}', 'more');
    assert.equal(more.body.message, "Request contains invalid nodes: 'metadata', 'timestamp' (an update takes state, clientToken, version)");
    assert.equal(await version(), before, 'nothing written');
    assert.equal((await ts.server.store.getShadow('un-1', ''))?.state.reported?.mode, 'city');
  });

  it('refuses an unknown node of a get or a delete; an empty payload, or a get carrying version, is still answered', async () => {
    const get = await send('state/un-1/get', '{"clientToken":"g1","cilentToken":"x"}', 'g1');
    assert.equal(get.topic, 'state/un-1/get/rejected');
    assert.deepEqual([get.body.code, get.body.message], [400, "Request contains an invalid node: 'cilentToken' (a get takes clientToken, version)"]);
    const del = await send('state/un-1/delete', '{"clientToken":"d1","verison":1}', 'd1');
    assert.equal(del.topic, 'state/un-1/delete/rejected');
    assert.deepEqual([del.body.code, del.body.message], [400, "Request contains an invalid node: 'verison' (a delete takes clientToken, version)"]);
    assert.equal((await ts.server.store.getShadow('un-1', ''))?.deleted, false, 'not deleted');
    // the AWS IoT Device SDK v1 sends the version it knows with every get
    const versioned = await send('state/un-1/get', `{"clientToken":"g2","version":${await version()}}`, 'g2');
    assert.equal(versioned.topic, 'state/un-1/get/accepted');
    const empty = dev.next((m) => m.topic === 'state/un-1/get/accepted' && m.body?.clientToken === undefined);
    await dev.publish('state/un-1/get', '');
    assert.equal((await empty).body.state.reported.mode, 'city');
  });

  it("takes thingName and shadowName naming the topic's own (AWS SDK v2's IotShadowClient sends them) and refuses others", async () => {
    const aws = (path: string) => `$aws/things/un-1/shadow/${path}`;
    const classic = await send(aws('update'), '{"state":{"reported":{"sdk":1}},"thingName":"un-1","clientToken":"a1"}', 'a1');
    assert.equal(classic.topic, aws('update/accepted'));
    const named = await send(aws('name/cfg/update'), '{"state":{"reported":{"sdk":1}},"thingName":"un-1","shadowName":"cfg","clientToken":"a2"}', 'a2');
    assert.equal(named.topic, aws('name/cfg/update/accepted'));
    const got = await send(aws('name/cfg/get'), '{"thingName":"un-1","shadowName":"cfg","clientToken":"a3"}', 'a3');
    assert.equal(got.topic, aws('name/cfg/get/accepted'));
    const other = await send(aws('update'), '{"state":{"reported":{"sdk":2}},"thingName":"un-2","clientToken":"a4"}', 'a4');
    assert.equal(other.topic, aws('update/rejected'));
    assert.deepEqual([other.body.code, other.body.message], [400, `thingName "un-2" does not match the topic's thing 'un-1': the topic says which shadow a request is for`]);
    const shadowOnClassic = await send(aws('get'), '{"shadowName":"cfg","clientToken":"a5"}', 'a5');
    assert.equal(shadowOnClassic.topic, aws('get/rejected'));
    assert.match(shadowOnClassic.body.message, /^shadowName "cfg" does not match no named shadow/);
    const typo = await send(aws('update'), '{"state":{"reportd":{"sdk":3}},"clientToken":"a6"}', 'a6');
    assert.deepEqual([typo.topic, typo.body.code, typo.body.message], [aws('update/rejected'), 400, "State contains an invalid node: 'reportd'"]);
    assert.equal((await ts.server.store.getShadow('un-1', ''))?.state.reported?.sdk, 1);
  });
});
