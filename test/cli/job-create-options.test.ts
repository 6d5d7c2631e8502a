/**
 * `updraft job create` refuses an empty option value and a `:` part too many, exit 2 with one
 * line, and creates no job: QA saw `--start-at ""` (a scheduled rollout started at once when
 * "$START" was empty), `--time-zone ""` (windows read as UTC), `--timeout ""`,
 * `--step-timeout ""`, `--retry-on ""` and `--description ""` dropped by truthiness checks,
 * `--ramp-up 5:2:9` read as 5:2 and `--abort FAILED:10:1:1` as FAILED:10:1. `group create
 * --description ""` the same way. Real server, the real CLI.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { runCli } from '../helpers/cli.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';

describe('job create option values', () => {
  let ts: TestServer;
  const create = (...args: string[]) => runCli(['job', 'create', '--artifact', 'fw@1.0.0', '--device', 'jo-1', ...args, '--server', ts.httpUrl, '--token', ts.token]);

  before(async () => {
    ts = await startTestServer();
    const res = await fetch(`${ts.httpUrl}/api/v1/artifacts?name=fw&version=1.0.0`, { method: 'POST', headers: { authorization: `Bearer ${ts.token}` }, body: new Uint8Array(randomBytes(100)) });
    assert.equal(res.status, 201);
    await registerDevice(ts, 'jo-1');
  });
  after(() => ts.close());

  it('refuses each empty value and each extra part, exit 2, one line, and creates no job', async () => {
    const cases: [string[], string][] = [
      [['--start-at', ''], '--start-at is empty: give an ISO 8601 time, or leave the option out'],
      [['--window', '02:00+120', '--time-zone', ''], '--time-zone is empty: give an IANA time zone (Europe/Madrid) or device, or leave the option out'],
      [['--timeout', ''], '--timeout is empty: give a number of seconds, or leave the option out'],
      [['--step-timeout', ' '], '--step-timeout is empty: give a number of seconds, or leave the option out'],
      [['--retries', '1', '--retry-on', ''], '--retry-on is empty: give the states to retry (FAILED,TIMED_OUT), or leave the option out'],
      [['--description', ''], '--description is empty: give a text, or leave the option out'],
      [['--retries', ''], '--retries must be a number written in decimal digits (like 30 or 2.5), got ""'],
      // read by Number() as 16, 1000 and 2 (QA): the forms the server's own flags refuse
      [['--max-per-minute', '0x10'], '--max-per-minute must be a number written in decimal digits (like 30 or 2.5), got "0x10"'],
      [['--timeout', '1e3'], '--timeout must be a number written in decimal digits (like 30 or 2.5), got "1e3"'],
      [['--retries', ' 2'], '--retries must be a number written in decimal digits (like 30 or 2.5), got " 2"'],
      [['--ramp-up', '5:2:9'], '--ramp-up 5:2:9 must look like initial:factor (per minute, e.g. 10:2; factor 2 when left out)'],
      [['--ramp-up', ''], '--ramp-up  must look like initial:factor (per minute, e.g. 10:2; factor 2 when left out)'],
      [['--abort', 'FAILED:10:1:1'], '--abort FAILED:10:1:1 must look like type:percent[:min] (e.g. FAILED:10:20 or ANY:5)'],
      [['--abort', 'FAILED::5'], '--abort FAILED::5 must look like type:percent[:min] (e.g. FAILED:10:20 or ANY:5)'],
    ];
    for (const [args, line] of cases) {
      const r = await create(...args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
      assert.equal(r.stderr, `updraft: error: ${line}\n`, args.join(' '));
    }
    assert.equal((await ts.server.store.listJobs({ limit: 10 })).items.length, 0);
  });

  it('still takes the values given, and a ramp-up without its factor', async () => {
    const r = await create('--ramp-up', '5', '--abort', 'FAILED:10:2', '--timeout', '600', '--description', 'ok', '--json');
    assert.equal(r.code, 0, r.stderr);
    const spec = (JSON.parse(r.stdout) as { job: { spec: { plan: { rampUp: unknown }; abort: { rules: unknown[] } } } }).job.spec;
    assert.deepEqual(spec.plan.rampUp, { initialPerMinute: 5, factor: 2 }, 'a ramp-up without its factor');
    const fraction = await create('--ramp-up', '10:1.5', '--json');
    assert.equal(fraction.code, 0, fraction.stderr);
    const rampUp = (JSON.parse(fraction.stdout) as { job: { spec: { plan: { rampUp: unknown } } } }).job.spec.plan.rampUp;
    assert.deepEqual(rampUp, { initialPerMinute: 10, factor: 1.5 }, 'a decimal fraction is taken');
    assert.deepEqual(spec.abort.rules, [{ type: 'FAILED', thresholdPercent: 10, minFinished: 2 }]);
  });
});

describe('group create --description', () => {
  let ts: TestServer;
  before(async () => {
    ts = await startTestServer();
    await registerDevice(ts, 'go-1');
  });
  after(() => ts.close());

  it('refuses an empty one (exit 2, one line, no group) and takes a text', async () => {
    const run = (...args: string[]) => runCli(['group', 'create', ...args, '--server', ts.httpUrl, '--token', ts.token]);
    const empty = await run('lab', '--device', 'go-1', '--description', '');
    assert.equal(empty.code, 2, empty.stdout + empty.stderr);
    assert.equal(empty.stderr, 'updraft: error: --description is empty: give a text, or leave the option out\n');
    assert.deepEqual(await ts.server.store.listGroups(), [], 'no group created');
    const made = await run('lab', '--device', 'go-1', '--description', 'the lab bench', '--json');
    assert.equal(made.code, 0, made.stderr);
    assert.equal((JSON.parse(made.stdout) as { description?: string }).description, 'the lab bench');
  });
});
