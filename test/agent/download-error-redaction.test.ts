/**
 * No download error quotes the signed URL's query (docs/security.md: no URL signature is ever
 * logged). undici's messages quote the URL ("Failed to parse URL from <url>"), and the
 * downloader put them into its errors as they were: the signature reached the agent's log
 * (and so the job's log), the job's failure reason, the device's reported error and the
 * job's execution record, and with a working host it downloads the build until it expires.
 * Against the real broker: a URL that does not parse, and one to a closed port (ECONNREFUSED,
 * whose message from Node 20's fetch quotes no URL: kept so that it stays so); the downloader
 * alone with a URL holding credentials, which fetch quotes whole.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { inspect } from 'node:util';
import { downloadArtifact } from '../../src/agent/downloader.ts';
import { SlotInstaller } from '../../src/agent/slot-installer.ts';
import { UpdraftError } from '../../src/errors.ts';
import { createLogger } from '../../src/util/logger.ts';
import { redactUrlsIn } from '../../src/util/redact-url.ts';
import { freePort } from '../helpers/free-port.ts';
import { nextEvent } from './support/agent-fixture.ts';
import { fixturePerTest } from './support/fixture-per-test.ts';

const SIG = 'cscV3i4gSecretSignature';
const QUERY = `device=dev-1&exp=4000000000&kid=k1&sig=${SIG}`;

describe('UpdateAgent: a download that fails before any answer', () => {
  const ctx = fixturePerTest({ level: 'debug' });

  /** Runs one job to its outcome with the URL the server hands out. */
  const failWith = async (url: string, jobId: string) => {
    const { f } = ctx;
    f.server.issueUrl = () => ({ url, urlExpiresAt: Math.floor(Date.now() / 1000) + 3600 });
    const agent = await ctx.started(new SlotInstaller({ dir: f.installDir }), { downloadSettings: { retryDelayMs: 1, maxRetryDelayMs: 5, maxAttempts: 2 } });
    const finished = nextEvent(agent, 'job-finished');
    await f.server.setDesired(f.software(jobId));
    const outcome = await finished;
    assert.equal(outcome.status, 'FAILURE');
    await f.server.until(() => f.server.reportsFor(jobId).some((r) => typeof r.error === 'string'), 'the FAILURE report');
    return { outcome, reported: f.server.reportsFor(jobId).map((r) => r.error).filter((e): e is string => typeof e === 'string') };
  };

  const assertNoSignature = (texts: string[]) => {
    for (const t of texts) {
      assert.ok(!t.includes('sig=') && !t.includes(SIG) && !t.includes('kid=k1'), `holds the signed query: ${t}`);
    }
  };

  it('a URL that does not parse: the reason names it, its query redacted', async () => {
    const { outcome, reported } = await failWith(`notaurl/v1/download/fw/1.0.0?${QUERY}`, 'job-unparsable');
    assert.match(outcome.error!, /Failed to parse URL from notaurl\/v1\/download\/fw\/1\.0\.0\?<redacted>/);
    assertNoSignature([outcome.error!, ...reported, ...ctx.lines]);
    assert.ok(ctx.lines.some((l) => l.includes('?<redacted>')), 'the agent logged the failure');
  });

  it('a closed port (ECONNREFUSED): the reason says so, without the query', async () => {
    const port = await freePort();
    const { outcome, reported } = await failWith(`http://127.0.0.1:${port}/v1/download/fw/1.0.0?${QUERY}`, 'job-refused');
    assert.match(outcome.error!, /ECONNREFUSED/);
    assertNoSignature([outcome.error!, ...reported, ...ctx.lines]);
  });
});

