/** The benchmark scenarios (issue: fleet simulator and benchmarks). Each returns figures. */
import { randomBytes, randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import mqtt from 'mqtt';
import pg from 'pg';
import { ApiClient } from '../src/cli/api-client.ts';
import { ALLOC_SAMPLER, startAllocSampling, stopAllocSampling } from './alloc-summary.ts';
import { monotonicUs, type ProfileWindow } from './profile-summary.ts';
import { registerFleet } from '../src/sim/register-fleet.ts';
import type { SimDevice } from '../src/sim/fleet-simulator.ts';
import { PostgresStore } from '../src/store/postgres-store.ts';
import { SqliteStore } from '../src/store/sqlite-store.ts';
import type { ExecutionRecord, ShadowRecord, StateStore } from '../src/store/state-store.ts';
import { freePort } from '../test/helpers/free-port.ts';
import { startExternal, type ExternalParts } from './external.ts';
import { SIM_TUNING, spawnUpdraft, type Child } from './processes.ts';
import { mustUndo } from './teardown.ts';
import { percentile, round } from './stats.ts';

/** A server in its own process on free ports, with an API client. */
export interface BenchServer {
  child: Child;
  api: ApiClient;
  /** Where devices connect. */
  mqttUrl: string;
  /** Where operator clients connect (the same broker; Mosquitto's service listener with --external). */
  serviceUrl: string;
  token: string;
  dir: string;
  /** Lets the devices registered so far into the broker (a no-op for the embedded one, which asks the registry). */
  admit(): Promise<void>;
  /** MQTT PUBLISH packets the broker has routed so far. */
  published(): Promise<number>;
  /** The server's event loop so far: time running code and time waiting for work, ms (GET /api/v1/metrics). */
  loop(): Promise<LoopTime>;
  /** The external broker's process (--external): its memory and CPU are reported beside the server's. */
  broker?: { rss(): number; cpuSeconds(): number };
  /** With --alloc: where the server and the simulator write their allocation profiles. */
  allocDir?: string;
  /**
   * Starts `updraft sim ...args` for this server: with its Node flags (--cpu-prof into the same
   * directory when profiling), `--processes N` (--sim-processes) and the simulator's niceness
   * (--sim-nice: the devices' work yields to the system under test). guard() watches it,
   * close() stops it.
   */
  sim(args: string[]): Child;
  /**
   * `phase`, unless the server or a simulator it started exits on its own first: then its
   * ChildExited at once. Every phase of a scenario runs under it (run.ts): a dead server
   * answers nothing, and a phase waiting for it would wait out its timeout (10 minutes for a
   * simulator to be ready) or, with nothing left to wake it, let Node exit mid-await.
   */
  guard<T>(phase: Promise<T>): Promise<T>;
  /** Stops the simulators it started and the server, and removes its data dir; rejects with the ChildExited of one that had died. */
  close(): Promise<void>;
}

/**
 * Starts `updraft server` on a fresh data dir: embedded, or with `external` on a private
 * Mosquitto and a fresh PostgreSQL database (bench/external.ts).
 */
export async function startServer(opts: { profileDir?: string; allocDir?: string; external?: boolean; simProcesses?: number; simNice?: number } = {}): Promise<BenchServer> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-bench-'));
  // what close() stops, as they start
  const parts: { child?: Child; ext?: ExternalParts } = {};
  const sims = new Set<Child>();
  let closing: Promise<void> | undefined;
  // once, whoever asks first: the run's own finally, or a failed or stopped run's teardown
  const close = () =>
    (closing ??= (async () => {
      try {
        // a phase that failed by guard() left its simulator running
        const stopped = await Promise.allSettled([...sims].map((s) => s.stop()));
        // a child that had died is reported (the server's death first: a simulator's follows from it)
        await parts.child?.stop();
        for (const r of stopped) if (r.status === 'rejected') throw r.reason;
      } finally {
        forget();
        await parts.ext?.stop();
        await rm(dir, { recursive: true, force: true });
      }
    })());
  // the data dir holds the fleet's secrets: removed however the run ends (teardown.ts)
  const forget = mustUndo(close, () => rmSync(dir, { recursive: true, force: true }));
  const [mqttPort, httpPort] = [await freePort(), await freePort()];
  // the allocation sampler reads its directory from the environment the processes inherit
  if (opts.allocDir) process.env.UPDRAFT_ALLOC_DIR = path.resolve(opts.allocDir);
  const nodeFlags = [...(opts.profileDir ? ['--cpu-prof', `--cpu-prof-dir=${opts.profileDir}`] : []), ...(opts.allocDir ? ['--import', ALLOC_SAMPLER] : [])];
  let ext: ExternalParts | undefined;
  if (opts.external) {
    // the broker must know the operator's password before the server connects to it
    const token = `updr_${randomBytes(24).toString('base64url')}`;
    await writeFile(path.join(dir, 'operator-token'), `${token}\n`, { mode: 0o600 });
    ext = parts.ext = await startExternal(token);
  }
  const child = (parts.child = spawnUpdraft(
    [
      'server', '--data-dir', dir, '--mqtt-port', String(mqttPort), '--http-port', String(httpPort), '--mqtt-host', '127.0.0.1', '--http-host', '127.0.0.1', '--mqtt-tls-port', '-1', '--log-level', 'warn', '--shadow-max-pending', '2000000',
      ...(ext ? ['--mqtt-url', ext.serviceUrl, '--db', ext.dbUrl] : []),
    ],
    nodeFlags,
  ));
  await child.waitFor(/HTTP API and downloads on/);
  const token = (await readFile(path.join(dir, 'operator-token'), 'utf8')).trim();
  const api = new ApiClient({ server: `http://127.0.0.1:${httpPort}`, token });
  const embeddedUrl = `mqtt://127.0.0.1:${mqttPort}`;
  // the first child of this server to exit on its own: what guard() races every phase against
  let died!: (err: Error) => void;
  const failed = new Promise<never>((_, reject) => (died = reject));
  failed.catch(() => undefined); // observed by guard()
  void child.died().catch(died);
  const simFlags = [...SIM_TUNING, ...nodeFlags];
  const simArgs = (opts.simProcesses ?? 1) > 1 ? ['--processes', String(opts.simProcesses)] : [];
  return {
    child,
    api,
    mqttUrl: ext?.deviceUrl ?? embeddedUrl,
    serviceUrl: ext?.serviceUrl ?? embeddedUrl,
    token,
    dir,
    ...(opts.allocDir ? { allocDir: path.resolve(opts.allocDir) } : {}),
    sim(args) {
      // the devices verify every update with the server's key, as provisioned devices do: the
      // simulator asks the server for it (the operator token read from the data dir, not argv)
      const trust = ['--server', `http://127.0.0.1:${httpPort}`, '--data-dir', dir];
      const sim = spawnUpdraft(['sim', ...args, ...trust, ...simArgs], simFlags, { nice: opts.simNice ?? 0 });
      sims.add(sim);
      void sim.died().catch(died);
      return sim;
    },
    guard: (phase) => Promise.race([phase, failed]),
    admit: async () => ext?.admit(api),
    ...(ext ? { broker: ext.broker } : {}),
    published: async () => (ext ? ext.published() : (await api.call<{ mqtt: { published: number } }>('GET', '/api/v1/metrics')).mqtt.published),
    loop: async () => (await api.call<{ eventLoop: LoopTime }>('GET', '/api/v1/metrics')).eventLoop,
    close,
  };
}

