/**
 * Rotating webhook.secret without a refused delivery: a real server (restarted on its data
 * directory, as an operator changes its settings) and a real HTTP receiver that holds ONE
 * secret and refuses (401) a delivery neither signature header verifies with it. With
 * webhook.previousSecret the server signs with both keys, so the receiver moves from the old
 * secret to the new one at a moment of its own, and no delivery is refused on the way.
 */
import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { loadConfig } from '../../src/config/load-config.ts';
import type { WebhookDelivery } from '../../src/events/webhook-notifier.ts';
import { eventually } from '../helpers/cli.ts';
import { apiJson, registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact } from '../security/support.ts';

const OLD = 'the-secret-being-replaced';
const NEW = 'the-secret-replacing-it';

/** `t=…,sha256=…` checked against `secret`: whether it is the HMAC of `<t>.<body>`, as docs/rollouts.md tells receivers. */
function verifies(header: string | string[] | undefined, body: string, secret: string): boolean {
  const m = /^t=(\d+),sha256=([0-9a-f]{64})$/.exec(String(header ?? ''));
  return m !== null && m[2] === createHmac('sha256', secret).update(`${m[1]}.${body}`).digest('hex');
}

describe('webhook.secret rotated with webhook.previousSecret', () => {
  let receiver: http.Server;
  let url: string;
  let ts: TestServer | undefined;
  let dataDir: string | undefined;
  /** The one secret the receiver holds. */
  let held = OLD;
  const taken: { delivery: WebhookDelivery; headers: http.IncomingHttpHeaders; body: string }[] = [];
  const refused: string[] = [];

  before(async () => {
    receiver = http.createServer((req, res) => {
      let body = '';
      req.on('data', (c) => (body += c));
      req.on('end', () => {
        // a receiver of one secret: either header may carry its signature
        if (verifies(req.headers['x-updraft-signature'], body, held) || verifies(req.headers['x-updraft-signature-previous'], body, held)) {
          taken.push({ delivery: JSON.parse(body) as WebhookDelivery, headers: req.headers, body });
          res.writeHead(204).end();
        } else {
          refused.push(String(req.headers['x-updraft-delivery']));
          res.writeHead(401).end();
        }
      });
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
    url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks/updraft`;
  });
  after(async () => {
    await ts?.close();
    await new Promise((r) => receiver.close(r));
  });

  /** (Re)starts the server on the same data directory with these webhook settings. */
  const restart = async (flags: Record<string, string>) => {
    await ts?.stop();
    ts = await startTestServer({ ...(dataDir ? { dataDir } : {}), flags: { 'webhook-url': url, ...flags } });
    dataDir = ts.dataDir;
  };
  const statuses = () => taken.map((t) => t.delivery.job.status);
  const until = (n: number) => eventually(async () => (taken.length + refused.length >= n ? true : undefined), 30_000, `${n} deliveries`);

  it('moves a one-secret receiver from the old secret to the new one with no delivery refused', async () => {
    await restart({ 'webhook-secret': OLD });
    await addArtifact(ts!, '2.0.0', randomBytes(3000));
    await registerDevice(ts!, 'idle-1');
    const created = await apiJson(ts!, 'POST', '/api/v1/jobs', { artifact: 'fw@2.0.0', targets: { devices: ['idle-1'] } });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const jobId = created.body.job.jobId as string;
    await until(1);

    // 1. every instance: the new secret, the old one as previous (a restart: settings are read at start)
    await restart({ 'webhook-secret': NEW, 'webhook-previous-secret': OLD });
    assert.equal((await apiJson(ts!, 'POST', `/api/v1/jobs/${jobId}/pause`)).status, 200);
    await until(2);
    const both = taken[1]!;
    assert.ok(verifies(both.headers['x-updraft-signature'], both.body, NEW), 'the main header: the new secret, in its usual format');
    assert.ok(verifies(both.headers['x-updraft-signature-previous'], both.body, OLD), 'the second header: the old secret');
    assert.ok(!verifies(both.headers['x-updraft-signature'], both.body, OLD));

    // 2. the receiver switches to the new secret whenever it likes
    held = NEW;
    assert.equal((await apiJson(ts!, 'POST', `/api/v1/jobs/${jobId}/resume`)).status, 200);
    await until(3);

    // 3. the previous secret removed: one signature again
    await restart({ 'webhook-secret': NEW });
    assert.equal((await apiJson(ts!, 'POST', `/api/v1/jobs/${jobId}/cancel`)).status, 200);
    await until(4);
    assert.equal(taken.at(-1)!.headers['x-updraft-signature-previous'], undefined);

    assert.deepEqual(refused, [], 'no delivery refused by the receiver');
    assert.deepEqual(statuses(), ['IN_PROGRESS', 'PAUSED', 'IN_PROGRESS', 'CANCELED']);
  });

  it('refuses webhook.previousSecret without webhook.secret', () => {
    assert.throws(() => loadConfig({ flags: { 'webhook-url': 'https://hooks.example/x', 'webhook-previous-secret': OLD } }), (err: Error) => /webhook\.previousSecret \(flag --webhook-previous-secret\) is set without webhook\.secret/.test(err.message) && !err.message.includes(OLD));
  });
});
