/**
 * The dashboard on a phone's width (390 px, the QA's) in a real browser (Debian's Chromium)
 * against a real server: no page wider than the window (a table scrolls inside its own box),
 * a failure reason broken between words, not inside them; on a desktop's width the tables
 * still fill the main column. And a device's attributes on its page, a hostile value as
 * literal text. Each test in a tab of its own on data of its own. Only states are awaited,
 * never a duration.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { Browser, Locator, Page } from 'playwright-core';
import { eventually } from '../helpers/cli.ts';
import { TestClient } from '../helpers/mqtt-client.ts';
import { apiJson, registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact, deploy } from '../security/support.ts';
import { buildDashboard, chromiumSkip, launchChromium, signedInTab } from './browser-support.ts';

const skip = chromiumSkip();
const PHONE = { width: 390, height: 844 };
const DESKTOP = { width: 1280, height: 900 };

describe('dashboard at a phone and a desktop width in Chromium', { skip }, () => {
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

  /** Runs `fn` in a tab of its own at `viewport`, closed after; fails on any console error of the tab. */
  const inTab = async (viewport: { width: number; height: number }, fn: (page: Page) => Promise<void>) => {
    const tab = await signedInTab(browser, ts.token, viewport);
    try {
      await fn(tab.page);
    } finally {
      await tab.context.close();
    }
    assert.deepEqual(tab.errors, [], 'console errors');
  };

  /** The words of `cell`'s first text that the browser broke across lines. */
  const brokenWords = (cell: Locator) =>
    cell.evaluate((td) => {
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

  it('keeps /devices, /jobs/<id>, /jobs and /artifacts within a 390 px window (tables scroll in their box), reasons broken between words; at 1280 px the tables fill the main column', async () => {
    // the QA's data: a device that failed with a long reason, several builds, jobs
    const id = 'narrow-dev-1';
    const reason = 'in-progress timeout: not finished within 7200 s of its command, the agent reported no outcome';
    for (const v of ['1.0.0', '1.1.0', '2.0.0']) await addArtifact(ts, v, randomBytes(256), 'narrow-firmware');
    const secret = await registerDevice(ts, id, { tags: ['lab', 'building-7'] });
    await registerDevice(ts, 'narrow-dev-2', { tags: ['lab'] });
    const jobId = await deploy(ts, [id, 'narrow-dev-2'], 'narrow-firmware@2.0.0');
    const device = await TestClient.connect(ts.mqttUrl, id, { username: id, password: secret });
    try {
      await device.publish(`state/${id}/update`, { state: { reported: { software: { name: 'narrow-firmware', version: '1.1.0', jobId, status: 'FAILURE', error: reason } } } });
    } finally {
      await device.end();
    }
    await eventually(async () => ((await apiJson(ts, 'GET', `/api/v1/jobs/${jobId}?limit=1`)).body.counts.FAILED === 1 ? true : undefined), 30_000, 'the failure recorded');
    const pages: { route: string; shown: (p: Page) => Promise<void> }[] = [
      { route: '/devices', shown: (p) => p.getByTestId('devices-table').getByRole('link', { name: id, exact: true }).waitFor() },
      { route: `/jobs/${jobId}`, shown: (p) => p.getByTestId('executions-table').getByRole('cell', { name: reason }).waitFor() },
      { route: '/jobs', shown: (p) => p.getByTestId('jobs-table').getByRole('link', { name: `job ${jobId}`, exact: true }).waitFor() },
      { route: '/artifacts', shown: (p) => p.getByTestId('artifacts-table').getByRole('row').filter({ hasText: '2.0.0' }).waitFor() },
      { route: `/devices/${id}`, shown: (p) => p.getByTestId('device-jobs').getByRole('cell', { name: reason }).waitFor() },
    ];
    await inTab(PHONE, async (page) => {
      // every page's faults, said together (each page checked, not only the first that fails)
      const faults: string[] = [];
      for (const { route, shown } of pages) {
        await page.goto(ts.httpUrl + route);
        await shown(page);
        const sized = await page.evaluate(() => ({ page: document.documentElement.scrollWidth, window: window.innerWidth }));
        if (sized.page > sized.window) faults.push(`${route}: the page is ${sized.page} px wide in a window of ${sized.window}`);
        // each table's box ends within the window (the table may be wider: it scrolls in its box)
        const boxes = await page.evaluate(() => [...document.querySelectorAll('table')].map((t) => ({ table: t.dataset.testid, right: t.parentElement!.getBoundingClientRect().right, scrolls: getComputedStyle(t.parentElement!).overflowX })));
        if (boxes.length === 0) faults.push(`${route}: no table shown`);
        for (const b of boxes) {
          if (b.right > sized.window) faults.push(`${route}: the box of table ${b.table} ends at ${b.right} px in a window of ${sized.window}`);
          if (b.scrolls !== 'auto') faults.push(`${route}: the box of table ${b.table} does not scroll sideways (overflow-x ${b.scrolls})`);
        }
      }
      // the job's reasons (the QA's "in-progres / s timeout / : not / finished"): whole words
      await page.goto(`${ts.httpUrl}/jobs/${jobId}`);
      for (const table of ['failing-table', 'executions-table']) {
        const cell = page.getByTestId(table).getByRole('cell', { name: reason });
        await cell.waitFor();
        const broken = await brokenWords(cell);
        if (broken.length > 0) faults.push(`/jobs/<id> ${table}: words of the reason broken across lines (cell ${Math.round((await cell.boundingBox())!.width)} px wide): ${broken.join(' ')}`);
      }
      assert.deepEqual(faults, [], `at ${PHONE.width} px:\n${faults.join('\n')}`);
    });
    await inTab(DESKTOP, async (page) => {
      for (const { route, shown } of pages) {
        await page.goto(ts.httpUrl + route);
        await shown(page);
        const sized = await page.evaluate(() => {
          const main = document.querySelector('main')!;
          const style = getComputedStyle(main);
          const column = main.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
          return { column, tables: [...document.querySelectorAll('table')].map((t) => ({ table: t.dataset.testid, width: t.getBoundingClientRect().width })), page: document.documentElement.scrollWidth, window: window.innerWidth };
        });
        assert.ok(sized.page <= sized.window, `${route} at ${DESKTOP.width} px: the page is ${sized.page} px wide in a window of ${sized.window}`);
        for (const t of sized.tables) assert.ok(Math.abs(t.width - sized.column) <= 1, `${route} at ${DESKTOP.width} px: table ${t.table} is ${t.width} px wide in a main column of ${sized.column}`);
      }
    });
  });

  it("shows a device's attributes beside its tags, each key = value, a hostile value as literal text", async () => {
    const id = 'odd-attrs';
    const hostile = '<img src=x onerror="window.__attrInjected=1">';
    const created = await apiJson(ts, 'POST', '/api/v1/devices', { deviceId: id, attributes: { region: 'eu', note: hostile, floor: 3, outdoor: false }, tags: ['t'] });
    assert.equal(created.status, 201, JSON.stringify(created.body));
    await inTab(DESKTOP, async (page) => {
      await page.goto(`${ts.httpUrl}/devices/${id}`);
      // the line of facts under the title (Registered …): the attributes in it, or not at all
      const line = page.locator('main p.muted').filter({ hasText: /^Registered / });
      await line.waitFor();
      const attrs = page.getByTestId('device-attributes');
      assert.equal(await attrs.count(), 1, `the device's attributes shown: ${await line.innerText()}`);
      const text = await attrs.innerText();
      for (const want of ['region = eu', `note = ${hostile}`, 'floor = 3', 'outdoor = false']) assert.ok(text.includes(want), `the attributes say "${want}": ${text}`);
      assert.equal(await attrs.locator('img').count(), 0, 'the hostile value is text, not an element');
      assert.equal(await page.evaluate(() => (window as unknown as { __attrInjected?: number }).__attrInjected), undefined, 'its onerror never ran');
      // beside the tags, in the same line of facts
      const facts = await line.innerText();
      assert.match(facts, /tags t\b/, `the tags still shown: ${facts}`);
      assert.ok(facts.includes('region = eu'), `the attributes in the device's facts: ${facts}`);
    });
  });
});