/** The update scenarios run so far, for the profile summaries of `--profile` (profile-summary.ts). */
export const profileWindows: ProfileWindow[] = [];

/** The update scenarios sampled by `--alloc` and their allocation profiles (alloc-summary.ts). */
export const allocWindows: { scenario: string; updates: number; server: string | undefined; sim: string | undefined }[] = [];

/** Cumulative event-loop time of the server, ms. */
export interface LoopTime {
  activeMs: number;
  idleMs: number;
}

/** The share of an interval the server's event loop spent running code: 1 is a saturated server. */
function loopBusy(a: LoopTime, b: LoopTime): number {
  const active = b.activeMs - a.activeMs;
  return round(active / Math.max(1, active + b.idleMs - a.idleMs), 2);
}

/** CPU milliseconds per succeeded update, from CPU seconds. */
function cpuPerUpdate(cpuSeconds: number, succeeded: number): number {
  return round((cpuSeconds * 1000) / Math.max(1, succeeded), 2);
}

/** Every execution of a job, page by page. */
async function jobExecutions(api: ApiClient, jobId: string): Promise<Execution[]> {
  const out: Execution[] = [];
  let after: string | undefined;
  for (;;) {
    const page = await api.call<{ items: Execution[]; next?: string }>('GET', `/api/v1/jobs/${jobId}/executions?limit=1000${after ? `&after=${encodeURIComponent(after)}` : ''}`);
    out.push(...page.items);
    if (!page.next) return out;
    after = page.next;
  }
}

