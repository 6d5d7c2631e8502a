/**
 * The production broker path against a real Mosquitto started for this file: the generated
 * authentication and ACLs, then two Updraft replicas (ExternalBroker + the replica + one
 * shared store) splitting device requests through a shared subscription.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import mqtt from 'mqtt';
import { MemoryAgentStateStore, SimulatedInstaller, UpdateAgent } from '../../src/agent/index.ts';
import { ExternalBroker } from '../../src/broker/external-broker.ts';
import type { PresenceEvent } from '../../src/broker/message-bus.ts';
import { mosquittoPasswd, mosquittoPasswordLine } from '../../src/broker/mosquitto-config.ts';
import { EventBus } from '../../src/events/event-bus.ts';
import { ShadowReplica } from '../../src/shadow/replica.ts';
import { PostgresStore } from '../../src/store/postgres-store.ts';
import { SqliteStore } from '../../src/store/sqlite-store.ts';
import type { StateStore } from '../../src/store/state-store.ts';
import { silentLogger } from '../../src/util/logger.ts';
import { eventually } from '../helpers/cli.ts';
import { publishBurstWhileBlocked, TestClient } from '../helpers/mqtt-client.ts';
import { findMosquitto, mosquittoUnavailable, startTestMosquitto, type TestMosquitto } from '../helpers/mosquitto.ts';
import { startTestPostgres, type TestPostgres } from '../helpers/postgres.ts';

const OPERATOR_TOKEN = 'updr_test_operator_token_0123456789abcdef';
const DEVICES = Array.from({ length: 20 }, (_, i) => `dev-${String(i).padStart(2, '0')}`);
const secrets = new Map(DEVICES.map((d) => [d, `secret-of-${d}`]));
const found = findMosquitto();
const allSecrets = new Map([...secrets, ['gone', 'secret-of-gone'], ['leaving', 'secret-of-leaving']]);
/** The registry as the password file is generated from: `gone` revoked, and whichever `revoked` names. */
const registered = (revoked: string[] = []) => [...DEVICES, 'leaving'].map((deviceId) => ({ deviceId, revoked: revoked.includes(deviceId) })).concat({ deviceId: 'gone', revoked: true });

describe('mosquitto-config', () => {
  it('writes password lines mosquitto_passwd would verify (PBKDF2-SHA512, $7$)', () => {
    // the line mosquitto_passwd -b wrote for alice/secret with this salt
    const salt = Buffer.from('V6whB3ZJlskEN3Sl', 'base64');
    assert.equal(mosquittoPasswordLine('alice', 'secret', salt), 'alice:$7$101$V6whB3ZJlskEN3Sl$Fak+evGSPA6OX2z+SDFm/4PHwToFPIDKlzGxnbcOTT1IKArSAEEarP+8S+LGXxi2EbNzIN1YiaRddGdEuJRIKQ==');
  });
});

