/**
 * The embedded broker acknowledges a device's QoS 1 request (PUBACK) once it is handled:
 * recorded and answered, or rejected. A device whose publish has completed knows its report
 * is in the store, and the PUBACK leaves with the answers instead of in a write of its own.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { connectDevice, type TestClient } from '../helpers/mqtt-client.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

describe('PUBACK of a device request', () => {
  let ts: TestServer;
  let device: TestClient;
  before(async () => {
    ts = await startTestServer();
    device = await connectDevice(ts, 'ack-1');
    // QoS 0, as the agent subscribes
    await device.client.subscribeAsync(['state/ack-1/update/accepted', 'state/ack-1/update/rejected', 'state/ack-1/get/accepted'], { qos: 0 });
  });
  after(async () => {
    await device.end();
    await ts.close();
  });

  it('comes once the report is recorded', async () => {
    for (let k = 1; k <= 5; k++) {
      const answer = device.next((m) => m.topic === 'state/ack-1/update/accepted' && m.body.clientToken === `report-${k}`);
      // resolves on the PUBACK: by then the store has the report
      await device.publish('state/ack-1/update', { state: { reported: { k } }, clientToken: `report-${k}` });
      const stored = await ts.server.store.getShadow('ack-1', '');
      assert.equal(stored?.state.reported?.k, k, `report ${k} recorded before its PUBACK`);
      assert.equal((await answer).body.version, k);
    }
  });

  it('comes for a rejected request too, and nothing is recorded', async () => {
    const before = await ts.server.store.getShadow('ack-1', '');
    const answer = device.next((m) => m.topic === 'state/ack-1/update/rejected' && m.body.clientToken === 'bad-1');
    await device.publish('state/ack-1/update', { state: { reported: 'not an object' }, clientToken: 'bad-1' });
    assert.equal((await answer).body.code, 400);
    assert.deepEqual(await ts.server.store.getShadow('ack-1', ''), before);
  });

  it('records a burst of requests in the order sent', async () => {
    // published back to back without waiting: each is recorded in the order sent
    const tokens = Array.from({ length: 20 }, (_, i) => `burst-${i}`);
    const answers = tokens.map((t) => device.next((m) => m.topic === 'state/ack-1/update/accepted' && m.body.clientToken === t));
    await Promise.all(tokens.map((t, i) => device.publish('state/ack-1/update', { state: { reported: { burst: i } }, clientToken: t })));
    const versions = (await Promise.all(answers)).map((m) => m.body.version as number);
    assert.deepEqual(versions, [...versions].sort((a, b) => a - b));
    assert.equal((await ts.server.store.getShadow('ack-1', ''))?.state.reported?.burst, 19);
  });
});
