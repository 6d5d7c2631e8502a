/**
 * A change whose client went away while its handler was still running is in the audit log
 * without waiting for the handler. The line was written once the handler was done and the
 * answer over; a handler waiting on the external broker (a device deleted while Mosquitto is
 * down: its answers, QoS 1, wait for the broker to come back) left no line for as long as
 * the outage lasted, though the client had given up and the deletion was under way (since
 * 9e4bcfa it waits only past the held messages' cap, filled here). Now the
 * line is written 10 s after the client left (`clientGone=true pending=true`, with the time
 * so far) when the handler is still running, and what the handler did is logged when it ends.
 *
 * A real server on a real Mosquitto (stopped for the outage), the client a fetch that gives up.
 */
import assert from 'node:assert/strict';
import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import mqtt from 'mqtt';
import { MAX_HELD } from '../../src/broker/bounded-publish.ts';
import type { ExternalBroker } from '../../src/broker/external-broker.ts';
import { createLogger } from '../../src/util/logger.ts';
import { eventually } from '../helpers/cli.ts';
import { findMosquitto, mosquittoUnavailable, startTestMosquitto, type TestMosquitto } from '../helpers/mosquitto.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';

const TOKEN = `updr_audit_unfinished_${'x'.repeat(24)}`;
const found = findMosquitto();

if (!found.ok) {
  const message = mosquittoUnavailable(found.reason, 'audit of an unfinished change');
  it('audit: a change its client left while it ran', (t) => t.skip(message));
} else {
  describe('audit: a change whose client left while its handler still ran', () => {
    let broker: TestMosquitto;
    let ts: TestServer;
    let brokerDown = false;
    const lines: string[] = [];
    const audit = (from: number) => lines.slice(from).filter((l) => l.includes('[http] operator request'));
    const call = (method: string, route: string, body?: unknown, signal?: AbortSignal) =>
      fetch(ts.httpUrl + route, {
        method,
        headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        ...(signal ? { signal } : {}),
      });

    before(async () => {
      broker = await startTestMosquitto(found.bin, { operatorToken: TOKEN, devices: [], secrets: new Map() });
      const dataDir = await mkdtemp(path.join(os.tmpdir(), 'updraft-audit-unfinished-'));
      await writeFile(path.join(dataDir, 'operator-token'), TOKEN + '\n', { mode: 0o600 });
      ts = await startTestServer({ dataDir, flags: { 'mqtt-url': broker.serviceUrl, 'mqtt-tls-port': -1 }, logger: createLogger({ level: 'info', write: (l) => lines.push(l) }) });
    });
    after(async () => {
      if (brokerDown) await broker.up().catch(() => undefined);
      await ts?.close();
      await broker?.stop();
    });

    it('writes the line 10 s after the client left, pending, and what the handler did when it ends', async () => {
      assert.equal((await call('POST', '/api/v1/devices', { deviceId: 'gone-1' })).status, 201);
      // the device has a shadow (its deletion answers on .../delete/accepted, QoS 1)
      const op = await mqtt.connectAsync(broker.serviceUrl, { username: 'operator', password: TOKEN, reconnectPeriod: 0 });
      await op.publishAsync('state/gone-1/update', JSON.stringify({ state: { reported: { agent: 'x' } } }), { qos: 1 });
      await op.endAsync();
      await eventually(async () => ((await (await call('GET', '/api/v1/devices/gone-1')).json()) as { shadow?: unknown }).shadow ? true : undefined, 15_000, 'the shadow written');
      await broker.down();
      brokerDown = true;
      // a deletion's answers no longer wait for an outage (328a37a) but for a held store past
      // its cap (9e4bcfa): it is filled, so that this handler runs on past its client
      const bus = ts.server.bus as ExternalBroker;
      await eventually(async () => (!bus.connected ? true : undefined), 15_000, 'the instance sees the outage');
      // (not awaited: the instance's own messages of the outage hold some places, and the last of
      // these wait for the reconnect too)
      const fills = Promise.all(Array.from({ length: MAX_HELD }, (_, i) => bus.publish(`audit-fill/${i}`, 'x', 1).catch(() => undefined)));
      const from = lines.length;
      const started = Date.now();
      // the operator's tool gives up after 2 s; the deletion waits for the broker
      await assert.rejects(call('DELETE', '/api/v1/devices/gone-1', undefined, AbortSignal.timeout(2000)), /abort|timeout/i);
      const got = await eventually(async () => (audit(from).length > 0 ? audit(from) : undefined), 30_000, 'the audit line');
      assert.equal(got.length, 1, got.join('\n'));
      assert.match(got[0]!, /INFO {2}\[http\] operator request method=DELETE path=\/api\/v1\/devices\/gone-1 clientGone=true pending=true ms=(\d+) remote=127\.0\.0\.1 by=operator$/);
      const ms = Number(/ ms=(\d+)/.exec(got[0]!)![1]);
      assert.ok(ms >= 11_000 && ms <= Date.now() - started, `ms=${ms}: the time from the request to the line`);
      // the broker back: the handler ends, and its end is logged, not counted again
      const changes = async () => ((await (await call('GET', '/api/v1/metrics')).json()) as { api: { changes: number } }).api.changes;
      const counted = await changes();
      await broker.up();
      brokerDown = false;
      const end = await eventually(async () => audit(from).find((l) => l.includes('operator request finished after its client left')), 60_000, 'the end of the handler');
      assert.match(end, /INFO {2}\[http\] operator request finished after its client left method=DELETE path=\/api\/v1\/devices\/gone-1 status=\d+ ms=\d+ remote=127\.0\.0\.1 by=operator$/);
      assert.equal(await changes(), counted, 'counted once, at the first line');
      assert.equal(audit(from).length, 2);
      await fills;
    });
  });
}
