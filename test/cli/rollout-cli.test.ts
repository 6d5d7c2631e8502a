/** The rollout commands of the real `updraft` binary against a real server. */
import assert from 'node:assert/strict';
import { rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { TestClient, connectDevice } from '../helpers/mqtt-client.ts';
import { eventually, runCli } from '../helpers/cli.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';

describe('updraft group / job / status', () => {
  let ts: TestServer;
  let dev: TestClient;
  const cli = (...args: string[]) => runCli([...args, '--server', ts.httpUrl, '--token', ts.token]);

  before(async () => {
    ts = await startTestServer();
    await fetch(`${ts.httpUrl}/api/v1/artifacts?name=fw&version=2.0.0`, { method: 'POST', headers: { authorization: `Bearer ${ts.token}` }, body: new Uint8Array(Buffer.from('fw2')) });
    dev = await connectDevice(ts, 'new-1');
    await dev.subscribe('state/new-1/#');
    await dev.request('state/new-1/update', { state: { reported: { software: { name: 'fw', version: '3.0.0', status: 'IDLE' } } } });
    for (const id of ['a-1', 'a-2', 'a-3']) await registerDevice(ts, id, { tags: ['lab'] });
  });
  after(async () => {
    await dev.end();
    await ts.close();
  });

  it('creates and shows groups', async () => {
    const created = await cli('group', 'create', 'lab', '--query', 'tags = lab');
    assert.equal(created.code, 0, created.stderr);
    assert.match(created.stdout, /created dynamic group lab: tags = lab/);
    const shown = await cli('group', 'show', 'lab', '--json');
    assert.deepEqual(JSON.parse(shown.stdout).members, ['a-1', 'a-2', 'a-3']);
    const bad = await cli('group', 'create', 'x', '--query', 'tags = lab and');
    assert.equal(bad.code, 2);
    assert.equal(bad.stderr, 'updraft: error: invalid query at position 15: expected a field such as reported.software.version, found the end of the query\n');
  });

  it('creates, lists, pauses, resumes, cancels and watches jobs', async () => {
    const created = await cli('job', 'create', '--artifact', 'fw@2.0.0', '--group', 'lab', '--wave', '1@100', '--wave', '100%', '--max-per-minute', '60', '--timeout', '3600', '--retries', '1', '--json');
    assert.equal(created.code, 0, created.stderr);
    const view = JSON.parse(created.stdout);
    assert.equal(view.total, 3);
    assert.deepEqual(view.job.spec.plan.waves, [{ count: 1, successThreshold: 100, requireApproval: false }, { percent: 100, successThreshold: 0, requireApproval: false }]);
    const jobId: string = view.job.jobId;
    const listed = await cli('job', 'list', '--status', 'IN_PROGRESS');
    assert.match(listed.stdout, new RegExp(`${jobId}  IN_PROGRESS`));
    const paused = await cli('job', 'pause', jobId);
    assert.match(paused.stdout, /PAUSED .*QUEUED 3/);
    assert.equal((await cli('job', 'pause', jobId)).code, 2, 'pausing a paused job is a conflict');
    assert.equal((await cli('job', 'resume', jobId)).code, 0);
    assert.equal((await cli('job', 'cancel', jobId)).code, 0);
    const watched = await cli('job', 'watch', jobId, '--interval', '100');
    assert.equal(watched.code, 1, 'a canceled job is not a success');
    assert.match(watched.stderr, /\[\.{30}\]   0\.0%  CANCELED  wave 1\/2  CANCELED 3\n/, 'canceled before any device finished: nothing was done');
    assert.match(watched.stderr, new RegExp(`updraft: error: job ${jobId} ended CANCELED\\n$`));
    // a device's history a page at a time, newest first
    await new Promise((r) => setTimeout(r, 2)); // not queued in the same millisecond as the first
    const second = JSON.parse((await cli('job', 'create', '--artifact', 'fw@2.0.0', '--device', 'a-1', '--json')).stdout).job.jobId as string;
    assert.equal((await cli('job', 'cancel', second)).code, 0);
    const newest = await cli('device', 'history', 'a-1', '--limit', '1');
    assert.equal(newest.code, 0, newest.stderr);
    const more = /\n\(more: --after (\S+)\)\n$/.exec(newest.stdout);
    assert.ok(more, newest.stdout);
    assert.match(newest.stdout, new RegExp(`^\\S+  ${second}  fw@2\\.0\\.0  CANCELED`));
    const older = await cli('device', 'history', 'a-1', '--limit', '1', '--after', more[1]!);
    assert.match(older.stdout, new RegExp(`^\\S+  ${jobId}  fw@2\\.0\\.0  CANCELED  job canceled by an operator\\n$`), 'the older job, and no more');
    const bad = await cli('device', 'history', 'a-1', '--after', 'garbage');
    assert.equal(bad.code, 2);
    assert.equal(bad.stderr, 'updraft: error: after must be a cursor returned as next, got garbage\n');
  });

  it('watches a job to completion; downgrade protection rejects the device', async () => {
    const created = await cli('job', 'create', '--artifact', 'fw@2.0.0', '--device', 'new-1', '--json');
    const jobId = JSON.parse(created.stdout).job.jobId;
    const watched = await cli('job', 'watch', jobId, '--interval', '100', '--json');
    assert.equal(watched.code, 0, watched.stderr);
    const final = JSON.parse(watched.stdout);
    assert.equal(final.job.status, 'COMPLETED');
    assert.equal(final.counts.REJECTED, 1);
    const history = await cli('device', 'history', 'new-1');
    assert.match(history.stdout, /fw@2\.0\.0  REJECTED  downgrade refused: the device runs 3\.0\.0/);
  });

  it('prints the fleet status and filters devices by query', async () => {
    const status = await cli('status');
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /devices: 4 registered, 1 online, 1 reporting, 0 revoked\nversions:\n {2}fw@3\.0\.0 {2}1\njobs: COMPLETED 1, CANCELED 2/);
    const found = await cli('device', 'list', '--query', 'reported.software.version > 2.10.0');
    assert.match(found.stdout, /^new-1 +online +3\.0\.0/);
    assert.equal((await cli('job', 'watch', 'nope')).code, 2);
    const fast = await cli('job', 'watch', 'nope', '--interval', '0');
    assert.deepEqual([fast.code, fast.stderr], [2, 'updraft: error: --interval must be a number of milliseconds from 100 to 2147483647 (about 24.8 days) between polls, got 0\n']);
    const never = await cli('job', 'watch', 'nope', '--timeout', '-5');
    assert.deepEqual([never.code, never.stderr], [2, 'updraft: error: --timeout must be a number of seconds above 0, got -5\n']);
  });

  it('says when the fleet status was counted and how long ago (the server answers from its cache)', async () => {
    const fleetStatus = async () => (await (await fetch(`${ts.httpUrl}/api/v1/fleet/status`, { headers: { authorization: `Bearer ${ts.token}` } })).json()) as { generatedAt: number };
    const first = await fleetStatus();
    const started = Date.now();
    const status = await cli('status');
    const ended = Date.now();
    const last = await fleetStatus();
    assert.equal(status.code, 0, status.stderr);
    const counted = /\njobs: [^\n]*\ncounted (\S+) \((\d+) s ago\)\n$/.exec(status.stdout);
    assert.ok(counted, status.stdout);
    const at = Date.parse(counted[1]!);
    assert.ok(at >= first.generatedAt && at <= last.generatedAt, `counted ${counted[1]}: between the answers before and after (${first.generatedAt}, ${last.generatedAt})`);
    // its age, said when the command printed: counted at + age falls within the command's run (a second's rounding either way)
    const printed = at + Number(counted[2]) * 1000;
    assert.ok(printed >= started - 1000 && printed <= ended + 1000, `counted ${counted[1]}, ${counted[2]} s ago: printed at ${new Date(printed).toISOString()}, run from ${new Date(started).toISOString()} to ${new Date(ended).toISOString()}`);
    const json = JSON.parse((await cli('status', '--json')).stdout);
    assert.equal(typeof json.generatedAt, 'number', 'the JSON carries generatedAt as the API does');
  });

  it('shows when a scheduled job starts; canceled before it sent anything, it shows nothing done', async () => {
    const inAnHour = new Date(Date.now() + 3_600_000).toISOString();
    const scheduled = JSON.parse((await cli('job', 'create', '--artifact', 'fw@2.0.0', '--device', 'a-1', '--start-at', inAnHour, '--json')).stdout).job.jobId as string;
    assert.ok((await cli('job', 'show', scheduled)).stdout.includes(`\n  [${'.'.repeat(30)}]   0.0%  SCHEDULED  QUEUED 1  (starts sending ${inAnHour})\n`));
    assert.equal((await cli('job', 'cancel', scheduled)).code, 0);
    assert.ok((await cli('job', 'show', scheduled)).stdout.includes(`\n  [${'.'.repeat(30)}]   0.0%  CANCELED  CANCELED 1\n`));
  });

  it('creates a job with maintenance windows in a time zone; outside them it waits, and says until when', async () => {
    // a one-minute window twelve hours from now: closed at creation, whatever the time of day
    const at = new Date(Date.now() + 12 * 3_600_000);
    const start = `${String(at.getUTCHours()).padStart(2, '0')}:${String(at.getUTCMinutes()).padStart(2, '0')}`;
    const created = await cli('job', 'create', '--artifact', 'fw@2.0.0', '--device', 'a-1', '--window', `${start}+1`, '--time-zone', 'UTC', '--json');
    assert.equal(created.code, 0, created.stderr);
    const view = JSON.parse(created.stdout);
    assert.deepEqual(view.job.spec.plan.windows, [{ start, minutes: 1 }]);
    assert.equal(view.job.spec.plan.timeZone, 'UTC');
    const shown = await cli('job', 'show', view.job.jobId);
    const opens = new Date(Math.floor(at.getTime() / 60_000) * 60_000).toISOString();
    assert.match(shown.stdout, new RegExp(`IN_PROGRESS  QUEUED 1  \\(outside its maintenance windows: the next opens ${opens.replace(/[.]/g, '\\.')}\\)`));
    assert.equal((await cli('job', 'cancel', view.job.jobId)).code, 0);
    const bad = await cli('job', 'create', '--artifact', 'fw@2.0.0', '--device', 'a-1', '--window', '25:00+60@someday');
    assert.equal(bad.code, 2);
    assert.equal(bad.stderr, 'updraft: error: plan.windows[0].start must be a time of day "HH:MM" (00:00 to 23:59); plan.windows[0].days must be a non-empty list of sun, mon, tue, wed, thu, fri, sat\n');
  });

  it('previews a job with --dry-run: waves and their first devices, start, least sending time; creates nothing', async () => {
    const before = (await cli('job', 'list', '--json')).stdout;
    const dry = await cli('job', 'create', '--artifact', 'fw@2.0.0', '--group', 'lab', '--wave', '1', '--wave', '100%', '--max-per-minute', '1', '--dry-run');
    assert.equal(dry.code, 0, dry.stderr);
    assert.equal(
      dry.stdout,
      'dry run: fw@2.0.0 to 3 device(s); nothing created\n  wave 1: 1 device(s): a-1\n  wave 2: 2 device(s): a-2, a-3\n  starts sending at once\n  sending every command takes at least 2 minute(s) at its rate\n',
    );
    // a start within the minute is named, not "at once"
    const soon = new Date(Date.now() + 45_000).toISOString();
    const later = await cli('job', 'create', '--artifact', 'fw@2.0.0', '--device', 'a-1', '--start-at', soon, '--dry-run');
    assert.equal(later.code, 0, later.stderr);
    assert.ok(later.stdout.includes(`\n  starts sending ${soon}\n`), later.stdout);
    // outside a maintenance window it starts at the next opening
    const at = new Date(Date.now() + 6 * 3_600_000);
    const start = `${String(at.getUTCHours()).padStart(2, '0')}:${String(at.getUTCMinutes()).padStart(2, '0')}`;
    const windowed = JSON.parse((await cli('job', 'create', '--artifact', 'fw@2.0.0', '--device', 'a-2', '--window', `${start}+30`, '--dry-run', '--json')).stdout) as { total: number; startsAt: number; waves: unknown[] };
    assert.deepEqual({ total: windowed.total, startsAt: windowed.startsAt, waves: windowed.waves }, { total: 1, startsAt: Math.floor(at.getTime() / 60_000) * 60_000, waves: [{ wave: 0, devices: 1, first: ['a-2'] }] });
    // refused as a creation would be
    const unknown = await cli('job', 'create', '--artifact', 'fw@9.9.9', '--group', 'lab', '--dry-run');
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /^updraft: error: artifact fw@9\.9\.9 does not exist/);
    const empty = await cli('job', 'create', '--artifact', 'fw@2.0.0', '--query', 'tags = nowhere', '--dry-run');
    assert.equal(empty.code, 2);
    assert.match(empty.stderr, /the target set is empty/);
    // an empty --query beside a device is refused, not dropped (the job targeted the device alone)
    const blank = await cli('job', 'create', '--artifact', 'fw@2.0.0', '--device', 'a-2', '--query', '', '--dry-run');
    assert.equal(blank.code, 2, blank.stdout);
    assert.match(blank.stderr, /^updraft: error: .*invalid query: it is empty/);
    assert.equal((await cli('job', 'list', '--json')).stdout, before, 'no job was created');
  });

  it("shows a device's newest 100 jobs, and how to read the older ones", async () => {
    await registerDevice(ts, 'many-jobs');
    const jobs: string[] = [];
    for (let i = 0; i < 101; i++) {
      await new Promise((r) => setTimeout(r, 2)); // queued in distinct milliseconds: the order of creation
      jobs.push(JSON.parse((await cli('job', 'create', '--artifact', 'fw@2.0.0', '--device', 'many-jobs', '--json')).stdout).job.jobId);
    }
    const shown = await cli('device', 'show', 'many-jobs');
    assert.equal(shown.code, 0, shown.stderr);
    assert.equal(shown.stdout.split('\n').filter((l) => /^ {2}[0-9a-f-]{36} +[A-Z_]+ /.test(l)).length, 100, shown.stdout);
    const older = /^\(older jobs: updraft device history many-jobs --after (\S+)\)$/m.exec(shown.stdout);
    assert.ok(older, shown.stdout);
    const rest = await cli('device', 'history', 'many-jobs', '--after', older[1]!);
    // each job was superseded on the device by the next (it never connected): the oldest, alone
    assert.match(rest.stdout, new RegExp(`^\\S+  ${jobs[0]}  fw@2\\.0\\.0  CANCELED  superseded: the device was asked for job ${jobs[1]} before it finished this one\\n$`), 'the oldest job, alone');
  });

  it('shows a job with its counts, a page of devices and how to read the next', async () => {
    const created = await cli('job', 'create', '--artifact', 'fw@2.0.0', '--device', 'a-1', '--device', 'a-2', '--device', 'a-3', '--json');
    const jobId = JSON.parse(created.stdout).job.jobId as string;
    const shown = await cli('job', 'show', jobId, '--limit', '2');
    assert.equal(shown.code, 0, shown.stderr);
    const lines = shown.stdout.trimEnd().split('\n');
    assert.equal(lines[0], `job ${jobId}  fw@2.0.0  3 device(s)`);
    assert.match(lines[1]!, /%  IN_PROGRESS  .*(QUEUED|IN_PROGRESS) \d/);
    assert.deepEqual(lines.slice(2, 4).map((l) => l.trim().split(/\s+/)[0]), ['a-1', 'a-2']);
    assert.equal(lines[4], `(more: updraft job show ${jobId} --after a-2)`);
    const rest = await cli('job', 'show', jobId, '--after', 'a-2');
    assert.deepEqual(rest.stdout.trimEnd().split('\n').slice(2).map((l) => l.trim().split(/\s+/)[0]), ['a-3']);
    assert.equal((await cli('job', 'cancel', jobId)).code, 0);
  });

  it('refuses, in one line naming what is wrong, a job file that cannot be read, two kinds of group, and an artifact reference without its version', async () => {
    const cases: [string[], string][] = [
      [['job', 'create', '--artifact', 'fw@2.0.0', '--file', '/nonexistent/job.json'], 'updraft: error: cannot read /nonexistent/job.json: no such file\n'],
      [['job', 'create', '--artifact', 'fw@2.0.0', '--file', '/etc/hostname'], ''],
      [['group', 'create', 'both', '--device', 'a-1', '--query', 'tags = lab'], 'updraft: error: give either --device (a static group) or --query (a dynamic group), not both\n'],
      [['artifact', 'show', 'fw@'], 'updraft: error: artifact reference "fw@" must look like name@version, e.g. fw@2.0.0\n'],
      [['job', 'create', '--artifact', 'fw@2.0.0', '--device', 'a-1', '--rollback'], 'updraft: error: --rollback goes with --abort: it says what an abort does to the devices that failed\n'],
      [['job', 'create', '--artifact', 'fw@2.0.0', '--device', 'a-1', '--retry-on', 'FAILED'], 'updraft: error: --retry-on goes with --retries: without a number of retries, nothing is retried\n'],
    ];
    for (const [args, stderr] of cases) {
      const r = await cli(...args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
      if (stderr) assert.equal(r.stderr, stderr);
      else assert.match(r.stderr, /^updraft: error: \/etc\/hostname (is not valid JSON: .*|must hold a JSON object: .*)\n$/);
    }
    assert.equal((await cli('group', 'show', 'both')).code, 2, 'no group was created');
    // --rollback alone with a --file holding abort rules: the file's rules, with their rollback
    const file = path.join(os.tmpdir(), `updraft-job-${process.pid}.json`);
    await writeFile(file, JSON.stringify({ abort: { rules: [{ type: 'FAILED', thresholdPercent: 20 }] } }));
    const made = await cli('job', 'create', '--artifact', 'fw@2.0.0', '--device', 'a-1', '--file', file, '--rollback', '--json');
    await rm(file);
    assert.equal(made.code, 0, made.stderr);
    const spec = JSON.parse(made.stdout).job.spec as { abort: { rules: { type: string; thresholdPercent: number }[]; rollback: boolean } };
    assert.deepEqual([spec.abort.rules.map((r) => [r.type, r.thresholdPercent]), spec.abort.rollback], [[['FAILED', 20]], true]);
    assert.equal((await cli('job', 'cancel', JSON.parse(made.stdout).job.jobId)).code, 0);
  });

  it('lets a flag override its own field of a --file spec and keeps the file\'s other fields', async () => {
    const file = path.join(os.tmpdir(), `updraft-job-merge-${process.pid}.json`);
    type Spec = { abort: { rules: { type: string; thresholdPercent: number }[]; rollback: boolean }; retries: { limit: number; on: string[] } };
    const create = async (body: object, ...flags: string[]) => {
      await writeFile(file, JSON.stringify(body));
      const r = await cli('job', 'create', '--artifact', 'fw@2.0.0', '--device', 'a-1', '--file', file, '--json', ...flags);
      await rm(file);
      assert.equal(r.code, 0, r.stderr);
      const { job } = JSON.parse(r.stdout) as { job: { jobId: string; spec: Spec } };
      assert.equal((await cli('job', 'cancel', job.jobId)).code, 0);
      return job.spec;
    };
    const file1 = { abort: { rules: [{ type: 'FAILED', thresholdPercent: 20 }], rollback: true }, retries: { limit: 2, on: ['TIMED_OUT'] } };
    const a = await create(file1, '--abort', 'ANY:10', '--retries', '3');
    assert.deepEqual(a.abort.rules.map((r) => [r.type, r.thresholdPercent]), [['ANY', 10]], '--abort replaces the rules');
    assert.equal(a.abort.rollback, true, "the file's rollback stays");
    assert.deepEqual([a.retries.limit, a.retries.on], [3, ['TIMED_OUT']], "--retries sets the limit, the file's statuses stay");
    // --retry-on with the file's limit: accepted, and the limit kept
    const b = await create({ retries: { limit: 2 } }, '--retry-on', 'FAILED,TIMED_OUT');
    assert.deepEqual([b.retries.limit, b.retries.on], [2, ['FAILED', 'TIMED_OUT']]);
  });

  it('creates a job from --file alone, its "artifact" included; --artifact overrides it; neither is a usage error naming both', async () => {
    const file = path.join(os.tmpdir(), `updraft-job-alone-${process.pid}.json`);
    await writeFile(file, JSON.stringify({ artifact: 'fw@2.0.0', targets: { devices: ['a-1', 'a-2'] } }));
    try {
      const preview = await cli('job', 'create', '--file', file, '--dry-run');
      assert.equal(preview.code, 0, preview.stderr);
      assert.match(preview.stdout, /^dry run: fw@2\.0\.0 to 2 device\(s\); nothing created\n/);
      const made = await cli('job', 'create', '--file', file, '--json');
      assert.equal(made.code, 0, made.stderr);
      const { job } = JSON.parse(made.stdout) as { job: { jobId: string; artifactName: string; artifactVersion: string } };
      assert.equal(`${job.artifactName}@${job.artifactVersion}`, 'fw@2.0.0');
      assert.equal((await cli('job', 'cancel', job.jobId)).code, 0);
      // the flag overrides the file's artifact (the server refuses one it does not hold)
      const other = await cli('job', 'create', '--file', file, '--artifact', 'fw@9.9.9', '--dry-run');
      assert.equal(other.code, 2);
      assert.match(other.stderr, /^updraft: error: .*fw@9\.9\.9/);
      await writeFile(file, JSON.stringify({ targets: { devices: ['a-1'] } }));
      const none = await cli('job', 'create', '--file', file, '--dry-run');
      assert.deepEqual([none.code, none.stderr], [2, `updraft: error: ${file} names no "artifact": give it there ("artifact": "fw@2.0.0") or as --artifact <name@version>\n`]);
    } finally {
      await rm(file, { force: true });
    }
    const neither = await cli('job', 'create', '--device', 'a-1');
    assert.deepEqual([neither.code, neither.stderr], [2, 'updraft: error: no artifact to install: give --artifact <name@version> (e.g. fw@2.0.0), or --file with the job\'s "artifact"\n']);
  });

  it('refuses to delete a group an unfinished continuous job targets, naming the job; deletes it once the job is canceled', async () => {
    assert.equal((await cli('group', 'create', 'cont', '--device', 'a-2')).code, 0);
    const jobId = JSON.parse((await cli('job', 'create', '--artifact', 'fw@2.0.0', '--group', 'cont', '--continuous', '--json')).stdout).job.jobId as string;
    const refused = await cli('group', 'delete', 'cont');
    assert.equal(refused.code, 2);
    assert.equal(refused.stderr, `updraft: error: group cont is a target of continuous jobs that are not finished (${jobId}): cancel them first (updraft job cancel <jobId>)\n`);
    assert.equal((await cli('group', 'show', 'cont')).code, 0, 'the group is still there');
    assert.equal((await cli('job', 'cancel', jobId)).code, 0);
    assert.equal((await cli('group', 'delete', 'cont')).code, 0);
    assert.equal((await cli('group', 'show', 'cont')).code, 2);
  });

  it("changes a device's attributes and tags, and a continuous job picks up a device that now matches", async () => {
    await registerDevice(ts, 'u-1', { tags: ['old'] });
    const jobId = JSON.parse((await cli('job', 'create', '--artifact', 'fw@2.0.0', '--query', 'tags = pilot', '--continuous', '--json')).stdout).job.jobId as string;
    const changed = await cli('device', 'update', 'u-1', '--tag', 'pilot', '--attr', 'region=eu', '--attr', 'rack=7');
    assert.equal(changed.code, 0, changed.stderr);
    assert.equal(changed.stdout, 'updated u-1\n  attributes region=eu rack=7\n  tags       pilot\n');
    // stored: the registry reads it back so
    const stored = await ts.server.store.getDevice('u-1');
    assert.deepEqual([stored?.attributes, stored?.tags], [{ region: 'eu', rack: 7 }, ['pilot']]);
    // the job that selects pilots adds it
    await eventually(async () => {
      const view = JSON.parse((await cli('job', 'show', jobId, '--json')).stdout) as { executions: { deviceId: string }[] };
      return view.executions.some((e) => e.deviceId === 'u-1') ? true : undefined;
    }, 20_000, 'u-1 added to the continuous job');
    assert.equal((await cli('job', 'cancel', jobId)).code, 0);
    const unset = await cli('device', 'update', 'u-1', '--unset-attr', 'rack', '--no-tags');
    assert.equal(unset.stdout, 'updated u-1\n  attributes region=eu\n  tags       (none)\n');
    for (const [args, message] of [
      [['u-1', '--attr', 'constructor=x'], 'updraft: error: attribute name "constructor" is reserved\n'],
      [['u-1'], 'updraft: error: nothing to change: give --attr, --unset-attr, --tag or --no-tags\n'],
      [['ghost', '--tag', 'x'], 'updraft: error: device ghost is not registered; register it with: updraft device register ghost\n'],
    ] as const) {
      const r = await cli('device', 'update', ...args);
      assert.equal(r.code, 2, r.stderr);
      assert.equal(r.stderr, message);
    }
  });
});

describe('updraft status: a version reported without a software name', () => {
  let ts: TestServer;
  let dev: TestClient;
  before(async () => {
    ts = await startTestServer();
    dev = await connectDevice(ts, 'nameless-1');
    await dev.subscribe('state/nameless-1/#');
    // what an agent started with --initial-version and no name reports
    await dev.request('state/nameless-1/update', { state: { reported: { software: { version: '1.0.0', status: 'IDLE' } } } });
  });
  after(async () => {
    await dev.end();
    await ts.close();
  });

  it('says the name is not reported, not ?@1.0.0', async () => {
    // the counts are cached (at most 2 s old on a small fleet): read until the report is in them
    const out = await eventually(async () => {
      const r = await runCli(['status', '--server', ts.httpUrl, '--token', ts.token]);
      assert.equal(r.code, 0, r.stderr);
      return r.stdout.includes('(no reports yet)') ? undefined : r.stdout;
    }, 15_000, 'the report counted');
    assert.match(out, /\nversions:\n {2}1\.0\.0 \(no software name reported\) {2}1\n/, out);
    assert.doesNotMatch(out, /\?@/, 'no question mark for the name');
  });
});
