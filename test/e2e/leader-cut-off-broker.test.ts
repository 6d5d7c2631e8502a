/** The rollouts' leader cut off from the external broker while another instance reaches it: it gives the lease up, and the other instance sends the job. */
import assert from 'node:assert/strict';
import { cp, mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ExternalBroker } from '../../src/broker/external-broker.ts';
import { createLogger } from '../../src/util/logger.ts';
import { eventually } from '../helpers/cli.ts';
import { findMosquitto, startTestMosquitto, type TestMosquitto } from '../helpers/mosquitto.ts';
import { startTestPostgres, type TestPostgres } from '../helpers/postgres.ts';
import { apiJson, startTestServer, type TestServer } from '../helpers/server.ts';
import { startRelay, type TcpRelay } from '../helpers/tcp-relay.ts';

const TOKEN = `updr_leader_cut_test_${'l'.repeat(24)}`;
const found = findMosquitto();
const pgr = await startTestPostgres();

describe('leader cut off from the broker', () => {
  let broker: TestMosquitto;
  let relay: TcpRelay;
  let pg: TestPostgres;
  let a: TestServer;
  let b: TestServer;
  const linesA: string[] = [];
  before(async () => {
    if (!found.ok || !pgr.ok) throw new Error('needs mosquitto and postgres');
    pg = pgr.server;
    const db = await pg.createDatabase();
    broker = await startTestMosquitto(found.bin, { operatorToken: TOKEN, devices: [], secrets: new Map() });
    relay = await startRelay({ host: '127.0.0.1', port: broker.servicePort });
    const dataA = await mkdtemp(path.join(os.tmpdir(), 'leader-cut-a-'));
    await writeFile(path.join(dataA, 'operator-token'), TOKEN + '\n', { mode: 0o600 });
    a = await startTestServer({ dataDir: dataA, logger: createLogger({ level: 'info', write: (l) => linesA.push(l) }), flags: { db, 'mqtt-url': `mqtt://127.0.0.1:${relay.port}`, 'mqtt-tls-port': -1 } });
    await eventually(async () => (linesA.some((l) => l.includes('driving rollouts')) ? true : undefined), 20_000, 'A leads');
    const dataB = await mkdtemp(path.join(os.tmpdir(), 'leader-cut-b-'));
    await cp(dataA, dataB, { recursive: true });
    b = await startTestServer({ dataDir: dataB, logger: createLogger({ level: 'error', write: () => {} }), flags: { db, 'mqtt-url': broker.serviceUrl, 'mqtt-tls-port': -1 } });
  });
  after(async () => {
    await b?.close().catch(() => {});
    await relay?.up().catch(() => {});
    await a?.close().catch(() => {});
    await relay?.stop();
    await broker?.stop();
    await pg?.stop();
  });
  it('a job started while only the leader is cut off is sent by some instance', { timeout: 120_000 }, async () => {
    const ids = ['l-1', 'l-2'];
    for (const deviceId of ids) assert.equal((await apiJson(a, 'POST', '/api/v1/devices', { deviceId })).status, 201);
    const up = await fetch(`${a.httpUrl}/api/v1/artifacts?name=fw&version=2.0.0`, { method: 'POST', headers: { authorization: `Bearer ${a.token}` }, body: new Uint8Array(2048) });
    assert.equal(up.status, 201);
    await relay.down();
    await eventually(async () => (!(a.server.bus as ExternalBroker).connected ? true : undefined), 15_000, 'A cut off');
    assert.equal((b.server.bus as ExternalBroker).connected, true);
    const created = await apiJson(a, 'POST', '/api/v1/jobs', { artifact: 'fw@2.0.0', targets: { devices: ids } });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const jobId = (created.body.job?.jobId ?? created.body.jobId) as string;
    await new Promise((r) => setTimeout(r, 15_000));
    const ex = await apiJson(b, 'GET', `/api/v1/jobs/${jobId}/executions`);
    const rows = (ex.body.executions ?? ex.body.items ?? ex.body) as { deviceId: string; dispatchedAt?: number }[];
    assert.ok(linesA.some((l) => l.includes('no longer driving rollouts: the MQTT broker has not been reachable')), 'A says why it gave the lead up');
    assert.ok(rows.some((r) => r.dispatchedAt !== undefined), `nothing dispatched in 15 s while B reaches the broker; A still leads: ${linesA.filter((l) => /lease|driving|MQTT broker cannot/.test(l)).join(' | ')}`);
  });
});
