/**
 * The server's wall clock stepped (NTP setting it, a VM resumed) while a rollout runs: a real
 * `updraft server` process whose Date test/helpers/clock-step-preload.mjs steps, SQLite, the
 * operator API over real HTTP. The devices are registered and offline: a rollout writes their
 * commands all the same (each catches up when it connects), so what was sent is counted from
 * the executions' dispatch times, against the job's configured rate.
 *
 * Bounds, not speeds: "at least k more were sent" waits as long as it takes (a hang guard),
 * and "at most" counts the rate over the real time measured by the test, plus the one sent at
 * once and a minute's worth the allowance may hold (rateCap): a slower machine only loosens it.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, afterEach, describe, it } from 'node:test';
import { eventually, startCli, type CliProcess } from '../helpers/cli.ts';
import { freePort } from '../helpers/free-port.ts';

const PRELOAD = fileURLToPath(new URL('../helpers/clock-step-preload.mjs', import.meta.url));
const HOUR = 3_600_000;

/** A real server process with a steppable clock, on its own data directory. */
class SteppedServer {
  proc: CliProcess | undefined;
  url = '';
  token = '';
  constructor(
    readonly dir: string,
    readonly clockFile: string,
  ) {}

  static async create(): Promise<SteppedServer> {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-server-clock-'));
    const clockFile = path.join(dir, 'clock-step');
    await writeFile(clockFile, '0');
    const s = new SteppedServer(dir, clockFile);
    await s.start();
    return s;
  }

