/** Smoke runs of the fleet simulator against a real server (a few dozen devices). */
import assert from 'node:assert/strict';
import { createPublicKey, generateKeyPairSync, randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { connect, createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ApiClient } from '../../src/cli/api-client.ts';
import { ConnectPacer, type PacerClock } from '../../src/sim/connect-pacer.ts';
import { FleetSimulator, SIM_DEFAULTS, type SimDevice, type SimTrust } from '../../src/sim/fleet-simulator.ts';
import { registerFleet } from '../../src/sim/register-fleet.ts';
import { deviceStateReader } from '../../src/sim/device-state.ts';
import { certifySigningKey, rotateRoot } from '../../src/signing/root-key.ts';
import { keyIdOf, signingKeyPaths } from '../../src/signing/signing-key.ts';
import { parseFirstIndex, sharesOf, sliceOf } from '../../src/sim/sim-processes.ts';
import { eventually, runCli, startCli, type CliProcess } from '../helpers/cli.ts';
import { freePort } from '../helpers/free-port.ts';
import { TestClient } from '../helpers/mqtt-client.ts';
import { registerDevice, startTestServer, type TestServer } from '../helpers/server.ts';

/** What a device provisioned for `t` trusts (`updraft device register --save`): the server's signing key, parsed once for the whole fleet. */
function trustOf(t: TestServer): SimTrust {
  return { signingPublicKey: createPublicKey(t.server.security.signingKey.publicKeyPem) };
}

/** The live child processes of `pid` and their command lines (Linux /proc). */
function childProcesses(pid: number): { pid: number; cmd: string }[] {
  const out: { pid: number; cmd: string }[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      // the field after the parenthesized name is the state, then the parent's pid
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push({ pid: Number(entry), cmd: readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').join(' ') });
    } catch {
      // the process ended meanwhile
    }
  }
  return out;
}

describe('fleet simulator', () => {
  let ts: TestServer;
  let api: ApiClient;
  before(async () => {
    ts = await startTestServer();
    api = new ApiClient({ server: ts.httpUrl, token: ts.token });
    await api.call('POST', '/api/v1/artifacts?name=fw&version=2.0.0', randomBytes(4096));
  });
  after(() => ts.close());

  async function rollout(devices: { deviceId: string }[]) {
    const r = await api.call<{ job: { jobId: string } }>('POST', '/api/v1/deployments', { devices: devices.map((d) => d.deviceId), artifact: 'fw@2.0.0' });
    return r.job.jobId;
  }

  async function outcome(jobId: string) {
    await ts.server.tracker.idle();
    const { executions } = await api.call<{ executions: { status: string }[] }>('GET', `/api/v1/jobs/${jobId}`);
    return executions.reduce<Record<string, number>>((acc, x) => ({ ...acc, [x.status]: (acc[x.status] ?? 0) + 1 }), {});
  }

  /**
   * The devices named `prefix...` that `query` selects on the server (sorted), once each has
   * reported its agent (`reported.agent`: the first report of each connection carries it).
   */
  async function trusting(query: string, prefix: string): Promise<string[]> {
    await eventually(async () => ((await selected('not reported.agent.trust exists', prefix)).length === 0 ? true : undefined), 30_000, `every ${prefix} device reported what its agent trusts`);
    return selected(query, prefix);
  }

  /** The devices named `prefix...` that `query` selects, every page read (one reads at most 10,000 devices: the suite registers more). */
  async function selected(query: string, prefix: string): Promise<string[]> {
    const out: string[] = [];
    const q = new URLSearchParams({ query: `(${query}) and tags = sim`, limit: '1000', after: prefix });
    for (;;) {
      const page = await api.call<{ items: { deviceId: string }[]; next?: string }>('GET', `/api/v1/fleet/devices?${q}`);
      out.push(...page.items.map((d) => d.deviceId).filter((id) => id.startsWith(prefix)));
      if (page.next === undefined || !page.next.startsWith(prefix)) return out.sort();
      q.set('after', page.next);
    }
  }

  /** A running `updraft sim --processes n`, ready, and its simulator processes. */
  interface ShardedSim {
    cli: CliProcess;
    devices: SimDevice[];
    /** The simulator processes (the command's children with `--first-index`). */
    shards: { pid: number; cmd: string }[];
    /** Kills the command (if still running) and removes its devices file. */
    close(): Promise<void>;
  }

  /**
   * Registers `size` devices named `prefix<n>`, runs them from a devices file with `updraft sim
   * --processes n` (and `args`; the first `wrongSecrets` devices with a secret not theirs), and
   * resolves once the command says the fleet is ready.
   */
  async function startShardedSim(prefix: string, n: number, { size = 2 * n, args = [], wrongSecrets = 0 }: { size?: number; args?: string[]; wrongSecrets?: number } = {}): Promise<ShardedSim> {
    const devices = await registerFleet(api, prefix, size);
    const dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-sim-test-'));
    const file = path.join(dir, 'devices.json');
    await writeFile(file, JSON.stringify(devices.map((d, i) => (i < wrongSecrets ? { ...d, secret: 'updr_dev_not-its-secret' } : d))));
    const cli = startCli(['sim', '--devices-file', file, '--broker', ts.mqttUrl, '--server', ts.httpUrl, '--token', ts.token, '--processes', String(n), ...args]);
    const close = async () => {
      await cli.kill('SIGKILL').catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    };
    try {
      await cli.waitFor(new RegExp(`sim: ready ${size} devices \\(connected, ${n} processes\\)`), 60_000);
    } catch (err) {
      await close();
      throw err;
    }
    const shards = childProcesses(cli.child.pid!).filter((c) => c.cmd.includes(' sim ') && c.cmd.includes('--first-index'));
    return { cli, devices, shards, close };
  }

  it('connected mode: every device takes the update once, with crashes and failures', async () => {
    const devices = await registerFleet(api, 'conn-', 30);
    const sim = new FleetSimulator({ brokerUrl: ts.mqttUrl, trust: trustOf(ts), devices, mode: 'connected', installMs: 20, crashRate: 0.2, failureRate: 0.1, seed: 7 });
    try {
      await sim.start();
      assert.equal(sim.stats.connected, 30);
      // what the server records of each device's agent: it verifies with the server's key, as a
      // provisioned device does (the simulator's devices were all `unsigned`: doctor warned)
      const keyId = ts.server.security.signingKey.keyId;
      assert.deepEqual(await trusting(`reported.agent.trust = signing-key and reported.agent.keyId = ${keyId} and tags = sim`, 'conn-'), devices.map((d) => d.deviceId), 'every device trusts the signing key');
      assert.deepEqual(await trusting('reported.agent.trust = unsigned', 'conn-'), [], 'no device accepts unsigned software');
      const jobId = await rollout(devices);
      await sim.whenFinished(30);
      const counts = await outcome(jobId);
      assert.equal((counts.SUCCEEDED ?? 0) + (counts.FAILED ?? 0), 30, JSON.stringify(counts));
      assert.equal(counts.SUCCEEDED, sim.stats.succeeded);
      assert.ok(sim.stats.failed > 0 && sim.stats.crashes > 0, `the seed exercises failures and crashes: ${JSON.stringify(sim.stats)}`);
    } finally {
      await sim.stop();
    }
  });

  it('connected mode: offline periods and crashes leave the count of connected devices true', async () => {
    // a device that goes offline while downloading comes back resuming its download, and may
    // go offline again before its connection is up; the count must follow the live connections
    const devices = await registerFleet(api, 'off-', 30);
    const sim = new FleetSimulator({ brokerUrl: ts.mqttUrl, trust: trustOf(ts), devices, mode: 'connected', installMs: 20, offlineRate: 0.6, offlineMs: 100, crashRate: 0.3, seed: 5 });
    try {
      await sim.start();
      await rollout(devices);
      await sim.whenFinished(30);
      // every device comes back after its last offline period: wait for the server to see them all
      const online = async () => (await api.call<{ devices: { online: number } }>('GET', '/api/v1/fleet/status')).devices.online;
      for (let i = 0; i < 300 && (await online()) < 30; i++) await new Promise((r) => setTimeout(r, 100));
      assert.equal(await online(), 30, 'every device is back online');
      assert.ok(sim.stats.offlinePeriods > 0 && sim.stats.crashes > 0, `the seed exercises offline periods and crashes: ${JSON.stringify(sim.stats)}`);
      assert.equal(sim.stats.connected, 30, JSON.stringify(sim.stats));
      // an agent retired before it connected (an offline period drawn from the download it resumed) is not a connection
      assert.ok(sim.stats.connects > 30 && sim.stats.connects <= 30 + sim.stats.offlinePeriods + sim.stats.crashes, JSON.stringify(sim.stats));
    } finally {
      await sim.stop();
    }
  });

  it('the count of connected devices follows the connections: a broker gone takes it to 0, its return back up', async () => {
    // it changed only as the simulator connected and retired agents: with the broker dead it said connected:20
    const port = await freePort();
    let own: TestServer | undefined = await startTestServer({ flags: { 'mqtt-port': port } });
    const dataDir = own.dataDir;
    const devices = await registerFleet(new ApiClient({ server: own.httpUrl, token: own.token }), 'drop-', 3);
    const sim = new FleetSimulator({ brokerUrl: own.mqttUrl, trust: trustOf(own), devices, mode: 'connected', seed: 4 });
    try {
      await sim.start();
      assert.equal(sim.stats.connected, 3);
      await own.stop();
      own = undefined;
      await eventually(async () => (sim.stats.connected === 0 ? true : undefined), 30_000, `the count drops to 0: ${JSON.stringify(sim.stats)}`);
      own = await startTestServer({ dataDir, flags: { 'mqtt-port': port } });
      await eventually(async () => (sim.stats.connected === 3 ? true : undefined), 60_000, `the devices reconnect and count again: ${JSON.stringify(sim.stats)}`);
      assert.equal(sim.stats.connects, 3, 'connects counts the simulator\'s own connections, not the reconnections');
    } finally {
      await sim.stop();
      await own?.stop();
      await rm(dataDir, { recursive: true, force: true });
    }
  });

  it('a crash or offline rate is a probability per device and job: at rate 1 each device crashes once and goes offline once, and the job ends', async () => {
    // the status a restarted agent resumes with drew again: at rate 1 a device crashed forever
    for (const [prefix, mode, rates] of [
      ['rate1c-', 'connected', { crashRate: 1, offlineRate: 1, offlineMs: 50 }],
      ['rate1y-', 'cycling', { crashRate: 1, offlineRate: 1, offlineMs: 50 }],
      ['rate05-', 'connected', { crashRate: 0.5, offlineRate: 0.5, offlineMs: 50 }],
    ] as const) {
      const devices = await registerFleet(api, prefix, 10);
      const sim = new FleetSimulator({ brokerUrl: ts.mqttUrl, trust: trustOf(ts), devices, mode, concurrency: 4, installMs: 20, seed: 3, ...rates });
      try {
        await sim.start();
        const jobId = await rollout(devices);
        // bounded: the run that never ended must fail here, not hang the suite
        const finished = await Promise.race([sim.whenFinished(10).then(() => true), new Promise<false>((r) => setTimeout(() => r(false), 30_000).unref())]);
        assert.ok(finished, `${prefix}: every device finished: ${JSON.stringify(sim.stats)}`);
        assert.deepEqual(await outcome(jobId), { SUCCEEDED: 10 }, prefix);
        if (rates.crashRate === 1) {
          assert.deepEqual({ crashes: sim.stats.crashes, offlinePeriods: sim.stats.offlinePeriods }, { crashes: 10, offlinePeriods: 10 }, prefix);
          assert.equal(sim.installs, 20, 'each device installed twice: the crash interrupted the first');
        } else {
          assert.ok(sim.stats.crashes <= 10 && sim.stats.offlinePeriods <= 10, `${prefix}: at most one of each per device: ${JSON.stringify(sim.stats)}`);
        }
      } finally {
        await sim.stop();
      }
    }
  });

  it('cycling mode: more devices than slots, each connects, updates and leaves', async () => {
    const devices = await registerFleet(api, 'cyc-', 40);
    const jobId = await rollout(devices); // deployed while every device is offline
    const sim = new FleetSimulator({ brokerUrl: ts.mqttUrl, trust: trustOf(ts), devices, mode: 'cycling', concurrency: 8, seed: 3 });
    try {
      await sim.start();
      await sim.whenFinished(40);
      assert.deepEqual(await outcome(jobId), { SUCCEEDED: 40 });
      assert.equal(sim.installs, 40, 'no device installed twice');
    } finally {
      await sim.stop();
    }
  });

  it('cycling mode with failures and retries: a device that failed comes back for its retry; devices count by their latest outcome', async () => {
    const devices = await registerFleet(api, 'retry-', 20);
    const created = await api.call<{ job: { jobId: string } }>('POST', '/api/v1/jobs', { artifact: 'fw@2.0.0', targets: { devices: devices.map((d) => d.deviceId) }, retries: { limit: 10 } });
    const jobId = created.job.jobId;
    const sim = new FleetSimulator({ brokerUrl: ts.mqttUrl, trust: trustOf(ts), devices, mode: 'cycling', concurrency: 5, failureRate: 0.4, idleTimeoutMs: 300, seed: 11 });
    type JobView = { job: { status: string }; counts: Record<string, number>; executions: { status: string; attempt?: number }[] };
    try {
      await sim.start();
      let view = await api.call<JobView>('GET', `/api/v1/jobs/${jobId}`);
      // every failed device must visit again for its retry: without that the job never ends
      for (let i = 0; i < 600 && view.job.status !== 'COMPLETED'; i++) {
        await new Promise((r) => setTimeout(r, 100));
        view = await api.call<JobView>('GET', `/api/v1/jobs/${jobId}`);
      }
      assert.equal(view.job.status, 'COMPLETED', `the job ends: ${JSON.stringify(view.counts)} ${JSON.stringify(sim.stats)}`);
      const attempts = view.executions.reduce((n, x) => n + (x.attempt ?? 1), 0);
      assert.ok(attempts > 20, `the seed exercises retries: ${attempts} attempts`);
      // the server records an outcome (and may complete the job) while its acknowledgement is on
      // its way to the device, whose agent says job-finished only once it arrives: the last
      // device's may come after the job's COMPLETED, and the counts were read before it
      await eventually(async () => (sim.stats.outcomes >= attempts ? true : undefined), 10_000, `the simulator hears all ${attempts} outcomes: ${JSON.stringify(sim.stats)}`);
      assert.equal(sim.stats.outcomes, attempts, 'one outcome per attempt');
      assert.deepEqual(
        { succeeded: sim.stats.succeeded, failed: sim.stats.failed, finished: sim.stats.finished },
        { succeeded: view.counts.SUCCEEDED ?? 0, failed: view.counts.FAILED ?? 0, finished: 20 },
        'the simulator counts each device by its latest outcome, as the server does',
      );
      assert.equal(sim.installs, attempts, 'each attempt installed once');
    } finally {
      await sim.stop();
    }
  });

  it('several processes: each runs its slice, and outcomes follow the seed as in one process', async () => {
    const options = { crashRate: 0.2, failureRate: 0.1, seed: 7 };
    // the reference: one in-process simulator
    const one = await registerFleet(api, 'one-', 30);
    const sim = new FleetSimulator({ brokerUrl: ts.mqttUrl, trust: trustOf(ts), devices: one, mode: 'connected', installMs: 20, ...options });
    let reference;
    try {
      await sim.start();
      await rollout(one);
      await sim.whenFinished(30);
      reference = { succeeded: sim.stats.succeeded, failed: sim.stats.failed, crashes: sim.stats.crashes, installs: sim.installs };
    } finally {
      await sim.stop();
    }
    // the same fleet's behaviour split over three processes by `updraft sim --processes 3`
    const behaviour = ['--install-ms', '20', '--crash-rate', String(options.crashRate), '--failure-rate', String(options.failureRate), '--seed', String(options.seed)];
    const { cli, devices: many, shards, close } = await startShardedSim('many-', 3, { size: 30, args: ['--until-finished', ...behaviour] });
    try {
      // each child runs its own slice, from its own file
      assert.deepEqual(shards.map((c) => Number(/--first-index (\d+)/.exec(c.cmd)?.[1])).sort((a, b) => a - b), [0, 10, 20]);
      const slices = shards.map((c) => JSON.parse(readFileSync(/--devices-file (\S+)/.exec(c.cmd)![1]!, 'utf8')) as { deviceId: string }[]);
      assert.deepEqual(slices.flat().map((d) => d.deviceId).sort(), many.map((d) => d.deviceId).sort());
      // their shares of the connect rate make the fleet's (the default 2,000/s), no more
      assert.equal(shards.reduce((n, c) => n + Number(/--connect-rate (\d+)/.exec(c.cmd)?.[1]), 0), 2000);
      const jobId = await rollout(many);
      const summary = JSON.parse((await cli.waitFor(/^(\{.*"devices":30.*\})$/m, 60_000))[1]!);
      assert.equal(summary.finished, 30);
      assert.equal(summary.connected, 0, 'printed once every process stopped: no device is connected, as with one process');
      // an install a crash interrupted is done again after the restart: installs = 30 + crashes during install
      assert.deepEqual({ succeeded: summary.succeeded, failed: summary.failed, crashes: summary.crashes, installs: summary.installs }, reference);
      const counts = await outcome(jobId);
      assert.deepEqual({ SUCCEEDED: counts.SUCCEEDED ?? 0, FAILED: counts.FAILED ?? 0 }, { SUCCEEDED: reference.succeeded, FAILED: reference.failed });
      assert.equal(await cli.kill(), 0, 'the simulator exits 0 once finished');
      const alive = (pid: number) => {
        try {
          process.kill(pid, 0);
          return true;
        } catch {
          return false;
        }
      };
      assert.deepEqual(shards.filter((c) => alive(c.pid)), [], 'no simulator process outlives the command');
    } finally {
      await close();
    }
  });

  it('several processes: Ctrl-C pressed twice still lets the run remove its children\'s files, which hold the devices\' secrets', async () => {
    const { cli, shards, close } = await startShardedSim('twice-', 2);
    try {
      const files = shards.map((c) => /--devices-file (\S+)/.exec(c.cmd)![1]!);
      assert.equal(files.length, 2);
      for (const f of files) assert.match(readFileSync(f, 'utf8'), /"secret"/, 'a child\'s file holds secrets');
      // the second press comes while the first one's stop is still under way
      const exited = new Promise<number | null>((resolve) => cli.child.once('exit', (code) => resolve(code)));
      cli.child.kill('SIGINT');
      cli.child.kill('SIGINT');
      assert.equal(await exited, 0, 'exits 0 once stopped, not killed by the second press');
      assert.deepEqual(files.filter((f) => existsSync(f)), [], 'no devices file left behind');
      assert.equal(existsSync(path.dirname(files[0]!)), false, 'nor their directory');
    } finally {
      await close();
    }
  });

  it('several processes: a child that dies takes the run down with one line, and no other child stays', async () => {
    const { cli, shards, close } = await startShardedSim('die-', 2);
    try {
      const [victim, other] = shards;
      assert.ok(victim && other, 'two simulator processes');
      process.kill(victim.pid, 'SIGKILL');
      // bounded waits: a parent that ignored its child's death would run on
      await cli.waitFor(/updraft: error: simulator process \d of 2 exited \(code null, signal SIGKILL\)/, 30_000);
      const code =
        cli.child.exitCode ??
        (await new Promise<number | string | null>((resolve) => {
          const timer = setTimeout(() => resolve('still running'), 30_000);
          cli.child.once('exit', (c) => {
            clearTimeout(timer);
            resolve(c);
          });
        }));
      assert.equal(code, 1);
      assert.throws(() => process.kill(other.pid, 0), /ESRCH/, 'the other simulator process was stopped');
    } finally {
      await close();
    }
  });

  it('the command: a bad option registers nothing; a fleet saved with --save-devices runs again from its file, and a second registration says how', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-sim-cli-'));
    const common = ['--server', ts.httpUrl, '--token', ts.token, '--broker', ts.mqttUrl];
    const registered = async () => (await ts.server.store.listDevices({ limit: 1000 })).items.filter((d) => d.deviceId.startsWith('cli-')).length;
    try {
      for (const [bad, message] of [
        [['--failure-rate', '2'], 'updraft: error: --failure-rate must be a number from 0 to 1'],
        [['--mode', 'cycling', '--concurrency', '0'], 'updraft: error: --concurrency must be an integer from 1 to 100000'],
        [['--offline-ms', '-5'], 'updraft: error: --offline-ms must be an integer from 0 to 3600000'],
        // integers where integers are meant, and an empty value is not 0
        [['--devices', '2.5'], 'updraft: error: --devices must be an integer from 1 to 10000000'],
        [['--mode', 'cycling', '--concurrency', '1.5'], 'updraft: error: --concurrency must be an integer from 1 to 100000'],
        [['--seed', '1.5'], 'updraft: error: --seed must be an integer from 0 to 2147483648'],
        [['--seed', ''], 'updraft: error: --seed must be an integer from 0 to 2147483648'],
        [['--install-ms', ''], 'updraft: error: --install-ms must be an integer from 0 to 3600000'],
        [['--failure-rate', ''], 'updraft: error: --failure-rate must be a number from 0 to 1'],
        [['--crash-rate', 'abc'], 'updraft: error: --crash-rate must be a number from 0 to 1'],
        // more processes than devices: refused before the devices are registered
        [['--processes', '5'], 'updraft: error: --processes 5 is more than the 3 devices'],
        // a total below one per process: each process's share (1 at least) exceeded it
        [['--processes', '3', '--connect-rate', '2'], 'updraft: error: --connect-rate 2 is less than 1 per process (--processes 3): each process connects at its share of the rate'],
        [['--mode', 'cycling', '--processes', '3', '--concurrency', '2'], 'updraft: error: --concurrency 2 is less than 1 per process (--processes 3): each process keeps its share of the devices online'],
        // a broker URL mqtt.js cannot use: it failed (or never connected) once the fleet was registered
        [['--broker', 'foo'], 'updraft: error: --broker must be a URL like mqtt://host:1883 (mqtt, mqtts, ws, wss, tcp or tls, and a host)'],
        [['--broker', '127.0.0.1:18831'], 'updraft: error: --broker must be a URL like mqtt://host:1883 (mqtt, mqtts, ws, wss, tcp or tls, and a host)'],
        [['--broker', 'mqtt://'], 'updraft: error: --broker must be a URL like mqtt://host:1883 (mqtt, mqtts, ws, wss, tcp or tls, and a host)'],
        // where the secrets cannot be saved: found once the devices were registered, the secrets lost
        [['--save-devices', path.join(dir, 'missing', 'fleet.json')], `updraft: error: cannot write --save-devices ${path.join(dir, 'missing', 'fleet.json')}: there is no directory ${path.join(dir, 'missing')}`],
        [['--save-devices', dir], `updraft: error: --save-devices ${dir} is a directory: name a file`],
      ] as const) {
        const r = await runCli(['sim', ...common, '--devices', '3', '--prefix', 'cli-', ...bad]);
        assert.equal(r.code, 2, bad.join(' ')); // the request was wrong (main.ts: 4xx → 2)
        assert.equal(r.stderr.trim(), message);
      }
      assert.equal(await registered(), 0, 'no option error leaves devices behind');

      const saved = path.join(dir, 'fleet.json');
      await writeFile(saved, 'an older file, readable by all', { mode: 0o644 });
      const first = startCli(['sim', ...common, '--devices', '3', '--prefix', 'cli-', '--save-devices', saved]);
      try {
        await first.waitFor(/sim: ready 3 devices \(connected\)/, 60_000);
      } finally {
        assert.equal(await first.kill('SIGINT'), 0);
      }
      assert.equal(statSync(saved).mode & 0o777, 0o600, 'the secrets are for this user only');
      const fleet = JSON.parse(readFileSync(saved, 'utf8')) as { deviceId: string; secret: string }[];
      assert.deepEqual(fleet.map((d) => d.deviceId), ['cli-1', 'cli-2', 'cli-3']);
      assert.ok(fleet.every((d) => d.secret.startsWith('updr_dev_')));

      // refused whatever the size: 10 devices would be cli-01..cli-10, none of them taken
      for (const n of ['3', '10', '1']) {
        const again = await runCli(['sim', ...common, '--devices', n, '--prefix', 'cli-']);
        assert.equal(again.code, 2, `--devices ${n}`);
        assert.equal(again.stderr.trim(), 'updraft: error: devices named cli-<number> are registered already (cli-1 is); nothing was registered. By an earlier run? Pick another --prefix, or run those devices again with --devices-file and the file --save-devices wrote');
      }
      assert.equal(await registered(), 3, 'the later runs registered nothing');

      const rerun = startCli(['sim', '--broker', ts.mqttUrl, '--server', ts.httpUrl, '--token', ts.token, '--devices-file', saved]);
      try {
        await rerun.waitFor(/sim: ready 3 devices \(connected\)/, 60_000);
        await eventually(async () => ((await api.call<{ online: boolean }>('GET', '/api/v1/devices/cli-3')).online ? true : undefined), 30_000, 'the saved devices connect with their secrets');
      } finally {
        assert.equal(await rerun.kill('SIGINT'), 0);
      }
      const missing = await runCli(['sim', '--broker', ts.mqttUrl, '--devices-file', path.join(dir, 'nope.json')]);
      assert.equal(missing.code, 2);
      assert.equal(missing.stderr.trim(), `updraft: error: cannot read ${path.join(dir, 'nope.json')}: no such file`);
      await writeFile(path.join(dir, 'bad.json'), '{"deviceId":"x"}');
      const bad = await runCli(['sim', '--broker', ts.mqttUrl, '--devices-file', path.join(dir, 'bad.json')]);
      assert.equal(bad.stderr.trim(), `updraft: error: ${path.join(dir, 'bad.json')} must be a JSON array of {deviceId, secret}, as --save-devices writes it`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('the command: a rerun with --devices-file starts where the devices were, and --until-finished waits for a job they had not finished', async () => {
    // the devices' state was lost between runs: they restarted at 1.0.0, installed the earlier
    // job's build again and counted it, and the rerun exited while the new job still ran
    await api.call('POST', '/api/v1/artifacts?name=fw&version=3.0.0', randomBytes(4096));
    const devices = await registerFleet(api, 'rerun-', 10);
    const dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-sim-rerun-'));
    const file = path.join(dir, 'devices.json');
    await writeFile(file, JSON.stringify(devices), { mode: 0o600 });
    const jobOf = (jobId: string) => api.call<{ job: { status: string }; counts: Record<string, number> }>('GET', `/api/v1/jobs/${jobId}`);
    try {
      const first = startCli(['sim', '--devices-file', file, '--broker', ts.mqttUrl, '--server', ts.httpUrl, '--token', ts.token, '--until-finished']);
      try {
        await first.waitFor(/sim: ready 10 devices/, 60_000);
        await rollout(devices);
        const summary = JSON.parse((await first.waitFor(/^(\{.*"devices":10.*\})$/m, 60_000))[1]!);
        assert.deepEqual({ finished: summary.finished, installs: summary.installs }, { finished: 10, installs: 10 });
        assert.equal(await first.kill(), 0);
      } finally {
        await first.kill('SIGKILL').catch(() => undefined);
      }
      const kept = JSON.parse(readFileSync(file, 'utf8')) as { deviceId: string; state?: { software: { version: string }; finished: unknown[] } }[];
      assert.deepEqual(kept.map((d) => [d.deviceId, d.state?.software.version, d.state?.finished.length]), devices.map((d) => [d.deviceId, '2.0.0', 1]), 'each device keeps what it runs and the job it finished');
      assert.equal(statSync(file).mode & 0o777, 0o600);

      const second = startCli(['sim', '--devices-file', file, '--broker', ts.mqttUrl, '--server', ts.httpUrl, '--token', ts.token, '--until-finished']);
      try {
        await second.waitFor(/sim: ready 10 devices/, 60_000);
        // its counts a second later, every device online: the job they finished before is not counted again
        const [, line] = await second.waitFor(/^sim: (\{"connected":10,.*\})$/m, 60_000);
        assert.deepEqual({ finished: JSON.parse(line!).finished, outcomes: JSON.parse(line!).outcomes }, { finished: 0, outcomes: 0 }, line);
        const created = await api.call<{ job: { jobId: string } }>('POST', '/api/v1/deployments', { devices: devices.map((d) => d.deviceId), artifact: 'fw@3.0.0' });
        const summary = JSON.parse((await second.waitFor(/^(\{.*"devices":10.*\})$/m, 60_000))[1]!);
        // the summary comes once every device finished the new job: it is over on the server too
        await ts.server.tracker.idle();
        const view = await jobOf(created.job.jobId);
        assert.deepEqual(view.counts.SUCCEEDED, 10, JSON.stringify(view.counts));
        assert.deepEqual({ finished: summary.finished, installs: summary.installs }, { finished: 10, installs: 10 }, 'the earlier job was not installed again');
        assert.equal(await second.kill(), 0);
      } finally {
        await second.kill('SIGKILL').catch(() => undefined);
      }
      const after = JSON.parse(readFileSync(file, 'utf8')) as { state?: { software: { version: string } } }[];
      assert.deepEqual([...new Set(after.map((d) => d.state?.software.version))], ['3.0.0']);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('the command: a fleet stopped before it connected is not said to be ready', async () => {
    // a stop resolves the connects still waiting: 'sim: ready 2 devices' came with 0 connected
    const dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-sim-stop-'));
    const file = path.join(dir, 'devices.json');
    await writeFile(file, JSON.stringify([{ deviceId: 'stop-1', secret: 'x' }, { deviceId: 'stop-2', secret: 'x' }]), { mode: 0o600 });
    const nobody = await freePort(); // no broker listens there
    const cli = startCli(['sim', '--devices-file', file, '--broker', `mqtt://127.0.0.1:${nobody}`, '--server', ts.httpUrl, '--token', ts.token]);
    try {
      // counted, and said once, with the reason: not a silent connected:0
      await cli.waitFor(/^sim: \{"connected":0,"refused":2,/m, 30_000);
      assert.equal(await cli.kill('SIGTERM'), 0);
      assert.doesNotMatch(cli.output(), /sim: ready/);
      const warnings = cli.output().match(/^sim: warning: .*$/gm) ?? [];
      assert.equal(warnings.length, 1, cli.output());
      assert.match(warnings[0]!, /^sim: warning: stop-\d cannot connect: connect ECONNREFUSED 127\.0\.0\.1:\d+ \(a wrong secret, a revoked or deleted device, no broker there\?\); "refused" in the counts is how many devices cannot$/);
    } finally {
      await cli.kill('SIGKILL').catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('the command keeps the secrets of the devices registered before a later request of the registration fails', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-sim-big-'));
    // a fleet of 10,003 takes two requests; someone registers a device the second names
    // between them (the command refuses a prefix whose devices exist before it starts): a
    // proxy in front of the server does, when the second request arrives
    let bulk = 0;
    const proxy = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        void (async () => {
          if (req.url === '/api/v1/devices/bulk' && ++bulk === 2) await registerDevice(ts, 'big-10002');
          const body = chunks.length ? Buffer.concat(chunks) : undefined;
          const r = await fetch(ts.httpUrl + req.url!, { method: req.method!, headers: { authorization: req.headers.authorization!, ...(body ? { 'content-type': req.headers['content-type']! } : {}) }, ...(body ? { body } : {}) });
          res.writeHead(r.status, { 'content-type': r.headers.get('content-type') ?? 'application/json' });
          res.end(Buffer.from(await r.arrayBuffer()));
        })();
      });
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    try {
      const saved = path.join(dir, 'fleet.json');
      const server = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
      const r = await runCli(['sim', '--server', server, '--token', ts.token, '--broker', ts.mqttUrl, '--devices', '10003', '--prefix', 'big-', '--save-devices', saved]);
      assert.equal(r.code, 2);
      assert.equal(
        r.stderr.trim(),
        `updraft: error: 1 of these devices is already registered (big-10002); nothing was registered; the requests before this one registered 10000 device(s), big-00001 to big-10000; their secrets are in ${saved}. By an earlier run? Pick another --prefix, or run those devices again with --devices-file and the file --save-devices wrote`,
      );
      const fleet = JSON.parse(readFileSync(saved, 'utf8')) as { deviceId: string; secret: string }[];
      assert.equal(fleet.length, 10_000);
      assert.equal(fleet[9_999]!.deviceId, 'big-10000');
      assert.equal(statSync(saved).mode & 0o777, 0o600);
    } finally {
      await new Promise((resolve) => proxy.close(resolve));
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('the connect rate holds at any rate and in both modes: each connection takes its own slot, 1000/rate ms after the one before', async () => {
    // a virtual clock: sleeping moves it to the end of the sleep, and each wait is recorded
    const virtualClock = () => {
      let t = 0;
      const waits: number[] = [];
      const clock: PacerClock = {
        now: () => t,
        sleep: async (ms) => {
          const until = t + ms;
          waits.push(until);
          t = Math.max(t, until);
        },
      };
      return { clock, waits };
    };
    // below 15/s the batches of max(1, round(rate / 10)) per 100 ms were 10/s at least
    const low = virtualClock();
    const pacer = new ConnectPacer(2, low.clock);
    await Promise.all(Array.from({ length: 5 }, () => pacer.take()));
    assert.deepEqual(low.waits, [500, 1000, 1500, 2000], 'one connection every 500 ms at 2/s');
    // the simulator's connections take the slots, connected and cycling (which started every worker at once)
    for (const mode of ['connected', 'cycling'] as const) {
      const devices = await registerFleet(api, `pace-${mode}-`, 4);
      const { clock, waits } = virtualClock();
      const sim = new FleetSimulator({ brokerUrl: ts.mqttUrl, trust: trustOf(ts), devices, mode, concurrency: 4, connectRate: 4, clock, seed: 2 });
      try {
        await sim.start();
        await eventually(async () => (sim.stats.connects === 4 ? true : undefined), 30_000, `${mode}: every device connects`);
        assert.deepEqual(waits, [250, 500, 750], `${mode}: 4 connections at 4/s, 250 ms apart`);
      } finally {
        await sim.stop();
      }
    }
  });

  it('a device the broker refuses frees its place among those connecting, and holds no cycling worker: the others connect, and it is counted as refused', async () => {
    // its place was released only once it connected: never, and one place (--connect-rate 5) let no other device in
    const noWait: PacerClock = { now: () => 0, sleep: async () => {} }; // the rate's schedule out of the way: one place at 1/s
    const devices = await registerFleet(api, 'refused-', 5);
    const withBad = [{ ...devices[0]!, secret: 'updr_dev_not-its-secret' }, ...devices.slice(1)];
    const heard: string[] = [];
    const sim = new FleetSimulator({ brokerUrl: ts.mqttUrl, trust: trustOf(ts), devices: withBad, mode: 'connected', connectRate: 1, clock: noWait, seed: 6, onRefused: (id, reason) => heard.push(`${id}: ${reason}`) });
    try {
      void sim.start();
      await eventually(async () => (sim.stats.connected === 4 ? true : undefined), 30_000, `the 4 others connect: ${JSON.stringify(sim.stats)}`);
      assert.equal(sim.stats.refused, 1, JSON.stringify(sim.stats));
      assert.deepEqual(heard, ['refused-1: Connection refused: Bad username or password'], 'said once');
    } finally {
      await sim.stop();
    }
    // cycling: its visit ends (it took its worker for good), and it comes back after the others
    const cycling = await registerFleet(api, 'refusedc-', 4);
    const jobId = await rollout(cycling.slice(1));
    const sim2 = new FleetSimulator({ brokerUrl: ts.mqttUrl, trust: trustOf(ts), devices: [{ ...cycling[0]!, secret: 'updr_dev_not-its-secret' }, ...cycling.slice(1)], mode: 'cycling', concurrency: 1, idleTimeoutMs: 500, seed: 6 });
    try {
      await sim2.start();
      await eventually(async () => (sim2.stats.finished === 3 ? true : undefined), 30_000, `the 3 others take the update: ${JSON.stringify(sim2.stats)}`);
      assert.deepEqual(await outcome(jobId), { SUCCEEDED: 3 });
      assert.equal(sim2.stats.refused, 1, JSON.stringify(sim2.stats));
    } finally {
      await sim2.stop();
    }
  });

  it('cycling, the command: a device the broker refuses for good is given up after 3 refusals in a row, and --until-finished ends, exit 1, saying how many', async () => {
    // it came back after the others for ever: --until-finished never ended
    const devices = await registerFleet(api, 'giveup-', 3);
    const withBad = [{ ...devices[0]!, secret: 'updr_dev_not-its-secret' }, ...devices.slice(1)];
    const jobId = await rollout(devices.slice(1)); // deployed while every device is offline
    const dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-sim-giveup-'));
    const file = path.join(dir, 'devices.json');
    await writeFile(file, JSON.stringify(withBad), { mode: 0o600 });
    const cli = startCli(['sim', '--devices-file', file, '--broker', ts.mqttUrl, '--server', ts.httpUrl, '--token', ts.token, '--mode', 'cycling', '--concurrency', '2', '--until-finished']);
    try {
      // a hang guard: the run that never ended fails here
      const summary = JSON.parse((await cli.waitFor(/^(\{.*"devices":3.*\})$/m, 60_000))[1]!);
      assert.deepEqual({ gaveUp: summary.gaveUp, refused: summary.refused, finished: summary.finished, succeeded: summary.succeeded }, { gaveUp: 1, refused: 1, finished: 2, succeeded: 2 }, JSON.stringify(summary));
      assert.match(cli.output(), /^sim: finished 2 devices \{.*"gaveUp":1.*\} installs=2 gave-up=1$/m);
      assert.equal(await cli.kill(), 1, 'a run that gave up on devices is not a success');
      assert.match(cli.output(), /^updraft: error: gave up on 1 of 3 devices: the broker refused each 3 times in a row for a reason retrying cannot fix \(bad user name or password, not authorized, client id rejected, banned, protocol version not supported: a wrong secret, a revoked or deleted device, a broker older than MQTT 3.1.1\); the summary counts them in "gaveUp"$/m);
      assert.deepEqual(await outcome(jobId), { SUCCEEDED: 2 });
    } finally {
      await cli.kill('SIGKILL').catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('connected, the command: sim: ready comes once every device is connected or given up, and says how many are which', async () => {
    // a device the broker always refuses held the ready line back for ever: the bench waited its 600 s
    const devices = await registerFleet(api, 'ready-', 3);
    const dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-sim-ready-'));
    const file = path.join(dir, 'devices.json');
    await writeFile(file, JSON.stringify([{ ...devices[0]!, secret: 'updr_dev_not-its-secret' }, ...devices.slice(1)]), { mode: 0o600 });
    const cli = startCli(['sim', '--devices-file', file, '--broker', ts.mqttUrl, '--server', ts.httpUrl, '--token', ts.token]);
    try {
      // a hang guard: the line that never came fails here
      await cli.waitFor(/^sim: ready 3 devices \(connected\) connected=2 refused=1$/m, 60_000);
      await cli.waitFor(/^sim: \{"connected":2,"refused":1,"gaveUp":1,/m, 30_000);
      assert.equal(await cli.kill('SIGINT'), 0);
    } finally {
      await cli.kill('SIGKILL').catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    }
    // several processes: the parent's line adds up its children's counts
    const sharded = await startShardedSim('readyp-', 2, { wrongSecrets: 1 });
    try {
      assert.match(sharded.cli.output(), /^sim: ready 4 devices \(connected, 2 processes\) connected=3 refused=1$/m);
      assert.equal(await sharded.cli.kill('SIGINT'), 0);
    } finally {
      await sharded.close();
    }
  });

  it('a device refused with CONNACK 1 (unacceptable protocol version), 2 (identifier rejected), 0x84 (unsupported protocol version), 0x85 (client identifier not valid) or 0x8A (banned) is given up after 3 refusals, as for a wrong secret', async () => {
    // they were retried for ever: connected mode's start (sim: ready) never resolved. Mosquitto
    // sends 2 to a client id outside its clientid_prefixes, and 1 to a protocol level it does not
    // speak; aedes sends neither of them to our agents, and no broker here speaks MQTT 5: a broker
    // that answers each CONNECT with the CONNACK code of its client id
    const codes: Record<string, number> = { 'connack-1': 1, 'connack-2': 2, 'connack-84': 0x84, 'connack-85': 0x85, 'connack-8a': 0x8a };
    const attempts: string[] = [];
    const sockets = new Set<Socket>();
    const broker = createNetServer((socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => undefined);
      socket.once('data', (connectPacket: Buffer) => {
        const id = Object.keys(codes).find((d) => connectPacket.includes(d))!;
        attempts.push(id);
        // CONNACK (3.1.1 §3.2): no session present, the code; then the server closes [MQTT-3.2.2-5]
        socket.end(Buffer.from([0x20, 0x02, 0x00, codes[id]!]));
      });
    });
    await new Promise<void>((resolve) => broker.listen(0, '127.0.0.1', resolve));
    const devices = Object.keys(codes).map((deviceId) => ({ deviceId, secret: 'updr_dev_whatever' }));
    const sim = new FleetSimulator({ brokerUrl: `mqtt://127.0.0.1:${(broker.address() as AddressInfo).port}`, trust: trustOf(ts), devices, mode: 'connected', seed: 6 });
    try {
      // bounded: the start that never resolved must fail here, not hang the suite
      const ready = await Promise.race([sim.start().then(() => true), new Promise<false>((r) => setTimeout(() => r(false), 30_000).unref())]);
      assert.ok(ready, `every device is given up: ${JSON.stringify(sim.stats)}, attempts ${attempts.join(' ')}`);
      assert.deepEqual({ gaveUp: sim.stats.gaveUp, refused: sim.stats.refused, connected: sim.stats.connected }, { gaveUp: 5, refused: 5, connected: 0 });
      assert.deepEqual(Object.keys(codes).map((id) => attempts.filter((a) => a === id).length), [3, 3, 3, 3, 3], 'each refused 3 times, then left alone');
    } finally {
      await sim.stop();
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => broker.close(resolve));
    }
  });

  it('a device turned away with CONNACK 3 (server unavailable: admission control) is retried, not given up', async () => {
    const own = await startTestServer({ flags: { 'mqtt-max-connections': 1 } });
    const ownApi = new ApiClient({ server: own.httpUrl, token: own.token });
    const refusedCount = async () => (await ownApi.call<{ mqtt: { refusedConnections: number } }>('GET', '/api/v1/metrics')).mqtt.refusedConnections;
    const [holder, device] = await registerFleet(ownApi, 'busy-', 2);
    // the one connection the broker holds
    const held = await TestClient.connect(own.mqttUrl, holder!.deviceId, { username: holder!.deviceId, password: holder!.secret });
    const sim = new FleetSimulator({ brokerUrl: own.mqttUrl, trust: trustOf(own), devices: [device!], mode: 'cycling', concurrency: 1, idleTimeoutMs: 300, seed: 6 });
    try {
      await ownApi.call('POST', '/api/v1/artifacts?name=fw&version=2.0.0', randomBytes(1024));
      await ownApi.call('POST', '/api/v1/deployments', { devices: [device!.deviceId], artifact: 'fw@2.0.0' });
      await sim.start();
      // more refusals than would give up a device refused for good
      await eventually(async () => ((await refusedCount()) > SIM_DEFAULTS.refusalsToGiveUp ? true : undefined), 60_000, 'the device is refused again and again');
      assert.deepEqual({ refused: sim.stats.refused, gaveUp: sim.stats.gaveUp }, { refused: 1, gaveUp: 0 }, JSON.stringify(sim.stats));
      await held.end();
      await sim.whenFinished(1);
      assert.deepEqual({ succeeded: sim.stats.succeeded, refused: sim.stats.refused, gaveUp: sim.stats.gaveUp }, { succeeded: 1, refused: 0, gaveUp: 0 });
    } finally {
      await sim.stop();
      await held.end().catch(() => undefined);
      await own.close();
    }
  });

  it('a socket the broker closes before any CONNACK frees its place among those connecting at once, not after the connect-attempt time', async () => {
    // mqtt.js says only 'close' for it: the place was held for connectAttemptMs (10 s), and one
    // place (--connect-rate 1) let no other device in meanwhile. A proxy in front of the broker
    // closes the connections of one device as soon as its CONNECT arrives, and passes the rest
    const devices = await registerFleet(api, 'closed-', 2);
    const brokerPort = Number(new URL(ts.mqttUrl).port);
    const sockets = new Set<Socket>();
    const proxy = createNetServer((socket) => {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => undefined);
      socket.once('data', (first: Buffer) => {
        if (first.includes('closed-1')) return void socket.end(); // a FIN, no CONNACK
        const up = connect(brokerPort, '127.0.0.1');
        sockets.add(up);
        up.on('close', () => sockets.delete(up));
        up.on('error', () => socket.destroy());
        socket.on('close', () => up.destroy());
        up.write(first);
        socket.pipe(up).pipe(socket);
      });
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const noWait: PacerClock = { now: () => 0, sleep: async () => {} };
    const heard: string[] = [];
    const brokerUrl = `mqtt://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
    // an attempt time far beyond the wait below: only the close can free the place in time
    const sim = new FleetSimulator({ brokerUrl, trust: trustOf(ts), devices, mode: 'connected', connectRate: 1, clock: noWait, connectAttemptMs: 600_000, seed: 6, onRefused: (id, reason) => heard.push(`${id}: ${reason}`) });
    try {
      void sim.start();
      await eventually(async () => (sim.stats.connected === 1 ? true : undefined), 30_000, `the other device connects: ${JSON.stringify(sim.stats)}`);
      assert.equal(sim.stats.refused, 1, JSON.stringify(sim.stats));
      assert.deepEqual(heard, ['closed-1: connection closed before CONNACK']);
    } finally {
      await sim.stop();
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => proxy.close(resolve));
    }
  });

  it("the command: the devices verify with the server's key, asked of its API beside --devices-file and handed to every process of --processes, and the server records them trusting it", async () => {
    const devices = await registerFleet(api, 'trusted-', 4);
    const dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-sim-trust-'));
    const file = path.join(dir, 'devices.json');
    await writeFile(file, JSON.stringify(devices), { mode: 0o600 });
    // the operator token in the environment (as a shell or a container gives it), beside other
    // secrets an operator's environment holds: the parent asks the server with it; no child
    // inherits any of them (its environment was inherited whole: review of 665f770)
    const secrets = {
      UPDRAFT_TOKEN: ts.token,
      UPDRAFT_DB: 'postgres://updraft:db-password-not-for-children@127.0.0.1:5432/updraft',
      UPDRAFT_WEBHOOK_SECRET: 'webhook-secret-not-for-children',
      AWS_SECRET_ACCESS_KEY: 'aws-secret-not-for-children',
      PGPASSWORD: 'pg-password-not-for-children',
    };
    const cli = startCli(['sim', '--devices-file', file, '--broker', ts.mqttUrl, '--server', ts.httpUrl, '--processes', '2'], { env: { ...secrets, UPDRAFT_TEST_CHILD_ENV_MARK: 'x', SIM_TEST_HARMLESS: 'kept' } });
    try {
      await cli.waitFor(/sim: ready 4 devices \(connected, 2 processes\)/, 60_000);
      const keyId = ts.server.security.signingKey.keyId;
      assert.match(cli.output(), new RegExp(`^sim: the devices verify every update as provisioned devices do: trust = signing-key ${keyId}$`, 'm'), 'said once, with the key');
      // the children were handed the key in a file, not the operator token
      const shards = childProcesses(cli.child.pid!).filter((c) => c.cmd.includes('--first-index'));
      assert.equal(shards.length, 2, cli.output());
      for (const shard of shards) assert.match(shard.cmd, / --signing-key \S+signing-key\.pub /, `a child given the key: ${shard.cmd}`);
      for (const shard of shards) assert.doesNotMatch(shard.cmd, new RegExp(ts.token), 'no child is given the operator token');
      for (const shard of shards) {
        const environ = readFileSync(`/proc/${shard.pid}/environ`, 'utf8').split('\0');
        const names = environ.map((v) => v.slice(0, v.indexOf('=')));
        for (const [name, value] of Object.entries(secrets)) {
          assert.ok(!names.includes(name) && !environ.some((v) => v.includes(value)), `child ${shard.pid} does not inherit ${name}`);
        }
        assert.deepEqual(names.filter((n) => n.startsWith('UPDRAFT_')), [], `child ${shard.pid} inherits no UPDRAFT_ variable`);
        // the rest of the environment is inherited: only the secrets are left out
        assert.ok(environ.includes('SIM_TEST_HARMLESS=kept') && names.includes('PATH'), `child ${shard.pid} keeps the rest of the environment`);
      }
      assert.deepEqual(await trusting(`reported.agent.trust = signing-key and reported.agent.keyId = ${keyId}`, 'trusted-'), devices.map((d) => d.deviceId), 'every device trusts the signing key');
      // verified on each device: a manifest its agent could not verify fails the job
      const jobId = await rollout(devices);
      await eventually(async () => ((await outcome(jobId)).SUCCEEDED === 4 ? true : undefined), 60_000, 'every device verified and installed the update');
    } finally {
      await cli.kill('SIGKILL').catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("the command: a server with a certificate from an offline root has its devices trust the root, as `device register --save` provisions them", async () => {
    const own = await startTestServer();
    const ownApi = new ApiClient({ server: own.httpUrl, token: own.token });
    const dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-sim-root-'));
    const root = generateKeyPairSync('ed25519');
    const rootPem = root.publicKey.export({ type: 'spki', format: 'pem' }).toString();
    const certificate = certifySigningKey(root.privateKey, createPublicKey(own.server.security.signingKey.publicKeyPem), 1, Math.floor(Date.now() / 1000) + 3600);
    await ownApi.call('PUT', '/api/v1/keys/signing/certificate', { certificate, rootPublicKey: rootPem });
    const devices = await registerFleet(ownApi, 'rooted-', 2);
    const file = path.join(dir, 'devices.json');
    await writeFile(file, JSON.stringify(devices), { mode: 0o600 });
    const cli = startCli(['sim', '--devices-file', file, '--broker', own.mqttUrl, '--server', own.httpUrl, '--token', own.token]);
    try {
      await cli.waitFor(/sim: ready 2 devices/, 60_000);
      const rootKeyId = keyIdOf(root.publicKey);
      assert.match(cli.output(), new RegExp(`^sim: the devices verify every update as provisioned devices do: trust = root ${rootKeyId}$`, 'm'));
      const query = new URLSearchParams({ query: `reported.agent.trust = root and reported.agent.keyId = ${rootKeyId}` });
      await eventually(async () => ((await ownApi.call<{ items: unknown[] }>('GET', `/api/v1/fleet/devices?${query}`)).items.length === 2 ? true : undefined), 30_000, 'both devices trust the root, as the server records them');
      // each command carries the root's certificate of the signing key: checked on the device
      await ownApi.call('POST', '/api/v1/artifacts?name=fw&version=2.0.0', randomBytes(1024));
      const { job } = await ownApi.call<{ job: { jobId: string } }>('POST', '/api/v1/deployments', { devices: devices.map((d) => d.deviceId), artifact: 'fw@2.0.0' });
      await eventually(async () => {
        const { executions } = await ownApi.call<{ executions: { status: string }[] }>('GET', `/api/v1/jobs/${job.jobId}`);
        return executions.filter((x) => x.status === 'SUCCEEDED').length === 2 ? true : undefined;
      }, 60_000, 'both devices verified the certificate and the manifest, and installed');
    } finally {
      await cli.kill('SIGKILL').catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
      await own.close();
    }
  });

  it('a rerun keeps what a device trusting the root keeps on its disk: the highest key certificate serial it accepted, its key, and the root it rotated to', async () => {
    // a rerun's devices started from {software, finished} alone: a device that had accepted
    // certificate 2 took certificate 1 again, and one that had followed a root rotation trusted
    // the old root again (review of 665f770)
    const own = await startTestServer();
    const ownApi = new ApiClient({ server: own.httpUrl, token: own.token });
    const dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-sim-keep-trust-'));
    const signing = createPublicKey(own.server.security.signingKey.publicKeyPem);
    const hour = Math.floor(Date.now() / 1000) + 3600;
    const root1 = generateKeyPairSync('ed25519');
    const root2 = generateKeyPairSync('ed25519');
    const [id1, id2] = [keyIdOf(root1.publicKey), keyIdOf(root2.publicKey)];
    const deploy = async (devices: SimDevice[], version: string) => {
      await ownApi.call('POST', `/api/v1/artifacts?name=fw&version=${version}`, randomBytes(1024));
      const { job } = await ownApi.call<{ job: { jobId: string } }>('POST', '/api/v1/deployments', { devices: devices.map((d) => d.deviceId), artifact: `fw@${version}` });
      await eventually(async () => {
        const { executions } = await ownApi.call<{ executions: { status: string }[] }>('GET', `/api/v1/jobs/${job.jobId}`);
        assert.ok(!executions.some((x) => x.status === 'FAILED'), `fw@${version}: ${JSON.stringify(executions)}`);
        return executions.filter((x) => x.status === 'SUCCEEDED').length === devices.length ? true : undefined;
      }, 60_000, `fw@${version} installed on ${devices.length} devices`);
    };
    // what the agent of device i checks certificates with (private: the policy is not reported whole)
    type Policy = { rootKey: import('node:crypto').KeyObject; minSerial: number; minSerialKeyId?: string };
    const policy = (sim: FleetSimulator, i: number) => (sim as unknown as { slots: { agent: { signatures: Policy } }[] }).slots[i]!.agent.signatures;
    const provisioned = { rootPublicKey: root1.publicKey };
    try {
      await ownApi.call('PUT', '/api/v1/keys/signing/certificate', { certificate: certifySigningKey(root1.privateKey, signing, 1, hour), rootPublicKey: root1.publicKey.export({ type: 'spki', format: 'pem' }).toString() });
      const devices = await registerFleet(ownApi, 'keep-', 2);
      const first = new FleetSimulator({ brokerUrl: own.mqttUrl, trust: provisioned, devices, mode: 'connected', installMs: 5 });
      try {
        await first.start();
        await deploy(devices, '2.0.0');
        // the root rotated on the server: root 2 certifies the signing key, serial 2; device 0 alone takes a command since
        await ownApi.call('PUT', '/api/v1/keys/signing/certificate', { certificate: certifySigningKey(root2.privateKey, signing, 2, hour), rootRotations: [rotateRoot(root1.privateKey, root2.privateKey)] });
        await deploy([devices[0]!], '3.0.0');
        assert.deepEqual([keyIdOf(policy(first, 0).rootKey), policy(first, 0).minSerial], [id2, 2], 'device 0 followed the rotation and accepted serial 2');
      } finally {
        await first.stop();
      }
      const saved = await first.devicesState();
      const keyId = own.server.security.signingKey.keyId;
      assert.deepEqual(
        saved.map((d) => ({ keySerial: d.state?.keySerial, keySerialKeyId: d.state?.keySerialKeyId, rotatedRoot: d.state?.rotatedRoot && { keyId: d.state.rotatedRoot.keyId, provisionedKeyId: d.state.rotatedRoot.provisionedKeyId } })),
        [
          { keySerial: 2, keySerialKeyId: keyId, rotatedRoot: { keyId: id2, provisionedKeyId: id1 } },
          { keySerial: 1, keySerialKeyId: keyId, rotatedRoot: undefined },
        ],
        'each device keeps its own trust state',
      );

      // a rerun in this process, the devices provisioned with root 1 as before: each starts where it was
      const rerun = new FleetSimulator({ brokerUrl: own.mqttUrl, trust: provisioned, devices: saved, mode: 'connected', installMs: 5 });
      try {
        await rerun.start();
        assert.deepEqual([keyIdOf(policy(rerun, 0).rootKey), policy(rerun, 0).minSerial, policy(rerun, 0).minSerialKeyId], [id2, 2, keyId], 'device 0 trusts root 2 and refuses certificates below serial 2');
        assert.deepEqual([keyIdOf(policy(rerun, 1).rootKey), policy(rerun, 1).minSerial], [id1, 1], 'device 1 trusts root 1, serial 1 at least');
      } finally {
        await rerun.stop();
      }

      // the command: the devices file written at a stop is read back with the trust state, and written again with it
      const file = path.join(dir, 'devices.json');
      const rootFile = path.join(dir, 'root.pub');
      await writeFile(file, JSON.stringify(await rerun.devicesState()), { mode: 0o600 });
      await writeFile(rootFile, root1.publicKey.export({ type: 'spki', format: 'pem' }));
      const cli = startCli(['sim', '--devices-file', file, '--broker', own.mqttUrl, '--root-key', rootFile]);
      try {
        await cli.waitFor(/sim: ready 2 devices/, 60_000);
        assert.equal(await cli.kill(), 0, cli.output());
      } finally {
        await cli.kill('SIGKILL').catch(() => undefined);
      }
      const kept = JSON.parse(readFileSync(file, 'utf8')) as SimDevice[];
      assert.deepEqual(kept.map((d) => [d.state?.keySerial, d.state?.rotatedRoot?.keyId]), [[2, id2], [1, undefined]], 'the command keeps them across its run');

      // read back, the devices share one rotated root (all rotate to the same): one object, not one per device
      const read = deviceStateReader();
      const states = [...kept, kept[0]!].map((d) => read(d.state));
      assert.ok(states[0]!.rotatedRoot && states[0]!.rotatedRoot === states[2]!.rotatedRoot, 'one rotated root object for the devices that rotated to it');
      assert.deepEqual(read({ ...kept[0]!.state, keySerial: 'two', keySerialKeyId: 'not-a-key-id', rotatedRoot: { keyId: id2 } }), { software: kept[0]!.state!.software, finished: kept[0]!.state!.finished }, 'malformed trust fields are dropped, as the agent drops them');
    } finally {
      await rm(dir, { recursive: true, force: true });
      await own.close();
    }
  });

  it('the command: devices that cannot get the key are refused in one line, before anything is registered; --insecure-allow-unsigned runs them unsigned and says so; --signing-key takes it from a file', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'updraft-sim-untrusted-'));
    const nobody = `http://127.0.0.1:${await freePort()}`; // no server there: the key's file and the opt-out need none
    const pub = signingKeyPaths(ts.dataDir).pub;
    const notKey = path.join(dir, 'not-a-key.pub');
    await writeFile(notKey, 'hello');
    const registered = async (prefix: string) => (await ts.server.store.listDevices({ limit: 1000 })).items.filter((d) => d.deviceId.startsWith(prefix)).length;
    try {
      // the server cannot be asked (a wrong token): one line saying what to do, exit 2, nothing registered
      const refused = await runCli(['sim', '--server', ts.httpUrl, '--token', 'updr_not-the-token', '--broker', ts.mqttUrl, '--devices', '2', '--prefix', 'untrusted-']);
      assert.equal(refused.code, 2, refused.stderr);
      assert.equal(refused.stderr.trim().split('\n').length, 1, `one line: ${refused.stderr}`);
      assert.match(refused.stderr.trim(), /^updraft: error: the simulated devices verify updates with the server's public key, and asking http:\/\/127\.0\.0\.1:\d+ for it \(GET \/api\/v1\/keys\) failed: .+\. Give --server and --token \(or --data-dir\), or the key with --root-key or --signing-key <file> \(updraft keys export-public\), or --insecure-allow-unsigned for devices that verify nothing$/);
      assert.equal(await registered('untrusted-'), 0, 'nothing registered');
      for (const [bad, message] of [
        [['--insecure-allow-unsigned', '--signing-key', pub], 'updraft: error: --insecure-allow-unsigned with --signing-key: the devices verify with the key, or accept unsigned software; give one'],
        [['--root-key', pub, '--signing-key', pub], 'updraft: error: --root-key and --signing-key: give one (a device trusts the root, or the signing key alone)'],
        [['--signing-key', path.join(dir, 'missing.pub')], `updraft: error: cannot read --signing-key ${path.join(dir, 'missing.pub')}: ENOENT: no such file or directory, open '${path.join(dir, 'missing.pub')}'`],
      ] as const) {
        const r = await runCli(['sim', '--server', ts.httpUrl, '--token', ts.token, '--broker', ts.mqttUrl, '--devices', '2', '--prefix', 'untrusted-', ...bad]);
        assert.equal(r.code, 2, bad.join(' '));
        assert.equal(r.stderr.trim(), message, bad.join(' '));
      }
      const notPem = await runCli(['sim', '--server', ts.httpUrl, '--token', ts.token, '--broker', ts.mqttUrl, '--devices', '2', '--prefix', 'untrusted-', '--root-key', notKey]);
      assert.equal(notPem.code, 2, notPem.stderr);
      assert.match(notPem.stderr.trim(), new RegExp(`^updraft: error: --root-key ${notKey.replace(/[.]/g, '\\.')} is not an Ed25519 public key in PEM: `));
      assert.equal(await registered('untrusted-'), 0, 'no option error leaves devices behind');

      // the explicit opt-out: no server asked, a warning, and the server records the devices as unsigned
      const loose = await registerFleet(api, 'loose-', 2);
      await writeFile(path.join(dir, 'loose.json'), JSON.stringify(loose));
      const unsigned = startCli(['sim', '--devices-file', path.join(dir, 'loose.json'), '--broker', ts.mqttUrl, '--server', nobody, '--insecure-allow-unsigned']);
      try {
        await unsigned.waitFor(/sim: ready 2 devices/, 60_000);
        assert.match(unsigned.output(), /^sim: warning: --insecure-allow-unsigned: the devices verify no signature and accept unsigned software/m);
        assert.deepEqual(await trusting('reported.agent.trust = unsigned', 'loose-'), loose.map((d) => d.deviceId), 'both accept unsigned software, as doctor will say');
      } finally {
        await unsigned.kill('SIGKILL').catch(() => undefined);
      }

      // the key from a file (as `updraft agent --signing-key`): no server asked either
      const filed = await registerFleet(api, 'filed-', 2);
      await writeFile(path.join(dir, 'filed.json'), JSON.stringify(filed));
      const fromFile = startCli(['sim', '--devices-file', path.join(dir, 'filed.json'), '--broker', ts.mqttUrl, '--server', nobody, '--signing-key', pub]);
      try {
        await fromFile.waitFor(/sim: ready 2 devices/, 60_000);
        assert.deepEqual(await trusting(`reported.agent.trust = signing-key and reported.agent.keyId = ${ts.server.security.signingKey.keyId}`, 'filed-'), filed.map((d) => d.deviceId), 'both trust the key of the file');
      } finally {
        await fromFile.kill('SIGKILL').catch(() => undefined);
      }
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('splits a fleet into contiguous slices that cover it once', () => {
    for (const [n, count] of [[30, 3], [31, 3], [5, 4], [1, 1], [7, 7]] as const) {
      const items = Array.from({ length: n }, (_, i) => i);
      const slices = Array.from({ length: count }, (_, index) => sliceOf(items, { index, count }));
      assert.deepEqual(slices.flatMap((s) => s.items), items, `${n} over ${count}`);
      for (const s of slices) assert.equal(s.items[0], s.first, 'first is the index of the slice in the fleet');
      const sizes = slices.map((s) => s.items.length);
      assert.ok(Math.max(...sizes) - Math.min(...sizes) <= 1, `balanced: ${sizes}`);
    }
    assert.equal(parseFirstIndex('20'), 20);
    for (const bad of ['-1', '2.5', 'x', '']) assert.throws(() => parseFirstIndex(bad), /non-negative integer/);
    // the processes' shares of the connect rate and the concurrency add up to the totals (rounded up, 2/s over 4 processes connected 4/s)
    assert.deepEqual(sharesOf(5000, 3), [1666, 1667, 1667]);
    assert.deepEqual(sharesOf(2, 2), [1, 1]);
    assert.deepEqual(sharesOf(7, 4), [1, 2, 2, 2]);
    assert.throws(() => sharesOf(2, 4), /each takes at least 1/);
  });
});
