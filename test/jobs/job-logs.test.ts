/**
 * Devices' logs of failed jobs (src/jobs/job-logs.ts, src/agent/job-log.ts): a device whose
 * attempt fails sends what it did (phases, the installer's and the health check's output);
 * the server keeps it with the job, bounded, and refuses what is not a device's log of its own
 * execution. Real server, real agents with the A/B slot installer and a failing health check,
 * real MQTT clients, the real CLI.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { SlotInstaller } from '../../src/agent/slot-installer.ts';
import { createLogger } from '../../src/util/logger.ts';
import { eventually, runCli } from '../helpers/cli.ts';
import { TestClient, connectDevice } from '../helpers/mqtt-client.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';
import { addArtifact, deploy, outcome, startAgent } from '../security/support.ts';

interface JobLog {
  jobId: string;
  deviceId: string;
  agentJobId: string;
  receivedAt: number;
  dropped: number;
  lines: string[];
}

describe("devices' logs of failed jobs", () => {
  let ts: TestServer;
  let dir: string;
  const stops: (() => Promise<void>)[] = [];
  const get = async (p: string) => fetch(`${ts.httpUrl}/api/v1${p}`, { headers: { authorization: `Bearer ${ts.token}` } });
  const cli = (...args: string[]) => runCli([...args, '--server', ts.httpUrl, '--token', ts.token]);

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-job-logs-'));
    ts = await startTestServer({ flags: { 'max-logs-per-job': 2 } });
    await addArtifact(ts, '2.0.0', Buffer.from('fw 2.0.0 '.repeat(5000)));
  });
  after(async () => {
    for (const stop of stops) await stop();
    await ts.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("a failed attempt's log reaches the job: the agent's steps, the health check's output (stderr and stdout), the outcome; a success sends none", async () => {
    const failing = await startAgent(ts, dir, 'log-1', {
      installer: new SlotInstaller({
        dir: path.join(dir, 'log-1'),
        initialVersion: '1.0.0',
        initialName: 'fw',
        healthCheck: 'echo "checking fw on :8443" >&2; echo "GET /health: connect ECONNREFUSED"; echo "fw did not answer: connection refused" >&2; exit 3',
      }),
    });
    const healthy = await startAgent(ts, dir, 'log-2');
    stops.push(() => failing.agent.stop(), () => healthy.agent.stop());
    const jobId = await deploy(ts, ['log-1', 'log-2'], 'fw@2.0.0');
    assert.equal((await outcome(failing.finished, jobId)).status, 'FAILURE');
    assert.equal((await outcome(healthy.finished, jobId)).status, 'SUCCESS');

    const log = await eventually(async () => {
      const res = await get(`/jobs/${jobId}/logs/log-1`);
      return res.status === 200 ? ((await res.json()) as JobLog) : undefined;
    }, 15_000, 'the log of log-1');
    assert.equal(log.agentJobId, jobId);
    assert.equal(log.dropped, 0);
    const text = log.lines.join('\n');
    // in order: the command, the phases, the install, the health check's own words, the rollback, the outcome
    const expected = [/update command received jobId=\S+ version=2\.0\.0/, /phase VERIFYING/, /phase INSTALLING/, /switched slot=a version=2\.0\.0/, /health check: checking fw on :8443/, /health check: fw did not answer: connection refused/, /health check ended exitCode=3/, /WARN .*rolled back from=a to=none version=2\.0\.0/, /outcome FAILURE .*error="health check failed: exit code 3: fw did not answer: connection refused"/];
    let at = 0;
    for (const re of expected) {
      const i = log.lines.findIndex((l, n) => n >= at && re.test(l));
      assert.ok(i >= 0, `${re} after line ${at} in:\n${text}`);
      at = i + 1;
    }
    // what it wrote on stdout too, within the health check's lines (two pipes: in the order they arrived, not interleaved exactly)
    const said = log.lines.findIndex((l) => /health check: GET \/health: connect ECONNREFUSED$/.test(l));
    assert.ok(said > log.lines.findIndex((l) => /switched slot=a/.test(l)) && said < log.lines.findIndex((l) => /health check ended/.test(l)), text);
    // the agent forgets a log the server took
    await eventually(async () => (JSON.parse(await readFile(path.join(dir, 'log-1', '.updraft', 'agent-state.json'), 'utf8')) as { pendingLog?: unknown }).pendingLog === undefined || undefined, 10_000, 'pendingLog cleared');

    // the success sent none
    const none = await get(`/jobs/${jobId}/logs/log-2`);
    assert.equal(none.status, 404);
    assert.match(((await none.json()) as { error: { message: string } }).error.message, /^device log-2 sent no log for job /);
    const list = (await (await get(`/jobs/${jobId}/logs`)).json()) as { items: { deviceId: string; lineCount: number }[] };
    assert.deepEqual(list.items.map((i) => [i.deviceId, i.lineCount]), [['log-1', log.lines.length]]);

    // the CLI: the list, then the log
    const listed = await cli('job', 'log', jobId);
    assert.equal(listed.code, 0, listed.stderr);
    assert.match(listed.stdout, new RegExp(`^log-1  ${jobId}  \\S+  ${log.lines.length} line\\(s\\)$`, 'm'));
    const shown = await cli('job', 'log', jobId, 'log-1');
    assert.equal(shown.code, 0, shown.stderr);
    assert.match(shown.stdout, new RegExp(`^log-1: log of job ${jobId}, received `));
    assert.match(shown.stdout, /health check: fw did not answer: connection refused/);
    // the device's history says which of its jobs left a log
    const history = await cli('device', 'history', 'log-1');
    assert.equal(history.code, 0, history.stderr);
    assert.match(history.stdout, new RegExp(`${jobId}  fw@2\\.0\\.0  FAILED  health check failed: .*  \\[log: updraft job log ${jobId} log-1\\]$`, 'm'));
    const device = (await (await get('/devices/log-1')).json()) as { jobLogs: { jobId: string; lineCount: number }[] };
    assert.deepEqual(device.jobLogs.map((l) => [l.jobId, l.lineCount]), [[jobId, log.lines.length]]);
    const healthyHistory = await cli('device', 'history', 'log-2');
    assert.doesNotMatch(healthyHistory.stdout, /\[log:/);
    const missing = await cli('job', 'log', jobId, 'log-2');
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /^updraft: error: device log-2 sent no log for job /);
    // an id that is no device of the job says so, not 'sent no log' (QA)
    const unknown = await cli('job', 'log', jobId, 'no-such-device');
    assert.equal(unknown.code, 2, unknown.stderr);
    assert.equal(unknown.stderr, 'updraft: error: device no-such-device is not registered; list devices with: updraft device list\n', 'an unregistered device');
    await registerDevice(ts, 'log-outsider');
    const outsider = await cli('job', 'log', jobId, 'log-outsider');
    assert.equal(outsider.code, 2, outsider.stderr);
    assert.equal(outsider.stderr, `updraft: error: device log-outsider is not in job ${jobId}; its devices: updraft job show ${jobId}\n`, 'a device not in the job');
  });

  it('a log the agent could not send before it stopped goes at its next connect', async () => {
    const secret = await registerDevice(ts, 'log-3');
    // the failed job, and the one that replaced it while the device was away (which it takes at its connect)
    const jobId = await deploy(ts, ['log-3'], 'fw@2.0.0');
    await addArtifact(ts, '2.0.1', Buffer.from('fw 2.0.1 '.repeat(5000)));
    const next = await deploy(ts, ['log-3'], 'fw@2.0.1');
    // what a stop between the acknowledged FAILURE and the log's answer leaves in the state file
    const stateDir = path.join(dir, 'log-3', '.updraft');
    await mkdir(stateDir, { recursive: true });
    const pending = { jobId, lines: ['2026-12-03T10:00:00.000Z INFO  [agent:log-3] phase INSTALLING', 'flash: write error at block 812'], dropped: 4 };
    await writeFile(path.join(stateDir, 'agent-state.json'), JSON.stringify({ version: 1, finished: [], pendingLog: pending }));
    const { agent, finished } = await startAgent(ts, dir, 'log-3', { username: 'log-3', password: secret });
    stops.push(() => agent.stop());
    assert.equal((await outcome(finished, next)).status, 'SUCCESS');
    const log = await eventually(async () => {
      const res = await get(`/jobs/${jobId}/logs/log-3`);
      return res.status === 200 ? ((await res.json()) as JobLog) : undefined;
    }, 15_000, 'the log of log-3');
    assert.deepEqual(log.lines, pending.lines);
    assert.equal(log.dropped, 4);
  });

  it('a log no server took for a week is dropped, not offered forever', async () => {
    const secret = await registerDevice(ts, 'log-8');
    const jobId = await deploy(ts, ['log-8'], 'fw@2.0.0');
    const stateDir = path.join(dir, 'log-8', '.updraft');
    await mkdir(stateDir, { recursive: true });
    const since = new Date(Date.now() - 8 * 86_400_000).toISOString();
    const stateFile = path.join(stateDir, 'agent-state.json');
    await writeFile(stateFile, JSON.stringify({ version: 1, finished: [], pendingLog: { jobId, since, lines: ['an old failure'], dropped: 0 } }));
    const { agent, finished } = await startAgent(ts, dir, 'log-8', { username: 'log-8', password: secret });
    stops.push(() => agent.stop());
    assert.equal((await outcome(finished, jobId)).status, 'SUCCESS');
    await eventually(async () => (JSON.parse(await readFile(stateFile, 'utf8')) as { pendingLog?: unknown }).pendingLog === undefined || undefined, 10_000, 'the old log dropped');
    assert.equal((await get(`/jobs/${jobId}/logs/log-8`)).status, 404, 'never sent');
  });

  it('refuses, with the reason, what is not a log of an execution of this device; keeps at most jobs.maxLogsPerJob per job', async () => {
    const dev = await connectDevice(ts, 'log-4');
    const other = await connectDevice(ts, 'log-5');
    const third = await connectDevice(ts, 'log-6');
    stops.push(() => dev.end(), () => other.end(), () => third.end());
    for (const c of [dev, other, third]) await c.subscribe(`state/${c.client.options.clientId}/job-log/+`);
    const jobId = await deploy(ts, ['log-4', 'log-5', 'log-6'], 'fw@2.0.0');
    const ask = (c: TestClient, body: Record<string, unknown> | string) =>
      typeof body === 'string' ? publishRaw(c, body) : c.request(`state/${c.client.options.clientId}/job-log`, body);
    const refused = async (c: TestClient, body: Record<string, unknown> | string, code: number, message: RegExp) => {
      const r = await ask(c, body);
      assert.equal(r.topic, `state/${c.client.options.clientId}/job-log/rejected`, JSON.stringify(r.body));
      assert.equal((r.body as { code: number }).code, code);
      assert.match((r.body as { message: string }).message, message);
    };

    await refused(dev, '{"jobId": ', 400, /^Invalid JSON$/);
    await refused(dev, { jobId, lines: 'it failed' }, 400, /^lines must be an array of strings$/);
    await refused(dev, { jobId, lines: ['ok', 7] }, 400, /^lines\[1\] must be a string$/);
    await refused(dev, { jobId, lines: ['x'.repeat(501)] }, 413, /^lines\[0\] is longer than 500 characters$/);
    await refused(dev, { jobId, lines: Array.from({ length: 40 }, () => 'y'.repeat(450)) }, 413, /^a job log holds at most 16384 characters, got 18000$/);
    await refused(dev, { jobId, lines: [], dropped: -1 }, 400, /^dropped must be a non-negative integer$/);
    await refused(dev, { jobId: 'f5c0a1e2-0000-4000-8000-000000000000', lines: ['x'] }, 404, /^job f5c0a1e2-0000-4000-8000-000000000000 has no execution on device log-4: its log is not kept$/);
    assert.equal((await get(`/jobs/${jobId}/logs/log-4`)).status, 404, 'nothing refused was kept');

    // another device's topic: the ACL drops it, nothing is kept for log-5
    await dev.publish('state/log-5/job-log', { jobId, lines: ['forged'], clientToken: 'forged' });
    const ok = await dev.request('state/log-4/job-log', { jobId, lines: ['first'] });
    assert.equal(ok.topic, 'state/log-4/job-log/accepted', JSON.stringify(ok.body));
    assert.equal((await get(`/jobs/${jobId}/logs/log-5`)).status, 404, "a device cannot write another's log");

    // a later attempt's log replaces the device's; the job keeps 2 devices' logs (the test's bound)
    assert.equal((await dev.request('state/log-4/job-log', { jobId: `${jobId}.2`, lines: ['second'] })).topic, 'state/log-4/job-log/accepted');
    assert.equal((await other.request('state/log-5/job-log', { jobId, lines: ['from log-5'] })).topic, 'state/log-5/job-log/accepted');
    await refused(third, { jobId, lines: ['from log-6'] }, 409, new RegExp(`^job ${jobId} keeps the logs of 2 devices already \\(jobs.maxLogsPerJob\\): this one is not kept$`));
    const kept = (await (await get(`/jobs/${jobId}/logs/log-4`)).json()) as JobLog;
    assert.deepEqual([kept.agentJobId, kept.lines], [`${jobId}.2`, ['second']]);
    const list = (await (await get(`/jobs/${jobId}/logs?limit=1`)).json()) as { items: { deviceId: string }[]; next?: string };
    assert.deepEqual([list.items.map((i) => i.deviceId), list.next], [['log-4'], 'log-4']);
    const rest = (await (await get(`/jobs/${jobId}/logs?after=log-4`)).json()) as { items: { deviceId: string }[]; next?: string };
    assert.deepEqual([rest.items.map((i) => i.deviceId), rest.next], [['log-5'], undefined]);
    assert.equal((await get('/jobs/no-such-job/logs')).status, 404);
  });

  it("keeps the logs of a take-back's attempts (.cancel, .rollback) to half of jobs.maxLogsPerJob: real failures' logs keep their room", async () => {
    const devices = ['tb-1', 'tb-2', 'tb-3'];
    const [a, b, c] = await Promise.all(devices.map((id) => connectDevice(ts, id)));
    stops.push(() => a!.end(), () => b!.end(), () => c!.end());
    for (const x of [a!, b!, c!]) await x.subscribe(`state/${x.client.options.clientId}/job-log/+`);
    const jobId = await deploy(ts, devices, 'fw@2.0.0');
    // the bound is 2 (the test's server): one take-back log, then none
    assert.equal((await a!.request('state/tb-1/job-log', { jobId: `${jobId}.cancel`, lines: ['refused: a downgrade'] })).topic, 'state/tb-1/job-log/accepted');
    const second = await b!.request('state/tb-2/job-log', { jobId: `${jobId}.cancel`, lines: ['refused: a downgrade'] });
    assert.equal(second.topic, 'state/tb-2/job-log/rejected', JSON.stringify(second.body));
    assert.match((second.body as { message: string }).message, new RegExp(`^job ${jobId} keeps the logs of 1 devices already \\(jobs.maxLogsPerJob, half of it for the logs of a take-back's attempt\\): this one is not kept$`));
    // a real failure's log still has its room
    const failure = await c!.request('state/tb-3/job-log', { jobId, lines: ['health check failed'] });
    assert.equal(failure.topic, 'state/tb-3/job-log/accepted', JSON.stringify(failure.body));
    assert.equal((await get(`/jobs/${jobId}/logs/tb-3`)).status, 200);
  });

  it('logs refused for a spent budget are said in one INFO line with their job, not one line per device; other refusals still one each', async () => {
    const lines: string[] = [];
    const own = await startTestServer({ flags: { 'max-logs-per-job': 2 }, logger: createLogger({ level: 'info', format: 'json', write: (l) => lines.push(l) }) });
    try {
      await addArtifact(own, '2.0.0', Buffer.from('fw 2.0.0'));
      const devices = ['bud-1', 'bud-2', 'bud-3', 'bud-4', 'bud-5'];
      const clients = await Promise.all(devices.map((id) => connectDevice(own, id)));
      try {
        for (const x of clients) await x.subscribe(`state/${x.client.options.clientId}/job-log/+`);
        const jobId = await deploy(own, devices, 'fw@2.0.0');
        const topics = [];
        for (const x of clients) topics.push((await x.request(`state/${x.client.options.clientId}/job-log`, { jobId, lines: ['failed'] })).topic.split('/').pop());
        assert.deepEqual(topics, ['accepted', 'accepted', 'rejected', 'rejected', 'rejected'], 'two kept, three refused');
        const nope = await clients[0]!.request('state/bud-1/job-log', { jobId: 'f5c0a1e2-0000-4000-8000-000000000000', lines: ['x'] });
        assert.equal(nope.topic, 'state/bud-1/job-log/rejected');
        const parsed = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
        const spent = parsed.filter((l) => String(l.msg).startsWith('job logs not kept: their job keeps its share of logs already'));
        assert.equal(spent.length, 1, `one line for three refusals: ${lines.join('\n')}`);
        assert.equal(spent[0]!.level, 'info');
        assert.equal(spent[0]!.jobId, jobId);
        const perDevice = parsed.filter((l) => l.msg === 'job log refused');
        assert.deepEqual(perDevice.map((l) => l.deviceId), ['bud-1'], `only the other refusal is said per device: ${lines.join('\n')}`);
      } finally {
        for (const x of clients) await x.end();
      }
    } finally {
      await own.close();
    }
  });
});

/** Publishes a raw payload on the device's job-log topic; resolves with the rejection (no clientToken to match). */
async function publishRaw(c: TestClient, payload: string): Promise<{ topic: string; body: unknown }> {
  const id = c.client.options.clientId!;
  const before = c.log.length;
  await c.publish(`state/${id}/job-log`, payload);
  return c.next((m) => m.topic === `state/${id}/job-log/rejected` && c.log.indexOf(m) >= before);
}
