/**
 * Fresh URLs after expiries are bounded by `maxUrlRefreshes` in a row without progress, and
 * progress is bytes beyond the most the device has held: a server whose URLs expire while it
 * serves the same first bytes again (it ignores Range, and the link is slow) renewed the
 * budget with every re-served byte, and the agent asked for fresh URLs for ever. A real
 * broker, a real HTTP server; the test plays the shadow server and moves the clock.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, beforeEach, describe, it } from 'node:test';
import { SlotInstaller } from '../../src/agent/slot-installer.ts';
import { nextEvent } from './support/agent-fixture.ts';
import { fixturePerTest } from './support/fixture-per-test.ts';

const CUT = 80_000;
/** Past this many requests the server answers 404: the guard that ends a download asked again without end. */
const GUARD = 40;

describe('UpdateAgent: URLs that expire while the server re-serves the same bytes', () => {
  const ctx = fixturePerTest({ level: 'info', format: 'json' });
  let server: http.Server;
  const requests: { sig: string | null; range: string | undefined; status: number }[] = [];
  const clock = { t: 0 };
  /** How a request with a URL not yet expired is answered. */
  let serve: (req: http.IncomingMessage, res: http.ServerResponse) => void;

  before(async () => {
    server = http.createServer((req, res) => {
      const u = new URL(req.url ?? '/', 'http://x');
      const seen = { sig: u.searchParams.get('sig'), range: req.headers.range, status: 0 };
      requests.push(seen);
      const answer = (status: number, headers: Record<string, string | number>) => {
        seen.status = status;
        res.writeHead(status, headers);
      };
      if (requests.length > GUARD) {
        answer(404, { 'content-type': 'text/plain' });
        res.end('guard: too many requests');
        return;
      }
      if (Number(u.searchParams.get('exp')) < clock.t / 1000) {
        answer(403, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { code: 'FORBIDDEN', message: 'download URL has expired; ask for a fresh one' } }));
        return;
      }
      serve(req, res);
      void answer;
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  });
  after(async () => {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  beforeEach(() => {
    requests.length = 0;
    clock.t = Date.now();
  });

  /** URLs of the test's server that live 60 s from when they are handed out, by the test's clock. */
  const shortLivedUrls = () => {
    ctx.f.server.noDeltaOnUpdate = true;
    const now = () => clock.t;
    ctx.f.server.now = now;
    let issued = 0;
    ctx.f.server.issueUrl = () => {
      const exp = Math.floor(clock.t / 1000) + 60;
      return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/fw?exp=${exp}&sig=s${++issued}`, urlExpiresAt: exp };
    };
    return now;
  };

  /** Every request from byte 0 (Range ignored), two minutes on the way (the URL expires meanwhile), cut after CUT bytes. */
  const reServedAndCut = (req: http.IncomingMessage, res: http.ServerResponse) => {
    void req;
    const content = ctx.f.content;
    requests.at(-1)!.status = 200;
    res.writeHead(200, { 'content-length': content.length });
    clock.t += 120_000;
    res.write(content.subarray(0, CUT), () => setTimeout(() => res.socket?.destroy(), 20));
  };

  it('fails after maxUrlRefreshes expiries in a row when each fresh URL only brings bytes held before', async () => {
    const now = shortLivedUrls();
    serve = reServedAndCut;
    const agent = await ctx.started(new SlotInstaller({ dir: ctx.f.installDir }), { now });
    const finished = nextEvent(agent, 'job-finished');
    await ctx.f.server.setDesired(ctx.f.software('job-reserved'));
    const outcome = await finished;
    assert.equal(outcome.status, 'FAILURE');
    assert.equal(outcome.error, 'download URL expired and no fresh one arrived after 3 requests (maxUrlRefreshes 3)');
    // s1 brings the first CUT bytes; s2-s4 bring them again, each then refused as expired
    assert.deepEqual(
      requests.map((r) => [r.sig, r.status]),
      [['s1', 200], ['s1', 403], ['s2', 200], ['s2', 403], ['s3', 200], ['s3', 403], ['s4', 200], ['s4', 403]],
    );
  });

  it('a fresh URL for every expiry while each brings bytes beyond the most held, more than maxUrlRefreshes', async () => {
    const now = shortLivedUrls();
    // from the byte asked for (Range honoured), cut after CUT / 2 more bytes, 5 times: each cut
    // brings new bytes, then the URL has expired
    let cuts = 5;
    serve = (req, res) => {
      const content = ctx.f.content;
      const start = Number(/^bytes=(\d+)-$/.exec(req.headers.range ?? '')?.[1] ?? 0);
      requests.at(-1)!.status = start > 0 ? 206 : 200;
      res.writeHead(start > 0 ? 206 : 200, { 'content-length': content.length - start, ...(start > 0 ? { 'content-range': `bytes ${start}-${content.length - 1}/${content.length}` } : {}) });
      clock.t += 120_000;
      if (cuts-- > 0) res.write(content.subarray(start, start + CUT / 2), () => setTimeout(() => res.socket?.destroy(), 20));
      else res.end(content.subarray(start));
    };
    const agent = await ctx.started(new SlotInstaller({ dir: ctx.f.installDir }), { now });
    const finished = nextEvent(agent, 'job-finished');
    await ctx.f.server.setDesired(ctx.f.software('job-moving'));
    const outcome = await finished;
    assert.equal(outcome.error, undefined);
    assert.equal(outcome.status, 'SUCCESS');
    assert.equal(requests.filter((r) => r.status === 403).length, 5);
  });

  it('the fetch from the start after a failed verification is progress again: its bytes end a row of expiries', async () => {
    const now = shortLivedUrls();
    // the answers to the requests whose URL has not expired, in turn: Range honoured; `end`
    // cuts the connection there, `tamper` flips a byte, `slow` lets the URL expire meanwhile
    const steps: { end?: number; tamper?: boolean; slow?: boolean }[] = [
      { end: CUT, slow: true }, // s1: the first CUT bytes
      { tamper: true }, // s2: the rest, one byte wrong: verification fails, fetched again from the start
      { end: CUT / 2, slow: true }, // s2: from the start, cut
      { end: (CUT * 3) / 4, slow: true }, // s3: resumed, cut: bytes held before the verification
      {}, // s4: the rest
    ];
    serve = (req, res) => {
      const content = ctx.f.content;
      const step = steps.shift() ?? {};
      const start = Number(/^bytes=(\d+)-$/.exec(req.headers.range ?? '')?.[1] ?? 0);
      const body = Buffer.from(content.subarray(start));
      if (step.tamper) body[body.length - 10]! ^= 0xff;
      requests.at(-1)!.status = start > 0 ? 206 : 200;
      res.writeHead(start > 0 ? 206 : 200, { 'content-length': body.length, ...(start > 0 ? { 'content-range': `bytes ${start}-${content.length - 1}/${content.length}` } : {}) });
      if (step.slow) clock.t += 120_000;
      if (step.end !== undefined) res.write(body.subarray(0, step.end - start), () => setTimeout(() => res.socket?.destroy(), 20));
      else res.end(body);
    };
    const agent = await ctx.started(new SlotInstaller({ dir: ctx.f.installDir }), { now, maxUrlRefreshes: 1 });
    const finished = nextEvent(agent, 'job-finished');
    await ctx.f.server.setDesired(ctx.f.software('job-refetched'));
    const outcome = await finished;
    assert.equal(outcome.error, undefined);
    assert.equal(outcome.status, 'SUCCESS');
    assert.deepEqual(
      requests.map((r) => [r.sig, r.range ?? null, r.status]),
      [['s1', null, 200], ['s1', `bytes=${CUT}-`, 403], ['s2', `bytes=${CUT}-`, 206], ['s2', null, 200], ['s2', `bytes=${CUT / 2}-`, 403], ['s3', `bytes=${CUT / 2}-`, 206], ['s3', `bytes=${(CUT * 3) / 4}-`, 403], ['s4', `bytes=${(CUT * 3) / 4}-`, 206]],
    );
  });
});
