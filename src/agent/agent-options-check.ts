/**
 * Checks the options of an UpdateAgent in its constructor, every problem at once (STYLE.md
 * habit 8; the daemon's flags have `checkAgentOptions` in daemon.ts). The agent is a library:
 * options come from JavaScript callers, JSON config files and spreads, past the type checker.
 * Unchecked, a missing `brokerUrl` let mqtt.js connect to mqtt://localhost:1883 and hand the
 * device's username and secret to whatever broker ran there; others failed later, far from
 * their cause ("Cannot read properties of undefined", a request timing out every time).
 */
import { KeyObject } from 'node:crypto';
import { UpdraftError } from '../errors.ts';
import { isTimeZone } from '../protocol/maintenance-window.ts';
import { ID_RULE, idProblem } from '../protocol/topics.ts';
import { parsePublicKey } from '../signing/signing-key.ts';
import { redactUrl } from '../util/redact-url.ts';
import type { UpdateAgentOptions } from './agent-options.ts';

/** The longest delay a Node.js timer takes: a longer one fires at once (with a warning). */
export const MAX_TIMER_MS = 2_147_483_647;

/**
 * The broker URL schemes mqtt.js connects with in Node.js (its connect/index.js): `ssl:` is its
 * name for TLS too, and `+unix` a Unix socket (`mqtt+unix:///run/broker.sock`: no host).
 */
const BROKER_SCHEMES = ['mqtt:', 'mqtts:', 'tcp:', 'tls:', 'ssl:', 'ws:', 'wss:', 'mqtt+unix:', 'mqtts+unix:'];

type Options = Record<string, unknown>;
/** Why `value` (never undefined: an option left out is not checked here) is no good (a line each), or undefined. */
type Check = (value: unknown, opts: Options) => string | string[] | undefined;

/**
 * Throws UpdraftError CONFIG listing, one line each, every option that is missing, of the
 * wrong type or out of range, and every unknown one (a typo, such as `brokerURL`).
 */
export function checkUpdateAgentOptions(options: UpdateAgentOptions): void {
  const problems = updateAgentOptionProblems(options);
  if (problems.length > 0) throw new UpdraftError('CONFIG', `invalid UpdateAgent options:\n${problems.map((p) => `  ${p}`).join('\n')}`);
}

/** The problems `checkUpdateAgentOptions` reports, one line each; [] when there are none. */
export function updateAgentOptionProblems(options: unknown): string[] {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) return [`the options must be an object, got ${shown(options)}`];
  const opts = options as Options;
  const problems: string[] = [];
  for (const name of REQUIRED) {
    if (opts[name] === undefined) problems.push(`${name} is required: ${WHAT_REQUIRED[name]}`);
  }
  for (const [name, value] of Object.entries(opts)) {
    if (!Object.hasOwn(CHECKS, name)) {
      const near = Object.keys(CHECKS).find((k) => k.toLowerCase() === name.toLowerCase());
      problems.push(`unknown option ${name}${near ? `: did you mean ${near}?` : ''}`);
      continue;
    }
    if (value === undefined) continue;
    const problem = CHECKS[name as keyof UpdateAgentOptions](value, opts);
    if (problem !== undefined) problems.push(...[problem].flat());
  }
  if (opts.signingPublicKey === undefined && opts.rootPublicKey === undefined && opts.allowUnsigned !== true) {
    problems.push(
      'signingPublicKey is required (the operator\'s public key, SPKI PEM: updraft keys export-public), or rootPublicKey, or allowUnsigned: true to accept unsigned software (insecure)',
    );
  }
  return problems;
}

const REQUIRED = ['deviceId', 'brokerUrl', 'installer', 'stateDir'] as const satisfies readonly (keyof UpdateAgentOptions)[];

const WHAT_REQUIRED: Record<(typeof REQUIRED)[number], string> = {
  deviceId: `the device's id (its MQTT client id), ${ID_RULE}`,
  brokerUrl: 'the broker\'s URL, like mqtt://host:1883 or mqtts://host:8883 (there is no default)',
  installer: 'an Installer (SlotInstaller, SimulatedInstaller, or your own with current() and install())',
  stateDir: 'the directory that holds the agent\'s state and downloads',
};

