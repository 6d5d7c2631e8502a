/**
 * A leaked operator token, replaced without a restart: refused by the API and at MQTT
 * CONNECT from then on, the operator's MQTT connections and live event streams closed, the
 * new one in the token file (kept at the next start). Real HTTP, MQTT and the CLI.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { runCli } from '../helpers/cli.ts';
import { TestClient, connackCode } from '../helpers/mqtt-client.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

describe('replacing the operator token', () => {
  let ts: TestServer;
  let dir: string;
  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-token-'));
    ts = await startTestServer();
  });
  after(async () => {
    await ts.close();
    await rm(dir, { recursive: true, force: true });
  });
  /** `p`, or a rejection naming `what` after 10 s. */
  const within = <T>(p: Promise<T>, what: string) =>
    Promise.race([p, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${what} within 10 s`)), 10_000).unref())]);
  const status = async (token: string) => (await fetch(`${ts.httpUrl}/api/v1/artifacts`, { headers: { authorization: `Bearer ${token}` } })).status;

  it('refuses the old token at once, closes what it had opened, and keeps the new one across a restart', async () => {
    const old = ts.token;
    const operator = await TestClient.connect(ts.mqttUrl, 'ops-tool', { username: 'operator', password: old });
    const mqttClosed = new Promise<void>((resolve) => operator.client.once('close', () => resolve()));
    const stream = await fetch(`${ts.httpUrl}/api/v1/events`, { headers: { authorization: `Bearer ${old}` } });
    assert.equal(stream.status, 200);
    const streamEnded = (async () => {
      for await (const _ of stream.body!) {
        // the stream's comments until the server ends it
      }
    })();

    const cli = await runCli(['token', 'rotate', '--server', ts.httpUrl, '--token', old]);
    assert.equal(cli.code, 0, cli.stderr);
    const next = /new operator token \(shown once; .*\): (updr_\S+)\n/.exec(cli.stdout)?.[1];
    assert.ok(next, cli.stdout);
    assert.match(cli.stdout, / {2}the old one is refused from now on; 1 operator MQTT connection\(s\) closed, live event streams ended\n/);
    await within(mqttClosed, "the operator's MQTT connection closed");
    await within(streamEnded, 'the event stream ended');

    assert.equal(await status(old), 401);
    assert.equal(await status(next), 200);
    assert.equal(await connackCode(ts.mqttUrl, { clientId: 'ops-2', username: 'operator', password: old }), 4);
    assert.equal(await connackCode(ts.mqttUrl, { clientId: 'ops-2', username: 'operator', password: next }), undefined);
    const file = path.join(ts.dataDir, 'operator-token');
    assert.equal((await readFile(file, 'utf8')).trim(), next);
    assert.equal((await stat(file)).mode & 0o777, 0o600);
    assert.equal((await runCli(['token', 'rotate', '--server', ts.httpUrl, '--token', old])).code, 2, 'the old token cannot rotate it back');

    await ts.stop();
    ts = await startTestServer({ dataDir: ts.dataDir });
    assert.equal(ts.token, next, 'read at the next start');
  });

  it('--offline writes a new token for the next start into a data directory', async () => {
    const data = path.join(dir, 'offline');
    const r = await runCli(['token', 'rotate', '--offline', '--data-dir', data]);
    assert.equal(r.code, 0, r.stderr);
    const token = /: (updr_\S+)\n/.exec(r.stdout)?.[1];
    assert.equal((await readFile(path.join(data, 'operator-token'), 'utf8')).trim(), token);
    assert.equal((await stat(path.join(data, 'operator-token'))).mode & 0o777, 0o600);
  });
});
