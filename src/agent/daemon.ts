/**
 * `updraft agent`: runs one device's update agent as a long-lived process with the slot
 * installer under `--install-dir` (agent state in `<install-dir>/.updraft`), logs each phase
 * as one line on stderr, and stops cleanly on SIGINT/SIGTERM.
 */
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { UpdraftError } from '../errors.ts';
import { isTimeZone } from '../protocol/maintenance-window.ts';
import { ID_RULE, isValidId } from '../protocol/topics.ts';
import { MAX_WAIT_CHECK_SECONDS, STORED_SEMVER } from '../protocol/software.ts';
import { createLogger, type Logger } from '../util/logger.ts';
import { safeUrl } from '../util/redact-url.ts';
import { ExclusiveLock } from '../util/exclusive-lock.ts';
import { saveRenewedFiles, type TlsPair } from './certificate-renewer.ts';
import { TlsFileReader, type TlsMaterial } from './tls-files.ts';
import { connectionErrorHint } from './connection-hints.ts';
import { UpdateAgent } from './agent.ts';
import type { UpdateAgentOptions } from './agent-options.ts';
import { brokerUrlProblem, timerMsProblem } from './agent-options-check.ts';
import { runInstallGate } from './health-check.ts';
import { DEFAULT_BROKER_URL, rootKeyFilePath, secretFileReader, signingKeyFilePath } from './provisioning.ts';
import { SlotInstaller } from './slot-installer.ts';
import { isBadDirPath, makeDir } from '../util/make-dir.ts';

/** Options of `updraft agent`. */
export interface AgentDaemonOptions {
  /** Device id (`--device`). */
  deviceId: string;
  /** Install directory (`--install-dir`): slots, `current` symlink, `.updraft/` state. */
  installDir: string;
  /** Broker URL (`--broker`, default `mqtt://127.0.0.1:1883`). */
  brokerUrl?: string;
  /** MQTT username (`--username`). */
  username?: string;
  /** MQTT password (`--password`). */
  password?: string;
  /**
   * The file the password was read from (`<install-dir>/.updraft/device-secret`): read again
   * before each reconnect, so a secret rotated into it (`updraft device rotate-secret
   * --save`) is used without a restart.
   */
  passwordFile?: string;
  /** Where a secret given (not read from `passwordFile`) came from, for the log: `--password`, `UPDRAFT_DEVICE_PASSWORD`. */
  passwordFrom?: string;
  /** Health-check command run after each install (`--health-check`); exit 0 keeps the new version. */
  healthCheck?: string;
  /** Health-check timeout in ms (`--health-check-timeout`, default 60 000), from 1 to 2147483647 (a timer's longest). */
  healthCheckTimeoutMs?: number;
  /** Version reported while nothing was installed yet (`--initial-version`, default none: `0.0.0`). */
  initialVersion?: string;
  /**
   * The operator's software signing public key (SPKI PEM text, `--signing-key <file>`);
   * default: `<install-dir>/.updraft/signing-key.pub` (written by `device register --save`).
   * Without one the daemon refuses to start unless `allowUnsigned`.
   */
  signingPublicKey?: string;
  /**
   * The offline root's public key (SPKI PEM text, `--root-key <file>`) instead: the signing
   * key may then be replaced without provisioning the device again (docs/security.md).
   * Default: `<install-dir>/.updraft/root-key.pub` (written by `device register --save` when
   * the server has a certificate from a root), preferred over a provisioned signing key; a
   * key given explicitly wins over a provisioned one.
   */
  rootPublicKey?: string;
  /** Accept unsigned software (`--insecure-allow-unsigned`). */
  allowUnsigned?: boolean;
  /** Download with the pre-signed URL (default) or a temporary credential (`--download-auth token`). */
  downloadAuth?: 'url' | 'token';
  /** Most bytes per second a download takes (`--max-download-rate`); absent: no limit. */
  maxDownloadBytesPerSecond?: number;
  /**
   * How long a download keeps retrying failures that may pass (no connection, a 5xx, 429)
   * without a byte gained, in ms (`--download-retry-for`, seconds; default 10 minutes).
   */
  downloadRetryForMs?: number;
  /**
   * Fresh download URLs (or credentials) asked for per job after a 403, and in a row after
   * expiries without a byte downloaded between (`--max-url-refreshes`, default 3).
   */
  maxUrlRefreshes?: number;
  /** What hardware this is (`--device-type`): builds made for other types are refused. */
  deviceType?: string;
  /**
   * Shell command asked before installing a verified build (`--install-gate`): exit 0
   * installs, 75 puts it off (asked again after `installGateRetryMs`), anything else fails the
   * job; the last line of its stderr is the reason.
   */
  installGate?: string;
  installGateRetryMs?: number;
  installGateMaxWaitMs?: number;
  /** This device's IANA time zone (`--time-zone`), default the system's: where a job's windows in each device's own time are read. */
  timeZone?: string;
  /** TLS material for an `mqtts://` broker (`--ca`, `--cert`, `--key`): PEM texts. */
  tls?: { ca?: string; cert?: string; key?: string };
  /**
   * The files `tls.cert` and `tls.key` were read from: the certificate is renewed before it
   * expires and written over them (`agent/certificate-renewer.ts`).
   */
  tlsFiles?: { cert: string; key: string };
  /**
   * The files `tls` was read from (`--ca`, `--cert`, `--key`): read again as each reconnect
   * attempt starts, and used from it when they changed and are usable (`tls-files.ts`).
   */
  tlsPaths?: TlsMaterial;
  /** Renew the client certificate when fewer than this many days are left (default 30; 0: never). */
  renewCertificateDays?: number;
  /** Where lines go (default: stderr, level info). */
  logger?: Logger;
  /** Stops the daemon when aborted (embedding, tests). SIGINT and SIGTERM always stop it. */
  signal?: AbortSignal;
}

