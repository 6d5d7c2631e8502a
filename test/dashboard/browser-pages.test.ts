/**
 * The dashboard's pages in a real browser (Debian's Chromium) against a real server, each test
 * independent of the others: its own tab (signed in before the page loads) and its own data
 * (device ids, artifact names), so that any one can run alone or in any order
 * (`--test-name-pattern`). Only states are awaited, never a duration.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { ApiClient } from '../../src/cli/api-client.ts';
import { eventually, runCli } from '../helpers/cli.ts';
import { connectDevice, TestClient } from '../helpers/mqtt-client.ts';
import { startRestartableS3 } from '../helpers/s3.ts';
import { retryNotSentExecution } from '../helpers/retry-not-sent.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact, deploy } from '../security/support.ts';
import { buildDashboard, chromiumSkip, launchChromium, signedInTab, startCountingProxy } from './browser-support.ts';

const skip = chromiumSkip();

describe('dashboard pages in Chromium, each test on its own data', { skip }, () => {
  let ts: TestServer;
  let api: ApiClient;
  let browser: Browser;

  before(async () => {
    buildDashboard();
    ts = await startTestServer();
    api = new ApiClient({ server: ts.httpUrl, token: ts.token });
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
    await ts?.close();
  });

  /** Runs `fn` in a tab of its own, closed after; fails on any console error of the tab. */
  const inTab = async (fn: (page: Page) => Promise<void>, viewport?: { width: number; height: number }) => {
    const tab = await signedInTab(browser, ts.token, viewport);
    try {
      await fn(tab.page);
    } finally {
      await tab.context.close();
    }
    assert.deepEqual(tab.errors, [], 'console errors');
  };

  it('reads each list once as its page opens (counted at the server, through a proxy), and again on a change', async () => {
    await addArtifact(ts, '1.0.0', randomBytes(256), 'once-fw');
    await registerDevice(ts, 'once-1');
    await deploy(ts, ['once-1'], 'once-fw@1.0.0');
    const proxy = await startCountingProxy(ts.httpUrl);
    try {
      const lists: { page: string; read: string; shown: (p: Page) => Promise<void> }[] = [
        { page: '/jobs', read: 'GET /api/v1/jobs?limit=25', shown: (p) => p.getByTestId('jobs-table').getByRole('cell', { name: 'once-fw@1.0.0' }).first().waitFor() },
        { page: '/artifacts', read: 'GET /api/v1/artifacts?limit=100', shown: (p) => p.getByTestId('artifacts-table').getByRole('row').filter({ hasText: 'once-fw' }).first().waitFor() },
        { page: '/devices', read: 'GET /api/v1/fleet/search?limit=25', shown: (p) => p.getByTestId('devices-table').getByRole('link', { name: 'once-1' }).waitFor() },
        { page: '/jobs/new', read: 'GET /api/v1/artifacts?limit=1000', shown: (p) => p.getByLabel('Artifact').locator('option', { hasText: 'once-fw@1.0.0' }).waitFor({ state: 'attached' }) },
      ];
      for (const l of lists) {
        await inTab(async (page) => {
          const before = proxy.count(l.read);
          // the page's requests for its list, as the browser sent and ended them
          let sent = 0;
          let ended = 0;
          const mine = (url: string) => `GET ${new URL(url).pathname}${new URL(url).search}` === l.read;
          page.on('request', (r) => mine(r.url()) && sent++);
          page.on('requestfinished', (r) => mine(r.url()) && ended++);
          page.on('requestfailed', (r) => mine(r.url()) && ended++);
          await page.goto(proxy.url + l.page);
          await l.shown(page);
          await page.getByRole('status', { name: 'Live updates: Live' }).waitFor();
          // every read the page began by now (a read again as the stream went live was begun
          // before the indicator said Live) has reached the server and been answered
          await eventually(async () => (sent > 0 && sent === ended ? true : undefined), 10_000, `${l.page}: its reads answered`);
          assert.equal(proxy.count(l.read) - before, 1, `${l.page}: ${l.read} sent ${proxy.count(l.read) - before} times as the page opened`);
          if (l.page !== '/artifacts') return;
          // a change still reads it again: a build added elsewhere
          await addArtifact(ts, '1.1.0', randomBytes(256), 'once-fw');
          await page.getByTestId('artifacts-table').getByRole('row').filter({ hasText: '1.1.0' }).waitFor();
          await eventually(async () => (sent === ended ? true : undefined), 10_000, 'its reads answered');
          assert.equal(proxy.count(l.read) - before, 2, 'once as it opened, once for the build added');
        });
      }
    } finally {
      await proxy.close();
    }
  });

  it("gives a job whose devices were hotfixed or removed the progress job watch gives: 100% once the rest finished", async () => {
    await addArtifact(ts, '1.0.0', randomBytes(256), 'hot-fw');
    await addArtifact(ts, '1.0.1', randomBytes(256), 'hot-fw');
    const ids = ['hot-1', 'hot-2', 'hot-3'];
    for (const id of ids) await registerDevice(ts, id);
    const jobId = await deploy(ts, ids, 'hot-fw@1.0.0');
    const view = () => api.call<{ job: { status: string }; counts: Record<string, number>; percentDone: number }>('GET', `/api/v1/jobs/${jobId}?limit=1`);
    await eventually(async () => ((await api.call<{ items: { dispatchedAt?: number }[] }>('GET', `/api/v1/jobs/${jobId}/executions`)).items.every((e) => e.dispatchedAt !== undefined) ? true : undefined), 30_000, 'the commands sent');
    // hot-1 installs it (its report sent by an operator), hot-2 is given a hotfix before it
    // finished (a newer job supersedes it: CANCELED), hot-3 is deleted (REMOVED)
    const op = await TestClient.connect(ts.mqttUrl, 'ops-hot', { username: 'operator', password: ts.token });
    try {
      await op.publish('state/hot-1/update', { state: { reported: { software: { name: 'hot-fw', version: '1.0.0', jobId, status: 'SUCCESS' } } } });
    } finally {
      await op.end();
    }
    await deploy(ts, ['hot-2'], 'hot-fw@1.0.1');
    await api.call('DELETE', '/api/v1/devices/hot-3');
    const done = await eventually(async () => {
      const v = await view();
      return v.job.status === 'COMPLETED' ? v : undefined;
    }, 30_000, 'the job completed');
    assert.deepEqual([done.counts.SUCCEEDED, done.counts.CANCELED, done.counts.REMOVED], [1, 1, 1]);
    // the CLI's figure
    const watch = await runCli(['job', 'watch', jobId, '--server', ts.httpUrl, '--token', ts.token]);
    assert.equal(watch.code, 0, watch.stderr);
    assert.match(watch.stderr, /\] 100\.0%  COMPLETED/);
    // the dashboard's, on the same job
    await inTab(async (page) => {
      await page.goto(`${ts.httpUrl}/jobs/${jobId}`);
      await page.getByRole('heading', { level: 1 }).filter({ hasText: 'COMPLETED' }).waitFor();
      await page.getByTestId('job-progress').filter({ hasText: '1 of 1 finished (100%) · 1 canceled, 1 removed, left out' }).waitFor();
      assert.equal(await page.getByLabel('All devices: 100%').count(), 1, await page.getByTestId('job-progress').innerText());
      const bar = page.getByTestId('job-progress').locator('progress');
      assert.equal(await bar.evaluate((p: HTMLProgressElement) => p.position), 1, 'the bar full');
    });
  });

  it('keeps a 128-character device id without spaces inside its table, cut with its whole id in the title, on every page that lists it', async () => {
    const id = `long-${'x0'.repeat(70)}`.slice(0, 124) + '-end';
    assert.equal(id.length, 128);
    await addArtifact(ts, '1.0.0', randomBytes(256), 'long-fw');
    const secret = await registerDevice(ts, id);
    const jobId = await deploy(ts, [id], 'long-fw@1.0.0');
    const device = await TestClient.connect(ts.mqttUrl, id, { username: id, password: secret });
    try {
      await device.publish(`state/${id}/update`, { state: { reported: { software: { name: 'long-fw', version: '0.9.0', jobId, status: 'FAILURE', error: 'health check failed' } } } });
    } finally {
      await device.end();
    }
    await eventually(async () => ((await api.call<{ counts: Record<string, number> }>('GET', `/api/v1/jobs/${jobId}?limit=1`)).counts.FAILED === 1 ? true : undefined), 30_000, 'the failure recorded');
    await inTab(
      async (page) => {
        for (const [route, table] of [['/devices?id=long-', 'devices-table'], [`/jobs/${jobId}`, undefined], ['/', undefined]] as const) {
          await page.goto(ts.httpUrl + route);
          const link = (table ? page.getByTestId(table) : page.locator('table')).getByRole('link', { name: id, exact: true }).first();
          await link.waitFor();
          assert.equal(await link.getAttribute('title'), id, `${route}: the whole id in the title`);
          const sized = await page.evaluate(() => ({ page: document.documentElement.scrollWidth, window: window.innerWidth, tables: [...document.querySelectorAll('table')].map((t) => t.getBoundingClientRect().right) }));
          assert.ok(sized.page <= sized.window, `${route} is ${sized.page} px wide in a window of ${sized.window}`);
          for (const right of sized.tables) assert.ok(right <= sized.window, `${route}: a table ends at ${right} px in a window of ${sized.window}`);
        }
      },
      { width: 1024, height: 800 },
    );
  });

  it("keeps a 128-character device id's own page within the window, and a failure reason in its job history in whole words where the row has room", async () => {
    const id = `page-${'y1'.repeat(70)}`.slice(0, 124) + '-end';
    assert.equal(id.length, 128);
    // the QA's case (1280 px): a failed job with its log, the reason squeezed to "simulate / d …"
    const reason = 'simulated health check failure of 2.0.0; rolled back to 1.1.0';
    await addArtifact(ts, '2.0.0', randomBytes(256), 'longpage-fw');
    const device = await connectDevice(ts, id);
    try {
      assert.deepEqual(await device.subscribe(`state/${id}/job-log/+`), [1]);
      const jobId = await deploy(ts, [id], 'longpage-fw@2.0.0');
      await device.publish(`state/${id}/update`, { state: { reported: { software: { name: 'longpage-fw', version: '1.1.0', jobId, status: 'FAILURE', error: reason } } } });
      const answer = await device.request(`state/${id}/job-log`, { jobId, lines: ['health check: exit code 1'] });
      assert.equal(answer.topic, `state/${id}/job-log/accepted`, JSON.stringify(answer.body));
    } finally {
      await device.end();
    }
    for (const viewport of [{ width: 1280, height: 900 }, { width: 1024, height: 800 }, { width: 390, height: 800 }]) {
      await inTab(async (page) => {
        await page.goto(`${ts.httpUrl}/devices/${encodeURIComponent(id)}`);
        await page.getByRole('heading', { level: 1 }).filter({ hasText: 'OFFLINE' }).waitFor();
        const cell = page.getByTestId('device-jobs').getByRole('cell', { name: reason });
        await cell.waitFor();
        const sized = await page.evaluate(() => ({ page: document.documentElement.scrollWidth, window: window.innerWidth }));
        assert.ok(sized.page <= sized.window, `${viewport.width} px: the device page is ${sized.page} px wide in a window of ${sized.window}`);
        if (viewport.width < 1024) return; // a phone: a word may have to break, the page still fits
        // each word of the reason on one line: no word broken where the row has room
        const broken = await cell.evaluate((td) => {
          const text = td.firstChild as Text;
          const out: string[] = [];
          for (const m of text.data.matchAll(/\S+/g)) {
            const r = document.createRange();
            r.setStart(text, m.index!);
            r.setEnd(text, m.index! + m[0].length);
            if (r.getClientRects().length > 1) out.push(m[0]);
          }
          return out;
        });
        assert.deepEqual(broken, [], `${viewport.width} px: words of the reason broken across lines (cell ${Math.round((await cell.boundingBox())!.width)} px wide)`);
      }, viewport);
    }
  });

  it("shows on a device's page its client certificate's days left, why its renewal failed, and the CA that issued it", async () => {
    const id = 'renew-fail-1';
    const issuer = 'CN=Updraft device CA 2026-12-06 12:45:03Z, O=Updraft';
    const expiresAt = Math.floor(Date.now() / 1000) + 9 * 86_400 + 3600; // 9 days and an hour
    const device = await connectDevice(ts, id);
    try {
      assert.deepEqual(await device.subscribe(`state/${id}/update/+`), [1]);
      // what an agent whose renewal the server refused reports (agent.ts: certificateRenewalError)
      const answer = await device.request(`state/${id}/update`, { state: { reported: { agent: { trust: 'unsigned', certificateExpiresAt: expiresAt, certificateIssuer: issuer, certificateRenewalError: 'the server refused the renewal (429): too many renewals within the hour' } } } });
      assert.equal(answer.topic, `state/${id}/update/accepted`, JSON.stringify(answer.body));
      await inTab(async (page) => {
        await page.goto(`${ts.httpUrl}/devices/${id}`);
        const facts = page.getByTestId('agent-facts');
        await facts.filter({ hasText: /client certificate valid until .+, 9 days left/ }).waitFor();
        const error = facts.getByTestId('renewal-error');
        assert.equal(await error.innerText(), 'renewal failed: the server refused the renewal (429): too many renewals within the hour', 'the renewal error in words');
        assert.equal(await error.getAttribute('class'), 'note-bad', 'said as an error');
        assert.equal(await facts.getByTestId('certificate-issuer').innerText(), `issued by ${issuer}`, 'the issuing CA');
        // a renewal that succeeds reports null: the error goes, live
        const renewed = await device.request(`state/${id}/update`, { state: { reported: { agent: { certificateRenewalError: null } } } });
        assert.equal(renewed.topic, `state/${id}/update/accepted`, JSON.stringify(renewed.body));
        await page.reload();
        await facts.filter({ hasText: '9 days left' }).waitFor();
        assert.equal(await facts.getByTestId('renewal-error').count(), 0, 'no renewal error once null');
      });
    } finally {
      await device.end();
    }
  });

  it('says the reason of a canceled execution in the neutral style, not as an error, on the overview and the device page; a failure stays red', async () => {
    await addArtifact(ts, '1.0.0', randomBytes(256), 'cancel-fw');
    const canceled = 'cancel-r-1';
    const failed = 'cancel-f-1';
    await registerDevice(ts, canceled);
    const device = await connectDevice(ts, failed);
    try {
      const cancelJob = await deploy(ts, [canceled], 'cancel-fw@1.0.0');
      await api.call('POST', `/api/v1/jobs/${cancelJob}/cancel`);
      const failJob = await deploy(ts, [failed], 'cancel-fw@1.0.0');
      await device.publish(`state/${failed}/update`, { state: { reported: { software: { name: 'cancel-fw', version: '0.9.0', jobId: failJob, status: 'FAILURE', error: 'installer exit code 3' } } } });
      await eventually(async () => ((await api.call<{ counts: Record<string, number> }>('GET', `/api/v1/jobs/${failJob}?limit=1`)).counts.FAILED === 1 ? true : undefined), 30_000, 'the failure recorded');
    } finally {
      await device.end();
    }
    await inTab(async (page) => {
      /** The computed colour of the reason `text` in `list`, and its classes. */
      const styleOf = async (list: string, text: string) => {
        const reason = page.getByTestId(list).locator('.reason', { hasText: text }).first();
        await reason.waitFor();
        return reason.evaluate((el) => ({ color: getComputedStyle(el).color, classes: el.className }));
      };
      /** The error colour (--bad), as computed. */
      const red = () =>
        page.evaluate(() => {
          const s = document.createElement('span');
          s.style.color = 'var(--bad)';
          document.body.append(s);
          const c = getComputedStyle(s).color;
          s.remove();
          return c;
        });
      for (const [route, list] of [['/', 'recent-events'], [`/devices/${canceled}`, 'device-events'], [`/devices/${failed}`, 'device-events']] as const) {
        await page.goto(ts.httpUrl + route);
        const bad = await red();
        assert.equal(bad, 'rgb(161, 35, 27)', 'the error colour read');
        if (route !== `/devices/${failed}`) {
          const c = await styleOf(list, 'job canceled by an operator');
          assert.notEqual(c.color, bad, `${route}: a cancellation's reason is not in the error colour (${c.classes})`);
          assert.doesNotMatch(c.classes, /error/, `${route}: nor of the error class`);
        }
        if (route !== `/devices/${canceled}`) {
          const f = await styleOf(list, 'installer exit code 3');
          assert.equal(f.color, bad, `${route}: a failure's reason in red (${f.classes})`);
        }
      }
    });
  });

  it("decides read-only from the server's answer on load, not from what the tab stored: a viewer token put into storage gets no operator control", async () => {
    await registerDevice(ts, 'ro-1');
    const { token: viewer } = await api.call<{ token: string }>('POST', '/api/v1/viewer-tokens', { name: 'ro-wall' });
    /** A tab whose storage holds `token` (and `extra` entries), put there without the sign-in form. */
    const stored = async (token: string, extra: Record<string, string>, fn: (page: Page) => Promise<void>) => {
      const tab = await signedInTab(browser, token);
      try {
        await tab.context.addInitScript((entries) => {
          if (location.protocol.startsWith('http')) for (const [k, v] of Object.entries(entries)) sessionStorage.setItem(k, v);
        }, extra);
        await fn(tab.page);
      } finally {
        await tab.context.close();
      }
      assert.deepEqual(tab.errors, [], 'console errors');
    };
    await stored(viewer, {}, async (page) => {
      await page.goto(`${ts.httpUrl}/devices/ro-1`);
      await page.getByRole('note').filter({ hasText: 'Read-only: viewer token ro-wall' }).waitFor();
      await page.getByRole('heading', { level: 1 }).filter({ hasText: 'Device ro-1' }).waitFor();
      await page.getByTestId('device-events').waitFor({ state: 'attached' }); // the page read (no events: an empty list)
      assert.equal(await page.getByRole('group', { name: 'Device controls' }).count(), 0, 'no device controls');
      assert.equal(await page.getByRole('button', { name: /Revoke|Delete/ }).count(), 0, 'no revoke or delete');
      await page.getByRole('link', { name: 'Security' }).click();
      await page.getByTestId('url-keys').waitFor();
      assert.equal(await page.getByTestId('named-no-rotation').count(), 0, 'not "signed in with operator token ro-wall"');
      assert.equal(await page.getByRole('button', { name: /Rotate URL key|Replace the operator token|Add (viewer|operator) token/ }).count(), 0, 'no key or token controls');
      await page.getByRole('link', { name: 'Jobs' }).click();
      await page.getByRole('heading', { level: 1, name: 'Jobs' }).waitFor();
      assert.equal(await page.getByRole('link', { name: 'New rollout' }).count(), 0, 'no new rollout');
    });
    // and the other way: the operator token with a viewer's name left in storage keeps every control
    await stored(ts.token, { 'updraft.viewer': 'ro-wall' }, async (page) => {
      await page.goto(`${ts.httpUrl}/devices/ro-1`);
      await page.getByRole('group', { name: 'Device controls' }).getByRole('button', { name: 'Revoke device' }).waitFor();
      assert.equal(await page.getByRole('note').filter({ hasText: 'Read-only' }).count(), 0, 'not said read-only');
    });
  });

  it('pages the artifacts 100 at a time (Older, Newer builds and Newest, kept in the URL), and offers every build in New rollout', async () => {
    // a server of its own: 1,050 builds (records only, each its own millisecond), more than
    // one page of the picker's 1000
    const own = await startTestServer();
    try {
      const records = Array.from({ length: 1_050 }, (_, i) => ({ name: 'paged-fw', version: `1.0.${i}`, sha256: i.toString(16).padStart(64, '0'), size: 1_000 + i, createdAt: 1_000_000 + i }));
      for (let i = 0; i < records.length; i += 100) await Promise.all(records.slice(i, i + 100).map((a) => own.server.store.putArtifact(a)));
      const tab = await signedInTab(browser, own.token);
      try {
        const page = tab.page;
        const rows = page.getByTestId('artifacts-table').locator('tbody tr');
        /** The page shown starts at 1.0.<first> and has 100 rows. */
        const shows = async (first: number) => {
          await rows.first().getByRole('cell', { name: `1.0.${first}`, exact: true }).waitFor();
          assert.equal(await rows.count(), 100, `the page from 1.0.${first}`);
        };
        await page.goto(`${own.httpUrl}/artifacts`);
        await shows(1049);
        await page.getByRole('button', { name: 'Older builds' }).click();
        await shows(949);
        await page.getByRole('button', { name: 'Older builds' }).click();
        await shows(849);
        assert.equal(new URL(page.url()).searchParams.getAll('newer').length, 1, 'the way back is in the URL');
        await page.reload();
        await shows(849);
        await page.getByRole('button', { name: 'Newer builds' }).click();
        await shows(949);
        await page.goBack();
        await shows(849);
        await page.getByRole('button', { name: 'Newest' }).click();
        await shows(1049);
        // New rollout's picker: every build, the oldest from the second page of 1000
        await page.goto(`${own.httpUrl}/jobs/new`);
        const options = page.getByLabel('Artifact').locator('option');
        await options.filter({ hasText: /^paged-fw@1\.0\.0$/ }).waitFor({ state: 'attached' });
        assert.equal(await options.count(), 1 + records.length, 'every build, and "choose a build…"');
      } finally {
        await tab.context.close();
      }
      assert.deepEqual(tab.errors, [], 'console errors');
    } finally {
      await own.close();
    }
  });

  it("says on a job's page that the job is held while its server's artifact storage does not answer, and no more once it does", async () => {
    // a server of its own, whose artifacts are in an S3 bucket the test stops and starts
    const s3 = await startRestartableS3();
    const held = await startTestServer({ flags: { blob: s3.blobUrl('dash-hold') } });
    try {
      await addArtifact(held, '1.0.0', randomBytes(256), 'hold-fw');
      const ids = ['hold-1', 'hold-2'];
      for (const id of ids) await registerDevice(held, id);
      await s3.down();
      const jobId = await deploy(held, ids, 'hold-fw@1.0.0');
      const heldApi = new ApiClient({ server: held.httpUrl, token: held.token });
      const progress = async () => (await heldApi.call<{ job: { status: string; progress?: { storageHeldSince?: number } } }>('GET', `/api/v1/jobs/${jobId}?limit=1`)).job;
      await eventually(async () => ((await progress()).progress?.storageHeldSince !== undefined ? true : undefined), 30_000, 'the job held');
      const tab = await signedInTab(browser, held.token);
      try {
        const page = tab.page;
        await page.goto(`${held.httpUrl}/jobs/${jobId}`);
        const notice = page.getByTestId('storage-held');
        await notice.filter({ hasText: /^Held: the artifact storage has not answered since .+; nothing new is sent until it does \(devices already updating go on\)\.$/ }).waitFor();
        assert.equal(await notice.getAttribute('role'), 'status');
        // the storage back: the engine sends, the hold ends, and the page says so by itself (live)
        await s3.up();
        await eventually(async () => ((await progress()).progress?.storageHeldSince === undefined ? true : undefined), 30_000, 'the hold over');
        await notice.waitFor({ state: 'detached' });
      } finally {
        await tab.context.close();
      }
      assert.deepEqual(tab.errors, [], 'console errors');
    } finally {
      await held.close();
      await s3.close();
    }
  });

  it("says on a device's page that a SUCCEEDED job's retry was not sent (details.retryNotSent)", async () => {
    const { jobId } = await retryNotSentExecution(ts, 'unsent-dash-1', 'unsent-dash-fw');
    await inTab(async (page) => {
      await page.goto(`${ts.httpUrl}/devices/unsent-dash-1`);
      const row = page.getByRole('row').filter({ has: page.getByRole('link', { name: `job ${jobId}` }) });
      await row.getByTestId('succeeded-note').filter({ hasText: /^Retry not sent \(.+\): the device had reported attempt 1's success$/ }).waitFor();
      assert.match(await row.innerText(), /SUCCEEDED/);
    });
  });
});
