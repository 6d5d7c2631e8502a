/** `updraft sim`: a simulated fleet in its own process, against a running Updraft. */
import { randomBytes } from 'node:crypto';
import { open, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { readJsonFile } from './json-file.ts';
import { unwritableReason } from './output-file.ts';
import { Option, type Command } from 'commander';
import { writeFileAtomic } from '../util/atomic-file.ts';
import { UpdraftError } from '../errors.ts';
import type { SimulatedFleet } from '../sim/fleet-simulator.ts';
import { SIM_DEFAULTS, type SimDevice } from '../sim/sim-options.ts';
import { deviceStateReader } from '../sim/device-state.ts';
import { registerFleet } from '../sim/register-fleet.ts';
import { OwedCommands, type OwedPage } from '../sim/owed-commands.ts';
import { askParent, parseFirstIndex, reportToParent, SimProcesses } from '../sim/sim-processes.ts';
import { describeTrust, fetchTrustAnchor, readTrustAnchor, simTrustOf, type SimTrust, type TrustAnchor } from '../sim/sim-trust.ts';
import { ApiClient, serverUrl, type ApiOptions } from './api-client.ts';
import { dataDirOption } from './data-dir-option.ts';
import { probability, wholeNumber } from '../util/number-text.ts';

/** A whole number from `min` to `max` (digits only: '', '2.5', '1e3' and '-1' are refused). */
function int(value: string, name: string, min: number, max: number): number {
  const n = wholeNumber(value, min, max);
  if (n === undefined) throw new UpdraftError('BAD_REQUEST', `--${name} must be an integer from ${min} to ${max}`);
  return n;
}

/** A probability from 0 to 1, written as a decimal number ('' is refused, not read as 0). */
function rate(value: string, name: string): number {
  const n = probability(value);
  if (n === undefined) throw new UpdraftError('BAD_REQUEST', `--${name} must be a number from 0 to 1`);
  return n;
}

/** The schemes the agent connects with (as `updraft agent --broker` accepts them). */
const BROKER_SCHEMES = new Set(['mqtt:', 'mqtts:', 'ws:', 'wss:', 'tcp:', 'tls:']);

/**
 * `--broker`, checked before anything is registered: mqtt.js reads 'foo' as no URL at all
 * (an error once the fleet is registered) and '127.0.0.1:1883' as the scheme '127.0.0.1:' (a
 * fleet that never connects, silently).
 */
function brokerUrl(value: string): string {
  let url: URL | undefined;
  try {
    url = new URL(value);
  } catch {
    // said below
  }
  // not echoed: a broker URL may carry a password
  if (!url || !BROKER_SCHEMES.has(url.protocol) || url.hostname === '') throw new UpdraftError('BAD_REQUEST', '--broker must be a URL like mqtt://host:1883 (mqtt, mqtts, ws, wss, tcp or tls, and a host)');
  return value;
}

/**
 * `--save-devices`, checked before anything is registered: the secrets are shown once, and a
 * file found unwritable only once they were (a missing directory: ENOENT on the temporary
 * file) lost them. A file made and removed beside it, where writeFileAtomic makes its own,
 * answers for a missing directory, its permissions and a read-only file system alike.
 */
async function checkWritable(file: string): Promise<void> {
  if ((await stat(file).catch(() => undefined))?.isDirectory()) throw new UpdraftError('BAD_REQUEST', `--save-devices ${file} is a directory: name a file`);
  const dir = path.dirname(file);
  const probe = path.join(dir, `.${path.basename(file)}.${randomBytes(4).toString('hex')}.probe`);
  try {
    await (await open(probe, 'wx', 0o600)).close();
  } catch (err) {
    const why = unwritableReason(err, file) ?? (err as Error).message;
    throw new UpdraftError('BAD_REQUEST', `cannot write --save-devices ${file}: ${why}`);
  }
  await rm(probe, { force: true });
}

/**
 * The devices of a `--devices-file`: a JSON array of {deviceId, secret}, as `--save-devices`
 * writes it, each with the `state` a run wrote when it stopped, if any (read by
 * `deviceStateReader`: one without the software it runs is dropped, and that device starts
 * afresh; a malformed finished job or trust field is dropped alone).
 */
async function readDevicesFile(file: string): Promise<SimDevice[]> {
  const devices = await readJsonFile(file);
  const ok = Array.isArray(devices) && devices.length > 0 && devices.every((d) => typeof d?.deviceId === 'string' && typeof d?.secret === 'string');
  if (!ok) throw new UpdraftError('BAD_REQUEST', `${file} must be a JSON array of {deviceId, secret}, as --save-devices writes it`);
  const stateOf = deviceStateReader();
  return (devices as SimDevice[]).map((d) => {
    const state = stateOf(d.state);
    return state ? { deviceId: d.deviceId, secret: d.secret, state } : { deviceId: d.deviceId, secret: d.secret };
  });
}

/**
 * What the devices trust (`--root-key`, `--signing-key`, `--insecure-allow-unsigned`, or by
 * default the server's key, asked of its API). No fallback to unsigned devices when the server
 * cannot be asked: a bench or demo would then measure devices that check nothing, and say so
 * only in a warning scrolled away; the opt-out is a flag, as for `updraft agent`.
 */
async function trustAnchorOf(o: Record<string, string | boolean | undefined>, api: () => ApiClient): Promise<TrustAnchor | 'unsigned'> {
  const given = (['rootKey', 'signingKey'] as const).filter((k) => typeof o[k] === 'string');
  if (given.length > 1) throw new UpdraftError('BAD_REQUEST', '--root-key and --signing-key: give one (a device trusts the root, or the signing key alone)');
  if (given.length > 0 && o.insecureAllowUnsigned) throw new UpdraftError('BAD_REQUEST', `--insecure-allow-unsigned with ${given[0] === 'rootKey' ? '--root-key' : '--signing-key'}: the devices verify with the key, or accept unsigned software; give one`);
  if (typeof o.rootKey === 'string') return readTrustAnchor('root', o.rootKey);
  if (typeof o.signingKey === 'string') return readTrustAnchor('signing', o.signingKey);
  if (o.insecureAllowUnsigned) return 'unsigned';
  return fetchTrustAnchor(api);
}

/**
 * Cycling: `SimOptions.commandOwed` asked of the server, per job (owed-commands.ts: GET
 * /api/v1/jobs/{id}/executions?status=QUEUED,IN_PROGRESS, paged), when an operator token is at
 * hand (--token, UPDRAFT_TOKEN, the data dir's); none, said once, when not. Its own client: no
 * wait through a server that cannot answer (each question failed after 30 s of tries, saying
 * so per device) and a 10 s limit per request (review of d646af1); a question that fails
 * counts as nothing owed, said once.
 */
export function commandOwedOf(apiOf: (extra: ApiOptions) => ApiClient): { commandOwed?: (deviceId: string, jobId: string, since: number) => Promise<boolean> } {
  let api: ApiClient;
  try {
    api = apiOf({ retryForMs: 0, requestTimeoutMs: 10_000 });
  } catch (err) {
    process.stderr.write(`sim: note: no server to ask whether it owes a failed device a retry (${(err as Error).message}): a device whose update failed is done once a visit finds no command (give --server and --token, or --data-dir, to wait for a retry a rollout holds back)\n`);
    return {};
  }
  const owed = new OwedCommands((jobId, after) =>
    api.call<OwedPage>('GET', `/api/v1/jobs/${encodeURIComponent(jobId)}/executions?status=QUEUED,IN_PROGRESS&limit=1000${after !== undefined ? `&after=${encodeURIComponent(after)}` : ''}`),
  );
  let failedSaid = false;
  return {
    commandOwed: (deviceId, jobId, since) =>
      owed.owed(deviceId, jobId, since).catch((err: Error) => {
        if (!failedSaid) process.stderr.write(`sim: warning: cannot ask the server whether it owes devices a retry of job ${jobId} (${err.message}); a device asked about while it cannot answer is done at its visit with no command (said once)\n`);
        failedSaid = true;
        throw err;
      }),
  };
}

/** Adds `sim`. */
export function addSimCommand(program: Command): void {
  program
    .command('sim')
    .description('run a simulated fleet (the agent library with a simulated installer) against a running server')
    .option('--devices <n>', 'number of devices to register and run', '100')
    .option('--devices-file <file>', 'JSON array of {deviceId, secret} to run instead of registering new ones; when the sim stops it writes there what each device runs and the jobs it finished, so a rerun starts where the devices were')
    .option('--prefix <prefix>', 'device id prefix for registered devices', 'sim-')
    .option('--save-devices <file>', 'write the registered devices and their secrets there (mode 0600), to run them again with --devices-file')
    .option('--server <url>', 'Updraft server URL (for registration)')
    .option('--token <token>', 'operator token')
    .addOption(dataDirOption('server data dir holding the operator token'))
    .option('--broker <url>', 'MQTT broker URL', 'mqtt://127.0.0.1:1883')
    .option('--root-key <file>', "the offline root's public key the devices verify updates with (default: asked of the server, GET /api/v1/keys, with --server and --token or --data-dir, also beside --devices-file: its root when it has a certificate from one, else its signing key, as `updraft device register --save` provisions a device)")
    .option('--signing-key <file>', "the server's software signing public key the devices verify updates with, instead of --root-key (updraft keys export-public)")
    .option('--insecure-allow-unsigned', 'devices that verify nothing and accept unsigned software (reported as trust = unsigned, which doctor and the Health page warn about); not with --root-key or --signing-key')
    .option('--mode <mode>', 'connected (all online) or cycling (a bench scenario: each device visits, at most --concurrency at once, until its update succeeded or it was given up, then visits no more in this run: a later job does not reach it)', 'connected')
    .option('--concurrency <n>', 'cycling: devices online at once', String(SIM_DEFAULTS.concurrency))
    .option('--connect-rate <n>', 'new connections per second, in both modes (cycling visits and reconnections after a crash or an offline period included)', String(SIM_DEFAULTS.connectRate))
    .option('--install-ms <ms>', 'simulated install duration', '0')
    .option('--failure-rate <p>', 'probability an install fails its health check', '0')
    .option('--crash-rate <p>', 'probability, per device and job attempt, that the device crashes while installing (it restarts, resumes and finishes the job)', '0')
    .option('--offline-rate <p>', 'probability, per device and job attempt, that the device goes offline once while downloading (for --offline-ms, then resumes)', '0')
    .option('--offline-ms <ms>', 'length of an offline period', String(SIM_DEFAULTS.offlineMs))
    .option('--seed <n>', 'random seed', '1')
    .option('--until-finished', `exit once every device's update ended in this run (it succeeded, or failed: in cycling mode once a visit after the failure found no retry for it; a stay that took an attempt back is that attempt's failure, a job superseded by a newer one is no ending; a job it finished in an earlier run, kept in the devices file, does not count) or was given up (refused ${SIM_DEFAULTS.refusalsToGiveUp} times in a row for a reason retrying cannot fix: a wrong secret, not authorized, client id rejected, banned, protocol version not supported), printing a JSON summary; exit code 1 if any was given up`)
    .option('--processes <n>', 'split the fleet over n simulator processes (one core and at most ~20,000 connections each), each with its share of --connect-rate and --concurrency', '1')
    .addOption(new Option('--first-index <n>', 'run --devices-file as the slice starting at device n of the fleet, reporting to the parent process (--processes)').hideHelp())
    .addOption(new Option('--ask-parent', 'cycling, with --first-index: ask the parent process whether the server owes a failed device a command').hideHelp())
    .action(async (o: Record<string, string | boolean | undefined>) => {
      const mode = o.mode as string;
      if (mode !== 'connected' && mode !== 'cycling') throw new UpdraftError('BAD_REQUEST', '--mode must be connected or cycling');
      const processes = int(o.processes as string, 'processes', 1, 64);
      // a child of `--processes`: its slice of the fleet, and where the slice starts
      const firstIndex = typeof o.firstIndex === 'string' ? parseFirstIndex(o.firstIndex) : undefined;
      const shard = firstIndex !== undefined;
      if (shard && (!process.send || typeof o.devicesFile !== 'string')) throw new UpdraftError('BAD_REQUEST', '--first-index is for the processes `updraft sim --processes` starts');
      // every option is checked before anything is registered: a typo must not leave devices behind
      if (typeof o.saveDevices === 'string' && typeof o.devicesFile === 'string') throw new UpdraftError('BAD_REQUEST', '--save-devices saves the devices this run registers; with --devices-file it registers none');
      const concurrency = int(o.concurrency as string, 'concurrency', 1, 100_000);
      const connectRate = int(o.connectRate as string, 'connect-rate', 1, 1_000_000);
      const behaviour = {
        brokerUrl: brokerUrl(o.broker as string),
        mode,
        installMs: int(o.installMs as string, 'install-ms', 0, 3_600_000),
        failureRate: rate(o.failureRate as string, 'failure-rate'),
        crashRate: rate(o.crashRate as string, 'crash-rate'),
        offlineRate: rate(o.offlineRate as string, 'offline-rate'),
        offlineMs: int(o.offlineMs as string, 'offline-ms', 0, 3_600_000),
        seed: int(o.seed as string, 'seed', 0, 2 ** 31),
      } as const;
      // the fleet's size, known before anything is registered: --processes cannot exceed it
      const fromFile = typeof o.devicesFile === 'string' ? await readDevicesFile(o.devicesFile) : undefined;
      const count = fromFile?.length ?? int(o.devices as string, 'devices', 1, 10_000_000);
      if (!shard && processes > count) throw new UpdraftError('BAD_REQUEST', `--processes ${processes} is more than the ${count} devices`);
      // each process takes its share of the totals, and a share is 1 at least: a total below
      // the processes would be exceeded (the fleet's rate, its devices online at once)
      if (!shard && processes > connectRate) throw new UpdraftError('BAD_REQUEST', `--connect-rate ${connectRate} is less than 1 per process (--processes ${processes}): each process connects at its share of the rate`);
      if (!shard && mode === 'cycling' && processes > concurrency) throw new UpdraftError('BAD_REQUEST', `--concurrency ${concurrency} is less than 1 per process (--processes ${processes}): each process keeps its share of the devices online`);
      // the server's URL too (a bad one is refused, exit 2, as by every command), also one given
      // beside --devices-file, which registers nothing: it was ignored there
      const server = typeof o.server === 'string' ? o.server : undefined;
      if (server !== undefined || !fromFile) serverUrl(server);
      if (typeof o.saveDevices === 'string') await checkWritable(o.saveDevices);
      const apiOf = (extra: ApiOptions = {}) => new ApiClient({ ...(server !== undefined ? { server } : {}), ...(o.token ? { token: o.token as string } : {}), dataDir: o.dataDir as string, ...extra });
      // what the devices verify with, known before anything is registered (a server that cannot
      // be asked must not leave devices behind)
      const anchor = await trustAnchorOf(o, apiOf);
      const trust: SimTrust = anchor === 'unsigned' ? { allowUnsigned: true } : simTrustOf(anchor);
      let devices: SimDevice[];
      if (fromFile) {
        devices = fromFile;
      } else {
        const api = apiOf();
        // saved after each request of the registration, not only at its end: a request that
        // fails later must not lose the secrets of the devices registered before it
        // (a new file renamed over the target: 0600 even where a file with wider rights was)
        const save = typeof o.saveDevices === 'string' ? (all: SimDevice[]) => writeFileAtomic(o.saveDevices as string, JSON.stringify(all), 0o600) : undefined;
        devices = await registerFleet(api, o.prefix as string, count, save).catch((err: unknown) => {
          const kept = save && err instanceof UpdraftError && /the requests before this one registered/.test(err.message) ? `; their secrets are in ${o.saveDevices as string}` : '';
          if (err instanceof UpdraftError && err.status === 409) {
            throw new UpdraftError('CONFLICT', `${err.message}${kept}. By an earlier run? Pick another --prefix, or run those devices again with --devices-file and the file --save-devices wrote`);
          }
          if (kept && err instanceof UpdraftError) throw new UpdraftError(err.code, `${err.message}${kept}`, { status: err.status });
          throw err;
        });
      }
      // said once the fleet is there (an error before it stays the one line the command ends with)
      if (anchor === 'unsigned' && !shard) {
        process.stderr.write('sim: warning: --insecure-allow-unsigned: the devices verify no signature and accept unsigned software (trust = unsigned: doctor and the Health page warn about them)\n');
      } else if (!shard) {
        process.stderr.write(`sim: the devices verify every update as provisioned devices do: trust = ${describeTrust(trust)}\n`);
      }
      // the agent and mqtt.js: loaded only to run (every other command starts without them)
      const { FleetSimulator } = await import('../sim/fleet-simulator.ts');
      let fleet: SimulatedFleet;
      let failed: Promise<never> | undefined;
      // a fleet the broker turns away must not sit at connected:0 in silence: the first device
      // refused is named with the reason, and the counts say how many are (`refused`)
      let refusedSaid = false;
      const onRefused = (deviceId: string, reason: string) => {
        if (refusedSaid) return;
        refusedSaid = true;
        process.stderr.write(`sim: warning: ${deviceId} cannot connect: ${reason} (a wrong secret, a revoked or deleted device, no broker there?); "refused" in the counts is how many devices cannot\n`);
      };
      // cycling: a device whose update failed, and whose visit found no command, is done unless
      // the server says it still owes it one (a retry its rollout holds back): asked of the
      // server by this process (a child of --processes: by its parent, which has the token)
      const owed = mode !== 'cycling' ? {} : shard ? (o.askParent ? { commandOwed: askParent() } : {}) : commandOwedOf(apiOf);
      if (shard) {
        fleet = new FleetSimulator({ ...behaviour, devices, trust, concurrency, connectRate, firstIndex, onRefused, ...owed });
      } else if (processes > 1) {
        // each child takes the options that describe the devices' behaviour as they are
        const childArgs = ['--broker', behaviour.brokerUrl, '--mode', mode, '--seed', String(behaviour.seed), '--install-ms', String(behaviour.installMs)];
        childArgs.push('--failure-rate', String(behaviour.failureRate), '--crash-rate', String(behaviour.crashRate), '--offline-rate', String(behaviour.offlineRate), '--offline-ms', String(behaviour.offlineMs));
        const parent = new SimProcesses({ devices, processes, childArgs, trust: anchor === 'unsigned' ? { allowUnsigned: true } : anchor, connectRate, ...(mode === 'cycling' ? { concurrency } : {}), ...owed });
        failed = parent.failed;
        fleet = parent;
      } else {
        fleet = new FleetSimulator({ ...behaviour, devices, trust, concurrency, connectRate, onRefused, ...owed });
      }
      const ticker = shard ? undefined : setInterval(() => process.stderr.write(`sim: ${JSON.stringify(fleet.stats)}\n`), 1000);
      const toParent = shard ? reportToParent(fleet, () => stop()) : undefined;
      // the devices file (--devices-file, or the one --save-devices wrote; a child's slice) keeps
      // what each device runs and the jobs it finished, for the next run
      const keep = typeof o.devicesFile === 'string' ? o.devicesFile : typeof o.saveDevices === 'string' ? o.saveDevices : undefined;
      let stopping: Promise<void> | undefined;
      const stop = () =>
        (stopping ??= (async () => {
          clearInterval(ticker);
          toParent?.close();
          await fleet.stop();
          if (keep) {
            await writeFileAtomic(keep, JSON.stringify(await fleet.devicesState()), 0o600).catch((err: Error) => process.stderr.write(`updraft: warning: the devices' state is not kept in ${keep}: ${err.message}\n`));
          }
        })());
      // the final counts, said as the command stops on a signal (the parent's: a child's are in
      // its parent's): the `sim: finished` line comes once, when every device first finished a
      // job, and a sim stopped before or long after said nothing of what its devices did since
      let stoppedSaid = false;
      const stoppedBy = (signal: NodeJS.Signals) => () =>
        void stop().then(() => {
          // once: a second Ctrl-C waits for the first's stop, and says nothing more
          if (!shard && !stoppedSaid) process.stdout.write(`sim: stopped by ${signal} ${JSON.stringify({ ...fleet.stats, ...fleet.requestsSent(), devices: devices.length, installs: fleet.installs })}\n`);
          stoppedSaid = true;
          process.exit(0);
        });
      // Ctrl-C reaches every process of the group: a child leaves its stopping to the parent,
      // which would otherwise see it exit first and report it as a failure. A second Ctrl-C (or
      // SIGTERM) waits for the first's stop (bounded: a child is killed after 15 s) rather than
      // killing the command half way, which left its children's files, and the devices'
      // secrets in them, on disk
      if (shard) process.on('SIGINT', () => undefined);
      else process.on('SIGINT', stoppedBy('SIGINT'));
      process.on('SIGTERM', stoppedBy('SIGTERM'));
      // a child process that died takes the whole simulation down, with one readable line
      void failed?.catch(async (err: Error) => {
        await stop();
        process.stderr.write(`updraft: error: ${err.message}\n`);
        process.exit(1);
      });
      // a stop resolves the connects still waiting, and with them start(): that is no readiness
      const started = () => fleet.start().then(() => stopping === undefined);
      if (shard) {
        if (await started()) toParent!.ready();
        return;
      }
      // every device finished a job or was given up (refused for good): the bench reads this line
      // (`sim: finished N devices {...} installs=K`); the given-up ones come after, not in N
      void fleet.whenFinished(devices.length).then(() => {
        const { finished, gaveUp } = fleet.stats;
        process.stdout.write(`sim: finished ${finished} devices ${JSON.stringify({ ...fleet.stats, ...fleet.requestsSent() })} installs=${fleet.installs}${gaveUp ? ` gave-up=${gaveUp}` : ''}\n`);
      });
      if (!(await started())) return;
      // connected: ready once every device is connected or given up (refused for good), and the
      // line says how many are which; it starts as it did, for the bench and scripts that wait on it
      const counts = mode === 'connected' ? ` connected=${fleet.stats.connected} refused=${fleet.stats.refused}` : '';
      process.stdout.write(`sim: ready ${devices.length} devices (${mode}${processes > 1 ? `, ${processes} processes` : ''})${counts}\n`);
      if (o.untilFinished) {
        await fleet.whenFinished(devices.length);
        await stop();
        const { gaveUp } = fleet.stats;
        process.stdout.write(JSON.stringify({ ...fleet.stats, devices: devices.length, installs: fleet.installs }) + '\n');
        // a run that could not run its whole fleet is no result to compare: a script must see it
        if (gaveUp > 0) {
          process.stderr.write(`updraft: error: gave up on ${gaveUp} of ${devices.length} devices: the broker refused each ${SIM_DEFAULTS.refusalsToGiveUp} times in a row for a reason retrying cannot fix (bad user name or password, not authorized, client id rejected, banned, protocol version not supported: a wrong secret, a revoked or deleted device, a broker older than MQTT 3.1.1); the summary counts them in "gaveUp"\n`);
          process.exit(1);
        }
        process.exit(0);
      }
    });
}