/** What every update scenario reports from the server's execution records. */
function outcome(n: number, executions: Execution[], startMs: number, msgs: number) {
  const ok = executions.filter((x) => x.status === 'SUCCEEDED');
  const terminal = executions.filter((x) => x.status !== 'QUEUED' && x.status !== 'IN_PROGRESS').length;
  // reduce, not Math.max(...): a 100,000-element spread overflows the call stack
  const end = ok.reduce((m, x) => Math.max(m, x.updatedAt), startMs);
  const seconds = (end - startMs) / 1000;
  // why the others did not succeed, most frequent first: a bench that hides failures misleads
  const reasons = new Map<string, number>();
  for (const x of executions) if (x.status !== 'SUCCEEDED') reasons.set(`${x.status}: ${x.details?.error ?? '-'}`, (reasons.get(`${x.status}: ${x.details?.error ?? '-'}`) ?? 0) + 1);
  if (reasons.size > 0) process.stdout.write(`not succeeded: ${[...reasons].sort((a, b) => b[1] - a[1]).slice(0, 5).map(([r, c]) => `${c} x ${r}`).join('; ')}\n`);
  return { ok, succeeded: ok.length, lost: n - terminal, seconds, updates_per_s: round(ok.length / seconds, 0), msgs_per_update: round(msgs / Math.max(1, ok.length), 1) };
}

interface Execution {
  status: string;
  queuedAt: number;
  /** When the desired state (the command) was written: where the issue's per-device latency starts. */
  dispatchedAt?: number;
  updatedAt: number;
  details?: { error?: string };
}

/** Figures of one fleet update. */
export interface UpdateFigures {
  devices: number;
  succeeded: number;
  lost: number;
  seconds: number;
  updates_per_s: number;
  p50_ms: number;
  p99_ms: number;
  msgs_per_update: number;
  server_rss_mb: number;
  rss_kb_per_device: number;
  installs: number;
  /** CPU seconds the server and the simulator used during the update (2 cores: 2 per second at most). */
  server_cpu_s: number;
  sim_cpu_s: number;
  /**
   * The share of the update the server's event loop was running code (1 = saturated). Every
   * device message, store statement and download runs on that one thread: near 1, the
   * server's thread is the limit; well below it, something else is (the simulator, the cores).
   */
  server_loop_busy: number;
  /** Cycling: MQTT connections per device, and visits that ended without a command. */
  connects_per_device?: number;
  idle_visits?: number;
  /** Cycling: requests per device, reports (what runs, phases, outcome) and catch-up `get`s. */
  reports_per_device?: number;
  gets_per_device?: number;
  /** CPU of the external broker (--external). */
  broker_cpu_s?: number;
  /**
   * CPU milliseconds per device brought to SUCCEEDED, the whole system's: server, simulator
   * and external broker (not PostgreSQL). The other side of the throughput: N updates/s need
   * N x this / 1000 cores. It moves with the machine's speed as the rates do.
   */
  cpu_ms_per_update: number;
}