/** One check per option: a new option that has none does not compile. */
const CHECKS: { readonly [K in keyof UpdateAgentOptions]-?: Check } = {
  deviceId: (v) => (typeof v === 'string' ? idProblem('deviceId', v) : `deviceId must be a string of ${ID_RULE}, got ${shown(v)}`),
  brokerUrl: (v) => brokerUrlProblem(v),
  username: (v) => (typeof v === 'string' ? undefined : `username must be a string, got ${typeName(v)}`),
  password: (v) => (typeof v === 'string' ? undefined : `password must be a string, got ${typeName(v)}`),
  renewPassword: fn('renewPassword', 'a function returning the password, or undefined to keep it'),
  reloadTls: fn('reloadTls', 'a function returning TLS material (ca, cert, key: PEM), or undefined to keep it'),
  connectionErrorHint: fn('connectionErrorHint', 'a function returning a hint for a connection error\'s message, or undefined'),
  certificateRenewal: (v, opts) => {
    if (!isObject(v) || typeof v.save !== 'function') return `certificateRenewal must be an object with save(pair), a function keeping the renewed certificate and key, got ${shown(v)}`;
    if (v.renewBeforeDays !== undefined && !(typeof v.renewBeforeDays === 'number' && Number.isFinite(v.renewBeforeDays) && v.renewBeforeDays > 0)) {
      return `certificateRenewal.renewBeforeDays must be a number of days above 0, got ${shown(v.renewBeforeDays)}`;
    }
    const mqttOptions = isObject(opts.mqttOptions) ? opts.mqttOptions : {};
    if (mqttOptions.cert === undefined || mqttOptions.key === undefined) return 'certificateRenewal needs the certificate to renew: mqttOptions.cert and mqttOptions.key (PEM)';
    return undefined;
  },
  signingPublicKey: (v) => publicKeyProblem('signingPublicKey', v),
  rootPublicKey: (v) => publicKeyProblem('rootPublicKey', v),
  allowUnsigned: (v) => (typeof v === 'boolean' ? undefined : `allowUnsigned must be true or false, got ${shown(v)}`),
  downloadAuth: (v) => (v === 'url' || v === 'token' ? undefined : `downloadAuth must be 'url' or 'token', got ${shown(v)}`),
  installGate: fn('installGate', 'a function (command, signal) resolving to { go: true }, { later: reason } or { refuse: reason }'),
  installGateRetryMs: ms('installGateRetryMs', 1),
  installGateMaxWaitMs: (v) => (isNumber(v) && v > 0 ? undefined : `installGateMaxWaitMs must be a number of milliseconds above 0, got ${shown(v)}`),
  installer: (v) => {
    if (!isObject(v)) return `installer must be an Installer (an object with current() and install()), got ${shown(v)}`;
    const missing = ['current', 'install'].filter((m) => typeof v[m] !== 'function');
    if (v.recover !== undefined && typeof v.recover !== 'function') missing.push('recover (optional, but then a function)');
    if (missing.length === 0) return undefined;
    return `installer must be an Installer: ${missing.length === 1 ? `${missing[0]} is not a function` : `${missing.join(' and ')} are not functions`}`;
  },
  stateDir: (v) => (typeof v === 'string' && v !== '' ? undefined : `stateDir must be the path of a directory (a non-empty string), got ${shown(v)}`),
  stateStore: (v) =>
    isObject(v) && typeof v.load === 'function' && typeof v.save === 'function'
      ? undefined
      : `stateStore must be an AgentStateStore (an object with load() and save(state): FileAgentStateStore, MemoryAgentStateStore), got ${shown(v)}`,
  download: fn('download', 'a Downloader, a function like downloadArtifact'),
  logger: (v) => {
    const missing = isObject(v) ? ['debug', 'info', 'warn', 'error', 'child'].filter((m) => typeof v[m] !== 'function') : [];
    return isObject(v) && missing.length === 0 ? undefined : `logger must be a Logger (debug, info, warn, error, child), got ${isObject(v) ? `one without ${missing.join(', ')}` : shown(v)}`;
  },
  requestTimeoutMs: ms('requestTimeoutMs', 1),
  requestAttempts: (v) => (isNumber(v) && Number.isSafeInteger(v) && v >= 1 ? undefined : `requestAttempts must be a whole number from 1, got ${shown(v)}`),
  retryDelayMs: ms('retryDelayMs', 1),
  maxRetryDelayMs: ms('maxRetryDelayMs', 1),
  progressStep: (v) => (isNumber(v) && v >= 0 && v <= 1 ? undefined : `progressStep must be a number from 0 to 1 (a share of the download), got ${shown(v)}`),
  progressIntervalMs: ms('progressIntervalMs', 0),
  urlMarginMs: (v) => (isNumber(v) && v >= 0 ? undefined : `urlMarginMs must be a number of milliseconds from 0, got ${shown(v)}`),
  maxUrlRefreshes: (v) => (isNumber(v) && Number.isSafeInteger(v) && v >= 0 ? undefined : `maxUrlRefreshes must be a whole number from 0, got ${shown(v)}`),
  downloadSettings: (v) => {
    if (!isObject(v)) return `downloadSettings must be an object, got ${shown(v)}`;
    const inner: Record<string, Check> = {
      retryForMs: (x) => (isNumber(x) && x >= 0 ? undefined : `downloadSettings.retryForMs must be a number of milliseconds from 0, got ${shown(x)}`),
      maxAttempts: (x) => (isNumber(x) && Number.isSafeInteger(x) && x >= 1 ? undefined : `downloadSettings.maxAttempts must be a whole number from 1, got ${shown(x)}`),
      retryDelayMs: ms('downloadSettings.retryDelayMs', 1),
      maxRetryDelayMs: ms('downloadSettings.maxRetryDelayMs', 1),
      maxBytesPerSecond: (x) => (isNumber(x) && x > 0 ? undefined : `downloadSettings.maxBytesPerSecond must be a number above 0, got ${shown(x)}`),
    };
    return Object.entries(v).flatMap(([k, x]) => (!Object.hasOwn(inner, k) ? [`unknown option downloadSettings.${k}`] : x === undefined ? [] : [inner[k]!(x, v) ?? []].flat()));
  },
  mqttOptions: (v, opts) => {
    if (!isObject(v)) return `mqttOptions must be an object of mqtt.js client options, got ${shown(v)}`;
    const problems = [v.reconnectPeriod === undefined ? [] : (ms('mqttOptions.reconnectPeriod', 0)(v.reconnectPeriod, v) ?? [])].flat();
    // the broker's ACL, the Will and every topic go by deviceId
    if (v.clientId !== undefined && v.clientId !== opts.deviceId) problems.push('mqttOptions.clientId must be left out: the client id is deviceId');
    return problems;
  },
  deviceType: (v) => (typeof v === 'string' ? idProblem('deviceType', v) : `deviceType must be a string of ${ID_RULE}, got ${shown(v)}`),
  timeZone: (v) => (typeof v === 'string' && isTimeZone(v) ? undefined : `timeZone must be an IANA time zone such as Europe/Madrid or UTC, got ${shown(v)}`),
  now: fn('now', 'a function returning milliseconds since the epoch'),
};

