/**
 * `npm run bench`: Updraft's benchmarks against the embedded system, each part in its own
 * process (server, simulator). Prints a table per scenario and, as the last line, one JSON
 * object with the headline figures. Never part of `npm test`.
 *
 *   npm run bench                       # 1,000 and 5,000 connected devices, replica ops, 1M-shadow store
 *   npm run bench -- --full             # also 15,000 connected and a 100,000-device cycling rollout
 *   npm run bench -- --sizes 2000 --rollout 20000 --store-shadows 0 --profile
 *   npm run bench -- --in-flight 0        # no in-flight window: every device commanded at once
 *   npm run bench -- --sim-nice 0         # the simulator at the server's priority (default: nice 10)
 *   npm run bench -- --sizes 30000 --sim-processes 2   # fleets beyond one process's 20,000 connections
 *   npm run bench -- --external           # on a private Mosquitto 2 and PostgreSQL (bench/external.ts)
 *   npm run bench -- --external --db postgres://localhost/postgres   # databases on that server
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { renderChart } from './chart.ts';
import { freshDatabase, stopExternal, usePostgres } from './external.ts';
import { profileOf, summarizeProfile, type FunctionShare, type PartShare } from './profile-summary.ts';
import { NODE_TUNING, SIM_TUNING } from './processes.ts';
import { connectedUpdate, cyclingRollout, profileWindows, rawBrokerRate, replicaOps, startServer, storeAtScale, type UpdateFigures } from './scenarios.ts';
import { round } from './stats.ts';

const { values } = parseArgs({
  options: {
    full: { type: 'boolean', default: false },
    sizes: { type: 'string' },
    rollout: { type: 'string' },
    concurrency: { type: 'string', default: '5000' },
    'in-flight': { type: 'string', default: '1000' },
    'store-shadows': { type: 'string' },
    'sim-processes': { type: 'string', default: '1' },
    'sim-nice': { type: 'string', default: '10' },
    profile: { type: 'boolean', default: false },
    external: { type: 'boolean', default: false },
    db: { type: 'string' },
    out: { type: 'string', default: 'bench-results' },
  },
});

const sizes = (values.sizes ?? (values.full ? '5000,15000' : '1000,5000')).split(',').map(Number).filter((n) => n > 0);
const rolloutSize = Number(values.rollout ?? (values.full ? 100_000 : 0));
const storeShadows = Number(values['store-shadows'] ?? 1_000_000);

function table(rows: Record<string, unknown>[]): string {
  if (rows.length === 0) return '';
  const keys = Object.keys(rows[0]!);
  const cells = [keys, ...rows.map((r) => keys.map((k) => String(r[k])))];
  const widths = keys.map((_, i) => Math.max(...cells.map((c) => c[i]!.length)));
  return cells.map((c) => c.map((v, i) => v.padStart(widths[i]!)).join('  ')).join('\n');
}

const log = (s: string) => process.stdout.write(s + '\n');
await mkdir(values.out!, { recursive: true });
const profileDir = values.profile ? `${values.out}/profiles` : undefined;
const external = values.external!;
if (values.db !== undefined) {
  if (!external) throw new Error('--db goes with --external');
  usePostgres(values.db);
}
const simProcesses = Number(values['sim-processes']);
if (!Number.isInteger(simProcesses) || simProcesses < 1) throw new Error('--sim-processes must be a positive integer');
// The simulated devices stand for a fleet on its own hardware, and share this machine's cores
// with the system under test: at equal priority the scheduler hands their work the server's
// core at the wrong moments. At nice 10 they yield to it: in alternating runs, 5,000 connected
// devices updated 17% faster for 12% less CPU per update, and a 10,000-device cycling rollout
// 39% faster for 24% less (docs/benchmarks.md). --sim-nice 0: equal priority, as before.
const simNice = Number(values['sim-nice']);
if (!Number.isInteger(simNice) || simNice < 0 || simNice > 19) throw new Error('--sim-nice must be an integer from 0 to 19');
const serverOptions = { ...(profileDir ? { profileDir } : {}), external, simProcesses, simNice };
// a failed scenario closes its server (finally blocks); the private PostgreSQL is stopped here
process.once('uncaughtException', (err) => {
  process.stderr.write(`${err.stack ?? err.message}\n`);
  void stopExternal().finally(() => process.exit(1));
});
const system = external ? 'external (Mosquitto 2 + PostgreSQL)' : 'embedded (aedes + SQLite)';

log(`updraft bench: ${system}, node ${process.version}, ${(await import('node:os')).cpus().length} cores, server and simulator with ${NODE_TUNING.join(' ')} (simulator ${SIM_TUNING.join(' ')}), simulator at nice ${simNice}, sizes ${sizes.join(', ')}${rolloutSize ? `, rollout ${rolloutSize}` : ''}`);
const updates: UpdateFigures[] = [];
let brokerRate = 0;
let ops: Awaited<ReturnType<typeof replicaOps>> | undefined;
for (const n of sizes) {
  const server = await startServer(serverOptions);
  try {
    updates.push(await connectedUpdate(server, n, Number(values['in-flight']) || undefined));
    log(`\n[1,5] ${n} connected devices take one update\n${table([updates.at(-1)! as unknown as Record<string, unknown>])}`);
    if (n === sizes.at(-1)) {
      brokerRate = await rawBrokerRate(server);
      log(`\n[ceiling] raw broker rate, same broker, mqtt.js clients publishing QoS 1, subscribed QoS 0 like devices: ${brokerRate} msgs/s`);
      ops = await replicaOps(server);
      log(`\n[3] replica operations under load (200 devices x 8 in flight)\n${table([ops])}`);
    }
  } finally {
    await server.close();
  }
}

let rollout: UpdateFigures | undefined;
if (rolloutSize > 0) {
  const server = await startServer(serverOptions);
  try {
    rollout = await cyclingRollout(server, rolloutSize, Number(values.concurrency));
    log(`\n[2] ${rolloutSize}-device rollout, devices cycling online (${values.concurrency} at once)\n${table([rollout as unknown as Record<string, unknown>])}`);
  } finally {
    await server.close();
  }
}

let store: Awaited<ReturnType<typeof storeAtScale>> | undefined;
if (storeShadows > 0) {
  const db = external ? await freshDatabase() : undefined;
  try {
    store = await storeAtScale(storeShadows, db?.url);
  } finally {
    await db?.drop();
  }
  log(`\n[4] ${external ? 'PostgreSQL' : 'embedded'} store with ${storeShadows.toLocaleString('en')} shadows\n${table([store])}`);
}
await stopExternal();

// --profile: where the server's and the simulator's time went in each update scenario (their
// profiles are written as they exit, so after the scenarios)
type Summary = { busySeconds: number; parts: PartShare[]; top: FunctionShare[] };
const profiles: { scenario: string; server?: Summary; sim?: Summary }[] = [];
for (const w of profileDir ? profileWindows : []) {
  const [serverFile, simFile] = [profileOf(profileDir!, w.serverPid), profileOf(profileDir!, w.simPid)];
  const server = serverFile ? summarizeProfile(serverFile, w.fromUs, w.toUs, w.updates) : undefined;
  const sim = simFile ? summarizeProfile(simFile, w.fromUs, w.toUs, w.updates) : undefined;
  profiles.push({ scenario: w.scenario, ...(server ? { server } : {}), ...(sim ? { sim } : {}) });
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

const chart = renderChart(updates.map((u) => ({ devices: u.devices, updatesPerS: u.updates_per_s, p99Ms: u.p99_ms })), `Updraft, ${system}: fleet update throughput and p99 latency`);
await writeFile(`${values.out}/chart.svg`, chart);
// the headline is the largest connected update; a run of other scenarios only (--sizes 0) has none
const head = updates.at(-1);
const summary = {
  system: external ? 'external' : 'embedded',
  sim_nice: simNice,
  ...(head
    ? {
        devices: head.devices,
        updates_per_s: head.updates_per_s,
        p50_ms: head.p50_ms,
        p99_ms: head.p99_ms,
        broker_msgs_per_s: brokerRate,
        msgs_per_update: head.msgs_per_update,
        efficiency: round((head.updates_per_s * head.msgs_per_update) / brokerRate, 2),
        cpu_ms_per_update: head.cpu_ms_per_update,
        server_loop_busy: head.server_loop_busy,
        server_rss_mb: head.server_rss_mb,
        rss_kb_per_device: head.rss_kb_per_device,
      }
    : {}),
  lost: Math.max(...updates.map((u) => u.lost), rollout?.lost ?? 0),
  replica_ops_per_s: ops?.ops_per_s,
  replica_p99_ms: ops?.p99_ms,
  ...(rollout ? { rollout_devices: rollout.devices, rollout_s: rollout.seconds, rollout_lost: rollout.lost, rollout_cpu_ms_per_device: rollout.cpu_ms_per_update, rollout_server_loop_busy: rollout.server_loop_busy } : {}),
  ...(store ? { store_shadows: store.shadows, store_insert_per_s: store.insert_per_s, store_point_reads_per_s: store.point_reads_per_s, store_fleet_scan_s: store.fleet_scan_s, store_job_create_s: store.job_create_s, store_job_count_ms: store.job_count_ms } : {}),
};
await writeFile(`${values.out}/latest.json`, JSON.stringify({ updates, rollout, ops, store, ...(profileDir ? { profiles } : {}), summary }, null, 2));
log(`\nchart: ${values.out}/chart.svg, raw figures: ${values.out}/latest.json`);
log(JSON.stringify(summary));
process.exit(0);