export { DEFAULT_BROKER_URL } from './provisioning.ts';

/**
 * The most `--max-url-refreshes` allowed: each refusal is followed by a pause of up to 30 s,
 * so 100 already keeps a refused job going for most of an hour before it fails.
 */
export const MAX_URL_REFRESHES = 100;

/** The longest `--download-retry-for`, in seconds: a week (the job's own timeouts bound it anyway). */
export const MAX_DOWNLOAD_RETRY_SECONDS = 7 * 86_400;

/** Runs the agent until SIGINT, SIGTERM or `opts.signal`; resolves after a clean stop. */
export async function runAgentDaemon(opts: AgentDaemonOptions): Promise<void> {
  checkAgentOptions(opts);
  const log = opts.logger ?? createLogger({ component: 'agent' });
  const installDir = path.resolve(opts.installDir);
  const stateDir = path.join(installDir, '.updraft');
  await makeDir(stateDir).catch((err: Error) => {
    // a path that cannot be a directory is a bad --install-dir (exit code 2)
    throw new UpdraftError('CONFIG', `cannot create the agent's state directory ${stateDir} (--install-dir): ${err.message}`, { cause: err, ...(isBadDirPath(err) ? { status: 400 } : {}) });
  });
  // two agents on one install directory connected with the same client id (the broker drops
  // one for the other, for ever), downloaded into the same .part and installed into the same
  // slot (QA): the second is refused. Held until the process ends, a kill too (util/exclusive-lock.ts)
  const lock = new ExclusiveLock(
    path.join(stateDir, AGENT_LOCK),
    `another updraft agent is running on ${installDir} (it holds ${path.join(stateDir, AGENT_LOCK)}): one agent per install directory; stop that one first, or give this one its own --install-dir`,
  );
  await lock.start();
  try {
    await runWithLock(opts, log, installDir, stateDir);
  } finally {
    await lock.stop();
  }
}

/** The lock file in `<install-dir>/.updraft` that the running daemon holds. */
export const AGENT_LOCK = 'agent.lock';

