/**
 * An external Mosquitto keeps a persistent session (`clean: false`) under its client id for as
 * long as it runs, whatever happens to the device's credentials: a device deleted and
 * registered again under its id resumes the old one's subscriptions and queued messages. The
 * server does not reach into Mosquitto's sessions; what docs/security.md tells operators to do
 * is checked here: one connection with a clean session under the device's id, made by the
 * operator on the service listener, ends it ([MQTT-3.1.2-6]).
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { IConnackPacket, Packet } from 'mqtt-packet';
import { mosquittoPasswd } from '../../src/broker/mosquitto-config.ts';
import { findMosquitto, mosquittoUnavailable, startTestMosquitto, type TestMosquitto } from '../helpers/mosquitto.ts';
import { isPublish, publish, RawClient } from './raw-mqtt-client.ts';

const OPERATOR_TOKEN = 'updr_test_operator_token_0123456789abcdef';
const found = findMosquitto();

if (!found.ok) {
  const message = mosquittoUnavailable(found.reason, 'Mosquitto session tests');
  it("a deleted device's session on Mosquitto", (t) => t.skip(message));
} else {
  describe("a deleted device's persistent session on Mosquitto", () => {
    let broker: TestMosquitto;
    before(async () => {
      broker = await startTestMosquitto(found.bin, { operatorToken: OPERATOR_TOKEN, devices: [], secrets: new Map() });
    });
    after(() => broker?.stop());

    /** The password file as `mosquitto-config` writes it for these devices, reloaded. */
    async function registry(devices: Record<string, string>): Promise<void> {
      const secrets = new Map(Object.entries(devices));
      await writeFile(path.join(broker.dir, 'passwd'), mosquittoPasswd({ operatorToken: OPERATOR_TOKEN, devices: [...secrets.keys()].map((deviceId) => ({ deviceId, revoked: false })), secrets }).text);
      await broker.reload();
    }

    /** `id` leaves a persistent session subscribed to its delta at QoS 1, and a message is queued in it. */
    async function leaveSession(id: string, secret: string): Promise<void> {
      const c = await RawClient.connect(broker.devicePort, id, secret, false);
      const ack = c.next((p) => p.cmd === 'suback');
      c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: `state/${id}/update/delta`, qos: 1 }] });
      assert.deepEqual(((await ack) as Packet & { granted: number[] }).granted, [1]);
      await c.end();
      const op = await RawClient.connect(broker.servicePort, 'updraft-test-op', OPERATOR_TOKEN, true, 'operator');
      op.send(publish(`state/${id}/update/delta`, { marker: 'for-the-deleted-device' }, 1, 1));
      await op.next((p) => p.cmd === 'puback');
      await op.end();
    }

    /** What the device registered again under `id` resumes: the session present flag, and whether the queued message comes. */
    async function resume(id: string, secret: string): Promise<{ sessionPresent: boolean; queued: boolean }> {
      const c = await RawClient.connect(broker.devicePort, id, secret, false);
      try {
        // Mosquitto writes a session's queue right after the CONNACK: a PINGRESP comes after it
        const pong = c.next((p) => p.cmd === 'pingresp');
        c.send({ cmd: 'pingreq' });
        await pong;
        const connack = c.received.find((p) => p.cmd === 'connack') as IConnackPacket;
        return { sessionPresent: connack.sessionPresent, queued: c.received.some((p) => isPublish(p, `state/${id}/update/delta`)) };
      } finally {
        await c.end();
      }
    }

    it('passes to the device registered again under its id: the password file does not reach it', async () => {
      await registry({ 'ms-kept': 'first-secret' });
      await leaveSession('ms-kept', 'first-secret');
      await registry({}); // deleted
      await registry({ 'ms-kept': 'second-secret' }); // registered again
      assert.deepEqual(await resume('ms-kept', 'second-secret'), { sessionPresent: true, queued: true });
    });

    it("ends with one clean-session connection of the operator under the device's id, on the service listener", async () => {
      await registry({ 'ms-reset': 'first-secret' });
      await leaveSession('ms-reset', 'first-secret');
      await registry({});
      // what docs/security.md gives: mosquitto_sub -i <id> -u operator ... -E (a clean session by default)
      const reset = await RawClient.connect(broker.servicePort, 'ms-reset', OPERATOR_TOKEN, true, 'operator');
      assert.equal((reset.received.find((p) => p.cmd === 'connack') as IConnackPacket).sessionPresent, false);
      await reset.end();
      await registry({ 'ms-reset': 'second-secret' });
      assert.deepEqual(await resume('ms-reset', 'second-secret'), { sessionPresent: false, queued: false });
    });
  });
}
