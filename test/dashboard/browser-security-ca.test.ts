/**
 * The Security page's device CA and TLS state in a real browser (Debian's Chromium) against real
 * servers: the CA's subject and expiry; after a real `updraft ca rollover` (the server stopped,
 * started again) the previous CA, how many devices the server moved off it and how many still
 * report a certificate of it, counted by the fleet query doctor uses, with real agents over
 * MQTTS reporting their certificate's issuer (test/security/ca-rollover-fixture.ts). Revoked
 * devices are counted apart and an expired previous CA is said so, as `ca drop-previous`
 * judges them (it refuses for neither).
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { Browser } from 'playwright-core';
import { issuerQuery } from '../../src/protocol/certificate-issuer.ts';
import { eventually, runCli } from '../helpers/cli.ts';
import { apiJson, type TestServer } from '../helpers/server.ts';
import { writeFile } from 'node:fs/promises';
import { caPaths } from '../../src/pki/certificate-authority.ts';
import { RolloverFixture, expiredCa, issuedBy, reportedIssuer, reportsIssuer, rolledOver } from '../security/ca-rollover-fixture.ts';
import { buildDashboard, chromiumSkip, launchChromium, signedInTab } from './browser-support.ts';

const skip = chromiumSkip();
/** A CA's subject as agents report an issuer: Node's DN, its lines joined with ', ' (docs/protocol.md). */
const nameOf = (pem: string) => new X509Certificate(pem).subject.split('\n').join(', ');

describe("the Security page's device CA and TLS state, in Chromium", { skip }, () => {
  const fx = new RolloverFixture();
  let browser: Browser;
  before(async () => {
    buildDashboard();
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
    await fx.release();
  });

  /** Opens the Security page of `ts` in a tab of its own; `check` reads it; fails on console errors. */
  const onSecurityPage = async (ts: TestServer, check: (page: import('playwright-core').Page) => Promise<void>) => {
    const tab = await signedInTab(browser, ts.token);
    try {
      await tab.page.goto(`${ts.httpUrl}/security`);
      await check(tab.page);
    } finally {
      await tab.context.close();
    }
    assert.deepEqual(tab.errors, [], 'console errors');
  };

  it('shows the CA, then after a rollover the previous CA, the devices moved off it and those still on it', async () => {
    const r = await rolledOver(fx, ['m-1', 's-1']);
    const oldName = nameOf(r.oldCa);
    const newName = nameOf(r.newCa);
    const ts = await fx.start(r.dataDir, { flags: r.ports });
    const keys = (await apiJson(ts, 'GET', '/api/v1/keys')).body as { caSubject: string; previousCaSubject: string | null };
    assert.deepEqual([keys.caSubject, keys.previousCaSubject], [newName, oldName], 'GET /api/v1/keys names both CAs as agents report an issuer');
    // m-1 renews onto the new CA by itself; s-1 does not renew: it stays on the previous CA
    const mover = await fx.agent(ts, 'm-1', r.pairs['m-1']!, r.bundle, { renew: true });
    await fx.agent(ts, 's-1', r.pairs['s-1']!, r.bundle);
    await reportedIssuer(ts, 's-1', oldName);
    const pair = await eventually(async () => mover.renewed[0], 30_000, 'm-1 renewed onto the new CA');
    assert.ok(issuedBy(pair.certificate, r.newCa), 'the renewed certificate is of the new CA');
    await reportedIssuer(ts, 'm-1', newName);
    // v-1 reported a certificate of the previous CA, then was revoked: refused anyway
    await reportsIssuer(ts, 'v-1', oldName);
    const revoked = await apiJson(ts, 'POST', '/api/v1/devices/v-1/revoke');
    assert.equal(revoked.status, 200, `v-1 revoked: ${JSON.stringify(revoked.body)}`);
    await onSecurityPage(ts, async (page) => {
      await page.getByTestId('ca').filter({ hasText: new RegExp(`^${newName.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}; expires .+, in \\d+ days$`) }).waitFor();
      await page.getByTestId('previous-ca').filter({ hasText: oldName }).filter({ hasText: /; expires .+, in \d+ days: the device certificates it issued are accepted until then/ }).waitFor();
      const devices = page.getByTestId('previous-ca-devices');
      await devices.filter({ hasText: /^1 device still reports a client certificate of it \(besides 1 revoked, refused anyway\): updraft ca drop-previous would lock them out, and refuses while any do\. / }).waitFor();
      assert.equal(await page.getByTestId('moved-off-previous-ca').innerText(), ' · 1 moved off it by this server since it started', 'the devices this server moved off it');
      const list = await devices.locator('code').last().innerText();
      assert.equal(list, `updraft device list --query '${issuerQuery(oldName)}'`, "the list command with doctor's query");
      await page.getByTestId('server-certificates').filter({ hasText: /^MQTTS: expires .+, in \d+ days; HTTPS: not served by this server$/ }).waitFor();
    });
    // that query lists the device still on it
    const listed = await runCli(['device', 'list', '--query', issuerQuery(oldName), '--server', ts.httpUrl, '--token', ts.token]);
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout, /^s-1\s/m, `s-1 listed: ${listed.stdout}`);
    assert.doesNotMatch(listed.stdout, /^m-1\s/m, 'm-1 not listed');
  });

  it('an expired previous CA: says it expired and that drop-previous does not refuse for it, with its devices', async () => {
    const dataDir = await fx.tmp('updraft-dash-ca-expired-');
    const { ca: expired } = expiredCa('e-1');
    const first = await fx.start(dataDir);
    await first.stop();
    await writeFile(caPaths(dataDir).previous, expired);
    const ts = await fx.start(dataDir);
    const metrics = (await apiJson(ts, 'GET', '/api/v1/metrics')).body as { tls: { previousCaExpiresAt: number } };
    assert.ok(metrics.tls.previousCaExpiresAt * 1000 < Date.now(), `the metrics give the past expiry: ${JSON.stringify(metrics.tls)}`);
    await reportsIssuer(ts, 'e-1', nameOf(expired));
    await onSecurityPage(ts, async (page) => {
      await page.getByTestId('previous-ca').filter({ hasText: /; expired .+: the server ignores it, and refuses the device certificates it issued$/ }).waitFor();
      await page
        .getByTestId('previous-ca-devices')
        .filter({ hasText: /^it has expired: the server ignores it, and updraft ca drop-previous does not refuse for it; 1 device reports a client certificate of it, refused since it expired: give each a certificate of the current CA \(updraft device cert <id>\)\. List them: / })
        .waitFor();
      assert.doesNotMatch(await page.getByTestId('previous-ca-devices').innerText(), /would lock them out|refuses while/, 'no refusal said for an expired previous CA');
    });
  });

  it('shows the CA alone on a server that never rolled over', async () => {
    const ts = await fx.start(await fx.tmp('updraft-dash-ca-'));
    const caName = nameOf(ts.server.security.ca.certificate);
    await onSecurityPage(ts, async (page) => {
      await page.getByTestId('ca').filter({ hasText: caName }).filter({ hasText: /; expires .+, in \d+ days$/ }).waitFor();
      await page.getByTestId('server-certificates').waitFor();
      assert.equal(await page.getByTestId('previous-ca').count(), 0, 'no previous CA');
      assert.equal(await page.getByTestId('previous-ca-devices').count(), 0, 'no count');
    });
  });
});
