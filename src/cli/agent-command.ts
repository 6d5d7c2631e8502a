/** `updraft agent`: runs one device's update agent (the daemon of `src/agent/`). */
import { readFile } from 'node:fs/promises';
import { Option, type Command } from 'commander';
import { checkTlsMaterial } from '../agent/tls-files.ts';
import { UpdraftError } from '../errors.ts';
import { parsePublicKey } from '../signing/signing-key.ts';
import { DEFAULT_BROKER_URL, readDeviceSecret, secretFilePath } from '../agent/provisioning.ts';
import { createLogger, type LogFormat, type LogLevel } from '../util/logger.ts';
import { logProcessWarnings } from '../util/process-warnings.ts';
import { wholeNumber } from '../util/number-text.ts';

interface AgentFlags {
  device: string;
  installDir: string;
  broker?: string;
  username?: string;
  password?: string;
  healthCheck?: string;
  healthCheckTimeout: string;
  initialVersion?: string;
  logLevel: string;
  logFormat: string;
  signingKey?: string;
  rootKey?: string;
  insecureAllowUnsigned?: boolean;
  downloadAuth: string;
  maxDownloadRate?: string;
  maxUrlRefreshes?: string;
  downloadRetryFor?: string;
  deviceType?: string;
  installGate?: string;
  installGateRetry: string;
  installGateMaxWait: string;
  timeZone?: string;
  ca?: string;
  cert?: string;
  key?: string;
  renewCertificateDays: string;
}

/** The longest --health-check-timeout, in seconds: a timer holds at most 2147483647 ms (about 24.8 days). */
const MAX_HEALTH_CHECK_TIMEOUT_S = 2_147_483;

