/**
 * What the dashboard's browser tests share: the bundle built from the current source, Debian's
 * Chromium, a fresh signed-in tab per test (its own context: no session, cookie or page state
 * left by another test), and an HTTP proxy in front of a real server that counts the requests
 * it passes on (what the server was asked, not what the page says it asked).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const CHROMIUM = '/usr/bin/chromium';
/** Why the browser tests cannot run here, or false. CI must have Chromium. */
export function chromiumSkip(): string | false {
  if (existsSync(CHROMIUM)) return false;
  if (process.env.CI === 'true') throw new Error(`${CHROMIUM} is missing: CI must install Debian's chromium (.ci/run does: apt-get install -y chromium)`);
  const why = `${CHROMIUM} is not installed (apt-get install chromium); the dashboard's browser test is skipped`;
  console.warn(`# SKIP: ${why}`);
  return why;
}

/** Builds the bundle under test from the current source (Vite takes well under a second). */
export function buildDashboard(): void {
  const built = spawnSync(process.execPath, [path.join(ROOT, 'node_modules/vite/bin/vite.js'), 'build', '--config', 'dashboard/vite.config.ts', '--logLevel', 'warn'], { cwd: ROOT, encoding: 'utf8' });
  assert.equal(built.status, 0, `vite build failed:\n${built.stdout}\n${built.stderr}`);
}

/**
 * Headless Chromium. `backForwardCache`: with the back/forward cache, which Playwright's
 * default flags turn off (--disable-back-forward-cache) and a user's Chrome has on.
 */
export function launchChromium(options: { backForwardCache?: boolean } = {}): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    ignoreDefaultArgs: options.backForwardCache ? ['--disable-back-forward-cache'] : undefined,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

/** A tab of its own, signed in with `token` before the first page loads; its console errors and uncaught exceptions are collected. */
export async function signedInTab(browser: Browser, token: string, viewport = { width: 1280, height: 900 }): Promise<{ context: BrowserContext; page: Page; errors: string[] }> {
  const context = await browser.newContext({ viewport });
  // once per origin: a token the test signs out, replaces or signs in with is not put back on a reload
  await context.addInitScript((t) => {
    if (!location.protocol.startsWith('http') || sessionStorage.getItem('updraft.test.started') !== null) return; // about:blank has no storage
    sessionStorage.setItem('updraft.test.started', '1');
    sessionStorage.setItem('updraft.operatorToken', t);
  }, token);
  const page = await context.newPage();
  page.setDefaultTimeout(60_000);
  const errors: string[] = [];
  page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
  page.on('pageerror', (e) => errors.push(`uncaught: ${e.message}`));
  return { context, page, errors };
}

/** An HTTP proxy to `target` that counts the requests it passed on, by method and path with query. */
export interface CountingProxy {
  url: string;
  /** How many requests `METHOD /path?query` the server was sent. */
  count(request: string): number;
  close(): Promise<void>;
}

/** Starts a CountingProxy in front of `target` (http://host:port). Streams (the event stream) pass through as they come. */
export async function startCountingProxy(target: string): Promise<CountingProxy> {
  const to = new URL(target);
  const counts = new Map<string, number>();
  const server = http.createServer((req, res) => {
    const key = `${req.method} ${req.url}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
    const out = http.request({ host: to.hostname, port: to.port, method: req.method, path: req.url, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    out.on('error', () => res.destroy());
    res.on('close', () => out.destroy());
    req.pipe(out);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    count: (request) => counts.get(request) ?? 0,
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
