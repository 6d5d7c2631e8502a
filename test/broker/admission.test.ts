/**
 * Admission control at the embedded broker (mqtt.maxConnections, mqtt.maxConnectRate): a
 * CONNECT beyond a limit gets CONNACK 3 (server unavailable), the operator is never turned
 * away, and a refused agent comes back after its backoff once there is room.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { mkdtemp, rm } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { MemoryAgentStateStore, SimulatedInstaller, UpdateAgent } from '../../src/agent/index.ts';
import { OPERATOR_USERNAME } from '../../src/broker/authenticator.ts';
import { ConnectAdmission } from '../../src/broker/connect-admission.ts';
import { silentLogger } from '../../src/util/logger.ts';
import { TestClient, connackCode } from '../helpers/mqtt-client.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';

async function refusals(ts: TestServer): Promise<{ refusedConnections: number; refusedAtFileLimit: number }> {
  const res = await fetch(`${ts.httpUrl}/api/v1/metrics`, { headers: { authorization: `Bearer ${ts.token}` } });
  assert.equal(res.status, 200);
  return ((await res.json()) as { mqtt: { refusedConnections: number; refusedAtFileLimit: number } }).mqtt;
}

async function refusedCount(ts: TestServer): Promise<number> {
  return (await refusals(ts)).refusedConnections;
}

/** Waits until the broker has let go of connections that were closed: at most `n` are left. */
async function heldAtMost(ts: TestServer, n: number): Promise<void> {
  while (ts.server.broker.connectedClients > n) await new Promise((r) => setTimeout(r, 10));
}

describe('connection admission: the decision', () => {
  it('refuses beyond maxConnections, whatever the rate', () => {
    const a = new ConnectAdmission({ maxConnections: 2, maxConnectRate: 0 });
    assert.equal(a.admit(0), undefined);
    assert.equal(a.admit(1), undefined);
    assert.equal(a.admit(2), 'connections');
    assert.equal(a.admit(1), undefined, 'room again once one left');
  });

  it('admits bursts of one second of maxConnectRate, then refills with time', () => {
    let t = 0;
    const a = new ConnectAdmission({ maxConnections: 0, maxConnectRate: 4 }, () => t);
    for (let i = 0; i < 4; i++) assert.equal(a.admit(0), undefined, `connect ${i + 1} of the burst`);
    assert.equal(a.admit(0), 'rate');
    t = 240; // 0.96 of a token
    assert.equal(a.admit(0), 'rate');
    t = 260; // 1.04
    assert.equal(a.admit(0), undefined);
    assert.equal(a.admit(0), 'rate');
    t = 60_000; // a long quiet spell refills one second's worth, no more
    for (let i = 0; i < 4; i++) assert.equal(a.admit(0), undefined);
    assert.equal(a.admit(0), 'rate');
  });

  it('admits everything without limits, and rejects limits that are not counts', () => {
    const a = new ConnectAdmission({ maxConnections: 0, maxConnectRate: 0 });
    for (let i = 0; i < 10_000; i++) assert.equal(a.admit(i), undefined);
    assert.throws(() => new ConnectAdmission({ maxConnections: -1, maxConnectRate: 0 }), /maxConnections must be a non-negative integer/);
    assert.throws(() => new ConnectAdmission({ maxConnections: 0, maxConnectRate: 2.5 }), /maxConnectRate must be a non-negative integer/);
  });
});