async function runWithLock(opts: AgentDaemonOptions, log: Logger, installDir: string, stateDir: string): Promise<void> {
  const trust = await resolveTrust(opts, installDir);
  if (trust === undefined && opts.allowUnsigned !== true) {
    throw new UpdraftError('CONFIG', `no software signing key: pass --signing-key <file> (the server's keys/software-signing.pub; updraft keys export-public) or --root-key <file>, or save it as ${signingKeyFilePath(installDir)} (updraft device register --save does), or --insecure-allow-unsigned`);
  }
  const installer = new SlotInstaller({
    dir: installDir,
    logger: log,
    ...(opts.healthCheck !== undefined ? { healthCheck: opts.healthCheck } : {}),
    ...(opts.healthCheckTimeoutMs !== undefined ? { healthCheckTimeoutMs: opts.healthCheckTimeoutMs } : {}),
    ...(opts.initialVersion !== undefined ? { initialVersion: opts.initialVersion } : {}),
  });
  // --ca, --cert and --key read again as each reconnect attempt starts (tls-files.ts)
  const tlsReader = opts.tlsPaths !== undefined && opts.tls !== undefined ? new TlsFileReader(opts.tlsPaths, opts.tls, log, `${opts.deviceId}: `) : undefined;
  const brokerUrl = opts.brokerUrl ?? DEFAULT_BROKER_URL;
  // CA problems said with the files to look at (connection-hints.ts)
  const hintContext = {
    tls: /^(mqtts|ssl|tls|wss|mqtts\+unix):/.test(brokerUrl),
    // the device's id, not --username: the hint's commands (updraft device show) take the id
    deviceId: opts.deviceId,
    brokerUrl: safeUrl(brokerUrl),
    ...(opts.passwordFile !== undefined ? { secretFrom: opts.passwordFile } : opts.password !== undefined ? { secretFrom: opts.passwordFrom ?? '--password' } : {}),
    ...(opts.tlsPaths?.ca !== undefined ? { caFile: opts.tlsPaths.ca } : {}),
    ...(opts.tlsPaths?.cert !== undefined ? { certFile: opts.tlsPaths.cert } : opts.tlsFiles !== undefined ? { certFile: opts.tlsFiles.cert } : {}),
  };
  const agent = new UpdateAgent({
    deviceId: opts.deviceId,
    brokerUrl,
    installer,
    connectionErrorHint: (error: string) => connectionErrorHint(error, hintContext),
    stateDir,
    logger: log,
    ...(trust ?? { allowUnsigned: true }),
    ...(opts.downloadAuth !== undefined ? { downloadAuth: opts.downloadAuth } : {}),
    downloadSettings: {
      ...(opts.maxDownloadBytesPerSecond !== undefined ? { maxBytesPerSecond: opts.maxDownloadBytesPerSecond } : {}),
      ...(opts.downloadRetryForMs !== undefined ? { retryForMs: opts.downloadRetryForMs } : {}),
    },
    ...(opts.maxUrlRefreshes !== undefined ? { maxUrlRefreshes: opts.maxUrlRefreshes } : {}),
    ...(opts.deviceType !== undefined ? { deviceType: opts.deviceType } : {}),
    ...(opts.timeZone !== undefined ? { timeZone: opts.timeZone } : {}),
    ...(opts.installGate !== undefined ? { installGate: gateOf(opts.installGate, installDir) } : {}),
    ...(opts.installGateRetryMs !== undefined ? { installGateRetryMs: opts.installGateRetryMs } : {}),
    ...(opts.installGateMaxWaitMs !== undefined ? { installGateMaxWaitMs: opts.installGateMaxWaitMs } : {}),
    ...(opts.tls ? { mqttOptions: { ...opts.tls, rejectUnauthorized: true } } : {}),
    ...(opts.tlsFiles && opts.renewCertificateDays !== 0
      ? {
          certificateRenewal: {
            renewBeforeDays: opts.renewCertificateDays ?? 30,
            save: async (pair: TlsPair) => {
              await saveRenewedFiles(opts.tlsFiles!, pair);
              tlsReader?.written({ cert: pair.certificate, key: pair.privateKey });
            },
          },
        }
      : {}),
    ...(opts.username !== undefined ? { username: opts.username } : {}),
    ...(opts.password !== undefined ? { password: opts.password } : {}),
    ...(opts.passwordFile !== undefined ? { renewPassword: secretFileReader(opts.passwordFile, opts.password, log) } : {}),
    ...(tlsReader !== undefined ? { reloadTls: (inUse: TlsMaterial) => tlsReader.read(inUse) } : {}),
  });
  const stop = new AbortController();
  // a stop closes the connection too: that one is not followed by a reconnect
  agent.on('connection', ({ online }) => log.info(online ? `${opts.deviceId}: connected` : stop.signal.aborted ? `${opts.deviceId}: disconnected` : `${opts.deviceId}: disconnected, reconnecting`));
  agent.on('status', (e) => {
    const why = e.error ? `: ${e.error}` : e.waiting ? `: install put off (${e.waiting.count}), asking again in ${e.waiting.nextCheckInSeconds} s: ${e.waiting.reason}` : '';
    log.info(`${opts.deviceId}: job ${e.jobId} ${e.status} ${e.version}${why}`);
  });
  agent.on('progress', (e) => log.info(`${opts.deviceId}: job ${e.jobId} DOWNLOADING ${Math.round(e.progress * 100)}%`));
  agent.on('job-finished', (e) => log.info(`${opts.deviceId}: job ${e.jobId} acknowledged: ${e.status}, running ${e.version}`));
  // the renewer says it at debug: one line at info, with both facts
  agent.on('certificate-renewed', (e) => log.info(`${opts.deviceId}: client certificate renewed, valid until ${new Date(e.expiresAt * 1000).toISOString()}; written to ${opts.tlsFiles?.cert}, used from the next connection`));

  const onSignal = () => stop.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  opts.signal?.addEventListener('abort', onSignal, { once: true });
  if (opts.signal?.aborted) stop.abort();
  try {
    const running = await installer.current();
    log.info(`${opts.deviceId}: starting, running ${running?.version ?? 'nothing yet'}, broker ${safeUrl(opts.brokerUrl ?? DEFAULT_BROKER_URL)}`);
    await agent.start();
    if (!stop.signal.aborted) await once(stop.signal, 'abort');
    log.info(`${opts.deviceId}: stopping`);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    opts.signal?.removeEventListener('abort', onSignal);
    await agent.stop();
  }
  log.info(`${opts.deviceId}: stopped`);
  log.flush?.();
}