/**
 * Scenario 1 and 5: N connected devices take one update; server memory per connection. One
 * rollout job targets the whole fleet, with `maxInFlight` when given (the rollout setting
 * that bounds each device's wait: latency = in flight / throughput). Latency runs from the
 * device's desired state being written (the command) to its acceptance.
 */
export async function connectedUpdate(server: BenchServer, n: number, maxInFlight?: number): Promise<UpdateFigures> {
  const { api } = server;
  // with --external the connections are the broker's: its memory counts (server_rss_mb is both)
  const memory = () => server.child.rss() + (server.broker?.rss() ?? 0);
  const rssBefore = memory();
  const devices = await registerFleet(api, `c${n}-`, n);
  await server.admit();
  const file = path.join(server.dir, `devices-${n}.json`);
  await writeFile(file, JSON.stringify(devices));
  const sim = server.sim(['--devices-file', file, '--broker', server.mqttUrl, '--mode', 'connected', '--connect-rate', '4000']);
  try {
    await sim.waitFor(/sim: ready/, 600_000);
    await sleep(1500); // the devices' first reports settle
    const rssConnected = memory();
    await api.call('POST', `/api/v1/artifacts?name=fw-${n}&version=2.0.0`, randomBytes(1024));
    const m0 = await server.published();
    const cpu0 = [server.child.cpuSeconds(), sim.cpuSeconds(), server.broker?.cpuSeconds() ?? 0];
    const loop0 = await server.loop();
    const fromUs = monotonicUs();
    const pids = [server.child.proc.pid!, sim.proc.pid!];
    if (server.allocDir) startAllocSampling(pids);
    const r = await api.call<{ job: { jobId: string } }>('POST', '/api/v1/jobs', {
      artifact: `fw-${n}@2.0.0`,
      targets: { query: 'tags = sim' }, // a fresh server per size: the fleet just registered
      ...(maxInFlight ? { plan: { maxInFlight } } : {}),
    });
    const jobIds = [r.job.jobId];
    const done = await sim.waitFor(/sim: finished \d+ devices .* installs=(\d+)/, 600_000);
    const toUs = monotonicUs();
    const cpu1 = [server.child.cpuSeconds(), sim.cpuSeconds(), server.broker?.cpuSeconds() ?? 0];
    const loop1 = await server.loop();
    const allocFiles = server.allocDir ? await stopAllocSampling(pids, server.allocDir) : undefined;
    await sleep(500); // last acknowledgements recorded
    const m1 = await server.published();
    const executions: Execution[] = [];
    let createdAt = Infinity;
    for (const id of jobIds) {
      const r = await api.call<{ job: { createdAt: number } }>('GET', `/api/v1/jobs/${id}`);
      createdAt = Math.min(createdAt, r.job.createdAt);
      executions.push(...(await jobExecutions(api, id)));
    }
    const o = outcome(n, executions, createdAt, m1 - m0);
    profileWindows.push({ scenario: `${n} connected`, serverPid: server.child.proc.pid!, simPid: sim.proc.pid!, fromUs, toUs, updates: o.succeeded });
    if (allocFiles) allocWindows.push({ scenario: `${n} connected`, updates: o.succeeded, server: allocFiles.get(pids[0]!), sim: allocFiles.get(pids[1]!) });
    const latencies = o.ok.map((x) => x.updatedAt - (x.dispatchedAt ?? x.queuedAt));
    return {
      devices: n,
      succeeded: o.succeeded,
      lost: o.lost,
      seconds: round(o.seconds, 2),
      updates_per_s: o.updates_per_s,
      p50_ms: percentile(latencies, 50),
      p99_ms: percentile(latencies, 99),
      msgs_per_update: o.msgs_per_update,
      server_rss_mb: round(rssConnected / 2 ** 20, 0),
      rss_kb_per_device: round((rssConnected - rssBefore) / 1024 / n, 1),
      installs: Number(done[1]),
      server_cpu_s: round(cpu1[0]! - cpu0[0]!, 1),
      sim_cpu_s: round(cpu1[1]! - cpu0[1]!, 1),
      server_loop_busy: loopBusy(loop0, loop1),
      ...(server.broker ? { broker_cpu_s: round(cpu1[2]! - cpu0[2]!, 1) } : {}),
      cpu_ms_per_update: cpuPerUpdate(cpu1.reduce((t, c, i) => t + c - cpu0[i]!, 0), o.succeeded),
    };
  } finally {
    await sim.stop();
  }
}