/** Adds `agent`. The agent's modules (mqtt.js, the certificate renewer) are loaded only when it runs. */
export function addAgentCommand(program: Command): void {
  program
    .command('agent')
    .description('run a device agent: take update commands from the delta, download, verify, install, report')
    .requiredOption('--device <id>', 'device id (also the MQTT client id)')
    .requiredOption('--install-dir <dir>', 'directory for the A/B slots, the current pointer and agent state')
    .option('--broker <url>', `MQTT broker URL [env UPDRAFT_BROKER, default ${DEFAULT_BROKER_URL}]`)
    .option('--username <name>', 'MQTT user name')
    .option('--password <secret>', 'device secret [env UPDRAFT_DEVICE_PASSWORD, default: <install-dir>/.updraft/device-secret]')
    .option('--health-check <cmd>', 'shell command run after switching slots; non-zero exit rolls back')
    .option('--health-check-timeout <s>', 'seconds before a health check counts as failed (0.001 to 2147483, about 24.8 days)', '60')
    .option('--initial-version <v>', 'version to report while nothing was installed yet')
    .addOption(new Option('--log-level <level>', 'how much to log').choices(['debug', 'info', 'warn', 'error']).default('info'))
    .addOption(new Option('--log-format <format>', 'text, or json (one object per line)').choices(['text', 'json']).default('text'))
    .option('--signing-key <file>', "the operator's software signing public key [env UPDRAFT_SIGNING_KEY, default: <install-dir>/.updraft/signing-key.pub]")
    .option('--root-key <file>', "the offline root's public key, instead of --signing-key: signing keys it certifies are trusted, so the server's can be replaced (updraft keys certify) [env UPDRAFT_ROOT_KEY, default: <install-dir>/.updraft/root-key.pub]")
    .option('--insecure-allow-unsigned', 'accept unsigned software when no signing key is given (insecure)')
    .option('--download-auth <how>', 'url: the pre-signed URL; token: a temporary credential asked for over MQTT', 'url')
    .option('--install-gate <cmd>', 'shell command asked before installing a verified build: exit 0 installs, 75 puts it off (asked again later), anything else fails the job; the last line of stderr says why')
    .option('--install-gate-retry <s>', 'seconds before asking the install gate again (at most 86400)', '300')
    .option('--time-zone <zone>', "this device's IANA time zone (Europe/Madrid): a rollout whose maintenance windows are each device's own time installs when one is open here [env UPDRAFT_TIME_ZONE, default: the system's]")
    .option('--install-gate-max-wait <s>', 'seconds of waiting, counted from the gate\'s first ask for the job, before a gate that keeps putting it off fails it', '86400')
    .option('--device-type <type>', 'what hardware this is (rpi4, gw-rev-b): builds added for other device types are refused before download [env UPDRAFT_DEVICE_TYPE]')
    .option('--max-download-rate <rate>', 'most bytes per second a download takes, for metered or shared links: 500k, 2M (1k = 1,000 bytes); default no limit')
    .option('--download-retry-for <s>', 'seconds a download keeps retrying, without a byte gained, through failures that may pass (no connection, 5xx, 429, 503 and its Retry-After) before the job fails; 404, a refused URL or a bad file fail at once (0 to 604800); default 600')
    .option('--max-url-refreshes <n>', 'fresh download URLs (or credentials) asked for per job after a 403, and in a row after expiries with no byte downloaded between (0 to 100); default 3')
    .option('--ca <file>', "CA certificate to verify an mqtts:// broker with (Updraft's CA: <data-dir>/pki/ca.crt)")
    .option('--cert <file>', 'client certificate for MQTT over TLS (updraft device cert); the device id is its CN, no secret needed')
    .option('--key <file>', 'private key of --cert')
    .option('--renew-certificate-days <n>', 'renew --cert over MQTT when fewer than this many days are left, writing the new pair over --cert and --key (0: never)', '30')
    .action(async (o: AgentFlags) => {
      const [{ checkAgentOptions, runAgentDaemon }, { settleRenewedFiles }] = await Promise.all([import('../agent/daemon.ts'), import('../agent/certificate-renewer.ts')]);
      // a timer holds at most 2^31-1 ms: a longer timeout fired at once and rolled back a good update
      const timeout = secondsIn(o.healthCheckTimeout);
      if (!(timeout >= 0.001 && timeout <= MAX_HEALTH_CHECK_TIMEOUT_S)) {
        throw new UpdraftError('BAD_REQUEST', `--health-check-timeout must be a number of seconds from 0.001 to ${MAX_HEALTH_CHECK_TIMEOUT_S} (about 24.8 days), got ${o.healthCheckTimeout}`);
      }
      // where a value given outside the command line came from, for the errors about it
      const sources: Record<string, string> = {};
      const flagOrEnv = (flag: string, value: string | undefined, variable: string): string | undefined => {
        if (value !== undefined) return value;
        const v = fromEnvironment(variable);
        if (v !== undefined) sources[flag] = `env ${variable}`;
        return v;
      };
      const brokerUrl = flagOrEnv('--broker', o.broker, 'UPDRAFT_BROKER') ?? DEFAULT_BROKER_URL;
      const maxRate = o.maxDownloadRate === undefined ? undefined : parseRate(o.maxDownloadRate);
      // digits only: Number() would take '' as 0 and ' 2 ' as 2 (the options check refuses NaN)
      const maxUrlRefreshes = o.maxUrlRefreshes === undefined ? undefined : /^\d+$/.test(o.maxUrlRefreshes) ? Number(o.maxUrlRefreshes) : NaN;
      const downloadRetryForMs = o.downloadRetryFor === undefined ? undefined : /^\d+$/.test(o.downloadRetryFor) ? Number(o.downloadRetryFor) * 1000 : NaN;
      const deviceType = flagOrEnv('--device-type', o.deviceType, 'UPDRAFT_DEVICE_TYPE');
      const timeZone = flagOrEnv('--time-zone', o.timeZone, 'UPDRAFT_TIME_ZONE');
      // every option is checked before a file is read: a secret missing for a device id that
      // is not valid anyway would send the user to register it
      badFlags(() => checkAgentOptions({
        deviceId: o.device,
        installDir: o.installDir,
        brokerUrl,
        downloadAuth: o.downloadAuth as 'url' | 'token',
        ...(o.initialVersion !== undefined ? { initialVersion: o.initialVersion } : {}),
        ...(maxRate !== undefined ? { maxDownloadBytesPerSecond: maxRate } : {}),
        ...(maxUrlRefreshes !== undefined ? { maxUrlRefreshes } : {}),
        ...(downloadRetryForMs !== undefined ? { downloadRetryForMs } : {}),
        ...(deviceType !== undefined ? { deviceType } : {}),
        ...(timeZone !== undefined ? { timeZone } : {}),
        installGateRetryMs: secondsIn(o.installGateRetry) * 1000,
        installGateMaxWaitMs: secondsIn(o.installGateMaxWait) * 1000,
        // which of --cert and --key were given (the file names stand for the PEM texts read
        // later): one without the other was found by runAgentDaemon's own check, CONFIG, exit 1
        ...(o.cert !== undefined || o.key !== undefined ? { tls: { ...(o.cert !== undefined ? { cert: o.cert } : {}), ...(o.key !== undefined ? { key: o.key } : {}) } } : {}),
      }, sources));
      // an empty secret is never a device's: given so, the broker refused it at every reconnect
      if (o.password !== undefined && o.password.trim() === '') {
        throw new UpdraftError('BAD_REQUEST', `--password is empty: give the device's secret, or leave it out to read ${secretFilePath(o.installDir)}`);
      }
      if (o.username !== undefined && o.username.trim() === '') {
        throw new UpdraftError('BAD_REQUEST', `--username is empty: leave it out to connect as the device id, ${o.device}`);
      }
      // `sh -c ''` exits 0: an empty gate installed every build at once, and an empty health
      // check kept every one, without a word (a unit file's "$GATE" unset)
      for (const [flag, command, without] of [['--install-gate', o.installGate, 'installs a verified build at once'], ['--health-check', o.healthCheck, 'keeps an installed build unchecked']] as const) {
        if (command !== undefined && command.trim() === '') throw new UpdraftError('BAD_REQUEST', `${flag} is empty: give the command, or leave the option out (the agent then ${without})`);
      }
      const read = (file: string, what: string) => readFile(file, 'utf8').catch((err: Error) => {
        throw new UpdraftError('BAD_REQUEST', `cannot read ${what}${sources[what] ? ` (${sources[what]})` : ''} ${file}: ${err.message}`);
      });
      // digits only: Number('') is 0, which turned the renewal off (a unit file's "$RENEW_DAYS" unset)
      const renewDays = wholeNumber(o.renewCertificateDays, 0, 365);
      if (renewDays === undefined) throw new UpdraftError('BAD_REQUEST', '--renew-certificate-days must be a whole number of days from 0 to 365');
      // a renewal stopped halfway through its files is finished (or dropped) before they are read
      if (o.cert !== undefined && o.key !== undefined) await settleRenewedFiles({ cert: o.cert, key: o.key });
      const tls = {
        ...(o.ca !== undefined ? { ca: await read(o.ca, '--ca') } : {}),
        ...(o.cert !== undefined ? { cert: await read(o.cert, '--cert') } : {}),
        ...(o.key !== undefined ? { key: await read(o.key, '--key') } : {}),
      };
      // parsed before the agent starts, naming the option and file: OpenSSL's own words
      // ("PEM routines::no start line") came after the start-up lines, naming neither
      checkTlsMaterial(tls, o);
      const keyFile = flagOrEnv('--signing-key', o.signingKey, 'UPDRAFT_SIGNING_KEY');
      const rootFile = flagOrEnv('--root-key', o.rootKey, 'UPDRAFT_ROOT_KEY');
      // UPDRAFT_DEVICE_PASSWORD= (empty) was taken as the secret: the saved one was not read,
      // and the broker refused the device at every reconnect
      const given = o.password ?? fromEnvironment('UPDRAFT_DEVICE_PASSWORD');
      // a secret file the agent cannot read (saved by root, the agent run as a service user):
      // one line naming the file and what to do, exit 2, not the raw errno with exit 1 (QA)
      const password =
        given ??
        (await readDeviceSecret(o.installDir).catch((err: NodeJS.ErrnoException) => {
          const fix = err.code === 'EACCES' || err.code === 'EPERM' ? ': run the agent as the user that owns it, or give that user the file (chown; mode 0600)' : ' (--install-dir)';
          throw new UpdraftError('BAD_REQUEST', `cannot read the device secret ${secretFilePath(o.installDir)}: ${err.message}${fix}`);
        }));
      if (password === undefined && o.cert === undefined) {
        throw new UpdraftError('UNAUTHORIZED', `no device secret: register the device with "updraft device register ${o.device} --save ${o.installDir}" (writes ${secretFilePath(o.installDir)}), or pass --password`);
      }
      const logger = createLogger({ level: o.logLevel as LogLevel, format: o.logFormat as LogFormat, component: 'agent' });
      // Node's warnings as log lines of the chosen format (with --log-format json, every line is JSON)
      logProcessWarnings(logger);
      await runAgentDaemon({
        deviceId: o.device,
        installDir: o.installDir,
        brokerUrl,
        logger,
        // rounded: 1.1 * 1000 is 1100.0000000000002
        healthCheckTimeoutMs: Math.round(timeout * 1000),
        username: o.username ?? o.device,
        ...(password !== undefined ? { password } : {}),
        // a secret read from the install directory is read there again at each reconnect
        ...(given === undefined && password !== undefined ? { passwordFile: secretFilePath(o.installDir) } : {}),
        ...(given !== undefined ? { passwordFrom: o.password !== undefined ? '--password' : 'UPDRAFT_DEVICE_PASSWORD' } : {}),
        ...(Object.keys(tls).length > 0 ? { tls } : {}),
        ...(o.cert !== undefined && o.key !== undefined ? { tlsFiles: { cert: o.cert, key: o.key }, renewCertificateDays: renewDays } : {}),
        // read again as each reconnect attempt starts: a file replaced on the device is used without a restart
        ...(o.ca !== undefined || o.cert !== undefined ? { tlsPaths: { ...(o.ca !== undefined ? { ca: o.ca } : {}), ...(o.cert !== undefined && o.key !== undefined ? { cert: o.cert, key: o.key } : {}) } } : {}),
        ...(keyFile !== undefined ? { signingPublicKey: publicKeyIn(await read(keyFile, '--signing-key'), '--signing-key', keyFile) } : {}),
        ...(rootFile !== undefined ? { rootPublicKey: publicKeyIn(await read(rootFile, '--root-key'), '--root-key', rootFile) } : {}),
        ...(o.insecureAllowUnsigned ? { allowUnsigned: true } : {}),
        downloadAuth: o.downloadAuth as 'url' | 'token',
        ...(maxRate !== undefined ? { maxDownloadBytesPerSecond: maxRate } : {}),
        ...(maxUrlRefreshes !== undefined ? { maxUrlRefreshes } : {}),
        ...(downloadRetryForMs !== undefined ? { downloadRetryForMs } : {}),
        ...(deviceType !== undefined ? { deviceType } : {}),
        ...(timeZone !== undefined ? { timeZone } : {}),
        ...(o.installGate !== undefined ? { installGate: o.installGate } : {}),
        installGateRetryMs: secondsIn(o.installGateRetry) * 1000,
        installGateMaxWaitMs: secondsIn(o.installGateMaxWait) * 1000,
        ...(o.healthCheck !== undefined ? { healthCheck: o.healthCheck } : {}),
        ...(o.initialVersion !== undefined ? { initialVersion: o.initialVersion } : {}),
      });
    });
}

