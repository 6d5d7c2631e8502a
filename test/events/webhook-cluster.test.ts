/**
 * Webhooks of instances on one PostgreSQL database: real in-process servers on a private
 * PostgreSQL and a private Mosquitto (the event relay), a real HTTP receiver.
 *
 * - A delivery recorded from a relayed event (the relay leaves a job's spec out) carries the
 *   job's real wave count, not 1.
 * - An instance whose own clock is off from the database's (which job times are kept by)
 *   judges a change's age by the database's clock: one two minutes ahead took every job's
 *   creation for a job seen again long after it started, and announced no start.
 */
import assert from 'node:assert/strict';
import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { ApiClient } from '../../src/cli/api-client.ts';
import type { WebhookDelivery } from '../../src/events/webhook-notifier.ts';
import { eventually } from '../helpers/cli.ts';
import { startWebhookReceiver, type WebhookReceiver } from '../helpers/webhook-receiver.ts';
import { findMosquitto, mosquittoUnavailable, startTestMosquitto, type TestMosquitto } from '../helpers/mosquitto.ts';
import { startTestPostgres, unavailable, type TestPostgres } from '../helpers/postgres.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact } from '../security/support.ts';

const TOKEN = `updr_webhook_cluster_test_${'x'.repeat(24)}`;
const mosquitto = findMosquitto();
const pgResult = await startTestPostgres();

if (!mosquitto.ok || !pgResult.ok) {
  const message = !mosquitto.ok ? mosquittoUnavailable(mosquitto.reason, 'webhook cluster tests') : unavailable(pgResult as { ok: false; reason: string }, 'webhook cluster tests');
  it('webhooks of instances on one database', (t) => t.skip(message));
} else {
  describe('webhooks of instances on one PostgreSQL database', () => {
    const pg: TestPostgres = pgResult.server;
    let broker: TestMosquitto;
    let receiver: WebhookReceiver;
    let url: string;
    let root: string;
    const running: TestServer[] = [];
    const got: WebhookDelivery[] = [];

    before(async () => {
      root = await mkdtemp(path.join(os.tmpdir(), 'updraft-hook-cluster-'));
      broker = await startTestMosquitto(mosquitto.bin, { operatorToken: TOKEN, devices: [], secrets: new Map() });
      receiver = await startWebhookReceiver(got);
      url = receiver.url;
    });
    after(async () => {
      for (const ts of running) await ts.stop().catch(() => {});
      await receiver.close();
      await broker?.stop();
      await pg.stop();
      await rm(root, { recursive: true, force: true });
    });

    /** An in-process instance on `db` with `dataDir` (the operator token the broker admits), relaying events through the broker. */
    const instance = async (db: string, dataDir: string, flags: Record<string, unknown> = {}) => {
      const ts = await startTestServer({ dataDir, flags: { db, 'mqtt-url': broker.serviceUrl, 'mqtt-tls-port': -1, ...flags } });
      running.push(ts);
      return { ts, api: new ApiClient({ server: ts.httpUrl, token: TOKEN }) };
    };
    const newDataDir = async (name: string) => {
      const dir = path.join(root, name);
      await mkdir(dir, { recursive: true });
      await writeFile(path.join(dir, 'operator-token'), TOKEN + '\n', { mode: 0o600 });
      return dir;
    };

    it("a delivery recorded from another instance's relayed event carries the job's wave count", { timeout: 120_000 }, async () => {
      got.length = 0;
      const db = await pg.createDatabase();
      // A drives rollouts and has no webhook.url (yet: a rolling change of the setting); B has it
      const dataA = await newDataDir('relay-a');
      const a = await instance(db, dataA);
      await eventually(async () => (a.ts.server.rollouts.engine.isLeader ? true : undefined), 15_000, 'A leads');
      const dataB = path.join(root, 'relay-b');
      await cp(dataA, dataB, { recursive: true });
      const b = await instance(db, dataB, { 'webhook-url': url });
      assert.equal(b.ts.server.rollouts.engine.isLeader, false);

      await addArtifact(a.ts, '2.0.0', Buffer.from('firmware 2.0.0 '.repeat(100)));
      for (const deviceId of ['r-1', 'r-2', 'r-3']) await a.api.call('POST', '/api/v1/devices', { deviceId });
      const { job } = await a.api.call<{ job: { jobId: string } }>('POST', '/api/v1/jobs', { artifact: 'fw@2.0.0', targets: { devices: ['r-1', 'r-2', 'r-3'] }, plan: { waves: [{ count: 1 }, { percent: 50 }, { percent: 100 }] } });
      await a.api.call('POST', `/api/v1/jobs/${job.jobId}/pause`);
      // B saw both through the relay and recorded them (A has nothing to record them with)
      const recorded = () => b.ts.server.store.listSettings('webhook:');
      await eventually(async () => ((await recorded()).length === 2 ? true : undefined), 15_000, 'both changes recorded by B');
      await sleep(300);
      assert.equal(got.length, 0, 'B does not lead: nothing sent yet');
      // A stops: B takes the lead and sends what it recorded
      await a.ts.stop();
      running.splice(running.indexOf(a.ts), 1);
      await eventually(async () => (got.length >= 2 ? true : undefined), 30_000, 'the two sent by B once it leads');
      assert.deepEqual(
        got.map((d) => [d.job.status, d.job.previousStatus ?? null, d.job.wave, d.job.waves]),
        [
          ['IN_PROGRESS', null, 1, 3],
          ['PAUSED', 'IN_PROGRESS', 1, 3],
        ],
      );
      await b.ts.stop();
      running.splice(running.indexOf(b.ts), 1);
    });

    it("an instance whose clock is two minutes ahead of the database's announces a job's start", { timeout: 60_000 }, async () => {
      got.length = 0;
      const db = await pg.createDatabase();
      const dataDir = await newDataDir('ahead');
      // this machine's clock two minutes ahead of the database's (which runs on the real one)
      const realNow = Date.now;
      Date.now = () => realNow() + 120_000;
      try {
        const { ts, api } = await instance(db, dataDir, { 'webhook-url': url });
        assert.ok(Math.abs(ts.server.clusterClock!.offsetMs + 120_000) < 2_000, `offset ${ts.server.clusterClock!.offsetMs} ms`);
        await addArtifact(ts, '2.0.0', Buffer.from('firmware 2.0.0 '.repeat(100)));
        await api.call('POST', '/api/v1/devices', { deviceId: 'c-1' });
        const { job } = await api.call<{ job: { jobId: string } }>('POST', '/api/v1/jobs', { artifact: 'fw@2.0.0', targets: { devices: ['c-1'] } });
        await api.call('POST', `/api/v1/jobs/${job.jobId}/pause`);
        await eventually(async () => (got.some((d) => d.job.status === 'PAUSED') ? true : undefined), 15_000, 'the pause posted');
        await sleep(300);
        assert.deepEqual(
          got.map((d) => [d.job.jobId === job.jobId, d.job.status, d.job.previousStatus ?? null]),
          [
            [true, 'IN_PROGRESS', null],
            [true, 'PAUSED', 'IN_PROGRESS'],
          ],
          JSON.stringify(got),
        );
      } finally {
        Date.now = realNow;
      }
    });
  });
}