/** Scenario 2: a rollout to a fleet larger than one process can hold open, devices cycling online. */
export async function cyclingRollout(server: BenchServer, n: number, concurrency: number): Promise<UpdateFigures> {
  const { api } = server;
  const devices = await registerFleet(api, `r${n}-`, n);
  await server.admit();
  const file = path.join(server.dir, `rollout-${n}.json`);
  await writeFile(file, JSON.stringify(devices));
  await api.call('POST', `/api/v1/artifacts?name=fw-r${n}&version=2.0.0`, randomBytes(1024));
  const m0 = await server.published();
  const ids = devices.map((d) => d.deviceId);
  const jobIds: string[] = [];
  const t0 = Date.now();
  for (let i = 0; i < ids.length; i += 5000) {
    const r = await api.call<{ job: { jobId: string } }>('POST', '/api/v1/deployments', { devices: ids.slice(i, i + 5000), artifact: `fw-r${n}@2.0.0` });
    jobIds.push(r.job.jobId);
  }
  const serverCpu0 = server.child.cpuSeconds();
  const brokerCpu0 = server.broker?.cpuSeconds() ?? 0;
  const loop0 = await server.loop();
  const sim = server.sim(['--devices-file', file, '--broker', server.mqttUrl, '--mode', 'cycling', '--concurrency', String(concurrency), '--connect-rate', '5000']);
  let simCpu = 0;
  try {
    // the simulator's own start (loading the code and the devices) is not the fleet's work
    await sim.waitFor(/sim: ready/, 600_000);
    const simCpu0 = sim.cpuSeconds();
    const fromUs = monotonicUs();
    const pids = [server.child.proc.pid!, sim.proc.pid!];
    if (server.allocDir) startAllocSampling(pids);
    const done = await sim.waitFor(/sim: finished \d+ devices (\{.*\}) installs=(\d+)/, 1_800_000);
    const toUs = monotonicUs();
    const simStats = JSON.parse(done[1]!) as { connects: number; idleVisits: number; reports: number; gets: number };
    simCpu = sim.cpuSeconds() - simCpu0;
    const serverCpu = server.child.cpuSeconds() - serverCpu0;
    const brokerCpu = server.broker ? server.broker.cpuSeconds() - brokerCpu0 : undefined;
    const loop1 = await server.loop();
    const allocFiles = server.allocDir ? await stopAllocSampling(pids, server.allocDir) : undefined;
    await sleep(500);
    const m1 = await server.published();
    const executions: Execution[] = [];
    for (const id of jobIds) executions.push(...(await jobExecutions(api, id)));
    const o = outcome(n, executions, t0, m1 - m0);
    profileWindows.push({ scenario: `${n} cycling`, serverPid: server.child.proc.pid!, simPid: sim.proc.pid!, fromUs, toUs, updates: o.succeeded });
    if (allocFiles) allocWindows.push({ scenario: `${n} cycling`, updates: o.succeeded, server: allocFiles.get(pids[0]!), sim: allocFiles.get(pids[1]!) });
    return {
      devices: n,
      succeeded: o.succeeded,
      lost: o.lost,
      seconds: round(o.seconds, 1),
      updates_per_s: o.updates_per_s,
      p50_ms: NaN, // devices are offline by design until their turn: latency from desired is not meaningful
      p99_ms: NaN,
      msgs_per_update: o.msgs_per_update,
      server_rss_mb: round(server.child.rss() / 2 ** 20, 0),
      rss_kb_per_device: NaN,
      installs: Number(done[2]),
      server_cpu_s: round(serverCpu, 1),
      sim_cpu_s: round(simCpu, 1),
      server_loop_busy: loopBusy(loop0, loop1),
      ...(brokerCpu !== undefined ? { broker_cpu_s: round(brokerCpu, 1) } : {}),
      cpu_ms_per_update: cpuPerUpdate(serverCpu + simCpu + (brokerCpu ?? 0), o.succeeded),
      // visits per device (connect, subscribe, catch up, leave); those with no command yet were wasted
      connects_per_device: round(simStats.connects / n, 2),
      idle_visits: simStats.idleVisits,
      // what each device asked: its report of what runs, its phases and outcome, and the catch-up
      // `get` it skips when its command came with the first report's answers
      reports_per_device: round(simStats.reports / n, 2),
      gets_per_device: round(simStats.gets / n, 2),
    };
  } finally {
    await sim.stop();
  }
}

