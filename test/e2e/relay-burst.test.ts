/**
 * A burst of events on one instance reaches the other over a Mosquitto configured as
 * `updraft broker mosquitto-config` writes it (max_packet_size 65536), and the instance stops
 * cleanly after it (soak QA, 2026-12-06). The event relay packed up to 500 events into one
 * message with no byte limit: a job over a few hundred devices made one of well over 64 KiB,
 * Mosquitto closed the relay's connection on it ("disconnected due to oversize packet"), mqtt.js
 * sent it again after every reconnect, and from then on nothing of that instance reached the
 * other (a device registered through it neither), while its SIGTERM waited 30 s for the
 * acknowledgement and exited 1.
 *
 * Two real `updraft server` processes on one PostgreSQL and one Mosquitto; the other
 * instance's live event stream (`GET /api/v1/events`) is what is watched, as the dashboard and
 * `updraft broker mosquitto-config --watch` follow it.
 */
import assert from 'node:assert/strict';
import { cp, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ApiClient } from '../../src/cli/api-client.ts';
import { registerFleet } from '../../src/sim/register-fleet.ts';
import { eventually, startCli, type CliProcess } from '../helpers/cli.ts';
import { freePort } from '../helpers/free-port.ts';
import { findMosquitto, mosquittoUnavailable, startTestMosquitto, type TestMosquitto } from '../helpers/mosquitto.ts';
import { startTestPostgres, unavailable, type TestPostgres } from '../helpers/postgres.ts';

const DEVICES = 400;
const TOKEN = `updr_relay_burst_test_${'b'.repeat(24)}`;

const mosquitto = findMosquitto();
const pgResult = await startTestPostgres();

if (!mosquitto.ok || !pgResult.ok) {
  const message = !mosquitto.ok ? mosquittoUnavailable(mosquitto.reason, 'relay burst test') : unavailable(pgResult as { ok: false; reason: string }, 'relay burst test');
  it('a burst of events reaches the other instance', (t) => t.skip(message));
} else {
  describe('a burst of events between two instances on Mosquitto and PostgreSQL', () => {
    const pg: TestPostgres = pgResult.server;
    let broker: TestMosquitto;
    let dir: string;
    let dbUrl: string;
    const servers: CliProcess[] = [];
    const streams: AbortController[] = [];

    before(async () => {
      dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-relay-burst-'));
      dbUrl = await pg.createDatabase();
      broker = await startTestMosquitto(mosquitto.bin, { operatorToken: TOKEN, devices: [], secrets: new Map() });
    });
    after(async () => {
      for (const s of streams) s.abort();
      await Promise.all(servers.map((s) => s.kill('SIGKILL')));
      await broker?.stop();
      await pg.stop();
      if (dir) await rm(dir, { recursive: true, force: true });
    });

    it('a job of 400 devices created and cancelled on A is seen on B, so is a device registered after it; A stops cleanly', { timeout: 240_000 }, async () => {
      const dataA = path.join(dir, 'a');
      await mkdir(dataA, { recursive: true });
      await writeFile(path.join(dataA, 'operator-token'), TOKEN + '\n', { mode: 0o600 });
      const start = async (dataDir: string) => {
        const httpPort = await freePort();
        const p = startCli(['server', '--data-dir', dataDir, '--mqtt-url', broker.serviceUrl, '--db', dbUrl, '--http-port', String(httpPort), '--http-host', '127.0.0.1', '--mqtt-tls-port', '-1', '--log-level', 'info']);
        servers.push(p);
        await p.waitFor(/HTTP API and downloads on/, 60_000);
        return { p, api: new ApiClient({ server: `http://127.0.0.1:${httpPort}`, token: TOKEN }) };
      };
      const a = await start(dataA);
      await a.p.waitFor(/driving rollouts/, 30_000);
      const dataB = path.join(dir, 'b');
      await cp(dataA, dataB, { recursive: true });
      const b = await start(dataB);

      const executions = new Map<string, string>();
      const credentials = new Set<string>();
      streams.push(follow(b.api, 'execution.changed', (e) => executions.set(e.deviceId as string, e.status as string)));
      streams.push(follow(b.api, 'device.credentials', (e) => credentials.add(e.deviceId as string)));
      // the streams are open: a device registered through A shows on B
      await a.api.call('POST', '/api/v1/devices', { deviceId: 'before-burst' });
      await eventually(async () => (credentials.has('before-burst') ? true : undefined), 30_000, "B's stream showing a device registered through A");

      await a.api.call('POST', '/api/v1/artifacts?name=fw&version=2.0.0', Buffer.from('firmware 2.0.0 '.repeat(100)));
      await registerFleet(a.api, 'burst-', DEVICES);
      // on A, which drives rollouts: the whole fleet in one wave, its executions written at once
      const created = await a.api.call<{ job: { jobId: string } }>('POST', '/api/v1/jobs', { artifact: 'fw@2.0.0', targets: { query: 'tags = sim' }, plan: { waves: [{ percent: 100 }] } });
      const jobId = created.job.jobId;
      await eventually(async () => {
        const v = await a.api.call<{ counts: Record<string, number> }>('GET', `/api/v1/jobs/${jobId}?limit=1`);
        return Object.values(v.counts).reduce((n, c) => n + c, 0) === DEVICES ? true : undefined;
      }, 60_000, 'every execution written');
      await a.api.call('POST', `/api/v1/jobs/${jobId}/cancel`, {});
      await eventually(async () => ([...executions.values()].filter((s) => s === 'CANCELED').length === DEVICES ? true : undefined), 60_000, `B's stream showing the ${DEVICES} executions cancelled on A`);

      // and what A does after the burst still reaches B
      await a.api.call('POST', '/api/v1/devices', { deviceId: 'after-burst' });
      await eventually(async () => (credentials.has('after-burst') ? true : undefined), 30_000, "B's stream showing a device registered through A after the burst");

      // A's stop waits for nothing undeliverable
      assert.equal(await a.p.kill('SIGTERM'), 0, a.p.output().slice(-2_000));
      assert.doesNotMatch(a.p.output(), /did not finish within|oversize|closes the relay's connection|too large for the MQTT broker/);
    });
  });
}

/** Follows `api`'s event stream of one type, calling `on` with each event's data. */
function follow(api: ApiClient, type: string, on: (e: Record<string, unknown>) => void): AbortController {
  const ctl = new AbortController();
  void (async () => {
    const res = await fetch(`${api.baseUrl}/api/v1/events?types=${type}`, { headers: { authorization: `Bearer ${api.token}` }, signal: ctl.signal });
    const decoder = new TextDecoder();
    let buf = '';
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      buf += decoder.decode(chunk, { stream: true });
      let end: number;
      while ((end = buf.indexOf('\n\n')) !== -1) {
        const frame = buf.slice(0, end);
        buf = buf.slice(end + 2);
        const data = frame.split('\n').find((l) => l.startsWith('data: '));
        if (data) on(JSON.parse(data.slice(6)) as Record<string, unknown>);
      }
    }
  })().catch(() => undefined);
  return ctl;
}
