/**
 * No secret, token or URL signature in logs (issue 5, docs/design.md §6): every line the server
 * and the agents write at debug level during full updates (one by pre-signed URL, one by
 * temporary credential, refused downloads and a refused connection included) is captured and
 * searched for the device secrets, the operator token, the download tokens and the URL
 * signatures that were in play.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import mqtt from 'mqtt';
import { UpdateAgent } from '../../src/agent/agent.ts';
import { SlotInstaller } from '../../src/agent/slot-installer.ts';
import { loadConfig } from '../../src/config/load-config.ts';
import { UpdraftServer } from '../../src/server/updraft-server.ts';
import { createLogger } from '../../src/util/logger.ts';
import { eventually } from '../helpers/cli.ts';
import { TestClient } from '../helpers/mqtt-client.ts';

describe('no secret in logs', () => {
  const lines: string[] = [];
  let dir: string;
  let server: UpdraftServer;
  let httpUrl: string;
  let mqttUrl: string;
  const agents: UpdateAgent[] = [];
  const secrets: string[] = [];

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-logs-'));
    const config = loadConfig({ flags: { 'data-dir': path.join(dir, 'server'), 'mqtt-port': 0, 'mqtt-tls-port': 0, 'http-port': 0, 'mqtt-host': '127.0.0.1', 'http-host': '127.0.0.1', 'log-level': 'debug' } });
    server = new UpdraftServer(config, { logger: createLogger({ level: 'debug', write: (l) => lines.push(l) }) });
    await server.start();
    httpUrl = `http://127.0.0.1:${server.http.port}`;
    mqttUrl = `mqtt://127.0.0.1:${server.broker.port}`;
  });
  after(async () => {
    await Promise.all(agents.map((a) => a.stop()));
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('a full update by URL and by token, with refusals, logs none of them', async () => {
    const auth = { authorization: `Bearer ${server.operatorToken}` };
    const added = await fetch(`${httpUrl}/api/v1/artifacts?name=fw&version=2.0.0`, { method: 'POST', headers: auth, body: new Uint8Array(randomBytes(30_000)) });
    assert.equal(added.status, 201);
    const ids = ['dev-url', 'dev-token'];
    for (const deviceId of ids) {
      const { secret } = await server.registry.register({ deviceId });
      secrets.push(secret);
      const agent = new UpdateAgent({
        deviceId,
        username: deviceId,
        password: secret,
        brokerUrl: mqttUrl,
        installer: new SlotInstaller({ dir: path.join(dir, deviceId), initialVersion: '1.0.0', initialName: 'fw' }),
        stateDir: path.join(dir, deviceId, '.updraft'),
        signingPublicKey: server.security.signingKey.publicKeyPem,
        downloadAuth: deviceId === 'dev-token' ? 'token' : 'url',
        logger: createLogger({ level: 'debug', write: (l) => lines.push(l) }),
      });
      agents.push(agent);
      await agent.start();
    }
    // what an eavesdropping operator client sees, to know which signatures and tokens were in play
    const watch = await TestClient.connect(mqttUrl, 'watch-logs', { username: 'operator', password: server.operatorToken });
    await watch.subscribe('state/+/update/delta', 'state/+/credentials/request/accepted');
    await eventually(async () => (await Promise.all(ids.map((id) => server.store.getShadow(id, '')))).every((s) => s?.state.reported?.software) || undefined, 15_000, 'devices reported');
    const deployed = await fetch(`${httpUrl}/api/v1/deployments`, { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ devices: ids, artifact: 'fw@2.0.0' }) });
    assert.equal(deployed.status, 201);
    const jobId = ((await deployed.json()) as { job: { jobId: string } }).job.jobId;
    await eventually(async () => {
      await server.tracker.idle();
      const xs = await Promise.all(ids.map((id) => server.store.getExecution(jobId, id)));
      return xs.every((x) => x?.status === 'SUCCEEDED') || undefined;
    }, 30_000, 'both devices updated');

    const urls = watch.log.filter((m) => m.topic.endsWith('/update/delta')).map((m) => String(m.body.state.software?.url ?? '')).filter(Boolean);
    const sigs = urls.map((u) => new URL(u).searchParams.get('sig')!);
    const tokens = watch.log.filter((m) => m.topic.endsWith('/credentials/request/accepted')).map((m) => m.body.token as string);
    assert.ok(sigs.length > 0 && tokens.length > 0, 'a URL and a token were issued');

    // refusals are logged too: a tampered URL, a token for another device, a wrong secret
    const bad = new URL(urls[0]!);
    bad.searchParams.set('exp', String(Number(bad.searchParams.get('exp')) + 1));
    assert.equal((await fetch(bad)).status, 403);
    assert.equal((await fetch(`${httpUrl}/v1/download/fw/2.0.0?device=dev-url`, { headers: { authorization: `Bearer ${tokens[0]}` } })).status, 403);
    const wrong = await mqtt.connectAsync(mqttUrl, { clientId: 'dev-url', username: 'dev-url', password: `${secrets[0]}x`, reconnectPeriod: 0 }).catch((e: Error) => e);
    assert.ok(wrong instanceof Error);
    await watch.end();

    const log = lines.join('\n');
    if (process.env.UPDRAFT_TEST_LOG === '1') console.error(log);
    assert.ok(lines.length > 10, `debug lines were written (${lines.length})`);
    assert.ok(log.includes('download refused') && log.includes('device refused at CONNECT'), 'refusals are logged');
    for (const s of secrets) assert.ok(!log.includes(s) && !log.includes(`${s}x`), 'a device secret is in the log');
    assert.ok(!log.includes(server.operatorToken), 'the operator token is in the log');
    for (const t of tokens) assert.ok(!log.includes(t) && !log.includes(t.split('.')[1]!), 'a download token is in the log');
    for (const sig of sigs) assert.ok(!log.includes(sig), 'a URL signature is in the log');
    assert.ok(!/sig=[A-Za-z0-9_-]{8,}/.test(log), 'a sig= value is in the log');
    assert.ok(!log.includes('PRIVATE KEY'), 'a private key is in the log');
  });
});
