/**
 * The Health page in a real browser (Debian's Chromium) against a real server: the findings
 * `GET /api/v1/health/findings` computes (doctor's fleet-level checks), here devices that
 * reported over MQTT that they accept unsigned software, with the verdict, the check, doctor's
 * text and a link to the devices the finding's fleet query selects, which lists them; and
 * nothing of it is refused to a viewer token.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Browser } from 'playwright-core';
import { eventually, runCli } from '../helpers/cli.ts';
import { connectDevice, type TestClient } from '../helpers/mqtt-client.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { buildDashboard, chromiumSkip, launchChromium, signedInTab } from './browser-support.ts';

const skip = chromiumSkip();

describe('the Health page in Chromium', { skip }, () => {
  let ts: TestServer;
  let browser: Browser;
  const clients: TestClient[] = [];

  before(async () => {
    buildDashboard();
    ts = await startTestServer();
    browser = await launchChromium();
    for (const id of ['careless-1', 'careless-2', 'careful-1']) {
      const c = await connectDevice(ts, id);
      clients.push(c);
      await c.subscribe(`state/${id}/update/+`);
      const answer = await c.request(`state/${id}/update`, { state: { reported: { agent: { trust: id.startsWith('careless') ? 'unsigned' : 'key' } } } });
      assert.equal(answer.topic, `state/${id}/update/accepted`, `${id} reported`);
    }
  });
  after(async () => {
    for (const c of clients) await c.end().catch(() => {});
    await browser?.close();
    await ts?.close();
  });

  const check = async (token: string) => {
    const tab = await signedInTab(browser, token);
    try {
      await tab.page.goto(`${ts.httpUrl}/`);
      await tab.page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Health' }).click();
      const row = tab.page.getByTestId('health-findings').getByRole('row').filter({ hasText: 'accept unsigned software' });
      await row.waitFor();
      const cells = await row.getByRole('cell').allInnerTexts();
      assert.equal(cells[0], 'warn', 'the verdict');
      assert.equal(cells[1], 'devices', 'the check');
      assert.match(cells[2]!, /^careless-1, careless-2 accept unsigned software \(an agent run with --insecure-allow-unsigned\)/, "doctor's text");
      assert.equal(cells[3], '2 devices', 'the count');
      await row.getByRole('link', { name: /list the 2 devices/ }).click();
      assert.equal(await tab.page.getByTestId('fleet-query').innerText(), 'reported.agent.trust = unsigned', 'the query shown');
      const listed = tab.page.getByTestId('fleet-query-devices').getByRole('link');
      await listed.first().waitFor();
      assert.deepEqual(await listed.allInnerTexts(), ['careless-1', 'careless-2'], 'the devices it selects, linked');
    } finally {
      await tab.context.close();
    }
    assert.deepEqual(tab.errors, [], 'console errors');
  };

  it('lists the finding with its verdict, check, text and a link to its devices', async () => {
    await check(ts.token);
  });

  it('shows the same to a viewer token', async () => {
    const added = await runCli(['token', 'viewer', 'add', 'wall', '--json', '--server', ts.httpUrl, '--token', ts.token]);
    assert.equal(added.code, 0, added.stderr);
    await check((JSON.parse(added.stdout) as { token: string }).token);
  });
  it('asks nothing while the tab is out of sight, and asks again at once when it is seen (a forgotten tab made the server read the fleet every 30 s)', async () => {
    const tab = await signedInTab(browser, ts.token);
    try {
      await tab.page.clock.install();
      let asked = 0;
      tab.page.on('request', (r) => new URL(r.url()).pathname === '/api/v1/health/findings' && asked++);
      await tab.page.goto(`${ts.httpUrl}/health`);
      await tab.page.getByTestId('health-findings').waitFor();
      await tab.page.clock.runFor(31_000);
      await eventually(async () => (asked >= 2 ? true : undefined), 30_000, 'the page polls every 30 s while seen');
      const seenCount = asked;
      // as a string: tsx's helpers are not in the page
      const setHidden = (hidden: boolean) =>
        tab.page.evaluate(`Object.defineProperty(document, 'hidden', { configurable: true, get: () => ${hidden} }); document.dispatchEvent(new Event('visibilitychange'))`);
      await setHidden(true);
      await tab.page.clock.runFor(95_000);
      await new Promise((r) => setTimeout(r, 300)); // a request the page would send is on its way by now
      assert.equal(asked, seenCount, 'no request while hidden, over three periods');
      await setHidden(false);
      await eventually(async () => (asked === seenCount + 1 ? true : undefined), 30_000, 'one request as the tab is seen again');
      await tab.page.clock.runFor(31_000);
      await eventually(async () => (asked === seenCount + 2 ? true : undefined), 30_000, 'polling again while seen');
    } finally {
      await tab.context.close();
    }
    assert.deepEqual(tab.errors, [], 'console errors');
  });
});