/**
 * Seconds written as a decimal number (`60`, `0.5`), else NaN, which the option's check refuses
 * with its own words. Number() took '0x10' as 16, '1e3' as 1000 and ' 5' as 5.
 */
function secondsIn(text: string): number {
  return /^\d+(\.\d+)?$/.test(text) ? Number(text) : NaN;
}

/**
 * An agent's `UPDRAFT_*` variable: an empty or blank one (`UPDRAFT_DEVICE_PASSWORD=` in a unit
 * file or a script) is one not set (the server takes an empty one so too, and refuses a blank
 * one by name: docs/configuration.md). Taken as a
 * value, an empty password was sent instead of the saved secret (refused at every reconnect),
 * and an empty broker, type or time zone was refused as if given on the command line.
 */
function fromEnvironment(name: string): string | undefined {
  const v = process.env[name];
  // blank too: '  ' as the password was sent as the secret while --password '  ' is refused (review)
  return v === undefined || v.trim() === '' ? undefined : v;
}

/**
 * Runs the daemon's options check as a check of flags: what it refuses is bad input (exit 2,
 * README), where the daemon itself, given options by a program, calls it a CONFIG fault.
 */
function badFlags(check: () => void): void {
  try {
    check();
  } catch (err) {
    if (err instanceof UpdraftError && err.code === 'CONFIG') throw new UpdraftError('BAD_REQUEST', err.message, { cause: err });
    throw err;
  }
}

/** `500k`, `2M` or a number of bytes per second (k = 1,000, M = 1,000,000); NaN when it is none of those (the options check says so). */
export function parseRate(text: string): number {
  const m = /^(\d+(?:\.\d+)?)([kKmM]?)$/.exec(text.trim());
  if (!m) return NaN;
  const unit = m[2]!.toLowerCase();
  return Math.round(Number(m[1]) * (unit === 'k' ? 1_000 : unit === 'm' ? 1_000_000 : 1));
}

/** `text`, once it parses as the Ed25519 public key `option` names (BAD_REQUEST naming the option and file). */
function publicKeyIn(text: string, option: string, file: string): string {
  try {
    parsePublicKey(text);
  } catch (err) {
    throw new UpdraftError('BAD_REQUEST', `${option} ${file} is not an Ed25519 public key in PEM: ${(err as Error).message.replace(/^not a PEM public key: /, '')}`);
  }
  return text;
}

