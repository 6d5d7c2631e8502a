/**
 * webhook.url is a secret (a chat hook's token is in its path, another receiver's in its
 * query) and must be the final URL. A URL with user info was taken at start, then every
 * delivery failed with fetch's error, which quotes the URL, password and all, in the log; a
 * receiver answering 302 had the delivery counted delivered while fetch turned the POST into
 * a GET without its body (and a 307 would send the signed body wherever it points). Now user
 * info is refused at start (one line, exit 2), a redirect is not followed and fails the
 * delivery for good, logged once with its origin, and no log line holds the URL's user info,
 * path or query.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { EventBus } from '../../src/events/event-bus.ts';
import { WebhookNotifier } from '../../src/events/webhook-notifier.ts';
import type { JobRecord } from '../../src/store/state-store.ts';
import { createLogger } from '../../src/util/logger.ts';
import { eventually, runCli, startCli } from '../helpers/cli.ts';
import { registerDevice, startTestServer } from '../helpers/server.ts';
import { startTempStore } from '../helpers/sqlite.ts';
import { addArtifact } from '../security/support.ts';

const TOKEN = 'QUERYTOKEN42';
const PASSWORD = 'HOOKPASSWORD';

const exitCode = (child: ChildProcess): Promise<number | null> =>
  child.exitCode !== null || child.signalCode !== null ? Promise.resolve(child.exitCode) : once(child, 'exit').then(([code]) => code as number | null);

/** A receiver recording each request's method and URL, answering with `answer`. */
async function receiver(answer: (req: http.IncomingMessage) => { status: number; headers?: Record<string, string> }) {
  const requests: { method: string; url: string; signed: boolean; body: string }[] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      requests.push({ method: req.method!, url: req.url!, signed: req.headers['x-updraft-signature'] !== undefined, body });
      const { status, headers } = answer(req);
      res.writeHead(status, headers).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { requests, origin, close: () => new Promise((r) => server.close(r)) };
}

