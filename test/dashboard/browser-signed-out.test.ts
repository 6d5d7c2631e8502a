/**
 * A tab whose token the server stops taking while a page is open (a named token removed, or
 * expired) is signed out with the server's reason on the sign-in form, in a real browser
 * (Debian's Chromium) against a real server. It showed an empty form without a word, where
 * the same token typed in was told why (QA, 2026-12-08). A sign-out of one's own says nothing.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Browser } from 'playwright-core';
import { runCli } from '../helpers/cli.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { buildDashboard, chromiumSkip, launchChromium, signedInTab } from './browser-support.ts';

const skip = chromiumSkip();

describe('the dashboard signed out by the server', { skip }, () => {
  let ts: TestServer;
  let browser: Browser;
  const cli = (...args: string[]) => runCli([...args, '--server', ts.httpUrl, '--token', ts.token]);

  before(async () => {
    buildDashboard();
    ts = await startTestServer();
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
    await ts?.close();
  });

  /** A named operator token added with the CLI. */
  async function namedToken(name: string): Promise<string> {
    const added = await cli('token', 'operator', 'add', name, '--json');
    assert.equal(added.code, 0, added.stderr);
    return (JSON.parse(added.stdout) as { token: string }).token;
  }

  it('says why on the sign-in form when the tab is signed out by a refusal', async () => {
    const token = await namedToken('carol');
    const tab = await signedInTab(browser, token);
    try {
      await tab.page.goto(`${ts.httpUrl}/devices`);
      await tab.page.getByRole('status', { name: 'Live updates: Live' }).waitFor();
      const removed = await cli('token', 'operator', 'remove', 'carol');
      assert.equal(removed.code, 0, removed.stderr);
      // what the server says of that token now: the form must say the same
      const refusal = await fetch(`${ts.httpUrl}/api/v1/whoami`, { headers: { authorization: `Bearer ${token}` } });
      assert.equal(refusal.status, 401, 'the removed token is refused');
      const why = ((await refusal.json()) as { error: { message: string } }).error.message;
      // the stream ends with the token's removal; its reconnect is refused and signs the tab out
      const error = tab.page.locator('#token-error');
      await error.waitFor();
      assert.equal(await error.innerText(), `Signed out: the server refused this tab's token: ${why}. Sign in again with a token it takes.`, 'the reason on the form');
      assert.equal(new URL(tab.page.url()).pathname, '/devices', 'the page is kept for the next sign-in');
    } finally {
      await tab.context.close();
    }
  });

  it('says nothing after a sign-out of its own', async () => {
    const tab = await signedInTab(browser, ts.token);
    try {
      await tab.page.goto(`${ts.httpUrl}/devices`);
      await tab.page.getByRole('status', { name: 'Live updates: Live' }).waitFor();
      await tab.page.getByRole('button', { name: 'Sign out' }).click();
      await tab.page.getByRole('button', { name: 'Sign in' }).waitFor();
      assert.equal(await tab.page.locator('#token-error').count(), 0, 'no reason after signing out oneself');
    } finally {
      await tab.context.close();
    }
  });
});
