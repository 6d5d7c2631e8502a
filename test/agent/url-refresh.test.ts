/**
 * A refused download (403) against the real broker and HTTP artifact server: the agent asks
 * for a fresh URL and tries again after the download's backoff, up to `maxUrlRefreshes`
 * times, whether or not the server hands out the same URL again (it does within the second
 * it signed it: `artifacts/url-signer.ts` keeps signed URLs). Other refusals fail at once.
 * An expired URL has a budget of its own: a fresh one for every expiry, `maxUrlRefreshes` in
 * a row without a byte downloaded between (a long download on a slow link outlives many).
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { SlotInstaller } from '../../src/agent/slot-installer.ts';
import { eventually, nextEvent } from './support/agent-fixture.ts';
import { fixturePerTest } from './support/fixture-per-test.ts';

describe('UpdateAgent: a download refused with 403', () => {
  const ctx = fixturePerTest({ level: 'info', format: 'json' });

  const slots = () => new SlotInstaller({ dir: ctx.f.installDir });
  const refusals = () => ctx.lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === 'download refused, asking for a fresh URL');
  /** The server signs one URL and gives it for every refresh (a refresh within the second it was signed). */
  const sameUrlEveryTime = () => {
    const url = ctx.f.http.url(undefined, { exp: String(Math.floor(Date.now() / 1000) + 3600), sig: 'same' });
    ctx.f.server.issueUrl = () => ({ url, urlExpiresAt: Math.floor(Date.now() / 1000) + 3600 });
  };
  const started = (extra: Parameters<typeof ctx.started>[1] = {}) => ctx.started(slots(), extra);

  it('tries the same URL again after a transient 403 when the refresh brings it back unchanged', async () => {
    sameUrlEveryTime();
    ctx.f.http.refuseNext = 1;
    const agent = await started();
    const gets = ctx.f.server.gets;
    const finished = nextEvent(agent, 'job-finished');
    await ctx.f.server.setDesired(ctx.f.software('job-same'));
    assert.equal((await finished).status, 'SUCCESS');
    assert.deepEqual(ctx.f.http.requests.map((r) => r.status), [403, 200]);
    assert.equal(ctx.f.http.requests[0]!.query.toString(), ctx.f.http.requests[1]!.query.toString());
    assert.ok(ctx.f.server.gets > gets, 'a fresh URL was asked for');
  });

  it('fails after 1 + maxUrlRefreshes refused attempts, pausing with the download backoff, naming the 403 and the count', async () => {
    sameUrlEveryTime();
    ctx.f.http.refuseNext = Number.POSITIVE_INFINITY;
    const agent = await started({ downloadSettings: { retryDelayMs: 8, maxRetryDelayMs: 1000 } });
    const finished = nextEvent(agent, 'job-finished');
    await ctx.f.server.setDesired(ctx.f.software('job-403'));
    const outcome = await finished;
    assert.equal(outcome.status, 'FAILURE');
    assert.deepEqual(ctx.f.http.requests.map((r) => r.status), [403, 403, 403, 403]);
    assert.equal(outcome.error, 'download refused with HTTP 403 on 4 attempts, 3 fresh URLs asked for (maxUrlRefreshes 3): HTTP 403: injected forbidden');
    assert.equal(ctx.f.server.reportsFor('job-403').at(-1)!.error, outcome.error);
    // each pause is the download's retry delay, doubled per refusal, with jitter (half to all of it)
    const delays = refusals().map((l) => l.delayMs as number);
    assert.equal(delays.length, 3);
    delays.forEach((d, i) => assert.ok(d >= 4 * 2 ** i && d <= 8 * 2 ** i, `pause ${i + 1}: ${d} ms`));
  });

  it('keeps to maxUrlRefreshes when every refresh brings a different URL', async () => {
    let issued = 0;
    ctx.f.server.issueUrl = () => ({ url: ctx.f.http.url(undefined, { sig: `s${++issued}` }), urlExpiresAt: Math.floor(Date.now() / 1000) + 3600 });
    ctx.f.http.refuseNext = Number.POSITIVE_INFINITY;
    const agent = await started({ maxUrlRefreshes: 1 });
    const finished = nextEvent(agent, 'job-finished');
    await ctx.f.server.setDesired(ctx.f.software('job-new-urls'));
    const outcome = await finished;
    assert.equal(outcome.error, 'download refused with HTTP 403 on 2 attempts, 1 fresh URL asked for (maxUrlRefreshes 1): HTTP 403: injected forbidden');
    assert.equal(ctx.f.http.requests.length, 2);
    assert.notEqual(ctx.f.http.requests[0]!.query.get('sig'), ctx.f.http.requests[1]!.query.get('sig'));
  });

  it('fails at once on a 404: no fresh URL asked for, no second request', async () => {
    sameUrlEveryTime();
    ctx.f.http.refuseStatus = 404;
    ctx.f.http.refuseNext = 1;
    const agent = await started();
    const gets = ctx.f.server.gets;
    const finished = nextEvent(agent, 'job-finished');
    await ctx.f.server.setDesired(ctx.f.software('job-404'));
    const outcome = await finished;
    assert.equal(outcome.status, 'FAILURE');
    assert.equal(outcome.error, 'HTTP 404: injected 404');
    assert.equal(ctx.f.http.requests.length, 1);
    assert.equal(refusals().length, 0);
    assert.equal(ctx.f.server.gets, gets, 'no fresh URL asked for');
  });

  it('stops during the pause after a 403 without waiting it out; the job resumes at the next start', async () => {
    sameUrlEveryTime();
    ctx.f.http.refuseNext = 1;
    const agent = await started({ downloadSettings: { retryDelayMs: 600_000, maxRetryDelayMs: 600_000 } });
    await ctx.f.server.setDesired(ctx.f.software('job-stop'));
    await eventually(() => refusals().length === 1, 'the pause after the 403');
    const delay = refusals()[0]!.delayMs as number;
    assert.ok(delay >= 300_000 && delay <= 600_000, `pause: ${delay} ms`);
    await agent.stop();
    const state = JSON.parse(await readFile(path.join(ctx.f.stateDir, 'agent-state.json'), 'utf8'));
    assert.equal(state.inFlight.jobId, 'job-stop');
    assert.equal(state.inFlight.phase, 'DOWNLOADING');
    assert.equal(ctx.f.http.requests.length, 1);

    const again = ctx.f.agent(slots());
    const finished = nextEvent(again, 'job-finished');
    await again.start();
    assert.equal((await finished).status, 'SUCCESS');
    assert.deepEqual(ctx.f.http.requests.map((r) => r.status), [403, 200]);
  });
});

