/**
 * The event relay's losses are in the metrics. The relay (cluster/event-relay.ts) counted the
 * events it dropped (c2b8e8d: an event too large for the broker, batches the broker closed the
 * connection on; and those made while the broker was unreachable) but nothing showed them:
 * GET /api/v1/metrics had no figure, Prometheus no family, and only the log said the other
 * instances had missed changes. Now `eventRelay.dropped` / `eventRelay.undeliverable` and
 * `updraft_event_relay_dropped_total` / `updraft_event_relay_undeliverable_total` count them.
 *
 * A real server on a real Mosquitto (the generated config, max_packet_size 65536), /metrics
 * over real HTTP. The oversized event is put on the server's own event bus, where the relay
 * takes every event it sends: no API call makes one that large (a job's spec, the large part
 * of one, is not relayed).
 */
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createLogger } from '../../src/util/logger.ts';
import { eventually } from '../helpers/cli.ts';
import { findMosquitto, mosquittoUnavailable, startTestMosquitto, type TestMosquitto } from '../helpers/mosquitto.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

const TOKEN = `updr_relay_metrics_${'x'.repeat(26)}`;
const found = findMosquitto();

if (!found.ok) {
  const message = mosquittoUnavailable(found.reason, 'event relay metrics');
  it('event relay metrics', (t) => t.skip(message));
} else {
  describe("the event relay's dropped events in GET /api/v1/metrics", () => {
    let broker: TestMosquitto;
    let ts: TestServer;
    let brokerDown = false;
    const logged: string[] = [];
    const metrics = (accept?: string) => fetch(`${ts.httpUrl}/api/v1/metrics`, { headers: { authorization: `Bearer ${TOKEN}`, ...(accept ? { accept } : {}) } });
    const relay = async () => ((await (await metrics()).json()) as { eventRelay: { dropped: number; undeliverable: number } | null }).eventRelay;
    const text = async () => (await metrics('text/plain')).text();

    before(async () => {
      broker = await startTestMosquitto(found.bin, { operatorToken: TOKEN, devices: [], secrets: new Map() });
      const dataDir = await mkdtemp(path.join(os.tmpdir(), 'updraft-relay-metrics-'));
      await writeFile(path.join(dataDir, 'operator-token'), TOKEN + '\n', { mode: 0o600 });
      ts = await startTestServer({ dataDir, flags: { 'mqtt-url': broker.serviceUrl, 'mqtt-tls-port': -1 }, logger: createLogger({ level: 'info', write: (l) => logged.push(l) }) });
    });
    after(async () => {
      if (brokerDown) await broker.up().catch(() => undefined);
      await ts?.close();
      await broker?.stop();
    });

    it('counts an event too large for the broker, dropped, in JSON and in the Prometheus text', async () => {
      assert.deepEqual(await relay(), { dropped: 0, undeliverable: 0 });
      assert.match(await text(), /^updraft_event_relay_undeliverable_total 0$/m);

      // job.log: nothing on the server but the event stream listens to it
      ts.server.events.emit('job.log', { jobId: 'job-1', deviceId: 'dev-1', agentJobId: `huge-${'z'.repeat(70_000)}`, lineCount: 1 });
      const line = logged.find((l) => l.includes('an event too large for the MQTT broker is dropped'));
      assert.ok(line, logged.join('\n'));
      assert.match(line, / ERROR /);

      assert.deepEqual(await relay(), { dropped: 0, undeliverable: 1 });
      const body = await text();
      assert.match(body, /^# TYPE updraft_event_relay_undeliverable_total counter$/m);
      assert.match(body, /^updraft_event_relay_undeliverable_total 1$/m);
      assert.match(body, /^updraft_event_relay_dropped_total 0$/m);
    });

    it('counts the events made while the broker cannot be reached', async () => {
      await broker.down();
      brokerDown = true;
      // an event each poll: dropped once the relay has seen its connection close
      await eventually(
        async () => {
          ts.server.events.emit('job.log', { jobId: 'job-1', deviceId: 'dev-1', agentJobId: 'during-outage', lineCount: 1 });
          const r = await relay();
          return r && r.dropped > 0 ? r : undefined;
        },
        15_000,
        'an event dropped while the broker is down',
      );
      // the same figure in the Prometheus text (read again if the last event's batch was
      // dropped in between: it is sent, or dropped, up to 100 ms after it was made)
      await eventually(
        async () => {
          const dropped = (await relay())!.dropped;
          return (await text()).includes(`\nupdraft_event_relay_dropped_total ${dropped}\n`) ? true : undefined;
        },
        15_000,
        'updraft_event_relay_dropped_total as eventRelay.dropped',
      );
      assert.equal((await relay())!.undeliverable, 1, 'an outage is not counted as undeliverable');
      await broker.up();
      brokerDown = false;
    });

    it('has no event relay figures without an external broker', async () => {
      const solo = await startTestServer();
      try {
        const r = await fetch(`${solo.httpUrl}/api/v1/metrics`, { headers: { authorization: `Bearer ${solo.token}` } });
        assert.equal(((await r.json()) as { eventRelay: unknown }).eventRelay, null);
        const t = await (await fetch(`${solo.httpUrl}/api/v1/metrics`, { headers: { authorization: `Bearer ${solo.token}`, accept: 'text/plain' } })).text();
        assert.doesNotMatch(t, /event_relay/);
      } finally {
        await solo.close();
      }
    });
  });
}
