/**
 * Regression: aedes crashes (`RangeError: Maximum call stack size exceeded` in mqemitter)
 * when a QoS 1 wildcard subscriber falls behind while many clients disconnect. The replica
 * consumes requests through aedes's hooks instead, so that load must leave the broker up
 * and every request from a device that stayed connected answered.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import mqtt from 'mqtt';
import { TestClient, connectDevice } from '../helpers/mqtt-client.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';

const CHURN = 300; // devices that publish a burst and vanish without DISCONNECT
const BURST = 5;

describe('broker under churn', () => {
  let ts: TestServer;
  before(async () => {
    ts = await startTestServer();
  });
  after(async () => {
    await ts.close();
  });

  it('survives devices vanishing mid-burst while an operator wildcard subscriber lags', async () => {
    const crashes: unknown[] = [];
    const onError = (err: unknown) => crashes.push(err);
    process.on('uncaughtException', onError);
    try {
      // an operator watching every answer at QoS 1 that stops reading (socket paused)
      const watcher = await TestClient.connect(ts.mqttUrl, 'watcher', { username: 'operator', password: ts.token });
      await watcher.subscribe('state/+/update/accepted', 'state/+/update/documents');
      (watcher.client.stream as unknown as { pause(): void }).pause();

      const secrets = await Promise.all(Array.from({ length: CHURN }, (_, i) => registerDevice(ts, `churn-${i}`)));
      const vanish = Array.from({ length: CHURN }, async (_, i) => {
        const c = await mqtt.connectAsync(ts.mqttUrl, { clientId: `churn-${i}`, username: `churn-${i}`, password: secrets[i]!, reconnectPeriod: 0 });
        for (let k = 0; k < BURST; k++) c.publish(`state/churn-${i}/update`, JSON.stringify({ state: { reported: { k, pad: 'x'.repeat(512) } } }), { qos: 1 });
        c.stream.destroy(); // gone without DISCONNECT, with QoS 1 messages in flight
      });
      await Promise.all(vanish);

      // a device that stays connected still gets every answer
      const steady = await connectDevice(ts, 'steady');
      await steady.subscribe('state/steady/#');
      for (let k = 1; k <= 20; k++) {
        const ans = await steady.request('state/steady/update', { state: { reported: { k } } });
        assert.equal(ans.topic, 'state/steady/update/accepted');
        assert.equal(ans.body.version, k);
      }
      await steady.end();
      watcher.client.stream.destroy();
      assert.deepEqual(crashes, [], 'no uncaught exception in the broker');
      // whatever the vanished devices managed to send was committed whole, never half
      for (let i = 0; i < CHURN; i++) {
        const shadow = await ts.server.store.getShadow(`churn-${i}`, '');
        if (!shadow) continue;
        assert.ok(shadow.version >= 1 && shadow.version <= BURST, `churn-${i} version ${shadow.version}`);
        assert.equal(shadow.state.reported?.pad, 'x'.repeat(512));
      }
    } finally {
      process.off('uncaughtException', onError);
    }
  });
  it('drains a long backlog of messages nobody receives without overflowing the stack', { timeout: 120_000 }, async () => {
    const crashes: unknown[] = [];
    const onError = (err: unknown) => crashes.push(err);
    process.on('uncaughtException', onError);
    try {
      // a subscriber that stops reading: deliveries to it stay pending once its socket is full
      const slow = await TestClient.connect(ts.mqttUrl, 'slow-reader', { username: 'operator', password: ts.token });
      await slow.subscribe('slow/#');
      const stream = slow.client.stream as unknown as { pause(): void; resume(): void };
      stream.pause();
      const big = Buffer.alloc(64 * 1024, 'x');
      const pending: Promise<void>[] = [];
      for (let i = 0; i < 400; i++) pending.push(ts.server.broker.publish('slow/x', big, 0));
      // then a flood with no subscriber at all (what thousands of disconnect notices look like)
      for (let i = 0; i < 60_000; i++) pending.push(ts.server.broker.publish(`nobody/${i % 100}`, 'x', 0));
      stream.resume();
      await Promise.all(pending);
      slow.client.stream.destroy();
      assert.deepEqual(crashes, [], 'no uncaught exception in the broker');
    } finally {
      process.off('uncaughtException', onError);
    }
  });
});