/**
 * The broker's own ceiling: operator clients (mqtt.js) publishing to themselves through the
 * same broker, the way devices use it: publishing at QoS 1, subscribed at QoS 0 (the agent's
 * subscriptions; a QoS 1 subscription adds a PUBACK per delivery and measured 20-30% lower).
 */
export async function rawBrokerRate(server: BenchServer, clients = 100, window = 20, seconds = 5): Promise<number> {
  const conns = await Promise.all(Array.from({ length: clients }, (_, i) => mqtt.connectAsync(server.serviceUrl, { clientId: `raw-${i}-${randomUUID().slice(0, 8)}`, username: 'operator', password: server.token, reconnectPeriod: 0 })));
  let received = 0;
  let running = true;
  const payload = Buffer.alloc(200, 'x');
  await Promise.all(
    conns.map(async (c, i) => {
      const topic = `bench/raw/${i}`;
      await c.subscribeAsync(topic, { qos: 0 });
      c.on('message', () => received++);
    }),
  );
  const start = Date.now();
  const pumps = conns.map(async (c, i) => {
    const topic = `bench/raw/${i}`;
    const inflight = new Set<Promise<unknown>>();
    while (running) {
      const p = c.publishAsync(topic, payload, { qos: 1 }).finally(() => inflight.delete(p));
      inflight.add(p);
      if (inflight.size >= window) await Promise.race(inflight);
    }
    await Promise.allSettled(inflight);
  });
  await sleep(seconds * 1000);
  running = false;
  const counted = received;
  const elapsed = (Date.now() - start) / 1000;
  await Promise.all(pumps);
  await Promise.all(conns.map((c) => c.endAsync()));
  return round(counted / elapsed, 0);
}