describe('downloadArtifact: errors quote no signature and no credentials', () => {
  it('a URL with user info: fetch quotes it whole; the error keeps neither the password nor the query', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-dl-redact-'));
    const lines: string[] = [];
    try {
      const port = await freePort();
      const url = `http://ops:hunter2@127.0.0.1:${port}/v1/download/fw/1.0.0?${QUERY}`;
      const err = await downloadArtifact({
        url,
        file: path.join(dir, 'job.part'),
        size: 10,
        sha256: '0'.repeat(64),
        retryDelayMs: 1,
        maxAttempts: 2,
        logger: createLogger({ level: 'debug', write: (l) => lines.push(l) }),
      }).then(
        () => assert.fail('downloaded'),
        (e: unknown) => e,
      );
      assert.ok(err instanceof UpdraftError && err.code === 'DOWNLOAD');
      // refused at once (test/agent/download-permanent-failures.test.ts), the URL not quoted at all
      assert.match(err.message, /the URL includes credentials \(user:password@\), which fetch refuses to send/);
      for (const t of [err.message, ...lines]) assert.ok(!t.includes('hunter2') && !t.includes(SIG), t);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("no error's cause or field holds the URL either (as an uncaught crash or a logger printing causes would show it); the network's code stays", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-dl-cause-'));
    // a real server misbehaving by path: a reset before any answer, a reset mid-body, a 404 quoting the URL
    const server = http.createServer((req, res) => {
      if (req.url!.startsWith('/reset')) return req.socket.resetAndDestroy();
      res.writeHead(req.url!.startsWith('/mid') ? 200 : 404, { 'content-length': '100' });
      if (req.url!.startsWith('/mid')) res.write('abc', () => req.socket.resetAndDestroy());
      else res.end(`no such build: http://127.0.0.1${req.url}`.padEnd(100));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const base = `127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const cases: [url: string, code: RegExp][] = [
        [`http://${base}/reset?${QUERY}`, /\(ECONNRESET\)/],
        [`http://${base}/mid?${QUERY}`, /\(UND_ERR_SOCKET\)|ECONNRESET/],
        [`http://${base}/404?${QUERY}`, /^HTTP 404: no such build: http:\/\/127\.0\.0\.1\/404\?<redacted>/],
        [`notaurl/v1/download/fw/1.0.0?${QUERY}`, /\(ERR_INVALID_URL\)/],
        [`http://ops:hunter2@${base}/x?${QUERY}`, /includes credentials/],
      ];
      for (const [url, code] of cases) {
        const err = await downloadArtifact({ url, file: path.join(dir, 'job.part'), size: 100, sha256: '0'.repeat(64), retryDelayMs: 1, maxAttempts: 2 }).then(
          () => assert.fail('downloaded'),
          (e: unknown) => e,
        );
        assert.ok(err instanceof UpdraftError && err.code === 'DOWNLOAD', String(err));
        assert.match(err.message, code);
        // the whole error as node prints it: message, stack, every field, the cause chain
        const printed = inspect(err, { depth: Infinity, showHidden: true });
        assert.ok(!printed.includes(SIG) && !printed.includes('kid=k1') && !printed.includes('hunter2'), `${url}: ${printed}`);
      }
    } finally {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('redactUrlsIn: every URL in a text, parsable or not, loses its query and user info; other text stays', () => {
    assert.equal(
      redactUrlsIn(`Failed to parse URL from notaurl/v1/download/fw/1.0.0?${QUERY}`),
      'Failed to parse URL from notaurl/v1/download/fw/1.0.0?<redacted>',
    );
    assert.equal(redactUrlsIn(`GET "https://a:b@cdn.example.com/x?${QUERY}" failed (proxy at http://p/y?z=1)`), 'GET "https://***@cdn.example.com/x?<redacted>" failed (proxy at http://p/y?<redacted>)');
    assert.equal(redactUrlsIn('HTTP 403: download URL has expired; ask for a fresh one? yes'), 'HTTP 403: download URL has expired; ask for a fresh one? yes');
    assert.equal(redactUrlsIn('fetch failed (ECONNREFUSED)'), 'fetch failed (ECONNREFUSED)');
    assert.equal(redactUrlsIn(redactUrlsIn(`x?${QUERY}`)), 'x?<redacted>');
  });
});