/** The `--install-gate` command as the agent's gate: the build's name, version and job in its environment, a minute to answer. */
function gateOf(command: string, installDir: string): NonNullable<UpdateAgentOptions['installGate']> {
  return (sw, signal) =>
    runInstallGate({ command, cwd: installDir, env: { UPDRAFT_ARTIFACT: sw.name, UPDRAFT_VERSION: sw.version, UPDRAFT_JOB_ID: sw.jobId }, timeoutMs: 60_000, signal });
}

/** What the daemon trusts: a key given wins over a provisioned one, and a root over a signing key. */
async function resolveTrust(opts: AgentDaemonOptions, installDir: string): Promise<{ rootPublicKey: string } | { signingPublicKey: string } | undefined> {
  if (opts.rootPublicKey !== undefined) return { rootPublicKey: opts.rootPublicKey };
  if (opts.signingPublicKey !== undefined) return { signingPublicKey: opts.signingPublicKey };
  const root = await readIfThere(rootKeyFilePath(installDir));
  if (root !== undefined) return { rootPublicKey: root };
  const key = await readIfThere(signingKeyFilePath(installDir));
  return key !== undefined ? { signingPublicKey: key } : undefined;
}

async function readIfThere(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/**
 * Every problem of the options at once (STYLE.md habit 8); the command checks them before it
 * reads any file. `sources` names where a value given outside the command line came from
 * (`{ '--broker': 'env UPDRAFT_BROKER' }`): its problem says so, `--broker (env UPDRAFT_BROKER)
 * must be ...`, for an operator who finds no --broker on the command line.
 */
export function checkAgentOptions(opts: Partial<AgentDaemonOptions>, sources: Readonly<Record<string, string>> = {}): void {
  const problems: string[] = [];
  const named = (flag: string) => (sources[flag] !== undefined ? `${flag} (${sources[flag]})` : flag);
  if (!isValidId(opts.deviceId ?? '')) problems.push(`--device must be ${ID_RULE}`);
  if (!opts.installDir) problems.push('--install-dir is required');
  // the spelling taken before SEMVER followed §9: a device's unit file given 1.0.0-rc.01 then must still start
  if (opts.initialVersion !== undefined && !STORED_SEMVER.test(opts.initialVersion)) problems.push('--initial-version must be a semantic version like 1.0.0');
  // a timer holds at most 2^31-1 ms: a longer check timeout fired at once and rolled back a good update
  if (opts.healthCheckTimeoutMs !== undefined) {
    const problem = timerMsProblem('--health-check-timeout', opts.healthCheckTimeoutMs);
    if (problem !== undefined) problems.push(problem);
  }
  // the library's own rule: a scheme alone (mqtt://, mqtt://:1883), a port out of range or an
  // IPv6 address not closed passed a check of the scheme, and UpdateAgent refused it after the
  // lock was taken, exit 1 with 'invalid UpdateAgent options:' and nothing said of why (the
  // reason was on a second line); ssl:// and mqtt+unix:///path, which the library takes, were refused
  if (opts.brokerUrl !== undefined && brokerUrlProblem(opts.brokerUrl) !== undefined) problems.push(`${named('--broker')} must be a URL like mqtt://host:1883`);
  if (opts.downloadAuth !== undefined && !['url', 'token'].includes(opts.downloadAuth)) problems.push('--download-auth must be url or token');
  if (opts.timeZone !== undefined && !isTimeZone(opts.timeZone)) problems.push(`${named('--time-zone')} must be an IANA time zone such as Europe/Madrid or UTC, got ${opts.timeZone}`);
  if (opts.tls && (opts.tls.cert === undefined) !== (opts.tls.key === undefined)) problems.push('--cert and --key go together');
  for (const [flag, ms] of [['--install-gate-retry', opts.installGateRetryMs], ['--install-gate-max-wait', opts.installGateMaxWaitMs]] as const) {
    if (ms !== undefined && !(Number.isFinite(ms) && ms >= 1000)) problems.push(`${flag} must be a number of seconds of at least 1`);
  }
  // the device tells the server when it asks again (reported.software.waiting), at most a day ahead
  if (opts.installGateRetryMs !== undefined && opts.installGateRetryMs > MAX_WAIT_CHECK_SECONDS * 1000) problems.push(`--install-gate-retry must be at most ${MAX_WAIT_CHECK_SECONDS} seconds (a day)`);
  if (opts.maxDownloadBytesPerSecond !== undefined && !(Number.isFinite(opts.maxDownloadBytesPerSecond) && opts.maxDownloadBytesPerSecond >= 1000)) {
    problems.push('--max-download-rate must be at least 1k (bytes per second; k and M suffixes: 500k, 2M)');
  }
  if (opts.downloadRetryForMs !== undefined && !(Number.isSafeInteger(opts.downloadRetryForMs) && opts.downloadRetryForMs >= 0 && opts.downloadRetryForMs <= MAX_DOWNLOAD_RETRY_SECONDS * 1000)) {
    problems.push(`--download-retry-for must be a whole number of seconds from 0 to ${MAX_DOWNLOAD_RETRY_SECONDS} (a week)`);
  }
  if (opts.maxUrlRefreshes !== undefined && !(Number.isSafeInteger(opts.maxUrlRefreshes) && opts.maxUrlRefreshes >= 0 && opts.maxUrlRefreshes <= MAX_URL_REFRESHES)) {
    problems.push(`--max-url-refreshes must be a whole number from 0 to ${MAX_URL_REFRESHES}`);
  }
  if (opts.deviceType !== undefined && !isValidId(opts.deviceType)) problems.push(`${named('--device-type')} must be ${ID_RULE}`);
  if (problems.length > 0) throw new UpdraftError('CONFIG', `invalid agent options: ${problems.join('; ')}`);
}