describe('UpdateAgent: a download URL that expires', () => {
  const ctx = fixturePerTest({ level: 'info', format: 'json' });

  /** URLs come with the command and the `get`s that ask for them, not with the echo of every report: each is counted. */
  const noUrlsButAsked = () => {
    ctx.f.server.noDeltaOnUpdate = true;
  };
  /**
   * The server's and the device's clock, moved by the test only (the agent judges a URL's
   * expiry by the server's time, read from its answers); URLs live 60 s from when they are
   * handed out, and the artifact server refuses them after that.
   */
  const clockAndUrls = () => {
    noUrlsButAsked();
    const clock = { t: Date.now() };
    const now = () => clock.t;
    ctx.f.server.now = now;
    ctx.f.http.now = now;
    let issued = 0;
    ctx.f.server.issueUrl = () => {
      const exp = Math.floor(clock.t / 1000) + 60;
      return { url: ctx.f.http.url(undefined, { exp: String(exp), sig: `s${++issued}` }), urlExpiresAt: exp };
    };
    return { clock, now };
  };

  it('a long download on a flaky link gets a fresh URL for every expiry, more than maxUrlRefreshes, without a pause', async () => {
    const { clock, now } = clockAndUrls();
    // each response takes two minutes (a slow link), and the connection drops 4 times: each
    // attempt after a drop is refused, its URL having expired meanwhile
    ctx.f.http.onResponse = (r) => {
      if (r.status !== 403) clock.t += 120_000;
    };
    ctx.f.http.mode = 'cut';
    ctx.f.http.cuts = 4;
    const agent = await ctx.started(new SlotInstaller({ dir: ctx.f.installDir }), { now });
    const finished = nextEvent(agent, 'job-finished');
    await ctx.f.server.setDesired(ctx.f.software('job-slow'));
    const outcome = await finished;
    assert.equal(outcome.error, undefined);
    assert.equal(outcome.status, 'SUCCESS');
    const seen = ctx.f.http.requests.map((r) => [r.query.get('sig'), r.status]);
    assert.deepEqual(seen, [['s1', 200], ['s1', 403], ['s2', 206], ['s2', 403], ['s3', 206], ['s3', 403], ['s4', 206], ['s4', 403], ['s5', 206]]);
    // an expiry is no refusal: no pause after it, and the 403 budget untouched
    const msgs = ctx.lines.map((l) => (JSON.parse(l) as { msg: string }).msg);
    assert.equal(msgs.filter((m) => m === 'download refused, asking for a fresh URL').length, 0);
    assert.equal(msgs.filter((m) => m === 'download URL expired, asking for a fresh one').length, 4);
  });

  it('with temporary credentials: a new one for every credential that expires while downloading, more than maxUrlRefreshes', async () => {
    const { clock, now } = clockAndUrls();
    // the command's URL outlives the test; credentials live 60 s
    ctx.f.server.issueUrl = () => ({ url: ctx.f.http.url(), urlExpiresAt: Math.floor(clock.t / 1000) + 86_400 });
    let issued = 0;
    ctx.f.server.issueCredential = () => {
      const credential = { token: `t${++issued}`, expiresAt: Math.floor(clock.t / 1000) + 60 };
      ctx.f.http.tokens.set(credential.token, credential.expiresAt);
      return credential;
    };
    ctx.f.http.onResponse = (r) => {
      if (r.status !== 403) clock.t += 120_000;
    };
    ctx.f.http.mode = 'cut';
    ctx.f.http.cuts = 4;
    const agent = await ctx.started(new SlotInstaller({ dir: ctx.f.installDir }), { now, downloadAuth: 'token' });
    const finished = nextEvent(agent, 'job-finished');
    await ctx.f.server.setDesired(ctx.f.software('job-slow-token'));
    const outcome = await finished;
    assert.equal(outcome.error, undefined);
    assert.equal(outcome.status, 'SUCCESS');
    const seen = ctx.f.http.requests.map((r) => [r.token, r.status]);
    assert.deepEqual(seen, [['t1', 200], ['t1', 403], ['t2', 206], ['t2', 403], ['t3', 206], ['t3', 403], ['t4', 206], ['t4', 403], ['t5', 206]]);
    assert.equal(ctx.lines.filter((l) => l.includes('download refused, asking for a new credential')).length, 0);
  });

  it('an expired URL and a transient 403 each have a budget: one refresh each with maxUrlRefreshes 1', async () => {
    noUrlsButAsked();
    let issued = 0;
    ctx.f.server.issueUrl = () => {
      issued++;
      const exp = Math.floor(Date.now() / 1000) + (issued === 1 ? -60 : 3600);
      return { url: ctx.f.http.url(undefined, { exp: String(exp), sig: `s${issued}` }), urlExpiresAt: exp };
    };
    ctx.f.http.refuseNext = 1;
    const agent = await ctx.started(new SlotInstaller({ dir: ctx.f.installDir }), { maxUrlRefreshes: 1 });
    const finished = nextEvent(agent, 'job-finished');
    await ctx.f.server.setDesired(ctx.f.software('job-both'));
    const outcome = await finished;
    assert.equal(outcome.error, undefined);
    assert.equal(outcome.status, 'SUCCESS');
    // s1 expired on arrival (never fetched), s2 refused once, s3 downloaded
    assert.deepEqual(ctx.f.http.requests.map((r) => [r.query.get('sig'), r.status]), [['s2', 403], ['s3', 200]]);
  });

  it('fails after maxUrlRefreshes fresh URLs in a row that expire before a byte arrives', async () => {
    const { clock, now } = clockAndUrls();
    // every attempt is answered (403) only once its URL has expired: nothing is ever downloaded
    ctx.f.http.mode = 'forbidden';
    ctx.f.http.onResponse = () => {
      clock.t += 120_000;
    };
    const agent = await ctx.started(new SlotInstaller({ dir: ctx.f.installDir }), { now, maxUrlRefreshes: 2 });
    const finished = nextEvent(agent, 'job-finished');
    await ctx.f.server.setDesired(ctx.f.software('job-never'));
    const outcome = await finished;
    assert.equal(outcome.status, 'FAILURE');
    assert.equal(outcome.error, 'download URL expired and no fresh one arrived after 2 requests (maxUrlRefreshes 2)');
    assert.deepEqual(ctx.f.http.requests.map((r) => [r.query.get('sig'), r.status]), [['s1', 403], ['s2', 403], ['s3', 403]]);
  });

  it('logs an expired URL of 70,000 characters redacted and cut to 500 characters', async () => {
    noUrlsButAsked();
    let issued = 0;
    ctx.f.server.issueUrl = () => {
      issued++;
      const exp = Math.floor(Date.now() / 1000) + (issued === 1 ? -60 : 3600);
      const path = issued === 1 ? `/v1/download/fw/${'x'.repeat(70_000)}` : undefined;
      return { url: ctx.f.http.url(path, { exp: String(exp), sig: `SECRET-${issued}` }), urlExpiresAt: exp };
    };
    const agent = await ctx.started(new SlotInstaller({ dir: ctx.f.installDir }));
    const finished = nextEvent(agent, 'job-finished');
    await ctx.f.server.setDesired(ctx.f.software('job-long-url'));
    assert.equal((await finished).status, 'SUCCESS');
    const expired = ctx.lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === 'download URL expired, asking for a fresh one');
    assert.equal(expired.length, 1);
    const url = String(expired[0]!.url);
    assert.ok(url.length < 600, `the URL logged has ${url.length} characters`);
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/v1\/download\/fw\/xxx.*\.\.\. \(\d+ characters\)$/);
    assert.ok(!ctx.lines.some((l) => l.includes('SECRET')), 'no signature logged');
    assert.ok(Math.max(...ctx.lines.map((l) => l.length)) < 2000, 'no line carries the URL whole');
  });

  it('fails when every URL handed out has already expired, without a request', async () => {
    noUrlsButAsked();
    ctx.f.server.issueUrl = () => ({ url: ctx.f.http.url(undefined, { sig: 'old' }), urlExpiresAt: Math.floor(Date.now() / 1000) - 60 });
    const agent = await ctx.started(new SlotInstaller({ dir: ctx.f.installDir }));
    const finished = nextEvent(agent, 'job-finished');
    await ctx.f.server.setDesired(ctx.f.software('job-stale'));
    const outcome = await finished;
    assert.equal(outcome.error, 'download URL expired and no fresh one arrived after 3 requests (maxUrlRefreshes 3)');
    assert.equal(ctx.f.http.requests.length, 0);
  });
});