if (!found.ok) {
  const message = mosquittoUnavailable(found.reason, 'external broker tests');
  it('external broker', (t) => t.skip(message));
} else {
  describe('external broker (Mosquitto)', () => {
    let broker: TestMosquitto;
    before(async () => {
      broker = await startTestMosquitto(found.bin, { operatorToken: OPERATOR_TOKEN, devices: registered(), secrets: allSecrets });
    });
    after(() => broker?.stop());

    const connect = (id: string, password: string) => TestClient.connect(broker.deviceUrl, id, { username: id, password });
    /** An instance's bus that records the presence it reports. */
    const presenceInstance = (clientId: string, seen: PresenceEvent[], extra: { reconnectPeriodMs?: number } = {}) => {
      const bus = new ExternalBroker({ url: broker.serviceUrl, username: 'operator', password: OPERATOR_TOKEN, shareGroup: 'presence', logger: silentLogger, clientId, ...extra });
      bus.onPresence((e) => seen.push(e));
      return bus;
    };
    /**
     * Resolves once an instance that has just started has taken in the broker's replay: a
     * presence message published now reaches it after the replay, which the broker queued to it
     * when it handled its subscription.
     */
    const afterReplay = async (seen: PresenceEvent[]) => {
      const sentinel = `sentinel-${seen.length}-${Date.now()}`;
      const op = await mqtt.connectAsync(broker.serviceUrl, { username: 'operator', password: OPERATOR_TOKEN, reconnectPeriod: 0 });
      await op.publishAsync(`state/${sentinel}/presence`, '{"online":true}', { qos: 1 });
      await op.endAsync();
      await eventually(async () => (seen.some((e) => e.deviceId === sentinel) ? true : undefined), 30_000, 'the sentinel after the replay');
    };

    it('admits a device with its secret and refuses wrong, unknown and revoked ones', async () => {
      const ok = await connect('dev-00', secrets.get('dev-00')!);
      await ok.end();
      for (const [id, pw] of [['dev-00', 'wrong'], ['ghost', 'x'], ['gone', 'secret-of-gone']] as const) {
        await assert.rejects(mqtt.connectAsync(broker.deviceUrl, { clientId: id, username: id, password: pw, reconnectPeriod: 0 }), `${id} refused`);
      }
    });

    it('closes the connection of a device revoked in the reloaded password file; the others stay (docs/deployment.md)', async () => {
      const leaving = await connect('leaving', allSecrets.get('leaving')!);
      const staying = await connect('dev-05', secrets.get('dev-05')!);
      const gone = new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error("Mosquitto kept the revoked device's connection")), 10_000);
        leaving.client.once('close', () => (clearTimeout(timer), resolve()));
      });
      // what updraft broker mosquitto-config writes once the device is revoked (new salts for every line)
      await writeFile(path.join(broker.dir, 'passwd'), mosquittoPasswd({ operatorToken: OPERATOR_TOKEN, devices: registered(['leaving']), secrets: allSecrets }).text);
      await broker.reload();
      await gone;
      await assert.rejects(mqtt.connectAsync(broker.deviceUrl, { clientId: 'leaving', username: 'leaving', password: allSecrets.get('leaving')!, reconnectPeriod: 0 }), 'refused');
      await staying.publish('state/dev-05/get', {}); // acknowledged: the connection is alive
      assert.equal(staying.client.connected, true, 'a device whose line only got a new salt');
      await staying.end();
    });

    it('closes the connection of a device sending a packet over max_packet_size (64 KiB), as the embedded broker does', async () => {
      const big = await connect('dev-06', secrets.get('dev-06')!);
      const closed = new Promise<void>((resolve) => big.client.once('close', () => resolve()));
      big.client.publish('state/dev-06/update', Buffer.alloc(100 * 1024, 0x20), { qos: 0 });
      await closed;
      // a request under the limit goes through on a new connection
      const again = await connect('dev-06', secrets.get('dev-06')!);
      await again.publish('state/dev-06/get', {});
      await again.end();
      big.client.end(true);
    });

    it("keeps a device to its own topics: another device's answers never reach it, its forged requests never reach the replica", async () => {
      const spy = await TestClient.connect(broker.serviceUrl, 'spy-operator', { username: 'operator', password: OPERATOR_TOKEN });
      await spy.subscribe('state/#');
      const a = await connect('dev-01', secrets.get('dev-01')!);
      const b = await connect('dev-02', secrets.get('dev-02')!);
      await a.subscribe('state/dev-02/#', 'state/+/update/accepted');
      await b.publish('state/dev-02/update/accepted', { forged: true }); // an answer topic: not writable by devices
      await a.publish('state/dev-02/update', { state: { reported: { evil: 1 } } }); // another device's request
      await b.publish('state/dev-02/get', { clientToken: 'marker' }); // allowed: proves delivery works
      await spy.next((m) => m.topic === 'state/dev-02/get');
      assert.equal(a.log.length, 0, `dev-01 received ${a.log.map((m) => m.topic).join(', ')}`);
      assert.ok(!spy.log.some((m) => m.topic === 'state/dev-02/update'), "dev-01's forged request was dropped");
      assert.ok(!spy.log.some((m) => m.topic === 'state/dev-02/update/accepted'), 'devices cannot publish answers');
      await Promise.all([a.end(), b.end(), spy.end()]);
    });

    it("hands the instances every request family a device may publish (the generated ACL and the request filters agree), each from its own device only", async () => {
      const got: { topic: string; sender: string }[] = [];
      const bus = new ExternalBroker({ url: broker.serviceUrl, username: 'operator', password: OPERATOR_TOKEN, shareGroup: 'families', logger: silentLogger, clientId: 'families-instance' });
      bus.onRequest((r) => {
        if (r.topic.startsWith('state/dev-04/') || r.topic.startsWith('state/dev-06/')) got.push({ topic: r.topic, sender: r.sender.kind === 'device' ? r.sender.id : r.sender.kind });
      });
      await bus.start();
      const dev = await connect('dev-04', secrets.get('dev-04')!);
      try {
        const families = ['state/dev-04/update', 'state/dev-04/get', 'state/dev-04/shadow/config/get', 'state/dev-04/credentials/request', 'state/dev-04/certificate/renew', 'state/dev-04/job-log'];
        await dev.publish('state/dev-06/job-log', { forged: true }); // another device's: dropped by the ACL
        for (const topic of families) await dev.publish(topic, { clientToken: topic });
        await eventually(async () => (got.length >= families.length ? true : undefined), 10_000, 'every request family');
        assert.deepEqual(got.map((g) => g.topic).sort(), [...families].sort());
        assert.ok(got.every((g) => g.sender === 'dev-04'));
      } finally {
        await dev.end();
        await bus.stop();
      }
    });

    it('takes a burst of requests far beyond what the broker queues by default: the broker drops none', async () => {
      // Mosquitto keeps 20 QoS 1 messages in flight to a client unless its Receive Maximum
      // says more, queues 1,000 more and drops the rest. The burst is published while this
      // process (the instance) is blocked in spawnSync, so it cannot read or acknowledge
      // anything until the broker holds every request.
      const n = 2_500;
      let received = 0;
      const bus = new ExternalBroker({ url: broker.serviceUrl, username: 'operator', password: OPERATOR_TOKEN, shareGroup: 'burst', logger: silentLogger, clientId: 'burst-instance' });
      bus.onRequest((r) => {
        if (r.topic === 'state/dev-03/update') received++;
      });
      await bus.start();
      try {
        publishBurstWhileBlocked(broker.deviceUrl, { clientId: 'dev-03', username: 'dev-03', password: secrets.get('dev-03')! }, 'state/dev-03/update', n, '{"state":{"reported":{"i":$i}}}');
        const deadline = Date.now() + 30_000;
        while (received < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
        assert.equal(received, n, `the instance received ${received} of ${n} requests`);
      } finally {
        await bus.stop();
      }
    });

    it("learns each device's presence from its agent: the retained online message, the Will that clears it, the broker's replay at every (re)connect", async () => {
      const tmp = await mkdtemp(path.join(os.tmpdir(), 'updraft-presence-'));
      const agent = (deviceId: string) =>
        new UpdateAgent({ deviceId, username: deviceId, password: secrets.get(deviceId)!, brokerUrl: broker.deviceUrl, installer: new SimulatedInstaller({ initial: { name: 'fw', version: '1.0.0' } }), stateStore: new MemoryAgentStateStore(), stateDir: path.join(tmp, deviceId), logger: silentLogger, allowUnsigned: true });
      const seenA: PresenceEvent[] = [];
      // A reconnects only when told to (below), so what happens while it is away is certain
      const a = presenceInstance('presence-a', seenA, { reconnectPeriodMs: 600_000 });
      await a.start();
      const [stays, leaves, away] = [agent('dev-10'), agent('dev-11'), agent('dev-13')];
      const forger = await connect('dev-12', secrets.get('dev-12')!);
      const spy = await TestClient.connect(broker.serviceUrl, 'presence-spy', { username: 'operator', password: OPERATOR_TOKEN });
      await spy.subscribe('state/+/presence');
      const last = (seen: PresenceEvent[], d: string) => seen.filter((e) => e.deviceId === d).at(-1)?.online;
      try {
        for (const x of [stays, leaves, away]) await x.start();
        await eventually(async () => (['dev-10', 'dev-11', 'dev-13'].every((d) => last(seenA, d) === true) ? true : undefined), 10_000, 'the agents announced');
        // stop() closes the socket without a DISCONNECT: the broker publishes the agent's Will
        await leaves.stop();
        await eventually(async () => (last(seenA, 'dev-11') === false ? true : undefined), 10_000, "dev-11's Will");
        // a device cannot speak for another: the ACL drops it (proved by its own, delivered after)
        await forger.publish('state/dev-10/presence', '', { retain: true });
        await forger.publish('state/dev-12/presence', { online: true }, { retain: true });
        await eventually(async () => (last(seenA, 'dev-12') === true ? true : undefined), 10_000, "dev-12's own presence");
        assert.ok(!seenA.some((e) => e.deviceId === 'dev-10' && !e.online), `dev-12 made dev-10 look offline: ${JSON.stringify(seenA)}`);

        // an instance started now gets the devices online now from the broker's replay; the Will
        // cleared dev-11's message, so the broker holds none for it
        const seenB: PresenceEvent[] = [];
        const b = presenceInstance('presence-b', seenB);
        await b.start();
        try {
          await afterReplay(seenB);
          assert.deepEqual(['dev-10', 'dev-11', 'dev-12', 'dev-13'].map((d) => last(seenB, d)), [true, undefined, true, true]);
        } finally {
          await b.stop();
        }

        // A loses its connection (another client takes its id); dev-13 leaves meanwhile, and A
        // misses its Will. At its next connect the replay does not name dev-13: gone.
        const intruder = await mqtt.connectAsync(broker.serviceUrl, { clientId: 'presence-a', username: 'operator', password: OPERATOR_TOKEN, reconnectPeriod: 0 });
        await eventually(async () => (a.connected ? undefined : true), 10_000, 'A disconnected');
        await away.stop();
        await spy.next((m) => m.topic === 'state/dev-13/presence' && m.body === '');
        assert.equal(last(seenA, 'dev-13'), true, 'A did not hear the Will');
        (a as unknown as { client: mqtt.MqttClient }).client.reconnect(); // takes its id back from the intruder
        await eventually(async () => (last(seenA, 'dev-13') === false ? true : undefined), 10_000, 'dev-13 gone after the replay');
        assert.equal(last(seenA, 'dev-10'), true, 'dev-10, still connected, was named by the replay');
        assert.equal(seenA.filter((e) => e.deviceId === 'dev-10').length, 1, 'and not reported again: changes only');
        await intruder.endAsync(true).catch(() => undefined);
      } finally {
        for (const x of [stays, leaves, away]) await x.stop();
        await Promise.all([forger.end(), spy.end()]);
        await a.stop();
        await rm(tmp, { recursive: true, force: true });
      }
    });

    it("replays a fleet's presence beyond what the broker would queue at QoS 1 (65,535 in flight and 1,000 queued): none lost", async () => {
      const n = 70_000;
      const op = await mqtt.connectAsync(broker.serviceUrl, { username: 'operator', password: OPERATOR_TOKEN, reconnectPeriod: 0 });
      const topic = (i: number) => `state/fleet-${String(i).padStart(6, '0')}/presence`;
      // at QoS 1, as a publisher other than the agent may: the broker stores a retained
      // message with its QoS, and replays it at the lower of that and the subscription's
      const publishAll = async (payload: string) => {
        for (let i = 0; i < n; i += 5_000) await Promise.all(Array.from({ length: Math.min(5_000, n - i) }, (_, k) => op.publishAsync(topic(i + k), payload, { qos: 1, retain: true })));
      };
      await publishAll('{"online":true}');
      const seen: PresenceEvent[] = [];
      const c = presenceInstance('presence-c', seen);
      try {
        await c.start();
        await afterReplay(seen);
        assert.equal(new Set(seen.filter((e) => e.online && e.deviceId.startsWith('fleet-')).map((e) => e.deviceId)).size, n);
      } finally {
        await c.stop();
        await publishAll(''); // clears them: the later tests' instances need not replay them
        await op.endAsync();
      }
    });

    describe('two instances, one store', () => {
      let pgServer: TestPostgres | undefined;
      let tmp: string;
      const parts: { stop(): Promise<void> }[] = [];
      const handled = [0, 0];
      let storeName = 'SQLite (shared file)';

      before(async () => {
        tmp = await mkdtemp(path.join(os.tmpdir(), 'updraft-ext-'));
        const pgResult = await startTestPostgres();
        let url: string | undefined;
        if (pgResult.ok) {
          pgServer = pgResult.server;
          url = await pgServer.createDatabase();
          storeName = 'PostgreSQL';
        }
        for (const i of [0, 1]) {
          const store: StateStore = url ? new PostgresStore({ url }) : new SqliteStore({ path: path.join(tmp, 'shared.db') });
          await store.start();
          const bus = new ExternalBroker({ url: broker.serviceUrl, username: 'operator', password: OPERATOR_TOKEN, shareGroup: 'updraft', logger: silentLogger, clientId: `instance-${i}` });
          const replica = new ShadowReplica({ store, bus, events: new EventBus(), logger: silentLogger, limits: { maxDocumentBytes: 8192, maxDepth: 6 }, maxPending: 10_000 });
          const original = replica.submit.bind(replica);
          replica.submit = (msg) => {
            handled[i]!++;
            return original(msg);
          };
          await replica.start();
          await bus.start();
          parts.push(store, replica, bus);
        }
      });
      after(async () => {
        for (const p of parts.reverse()) await p.stop();
        await pgServer?.stop();
        await rm(tmp, { recursive: true, force: true });
      });

      it('answers every request exactly once, splits them between the instances and loses no update', async () => {
        const clients = await Promise.all(DEVICES.map((d) => connect(d, secrets.get(d)!)));
        await Promise.all(clients.map((c, i) => c.subscribe(`state/${DEVICES[i]}/update/accepted`, `state/${DEVICES[i]}/update/rejected`)));
        const perDevice = 10;
        // unconditional updates of one counter per device, all in flight at once: both instances
        // write the same shadows concurrently, and the store's version checks must serialise them
        await Promise.all(
          clients.flatMap((c, i) =>
            Array.from({ length: perDevice }, (_, n) => c.publish(`state/${DEVICES[i]}/update`, { state: { reported: { [`k${n}`]: n } }, clientToken: `t-${n}` })),
          ),
        );
        for (const [i, c] of clients.entries()) {
          for (let n = 0; n < perDevice; n++) await c.next((m) => m.body?.clientToken === `t-${n}`, 20_000);
          const answers = c.log.filter((m) => m.topic.endsWith('/accepted'));
          const rejected = c.log.filter((m) => m.topic.endsWith('/rejected'));
          assert.deepEqual(rejected, [], `${DEVICES[i]} rejections`);
          assert.equal(answers.length, perDevice, `${DEVICES[i]}: one answer per request`);
          assert.equal(new Set(answers.map((m) => m.body.clientToken)).size, perDevice);
          assert.deepEqual(answers.map((m) => m.body.version).sort((x: number, y: number) => x - y), Array.from({ length: perDevice }, (_, n) => n + 1), 'versions 1..n, none reused');
        }
        await clients[0]!.subscribe(`state/${DEVICES[0]}/get/accepted`);
        const get = await clients[0]!.request(`state/${DEVICES[0]}/get`, {});
        assert.equal(get.topic, `state/${DEVICES[0]}/get/accepted`);
        assert.equal(Object.keys(get.body.state.reported).length, perDevice, `every key kept (${storeName})`);
        assert.equal(handled[0]! + handled[1]!, DEVICES.length * perDevice + 1, 'each request reached exactly one instance');
        assert.ok(handled[0]! > 0 && handled[1]! > 0, `both instances took requests: ${handled.join(' / ')}`);
        await Promise.all(clients.map((c) => c.end()));
      });
    });
  });
}