  async start(): Promise<void> {
    const http = await freePort();
    const mqtt = await freePort();
    this.proc = startCli(
      ['server', '--data-dir', path.join(this.dir, 'data'), '--http-port', String(http), '--mqtt-port', String(mqtt), '--mqtt-tls-port', '-1', '--http-host', '127.0.0.1', '--mqtt-host', '127.0.0.1'],
      { env: { NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import ${PRELOAD}`, UPDRAFT_TEST_CLOCK_STEP_FILE: this.clockFile } },
    );
    this.url = `http://127.0.0.1:${http}`;
    await eventually(async () => ((await fetch(`${this.url}/readyz`).then((r) => r.ok, () => false)) || undefined), 60_000, 'server ready');
    this.token = (await readFile(path.join(this.dir, 'data', 'operator-token'), 'utf8')).trim();
  }

  /** Steps this server's wall clock to `ms` off the real time (the monotonic clocks stay). */
  async step(ms: number): Promise<void> {
    await writeFile(this.clockFile, String(ms));
  }

  async api(method: string, route: string, body?: unknown): Promise<any> {
    const binary = body instanceof Uint8Array;
    const res = await fetch(this.url + route, {
      method,
      headers: { authorization: `Bearer ${this.token}`, 'content-type': binary ? 'application/octet-stream' : 'application/json' },
      ...(body === undefined ? {} : { body: binary ? new Blob([new Uint8Array(body)]) : JSON.stringify(body) }),
    });
    const json = await res.json();
    assert.ok(res.ok, `${method} ${route}: ${res.status} ${JSON.stringify(json)}`);
    return json;
  }

  /** An artifact, `n` registered (offline) devices and a job over them with `spec`; its id. */
  async rollout(n: number, spec: Record<string, unknown>): Promise<{ jobId: string; ids: string[] }> {
    await this.api('POST', '/api/v1/artifacts?name=fw&version=2.0.0', new Uint8Array(randomBytes(4096)));
    const ids = Array.from({ length: n }, (_, i) => `d${String(i).padStart(3, '0')}`);
    await this.api('POST', '/api/v1/devices/bulk', { devices: ids.map((deviceId) => ({ deviceId })) });
    const created = await this.api('POST', '/api/v1/jobs', { artifact: 'fw@2.0.0', targets: { devices: ids }, ...spec });
    return { jobId: created.job?.jobId ?? created.jobId, ids };
  }

  /** The job's executions whose command was sent. */
  async sent(jobId: string): Promise<number> {
    const page = await this.api('GET', `/api/v1/jobs/${jobId}/executions?limit=1000`);
    return (page.items as { dispatchedAt?: number }[]).filter((e) => e.dispatchedAt !== undefined).length;
  }

  async executions(jobId: string): Promise<{ deviceId: string; status: string; dispatchedAt?: number; dueAt?: number }[]> {
    return (await this.api('GET', `/api/v1/jobs/${jobId}/executions?limit=1000`)).items;
  }

  async stop(): Promise<void> {
    await this.proc?.kill('SIGTERM');
    this.proc = undefined;
  }

  async close(): Promise<void> {
    await this.stop();
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** Waits until at least `n` of the job's commands were sent; resolves with the count. */
function sentAtLeast(s: SteppedServer, jobId: string, n: number, timeoutMs = 60_000): Promise<number> {
  return eventually(async () => {
    const sent = await s.sent(jobId);
    return sent >= n ? sent : undefined;
  }, timeoutMs, `${n} commands sent`);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let server: SteppedServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});
after(async () => server?.close());

describe("a rollout's rate when the server's clock steps", () => {
  it('goes on at its pace after the clock steps back an hour (it stalled for the hour)', async () => {
    server = await SteppedServer.create();
    const { jobId } = await server.rollout(60, { plan: { maxPerMinute: 60 } });
    const before = await sentAtLeast(server, jobId, 3);
    await server.step(-HOUR);
    await server.proc!.waitFor(/clock stepped back by 3600\.\d s/);
    // one a second: five more come within seconds; stalled, none for an hour
    const later = await sentAtLeast(server, jobId, before + 5);
    assert.ok(later < 60, 'still paced');
    assert.equal(server.proc!.output().match(/clock stepped/g)?.length, 1, 'one WARN for the step');
  });

  it('sends no more than its rate allows after the clock steps forward an hour (it sent everything at once)', async () => {
    server = await SteppedServer.create();
    const { jobId } = await server.rollout(60, { plan: { maxPerMinute: 60 } });
    await sentAtLeast(server, jobId, 3);
    const sentBefore = await server.sent(jobId);
    const t0 = performance.now();
    await server.step(HOUR);
    await server.proc!.waitFor(/clock stepped forward by 3600\.\d s/);
    await sleep(3000);
    const sentAfter = await server.sent(jobId);
    const minutes = (performance.now() - t0) / 60_000;
    // 60 a minute over the time measured, plus one tick's sends in flight: far below the 60 an hour allowed
    const bound = Math.ceil(60 * minutes) + 2;
    assert.ok(sentAfter - sentBefore <= bound, `${sentAfter - sentBefore} sent in ${(minutes * 60).toFixed(1)} s, at most ${bound} at 60 a minute`);
    assert.ok(sentAfter < 60, 'not all at once');
  });

  it('sends at most a minute\'s worth at once after the server was down while its clock moved on an hour', async () => {
    server = await SteppedServer.create();
    // 6 a minute: an hour down built up 360, more than the job's 60 devices
    const { jobId } = await server.rollout(60, { plan: { maxPerMinute: 6 } });
    await sentAtLeast(server, jobId, 1);
    await server.stop();
    // no instance runs to see the step: the restarted one's first reading is after it
    await server.step(HOUR);
    const t0 = performance.now();
    await server.start();
    await sentAtLeast(server, jobId, 2); // it sends again...
    await sleep(2000);
    const sent = await server.sent(jobId);
    const minutes = (performance.now() - t0) / 60_000;
    // ...one at once, a minute's worth the allowance holds (rateCap: 1 + 6), and 6 a minute since
    const bound = 1 + 7 + Math.ceil(6 * minutes);
    assert.ok(sent <= bound, `${sent} sent, at most ${bound}: the hour's allowance was not sent at once`);
  });
});

describe("deadlines when the server's clock steps forward", () => {
  it('moves on the in-progress timeouts the step passed over (they all timed out at once)', async () => {
    server = await SteppedServer.create();
    // offline devices: each has two hours to come back and finish
    const { jobId, ids } = await server.rollout(20, { timeouts: { inProgressSeconds: 7200 } });
    await sentAtLeast(server, jobId, ids.length);
    const before = await server.executions(jobId);
    // two hours and a minute: every deadline is passed over
    const step = 2 * HOUR + 60_000;
    await server.step(step);
    // the next ticks judge by the stepped clock; without the move every execution ended TIMED_OUT there
    await sleep(3000);
    const after = await server.executions(jobId);
    assert.deepEqual(after.map((e) => e.status), ids.map(() => 'QUEUED'), 'none timed out');
    for (const e of after) {
      const was = before.find((b) => b.deviceId === e.deviceId)!;
      // by the step as the server measured it: the file's, to the milliseconds between its reads of the two clocks
      assert.ok(Math.abs(e.dueAt! - (was.dueAt! + step)) < 1000, `${e.deviceId}: the deadline moved on by the step (${e.dueAt! - was.dueAt!} ms)`);
      // moved with what it is computed from: a report recomputing it keeps it
      assert.equal(e.dueAt, e.dispatchedAt! + 7_200_000, `${e.deviceId}: still two hours from its (moved) dispatch`);
    }
    assert.match(server.proc!.output(), /clock stepped forward by 7260\.\d s .*the 20 deadline\(s\) it passed over are moved on/);
  });
});