describe('webhook.url', () => {
  it('with user info is refused at start, in one line that does not show it, with exit code 2', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'updraft-webhook-url-'));
    const env = { UPDRAFT_WEBHOOK_URL: `http://hookuser:${PASSWORD}@127.0.0.1:18091/hook` };
    const server = startCli(['server', '--data-dir', path.join(dir, 'data'), '--http-host', '127.0.0.1', '--http-port', '0', '--mqtt-host', '127.0.0.1', '--mqtt-port', '0', '--mqtt-tls-port', '-1'], { env });
    await server.waitFor(/invalid configuration|HTTP API and downloads on/);
    // refused: it ends by itself; taken: it is stopped, and the assertions below say so
    const code = server.output().includes('invalid configuration') ? await exitCode(server.child) : await server.kill();
    assert.match(server.output(), /^updraft: error: invalid configuration: webhook\.url \(env UPDRAFT_WEBHOOK_URL\) must hold no user info \(user:password@\): .*token.*webhook\.secret; got a URL with user info \(not shown: it is a secret\)\n$/);
    assert.equal(code, 2, server.output());
    assert.ok(!server.output().includes(PASSWORD) && !server.output().includes('hookuser'), server.output());
    const config = await runCli(['config'], { env });
    assert.equal(config.code, 2, config.stderr);
    assert.match(config.stderr, /^updraft: error: invalid configuration: webhook\.url \(env UPDRAFT_WEBHOOK_URL\) must hold no user info/);
    assert.ok(!config.stderr.includes(PASSWORD), config.stderr);
  });

  it('a receiver redirecting (302, then 200 at the Location): not followed, not counted delivered, failed for good and logged once with where to, no token logged', async () => {
    const hook = await receiver((req) => (req.url!.startsWith('/moved') ? { status: 200 } : { status: 302, headers: { location: `/moved?token=${TOKEN}` } }));
    const lines: string[] = [];
    const ts = await startTestServer({ flags: { 'webhook-url': `${hook.origin}/hooks/updraft?token=${TOKEN}`, 'webhook-secret': 'hook-key' }, logger: createLogger({ level: 'debug', write: (l) => lines.push(l) }) });
    try {
      await addArtifact(ts, '2.0.0', randomBytes(2000));
      await registerDevice(ts, 'idle-1');
      const res = await fetch(`${ts.httpUrl}/api/v1/jobs`, { method: 'POST', headers: { authorization: `Bearer ${ts.token}`, 'content-type': 'application/json' }, body: JSON.stringify({ artifact: 'fw@2.0.0', targets: { devices: ['idle-1'] } }) });
      assert.ok(res.ok, await res.text());
      const counted = () => fetch(`${ts.httpUrl}/api/v1/metrics`, { headers: { authorization: `Bearer ${ts.token}` } }).then(async (r) => ((await r.json()) as { webhook: { delivered: number; failed: number } }).webhook);
      // counted once deliver() has returned: every attempt it makes is made by then
      const webhook = await eventually(async () => {
        const m = await counted();
        return m.delivered + m.failed > 0 ? m : undefined;
      }, 30_000, 'the delivery counted');
      assert.deepEqual({ delivered: webhook.delivered, failed: webhook.failed }, { delivered: 0, failed: 1 });
      assert.deepEqual(hook.requests.map((r) => [r.method, r.url, r.signed]), [['POST', `/hooks/updraft?token=${TOKEN}`, true]], 'one POST, not retried; the Location never asked');
      const said = lines.filter((l) => l.includes('[webhook]') && l.includes('WARN'));
      assert.equal(said.length, 1, said.join('\n'));
      assert.match(said[0]!, /redirected.*set webhook\.url to the final URL.* status=302 location=http:\/\/127\.0\.0\.1:\d+\/…$/);
      const leaked = lines.filter((l) => l.includes(TOKEN) || l.includes('/hooks/updraft') || l.includes('/moved'));
      assert.deepEqual(leaked, []);
    } finally {
      await ts.close();
      await hook.close();
    }
  });

  it('a 307 to another origin: the signed body is not sent there', async () => {
    const elsewhere = await receiver(() => ({ status: 204 }));
    const hook = await receiver(() => ({ status: 307, headers: { location: `${elsewhere.origin}/collect` } }));
    const { store, close } = await startTempStore('hook-store');
    const lines: string[] = [];
    const events = new EventBus();
    const notifier = new WebhookNotifier({ events, store, url: `${hook.origin}/hook`, secret: 's', isLeader: () => true, logger: createLogger({ write: (l) => lines.push(l) }), retryDelayMs: 1, scanMs: 50 });
    await notifier.start();
    try {
      const job: JobRecord = { jobId: 'j-1', artifactName: 'fw', artifactVersion: '2.0.0', status: 'IN_PROGRESS', createdAt: Date.now(), updatedAt: Date.now(), version: 1, progress: {} };
      events.emit('job.changed', { job });
      await eventually(async () => (notifier.stats.failed + notifier.stats.delivered > 0 ? true : undefined), 10_000, 'the delivery counted');
      assert.deepEqual(notifier.stats, { delivered: 0, failed: 1, dropped: 0, waiting: 0 });
      assert.equal(hook.requests.length, 1);
      assert.deepEqual(elsewhere.requests, [], 'nothing sent to where it points');
      assert.equal(lines.filter((l) => l.includes('redirected')).length, 1, lines.join('\n'));
      assert.match(lines.find((l) => l.includes('redirected'))!, new RegExp(`status=307 location=${elsewhere.origin}/…$`));
    } finally {
      await notifier.stop();
      await close();
      await hook.close();
      await elsewhere.close();
    }
  });

  it('an error of fetch that quotes the URL is logged without its user info, path or query', async () => {
    // taken by the notifier as given (a library user, or a configuration from before the refusal)
    const hook = await receiver(() => ({ status: 204 }));
    const { store, close } = await startTempStore('hook-store');
    const lines: string[] = [];
    const events = new EventBus();
    const url = `${hook.origin.replace('//', `//hookuser:${PASSWORD}@`)}/hook/T000SECRETPATH?token=${TOKEN}`;
    const notifier = new WebhookNotifier({ events, store, url, secret: 's', isLeader: () => true, logger: createLogger({ write: (l) => lines.push(l) }), retryDelayMs: 1, scanMs: 50 });
    await notifier.start();
    try {
      const job: JobRecord = { jobId: 'j-1', artifactName: 'fw', artifactVersion: '2.0.0', status: 'IN_PROGRESS', createdAt: Date.now(), updatedAt: Date.now(), version: 1, progress: {} };
      events.emit('job.changed', { job });
      await eventually(async () => (notifier.stats.failed === 1 ? true : undefined), 10_000, 'every attempt failed');
      const failed = lines.filter((l) => l.includes('failed after every attempt'));
      assert.equal(failed.length, 1, lines.join('\n'));
      assert.match(failed[0]!, /credentials: <webhook\.url>/);
      const leaked = lines.filter((l) => l.includes(PASSWORD) || l.includes('hookuser') || l.includes(TOKEN) || l.includes('T000SECRETPATH'));
      assert.deepEqual(leaked, []);
    } finally {
      await notifier.stop();
      await close();
      await hook.close();
    }
  });
});
