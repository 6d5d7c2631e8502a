/**
 * A CONNECT whose credentials cannot be checked (the store does not answer: here a private
 * PostgreSQL stopped under a real server) is refused with CONNACK 3, Server unavailable,
 * which clients retry, not 5, Not authorized, which says the device may not connect: a
 * simulated fleet gave up devices that reconnected during a store outage of a few seconds
 * (review, 2026-12-08). Real server, real MQTT over TCP, a real PostgreSQL.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { connackCode } from '../helpers/mqtt-client.ts';
import { startTestPostgres, unavailable, type TestPostgres } from '../helpers/postgres.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';

describe('the embedded broker while the store cannot be read', async () => {
  const pgResult = await startTestPostgres();
  const skip = pgResult.ok ? false : unavailable(pgResult, 'a store outage at CONNECT');
  let pgServer: TestPostgres;
  let ts: TestServer;

  before(async () => {
    if (!pgResult.ok) return;
    pgServer = pgResult.server;
    ts = await startTestServer({ flags: { db: await pgServer.createDatabase() } });
  });
  after(async () => {
    await ts?.close();
    if (pgResult.ok) await pgResult.server.stop().catch(() => undefined);
  });

  it('refuses a CONNECT it cannot check with 3 (Server unavailable), not 5 (Not authorized)', { skip }, async () => {
    const secret = await registerDevice(ts, 'outage-1');
    const credentials = { clientId: 'outage-1', username: 'outage-1', password: secret };
    assert.equal(await connackCode(ts.mqttUrl, credentials), undefined, 'admitted while the store answers');
    assert.equal(await connackCode(ts.mqttUrl, { ...credentials, password: 'wrong' }), 4, 'a wrong secret is refused for what it is');
    await pgServer.stop(); // the database goes away: its sessions are ended, its port refuses
    assert.equal(await connackCode(ts.mqttUrl, credentials), 3, 'the credentials could not be checked: retry later');
  });
});
