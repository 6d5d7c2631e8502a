/**
 * The web dashboard in a real browser (Debian's Chromium, driven by playwright-core) against
 * a real server and a simulated fleet: sign in with the token, upload an artifact, start a
 * rollout (after a validation error shown beside its field), watch it reach 100%, pause and
 * cancel another rollout, search devices, open a device. Every page is screenshotted into
 * test-artifacts/dashboard/; any console error fails the test. Only states are awaited,
 * never a duration.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createPublicKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { ApiClient } from '../../src/cli/api-client.ts';
import { FleetSimulator, type SimDevice } from '../../src/sim/fleet-simulator.ts';
import { certifySigningKey, rotateRoot } from '../../src/signing/root-key.ts';
import { keyIdOf, parsePublicKey } from '../../src/signing/signing-key.ts';
import { registerFleet } from '../../src/sim/register-fleet.ts';
import { eventually } from '../helpers/cli.ts';
import { TestClient } from '../helpers/mqtt-client.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact, deploy, startAgent } from '../security/support.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const CHROMIUM = '/usr/bin/chromium';
const SHOTS = path.join(ROOT, 'test-artifacts/dashboard');
const WAIT = 60_000;
const FLEET = 24;

const missing = !existsSync(CHROMIUM);
if (missing && process.env.CI === 'true') throw new Error(`${CHROMIUM} is missing: CI must install Debian's chromium (.ci/run does: apt-get install -y chromium)`);
const skip = missing ? `${CHROMIUM} is not installed (apt-get install chromium); the dashboard's browser test is skipped` : false;
if (skip) console.warn(`# SKIP: ${skip}`);

describe('web dashboard in Chromium', { skip }, () => {
  let ts: TestServer;
  let api: ApiClient;
  let sim: FleetSimulator;
  /** The devices that never connect, with their secrets. */
  let idle: SimDevice[];
  let browser: Browser;
  let page: Page;
  const consoleErrors: string[] = [];
  /** Set while a step expects the server to refuse a request (the browser logs those). */
  let expectRefusal = false;

  before(async () => {
    // the bundle under test is the current source: build it (Vite takes well under a second)
    const built = spawnSync(process.execPath, [path.join(ROOT, 'node_modules/vite/bin/vite.js'), 'build', '--config', 'dashboard/vite.config.ts', '--logLevel', 'warn'], { cwd: ROOT, encoding: 'utf8' });
    assert.equal(built.status, 0, `vite build failed:\n${built.stdout}\n${built.stderr}`);
    await mkdir(SHOTS, { recursive: true });
    ts = await startTestServer({ flags: { 'max-artifact-bytes': 8 * 1024 * 1024 } });
    api = new ApiClient({ server: ts.httpUrl, token: ts.token });
    const devices = await registerFleet(api, 'sim-', FLEET);
    // devices that never connect: a rollout to them stays in progress until it is cancelled
    idle = await registerFleet(api, 'idle-', 3);
    // the builds the rollout tests deploy (the upload test uploads builds of its own): fw for
    // any device, gw only over gw >=0.9.0 on rpi4 and rpi5
    for (const q of ['name=fw&version=2.0.0', 'name=gw&version=1.0.0&deviceTypes=rpi5,rpi4&requires=%3E%3D0.9.0']) {
      const added = await fetch(`${ts.httpUrl}/api/v1/artifacts?${q}`, { method: 'POST', headers: { authorization: `Bearer ${ts.token}` }, body: new Uint8Array(randomBytes(q.startsWith('name=fw') ? 64 * 1024 : 1024)) });
      assert.equal(added.status, 201, await added.text());
    }
    // seeded: some installs fail their health check, so the failing-devices table has rows
    sim = new FleetSimulator({ brokerUrl: ts.mqttUrl, trust: { signingPublicKey: createPublicKey(ts.server.security.signingKey.publicKeyPem) }, devices, mode: 'connected', installMs: 30, failureRate: 0.15, seed: 11 });
    await sim.start();
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
  });

  // each test its own tab (a context of its own: no session, page or form state another test
  // left), signed in before its first page loads, except the sign-in test's; it starts on the
  // overview, and its console errors fail it
  let context: BrowserContext;
  beforeEach(async (t) => {
    expectRefusal = false;
    consoleErrors.length = 0;
    context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const signIn = !('name' in t && String(t.name).startsWith('signs in with the operator token'));
    // once: a token the test signs in with, replaces or removes is not put back on a reload
    if (signIn) {
      await context.addInitScript((token) => {
        if (!location.protocol.startsWith('http') || sessionStorage.getItem('updraft.test.started') !== null) return; // about:blank has no storage
        sessionStorage.setItem('updraft.test.started', '1');
        sessionStorage.setItem('updraft.operatorToken', token);
      }, ts.token);
    }
    page = await context.newPage();
    page.setDefaultTimeout(WAIT);
    page.on('console', (m) => {
      if (m.type() !== 'error') return;
      if (expectRefusal && /status of (400|401|404|409|503)|net::ERR_(FAILED|INCOMPLETE_CHUNKED_ENCODING|EMPTY_RESPONSE|CONNECTION_RESET|CONNECTION_CLOSED)/.test(m.text())) return;
      consoleErrors.push(m.text());
    });
    page.on('pageerror', (e) => consoleErrors.push(`uncaught: ${e.message}`));
    if (signIn) {
      await page.goto(ts.httpUrl + '/');
      await heading('Fleet overview');
    }
  });
  afterEach(async () => {
    await context?.close();
    assert.deepEqual(consoleErrors, [], 'console errors');
  });

  after(async () => {
    await browser?.close();
    await sim?.stop();
    await ts?.close();
  });

  const shot = (name: string) => page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
  const nav = (name: string) => page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name });
  const heading = (text: string | RegExp) => page.getByRole('heading', { level: 1, name: text }).waitFor();

  it('signs in with the operator token, by keyboard', async () => {
    await page.goto(ts.httpUrl + '/');
    await page.getByLabel('Operator token').waitFor();
    await shot('01-login');
    // the token field has the focus; Enter submits
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'token');
    // no invitation to a password manager to keep it beyond the tab
    assert.equal(await page.getByLabel('Operator token').getAttribute('autocomplete'), 'off');
    await page.keyboard.type(ts.token);
    await page.keyboard.press('Enter');
    await heading('Fleet overview');
    // the fleet as the server counts it now (other tests register devices of their own)
    const { devices } = await api.call<{ devices: { registered: number } }>('GET', '/api/v1/fleet/overview');
    await page.getByTestId('stat-registered').filter({ hasText: new RegExp(`^${devices.registered}$`) }).waitFor();
    // the token lives in sessionStorage, never in the URL
    assert.ok(!page.url().includes(ts.token));
    assert.equal(await page.evaluate(() => sessionStorage.getItem('updraft.operatorToken')), ts.token);
  });

  it('uploads an artifact from the browser and shows its hash and signature', async () => {
    await nav('Artifacts').click();
    await heading('Artifacts');
    await page.getByLabel('Build file').setInputFiles({ name: 'firmware.bin', mimeType: 'application/octet-stream', buffer: randomBytes(64 * 1024) });
    await page.getByLabel('Name').fill('upfw');
    await page.getByLabel('Version').fill('2.1.0');
    await page.getByRole('button', { name: 'Upload' }).click();
    await page.getByRole('status').filter({ hasText: 'Uploaded upfw@2.1.0' }).waitFor();
    const row = page.getByTestId('artifacts-table').getByRole('row').filter({ hasText: 'upfw' });
    await row.filter({ hasText: '64 KiB' }).filter({ hasText: 'valid' }).waitFor();
    assert.match(await row.locator('code').innerText(), /^[0-9a-f]{64}$/);
    await row.filter({ hasText: 'any device type' }).waitFor();
    // a build for given hardware, over given versions; a malformed range is shown beside its field
    await page.getByLabel('Build file').setInputFiles({ name: 'gw.bin', mimeType: 'application/octet-stream', buffer: randomBytes(1024) });
    await page.getByLabel('Name').fill('upgw');
    await page.getByLabel('Version').fill('1.1.0');
    await page.getByLabel('Device types (optional)').fill('rpi5, rpi4');
    await page.getByLabel('Installs over (optional)').fill('>=banana');
    expectRefusal = true;
    await page.getByRole('button', { name: 'Upload' }).click();
    await page.locator('#a-requires-error').filter({ hasText: 'is not an operator' }).waitFor();
    expectRefusal = false;
    await page.getByLabel('Installs over (optional)').fill('>=0.9.0');
    await page.getByRole('button', { name: 'Upload' }).click();
    await page.getByRole('status').filter({ hasText: 'Uploaded upgw@1.1.0' }).waitFor();
    await page.getByTestId('artifacts-table').getByRole('row').filter({ hasText: 'upgw' }).filter({ hasText: 'rpi4, rpi5 over >=0.9.0' }).waitFor();
    // a build over the server's limit (8 MiB here) is refused beside its field, before it is sent
    await page.getByLabel('Build file').setInputFiles({ name: 'huge.bin', mimeType: 'application/octet-stream', buffer: Buffer.alloc(9 * 1024 * 1024) });
    await page.getByLabel('Name').fill('huge');
    await page.getByLabel('Version').fill('1.0.0');
    await page.getByRole('button', { name: 'Upload' }).click();
    await page.locator('#a-file-error').filter({ hasText: 'huge.bin is 9.0 MiB: the server takes builds of at most 8.0 MiB (its --max-artifact-bytes).' }).waitFor();
    assert.equal((await fetch(`${ts.httpUrl}/api/v1/artifacts/huge/1.0.0`, { headers: { authorization: `Bearer ${ts.token}` } })).status, 404, 'nothing was sent');
    await shot('02-artifacts');
  });

  it('shows the server\'s validation messages next to the rollout form\'s fields', async () => {
    await nav('Jobs').click();
    await heading('Jobs');
    await page.getByRole('link', { name: 'New rollout' }).click();
    await heading('New rollout');
    await page.getByLabel('Artifact').locator('option', { hasText: 'fw@2.0.0' }).waitFor({ state: 'attached' });
    // a build added elsewhere (the CLI, another tab) is offered at once, and one deleted is not
    // (artifact.changed; no focus or reload of the tab stands in for it)
    await page.getByRole('status', { name: 'Live updates: Live' }).waitFor();
    const added = await fetch(`${ts.httpUrl}/api/v1/artifacts?name=fw&version=1.9.0`, { method: 'POST', headers: { authorization: `Bearer ${ts.token}` }, body: new Uint8Array(randomBytes(512)) });
    assert.equal(added.status, 201);
    await page.getByLabel('Artifact').locator('option', { hasText: 'fw@1.9.0' }).waitFor({ state: 'attached', timeout: 10_000 });
    await api.call('DELETE', '/api/v1/artifacts/fw/1.9.0');
    await page.getByLabel('Artifact').locator('option', { hasText: 'fw@1.9.0' }).waitFor({ state: 'detached', timeout: 10_000 });
    await page.getByLabel('Artifact').selectOption('fw@2.0.0');
    await page.getByLabel('Wave 1 size').fill('150');
    expectRefusal = true;
    // a refused preview says what it refused: nothing was being created
    await page.getByRole('button', { name: 'Preview' }).click();
    await page.getByTestId('error-summary').filter({ hasText: /^Nothing to preview: 2 fields need attention\./ }).waitFor();
    await page.getByRole('button', { name: 'Start rollout' }).click();
    await page.getByTestId('error-summary').filter({ hasText: /^The job was not created: 2 fields need attention\./ }).waitFor();
    // each message sits beside its field and is tied to it for screen readers
    const wave = page.getByLabel('Wave 1 size');
    assert.equal(await wave.getAttribute('aria-invalid'), 'true');
    const waveError = page.locator(`#${await wave.getAttribute('aria-describedby')}`);
    assert.match(await waveError.innerText(), /plan\.waves\[0\]\.percent must be a number above 0 and at most 100/);
    assert.match(await page.locator('#j-targets-error').innerText(), /target set is empty/);
    await shot('03-job-form-errors');
    // a wave's threshold, the window's minutes and the abort rule's minimum: each message under its own control
    const describedBy = async (label: string) => {
      const control = page.getByLabel(label, { exact: true });
      assert.equal(await control.getAttribute('aria-invalid'), 'true', label);
      return page.locator(`#${await control.getAttribute('aria-describedby')}`).innerText();
    };
    await page.getByLabel('Wave 1 size').fill('100');
    await page.getByLabel('Success threshold %').fill('90');
    await page.getByLabel('Maintenance window opens (HH:MM)').fill('02:00');
    await page.getByLabel('Window open for (minutes)').fill('5000');
    await page.getByLabel('Abort at failure %').fill('20');
    await page.getByLabel('after at least (finished)').fill('0');
    await page.getByRole('button', { name: 'Start rollout' }).click();
    await page.getByTestId('error-summary').filter({ hasText: /^The job was not created: 4 fields need attention\./ }).waitFor();
    assert.match(await describedBy('Success threshold %'), /^plan\.waves\[0\] is the last wave: a successThreshold gates the next wave and none follows; to stop a failing last wave, use abort rules/);
    assert.match(await describedBy('Window open for (minutes)'), /^plan\.windows\[0\]\.minutes must be/);
    assert.match(await describedBy('after at least (finished)'), /^abort\.rules\[0\]\.minFinished must be/);
    assert.equal(await page.getByLabel('Maintenance window opens (HH:MM)').getAttribute('aria-invalid'), null, 'the start is fine');
    assert.equal(await page.getByLabel('Abort at failure %').getAttribute('aria-invalid'), null, 'the percentage is fine');
    await shot('03a-job-form-errors-own-controls');
    for (const label of ['Success threshold %', 'Maintenance window opens (HH:MM)', 'Window open for (minutes)', 'Abort at failure %', 'after at least (finished)']) await page.getByLabel(label, { exact: true }).fill('');
    // a failure that is no field's is said as it is, not counted as "one field"
    await page.route('**/api/v1/jobs/preview', (route) => route.abort());
    try {
      await page.getByRole('button', { name: 'Preview' }).click();
      await page.getByTestId('error-summary').filter({ hasText: /^Nothing to preview: the server cannot be reached; check that it runs\.$/ }).waitFor();
    } finally {
      await page.unroute('**/api/v1/jobs/preview');
    }
    expectRefusal = false;
  });

  it('starts a rollout to the simulated fleet and watches it reach 100% live', async () => {
    const ids = Array.from({ length: FLEET }, (_, i) => `sim-${String(i + 1).padStart(2, '0')}`);
    await nav('Jobs').click();
    await page.getByRole('link', { name: 'New rollout' }).click();
    await heading('New rollout');
    await page.getByLabel('Artifact').locator('option', { hasText: 'fw@2.0.0' }).waitFor({ state: 'attached' });
    await page.getByLabel('Artifact').selectOption('fw@2.0.0');
    const jobsBefore = ((await api.call<{ items: unknown[] }>('GET', '/api/v1/jobs?limit=100')).items.length);
    await page.getByLabel('Wave 1 size').fill('25');
    await page.getByRole('button', { name: 'Add a wave' }).click();
    await page.getByLabel('Device ids (comma or space separated)').fill(ids.join(' '));
    await page.getByLabel('Description (optional)').fill('fleet to 2.0.0');
    // a preview first: the server resolves the targets into waves, and creates nothing
    await page.getByRole('button', { name: 'Preview' }).click();
    const preview = page.getByTestId('preview');
    await preview.filter({ hasText: `Would send fw@2.0.0 to ${FLEET} devices; starting at once.` }).waitFor();
    assert.deepEqual(await preview.getByRole('listitem').allInnerTexts(), ['Wave 1: 6 devices (sim-01, sim-02, sim-03, sim-04, sim-05, …)', `Wave 2: ${FLEET - 6} devices (sim-07, sim-08, sim-09, sim-10, sim-11, …)`]);
    assert.equal((await api.call<{ items: unknown[] }>('GET', '/api/v1/jobs?limit=100')).items.length, jobsBefore, 'no job created');
    await shot('03b-job-preview');
    // the build for other software (gw over >=0.9.0): the preview says the engine would skip them all
    await page.getByLabel('Artifact').selectOption('gw@1.0.0');
    await page.getByRole('button', { name: 'Preview' }).click();
    await page.getByTestId('preview-skipped').filter({ hasText: `Skipped (rejected, nothing sent) by what they reported: ${FLEET} not compatible` }).filter({ hasText: 'sim-01: not compatible: the build installs only over gw >=0.9.0, and the device runs fw 1.0.0' }).waitFor();
    await page.getByLabel('Artifact').selectOption('fw@2.0.0');
    await page.getByRole('button', { name: 'Start rollout' }).click();
    await heading(/fw@2\.0\.0/);
    // no reload from here on: the page follows the event stream
    await page.getByTestId('job-progress').filter({ hasText: `${FLEET} of ${FLEET} finished (100%)` }).waitFor();
    await page.getByRole('heading', { level: 1 }).filter({ hasText: 'COMPLETED' }).waitFor();
    await sim.whenFinished(FLEET);
    const succeeded = Number(await page.locator('dd[data-state="SUCCEEDED"]').innerText());
    const failed = Number(await page.locator('dd[data-state="FAILED"]').innerText());
    assert.equal(succeeded, sim.stats.succeeded);
    assert.equal(succeeded + failed, FLEET);
    assert.ok(failed > 0, 'the seed makes some installs fail');
    await page.getByTestId('failing-table').getByRole('row').nth(failed).waitFor(); // header + one row per failure
    assert.equal(await page.getByLabel('Wave 2: 100%').count(), 1);
    await page.locator(`[data-testid="timeline-chart"][aria-label*="${succeeded} succeeded, ${failed} failed"]`).waitFor();
    // its scales: the line's top is every completion, and the caption says how long a bar is
    assert.equal(await page.getByTestId('timeline-total').textContent(), String(FLEET));
    assert.match(await page.locator('figure.timeline figcaption').innerText(), /^bars per \d+(\.\d)? (ms|s|min|h|d) \(left scale\)/);
    await shot('04-job-completed');
  });

  it('pauses, resumes and cancels another rollout', async () => {
    // devices of its own that never connect: the rollout stays in progress until it is canceled
    for (const id of ['pause-1', 'pause-2', 'pause-3']) await registerDevice(ts, id);
    await nav('Jobs').click();
    await page.getByRole('link', { name: 'New rollout' }).click();
    await page.getByLabel('Artifact').locator('option', { hasText: 'fw@2.0.0' }).waitFor({ state: 'attached' });
    await page.getByLabel('Artifact').selectOption('fw@2.0.0');
    await page.getByLabel('Device ids (comma or space separated)').fill('pause-1 pause-2 pause-3');
    // a maintenance window twelve hours from now: the job waits for it, and says so
    const at = new Date(Date.now() + 12 * 3_600_000);
    await page.getByLabel('Maintenance window opens (HH:MM)').fill(`${String(at.getUTCHours()).padStart(2, '0')}:${String(at.getUTCMinutes()).padStart(2, '0')}`);
    await page.getByLabel('Window open for (minutes)').fill('60');
    await page.getByLabel('Time zone of the window').fill('UTC');
    await page.getByRole('button', { name: 'Start rollout' }).click();
    await page.getByRole('heading', { level: 1 }).filter({ hasText: 'IN PROGRESS' }).waitFor();
    await page.getByTestId('window-closed').filter({ hasText: /^Outside its maintenance windows: nothing new is sent until .+ \(devices already updating go on\)\.$/ }).waitFor();
    const jobId = decodeURIComponent(new URL(page.url()).pathname.split('/').pop()!);
    await page.getByRole('button', { name: 'Pause' }).click();
    await page.getByRole('heading', { level: 1 }).filter({ hasText: 'PAUSED' }).waitFor();
    await page.getByRole('status').filter({ hasText: 'paused by an operator' }).waitFor();
    await shot('05-job-paused');
    await page.getByRole('button', { name: 'Resume' }).click();
    await page.getByRole('heading', { level: 1 }).filter({ hasText: 'IN PROGRESS' }).waitFor();
    await page.getByRole('button', { name: 'Pause' }).click();
    await page.getByRole('heading', { level: 1 }).filter({ hasText: 'PAUSED' }).waitFor();
    await page.getByRole('button', { name: 'Cancel job' }).click();
    await page.getByRole('button', { name: 'Yes, cancel the job' }).click();
    await page.getByRole('heading', { level: 1 }).filter({ hasText: 'CANCELED' }).waitFor();
    await page.locator('dd[data-state="CANCELED"]').filter({ hasText: '3' }).waitFor();
    assert.equal(await page.getByRole('button', { name: 'Pause' }).count(), 0, 'a finished job has no controls');
    await shot('06-job-canceled');
    await nav('Jobs').click();
    // this job's row (the jobs page is at /jobs/<id>): other tests cancel jobs too
    await page.getByTestId('jobs-table').getByRole('row').filter({ has: page.getByRole('link', { name: `job ${jobId}`, exact: true }) }).filter({ hasText: 'CANCELED' }).waitFor();
    await shot('07-jobs');
  });

  it("shows a rollout whose windows are each device's own time", async () => {
    // its preview names the targets whose agents would install at once (idle-2 never connected)
    await nav('Jobs').click();
    await page.getByRole('link', { name: 'New rollout' }).click();
    await page.getByLabel('Artifact').selectOption('fw@2.0.0');
    await page.getByLabel('Device ids (comma or space separated)').fill('idle-2');
    await page.getByLabel('Maintenance window opens (HH:MM)').fill('02:00');
    await page.getByLabel('Window open for (minutes)').fill('120');
    await page.getByLabel('Time zone of the window').fill('device');
    await page.getByRole('button', { name: 'Preview' }).click();
    await page.getByTestId('preview-at-once').filter({ hasText: '1 device would install at once, outside their windows' }).filter({ hasText: 'idle-2' }).waitFor();
    const job = await api.call<{ job: { jobId: string } }>('POST', '/api/v1/jobs', { artifact: 'fw@2.0.0', targets: { devices: ['idle-2'] }, plan: { windows: [{ start: '02:00', minutes: 120, days: ['sat', 'sun'] }], timeZone: 'device' } });
    await page.goto(`${ts.httpUrl}/jobs/${job.job.jobId}`);
    await page.getByTestId('device-windows').filter({ hasText: "Installs in each device's own maintenance windows (02:00 for 120 min on sat, sun, in the device's time zone)" }).waitFor();
    assert.equal(await page.getByTestId('window-closed').count(), 0, 'the engine holds nothing back');
    await api.call('POST', `/api/v1/jobs/${job.job.jobId}/cancel`);
  });

  it('deletes an artifact after a confirmation; refused, with the reason, while a job installs it', async () => {
    const added = await fetch(`${ts.httpUrl}/api/v1/artifacts?name=old&version=1.0.0`, { method: 'POST', headers: { authorization: `Bearer ${ts.token}` }, body: new Uint8Array(randomBytes(1024)) });
    assert.equal(added.status, 201);
    const job = await api.call<{ job: { jobId: string } }>('POST', '/api/v1/deployments', { devices: ['idle-1'], artifact: 'old@1.0.0' });
    await nav('Artifacts').click();
    await heading('Artifacts');
    const row = page.getByTestId('artifacts-table').getByRole('row').filter({ hasText: 'old' });
    // the focus moves to the question's confirming button, and back to the button when it is kept
    // (set in an effect after the render: waited for, then checked)
    const focused = () => page.evaluate(() => document.activeElement?.getAttribute('aria-label') ?? document.activeElement?.textContent ?? '');
    const focusOn = async (name: string) => {
      await page.waitForFunction((n) => (document.activeElement?.getAttribute('aria-label') ?? document.activeElement?.textContent) === n, name, { timeout: 5000 }).catch(() => undefined);
      assert.equal(await focused(), name);
    };
    await row.getByRole('button', { name: 'Delete old@1.0.0' }).click();
    await focusOn('Yes, delete old@1.0.0');
    await row.getByRole('button', { name: 'Keep it' }).click();
    await focusOn('Delete old@1.0.0');
    // from the keyboard alone: Enter opens the question, Tab reaches "Keep it", Enter keeps it
    await page.keyboard.press('Enter');
    await focusOn('Yes, delete old@1.0.0');
    await page.keyboard.press('Tab');
    await page.keyboard.press('Enter');
    await focusOn('Delete old@1.0.0');
    // Escape keeps it too, and gives the focus back to the button
    await page.keyboard.press('Enter');
    await focusOn('Yes, delete old@1.0.0');
    await page.keyboard.press('Escape');
    await row.getByRole('button', { name: 'Yes, delete old@1.0.0' }).waitFor({ state: 'detached', timeout: 5000 });
    await focusOn('Delete old@1.0.0');
    await row.getByRole('button', { name: 'Delete old@1.0.0' }).click();
    expectRefusal = true;
    await row.getByRole('button', { name: 'Yes, delete old@1.0.0' }).click();
    await row.getByRole('alert').filter({ hasText: `installed by jobs that are not finished (${job.job.jobId})` }).waitFor();
    await focusOn('Delete old@1.0.0'); // refused: back on the button, to try again
    expectRefusal = false;
    await shot('07a-artifact-delete-refused');
    await api.call('POST', `/api/v1/jobs/${job.job.jobId}/cancel`);
    await row.getByRole('button', { name: 'Delete old@1.0.0' }).click();
    await row.getByRole('button', { name: 'Yes, delete old@1.0.0' }).click();
    await row.waitFor({ state: 'detached' });
    assert.equal((await fetch(`${ts.httpUrl}/api/v1/artifacts/old/1.0.0`, { headers: { authorization: `Bearer ${ts.token}` } })).status, 404);
    await page.getByTestId('artifacts-table').getByRole('row').filter({ hasText: '2.0.0' }).waitFor();
    // builds added and deleted elsewhere (the CLI, another tab): their rows come and go at once
    // (artifact.changed; no focus or reload of the tab stands in for it)
    await page.getByRole('status', { name: 'Live updates: Live' }).waitFor();
    const rowNamed = (name: string) => page.getByTestId('artifacts-table').getByRole('row').filter({ has: page.getByRole('cell', { name, exact: true }) });
    for (const name of ['gone', 'went']) {
      const res = await fetch(`${ts.httpUrl}/api/v1/artifacts?name=${name}&version=1.0.0`, { method: 'POST', headers: { authorization: `Bearer ${ts.token}` }, body: new Uint8Array(randomBytes(512)) });
      assert.equal(res.status, 201);
      await rowNamed(name).waitFor({ timeout: 10_000 });
    }
    for (const name of ['gone', 'went']) {
      await api.call('DELETE', `/api/v1/artifacts/${name}/1.0.0`);
      await rowNamed(name).waitFor({ state: 'detached', timeout: 10_000 });
    }
  });

  it('searches devices page by page and opens one', async () => {
    // devices of its own: 27 (a page of 25 and the rest), five of them reporting 2.0.0, and
    // page-01 sent a command and reporting an agent that accepts unsigned software
    const ids = Array.from({ length: 27 }, (_, i) => `page-${String(i + 1).padStart(2, '0')}`);
    for (const id of ids) await registerDevice(ts, id);
    const op = await TestClient.connect(ts.mqttUrl, 'ops-pages', { username: 'operator', password: ts.token });
    try {
      for (const id of ids.slice(0, 5)) await op.publish(`state/${id}/update`, { state: { reported: { software: { name: 'fw', version: '2.0.0', status: 'SUCCESS' } } } });
      await op.publish('state/page-01/update', { state: { reported: { agent: { trust: 'unsigned' } } } });
    } finally {
      await op.end();
    }
    await deploy(ts, ['page-01'], 'fw@2.0.0');
    await nav('Devices').click();
    await heading('Devices');
    await page.getByLabel('Device id contains').fill('page-');
    await page.getByLabel('Version running').fill('2.0.0');
    await page.getByRole('button', { name: 'Search' }).click();
    const rows = page.getByTestId('devices-table').locator('tbody tr');
    await page.waitForURL(/version=2\.0\.0/);
    await rows.first().waitFor();
    await page.getByText('5 shown', { exact: true }).waitFor();
    await shot('08-devices');
    await page.getByLabel('Version running').fill('');
    await page.getByRole('button', { name: 'Search' }).click();
    // all 27: a full page of 25, then the rest, and back
    await page.getByText('25 shown', { exact: true }).waitFor();
    // the form follows the URL: back to the filtered search shows its filters, forward clears them
    await page.goBack();
    await page.getByText('5 shown', { exact: true }).waitFor();
    assert.equal(await page.getByLabel('Version running').inputValue(), '2.0.0');
    assert.equal(await page.getByLabel('Device id contains').inputValue(), 'page-');
    await page.goForward();
    await page.getByText('25 shown', { exact: true }).waitFor();
    assert.equal(await page.getByLabel('Version running').inputValue(), '');
    assert.equal(await page.getByLabel('Device id contains').inputValue(), 'page-');
    await page.getByRole('button', { name: 'Next' }).click();
    await page.getByText('2 shown', { exact: true }).waitFor();
    assert.deepEqual(await rows.locator('td:first-child').allInnerTexts(), ['page-26', 'page-27']);
    await page.getByRole('button', { name: 'Previous' }).click();
    await page.getByText('25 shown', { exact: true }).waitFor();
    await page.getByRole('link', { name: 'page-01', exact: true }).click();
    await heading(/Device page-01/);
    await page.getByRole('heading', { name: 'Desired' }).waitFor();
    await page.getByRole('heading', { name: 'Reported' }).waitFor();
    await page.getByRole('heading', { name: 'Job history' }).waitFor();
    await page.getByTestId('device-events').getByText('COMMAND SENT').waitFor();
    await shot('09-device');
    // what its agent says of itself: it accepts unsigned software
    await page.getByTestId('agent-facts').filter({ hasText: 'Agent: accepts unsigned software' }).waitFor();
    // a device on a root whose client certificate expires in five days: said, as a warning
    const facts0 = await TestClient.connect(ts.mqttUrl, 'ops-facts', { username: 'operator', password: ts.token });
    const expiresAt = Math.floor(Date.now() / 1000) + 5 * 86_400;
    await facts0.publish('state/page-02/update', { state: { reported: { agent: { trust: 'root', keyId: '0123456789abcdef', certificateExpiresAt: expiresAt } } } });
    await facts0.end();
    await page.goto(`${ts.httpUrl}/devices/page-02`);
    const facts = page.getByTestId('agent-facts');
    await facts.filter({ hasText: /^Agent: checks software against the offline root 0123456789abcdef · client certificate valid until / }).waitFor();
    assert.equal(await facts.locator('.note-warn').count(), 1, 'within 14 days: a warning');
  });

  it('revokes, reinstates and deletes a device from its page (after confirmations), then goes back to the list', async () => {
    await page.goto(`${ts.httpUrl}/devices/idle-3`);
    await heading(/Device idle-3/);
    // revoked and reinstated elsewhere (the CLI makes these calls): the page follows, without a
    // reload (idle-3 never connects: no presence or execution event stands in for it)
    await page.getByRole('status', { name: 'Live updates: Live' }).waitFor();
    await api.call('POST', '/api/v1/devices/idle-3/revoke');
    await page.getByRole('heading', { level: 1 }).filter({ hasText: 'REVOKED' }).waitFor({ timeout: 10_000 });
    await page.getByRole('button', { name: 'Reinstate device' }).waitFor();
    await api.call('POST', '/api/v1/devices/idle-3/reinstate');
    await page.getByRole('heading', { level: 1 }).filter({ hasText: 'OFFLINE' }).waitFor({ timeout: 10_000 });
    // a rollout that starts in a moment (idle-2, offline, keeps it running): it skips idle-3, revoked before then
    const skipping = (await api.call<{ job: { jobId: string } }>('POST', '/api/v1/jobs', { artifact: 'fw@2.0.0', targets: { devices: ['idle-2', 'idle-3'] }, plan: { startAt: Date.now() + 5000 } })).job.jobId;
    // revoked, reinstated, then deleted
    await page.getByRole('button', { name: 'Revoke device' }).click();
    await page.getByRole('button', { name: 'Yes, revoke idle-3' }).click();
    await page.getByRole('heading', { level: 1 }).filter({ hasText: 'REVOKED' }).waitFor();
    await eventually(async () => {
      const page1 = await api.call<{ items: { deviceId: string; status: string }[] }>('GET', `/api/v1/jobs/${skipping}/executions?status=REMOVED`);
      return page1.items.some((e) => e.deviceId === 'idle-3') ? true : undefined;
    }, 30_000, 'idle-3 skipped while revoked');
    // ...and takes it back when it is reinstated: the page names the job
    await page.getByRole('button', { name: 'Reinstate device' }).click();
    await page.getByRole('heading', { level: 1 }).filter({ hasText: 'OFFLINE' }).waitFor();
    await page.getByTestId('jobs-requeued').filter({ hasText: `Queued again in the running job that skipped it while it was revoked: ${skipping.slice(0, 8)}` }).waitFor();
    await page.getByTestId('jobs-requeued').getByRole('link', { name: `job ${skipping}` }).waitFor();
    await api.call('POST', `/api/v1/jobs/${skipping}/cancel`);
    await page.getByRole('button', { name: 'Delete device' }).click();
    await page.getByRole('alert').filter({ hasText: 'its job history stays' }).waitFor();
    await shot('09a-device-delete');
    await page.getByRole('button', { name: 'Yes, delete idle-3' }).click();
    await heading('Devices');
    assert.equal((await fetch(`${ts.httpUrl}/api/v1/devices/idle-3`, { headers: { authorization: `Bearer ${ts.token}` } })).status, 404);
  });

  it('says so when the device whose page is open is deleted elsewhere, and drops what it showed of it', async () => {
    await registerDevice(ts, 'gone-1', { tags: ['doomed'] });
    await page.goto(`${ts.httpUrl}/devices/gone-1`);
    await heading(/Device gone-1/);
    await page.getByRole('heading', { name: 'State' }).waitFor();
    await page.getByRole('status', { name: 'Live updates: Live' }).waitFor();
    expectRefusal = true; // the re-read's 404 (the browser logs it)
    try {
      await api.call('DELETE', '/api/v1/devices/gone-1'); // what the CLI's `updraft device delete` calls
      await page.locator('main [role="alert"]').filter({ hasText: 'Device gone-1 was deleted while this page was open' }).waitFor({ timeout: 10_000 });
      // said once, and nothing stale under it: no state, tags, history or events, no controls, no stream
      assert.equal(await page.locator('main [role="alert"]').count(), 1);
      for (const gone of ['State', 'Job history', 'Last events']) assert.equal(await page.getByRole('heading', { name: gone }).count(), 0, `no ${gone} section`);
      assert.equal(await page.getByText('doomed').count(), 0, 'its tags are not shown');
      assert.equal(await page.getByRole('button', { name: 'Delete device' }).count(), 0);
      await page.getByRole('status', { name: /^Live updates/ }).waitFor({ state: 'detached' });
      await page.getByRole('link', { name: 'Devices' }).first().waitFor();
      await shot('09b-device-deleted-elsewhere');
    } finally {
      expectRefusal = false;
    }
  });

  it('shows the fleet overview live: versions, failures, events', async () => {
    // devices of its own: two reporting ovfw@3.1.0, online, then gone
    const ids = ['ov-1', 'ov-2'];
    const secrets = await Promise.all(ids.map((id) => registerDevice(ts, id)));
    const clients = await Promise.all(ids.map((id, i) => TestClient.connect(ts.mqttUrl, id, { username: id, password: secrets[i]! })));
    let connected = true;
    try {
      for (const [i, id] of ids.entries()) await clients[i]!.publish(`state/${id}/update`, { state: { reported: { software: { name: 'ovfw', version: '3.1.0', status: 'SUCCESS' } } } });
      // the devices online, counted through the search (the overview's figure is cached for a moment)
      const online = async () => {
        const found: string[] = [];
        let after = '';
        do {
          const p = await api.call<{ items: { deviceId: string }[]; next?: string }>('GET', `/api/v1/fleet/search?state=online&limit=100${after ? `&after=${encodeURIComponent(after)}` : ''}`);
          found.push(...p.items.map((d) => d.deviceId));
          after = p.next ?? '';
        } while (after);
        return found;
      };
      const withThem = (await eventually(async () => {
        const found = await online();
        return ids.every((id) => found.includes(id)) ? found : undefined;
      }, 30_000, 'both online')).length;
      await nav('Overview').click();
      await heading('Fleet overview');
      await page.getByTestId('version-chart').and(page.locator('[aria-label*="ovfw@3.1.0: 2"]')).waitFor();
      await page.getByRole('heading', { name: 'Devices with failures' }).waitFor();
      await page.getByTestId('recent-events').waitFor();
      await page.getByTestId('stat-online').filter({ hasText: new RegExp(`^${withThem}$`) }).waitFor();
      // live: devices going offline show without a reload
      await Promise.all(clients.map((c) => c.end()));
      connected = false;
      await page.getByTestId('stat-online').filter({ hasText: new RegExp(`^${withThem - 2}$`) }).waitFor();
      await shot('10-overview');
    } finally {
      if (connected) await Promise.all(clients.map((c) => c.end()));
    }
  });


  it("says so when the overview's recent events fail to load, rather than 'Loading' for ever", async () => {
    // the fleet's answer comes; the recent events' is refused
    await page.route('**/api/v1/events/recent*', (route) => route.fulfill({ status: 503, contentType: 'application/json', body: JSON.stringify({ error: { code: 'UNAVAILABLE', message: 'recent events are unavailable' } }) }));
    expectRefusal = true;
    try {
      await page.goto(ts.httpUrl + '/');
      await page.getByTestId('stat-registered').waitFor();
      const events = page.getByRole('region', { name: 'Recent events' });
      await events.getByRole('alert').filter({ hasText: 'recent events are unavailable' }).waitFor();
      assert.equal(await events.getByText('Loading events…').count(), 0);
    } finally {
      await page.unroute('**/api/v1/events/recent*');
      expectRefusal = false;
    }
  });

  it('shows the live indicator only on pages that read the event stream', async () => {
    const live = page.getByRole('status', { name: /^Live updates/ });
    await page.goto(ts.httpUrl + '/');
    await page.getByRole('status', { name: 'Live updates: Live' }).waitFor();
    // Security does not update by itself: no "Live" carried over from the page before
    await nav('Security').click();
    await heading('Security');
    assert.equal(await live.count(), 0, 'no live indicator on Security');
    // Artifacts and New rollout follow the builds added and deleted (artifact.changed)
    await nav('Artifacts').click();
    await heading('Artifacts');
    await page.getByRole('status', { name: 'Live updates: Live' }).waitFor();
    await page.goto(ts.httpUrl + '/jobs/new');
    await heading('New rollout');
    await page.getByRole('status', { name: 'Live updates: Live' }).waitFor();
    await nav('Security').click();
    await heading('Security');
    assert.equal(await live.count(), 0, 'no live indicator on Security after New rollout');
    await nav('Jobs').click();
    await page.getByRole('status', { name: 'Live updates: Live' }).waitFor();
  });

  it('has the accessible basics: skip link first, every control labelled, keyboard reachable', async () => {
    for (const route of ['/', '/devices', '/artifacts', '/jobs/new', '/security']) {
      await page.goto(ts.httpUrl + route);
      await page.locator('main h1').waitFor();
      const unlabelled = await page.evaluate(() =>
        [...document.querySelectorAll('input, select, textarea, button')]
          .filter((el) => {
            const e = el as HTMLInputElement;
            const named = (e.labels?.length ?? 0) > 0 || e.getAttribute('aria-label') || (el.tagName === 'BUTTON' && el.textContent?.trim());
            return !named;
          })
          .map((el) => el.outerHTML.slice(0, 80)),
      );
      assert.deepEqual(unlabelled, [], `unlabelled controls on ${route}`);
      await page.keyboard.press('Tab');
      assert.equal(await page.evaluate(() => document.activeElement?.textContent), 'Skip to content', route);
    }
    // the navigation works from the keyboard alone
    await page.keyboard.press('Tab'); // Overview
    await page.keyboard.press('Tab'); // Devices
    await page.keyboard.press('Enter');
    await heading('Devices');
    // the focus moves in an effect after the new page renders: wait for it (a timeout fails the test)
    await page.waitForFunction(() => document.activeElement?.id === 'main', undefined, { timeout: 5000 }).catch(() => undefined);
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'main', 'focus moves to the new page');
  });

  it('shows the not-found page for a path with a malformed percent-encoding, rather than a blank page', async () => {
    for (const route of ['/devices/%', '/jobs/%E0%A4%A']) {
      await page.goto(ts.httpUrl + route);
      await heading('Page not found');
      await page.getByText(`There is no page at ${route}.`).waitFor();
    }
  });

  it('says once that a device or a job does not exist, not once per section, and asks nothing more of the server', async () => {
    // from a page that reads nothing (the overview the tab opened on polls): what is counted is this page's
    await page.goto(`${ts.httpUrl}/no-such-page`);
    await heading('Page not found');
    expectRefusal = true; // the 404s (the browser logs them)
    const requests: string[] = [];
    const record = (r: { url: () => string }) => void requests.push(new URL(r.url()).pathname + new URL(r.url()).search);
    page.on('request', record);
    try {
      for (const [route, title, call] of [
        ['/devices/no-such-device', 'Device no-such-device', '/api/v1/devices/no-such-device'],
        ['/jobs/no-such-job', 'Job no-such-job', '/api/v1/jobs/no-such-job?limit=1'],
      ] as const) {
        const answered = page.waitForResponse((r) => r.url().endsWith(call));
        requests.length = 0;
        await page.goto(ts.httpUrl + route);
        await heading(title);
        await answered;
        const alerts = page.locator('main [role="alert"]');
        await alerts.first().waitFor();
        // give a second alert (or a late request) the chance to show, then count
        await page.waitForFunction(() => document.querySelectorAll('main [role="alert"]').length > 1, undefined, { timeout: 2000 }).catch(() => undefined);
        assert.equal(await alerts.count(), 1, `one error on ${route}: ${(await alerts.allInnerTexts()).join(' | ')}`);
        // no other section asked for, and no live stream held open for it
        // (the shell asks /whoami once as a page loads, before any page: what the token may do)
        assert.deepEqual(requests.filter((r) => r.startsWith('/api/') && r !== '/api/v1/whoami'), [call], route);
        assert.equal(await page.getByRole('status', { name: /^Live updates/ }).count(), 0, `no live stream on ${route}`);
      }
    } finally {
      page.off('request', record);
      expectRefusal = false;
    }
  });

  it('comes back by itself when a device or job page opened while the server could not be reached', async () => {
    // a device and a job of its own
    await registerDevice(ts, 'back-1');
    const jobId = await deploy(ts, ['back-1'], 'fw@2.0.0');
    expectRefusal = true; // the failed request (the browser logs it)
    try {
      for (const [route, path, ready] of [
        ['/devices/back-1', '/api/v1/devices/back-1', () => page.getByTestId('device-jobs').waitFor({ timeout: 15_000 })],
        [`/jobs/${jobId}`, `/api/v1/jobs/${jobId}`, () => page.getByRole('heading', { level: 1 }).filter({ hasText: 'fw@2.0.0' }).waitFor({ timeout: 15_000 })],
      ] as const) {
        // its first read gets no answer; the live stream reconnects and reloads it. The stream
        // is held until the error has been seen: connected at once, it replaced the error
        // before the test could see it (seen in CI on a loaded machine)
        let seen!: () => void;
        const errorSeen = new Promise<void>((resolve) => (seen = resolve));
        await page.route((url) => url.pathname === path, (r) => r.abort(), { times: 1 });
        await page.route((url) => url.pathname === '/api/v1/events', async (r) => (await errorSeen, r.continue()), { times: 1 });
        await page.goto(ts.httpUrl + route);
        await page.locator('main [role="alert"]').filter({ hasText: 'the server cannot be reached' }).waitFor();
        seen();
        await ready();
        assert.equal(await page.locator('main [role="alert"]').filter({ hasText: 'the server cannot be reached' }).count(), 0, route);
      }
    } finally {
      await page.unrouteAll();
      expectRefusal = false;
    }
  });

  it("shows on a device's page why its install waits: its install gate put it off", async () => {
    const root = await mkdtemp(path.join(os.tmpdir(), 'updraft-dash-gate-'));
    await addArtifact(ts, '9.0.0', randomBytes(2000), 'gated');
    const gated = await startAgent(ts, root, 'gate-1', { installGate: async () => ({ later: 'battery at 12%' }), installGateRetryMs: 60_000 });
    try {
      await deploy(ts, ['gate-1'], 'gated@9.0.0');
      await page.goto(`${ts.httpUrl}/devices/gate-1`);
      await heading(/Device gate-1/);
      await page.getByRole('cell', { name: 'install put off by the device (1): battery at 12%' }).waitFor();
    } finally {
      await gated.agent.stop();
      await rm(root, { recursive: true, force: true });
    }
  });

  it("shows a device's log of its failed attempt on the job's page, live, in the page", async () => {
    // idle-1 has no agent: its execution stays unfinished until it says otherwise
    const jobId = (await api.call<{ job: { jobId: string } }>('POST', '/api/v1/deployments', { devices: ['idle-1'], artifact: 'fw@2.0.0' })).job.jobId;
    const firstLogs = page.waitForResponse((r) => r.url().endsWith(`/api/v1/jobs/${jobId}/logs?limit=1000`));
    await page.goto(`${ts.httpUrl}/jobs/${jobId}`);
    await heading(/fw@2\.0\.0/);
    // the page asked for the job's logs; their body is read from the API, not from the page:
    // the page may ask again as its live stream connects and drop the first answer, whose
    // body the browser then no longer has (CI: "No data found for resource with given identifier")
    assert.equal((await firstLogs).status(), 200);
    assert.deepEqual(await api.call('GET', `/api/v1/jobs/${jobId}/logs?limit=1000`), { items: [] });
    await page.getByText('No device has failed.').waitFor();
    await page.getByRole('status', { name: 'Live updates: Live' }).waitFor();
    const viewLog = page.getByRole('button', { name: 'View the log of idle-1' });
    assert.equal(await viewLog.count(), 0, 'no log yet');
    // the device, signed in with its own secret, sends its log of the attempt
    const device = await TestClient.connect(ts.mqttUrl, 'idle-1', { username: 'idle-1', password: idle.find((d) => d.deviceId === 'idle-1')!.secret });
    try {
      assert.deepEqual(await device.subscribe('state/idle-1/job-log/+'), [1]);
      const lines = ['command received: fw@2.0.0', 'download attempt 1 failed: connection reset', 'installer: exit code 3 (postinst: <missing /etc/app.conf>)', 'health check failed: service did not start'];
      const answer = await device.request('state/idle-1/job-log', { jobId, lines, dropped: 3 });
      assert.equal(answer.topic, 'state/idle-1/job-log/accepted', JSON.stringify(answer.body));
      // live, without a reload: its execution is not finished, so it is listed under the other devices' logs
      await page.getByTestId('other-logs-table').getByRole('row').filter({ hasText: 'idle-1' }).filter({ hasText: jobId }).waitFor();
      await viewLog.click();
      const panel = page.getByTestId('job-log');
      await panel.getByRole('heading', { name: `Log of idle-1 for job ${jobId}` }).waitFor();
      assert.equal(await page.evaluate(() => document.activeElement?.id), 'job-log-h', 'the focus moves to the log');
      await panel.getByText(/^Received .+ · 4 lines$/).waitFor();
      await panel.getByText('3 lines dropped between the first lines and the latest').waitFor();
      assert.equal(await panel.getByTestId('job-log-lines').innerText(), lines.join('\n'));
      await shot('09b-job-log');
      await panel.getByRole('button', { name: 'Close' }).click();
      await panel.waitFor({ state: 'detached' });
      // given back by a timer once the panel has gone: waited for, then checked
      await page.waitForFunction(() => document.activeElement?.getAttribute('aria-label') === 'View the log of idle-1', undefined, { timeout: 5000 }).catch(() => undefined);
      assert.equal(await page.evaluate(() => document.activeElement?.getAttribute('aria-label')), 'View the log of idle-1', 'the focus goes back');
      // its failure reported: it moves to the failing devices, its log in their Log column
      await device.publish('state/idle-1/update', { state: { reported: { software: { name: 'fw', version: '1.0.0', jobId, status: 'FAILURE', error: 'health check failed' } } } });
      const row = page.getByTestId('failing-table').getByRole('row').filter({ hasText: 'idle-1' });
      await row.filter({ hasText: 'health check failed' }).waitFor();
      await page.getByTestId('other-logs-table').waitFor({ state: 'detached' });
      await row.getByRole('button', { name: 'View the log of idle-1' }).click();
      assert.equal(await panel.getByTestId('job-log-lines').innerText(), lines.join('\n'));
      await page.keyboard.press('Escape');
      await panel.waitFor({ state: 'detached' });
    } finally {
      await device.end();
    }
  });

  it("shows a device's logs of failed attempts on its own page, per job, live, in the page", async () => {
    // a device of its own (it never runs an agent): its first job left a log, a second has none yet
    const secret = await registerDevice(ts, 'logs-1');
    const first = await deploy(ts, ['logs-1'], 'fw@2.0.0');
    {
      const device = await TestClient.connect(ts.mqttUrl, 'logs-1', { username: 'logs-1', password: secret });
      try {
        assert.deepEqual(await device.subscribe('state/logs-1/job-log/+'), [1]);
        const answer = await device.request('state/logs-1/job-log', { jobId: first, lines: ['command received: fw@2.0.0', 'installer: exit code 3 (postinst: <missing /etc/app.conf>)'] });
        assert.equal(answer.topic, 'state/logs-1/job-log/accepted', JSON.stringify(answer.body));
      } finally {
        await device.end();
      }
    }
    const jobs = await api.call<{ jobLogs: { jobId: string }[] }>('GET', '/api/v1/devices/logs-1');
    assert.deepEqual(jobs.jobLogs.map((l) => l.jobId), [first]);
    const second = (await api.call<{ job: { jobId: string } }>('POST', '/api/v1/deployments', { devices: ['logs-1'], artifact: 'fw@2.0.0' })).job.jobId;
    await page.goto(`${ts.httpUrl}/devices/logs-1`);
    await heading(/Device logs-1/);
    await page.getByRole('status', { name: 'Live updates: Live' }).waitFor();
    const table = page.getByTestId('device-jobs');
    const rowOf = (jobId: string) => table.getByRole('row').filter({ has: page.getByRole('link', { name: `job ${jobId}`, exact: true }) });
    await rowOf(second).waitFor();
    const viewFirst = rowOf(first).getByRole('button', { name: `View the log of job ${first}`, exact: true });
    const viewSecond = rowOf(second).getByRole('button', { name: `View the log of job ${second}`, exact: true });
    await viewFirst.waitFor();
    assert.equal(await viewSecond.count(), 0, 'no log of the second job yet');
    assert.equal(await rowOf(second).locator('td').last().innerText(), '—');
    // the device sends its log of the second job while the page is open: its button shows without a reload
    const device = await TestClient.connect(ts.mqttUrl, 'logs-1', { username: 'logs-1', password: secret });
    const lines = ['command received: fw@2.0.0', 'download: sha256 mismatch, expected 3f2a…', 'gave up after 3 attempts'];
    try {
      assert.deepEqual(await device.subscribe('state/logs-1/job-log/+'), [1]);
      const answer = await device.request('state/logs-1/job-log', { jobId: second, lines });
      assert.equal(answer.topic, 'state/logs-1/job-log/accepted', JSON.stringify(answer.body));
    } finally {
      await device.end();
    }
    await viewSecond.click();
    const panel = page.getByTestId('job-log');
    await panel.getByRole('heading', { name: `Log of logs-1 for job ${second}` }).waitFor();
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'job-log-h', 'the focus moves to the log');
    await panel.getByText(/^Received .+ · 3 lines$/).waitFor();
    assert.equal(await panel.getByTestId('job-log-dropped').count(), 0);
    assert.equal(await panel.getByTestId('job-log-lines').innerText(), lines.join('\n'));
    assert.equal(await viewSecond.getAttribute('aria-expanded'), 'true');
    await shot('09c-device-job-log');
    // the other job's log replaces it in the panel
    await viewFirst.click();
    await panel.getByRole('heading', { name: `Log of logs-1 for job ${first}` }).waitFor();
    await panel.getByTestId('job-log-lines').filter({ hasText: 'installer: exit code 3 (postinst: <missing /etc/app.conf>)' }).waitFor();
    assert.equal(await viewSecond.getAttribute('aria-expanded'), 'false');
    await page.keyboard.press('Escape');
    await panel.waitFor({ state: 'detached' });
    // the panel gives the focus back once it has gone (a timer after it closes): wait for it, then say where it is
    const back = `View the log of job ${first}`;
    await page.waitForFunction((label) => document.activeElement?.getAttribute('aria-label') === label, back, { timeout: 5000 }).catch(() => undefined);
    assert.equal(await page.evaluate(() => document.activeElement?.getAttribute('aria-label')), back, 'the focus goes back');
    // 49 jobs more: the history shows 50 a page, the first job (and its log) on the older page
    const more: string[] = [];
    for (let i = 0; i < 49; i++) {
      await new Promise((r) => setTimeout(r, 2)); // queued in distinct milliseconds: the order of creation
      more.push((await api.call<{ job: { jobId: string } }>('POST', '/api/v1/jobs', { artifact: 'fw@2.0.0', targets: { devices: ['logs-1'] } })).job.jobId);
    }
    await page.reload();
    await rowOf(more[48]!).waitFor();
    assert.equal(await rowOf(first).count(), 0, 'the oldest job is on the next page');
    const pager = page.getByRole('navigation', { name: "Pages of this device's jobs" });
    assert.equal(await pager.getByRole('button', { name: 'Newer jobs' }).isDisabled(), true);
    await pager.getByRole('button', { name: 'Older jobs' }).click();
    await viewFirst.waitFor();
    assert.equal(await rowOf(more[48]!).count(), 0);
    await pager.getByRole('button', { name: 'Newer jobs' }).click();
    await rowOf(more[48]!).waitFor();
    // each job was superseded on logs-1 by the next (it never took them): those finished already
    for (const jobId of [second, ...more]) {
      await api.call('POST', `/api/v1/jobs/${jobId}/cancel`).catch((err: { status?: number; message: string }) => {
        if (err.status !== 409 || !/has finished \(COMPLETED\)/.test(err.message)) throw err;
      });
    }
  });

  it("opens a device's page whose id holds a dot by its URL: a reload, a bookmark, a shared link", async () => {
    // device ids allow _ . : - ; the server once took '.dev-1' for a file's extension and answered 404
    await registerDevice(ts, 'evil.dev-1');
    await page.goto(`${ts.httpUrl}/devices/evil.dev-1`);
    await heading('Device evil.dev-1 OFFLINE');
    await page.reload();
    await heading('Device evil.dev-1 OFFLINE');
    await page.getByText('No job has targeted this device.').waitFor();
  });

  it("follows on the devices list what a rollout changes: the desired version, the update status, the version running", async () => {
    await addArtifact(ts, '2.5.0', randomBytes(256), 'livefw');
    await registerDevice(ts, 'live-1');
    // the device's reports are sent by an operator, connected before the page opens: no
    // presence event of the device (which the page followed already) stands in for them
    const op = await TestClient.connect(ts.mqttUrl, 'ops-live', { username: 'operator', password: ts.token });
    try {
      await page.goto(`${ts.httpUrl}/devices?id=live-`);
      await page.getByRole('status', { name: 'Live updates: Live' }).waitFor();
      const row = page.getByTestId('devices-table').getByRole('row').filter({ has: page.getByRole('link', { name: 'live-1', exact: true }) });
      const cells = async () => (await row.locator('td').allInnerTexts()).slice(1, 5);
      await row.waitFor();
      assert.deepEqual(await cells(), ['OFFLINE', '—', '—', '—']);
      // the command sent: the desired version
      const jobId = await deploy(ts, ['live-1'], 'livefw@2.5.0');
      await row.locator('td').nth(4).filter({ hasText: /^2\.5\.0$/ }).waitFor({ timeout: 10_000 });
      // the device's report: its update status, then the version it runs
      await op.publish('state/live-1/update', { state: { reported: { software: { name: 'livefw', version: '1.0.0', jobId, status: 'DOWNLOADING' } } } });
      await row.locator('td').nth(3).filter({ hasText: 'DOWNLOADING' }).waitFor({ timeout: 10_000 });
      await op.publish('state/live-1/update', { state: { reported: { software: { name: 'livefw', version: '2.5.0', jobId, status: 'SUCCESS' } } } });
      await row.locator('td').nth(2).filter({ hasText: /^2\.5\.0$/ }).waitFor({ timeout: 10_000 });
      assert.deepEqual(await cells(), ['OFFLINE', '2.5.0', 'SUCCESS', '2.5.0']);
    } finally {
      await op.end();
    }
  });

  it("shows a canceled job's progress as job watch does, with figures that cannot mislead: finished out of those counted, and how many were canceled and left out", async () => {
    await addArtifact(ts, '1.0.0', randomBytes(256), 'halffw');
    for (const id of ['half-1', 'half-2']) await registerDevice(ts, id);
    // the first wave is half-1, which installs it (its report sent by an operator); the second
    // waits for an approval that never comes
    const jobId = (await api.call<{ job: { jobId: string } }>('POST', '/api/v1/jobs', { artifact: 'halffw@1.0.0', targets: { devices: ['half-1', 'half-2'] }, plan: { waves: [{ count: 1, requireApproval: true }, {}] } })).job.jobId;
    await eventually(async () => ((await api.call<{ items: { deviceId: string; dispatchedAt?: number }[] }>('GET', `/api/v1/jobs/${jobId}/executions`)).items.some((e) => e.deviceId === 'half-1' && e.dispatchedAt !== undefined) ? true : undefined), 30_000, 'the first wave sent');
    const op = await TestClient.connect(ts.mqttUrl, 'ops-half', { username: 'operator', password: ts.token });
    try {
      await op.publish('state/half-1/update', { state: { reported: { software: { name: 'halffw', version: '1.0.0', jobId, status: 'SUCCESS' } } } });
    } finally {
      await op.end();
    }
    await eventually(async () => ((await api.call<{ counts: Record<string, number> }>('GET', `/api/v1/jobs/${jobId}?limit=1`)).counts.SUCCEEDED === 1 ? true : undefined), 30_000, 'the first wave succeeded');
    await api.call('POST', `/api/v1/jobs/${jobId}/cancel`);
    await page.goto(`${ts.httpUrl}/jobs/${jobId}`);
    await page.getByRole('heading', { level: 1 }).filter({ hasText: 'CANCELED' }).waitFor();
    // as the API's percentDone and job watch: the canceled device left out (1 of 1: 100%), and
    // said so; the bar is out of the 1 counted, never beside the job's 2 devices ("100% of 2" misled)
    const progress = page.getByTestId('job-progress');
    await progress.filter({ hasText: '1 of 1 finished (100%) · 1 canceled, left out' }).waitFor();
    assert.equal(await page.getByLabel('All devices: 100%').count(), 1);
    assert.equal(await page.getByLabel('Wave 2: 0%').count(), 1);
    await page.locator('.progress').filter({ hasText: 'Wave 2' }).filter({ hasText: '0 of 0 finished (0%) · 1 canceled, left out' }).waitFor();
  });

  it('reads the jobs and devices lists again when their stream comes back after a network drop, for what changed meanwhile', async () => {
    await addArtifact(ts, '1.0.0', randomBytes(256), 'dropfw');
    await registerDevice(ts, 'drop-1');
    await registerDevice(ts, 'drop-2');
    // drop-1 never connects: its job stays in progress until it is canceled
    const jobId = await deploy(ts, ['drop-1'], 'dropfw@1.0.0');
    // the tab reaches the server through a proxy whose connections can be cut, as a network
    // drop does (the browser's offline emulation leaves an open stream alone)
    const sockets = new Set<net.Socket>();
    let down = false;
    const proxy = net.createServer((client) => {
      if (down) return void client.destroy();
      const upstream = net.connect(Number(new URL(ts.httpUrl).port), '127.0.0.1');
      const end = () => {
        for (const s of [client, upstream]) {
          s.destroy();
          sockets.delete(s);
        }
      };
      for (const s of [client, upstream]) sockets.add(s.on('error', end).on('close', end));
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const via = `http://127.0.0.1:${(proxy.address() as net.AddressInfo).port}`;
    const live = page.getByRole('status', { name: 'Live updates: Live' });
    /** Cuts the network while `change` is made (no event of it reaches the page), then brings it back. */
    const dropWhile = async (change: () => Promise<unknown>) => {
      await live.waitFor();
      down = true;
      expectRefusal = true; // the reconnections refused meanwhile (the browser logs them)
      try {
        for (const s of sockets) s.destroy();
        await page.getByRole('status', { name: 'Live updates: Reconnecting…' }).waitFor();
        await change();
      } finally {
        down = false;
      }
      await live.waitFor({ timeout: 30_000 });
      expectRefusal = false;
    };
    try {
      // another origin (the tab's sign-in, in sessionStorage, is per origin: this test's tab is signed in on each)
      await page.goto(`${via}/jobs`);
      const row = page.getByTestId('jobs-table').getByRole('row').filter({ has: page.getByRole('link', { name: `job ${jobId}`, exact: true }) });
      await row.filter({ hasText: 'IN PROGRESS' }).waitFor();
      await dropWhile(() => api.call('POST', `/api/v1/jobs/${jobId}/cancel`));
      await row.filter({ hasText: 'CANCELED' }).waitFor({ timeout: 10_000 });
      // the devices list: drop-2 revoked while the network was down
      await page.goto(`${via}/devices?id=drop-`);
      const device = page.getByTestId('devices-table').getByRole('row').filter({ has: page.getByRole('link', { name: 'drop-2', exact: true }) });
      await device.filter({ hasText: 'OFFLINE' }).waitFor();
      await dropWhile(() => api.call('POST', '/api/v1/devices/drop-2/revoke'));
      await device.filter({ hasText: 'REVOKED' }).waitFor({ timeout: 10_000 });
    } finally {
      expectRefusal = false;
      // the tab closes after the test: leave no connection to the proxy open
      await page.goto('about:blank');
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => proxy.close(resolve));
    }
  });

  it("puts a job page's id into its API paths encoded: an id holding ? / # reads that job, not another resource", async () => {
    await addArtifact(ts, '1.0.0', randomBytes(256), 'encfw');
    await registerDevice(ts, 'enc-1');
    const jobId = await deploy(ts, ['enc-1'], 'encfw@1.0.0');
    // from a page that reads nothing (the overview the tab opened on polls): what is counted is this page's
    await page.goto(`${ts.httpUrl}/no-such-page`);
    await heading('Page not found');
    expectRefusal = true; // the 404s (the browser logs them)
    const requests: string[] = [];
    const record = (r: { url: () => string }) => void requests.push(new URL(r.url()).pathname + new URL(r.url()).search);
    page.on('request', record);
    try {
      // '?' once made the job list's answer be read as a job (the page stayed on "Loading the job…"),
      // and '<id>?x' or '<id>/timeline' another answer of that job under a wrong header
      for (const [route, id] of [['/jobs/%3F', '?'], [`/jobs/${jobId}%3Fx`, `${jobId}?x`], [`/jobs/${jobId}%2Ftimeline`, `${jobId}/timeline`], [`/jobs/${jobId}%23a`, `${jobId}#a`]] as const) {
        requests.length = 0;
        await page.goto(ts.httpUrl + route);
        await heading(`Job ${id}`);
        await page.locator('main [role="alert"]').filter({ hasText: `job ${id} does not exist` }).waitFor();
        assert.equal(await page.locator('main [role="alert"]').count(), 1, route);
        assert.deepEqual(requests.filter((r) => r.startsWith('/api/') && r !== '/api/v1/whoami'), [`/api/v1/jobs/${encodeURIComponent(id)}?limit=1`], route);
      }
    } finally {
      page.off('request', record);
      expectRefusal = false;
    }
    // its own id reads it, its controls and its log panel included
    await page.goto(`${ts.httpUrl}/jobs/${jobId}`);
    await heading(/encfw@1\.0\.0/);
    await api.call('POST', `/api/v1/jobs/${jobId}/cancel`);
  });

  it("keeps a long unbreakable failure reason inside its table: the device page's View log stays clickable, no page is wider than the window", async () => {
    await addArtifact(ts, '1.0.0', randomBytes(256), 'hashfw');
    const secret = await registerDevice(ts, 'hash-1');
    const jobId = await deploy(ts, ['hash-1'], 'hashfw@1.0.0');
    // the agent's own words when a download's bytes are not the build's (src/agent/downloader.ts)
    const reason = `sha256 mismatch: expected ${'3f2a'.repeat(16)}, got ${'e3b0'.repeat(16)}`;
    const device = await TestClient.connect(ts.mqttUrl, 'hash-1', { username: 'hash-1', password: secret });
    try {
      assert.deepEqual(await device.subscribe('state/hash-1/job-log/+'), [1]);
      await device.publish('state/hash-1/update', { state: { reported: { software: { name: 'hashfw', version: '0.9.0', jobId, status: 'FAILURE', error: reason } } } });
      const answer = await device.request('state/hash-1/job-log', { jobId, lines: ['download verified: sha256 mismatch'] });
      assert.equal(answer.topic, 'state/hash-1/job-log/accepted', JSON.stringify(answer.body));
    } finally {
      await device.end();
    }
    const fitsTheWindow = () => page.evaluate(() => ({ page: document.documentElement.scrollWidth, window: window.innerWidth }));
    await page.goto(`${ts.httpUrl}/devices/hash-1`);
    await page.getByTestId('device-jobs').getByRole('cell', { name: reason }).waitFor();
    await page.getByTestId('device-events').getByText(reason).waitFor();
    const viewLog = page.getByRole('button', { name: `View the log of job ${jobId}`, exact: true });
    const box = (await viewLog.boundingBox())!;
    // the button itself at its centre, not the "Last events" column drawn over it
    assert.equal(await page.evaluate(({ x, y }) => document.elementFromPoint(x, y)?.getAttribute('aria-label'), { x: box.x + box.width / 2, y: box.y + box.height / 2 }), `View the log of job ${jobId}`);
    const inDevice = await fitsTheWindow();
    assert.ok(inDevice.page <= inDevice.window, `the device page is ${inDevice.page} px wide in a window of ${inDevice.window}`);
    await viewLog.click();
    await page.getByTestId('job-log').getByTestId('job-log-lines').filter({ hasText: 'download verified: sha256 mismatch' }).waitFor();
    await shot('09d-device-long-reason');
    // the overview's failures, and the job's failing devices
    for (const route of ['/', `/jobs/${jobId}`]) {
      await page.goto(ts.httpUrl + route);
      await page.getByRole('cell', { name: reason }).first().waitFor();
      const sized = await fitsTheWindow();
      assert.ok(sized.page <= sized.window, `${route} is ${sized.page} px wide in a window of ${sized.window}`);
    }
  });

  it("says that a client certificate expiry a device reports is not a valid date, rather than 'valid until Invalid Date' in green", async () => {
    await registerDevice(ts, 'odd-cert-1');
    const op = await TestClient.connect(ts.mqttUrl, 'ops-cert', { username: 'operator', password: ts.token });
    try {
      // seconds since the epoch, as agents send it: 4e15 is past the last date JavaScript has
      await op.publish('state/odd-cert-1/update', { state: { reported: { agent: { trust: 'root', keyId: '0123456789abcdef', certificateExpiresAt: 4e15 } } } });
    } finally {
      await op.end();
    }
    await page.goto(`${ts.httpUrl}/devices/odd-cert-1`);
    const facts = page.getByTestId('agent-facts');
    await facts.filter({ hasText: 'client certificate expiry reported as 4000000000000000: not a valid date' }).waitFor();
    assert.equal(await facts.locator('.note-good').count(), 0, 'not said in green');
    assert.equal(await facts.locator('.note-warn').count(), 1);
  });

  it('pages through the jobs, older and back newer, one page at a time', async () => {
    // at least 51 jobs, whichever tests ran before: three pages of 25, newest first (those it
    // adds are to a device of its own that never connects, each superseding the one before)
    let existing = 0;
    for (let after = '', more = true; more; ) {
      const p = await api.call<{ items: unknown[]; next?: string }>('GET', `/api/v1/jobs?limit=100${after ? `&after=${encodeURIComponent(after)}` : ''}`);
      existing += p.items.length;
      after = p.next ?? '';
      more = after !== '';
    }
    if (existing < 51) await registerDevice(ts, 'jobs-pages-1');
    for (let i = existing; i < 51; i++) {
      await new Promise((r) => setTimeout(r, 2)); // created in distinct milliseconds: the order of creation
      await api.call('POST', '/api/v1/jobs', { artifact: 'fw@2.0.0', targets: { devices: ['jobs-pages-1'] } });
    }
    const first = await api.call<{ items: { jobId: string }[]; next?: string }>('GET', '/api/v1/jobs?limit=25');
    const second = await api.call<{ items: { jobId: string }[]; next?: string }>('GET', `/api/v1/jobs?limit=25&after=${encodeURIComponent(first.next!)}`);
    assert.ok(second.next, 'a third page');
    const third = await api.call<{ items: { jobId: string }[] }>('GET', `/api/v1/jobs?limit=25&after=${encodeURIComponent(second.next!)}`);
    await nav('Jobs').click();
    await heading('Jobs');
    const pager = page.getByRole('navigation', { name: 'Pages of jobs' });
    const top = (p: { items: { jobId: string }[] }) => page.getByTestId('jobs-table').getByRole('link', { name: `job ${p.items[0]!.jobId}`, exact: true }).waitFor();
    await top(first);
    assert.equal(await pager.getByRole('button', { name: 'Newer jobs' }).isDisabled(), true);
    await pager.getByRole('button', { name: 'Older jobs' }).click();
    await top(second);
    await pager.getByRole('button', { name: 'Older jobs' }).click();
    await top(third);
    // one page newer: the second, not the newest
    await pager.getByRole('button', { name: 'Newer jobs' }).click();
    await top(second);
    assert.equal(await page.getByTestId('jobs-table').getByRole('link', { name: `job ${first.items[0]!.jobId}`, exact: true }).count(), 0);
    // the page is in the URL: back returns to the third, a reload keeps the second
    await page.goBack();
    await top(third);
    await page.goForward();
    await top(second);
    await page.reload();
    await top(second);
    await pager.getByRole('button', { name: 'Newer jobs' }).click();
    await top(first);
    assert.equal(await pager.getByRole('button', { name: 'Newer jobs' }).isDisabled(), true);
    // a bookmark of the third page with its cursor only (as URLs were before they kept the way
    // back): "Newer jobs" goes to the second page, not the newest, and the URL has the way back again
    await page.goto(`${ts.httpUrl}/jobs?after=${encodeURIComponent(second.next!)}`);
    await top(third);
    await pager.getByRole('button', { name: 'Newer jobs' }).click();
    await top(second);
    assert.equal(new URL(page.url()).searchParams.get('after'), first.next);
    await pager.getByRole('button', { name: 'Newer jobs' }).click();
    await top(first);
  });

  it('signs in with a read-only viewer token: every page shows, and nothing that would change something', async () => {
    // a device and a job of its own to look at
    await registerDevice(ts, 'view-1');
    await deploy(ts, ['view-1'], 'fw@2.0.0');
    // added on the Security page, shown once
    await nav('Security').click();
    await heading('Security');
    await page.getByLabel('Name of a new viewer token').fill('wall-screen');
    await page.getByRole('button', { name: 'Add viewer token' }).click();
    const viewer = await page.getByLabel(/Viewer token wall-screen \(shown once/).inputValue();
    assert.match(viewer, /^updr_view_/);
    await page.getByTestId('viewer-tokens').getByRole('cell', { name: 'wall-screen', exact: true }).waitFor();
    assert.match((await page.getByTestId('viewer-tokens').getByRole('row').filter({ hasText: 'wall-screen' }).innerText()).replace(/\s+/g, ' '), /wall-screen .* never/);
    const signIn = async (token: string) => {
      await page.getByRole('button', { name: 'Sign out' }).click();
      await page.getByLabel('Operator token').fill(token);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await nav('Overview').click();
      await heading('Fleet overview');
    };
    const none = async (locator: ReturnType<Page['getByRole']>, what: string) => assert.equal(await locator.count(), 0, what);
    await signIn(viewer);
    await page.getByRole('note').filter({ hasText: 'Read-only: viewer token wall-screen' }).waitFor();
    await page.getByRole('status', { name: 'Live updates: Live' }).waitFor();
    await nav('Jobs').click();
    await heading('Jobs');
    await page.getByRole('link', { name: /^job / }).first().waitFor();
    await none(page.getByRole('link', { name: 'New rollout' }), 'no new rollout');
    await page.getByRole('link', { name: /^job / }).first().click();
    await page.getByRole('heading', { level: 2 }).first().waitFor();
    await none(page.getByRole('group', { name: 'Job controls' }), 'no job controls');
    await nav('Artifacts').click();
    await heading('Artifacts');
    await page.getByTestId('artifacts-table').waitFor();
    await none(page.getByRole('button', { name: 'Upload' }), 'no upload');
    await none(page.getByRole('button', { name: /^Delete / }), 'no delete');
    // and no empty column where the operator's actions are (QA)
    await none(page.getByTestId('artifacts-table').getByRole('columnheader', { name: 'Actions' }), 'no actions column');
    await page.goto(`${ts.httpUrl}/devices/view-1`);
    await heading(/Device view-1/);
    await page.getByRole('heading', { name: 'Job history' }).waitFor();
    await none(page.getByRole('button', { name: 'Revoke device' }), 'no revoke');
    // the page shows no form: it reads nothing, and no live stream (the header said "Live" of nothing)
    const asked: string[] = [];
    const onRequest = (r: { url(): string }) => asked.push(new URL(r.url()).pathname);
    page.on('request', onRequest);
    await page.goto(`${ts.httpUrl}/jobs/new`);
    await page.getByRole('note').filter({ hasText: 'rollouts are started with the operator token' }).waitFor();
    await nav('Security').click();
    await heading('Security');
    await page.getByTestId('url-keys').waitFor();
    page.off('request', onRequest);
    assert.ok(asked.some((p) => p.startsWith('/api/v1/')), `the Security page read the API: ${asked.join(' ')}`);
    assert.deepEqual(asked.filter((p) => p === '/api/v1/artifacts' || p === '/api/v1/events'), [], 'New rollout read nothing for a viewer');
    await none(page.getByRole('button', { name: 'Rotate URL key' }), 'no key rotation');
    await shot('12-viewer');
    // and back to the operator, with every control
    await signIn(ts.token);
    await none(page.getByRole('note').filter({ hasText: 'Read-only' }), 'no read-only note');
    await nav('Jobs').click();
    await page.getByRole('link', { name: 'New rollout' }).waitFor();
    // removed on the Security page: refused from then on
    await nav('Security').click();
    await page.getByRole('button', { name: 'Remove viewer token wall-screen' }).click();
    await page.getByRole('button', { name: 'Yes, remove wall-screen' }).click();
    // the row goes once the server removed it (the button alone goes as soon as the confirmation shows)
    await page.getByTestId('viewer-tokens').getByRole('row').filter({ hasText: 'wall-screen' }).waitFor({ state: 'detached' });
    assert.equal((await fetch(`${ts.httpUrl}/api/v1/devices`, { headers: { authorization: `Bearer ${viewer}` } })).status, 401);

    // a tab whose token is removed while it shows a page that only listens to the live stream
    // is signed out (its stream ends, and the reconnect gets 401), not left stale for ever
    const api = new ApiClient({ server: ts.httpUrl, token: ts.token });
    const kiosk = (await api.call<{ token: string }>('POST', '/api/v1/viewer-tokens', { name: 'kiosk' })).token;
    await signIn(kiosk);
    await nav('Jobs').click();
    await page.getByRole('status', { name: 'Live updates: Live' }).waitFor();
    expectRefusal = true; // the stream's 401 (the browser logs it)
    await api.call('DELETE', '/api/v1/viewer-tokens/kiosk');
    await page.getByLabel('Operator token').waitFor({ timeout: 30_000 });
    // the sign-in page says why a token is refused: wrong, or a named token past its expiry
    const brief = (await api.call<{ token: string }>('POST', '/api/v1/viewer-tokens', { name: 'brief', expiresInSeconds: 1 })).token;
    await page.getByLabel('Operator token').fill('not-a-token');
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').filter({ hasText: /^The server refused that token: the operator token is wrong\. It takes the operator token/ }).waitFor();
    await eventually(async () => ((await fetch(`${ts.httpUrl}/api/v1/whoami`, { headers: { authorization: `Bearer ${brief}` } })).status === 401 ? true : undefined), 30_000, 'brief expired');
    await page.getByLabel('Operator token').fill(brief);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').filter({ hasText: /^The server refused that token: the viewer token "brief" expired at \S+; ask an operator for a new one\./ }).waitFor();
    expectRefusal = false;
    await page.getByLabel('Operator token').fill(ts.token);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await nav('Security').click();

    // a named operator token, added on the same page: signed in with it, every control is there
    await page.getByLabel('Name of a new operator token').fill('alice');
    await page.getByRole('button', { name: 'Add operator token' }).click();
    const alice = await page.getByLabel(/Operator token alice \(shown once/).inputValue();
    assert.match(alice, /^updr_oper_/);
    await page.getByTestId('operator-tokens').getByRole('cell', { name: 'alice', exact: true }).waitFor();
    await signIn(alice);
    await none(page.getByRole('note').filter({ hasText: 'Read-only' }), 'alice is no viewer');
    await nav('Jobs').click();
    await page.getByRole('link', { name: 'New rollout' }).waitFor();
    await signIn(ts.token);
    await nav('Security').click();
    // her token's row says when she last used it
    const aliceRow = page.getByTestId('operator-tokens').getByRole('row').filter({ hasText: 'alice' });
    await aliceRow.waitFor();
    const lastUsed = (await aliceRow.getByRole('cell').nth(2).textContent()) ?? '';
    assert.ok(lastUsed !== '' && lastUsed !== 'never', `a last use is shown, got "${lastUsed}"`);
    await page.getByRole('button', { name: 'Remove operator token alice' }).click();
    await page.getByRole('button', { name: 'Yes, remove alice' }).click();
    await aliceRow.waitFor({ state: 'detached' });
    assert.equal((await fetch(`${ts.httpUrl}/api/v1/devices`, { headers: { authorization: `Bearer ${alice}` } })).status, 401);
  });

  it('shows the keys, rotates the URL key and replaces the operator token from the Security page; the tab goes on with the new token', async () => {
    await nav('Security').click();
    await heading('Security');
    await page.getByTestId('certificate').filter({ hasText: /^none: devices are provisioned with this key itself/ }).waitFor();
    const urlKeys = page.getByTestId('url-keys').locator('tbody tr');
    assert.equal(await urlKeys.count(), 1);
    await page.getByRole('button', { name: 'Rotate URL key' }).click();
    await page.getByRole('button', { name: 'Yes, rotate' }).click();
    await urlKeys.nth(1).waitFor();
    assert.match((await urlKeys.nth(0).textContent()) ?? '', /active$/);
    assert.equal(await page.getByTestId('url-rotation-warning').count(), 0, 'the embedded store is no shared one: nothing to copy');

    await page.getByRole('button', { name: 'Replace the operator token' }).click();
    await page.getByRole('button', { name: 'Yes, replace it' }).click();
    const fresh = await page.getByLabel(/New operator token/).inputValue();
    assert.ok(fresh.length >= 32 && fresh !== ts.token, 'a new token is shown');
    await shot('11-security');
    const status = (token: string) => fetch(`${ts.httpUrl}/api/v1/keys`, { headers: { authorization: `Bearer ${token}` } }).then((r) => r.status);
    assert.equal(await status(ts.token), 401, 'the old token is refused');
    assert.equal(await status(fresh), 200);
    // the tests that run after this one, in whatever order, sign in and call the server with it
    ts.token = fresh;
    api = new ApiClient({ server: ts.httpUrl, token: fresh });
    // the offline root, then replaced in band: the page names the rotation
    const [r1, r2] = [generateKeyPairSync('ed25519'), generateKeyPairSync('ed25519')];
    const signingPub = parsePublicKey(ts.server.security.signingKey.publicKeyPem);
    const inADay = Math.floor(Date.now() / 1000) + 86_400;
    const install = (body: unknown) => fetch(`${ts.httpUrl}/api/v1/keys/signing/certificate`, { method: 'PUT', headers: { authorization: `Bearer ${fresh}`, 'content-type': 'application/json' }, body: JSON.stringify(body) }).then((r) => r.status);
    assert.equal(await install({ certificate: certifySigningKey(r1.privateKey, signingPub, 1, inADay), rootPublicKey: r1.publicKey.export({ type: 'spki', format: 'pem' }).toString() }), 200);
    assert.equal(await install({ certificate: certifySigningKey(r2.privateKey, signingPub, 2, inADay), rootRotations: [rotateRoot(r1.privateKey, r2.privateKey)] }), 200);
    await nav('Overview').click();
    await nav('Security').click();
    await page.getByTestId('certificate').filter({ hasText: `serial 2 from root ${keyIdOf(r2.publicKey)}` }).waitFor();
    await page.getByTestId('root-rotations').filter({ hasText: `${keyIdOf(r1.publicKey)} → ${keyIdOf(r2.publicKey)}: every command carries them` }).waitFor();
    // still signed in, and live again (the server closed the stream the old token opened)
    await nav('Overview').click();
    await heading('Fleet overview');
    await page.getByRole('status', { name: 'Live updates: Live' }).waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.getItem('updraft.operatorToken')), fresh);
  });

  it('does not offer a named operator the shared token: its replacement shows it, and it is the MQTT password named tokens do not have', async () => {
    const shared = (await page.evaluate(() => sessionStorage.getItem('updraft.operatorToken')))!;
    const bob = (await new ApiClient({ server: ts.httpUrl, token: shared }).call<{ token: string }>('POST', '/api/v1/operator-tokens', { name: 'bob' })).token;
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByLabel('Operator token').fill(bob);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await nav('Security').click();
    await heading('Security');
    await page.getByTestId('named-no-rotation').filter({ hasText: 'This tab is signed in with operator token bob.' }).waitFor();
    assert.equal(await page.getByRole('button', { name: 'Replace the operator token' }).count(), 0);
    const asked = await fetch(`${ts.httpUrl}/api/v1/operator-token/rotate`, { method: 'POST', headers: { authorization: `Bearer ${bob}` } });
    assert.equal(asked.status, 403, 'nor does the server');
    assert.equal((await fetch(`${ts.httpUrl}/api/v1/keys`, { headers: { authorization: `Bearer ${shared}` } })).status, 200, 'the shared token stays');
    // what he does on the page is recorded as his: a viewer token added from the page says who added it
    await page.getByLabel('Name of a new viewer token').fill('after-rotation');
    await page.getByRole('button', { name: 'Add viewer token' }).click();
    await page.getByTestId('viewer-tokens').getByRole('row').filter({ hasText: 'after-rotation' }).filter({ hasText: 'by bob' }).waitFor();
  });
});
