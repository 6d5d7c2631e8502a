/**
 * `npm run bench`: Updraft's benchmarks against the embedded system, each part in its own
 * process (server, simulator). Prints a table per scenario and, as the last line, one JSON
 * object with the headline figures. Never part of `npm test`.
 *
 *   npm run bench                       # 1,000 and 5,000 connected devices, replica ops, 1M-shadow store
 *   npm run bench -- --full             # also 15,000 connected and a 100,000-device cycling rollout
 *   npm run bench -- --sizes 2000 --rollout 20000 --store-shadows 0 --profile
 *   npm run bench -- --full --repeat 3  # every update scenario three times: medians, and their ranges
 *   npm run bench -- --sizes 5000 --store-shadows 0 --alloc   # what the server and simulator allocate per update
 *   npm run bench -- --in-flight 0        # no in-flight window: every device commanded at once
 *   npm run bench -- --sim-nice 0         # the simulator at the server's priority (default: nice 10)
 *   npm run bench -- --sizes 30000 --sim-processes 2   # fleets beyond one process's 20,000 connections
 *   npm run bench -- --external           # on a private Mosquitto 2 and PostgreSQL (bench/external.ts)
 *   npm run bench -- --external --db postgres://postgres@localhost/postgres   # databases on that server (the URL names its user)
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { renderChart } from './chart.ts';
import { freshDatabase, stopExternal, usePostgres } from './external.ts';
import { summarizeAllocations, type AllocPart, type AllocSite } from './alloc-summary.ts';
import { profileOf, summarizeProfile, type FunctionShare, type PartShare, type ProfileWindow } from './profile-summary.ts';
import { ChildExited, NODE_TUNING, SIM_TUNING } from './processes.ts';
import { allocWindows, connectedUpdate, cyclingRollout, profileWindows, rawBrokerRate, replicaOps, startServer, storeAtScale, type BenchServer, type UpdateFigures } from './scenarios.ts';
import { combineRuns, round } from './stats.ts';
import { undoAll } from './teardown.ts';
import { judgeTargets } from './targets.ts';
import { BenchUsageError, parseBenchArgs, type BenchOptions } from './options.ts';

// every option is checked before anything starts: one line and exit 2 for a bad one
let options: BenchOptions;
try {
  options = parseBenchArgs(process.argv.slice(2));
} catch (err) {
  if (!(err instanceof BenchUsageError)) throw err;
  process.stderr.write(`bench: error: ${err.message}\n`);
  process.exit(2);
}
const values = options;
// smallest first (parseBenchArgs sorts them): the last is the largest, the headline's
const { sizes, rollout: rolloutSize, storeShadows } = options;

function table(rows: Record<string, unknown>[]): string {
  if (rows.length === 0) return '';
  const keys = Object.keys(rows[0]!);
  const cells = [keys, ...rows.map((r) => keys.map((k) => String(r[k])))];
  const widths = keys.map((_, i) => Math.max(...cells.map((c) => c[i]!.length)));
  return cells.map((c) => c.map((v, i) => v.padStart(widths[i]!)).join('  ')).join('\n');
}

const log = (s: string) => process.stdout.write(s + '\n');
await mkdir(values.out, { recursive: true });
const profileDir = values.profile ? `${values.out}/profiles` : undefined;
// --alloc: V8's sampling heap profiler, freed objects included, in each update scenario's window
const allocDir = values.alloc ? `${values.out}/profiles` : undefined;
if (allocDir) await mkdir(allocDir, { recursive: true });
const external = values.external;
if (values.db !== undefined) usePostgres(values.db);
// --repeat N: the update scenarios run N rounds, one after the other, and each figure is the
// median of the rounds. The machine moves single runs by up to a fifth from one minute to the
// next, and rounds (not N runs of one scenario in a row) spread a slow minute over the
// scenarios. The store scenario runs once: it varies less, and takes minutes.
const { repeat, simProcesses } = options;
// The simulated devices stand for a fleet on its own hardware, and share this machine's cores
// with the system under test: at equal priority the scheduler hands their work the server's
// core at the wrong moments. At nice 10 they yield to it: in alternating runs, 5,000 connected
// devices updated 17% faster for 12% less CPU per update, and a 10,000-device cycling rollout
// 39% faster for 24% less (docs/benchmarks.md). --sim-nice 0: equal priority, as before.
const { simNice } = options;
const serverOptions = { ...(profileDir ? { profileDir } : {}), ...(allocDir ? { allocDir } : {}), external, simProcesses, simNice };
/**
 * Ends a failed or stopped run, once, whoever comes first: says why, stops what is still
 * running (servers, simulators and their processes, the private PostgreSQL), removes the
 * temporary directories and drops the databases made on the server --db names (teardown.ts),
 * then exits with `code`.
 */
