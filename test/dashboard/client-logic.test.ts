/**
 * The dashboard's pure client logic, run in Node: reading the event stream's format, the way back to newer jobs of a jobs page bookmarked without it,
 * and the rollout form's request and the mapping of the server's validation messages onto fields.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DEVICE_SEARCH_EVENTS, touchesSearch } from '../../dashboard/src/device-search-live.ts';
import { issuerQuery as dashboardIssuerQuery } from '../../dashboard/src/ca-devices.ts';
import { certificateExpiry, clientCertificateExpiry, dateTime, deviceHref, jobHref, percent, storageHeldNotice, succeededNote, tlsExpiry } from '../../dashboard/src/format.ts';
import { issuerQuery } from '../../src/protocol/certificate-issuer.ts';
import { findNewerPage, isNewer, MAX_PAGES_WALKED, pageUrl, TRAIL_KEPT } from '../../dashboard/src/job-pages.ts';
import { progressOf } from '../../dashboard/src/job-progress.ts';
import { emptyForm, errorSummary, fieldErrors, fieldOf, toRequest } from '../../dashboard/src/job-request.ts';
import { parseSse } from '../../dashboard/src/sse.ts';
import { UpdraftError } from '../../src/errors.ts';
import { parseJobRequest } from '../../src/jobs/job-spec.ts';

describe('dashboard client logic', () => {
  it("reads the signing key certificate's expiry: fine, in its last 30 days, expired", () => {
    const now = Date.UTC(2026, 11, 3);
    const at = (days: number) => (now + days * 86_400_000) / 1000;
    assert.equal(certificateExpiry(at(200), now).tone, 'good');
    assert.match(certificateExpiry(at(200), now).text, /in 200 days$/);
    assert.equal(certificateExpiry(at(30), now).tone, 'good');
    const soon = certificateExpiry(at(29.5), now);
    assert.equal(soon.tone, 'warn');
    assert.match(soon.text, /in 29 days: certify the key again and install the certificate$/);
    assert.match(certificateExpiry(at(1.2), now).text, /in 1 day:/);
    const gone = certificateExpiry(at(-1), now);
    assert.equal(gone.tone, 'bad');
    assert.match(gone.text, /^expired .*: devices that trust the root refuse every update until a new certificate is installed$/);
    assert.equal(certificateExpiry(at(0), now).tone, 'bad');
  });

  it('reads the devices search again for the live events that change what it shows, not for every event of the fleet', () => {
    const shown = new Set(['dev-1', 'dev-2']);
    const ev = (type: string, deviceId: string) => ({ type, data: type === 'execution.changed' ? { jobId: 'j1', deviceId, status: 'IN_PROGRESS', previousStatus: 'QUEUED' } : { deviceId, online: true } });
    const none = { state: '', version: '' };
    // a device shown: its connection, its update status, desired and running versions
    // executions are polled, not streamed: a rollout's thousands a second cost the server a copy per open tab
    assert.equal(DEVICE_SEARCH_EVENTS, 'device.presence,device.credentials');
    for (const type of ['device.presence', 'execution.changed', 'device.credentials']) assert.equal(touchesSearch(ev(type, 'dev-1'), none, shown), true, type);
    // a device not shown, on a page whose filters do not select by what changed: not read again
    assert.equal(touchesSearch(ev('execution.changed', 'dev-9'), none, shown), false);
    assert.equal(touchesSearch(ev('device.presence', 'dev-9'), { state: '', version: '2.0.0' }, shown), false);
    // ...unless they do: the device may come into the page
    assert.equal(touchesSearch(ev('execution.changed', 'dev-9'), { state: '', version: '2.0.0' }, shown), true);
    assert.equal(touchesSearch(ev('execution.changed', 'dev-9'), { state: 'updating', version: '' }, shown), true);
    assert.equal(touchesSearch(ev('device.presence', 'dev-9'), { state: 'online', version: '' }, shown), true);
    // registered, revoked or deleted: may be one to show (an empty page too)
    assert.equal(touchesSearch(ev('device.credentials', 'dev-9'), none, new Set()), true);
    assert.equal(touchesSearch({ type: 'job.changed', data: { jobId: 'j1' } }, none, shown), false);
  });

  it("gives a job's progress as job watch and percentDone do: finished out of all but the canceled and removed, named as left out", () => {
    const none = { QUEUED: 0, IN_PROGRESS: 0, SUCCEEDED: 0, FAILED: 0, TIMED_OUT: 0, REJECTED: 0, CANCELED: 0, REMOVED: 0 };
    // QA: 13 of 195 updated, the rest canceled: 100% as the CLI says, out of the 13 counted (not "100% of 195")
    assert.deepEqual(progressOf({ ...none, SUCCEEDED: 12, FAILED: 1, CANCELED: 182 }), { value: 13, max: 13, detail: '13 of 13 finished (100%) · 182 canceled, left out' });
    assert.deepEqual(progressOf({ ...none, SUCCEEDED: 1500, REJECTED: 3, IN_PROGRESS: 497, REMOVED: 2, CANCELED: 1 }), { value: 1503, max: 2000, detail: '1,503 of 2,000 finished (75.2%) · 1 canceled, 2 removed, left out' });
    assert.deepEqual(progressOf({ ...none, SUCCEEDED: 24 }), { value: 24, max: 24, detail: '24 of 24 finished (100%)' });
    // none to count: 0% until the job completed, then 100% (percentDone's rule)
    assert.deepEqual(progressOf(none), { value: 0, max: 1, detail: '0 of 0 finished (0%)' });
    assert.deepEqual(progressOf({ ...none, CANCELED: 2 }, true), { value: 1, max: 1, detail: '0 of 0 finished (100%) · 2 canceled, left out' });
  });

  it('says a running job is held while the artifact storage does not answer, with since when; nothing otherwise', () => {
    const since = Date.UTC(2026, 11, 5, 8, 0, 0);
    assert.equal(storageHeldNotice('IN_PROGRESS', since), `Held: the artifact storage has not answered since ${dateTime(since)}; nothing new is sent until it does (devices already updating go on).`);
    assert.equal(storageHeldNotice('IN_PROGRESS', since, 'mqtt'), `Held: the MQTT broker has not been reachable since ${dateTime(since)}; nothing new is sent until it is (devices already updating go on).`);
    assert.equal(storageHeldNotice('IN_PROGRESS', undefined), undefined);
    assert.equal(storageHeldNotice('PAUSED', since), undefined, 'a paused job says why it is paused');
  });

  it('says of a SUCCEEDED execution that its attempt had timed out, or that its retry was not sent; nothing of a plain success', () => {
    const at = Date.UTC(2026, 11, 5, 8, 0, 0);
    const error = 'in-progress timeout: not finished within 60 s of the command';
    assert.equal(succeededNote({ status: 'SUCCEEDED', details: { agentStatus: 'SUCCESS', timedOut: { at, error } } }), `Timed out at ${dateTime(at)} (${error}), then its success came in: no retry`);
    assert.equal(succeededNote({ status: 'SUCCEEDED', details: { retryNotSent: { attempt: 1, at } } }), `Retry not sent (${dateTime(at)}): the device had reported attempt 1's success`);
    assert.equal(succeededNote({ status: 'SUCCEEDED', details: { agentStatus: 'SUCCESS' } }), undefined);
  });

  it('links to a job or a device with its id encoded, and rounds a percentage to one decimal', () => {
    assert.equal(deviceHref('gw.1:a/b?c#d'), '/devices/gw.1%3Aa%2Fb%3Fc%23d');
    assert.equal(jobHref('a/b?c'), '/jobs/a%2Fb%3Fc');
    assert.equal(jobHref('0b7c2f7e-1c7e-4e4b-9a51-3f0d1c2b9e10'), '/jobs/0b7c2f7e-1c7e-4e4b-9a51-3f0d1c2b9e10');
    assert.equal(percent(13, 195), 6.7);
    assert.equal(percent(2, 3), 66.7);
    assert.equal(percent(0, 0), 0);
  });

  it("writes the previous CA's fleet query as doctor and ca drop-previous do, and reads a CA's expiry with its days left", () => {
    for (const subject of ['CN=Updraft device CA 2026-12-06 12:45:03Z, O=Updraft', 'CN=a "quoted" \\ CA, O=x']) {
      assert.equal(dashboardIssuerQuery(subject), issuerQuery(subject), `the same query for ${subject}`);
    }
    const now = Date.UTC(2026, 11, 3);
    const at = (days: number) => (now + days * 86_400_000) / 1000;
    assert.deepEqual({ tone: tlsExpiry(at(400), now).tone, days: /, in 400 days$/.test(tlsExpiry(at(400), now).text) }, { tone: 'good', days: true }, 'a year off: fine');
    assert.equal(tlsExpiry(at(29.5), now).tone, 'warn', 'its last 30 days');
    assert.match(tlsExpiry(at(1.5), now).text, /, in 1 day$/);
    assert.deepEqual(tlsExpiry(at(-1), now).tone, 'bad', 'expired');
    assert.match(tlsExpiry(at(-1), now).text, /^expired /);
  });

  it("reads a device's client certificate expiry: fine, in its last 14 days, expired, and a number that is no date", () => {
    const now = Date.UTC(2026, 11, 3);
    const at = (days: number) => (now + days * 86_400_000) / 1000;
    assert.equal(clientCertificateExpiry(at(200), now).tone, 'good');
    assert.match(clientCertificateExpiry(at(200), now).text, /^client certificate valid until .+, 200 days left$/, 'the days left said');
    assert.equal(clientCertificateExpiry(at(13.5), now).tone, 'warn');
    assert.match(clientCertificateExpiry(at(13.5), now).text, /, 13 days left$/, 'whole days, rounded down');
    assert.match(clientCertificateExpiry(at(1.2), now).text, /, 1 day left$/, 'one day');
    assert.match(clientCertificateExpiry(at(0.5), now).text, /, 0 days left$/, 'its last day');
    assert.equal(clientCertificateExpiry(at(-1), now).tone, 'bad');
    assert.match(clientCertificateExpiry(at(-1), now).text, /^client certificate expired .*: the broker refuses it$/);
    // past what a Date holds (QA: 4e15 read "valid until Invalid Date", in green)
    for (const odd of [4e15, -4e15, 8.64e12 + 1]) {
      assert.deepEqual(clientCertificateExpiry(odd, now), { text: `client certificate expiry reported as ${odd}: not a valid date`, tone: 'warn' }, String(odd));
    }
    assert.equal(clientCertificateExpiry(8.64e12, now).tone, 'good', 'the last date a Date holds');
  });

  it("finds the way back to newer jobs from a jobs page whose URL has only its cursor (an old bookmark)", async () => {
    // 100 jobs newest first, as the server orders them: created at descending, then job id descending
    const jobs = Array.from({ length: 100 }, (_, i) => `${1_000_000 - Math.floor(i / 2)}:${i % 2 === 0 ? 'b' : 'a'}-${String(i).padStart(3, '0')}`);
    for (let i = 1; i < jobs.length; i++) assert.ok(isNewer(jobs[i - 1]!, jobs[i]!), `${jobs[i - 1]} before ${jobs[i]}`);
    const reads: (string | undefined)[] = [];
    /** The server's `next` of the page of 25 that starts after `cursor`. */
    const next = async (cursor: string | undefined) => {
      reads.push(cursor);
      const start = cursor === undefined ? 0 : jobs.findIndex((c) => !isNewer(c, cursor) && c !== cursor);
      return start + 25 < jobs.length ? jobs[start + 24] : undefined;
    };
    // pages start after jobs[24], jobs[49], jobs[74]
    const [c1, c2, c3] = [jobs[24]!, jobs[49]!, jobs[74]!];
    // the second page: the way back is the first page
    assert.deepEqual(await findNewerPage(c1, next), { after: undefined, trail: [] });
    assert.deepEqual(reads, [undefined], 'one page read');
    // the fourth page (a bookmark without its trail): the third, with the pages before it
    assert.deepEqual(await findNewerPage(c3, next), { after: c2, trail: [c1] });
    // jobs created since the bookmark moved the pages: the page that holds the cursor's job
    const shifted = jobs[60]!;
    assert.deepEqual(await findNewerPage(shifted, next), { after: c2, trail: [c1] });
    assert.deepEqual(await findNewerPage(jobs[10]!, next), { after: undefined, trail: [] });
    // deeper than it reads: the newest page
    reads.length = 0;
    assert.deepEqual(await findNewerPage(c3, next, 2), { after: undefined, trail: [] });
    assert.equal(reads.length, 2);
  });

  it("keeps a page's URL bounded however deep one pages: the last cursors of its trail, no more than the way back walks", () => {
    assert.equal(pageUrl('/jobs', undefined, ['x']), '/jobs', 'the first page has no cursor');
    assert.equal(pageUrl('/jobs', '5:b', ['9:a', '7:c']), '/jobs?newer=9%3Aa&newer=7%3Ac&after=5%3Ab', 'a short trail is kept whole, in order');
    // 400 pages deep, with job ids as long as the server's (a UUID after the time)
    const cursors = Array.from({ length: 400 }, (_, i) => `${1_800_000_000_000 - i}:${'0'.repeat(8)}-${String(i).padStart(4, '0')}-4000-8000-${'0'.repeat(12)}`);
    const url = pageUrl('/jobs', cursors[399], cursors.slice(0, 399));
    const q = new URL(url, 'http://x').searchParams;
    assert.equal(q.get('after'), cursors[399], 'the page itself');
    assert.deepEqual(q.getAll('newer'), cursors.slice(399 - TRAIL_KEPT, 399), 'the last TRAIL_KEPT cursors before it, oldest dropped');
    assert.ok(url.length < 4096, `the URL stays short (${url.length} characters; the whole trail made it ${cursors.join('').length * 1.1 | 0}+)`);
    assert.ok(TRAIL_KEPT <= MAX_PAGES_WALKED, 'a trail cut short on a page among the first MAX_PAGES_WALKED is found again by the way back from the newest (deeper, "Newer" past the kept cursors goes to the newest page)');
  });

  it('parses server-sent events split anywhere, skipping keep-alive comments', () => {
    const text = ': updraft events\n\nid: 1\nevent: job.changed\ndata: {"jobId":"j1"}\n\n: keep-alive\n\nid: 2\nevent: device.presence\ndata: {"deviceId":"d","online":true}\n\n';
    for (let cut = 0; cut <= text.length; cut++) {
      const a = parseSse(text.slice(0, cut));
      const b = parseSse(a.rest + text.slice(cut));
      assert.deepEqual([...a.events, ...b.events], [
        { type: 'job.changed', data: { jobId: 'j1' } },
        { type: 'device.presence', data: { deviceId: 'd', online: true } },
      ], `cut at ${cut}`);
      assert.equal(b.rest, '');
    }
  });

  it('builds a request the server accepts from a filled form', () => {
    const f = { ...emptyForm(), artifact: 'fw@2.0.0', devices: 'a, b\nc', query: 'tags = eu', maxPerMinute: '60', inProgressSeconds: '600', retries: '2', abortPercent: '20', abortMin: '5', rollback: true };
    f.waves = [
      { size: '10', unit: 'count', threshold: '90', approval: true },
      { size: '', unit: 'percent', threshold: '', approval: false },
    ];
    const body = toRequest(f);
    assert.deepEqual(body.targets, { devices: ['a', 'b', 'c'], query: 'tags = eu' });
    assert.deepEqual((body.plan as { waves: unknown }).waves, [{ count: 10, successThreshold: 90, requireApproval: true }, {}]);
    const parsed = parseJobRequest(body, Date.now());
    assert.equal(parsed.spec.plan.maxPerMinute, 60);
    assert.deepEqual(parsed.spec.abort, { rules: [{ type: 'ANY', thresholdPercent: 20, minFinished: 5 }], rollback: true });
    assert.equal(parsed.spec.retries.limit, 2);
    // a maintenance window in a time zone
    const windowed = parseJobRequest(toRequest({ ...f, windowStart: '02:00', windowMinutes: '120', windowDays: 'Sat, sun', timeZone: 'Europe/Madrid' }), Date.now());
    assert.deepEqual(windowed.spec.plan.windows, [{ start: '02:00', minutes: 120, days: ['sat', 'sun'] }]);
    assert.equal(windowed.spec.plan.timeZone, 'Europe/Madrid');
    assert.equal(parsed.spec.plan.windows, undefined, 'no window: any time');
  });

  it('puts each of the server\'s validation messages on its field', () => {
    const f = { ...emptyForm(), artifact: 'fw@2.0.0', maxPerMinute: 'lots', stepSeconds: '-1', retries: '99' };
    f.waves = [{ size: '150', unit: 'percent', threshold: '', approval: false }, { size: '', unit: 'percent', threshold: '101', approval: false }];
    let message = '';
    try {
      parseJobRequest(toRequest(f), Date.now());
    } catch (err) {
      assert.ok(err instanceof UpdraftError);
      message = err.message;
    }
    const errors = fieldErrors(message);
    assert.deepEqual(Object.keys(errors).sort(), ['maxPerMinute', 'retries', 'stepSeconds', 'targets', 'wave-0', 'wave-1-threshold'].sort(), message);
    assert.match(errors['wave-0']!, /plan\.waves\[0\]\.percent/);
    assert.match(errors['wave-1-threshold']!, /successThreshold/);
    assert.equal(fieldOf('artifact fw@9.9.9 does not exist; add it with: updraft artifact add'), 'artifact');
    assert.equal(fieldOf('device dev-9 is not registered; register it with: updraft device register dev-9'), 'devices');
    assert.equal(fieldOf('group g does not exist; list groups with: updraft group list'), 'groups');
    assert.equal(fieldOf('targets.query: invalid query at position 3: expected a value'), 'query');
    assert.equal(fieldOf('something else entirely'), 'form');
    let windowMessage = '';
    try {
      parseJobRequest(toRequest({ ...f, waves: [{ size: '100', unit: 'percent', threshold: '', approval: false }], maxPerMinute: '', stepSeconds: '', retries: '', devices: 'd1', windowStart: '2am', windowMinutes: '60', timeZone: 'Nowhere/Land' }), Date.now());
    } catch (err) {
      windowMessage = (err as Error).message;
    }
    assert.deepEqual(Object.keys(fieldErrors(windowMessage)).sort(), ['timeZone', 'windowStart'], windowMessage);
    assert.deepEqual(fieldErrors('device dev-9 is not registered; register it with: updraft device register dev-9', 'NOT_FOUND'), { devices: 'device dev-9 is not registered; register it with: updraft device register dev-9' });
  });
  it('puts the messages of a wave\'s threshold and approval, the window, the ramp-up and the abort rule under their own controls', () => {
    const refused = (f: ReturnType<typeof emptyForm>) => {
      const body = toRequest(f);
      try {
        parseJobRequest(body, Date.now());
      } catch (err) {
        return fieldErrors((err as Error).message, 'BAD_REQUEST');
      }
      assert.fail('the server would accept it');
    };
    const base = { ...emptyForm(), artifact: 'fw@2.0.0', devices: 'd1' };
    // a threshold out of range, and the last wave's threshold and approval that gate nothing
    const waves = refused({ ...base, waves: [{ size: '10', unit: 'percent', threshold: '101', approval: false }, { size: '', unit: 'percent', threshold: '90', approval: true }] });
    assert.deepEqual(Object.keys(waves).sort(), ['wave-0-threshold', 'wave-1-approval', 'wave-1-threshold'], JSON.stringify(waves));
    assert.match(waves['wave-0-threshold']!, /^plan\.waves\[0\]\.successThreshold must be/);
    assert.match(waves['wave-1-threshold']!, /is the last wave: a successThreshold gates the next wave and none follows; to stop a failing last wave, use abort rules/);
    assert.match(waves['wave-1-approval']!, /is the last wave: requireApproval holds the next wave/);
    // the window's minutes and days, each under its own control, not under its start
    const window = refused({ ...base, windowStart: '02:00', windowMinutes: '5000', windowDays: 'someday' });
    assert.deepEqual(Object.keys(window).sort(), ['windowDays', 'windowMinutes'], JSON.stringify(window));
    assert.deepEqual(Object.keys(refused({ ...base, windowStart: '2am', windowMinutes: '60' })), ['windowStart']);
    // the ramp-up: the server names each value that breaks its rule, and each goes under its control
    assert.deepEqual(Object.keys(refused({ ...base, rampInitial: '10', rampFactor: '0.5' })), ['rampFactor']);
    assert.deepEqual(Object.keys(refused({ ...base, rampInitial: '-3', rampFactor: '2' })), ['rampInitial']);
    assert.deepEqual(Object.keys(refused({ ...base, rampInitial: '-3', rampFactor: '0.5' })).sort(), ['rampFactor', 'rampInitial']);
    // a field the form never sends is no control's: not under Artifact, whose name its list holds
    assert.equal(fieldOf('unknown field "colour" (fields: artifact, targets, plan, abort, timeouts, retries, description, type)'), 'form');
    assert.equal(fieldOf('unknown field "plan.speed" (waves, maxPerMinute)'), 'form');
    assert.deepEqual(Object.keys(refused({ ...base, maxPerMinute: '5', rampInitial: '10', rampFactor: '2' })), ['rampInitial']);
    assert.equal(fieldOf('plan.rampUp.factor must be a number from 1 to 100'), 'rampFactor');
    // the abort rule's minimum, and its percentage
    assert.deepEqual(Object.keys(refused({ ...base, abortPercent: '20', abortMin: '0' })), ['abortMin']);
    assert.deepEqual(Object.keys(refused({ ...base, abortPercent: '200' })), ['abortPercent']);
    assert.equal(fieldOf('abort.rules[0].type must be FAILED, TIMED_OUT, REJECTED or ANY'), 'abortType');
  });

  it('says what went wrong when it is no field\'s, rather than counting it as a field', () => {
    // the server cannot be reached: whatever its words, the message is the form's
    const network = fieldErrors('the server cannot be reached; check that it runs', 'NETWORK');
    assert.deepEqual(network, { form: 'the server cannot be reached; check that it runs' });
    assert.equal(errorSummary(network, 'create'), 'The job was not created: the server cannot be reached; check that it runs.');
    assert.deepEqual(fieldErrors('the artifact store failed', 'INTERNAL'), { form: 'the artifact store failed' });
    assert.equal(errorSummary({ 'wave-0': 'x', targets: 'y' }, 'preview'), 'Nothing to preview: 2 fields need attention.');
    assert.equal(errorSummary({ artifact: 'x', form: 'unknown field "colour".' }, 'create'), 'The job was not created: one field needs attention. unknown field "colour".');
    assert.equal(errorSummary({}, 'create'), '');
  });
});

