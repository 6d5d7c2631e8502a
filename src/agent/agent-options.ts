/** Options of the UpdateAgent, one documented field each, and their defaults. */
import type { KeyObject } from 'node:crypto';
import type { IClientOptions } from 'mqtt';
import type { Logger } from '../util/logger.ts';
import type { AgentStateStore } from './agent-state.ts';
import type { CertificateRenewalOptions } from './certificate-renewer.ts';
import type { Downloader } from './downloader.ts';
import type { Installer } from './installer.ts';
import type { TlsMaterial } from './tls-files.ts';
import { REQUEST_DEFAULTS } from './shadow-requester.ts';
import type { SoftwareCommand } from '../protocol/software.ts';
import type { GateAnswer, JobDownloadSettings } from './update-job.ts';

/** Options of an UpdateAgent. */
export interface UpdateAgentOptions {
  /** Device id: MQTT client id and `{id}` of its `state/{id}/...` topics. */
  deviceId: string;
  /** Broker URL, e.g. `mqtt://127.0.0.1:1883` or `mqtts://…`. */
  brokerUrl: string;
  /** MQTT username (passed through). */
  username?: string;
  /** MQTT password (passed through). */
  password?: string;
  /**
   * Asked before each reconnect attempt: a password returned replaces `password` from that
   * attempt on. The server closes a connection when the device's secret is replaced
   * (`updraft device rotate-secret`), so a device that reads its secret where the new one
   * is put comes back with it instead of being refused until restarted. Keep it cheap and
   * synchronous (it runs while mqtt.js sends CONNECT); undefined keeps the current one.
   */
  renewPassword?: () => string | undefined;
  /**
   * Asked before each connection attempt (the first of every `start()` too, then each
   * reconnect, as `renewPassword`), with the material the connection would use (`inUse`:
   * `mqttOptions`' at a start, the client's since): TLS material returned (`ca`, `cert`,
   * `key`, PEM) replaces what differs from it from that attempt on, and the certificate
   * renewal and the reports follow it (a new `ca` bundle may name a newer CA to move to; a new
   * certificate is the one renewed and reported). Return the files as they are whenever they
   * differ from `inUse`, not only when they changed since the last call: an agent stopped and
   * started again begins from `mqttOptions` (`agent/tls-files.ts` TlsFileReader does this; the
   * daemon reads its `--ca`, `--cert` and `--key` with it). Keep it cheap and synchronous;
   * undefined keeps the current material.
   */
  reloadTls?: (inUse: TlsMaterial) => TlsMaterial | undefined;
  /**
   * Asked with each connection error's message before it is logged (`mqtt error`): a text
   * returned is added to the line, in brackets, after the original (the daemon names its
   * `--ca` and `--cert` files and a CA rollover: `agent/connection-hints.ts`). Undefined adds
   * nothing. The `connection-error` event carries the original message only.
   */
  connectionErrorHint?: (error: string) => string | undefined;
  /**
   * Renews the client certificate of `mqttOptions` (`cert` and `key`, PEM) before it expires
   * (`agent/certificate-renewer.ts`): the agent makes a new key, the server's CA certifies it,
   * `save` keeps the pair, and the next connection uses it. Without it, a device authenticated
   * by certificate is refused by the broker once its certificate expires.
   */
  certificateRenewal?: CertificateRenewalOptions;
  /**
   * The operator's Ed25519 public key (SPKI PEM text, or a KeyObject) the device was
   * provisioned with: every update command must carry a manifest signed by it, unexpired,
   * matching the command, and not lowering the version unless it allows that. Required
   * unless `allowUnsigned` is true.
   */
  signingPublicKey?: string | KeyObject;
  /**
   * The offline root's Ed25519 public key (SPKI PEM text, or a KeyObject), instead of
   * `signingPublicKey`: every command must then carry the root's certificate of the key that
   * signed its manifest (`updraft keys certify`), unexpired and not older than the newest this
   * device has seen (kept in its state), so the server's signing key can be replaced without
   * provisioning the device again. Wins over `signingPublicKey` when both are given.
   */
  rootPublicKey?: string | KeyObject;
  /** Accept unsigned software when neither `signingPublicKey` nor `rootPublicKey` is given (insecure; tests and simulators only). */
  allowUnsigned?: boolean;
  /**
   * How the artifact is fetched: `url` (default) with the pre-signed URL of the command;
   * `token` with a temporary credential asked for over MQTT (`state/{id}/credentials/request`)
   * and sent as `Authorization: Bearer <token>`.
   */
  downloadAuth?: 'url' | 'token';
  /**
   * Asked before a verified build is installed: `{ go: true }`, `{ later: reason }` (asked
   * again after `installGateRetryMs`, default 5 min, until `installGateMaxWaitMs`, default
   * 24 h, after the job started on the device, when it fails with the reason) or
   * `{ refuse: reason }` (the job fails at once). For a device that must not install now: a
   * low battery, a vehicle in motion, a machine at work. The daemon's `--install-gate`.
   */
  installGate?: (command: SoftwareCommand, signal: AbortSignal) => Promise<GateAnswer>;
  installGateRetryMs?: number;
  installGateMaxWaitMs?: number;
  /** Puts software in place (SlotInstaller, SimulatedInstaller, your own). */
  installer: Installer;
  /** Holds `agent-state.json` and `downloads/`. */
  stateDir: string;
  /** Where the agent state is kept (default: `<stateDir>/agent-state.json`). */
  stateStore?: AgentStateStore;
  /** Downloads and verifies an artifact (default: `downloadArtifact`). */
  download?: Downloader;
  logger?: Logger;
  /** How long one request waits for its answer, in ms (default 10 000). */
  requestTimeoutMs?: number;
  /** Attempts per request (default 3). */
  requestAttempts?: number;
  /** First retry delay of requests, in ms, doubled per retry (default 1000). */
  retryDelayMs?: number;
  /** Longest pause between rounds of an owed final report or a failed catch-up, and between reconnection attempts, in ms (default 60 000). */
  maxRetryDelayMs?: number;
  /** Progress is reported when it advanced by at least this much (default 0.1)... */
  progressStep?: number;
  /**
   * ...and at least this many ms after the previous report (default 1000). Phase reports
   * (VERIFYING, INSTALLING) keep the same pace, stretched to ten round trips of the last
   * report when the server answers slowly, the latest replacing one still waiting; the
   * outcome (SUCCESS, FAILURE) goes at once. A phase is reported once it has lasted
   * AGENT_DEFAULTS.phaseSettleMs (250 ms): one over sooner is folded into the next report.
   */
  progressIntervalMs?: number;
  /** A download URL expiring within this many ms is refreshed before use (default 5000). */
  urlMarginMs?: number;
  /**
   * Fresh download URLs (or credentials) asked for at most this many times per job after a
   * 403 on one not yet expired, and at most this many times in a row, without a byte
   * downloaded between, because one expired (default 3). A long download on a slow link gets
   * a fresh URL for every expiry.
   */
  maxUrlRefreshes?: number;
  /**
   * Downloads: `retryForMs`, how long failures that may pass (no connection, a 5xx, 429, 503
   * with its `Retry-After`) are retried without a byte gained (default 10 minutes; the
   * daemon's `--download-retry-for`); `retryDelayMs`/`maxRetryDelayMs`, the backoff (1 s
   * doubling to 30 s, with jitter); `maxAttempts`, an extra bound by count (none);
   * `maxBytesPerSecond` (none).
   */
  downloadSettings?: JobDownloadSettings;
  /** Extra MQTT client options (TLS material, keepalive…). `reconnectPeriod` is the first pause before reconnecting (default 1000 ms; 0: never reconnect): it doubles after each failed attempt, with jitter, up to maxRetryDelayMs. */
  mqttOptions?: IClientOptions;
  /**
   * What hardware this is (`rpi4`, `gw-rev-b`): a build made for given device types
   * (`updraft artifact add --device-type`) is refused on any other, and on a device given no
   * type. Reported as `reported.agent.deviceType`, so rollouts can target by it.
   */
  deviceType?: string;
  /**
   * This device's IANA time zone (`Europe/Madrid`), default the system's: a job whose
   * maintenance windows are in each device's own time (`plan.timeZone: "device"`) is
   * installed when one is open here. Reported as `reported.agent.timeZone`.
   */
  timeZone?: string;
  /** Milliseconds since the epoch (tests). */
  now?: () => number;
}

/** Defaults of the optional settings. */
export const AGENT_DEFAULTS = {
  requestTimeoutMs: REQUEST_DEFAULTS.timeoutMs,
  requestAttempts: REQUEST_DEFAULTS.attempts,
  retryDelayMs: REQUEST_DEFAULTS.retryDelayMs,
  maxRetryDelayMs: 60_000,
  /** mqtt.js's reconnectPeriod: the first pause before reconnecting (it then doubles, with jitter, up to maxRetryDelayMs). */
  reconnectMs: 1000,
  progressStep: 0.1,
  progressIntervalMs: 1000,
  phaseSettleMs: 250,
  urlMarginMs: 5000,
  maxUrlRefreshes: 3,
  installGateRetryMs: 5 * 60_000,
  installGateMaxWaitMs: 24 * 3_600_000,
} as const;
