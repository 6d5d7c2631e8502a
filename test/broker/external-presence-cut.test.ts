/**
 * A device cut off on an external broker is shown offline. Mosquitto closes the connection of
 * a device revoked, deleted or given a new secret when its password file is reloaded, the way
 * it closes one for a DISCONNECT: it publishes no Will, and the device's retained
 * `{"online":true}` stayed, replayed to every instance at each start (QA: `device list` showed
 * a revoked device online for good). The instance clears it as it cuts the device off.
 */
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import mqtt from 'mqtt';
import { mosquittoPasswd } from '../../src/broker/mosquitto-config.ts';
import { ApiClient } from '../../src/cli/api-client.ts';
import { PRESENCE_ONLINE, PRESENCE_WILL } from '../../src/protocol/presence.ts';
import { presenceTopic } from '../../src/protocol/topics.ts';
import { eventually } from '../helpers/cli.ts';
import { findMosquitto, mosquittoUnavailable, startTestMosquitto, type TestMosquitto } from '../helpers/mosquitto.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

const TOKEN = `updr_presence_cut_test_${'x'.repeat(24)}`;
const found = findMosquitto();

if (!found.ok) {
  const message = mosquittoUnavailable(found.reason, 'external broker presence test');
  it('external broker: a cut-off device is shown offline', (t) => t.skip(message));
} else {
  describe('external broker (Mosquitto): a device cut off is shown offline', () => {
    let broker: TestMosquitto;
    let ts: TestServer;
    let api: ApiClient;
    const secrets = new Map<string, string>();
    const revoked = new Set<string>();
    const clients: mqtt.MqttClient[] = [];

    /** Writes the password file as `updraft broker mosquitto-config` would from the registry, and reloads. */
    const reload = async () => {
      const devices = [...secrets.keys()].map((deviceId) => ({ deviceId, revoked: revoked.has(deviceId) }));
      await writeFile(path.join(broker.dir, 'passwd'), mosquittoPasswd({ operatorToken: TOKEN, devices, secrets }).text);
      await broker.reload();
    };
    /** Connects as the agent does: a retained online message, and a Will that clears it. */
    const online = async (deviceId: string) => {
      const c = await mqtt.connectAsync(broker.deviceUrl, {
        clientId: deviceId,
        username: deviceId,
        password: secrets.get(deviceId)!,
        reconnectPeriod: 0,
        protocolVersion: 5,
        will: { topic: presenceTopic(deviceId), payload: PRESENCE_WILL, qos: 1, retain: true },
      });
      clients.push(c);
      await c.publishAsync(presenceTopic(deviceId), PRESENCE_ONLINE, { qos: 1, retain: true });
      await eventually(async () => ((await device(deviceId)).online === true ? true : undefined), 15_000, `${deviceId} shown online`);
      return c;
    };
    const device = (deviceId: string) => api.call<{ online: boolean }>('GET', `/api/v1/devices/${deviceId}`);
    const closed = (c: mqtt.MqttClient) => new Promise<void>((resolve) => (c.connected ? c.once('close', () => resolve()) : resolve()));
    /** The retained presence a new subscriber gets (undefined: none), read up to a marker published after it subscribed. */
    const retained = async (deviceId: string): Promise<string | undefined> => {
      const op = await mqtt.connectAsync(broker.serviceUrl, { username: 'operator', password: TOKEN, reconnectPeriod: 0 });
      try {
        const marker = `state/marker-${Date.now()}/presence`;
        let got: string | undefined;
        const done = new Promise<void>((resolve) =>
          op.on('message', (topic, payload) => {
            if (topic === presenceTopic(deviceId)) got = payload.toString();
            if (topic === marker) resolve();
          }),
        );
        await op.subscribeAsync([presenceTopic(deviceId), marker], { qos: 1 });
        await op.publishAsync(marker, PRESENCE_WILL, { qos: 1 });
        await done;
        return got;
      } finally {
        await op.endAsync();
      }
    };

    before(async () => {
      broker = await startTestMosquitto(found.bin, { operatorToken: TOKEN, devices: [], secrets: new Map() });
      const dataDir = await mkdtemp(path.join(os.tmpdir(), 'updraft-presence-cut-'));
      await writeFile(path.join(dataDir, 'operator-token'), TOKEN + '\n', { mode: 0o600 });
      ts = await startTestServer({ dataDir, flags: { 'mqtt-url': broker.serviceUrl, 'mqtt-tls-port': -1 } });
      api = new ApiClient({ server: ts.httpUrl, token: TOKEN });
      for (const deviceId of ['p-revoked', 'p-rotated', 'p-deleted', 'p-stays']) {
        secrets.set(deviceId, (await api.call<{ secret: string }>('POST', '/api/v1/devices', { deviceId })).secret);
      }
      await reload();
    });
    after(async () => {
      for (const c of clients) await c.endAsync(true).catch(() => undefined);
      await ts?.close();
      await broker?.stop();
    });

    it('revoked, given a new secret or deleted: offline once cut off, and no retained online message is left to replay', async () => {
      const [revokedClient, rotatedClient, deletedClient, staysClient] = [await online('p-revoked'), await online('p-rotated'), await online('p-deleted'), await online('p-stays')];
      const cut = [closed(revokedClient), closed(rotatedClient), closed(deletedClient)];
      await api.call('POST', '/api/v1/devices/p-revoked/revoke');
      secrets.set('p-rotated', (await api.call<{ secret: string }>('POST', '/api/v1/devices/p-rotated/rotate-secret')).secret);
      await api.call('DELETE', '/api/v1/devices/p-deleted');
      revoked.add('p-revoked');
      secrets.delete('p-deleted');
      await reload(); // what mosquitto-config --watch does on device.credentials
      await Promise.all(cut);

      for (const id of ['p-revoked', 'p-rotated']) {
        await eventually(async () => ((await device(id)).online === false ? true : undefined), 15_000, `${id} shown offline`);
      }
      for (const id of ['p-revoked', 'p-rotated', 'p-deleted']) assert.equal(await retained(id), undefined, `no retained presence of ${id}`);
      assert.equal(await retained('p-stays'), PRESENCE_ONLINE, 'a device still connected keeps its own');
      assert.equal((await device('p-stays')).online, true);
      assert.equal(staysClient.connected, true);
    });
  });
}
