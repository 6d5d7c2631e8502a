/**
 * A request on a named shadow whose name breaks the rule (1 to 128 characters of letters,
 * digits, `_ . : -`) is answered with 400 on its own `.../rejected` topic, naming the rule;
 * before, the broker took it for a topic outside the device's and dropped it after its
 * PUBACK, so the device waited for an answer that never came. Its device only: another
 * device's such request is still dropped and answered nowhere. Real server, real MQTT over
 * TCP, both doors.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { connectDevice, TestClient, type Received } from '../helpers/mqtt-client.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

const RULE = 'a shadow name is 1 to 128 characters of letters, digits, _ . : -, other than "." and ".."';

describe('invalid shadow names', () => {
  let ts: TestServer;
  let dev: TestClient;
  let other: TestClient;
  let spy: TestClient;
  before(async () => {
    ts = await startTestServer();
    dev = await connectDevice(ts, 'sn-1');
    other = await connectDevice(ts, 'sn-2');
    spy = await TestClient.connect(ts.mqttUrl, 'spy-names', { username: 'operator', password: ts.token });
    await dev.subscribe('state/sn-1/#', '$aws/things/sn-1/shadow/#');
    await other.subscribe('state/sn-2/#');
    await spy.subscribe('state/#', '$aws/things/#');
  });
  after(async () => {
    for (const c of [dev, other, spy]) await c.end();
    await ts.close();
  });

  /** Publishes `body` with a fresh token from `client`; resolves with the answer on `<topic>/accepted|rejected`. */
  const ask = (client: TestClient, topic: string, body: Record<string, unknown>): Promise<Received> => client.request(topic, body);
  const refused = (answer: Received, topic: string, why: string) => {
    assert.equal(answer.topic, `${topic}/rejected`);
    assert.deepEqual([answer.body.code, answer.body.message], [400, `Invalid shadow name: ${why}; ${RULE}`]);
  };

  it('answers an update, get or delete on a name breaking the rule with 400 on its own rejected topic, and stores nothing', async () => {
    const update = { state: { desired: { k: 1 } } };
    refused(await ask(dev, 'state/sn-1/shadow/bad name/update', update), 'state/sn-1/shadow/bad name/update', 'it holds " "');
    const long = 'n'.repeat(129);
    refused(await ask(dev, `state/sn-1/shadow/${long}/update`, update), `state/sn-1/shadow/${long}/update`, 'it has 129 characters');
    refused(await ask(dev, 'state/sn-1/shadow//update', update), 'state/sn-1/shadow//update', 'it is empty');
    refused(await ask(dev, 'state/sn-1/shadow/café/get', {}), 'state/sn-1/shadow/café/get', 'it holds "é"');
    refused(await ask(dev, 'state/sn-1/shadow/a$b/delete', {}), 'state/sn-1/shadow/a$b/delete', 'it holds "$"');
    assert.deepEqual(await ts.server.store.listShadowNames('sn-1'), [], 'nothing stored');
    // 128 characters is a name
    assert.equal((await ask(dev, `state/sn-1/shadow/${'n'.repeat(128)}/update`, update)).topic, `state/sn-1/shadow/${'n'.repeat(128)}/update/accepted`);
  });

  it('answers it on the $aws/things door too', async () => {
    const topic = '$aws/things/sn-1/shadow/name/bad name/update';
    refused(await ask(dev, topic, { state: { reported: { k: 1 } } }), topic, 'it holds " "');
    const empty = '$aws/things/sn-1/shadow/name//get';
    refused(await ask(dev, empty, {}), empty, 'it is empty');
  });

  it("gives no device another device's such topics: sn-2's request on sn-1's is dropped and answered nowhere", async () => {
    await other.publish('state/sn-1/shadow/bad name/update', { state: { desired: { k: 1 } }, clientToken: 'cross' });
    await other.publish('$aws/things/sn-1/shadow/name/bad name/update', { state: { desired: { k: 1 } }, clientToken: 'cross-aws' });
    // a client's requests are handled in order, and the answers reach a subscriber in the
    // order they are published: once the spy has the answer to sn-2's next request, an answer
    // to the others would be there before it
    const own = await ask(other, 'state/sn-2/get', {});
    assert.equal(own.topic, 'state/sn-2/get/rejected');
    await spy.next((m) => m.topic === own.topic && m.body?.clientToken === own.body.clientToken);
    const seen = spy.log.filter((m) => m.body?.clientToken === 'cross' || m.body?.clientToken === 'cross-aws').map((m) => m.topic);
    assert.deepEqual(seen, [], 'dropped by the broker, answered nowhere');
    assert.deepEqual(await other.subscribe('state/sn-1/shadow/bad name/update/rejected'), [128]);
  });
});