let ending = false;
function end(code: number, why: string): void {
  if (ending) return;
  ending = true;
  process.stderr.write(why);
  void undoAll()
    .then(() => stopExternal())
    .catch(() => undefined)
    .finally(() => process.exit(code));
}
/**
 * The phase running (`[3] replica operations`), which every failure line names: set by
 * inPhase(), cleared after the scenarios. A server's close() that fails after its last phase
 * (a child that died meanwhile) fails that phase: its figures are not to be trusted.
 */
let phase: string | undefined;
/** Runs `work` as phase `name`: under `server`'s guard when given (a child dying fails it at once). */
function inPhase<T>(name: string, work: () => Promise<T>, server?: BenchServer): Promise<T> {
  phase = name;
  return server ? server.guard(work()) : work();
}
// A failure is one line naming its phase: `bench: error: [3] replica operations: updraft
// server exited unexpectedly (code 1)`. Under it, for a server or simulator that exited with
// an error, the end of its output (the reason); for anything else, the stack.
process.on('uncaughtException', (err) => {
  const line = `bench: error: ${phase ? `${phase}: ` : ''}${(err instanceof Error ? err.message : String(err)).split('\n')[0]}\n`;
  if (err instanceof ChildExited) {
    const tail = err.code !== null && err.code !== 0 ? err.tail.trimEnd().split('\n').slice(-20) : [];
    end(1, `${line}${tail.length > 0 ? `its output ended with:\n${tail.map((l) => `  ${l}\n`).join('')}` : ''}`);
  } else {
    end(1, `${line}${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  }
});
// `timeout`, a CI runner's cancel or `kill` send SIGTERM to this process alone: without this its
// children ran on (Ctrl-C's SIGINT reaches them too, and they stopped, leaving the data dirs).
// A second signal exits at once: the children still running then get a SIGTERM (teardown.ts).
for (const [signal, code] of [['SIGTERM', 143], ['SIGINT', 130]] as const) {
  process.on(signal, () => {
    if (ending) process.exit(code);
    end(code, `bench: ${signal}: stopping the server and the simulator, removing temporary directories (again to stop at once)\n`);
  });
}
const system = external ? 'external (Mosquitto 2 + PostgreSQL)' : 'embedded (aedes + SQLite)';

log(`updraft bench: ${system}, node ${process.version}, ${(await import('node:os')).cpus().length} cores, server and simulator with ${NODE_TUNING.join(' ')} (simulator ${SIM_TUNING.join(' ')}), simulator at nice ${simNice}, sizes ${sizes.join(', ')}${rolloutSize ? `, rollout ${rolloutSize}` : ''}`);
/** One round of the update scenarios: each connected size (smallest first), the ceiling and replica operations (on the largest size's server), the cycling rollout. */
interface Round {
  updates: UpdateFigures[];
  brokerRate: number;
  ops?: Awaited<ReturnType<typeof replicaOps>>;
  rollout?: UpdateFigures;
}
const rounds: Round[] = [];
for (let r = 1; r <= repeat; r++) {
  const tag = repeat > 1 ? ` (round ${r} of ${repeat})` : '';
  const run: Round = { updates: [], brokerRate: 0 };
  const windows = profileWindows.length;
  for (const n of sizes) {
    const connectedPhase = `[1,5] ${n} connected${tag}`;
    const server = await inPhase(connectedPhase, () => startServer(serverOptions));
    try {
      run.updates.push(await inPhase(connectedPhase, () => connectedUpdate(server, n, options.inFlight), server));
      log(`\n[1,5] ${n} connected devices take one update${tag}\n${table([run.updates.at(-1)! as unknown as Record<string, unknown>])}`);
      if (n === sizes.at(-1)) {
        run.brokerRate = await inPhase(`[ceiling]${tag}`, () => rawBrokerRate(server), server);
        log(`\n[ceiling] raw broker rate, same broker, mqtt.js clients publishing QoS 1, subscribed QoS 0 like devices${tag}: ${run.brokerRate} msgs/s`);
        run.ops = await inPhase(`[3] replica operations${tag}`, () => replicaOps(server), server);
        log(`\n[3] replica operations under load (200 devices x 8 in flight)${tag}\n${table([run.ops])}`);
      }
    } finally {
      await server.close();
    }
  }
  if (rolloutSize > 0) {
    const rolloutPhase = `[2] ${rolloutSize}-device rollout${tag}`;
    const server = await inPhase(rolloutPhase, () => startServer(serverOptions));
    try {
      run.rollout = await inPhase(rolloutPhase, () => cyclingRollout(server, rolloutSize, options.concurrency), server);
      log(`\n[2] ${rolloutSize}-device rollout, devices cycling online (${values.concurrency} at once)${tag}\n${table([run.rollout as unknown as Record<string, unknown>])}`);
    } finally {
      await server.close();
    }
  }
  for (const w of profileWindows.slice(windows)) w.scenario += tag;
  rounds.push(run);
}

let store: Awaited<ReturnType<typeof storeAtScale>> | undefined;
if (storeShadows > 0) {
  store = await inPhase('[4] store', async () => {
    const db = external ? await freshDatabase() : undefined;
    try {
      return await storeAtScale(storeShadows, db?.url);
    } finally {
      await db?.drop();
    }
  });
  log(`\n[4] ${external ? 'PostgreSQL' : 'embedded'} store with ${storeShadows.toLocaleString('en')} shadows\n${table([store])}`);
}
phase = undefined;
await stopExternal();

// --profile: where the server's and the simulator's time went in each update scenario (their
// profiles are written as they exit, so after the scenarios)
type Summary = { busySeconds: number; parts: PartShare[]; top: FunctionShare[] };
// the window and the files go into latest.json too, for reading the profiles further by hand
const profiles: { scenario: string; window: ProfileWindow; files: { server?: string; sim?: string }; server?: Summary; sim?: Summary }[] = [];
for (const w of profileDir ? profileWindows : []) {
  const [serverFile, simFile] = [profileOf(profileDir!, w.serverPid), profileOf(profileDir!, w.simPid)];
  const server = serverFile ? summarizeProfile(serverFile, w.fromUs, w.toUs, w.updates) : undefined;
  const sim = simFile ? summarizeProfile(simFile, w.fromUs, w.toUs, w.updates) : undefined;
  const files = { ...(serverFile ? { server: serverFile } : {}), ...(simFile ? { sim: simFile } : {}) };
  profiles.push({ scenario: w.scenario, window: w, files, ...(server ? { server } : {}), ...(sim ? { sim } : {}) });
  const names = [...new Set([...(server?.parts ?? []), ...(sim?.parts ?? [])].map((x) => x.part))];
  const cell = (of: PartShare[] | undefined, name: string) => of?.find((x) => x.part === name);
  const rows = names.map((name) => {
    const [a, b] = [cell(server?.parts, name), cell(sim?.parts, name)];
    return { part: name, server_pct: a?.share ?? 0, server_us_per_update: a?.usPerUpdate ?? 0, sim_pct: b?.share ?? 0, sim_us_per_update: b?.usPerUpdate ?? 0 };
  });
  log(`\n[profile] ${w.scenario}: where the busy time went (server ${server?.busySeconds ?? '?'} s, simulator ${sim?.busySeconds ?? '?'} s busy in the window; self time by part)\n${table(rows)}`);
  for (const [who, of] of [['server', server], ['simulator', sim]] as const) {
    if (of) log(`\n[profile] ${w.scenario}, ${who}: the functions with the most self time\n${table(of.top.map((f) => ({ pct: f.share, us_per_update: f.usPerUpdate, part: f.part, function: f.fn })))}`);
  }
}

// --alloc: what the server and the simulator allocated per update in each update scenario
type AllocSummary = { bytesPerUpdate: number; parts: AllocPart[]; top: AllocSite[] };
const allocations: { scenario: string; files: { server?: string; sim?: string }; server?: AllocSummary; sim?: AllocSummary }[] = [];
for (const w of allocWindows) {
  const server = w.server ? summarizeAllocations(w.server, w.updates) : undefined;
  const sim = w.sim ? summarizeAllocations(w.sim, w.updates) : undefined;
  allocations.push({ scenario: w.scenario, files: { ...(w.server ? { server: w.server } : {}), ...(w.sim ? { sim: w.sim } : {}) }, ...(server ? { server } : {}), ...(sim ? { sim } : {}) });
  const kb = (b: number | undefined) => (b === undefined ? '?' : round(b / 1024, 1));
  const names = [...new Set([...(server?.parts ?? []), ...(sim?.parts ?? [])].map((x) => x.part))];
  const rows = names.map((name) => {
    const [a, b] = [server?.parts.find((x) => x.part === name), sim?.parts.find((x) => x.part === name)];
    return { part: name, server_pct: a?.share ?? 0, server_bytes_per_update: a?.bytesPerUpdate ?? 0, sim_pct: b?.share ?? 0, sim_bytes_per_update: b?.bytesPerUpdate ?? 0 };
  });
  log(`\n[alloc] ${w.scenario}: what was allocated per update, freed or not (server ${kb(server?.bytesPerUpdate)} KB, simulator ${kb(sim?.bytesPerUpdate)} KB; by part)\n${table(rows)}`);
  for (const [who, of] of [['server', server], ['simulator', sim]] as const) {
    if (of) log(`\n[alloc] ${w.scenario}, ${who}: the largest allocation sites\n${table(of.top.map((x) => ({ pct: x.share, bytes_per_update: x.bytesPerUpdate, part: x.part, site: x.site })))}`);
  }
}

/** The headline figures of one round: the largest connected update, the ceiling, the replica, the rollout, the store. */
function summaryOf(r: Round) {
  // the headline is the largest connected update (sizes run smallest first); a run of other
  // scenarios only (--sizes 0) has none
  const head = r.updates.at(-1);
  return {
    system: external ? 'external' : 'embedded',
    sim_nice: simNice,
    ...(head
      ? {
          devices: head.devices,
          updates_per_s: head.updates_per_s,
          p50_ms: head.p50_ms,
          p99_ms: head.p99_ms,
          broker_msgs_per_s: r.brokerRate,
          msgs_per_update: head.msgs_per_update,
          efficiency: round((head.updates_per_s * head.msgs_per_update) / r.brokerRate, 2),
          cpu_ms_per_update: head.cpu_ms_per_update,
          server_loop_busy: head.server_loop_busy,
          server_rss_mb: head.server_rss_mb,
          rss_kb_per_device: head.rss_kb_per_device,
        }
      : {}),
    lost: Math.max(...r.updates.map((u) => u.lost), r.rollout?.lost ?? 0),
    replica_ops_per_s: r.ops?.ops_per_s,
    replica_p99_ms: r.ops?.p99_ms,
    ...(r.rollout ? { rollout_devices: r.rollout.devices, rollout_s: r.rollout.seconds, rollout_lost: r.rollout.lost, rollout_cpu_ms_per_device: r.rollout.cpu_ms_per_update, rollout_server_loop_busy: r.rollout.server_loop_busy } : {}),
    ...(store ? { store_shadows: store.shadows, store_insert_per_s: store.insert_per_s, store_point_reads_per_s: store.point_reads_per_s, store_fleet_scan_s: store.fleet_scan_s, store_job_create_s: store.job_create_s, store_job_count_ms: store.job_count_ms } : {}),
  };
}

// --repeat N: each figure is the median of the rounds, `lost` the worst round's (it must be 0
// in every one); the JSON line gives the range of the figures that move with the machine
const worst = ['lost', 'rollout_lost'];
const updates = sizes.map((_, i) => combineRuns(rounds.map((r) => r.updates[i]!), { worst }).combined);
const rollout = rolloutSize > 0 ? combineRuns(rounds.map((r) => r.rollout!), { worst }).combined : undefined;
const ops = rounds[0]!.ops ? combineRuns(rounds.map((r) => r.ops!)).combined : undefined;
const RANGED = ['updates_per_s', 'p99_ms', 'broker_msgs_per_s', 'efficiency', 'cpu_ms_per_update', 'rss_kb_per_device', 'replica_ops_per_s', 'rollout_s'];
const { combined, ranges } = combineRuns(rounds.map(summaryOf), { worst, ranges: RANGED });
const summary = { ...combined, ...(repeat > 1 ? { runs: repeat, ranges } : {}) };
if (repeat > 1) {
  const of = (figures: UpdateFigures[]) => table(figures as unknown as Record<string, unknown>[]);
  if (updates.length > 0) log(`\n[median of ${repeat} rounds] connected updates (lost: the worst round)\n${of(updates)}`);
  if (rollout) log(`\n[median of ${repeat} rounds] ${rolloutSize}-device cycling rollout (lost: the worst round)\n${of([rollout])}`);
  log(`\n[range of ${repeat} rounds] ${Object.entries(ranges).map(([k, [lo, hi]]) => `${k} ${lo}-${hi}`).join(', ')}`);
}

// the issue's targets, judged on this run's figures (the medians with --repeat)
const targets = judgeTargets({
  system: external ? 'external' : 'embedded',
  updates,
  ...(typeof summary.efficiency === 'number' ? { efficiency: summary.efficiency } : {}),
  ...(rollout ? { rollout: { devices: rollout.devices, seconds: rollout.seconds, lost: rollout.lost } } : {}),
  lost: summary.lost,
});
log(`\n[targets] the benchmark issue's targets for this 2-core machine, judged on this run${repeat > 1 ? `'s medians` : ''}\n${table(targets as unknown as Record<string, unknown>[])}`);

const chart = renderChart(updates.map((u) => ({ devices: u.devices, updatesPerS: u.updates_per_s, p99Ms: u.p99_ms })), `Updraft, ${system}: fleet update throughput and p99 latency${repeat > 1 ? ` (median of ${repeat} rounds)` : ''}`);
await writeFile(`${values.out}/chart.svg`, chart);
await writeFile(`${values.out}/latest.json`, JSON.stringify({ updates, rollout, ops, store, ...(repeat > 1 ? { rounds } : {}), ...(profileDir ? { profiles } : {}), ...(allocDir ? { allocations } : {}), targets, summary }, null, 2));
log(`\nchart: ${values.out}/chart.svg, raw figures: ${values.out}/latest.json`);
log(JSON.stringify(summary));
process.exit(0);