/** Why `v` is no broker URL mqtt.js connects to (a line naming `brokerUrl`), or undefined; `updraft agent --broker` is checked by it too. */
export function brokerUrlProblem(v: unknown): string | undefined {
  const expected = `brokerUrl must be a URL like mqtt://host:1883 (${BROKER_SCHEMES.map((s) => s.slice(0, -1)).join(', ')})`;
  if (typeof v !== 'string') return `${expected}, got ${shown(v)}`;
  let url: URL;
  try {
    url = new URL(v);
  } catch {
    return `${expected}, got "${redactUrl(v).slice(0, 200)}"`;
  }
  const unix = url.protocol.endsWith('+unix:');
  if (!BROKER_SCHEMES.includes(url.protocol) || (unix ? url.pathname === '' || url.pathname === '/' : url.hostname === '')) return `${expected}, got "${redactUrl(v).slice(0, 200)}"`;
  return undefined;
}

function publicKeyProblem(name: string, v: unknown): string | undefined {
  const expected = `${name} must be an Ed25519 public key (SPKI PEM text or a public KeyObject)`;
  if (v instanceof KeyObject) {
    if (v.type !== 'public') return `${expected}, got a ${v.type} key${v.type === 'private' ? ': a device must never hold the signing key' : ''}`;
    return v.asymmetricKeyType === 'ed25519' ? undefined : `${expected}, got ${v.asymmetricKeyType}`;
  }
  if (typeof v !== 'string') return `${expected}, got ${shown(v)}`;
  try {
    parsePublicKey(v);
    return undefined;
  } catch (err) {
    return `${expected}: ${(err as Error).message}`;
  }
}

/** A duration option: whole or not, from `min`, and no longer than a timer takes. */
function ms(name: string, min: number): Check {
  return (v) => timerMsProblem(name, v, min);
}

/**
 * Why `v` is no good as a duration given to a timer (`name` in the message), or undefined: a
 * number of milliseconds from `min` to MAX_TIMER_MS. A longer one would fire at once.
 */
export function timerMsProblem(name: string, v: unknown, min = 1): string | undefined {
  return isNumber(v) && v >= min && v <= MAX_TIMER_MS ? undefined : `${name} must be a number of milliseconds from ${min} to ${MAX_TIMER_MS} (about 24.8 days), got ${shown(v)}`;
}

function fn(name: string, what: string): Check {
  return (v) => (typeof v === 'function' ? undefined : `${name} must be ${what}, got ${shown(v)}`);
}

function isNumber(v: unknown): v is number {
  return typeof v === 'number' && Number.isFinite(v);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function typeName(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v;
}

/** The value as the message quotes it: a short JSON text, or its type (an object, a function). */
function shown(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v.length > 60 ? `${v.slice(0, 60)}…` : v);
  if (typeof v === 'number' || typeof v === 'boolean' || v === null || v === undefined) return String(v);
  return typeName(v);
}
