/**
 * The gaps a QA pass found in the dashboard, each checked in a real browser (Debian's Chromium)
 * against a real server: the job page's settings, times and every execution (paged, filtered);
 * the overview's failures one row per device's latest outcome, naming the job; revocations
 * in recent events and the offline count without revoked devices; the devices list's total
 * and its bounded paging state in the URL; the page's own requests sent while `/whoami` is
 * still unanswered. Each test in a tab of its own on data of its own (any one runs alone).
 * Only states are awaited, never a duration.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { eventually } from '../helpers/cli.ts';
import { TestClient } from '../helpers/mqtt-client.ts';
import { apiJson, startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact, deploy } from '../security/support.ts';
import { buildDashboard, chromiumSkip, launchChromium, signedInTab } from './browser-support.ts';

const skip = chromiumSkip();

describe('dashboard QA gaps in Chromium', { skip }, () => {
  let ts: TestServer;
  let browser: Browser;

  before(async () => {
    buildDashboard();
    ts = await startTestServer();
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
    await ts?.close();
  });

  /** Runs `fn` in a tab of its own, closed after; fails on any console error of the tab. */
  const inTab = async (fn: (page: Page) => Promise<void>) => {
    const tab = await signedInTab(browser, ts.token);
    try {
      await fn(tab.page);
    } finally {
      await tab.context.close();
    }
    assert.deepEqual(tab.errors, [], 'console errors');
  };

  /** Registers `ids` in one request. */
  const registerAll = async (ids: string[]) => {
    const r = await apiJson(ts, 'POST', '/api/v1/devices/bulk', { devices: ids.map((deviceId) => ({ deviceId })) });
    assert.equal(r.status, 201, JSON.stringify(r.body));
  };

  /** Waits until every execution of `jobId` was sent its command. */
  const allSent = (jobId: string) =>
    eventually(async () => {
      const r = await apiJson(ts, 'GET', `/api/v1/jobs/${jobId}/executions?limit=1000`);
      return (r.body.items as { dispatchedAt?: number }[]).every((e) => e.dispatchedAt !== undefined) ? true : undefined;
    }, 30_000, `job ${jobId}: every command sent`);

  /** Reports for devices as the operator may (their reported state, as their agents would). */
  const report = async (reports: { deviceId: string; software: Record<string, unknown> }[]) => {
    const op = await TestClient.connect(ts.mqttUrl, `ops-${randomBytes(4).toString('hex')}`, { username: 'operator', password: ts.token });
    try {
      for (const r of reports) await op.publish(`state/${r.deviceId}/update`, { state: { reported: { software: r.software } } });
    } finally {
      await op.end();
    }
  };

  it("shows a job's settings and times, and every execution paged by the API's paging, filtered by state", async () => {
    await addArtifact(ts, '1.0.0', randomBytes(256), 'jp-fw');
    const ids = Array.from({ length: 60 }, (_, i) => `jp-${String(i).padStart(2, '0')}`);
    await registerAll(ids);
    const created = await apiJson(ts, 'POST', '/api/v1/jobs', {
      artifact: 'jp-fw@1.0.0',
      description: 'settings shown',
      targets: { devices: ids },
      plan: { waves: [{ percent: 100 }], maxPerMinute: 6000, maxInFlight: 500 },
      abort: { rules: [{ type: 'FAILED', thresholdPercent: 99, minFinished: 60 }], rollback: false },
      timeouts: { inProgressSeconds: 7200, stepSeconds: 600 },
      retries: { limit: 2, on: ['TIMED_OUT'] },
    });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const jobId = created.body.job.jobId as string;
    await allSent(jobId);
    // 55 fail (more than the failing table's 50), 5 succeed: the job completes
    await report(ids.map((deviceId, i) => ({ deviceId, software: { name: 'jp-fw', version: i < 55 ? '0.9.0' : '1.0.0', jobId, status: i < 55 ? 'FAILURE' : 'SUCCESS', ...(i < 55 ? { error: `failure of ${deviceId}` } : {}) } })));
    await eventually(async () => ((await apiJson(ts, 'GET', `/api/v1/jobs/${jobId}?limit=1`)).body.job.status === 'COMPLETED' ? true : undefined), 30_000, 'the job completed');
    await inTab(async (page) => {
      await page.goto(`${ts.httpUrl}/jobs/${jobId}`);
      await page.getByRole('heading', { level: 1 }).filter({ hasText: 'COMPLETED' }).waitFor();
      const times = page.getByTestId('job-times');
      await times.waitFor();
      const timesText = await times.innerText();
      assert.match(timesText, /Created\s*\n?.*\d/, `created shown: ${timesText}`);
      assert.match(timesText, /Started\s*\n?.*\d/, `started shown: ${timesText}`);
      assert.match(timesText, /Completed\s*\n?.*\d/, `completed shown: ${timesText}`);
      assert.doesNotMatch(timesText, /not (started|finished)/, `times all known: ${timesText}`);
      const settings = await page.getByTestId('job-settings').innerText();
      for (const want of ['60 devices listed', 'Wave 1: up to 100% of the targets', 'at most 6,000 commands a minute', 'at most 500 devices with a command and no outcome', 'FAILED at 99% or more once 60 finished', '7,200 s (2 h)', '600 s (10 min)', 'up to 2 on TIMED_OUT', 'refused']) {
        assert.ok(settings.includes(want), `settings say "${want}": ${settings}`);
      }
      // a last wave whose size reads smaller than the rest: said to take every device left
      const waved = await apiJson(ts, 'POST', '/api/v1/jobs', { artifact: 'jp-fw@1.0.0', targets: { devices: ids.slice(0, 20) }, plan: { waves: [{ count: 10 }, { count: 5 }] } });
      assert.equal(waved.status, 201, JSON.stringify(waved.body));
      await page.goto(`${ts.httpUrl}/jobs/${waved.body.job.jobId as string}`);
      const wavedSettings = await page.getByTestId('job-settings').innerText();
      for (const want of ['Wave 1: 10 devices', 'Wave 2: 5 devices, as the last wave every device left']) assert.ok(wavedSettings.includes(want), `settings say "${want}": ${wavedSettings}`);
      // no threshold given (0): not said as a gate of "0% succeeded" (QA)
      assert.ok(!wavedSettings.includes('next wave once'), `no threshold said for a wave without one: ${wavedSettings}`);
      const cancel = await apiJson(ts, 'POST', `/api/v1/jobs/${waved.body.job.jobId as string}/cancel`, {});
      assert.ok(cancel.status < 300, JSON.stringify(cancel.body));
      await page.goto(`${ts.httpUrl}/jobs/${jobId}`);
      await page.getByRole('heading', { level: 1 }).filter({ hasText: 'COMPLETED' }).waitFor();
      // every execution: 50 a page, the 60 of them
      const table = page.getByTestId('executions-table');
      await page.getByTestId('executions-range').filter({ hasText: '1–50 of 60' }).waitFor();
      assert.equal(await table.locator('tbody tr').count(), 50, 'a page of 50');
      // the failures, all 55 of them: the last 5 are past the failing table's 50
      await page.getByLabel('State', { exact: true }).selectOption('FAILED');
      await page.getByTestId('executions-range').filter({ hasText: '1–50 of 55' }).waitFor();
      await page.getByRole('navigation', { name: "Pages of the job's devices" }).getByRole('button', { name: 'Next' }).click();
      await page.getByTestId('executions-range').filter({ hasText: '51–55 of 55' }).waitFor();
      assert.equal(await table.locator('tbody tr').count(), 5, 'the last 5 failures');
      await table.getByRole('row').filter({ hasText: 'failure of jp-54' }).waitFor();
      assert.equal(await table.getByRole('link', { name: 'jp-54' }).count(), 1, 'jp-54, the 55th failure, listed');
      await page.getByRole('navigation', { name: "Pages of the job's devices" }).getByRole('button', { name: 'Previous' }).click();
      await page.getByTestId('executions-range').filter({ hasText: '1–50 of 55' }).waitFor();
      // the successes
      await page.getByLabel('State', { exact: true }).selectOption('SUCCEEDED');
      await page.getByTestId('executions-range').filter({ hasText: '1–5 of 5' }).waitFor();
      assert.deepEqual(await table.locator('tbody tr td:first-child').allInnerTexts(), ['jp-55', 'jp-56', 'jp-57', 'jp-58', 'jp-59'], 'the successes');
    });
  });

  /** Creates a job of `artifact` on `devices`; resolves with its id once every command went out. */
  const job = async (artifact: string, devices: string[], description: string) => {
    const created = await apiJson(ts, 'POST', '/api/v1/jobs', { artifact, description, targets: { devices } });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    const jobId = created.body.job.jobId as string;
    await allSent(jobId);
    return jobId;
  };
  const completed = (jobId: string) => eventually(async () => ((await apiJson(ts, 'GET', `/api/v1/jobs/${jobId}?limit=1`)).body.job.status === 'COMPLETED' ? true : undefined), 30_000, `job ${jobId} completed`);

  it("lists on the overview one row per device whose latest outcome is a failure, naming the job; a device that succeeded since is not listed", async () => {
    await addArtifact(ts, '1.0.0', randomBytes(256), 'ovf-fw');
    await registerAll(['ovf-a', 'ovf-b', 'ovf-c']);
    // the same build twice: ovf-a fails both jobs, ovf-b fails the first and installs it in the second, ovf-c fails the first
    const first = await job('ovf-fw@1.0.0', ['ovf-a', 'ovf-b', 'ovf-c'], 'first try');
    await report(['ovf-a', 'ovf-b', 'ovf-c'].map((deviceId) => ({ deviceId, software: { name: 'ovf-fw', version: '0.9.0', jobId: first, status: 'FAILURE', error: `${deviceId} failed the first` } })));
    await completed(first);
    const second = await job('ovf-fw@1.0.0', ['ovf-a', 'ovf-b'], 'second try');
    await report([
      { deviceId: 'ovf-a', software: { name: 'ovf-fw', version: '0.9.0', jobId: second, status: 'FAILURE', error: 'ovf-a failed the second' } },
      { deviceId: 'ovf-b', software: { name: 'ovf-fw', version: '1.0.0', jobId: second, status: 'SUCCESS' } },
    ]);
    await completed(second);
    await inTab(async (page) => {
      await page.goto(ts.httpUrl + '/');
      const table = page.getByTestId('failing-devices');
      const rowOf = (id: string) => table.getByRole('row').filter({ has: page.getByRole('link', { name: id, exact: true }) });
      await rowOf('ovf-a').filter({ hasText: 'ovf-a failed the second' }).waitFor();
      assert.equal(await rowOf('ovf-a').count(), 1, 'ovf-a once, its latest failure');
      assert.equal(await rowOf('ovf-a').getByRole('link', { name: `job ${second}`, exact: true }).count(), 1, "ovf-a's row links the second job");
      assert.match(await rowOf('ovf-a').innerText(), /second try/, "the job's description");
      assert.equal(await rowOf('ovf-c').count(), 1, 'ovf-c, which failed the first job only');
      assert.equal(await rowOf('ovf-c').getByRole('link', { name: `job ${first}`, exact: true }).count(), 1, "ovf-c's row links the first job");
      assert.equal(await rowOf('ovf-b').count(), 0, 'ovf-b succeeded since: not a failure');
      // the time the rows are ordered by: when the failure came (failedAt), since 2026-12-07
      const listed = ((await apiJson(ts, 'GET', '/api/v1/fleet/overview')).body.failing as { deviceId: string; failedAt: number }[]).find((f) => f.deviceId === 'ovf-a');
      assert.equal(typeof listed?.failedAt, 'number', `the API's row of ovf-a has its failedAt: ${JSON.stringify(listed)}`);
      assert.equal(await rowOf('ovf-a').locator('time').getAttribute('datetime'), new Date(listed!.failedAt).toISOString(), "ovf-a's row shows when its failure came");
    });
    // an older server instance behind the same load balancer (a rolling upgrade) answers
    // /fleet/overview without failedAt: the page shows the rows, at their updatedAt (until the
    // review of e593c60 new Date(undefined).toISOString() threw a RangeError and, with no error
    // boundary, the whole overview failed to render). The real server's answer, failedAt taken out.
    await inTab(async (page) => {
      let older: { deviceId: string; updatedAt: number }[] = [];
      await page.route('**/api/v1/fleet/overview', async (route) => {
        const response = await route.fetch();
        const body = (await response.json()) as { failing: { deviceId: string; failedAt?: number; updatedAt: number }[] };
        for (const f of body.failing) delete f.failedAt;
        older = body.failing;
        await route.fulfill({ response, json: body });
      });
      await page.goto(ts.httpUrl + '/');
      const table = page.getByTestId('failing-devices');
      const rowOf = (id: string) => table.getByRole('row').filter({ has: page.getByRole('link', { name: id, exact: true }) });
      await rowOf('ovf-a').filter({ hasText: 'ovf-a failed the second' }).waitFor();
      const a = older.find((f) => f.deviceId === 'ovf-a');
      assert.equal(typeof a?.updatedAt, 'number', `the older answer's row of ovf-a, without failedAt: ${JSON.stringify(a)}`);
      assert.equal(await rowOf('ovf-a').locator('time').getAttribute('datetime'), new Date(a!.updatedAt).toISOString(), "ovf-a's row shows its updatedAt when the answer has no failedAt");
      assert.equal(await rowOf('ovf-c').count(), 1, 'the other rows shown too');
    });
  });

  it('lists revocations among the recent events, live, and counts revoked devices apart from offline ones', async () => {
    await registerAll(['rv-1', 'rv-2']);
    await inTab(async (page) => {
      await page.goto(ts.httpUrl + '/');
      await page.getByTestId('recent-events').or(page.getByText('Nothing has happened since the server started.')).waitFor();
      await page.getByRole('status', { name: 'Live updates: Live' }).waitFor();
      const revoked = await apiJson(ts, 'POST', '/api/v1/devices/rv-1/revoke');
      assert.equal(revoked.status, 200, JSON.stringify(revoked.body));
      // live: the event shows without a reload
      await page.getByTestId('recent-events').getByRole('listitem').filter({ has: page.getByRole('link', { name: 'rv-1', exact: true }) }).filter({ hasText: 'REVOKED' }).waitFor();
      // offline: registered, neither revoked nor online (the figures of one overview answer)
      await eventually(async () => {
        const o = (await apiJson(ts, 'GET', '/api/v1/fleet/overview')).body.devices as { registered: number; revoked: number; online: number };
        const shown = [await page.getByTestId('stat-offline').innerText(), await page.getByTestId('stat-revoked').innerText()];
        return o.revoked >= 1 && shown[0] === String(o.registered - o.revoked - o.online) && shown[1] === String(o.revoked) ? true : undefined;
      }, 30_000, 'offline counts the devices neither revoked nor online');
      const reinstated = await apiJson(ts, 'POST', '/api/v1/devices/rv-1/reinstate');
      assert.equal(reinstated.status, 200, JSON.stringify(reinstated.body));
      await page.getByTestId('recent-events').getByRole('listitem').filter({ has: page.getByRole('link', { name: 'rv-1', exact: true }) }).filter({ hasText: 'REINSTATED' }).waitFor();
    });
  });

  it('gives the devices list its total, and keeps its paging state in the URL bounded however far it pages', async () => {
    const ids = Array.from({ length: 300 }, (_, i) => `dvq-${String(i).padStart(3, '0')}`);
    await registerAll(ids);
    await inTab(async (page) => {
      await page.goto(`${ts.httpUrl}/devices?id=dvq-`);
      const rows = page.getByTestId('devices-table').locator('tbody tr');
      const firstShown = () => rows.first().locator('td').first().innerText();
      await page.getByTestId('devices-total').filter({ hasText: '300 devices match' }).waitFor();
      const pager = page.getByRole('navigation', { name: 'Pages of devices' });
      // to the last page, 12, one page at a time: the URL's cursors stay at 10 at most
      for (let n = 2; n <= 12; n++) {
        await pager.getByRole('button', { name: 'Next', exact: true }).click();
        await page.waitForURL((u) => u.searchParams.get('page') === String(n));
        await eventually(async () => ((await firstShown()) === ids[(n - 1) * 25] ? true : undefined), 30_000, `page ${n} shown`);
        const url = new URL(page.url());
        const kept = url.searchParams.get('prev')?.split(',') ?? [];
        assert.ok(kept.length <= 10, `page ${n}: ${kept.length} cursors in the URL (${url.search.length} characters)`);
        assert.equal(kept.length, Math.min(n - 1, 10), `page ${n}: the cursors of the pages before it, at most 10`);
        await page.getByTestId('devices-total').filter({ hasText: `Page ${n} · 300 devices match` }).waitFor();
      }
      // back through the kept cursors, to page 2
      for (let n = 11; n >= 2; n--) {
        await pager.getByRole('button', { name: 'Previous', exact: true }).click();
        await eventually(async () => ((await firstShown()) === ids[(n - 1) * 25] ? true : undefined), 30_000, `back on page ${n}`);
      }
      // page 1's cursor was not kept: Previous is off, First page goes there
      assert.equal(await pager.getByRole('button', { name: 'Previous', exact: true }).isDisabled(), true, 'no earlier cursor kept');
      await pager.getByRole('button', { name: 'First page', exact: true }).click();
      await eventually(async () => ((await firstShown()) === 'dvq-000' ? true : undefined), 30_000, 'the first page');
      await page.getByTestId('devices-total').filter({ hasText: 'Page 1 · 300 devices match' }).waitFor();
      assert.equal(new URL(page.url()).searchParams.has('prev'), false, 'the first page carries no cursors');
    });
  });

  it("asks a filtered search's count once (it may read 100,000 devices), the whole fleet's again every 30 s", async () => {
    await registerAll(Array.from({ length: 3 }, (_, i) => `dvc-${i}`));
    await inTab(async (page) => {
      const counts: string[] = [];
      page.on('request', (r) => {
        if (r.url().includes('/api/v1/fleet/search/count')) counts.push(new URL(r.url()).search);
      });
      // the page's timers on a clock the test moves: no wait on a duration
      await page.clock.install();
      await page.goto(`${ts.httpUrl}/devices?id=dvc-`);
      await page.getByTestId('devices-total').filter({ hasText: '3 devices match' }).waitFor();
      await page.clock.runFor(95_000);
      await page.getByTestId('devices-total').filter({ hasText: '3 devices match' }).waitFor();
      assert.deepEqual(counts, ['?id=dvc-'], `a filtered search's count asked once in 95 s: ${counts.join(' ')}`);
      counts.length = 0;
      await page.goto(`${ts.httpUrl}/devices`);
      await page.getByTestId('devices-total').waitFor();
      await page.clock.runFor(95_000);
      await eventually(async () => (counts.length >= 4 ? true : undefined), 30_000, `the whole fleet's count asked at the start and every 30 s: ${counts.join(' ')}`);
      assert.ok(counts.every((q) => q === ''), `without filters: ${counts.join(' ')}`);
    });
  });

  it("sends a page's own requests while /whoami is unanswered, and shows operator controls only once the server said operator", async () => {
    const viewer = await apiJson(ts, 'POST', '/api/v1/viewer-tokens', { name: 'qa-wall' });
    assert.equal(viewer.status, 201, JSON.stringify(viewer.body));
    for (const [token, role] of [[ts.token, 'operator'], [viewer.body.token as string, 'viewer']] as const) {
      const tab = await signedInTab(browser, token);
      try {
        const page = tab.page;
        // /whoami held in the browser until the test lets it go
        let release!: () => void;
        const held = new Promise<void>((resolve) => (release = resolve));
        let asked = 0;
        await page.route('**/api/v1/whoami', async (route) => {
          asked++;
          await held;
          await route.continue();
        });
        const jobsRead = page.waitForResponse((r) => new URL(r.url()).pathname === '/api/v1/jobs' && r.request().method() === 'GET', { timeout: 30_000 });
        await page.goto(`${ts.httpUrl}/jobs`);
        // the page's own read answered and shown, /whoami still unanswered
        const answered = await jobsRead;
        assert.equal(answered.status(), 200, `${role}: the jobs list read`);
        await page.getByRole('heading', { level: 1, name: 'Jobs' }).waitFor({ timeout: 30_000 });
        assert.equal(asked, 1, `${role}: /whoami asked once, and held`);
        assert.equal(await page.getByRole('link', { name: 'New rollout' }).count(), 0, `${role}: no operator control before the server said operator`);
        assert.equal(await page.getByRole('note').filter({ hasText: 'Read-only' }).count(), 0, `${role}: not said read-only before the server said so`);
        release();
        if (role === 'operator') {
          await page.getByRole('link', { name: 'New rollout' }).waitFor();
        } else {
          await page.getByRole('note').filter({ hasText: 'Read-only: viewer token qa-wall' }).waitFor();
          assert.equal(await page.getByRole('link', { name: 'New rollout' }).count(), 0, 'a viewer: no new rollout');
        }
      } finally {
        await tab.context.close();
      }
      assert.deepEqual(tab.errors, [], `${role}: console errors`);
    }
  });

  it('shows a page that fails to render as an error where the page would be, the navigation kept, and other pages still work', async () => {
    // an answer of a shape the page does not expect (an instance of another version behind the
    // same balancer): `failing` no list. Until 2026-12-07 the dashboard had no error boundary,
    // and Preact's uncaught render error left the tab blank, navigation included
    const tab = await signedInTab(browser, ts.token);
    try {
      const { page } = tab;
      await page.route('**/api/v1/fleet/overview', async (route) => {
        const response = await route.fetch();
        const body = (await response.json()) as Record<string, unknown>;
        await route.fulfill({ response, json: { ...body, failing: 5 } });
      });
      await page.goto(ts.httpUrl + '/');
      await page.getByRole('heading', { name: 'This page could not be shown' }).waitFor();
      assert.match((await page.getByRole('alert').first().textContent()) ?? '', /The page failed to render: .+/, 'the error is said where the page would be');
      assert.equal(await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Devices' }).count(), 1, 'the navigation is kept');
      await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Devices' }).click();
      await page.getByRole('heading', { name: 'Devices', level: 1 }).waitFor();
      assert.equal(await page.getByRole('heading', { name: 'This page could not be shown' }).count(), 0, 'another page starts clean');
      assert.ok(tab.errors.length > 0 && tab.errors.every((e) => /the page failed to render/.test(e)), `the only console errors are the boundary's own: ${JSON.stringify(tab.errors)}`);
    } finally {
      await tab.context.close();
    }
  });
});