/** Scenario 3: replica operations per second and latency, devices updating their own shadows. */
export async function replicaOps(server: BenchServer, clients = 200, window = 8, seconds = 5): Promise<{ ops_per_s: number; p50_ms: number; p99_ms: number }> {
  const devices: SimDevice[] = await registerFleet(server.api, 'ops-', clients);
  await server.admit();
  const conns = await Promise.all(devices.map((d) => mqtt.connectAsync(server.mqttUrl, { clientId: d.deviceId, username: d.deviceId, password: d.secret, reconnectPeriod: 0 })));
  const latencies: number[] = [];
  let running = true;
  const loops = await Promise.all(
    conns.map(async (c, i) => {
      const id = devices[i]!.deviceId;
      await c.subscribeAsync([`state/${id}/update/accepted`, `state/${id}/update/rejected`], { qos: 1 });
      const pending = new Map<string, { t: number; resolve: () => void }>();
      c.on('message', (_topic, payload) => {
        const token = (JSON.parse(payload.toString()) as { clientToken?: string }).clientToken;
        const p = token === undefined ? undefined : pending.get(token);
        if (!p || token === undefined) return;
        pending.delete(token);
        if (running) latencies.push(performance.now() - p.t);
        p.resolve();
      });
      let k = 0;
      // `window` requests in flight per device, each answered before the next is sent
      return () =>
        Array.from({ length: window }, async () => {
          while (running) {
            const token = `${i}-${k++}`;
            await new Promise<void>((resolve) => {
              pending.set(token, { t: performance.now(), resolve });
              c.publish(`state/${id}/update`, JSON.stringify({ state: { reported: { counter: k } }, clientToken: token }), { qos: 1 });
            });
          }
        });
    }),
  );
  const start = Date.now();
  const all = loops.flatMap((run) => run());
  await sleep(seconds * 1000);
  running = false;
  // each loop ends with the answer to its last request: a server that stalls (or died, which
  // guard() reports first) is a failed run, not a finished one with the answers it gave
  const drained = await Promise.race([Promise.all(all).then(() => true), sleep(30_000).then(() => false)]);
  if (!drained) throw new Error(`replica operations: requests still unanswered 30 s after the ${seconds} s window; the server stalled`);
  const elapsed = (Date.now() - start) / 1000;
  await Promise.all(conns.map((c) => c.endAsync(true)));
  return { ops_per_s: round(latencies.length / Math.min(elapsed, seconds), 0), p50_ms: round(percentile(latencies, 50), 1), p99_ms: round(percentile(latencies, 99), 1) };
}

/**
 * Scenario 4: a store with many shadows: insert, point read, fleet query. The embedded
 * SQLite file, or PostgreSQL when `pgUrl` names an (empty) database.
 */
export async function storeAtScale(
  count: number,
  pgUrl?: string,
): Promise<{ shadows: number; insert_per_s: number; point_reads_per_s: number; fleet_scan_s: number; job_create_s: number; job_create_max_stall_ms: number; job_count_ms: number; db_mb: number }> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-bench-store-'));
  const forget = mustUndo(
    () => rm(dir, { recursive: true, force: true }),
    () => rmSync(dir, { recursive: true, force: true }),
  );
  const store: StateStore = pgUrl ? new PostgresStore({ url: pgUrl }) : new SqliteStore({ path: path.join(dir, 'bench.db') });
  await store.start();
  try {
    const record = (i: number): ShadowRecord => ({
      deviceId: `d${String(i).padStart(7, '0')}`,
      name: '',
      version: 1,
      deleted: false,
      state: { reported: { software: { name: 'fw', version: i % 10 === 0 ? '1.0.0' : '2.0.0', status: 'SUCCESS', jobId: 'j' } } },
      metadata: { reported: { software: { name: { timestamp: 1 }, version: { timestamp: 1 }, status: { timestamp: 1 }, jobId: { timestamp: 1 } } } },
      timestamp: 1,
    });
    let t = performance.now();
    for (let i = 0; i < count; i += 10_000) {
      await Promise.all(Array.from({ length: Math.min(10_000, count - i) }, (_, k) => store.putShadow(record(i + k), 0)));
    }
    const insert = count / ((performance.now() - t) / 1000);
    // PostgreSQL plans the reads below from table statistics, which autovacuum gathers about
    // a minute after a bulk load, if by then: without them it sorted a bitmap scan of the
    // rest of the table for every page of the fleet query (90 s instead of 5.4 s at a million,
    // measured), so the figure depended on autovacuum's timing. An operator runs ANALYZE
    // after a large import (docs/deployment.md); so does the bench.
    if (pgUrl) await withPostgres(pgUrl, (c) => c.query('ANALYZE'));
    const reads = Math.min(100_000, count);
    t = performance.now();
    for (let i = 0; i < reads; i++) await store.getShadow(`d${String(Math.floor(Math.random() * count)).padStart(7, '0')}`, '');
    const pointReads = reads / ((performance.now() - t) / 1000);
    // fleet query: which devices run what, by paging through every shadow
    t = performance.now();
    const versions = new Map<string, number>();
    let after: string | undefined;
    for (;;) {
      const page = await store.listShadows({ limit: 5000, ...(after ? { after } : {}) });
      for (const s of page.items) {
        const v = String((s.state.reported?.software as { version?: string } | undefined)?.version);
        versions.set(v, (versions.get(v) ?? 0) + 1);
      }
      if (!page.next) break;
      after = page.next;
    }
    const scan = (performance.now() - t) / 1000;
    if ((versions.get('1.0.0') ?? 0) !== Math.ceil(count / 10)) throw new Error('fleet query miscounted');
    const job = await jobAtScale(store, count);
    const size = pgUrl ? await postgresDatabaseBytes(pgUrl) : (await import('node:fs/promises').then((fs) => fs.stat(path.join(dir, 'bench.db')))).size;
    return { shadows: count, insert_per_s: round(insert, 0), point_reads_per_s: round(pointReads, 0), fleet_scan_s: round(scan, 2), ...job, db_mb: round(size / 2 ** 20, 0) };
  } finally {
    await store.stop();
    await rm(dir, { recursive: true, force: true });
    forget();
  }
}

