/** `updraft sim`: a simulated fleet in its own process, against a running Updraft. */
import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { UpdraftError } from '../errors.ts';
import { FleetSimulator, SIM_DEFAULTS, type SimDevice } from '../sim/fleet-simulator.ts';
import { registerFleet } from '../sim/register-fleet.ts';
import { ApiClient } from './api-client.ts';

function num(value: string, name: string, min: number, max: number): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n < min || n > max) throw new UpdraftError('BAD_REQUEST', `--${name} must be a number from ${min} to ${max}`);
  return n;
}

/** Adds `sim`. */
export function addSimCommand(program: Command): void {
  program
    .command('sim')
    .description('run a simulated fleet (the agent library with a simulated installer) against a running server')
    .option('--devices <n>', 'number of devices to register and run', '100')
    .option('--devices-file <file>', 'JSON array of {deviceId, secret} to run instead of registering new ones')
    .option('--prefix <prefix>', 'device id prefix for registered devices', 'sim-')
    .option('--server <url>', 'Updraft server URL (for registration)')
    .option('--token <token>', 'operator token')
    .option('--data-dir <dir>', 'server data dir holding the operator token', './data')
    .option('--broker <url>', 'MQTT broker URL', 'mqtt://127.0.0.1:1883')
    .option('--mode <mode>', 'connected (all online) or cycling (connect, update, disconnect)', 'connected')
    .option('--concurrency <n>', 'cycling: devices online at once', String(SIM_DEFAULTS.concurrency))
    .option('--connect-rate <n>', 'new connections per second', String(SIM_DEFAULTS.connectRate))
    .option('--install-ms <ms>', 'simulated install duration', '0')
    .option('--failure-rate <p>', 'probability an install fails its health check', '0')
    .option('--crash-rate <p>', 'probability a device crashes while installing (and restarts)', '0')
    .option('--offline-rate <p>', 'probability a device goes offline while downloading', '0')
    .option('--offline-ms <ms>', 'length of an offline period', String(SIM_DEFAULTS.offlineMs))
    .option('--seed <n>', 'random seed', '1')
    .option('--until-finished', 'exit once every device finished a job, printing a JSON summary')
    .action(async (o: Record<string, string | boolean | undefined>) => {
      const mode = o.mode as string;
      if (mode !== 'connected' && mode !== 'cycling') throw new UpdraftError('BAD_REQUEST', '--mode must be connected or cycling');
      let devices: SimDevice[];
      if (typeof o.devicesFile === 'string') {
        devices = JSON.parse(await readFile(o.devicesFile, 'utf8')) as SimDevice[];
      } else {
        const api = new ApiClient({ ...(o.server ? { server: o.server as string } : {}), ...(o.token ? { token: o.token as string } : {}), dataDir: o.dataDir as string });
        devices = await registerFleet(api, o.prefix as string, num(o.devices as string, 'devices', 1, 10_000_000));
      }
      const sim = new FleetSimulator({
        brokerUrl: o.broker as string,
        devices,
        mode,
        concurrency: num(o.concurrency as string, 'concurrency', 1, 100_000),
        connectRate: num(o.connectRate as string, 'connect-rate', 1, 1_000_000),
        installMs: num(o.installMs as string, 'install-ms', 0, 3_600_000),
        failureRate: num(o.failureRate as string, 'failure-rate', 0, 1),
        crashRate: num(o.crashRate as string, 'crash-rate', 0, 1),
        offlineRate: num(o.offlineRate as string, 'offline-rate', 0, 1),
        offlineMs: num(o.offlineMs as string, 'offline-ms', 0, 3_600_000),
        seed: num(o.seed as string, 'seed', 0, 2 ** 31),
      });
      const ticker = setInterval(() => process.stderr.write(`sim: ${JSON.stringify(sim.stats)}\n`), 1000);
      const stop = async () => {
        clearInterval(ticker);
        await sim.stop();
      };
      process.once('SIGINT', () => void stop().then(() => process.exit(0)));
      process.once('SIGTERM', () => void stop().then(() => process.exit(0)));
      void sim.whenFinished(devices.length).then(() => process.stdout.write(`sim: finished ${devices.length} devices ${JSON.stringify({ ...sim.stats, ...sim.requestsSent() })} installs=${sim.installs}\n`));
      await sim.start();
      process.stdout.write(`sim: ready ${devices.length} devices (${mode})\n`);
      if (o.untilFinished) {
        await sim.whenFinished(devices.length);
        await stop();
        process.stdout.write(JSON.stringify({ ...sim.stats, devices: devices.length, installs: sim.installs }) + '\n');
        process.exit(0);
      }
    });
}
