/**
 * The dashboard in Chromium with the back/forward cache on (as in a user's Chrome; Playwright
 * turns it off by default): full page loads in one tab, each page kept in the cache. Each
 * cached page held its event stream open, and Chrome keeps 6 connections per host, so the 7th
 * load waited for ever (QA, 2026-12-08). A page put in the cache closes its stream; restored, it
 * opens it again and reads what changed meanwhile. Only states are awaited, never a duration.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { Browser } from 'playwright-core';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact, deploy } from '../security/support.ts';
import { buildDashboard, chromiumSkip, launchChromium, signedInTab } from './browser-support.ts';

const skip = chromiumSkip();

describe('dashboard with the back/forward cache in Chromium', { skip }, () => {
  let ts: TestServer;
  let browser: Browser;

  before(async () => {
    buildDashboard();
    ts = await startTestServer();
    browser = await launchChromium({ backForwardCache: true });
  });
  after(async () => {
    await browser?.close();
    await ts?.close();
  });

  it('loads page after page in one tab, and a page restored from the cache is live again', async () => {
    await addArtifact(ts, '1.0.0', randomBytes(256), 'bf-fw');
    await registerDevice(ts, 'bf-1');
    const jobId = await deploy(ts, ['bf-1'], 'bf-fw@1.0.0');
    const { context, page, errors } = await signedInTab(browser, ts.token);
    try {
      // every page here reads the event stream: 9 loads, more than Chrome's 6 connections per host
      const routes = ['/', `/jobs/${jobId}`, '/devices', '/artifacts', '/devices/bf-1', '/', `/jobs/${jobId}`, '/jobs', '/devices'];
      for (const [i, route] of routes.entries()) {
        const answer = await page.goto(`${ts.httpUrl}${route}`, { timeout: 30_000 });
        assert.equal(answer?.status(), 200, `load ${i + 1} (${route}): the page's answer`);
        await page.getByRole('status', { name: 'Live updates: Live' }).waitFor({ timeout: 30_000 });
        // a mark that stays only if the page is kept, not loaded again
        await page.evaluate((n) => Object.assign(window, { updraftTestLoad: n }), i + 1);
      }
      // back to the jobs list: restored from the cache (its mark kept), not loaded again
      // (a restore fires no load event: wait for the navigation's commit)
      await page.goBack({ waitUntil: 'commit', timeout: 30_000 });
      assert.equal(new URL(page.url()).pathname, '/jobs', 'back on the jobs list');
      assert.equal(await page.evaluate(() => (window as unknown as { updraftTestLoad?: number }).updraftTestLoad), 8, 'the jobs list restored from the back/forward cache, not loaded again');
      await page.getByRole('status', { name: 'Live updates: Live' }).waitFor({ timeout: 30_000 });
      // its stream is open again: a job created now shows without a reload
      const created = await deploy(ts, ['bf-1'], 'bf-fw@1.0.0');
      await page.getByTestId('jobs-table').getByRole('link', { name: `job ${created}`, exact: true }).waitFor({ timeout: 30_000 });
      assert.equal(await page.evaluate(() => (window as unknown as { updraftTestLoad?: number }).updraftTestLoad), 8, 'shown live, not by a reload of the page');
    } finally {
      await context.close();
    }
    assert.deepEqual(errors, [], 'console errors');
  });
});
