/**
 * A device cut off (revoked, or deleted) leaves no mark after the cut: its connection's Will,
 * which the broker publishes as it closes the connection, and any request still in flight,
 * are dropped. A Will on the device's update topic wrote its reported state after the
 * revocation, and after a deletion it was inherited by the next device registered under the id.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import mqtt from 'mqtt';
import { eventually } from '../helpers/cli.ts';
import { createLogger } from '../../src/util/logger.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';

describe("a device's Will once it is cut off", () => {
  let ts: TestServer;
  const lines: string[] = [];
  const api = (method: string, route: string) => fetch(`${ts.httpUrl}${route}`, { method, headers: { authorization: `Bearer ${ts.token}` } });
  before(async () => {
    ts = await startTestServer({ logger: createLogger({ level: 'info', write: (line) => lines.push(line) }) });
  });
  /** Resolves once the broker dropped what `id` published after its cut (its Will). */
  const dropped = (id: string) => eventually(async () => (lines.some((l) => l.includes('publish dropped: the device was cut off') && l.includes(`deviceId=${id} `)) ? true : undefined), 10_000, `${id}'s Will dropped`);
  after(() => ts.close());

  /** Connects `id` with a Will that reports `marker`; resolves once it is online. */
  async function connectWithWill(id: string, marker: string): Promise<mqtt.MqttClient> {
    const password = await registerDevice(ts, id);
    const online = new Promise<void>((resolve) => {
      const off = ts.server.events.on('device.presence', (e) => {
        if (e.deviceId === id && e.online) (off(), resolve());
      });
    });
    const client = await mqtt.connectAsync(ts.mqttUrl, {
      clientId: id,
      username: id,
      password,
      reconnectPeriod: 0,
      will: { topic: `state/${id}/update`, payload: Buffer.from(JSON.stringify({ state: { reported: { marker } } })), qos: 1, retain: false },
    });
    await online;
    return client;
  }
  /** Resolves once `id` went offline: its connection closed, its Will (if any) handled. */
  const offline = (id: string) =>
    new Promise<void>((resolve) => {
      const off = ts.server.events.on('device.presence', (e) => {
        if (e.deviceId === id && !e.online) (off(), resolve());
      });
    });

  it('is not recorded when the device is revoked', async () => {
    const client = await connectWithWill('w-1', 'after-revoke');
    const gone = offline('w-1');
    assert.equal((await api('POST', '/api/v1/devices/w-1/revoke')).status, 200);
    await gone;
    await dropped('w-1');
    client.end(true);
    const shadow = await ts.server.store.getShadow('w-1', '');
    assert.equal((shadow?.state.reported as { marker?: string } | undefined)?.marker, undefined, JSON.stringify(shadow?.state));
  });

  it('is not recorded when the device is deleted, so the id registered again starts clean', async () => {
    const client = await connectWithWill('w-2', 'after-delete');
    const gone = offline('w-2');
    assert.equal((await api('DELETE', '/api/v1/devices/w-2')).status, 200);
    await gone;
    await dropped('w-2');
    client.end(true);
    await registerDevice(ts, 'w-2');
    const shadow = await ts.server.store.getShadow('w-2', '');
    assert.ok(!shadow || shadow.deleted || (shadow.state.reported as { marker?: string } | undefined)?.marker === undefined, JSON.stringify(shadow));
  });

  it('is recorded when the connection drops while the device keeps its access (what a Will is for)', async () => {
    const client = await connectWithWill('w-3', 'dropped');
    const gone = offline('w-3');
    // a connection lost without DISCONNECT: the Will goes out
    (client as unknown as { stream: { destroy(): void } }).stream.destroy();
    await gone;
    client.end(true);
    const marker = await eventually(async () => ((await ts.server.store.getShadow('w-3', ''))?.state.reported as { marker?: string } | undefined)?.marker, 10_000, 'the Will recorded');
    assert.equal(marker, 'dropped');
  });
});