/**
 * A job of `count` devices, created the way the job service does (one createJob), then counted
 * the way the rollout engine does at each tick, and counted again after 10,000 dispatches.
 * `job_create_max_stall_ms`: the longest the event loop was held meanwhile (SQLite writes
 * synchronously; with PostgreSQL the process keeps serving).
 */
async function jobAtScale(store: StateStore, count: number): Promise<{ job_create_s: number; job_create_max_stall_ms: number; job_count_ms: number }> {
  const now = Date.now();
  const jobId = 'bench-job';
  const executions: ExecutionRecord[] = Array.from({ length: count }, (_, i) => ({ jobId, deviceId: `d${String(i).padStart(7, '0')}`, status: 'QUEUED', details: {}, queuedAt: now, updatedAt: now, version: 1, ...(i % 4 > 0 ? { wave: i % 4 } : {}) }));
  // the longest gap between ticks of a 10 ms timer while the job is created
  let last = performance.now();
  let stall = 0;
  const ticker = setInterval(() => {
    stall = Math.max(stall, performance.now() - last);
    last = performance.now();
  }, 10);
  let t = performance.now();
  await store.createJob({ jobId, artifactName: 'fw', artifactVersion: '2.0.0', status: 'IN_PROGRESS', createdAt: now }, executions);
  const create = (performance.now() - t) / 1000;
  await sleep(20); // the tick after the creation: it sees a gap that lasted until the end
  clearInterval(ticker);
  const times: number[] = [];
  for (let k = 0; k < 5; k++) {
    t = performance.now();
    await store.countExecutions(jobId);
    times.push(performance.now() - t);
  }
  // a sanity check, as for the fleet query: 10,000 dispatched, and the counts say so
  const sent = executions.slice(0, Math.min(10_000, count));
  await Promise.all(sent.map((e) => store.updateExecution({ ...e, dispatchedAt: now, version: 2 })));
  const counts = await store.countExecutions(jobId);
  if (counts.reduce((n, c) => n + c.dispatched, 0) !== sent.length || counts.reduce((n, c) => n + c.count, 0) !== count) throw new Error('execution counts wrong');
  return { job_create_s: round(create, 1), job_create_max_stall_ms: round(stall, 0), job_count_ms: round(times.sort((a, b) => a - b)[2]!, 2) };
}

async function postgresDatabaseBytes(url: string): Promise<number> {
  return withPostgres(url, async (c) => Number((await c.query<{ size: string }>('SELECT pg_database_size(current_database()) AS size')).rows[0]!.size));
}

/** Runs `fn` with a client of its own on `url`. */
async function withPostgres<T>(url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