describe('connection admission: the embedded broker', () => {
  let ts: TestServer;
  const secrets = new Map<string, string>();
  before(async () => {
    ts = await startTestServer({ flags: { 'mqtt-max-connections': 2 } });
    for (const id of ['dev-1', 'dev-2', 'dev-3']) secrets.set(id, await registerDevice(ts, id));
  });
  after(() => ts.close());
  const as = (id: string) => ({ clientId: id, username: id, password: secrets.get(id)! });

  it('refuses a connection beyond mqtt.maxConnections with CONNACK 3, never the operator, and admits again once one left', async () => {
    const one = await TestClient.connect(ts.mqttUrl, 'dev-1', as('dev-1'));
    const two = await TestClient.connect(ts.mqttUrl, 'dev-2', as('dev-2'));
    const before = await refusedCount(ts);
    assert.equal(await connackCode(ts.mqttUrl, as('dev-3')), 3, 'server unavailable');
    assert.equal(await connackCode(ts.mqttUrl, { clientId: 'ghost', username: 'ghost', password: 'x' }), 3, 'refused before its credentials are even read');
    assert.equal(await connackCode(ts.mqttUrl, { clientId: 'ops', username: OPERATOR_USERNAME, password: ts.token }), undefined, 'the operator is not a device');
    assert.equal(await connackCode(ts.mqttUrl, { clientId: 'ops', username: OPERATOR_USERNAME, password: 'wrong' }), 4, "the operator's token is still checked");
    assert.equal(await refusedCount(ts), before + 2);
    assert.equal((await refusals(ts)).refusedAtFileLimit, 0, 'admission refusals are not counted as open-file-limit ones');
    assert.equal(one.client.connected && two.client.connected, true, 'those admitted stay connected');
    await two.end();
    await heldAtMost(ts, 1);
    assert.equal(await connackCode(ts.mqttUrl, as('dev-3')), undefined);
    await one.end();
    await heldAtMost(ts, 0);
  });

  it('a refused agent comes back after its backoff and is admitted once there is room', async () => {
    const holders = [await TestClient.connect(ts.mqttUrl, 'dev-1', as('dev-1')), await TestClient.connect(ts.mqttUrl, 'dev-2', as('dev-2'))];
    const dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-admission-'));
    const agent = new UpdateAgent({
      deviceId: 'dev-3',
      username: 'dev-3',
      password: secrets.get('dev-3')!,
      brokerUrl: ts.mqttUrl,
      installer: new SimulatedInstaller({ initial: { name: 'fw', version: '1.0.0' } }),
      stateStore: new MemoryAgentStateStore(),
      stateDir: dir,
      logger: silentLogger,
      allowUnsigned: true,
      maxRetryDelayMs: 400,
      mqttOptions: { reconnectPeriod: 50 },
    });
    const online = new Promise<void>((resolve) => agent.on('connection', (e) => e.online && resolve()));
    try {
      const refusedBefore = await refusedCount(ts);
      await agent.start();
      // refused at least twice (its first attempt and a retry) while the two others hold the room
      while ((await refusedCount(ts)) < refusedBefore + 2) await new Promise((r) => setTimeout(r, 50));
      await holders[0]!.end();
      await online;
      assert.equal(ts.server.broker.connectedClients, 2, 'the agent and the device still connected');
    } finally {
      await agent.stop();
      for (const h of holders) await h.end().catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('connection admission: mqtt.maxConnectRate', () => {
  let ts: TestServer;
  before(async () => {
    ts = await startTestServer({ flags: { 'mqtt-max-connect-rate': 1 } });
  });
  after(() => ts.close());

  it('refuses connections beyond the rate with CONNACK 3', async () => {
    const ids = ['dev-1', 'dev-2', 'dev-3', 'dev-4', 'dev-5', 'dev-6'];
    const secrets = await Promise.all(ids.map((id) => registerDevice(ts, id)));
    const before = await refusedCount(ts);
    // one token a second, one in the bucket: of six devices connecting at once, at most one
    // more than the seconds that passed gets in, however slow the machine; the others get 3
    const started = performance.now();
    const codes = await Promise.all(ids.map((id, i) => connackCode(ts.mqttUrl, { clientId: id, username: id, password: secrets[i]! })));
    const seconds = (performance.now() - started) / 1000;
    const admitted = codes.filter((c) => c === undefined).length;
    assert.ok(admitted >= 1, 'the first gets in');
    assert.ok(admitted <= 1 + Math.floor(seconds), `${admitted} admitted in ${seconds.toFixed(2)} s`);
    assert.deepEqual(codes.filter((c) => c !== undefined), Array(ids.length - admitted).fill(3), 'the others: server unavailable');
    assert.equal(await refusedCount(ts), before + ids.length - admitted, 'each refusal counted');
  });
});

describe('agent reconnection', () => {
  it('backs off between attempts: each pause at least half of the doubled period', async () => {
    // a "broker" that drops every connection at once: the agent can never connect
    const attempts: number[] = [];
    const server = net.createServer((socket) => {
      attempts.push(performance.now());
      socket.destroy();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as net.AddressInfo;
    const dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-backoff-'));
    const agent = new UpdateAgent({
      deviceId: 'dev-1',
      brokerUrl: `mqtt://127.0.0.1:${port}`,
      installer: new SimulatedInstaller({ initial: { name: 'fw', version: '1.0.0' } }),
      stateStore: new MemoryAgentStateStore(),
      stateDir: dir,
      logger: silentLogger,
      allowUnsigned: true,
      maxRetryDelayMs: 10_000,
      mqttOptions: { reconnectPeriod: 20 },
    });
    try {
      await agent.start();
      while (attempts.length < 6) await new Promise((r) => setTimeout(r, 20));
    } finally {
      await agent.stop();
      server.close();
      await rm(dir, { recursive: true, force: true });
    }
    // the pause after the k-th failed attempt (k from 0) is 20 ms × 2^k with jitter: at least
    // half of it. Timers never fire early, so a slow machine only makes the pauses longer; a
    // fixed period (no backoff) gives pauses of 20 ms and fails from the third on.
    const pauses = attempts.slice(1).map((t, i) => t - attempts[i]!);
    pauses.forEach((p, k) => assert.ok(p >= 10 * 2 ** k - 2, `pause ${k}: ${p.toFixed(1)} ms, expected at least ${10 * 2 ** k} ms (all: ${pauses.map((x) => x.toFixed(0)).join(', ')})`));
  });
});
