/**
 * The device side of the Software Update pattern: subscribes to its delta (step 1), takes the
 * software command from it (steps 5-6), downloads, verifies and installs through the
 * Installer (step 7), reports every phase and the outcome (step 8) and waits for the
 * server's acknowledgement (step 9).
 *
 * Robust by construction rather than by luck:
 * - nothing depends on having been online: on every connect it reports what runs, then asks
 *   for its document (`get`) and acts on the delta in the answer (unless the report's own
 *   delta already brought the command);
 * - the in-flight update is persisted before it is acted on; a restart resumes it (download
 *   from the partial file, install through `Installer.recover`, report still owed);
 * - a command for a job already finished is acknowledged (its outcome re-reported), never
 *   applied twice; a delta that merely echoes the agent's own last report is ignored;
 * - an idle agent holds no timers of its own (15,000 of them share one simulator process);
 * - it says when it is online over any broker: a retained message on every connect, and a
 *   Will that clears it when the connection ends (`protocol/presence.ts`).
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { unlink } from 'node:fs/promises';
import path from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { UpdraftError, asUpdraftError } from '../errors.ts';
import { isJsonObject, type JsonObject } from '../protocol/json.ts';
import type { DeltaMessage } from '../protocol/shadow-messages.ts';
import { calledOff, parseReportedSoftware, parseSoftwareCommand, type InstallWait, type SoftwareCommand } from '../protocol/software.ts';
import { AGENT_FEATURES } from '../protocol/agent-features.ts';
import { certificateIssuer } from '../protocol/certificate-issuer.ts';
import { isTimeZone, systemTimeZone } from '../protocol/maintenance-window.ts';
import { PRESENCE_ONLINE, PRESENCE_WILL } from '../protocol/presence.ts';
import { answerTopic, deltaTopic, presenceTopic, requestTopic } from '../protocol/topics.ts';
import { safeUrl } from '../util/redact-url.ts';
import { keyIdOf, parsePublicKey } from '../signing/signing-key.ts';
import { silentLogger, type Logger } from '../util/logger.ts';
import type { AgentEvents } from './agent-events.ts';
import { AGENT_DEFAULTS, type UpdateAgentOptions } from './agent-options.ts';
import { checkUpdateAgentOptions } from './agent-options-check.ts';
import {
  FileAgentStateStore,
  checkTransition,
  rememberCanceled,
  rememberFinished,
  type AgentStateData,
  type AgentStateStore,
  type FinishedJob,
  type InFlightPhase,
  type InFlightUpdate,
  type JobOutcome,
} from './agent-state.ts';
import { partFile, removeStaleDownloads } from './download-files.ts';
import { downloadArtifact } from './downloader.ts';
import { ClockOffset, describeSeconds, WRONG_CLOCK_SECONDS } from './clock-offset.ts';
import { CertificateRenewer, certificateExpiry } from './certificate-renewer.ts';
import type { TlsMaterial } from './tls-files.ts';
import { checkCommand, type CommandCheck, type RootTrust, type SignaturePolicy } from './manifest-check.ts';
import type { InstalledSoftware, RecoveryResult } from './installer.ts';
import { ReportQueue } from './report-queue.ts';
import { AgentStoppedError, ShadowRequester, isRetryable } from './shadow-requester.ts';
import { UNKNOWN_VERSION, finishedReport, outcomeReport, reportRequest, softwareReport, stateReport } from './software-report.ts';
import { heldShare, sizeOnDisk, UpdateJob } from './update-job.ts';
import { JobLog, teeLogger } from './job-log.ts';

/** How long a failed job's log is offered to a server that does not take it. */
const PENDING_LOG_MAX_AGE_MS = 7 * 86_400_000;
/** How long a line of the job's log waits to be saved, with those that follow it. */
const JOB_LOG_SAVE_DELAY_MS = 1000;
/** The most entries of a `softwareSupersedes` list taken (the server writes at most 8). */
const MAX_SUPERSEDED_NOTED = 16;
/** A connection error that lasts is logged again this often (ms), with the attempts it ended meanwhile. */
export const REPEATED_ERROR_LOG_MS = 10 * 60_000;
/**
 * The reason reported for a job this device saw canceled, which a server asks for again
 * (handleCommand): in the words of a job called off (`calledOff`), so that a server that did
 * cancel it keeps its execution CANCELED. In words of its own (6fa08fb), a late delta of a
 * canceled job turned its execution FAILED (the tracker took it for a failure before the stop
 * reached the device: `failedAfterStop`), which an abort's rollback acts on (CI, 2026-12-06).
 */
const CANCELED_BEFORE = calledOff.canceled('not started, this device heard this job canceled before (the server may have lost the cancel: a restore of its database, a failover that lost writes)');

/** The update agent of one device. */
export class UpdateAgent extends EventEmitter<AgentEvents> {
  private readonly opts: UpdateAgentOptions;
  private readonly log: Logger;
  private client: MqttClient | undefined;
  private requester: ShadowRequester | undefined;
  private reports: ReportQueue | undefined;
  private store: AgentStateStore | undefined;
  /** Settles when every save of the state begun so far has ended: `stop()` waits for it. */
  private saving: Promise<unknown> = Promise.resolve();
  /** The last save failed (a full or read-only disk): what is in memory is newer than the file. */
  private unsaved = false;
  /** While `unsaved`: the next attempt to save it, and how many failed in a row. */
  private saveRetry: { timer: NodeJS.Timeout | undefined; failures: number } = { timer: undefined, failures: 0 };
  private state: AgentStateData = { finished: [] };
  /** What runs now (refreshed at start and after every job). */
  private installed: InstalledSoftware | undefined;
  /** The outcome of the slot checked again at start (`recheckCurrent`) and the check's log, reported (and a FAILURE's log sent) at the connect. */
  private rechecked: { job: FinishedJob; log: JobLog } | undefined;
  /** The job in flight, its log (`job-log.ts`), and its logger: the agent's, and into the log. */
  private job: { run: UpdateJob; done: Promise<void>; log: JobLog; logger: Logger } | undefined;
  /** A pending job log is being sent. */
  private sendingLog = false;
  /** A newer command that arrived while a job could not be called off. */
  private pending: { command: SoftwareCommand; version: number | undefined } | undefined;
  /** The latest command heard while the agent asked its shadow what it finished (`learnPast`). */
  private held: { value: unknown; version: number | undefined } | undefined;
  /** Shadow version at which the server acknowledged a finished job's outcome (echo suppression). */
  private readonly acked = new Map<string, number>();
  /**
   * Finished jobs whose outcome is in a report not answered yet. The replica answers a report
   * with its `accepted` and, while desired still differs (after a FAILURE), a delta naming the
   * job, back to back in one read: that delta reaches `handleCommand` before the report's
   * answer is noted in `acked`, and is the echo of the report, not a command to re-report.
   */
  private readonly reportingOutcome = new Map<string, number>();
  /** Running, or starting: cleared by `stop()` (everything that waits or retries ends on it). */
  private started = false;
  /** Bumped by every `stop()` (and a failed start): a start from an older epoch never connects. */
  private epoch = 0;
  /**
   * The start under way, the epoch it began in (`start()` during it gives the same promise), and
   * `abandon`, which resolves that promise at once: a `stop()` waits only for a start in its check.
   */
  private starting: { epoch: number; done: Promise<void>; abandon: () => void } | undefined;
  /** The start under way is checking an unchecked slot again (`recheckCurrent`): a `stop()` waits for it. */
  private rechecking = false;
  /** The removal of stale downloads last begun: the next waits for it, so a late one never meets a newer download. */
  private removing: Promise<void> = Promise.resolve();
  /** The stop under way: a start after it waits for it, a second `stop()` gives it. */
  private stopping: Promise<void> | undefined;
  /** Resolves once subscribed on the current connection: a request sent before would miss its answer. */
  private ready!: Promise<void>;
  private markReady: () => void = () => {};
  private online = false;
  private session = 0;
  /** Deltas with a software section heard so far (the catch-up skips its `get` after one). */
  private softwareDeltas = 0;
  private syncTimer: NodeJS.Timeout | undefined;
  /** Set while a save of the job's log is due (`saveLogSoon`). */
  private logTimer: NodeJS.Timeout | undefined;
  private readonly wakers = new Set<() => void>();
  private lastError: string | undefined;
  /** When `lastError` came first, and was last logged (ms, `now`), and how many attempts it ended since it came, less one. */
  private lastErrorSince = 0;
  private lastErrorAt = 0;
  private lastErrorRepeats = 0;
  private detach: () => void = () => {};
  /** Decided in start() from `signingPublicKey` / `allowUnsigned`. */
  private signatures: SignaturePolicy | undefined;
  /** This device's clock against the server's. */
  private readonly clock = new ClockOffset();
  /** A clock offset to report (in `reported.agent`), until the server has it. */
  private clockNews: number | undefined;
  /** The connection in which a wrong clock was last logged (once per connection). */
  private clockWarnedSession = -1;
  /** Set at each connect: the next report carries `reported.agent` (what this agent trusts). */
  private announceTrust = false;
  /** This device's IANA time zone: where the windows of a job in each device's own time are read. */
  private timeZone = 'UTC';
  /** Renews the client certificate before it expires (`certificateRenewal`). */
  private renewer: CertificateRenewer | undefined;
  private renewTimer: NodeJS.Timeout | undefined;
  /** Why the last certificate renewal failed (null: it succeeded since; undefined: nothing to say). */
  private renewalError: string | null | undefined;
  /** When the client certificate expires (seconds), for a device that does not renew it. */
  private certificateExpiresAt: number | undefined;
  /** Who issued the client certificate in use (its issuer's DN, protocol/certificate-issuer.ts), renewed or not. */
  private certificateIssuer: string | undefined;
  /** The id of the root this agent was given (a device trusting the root key), whichever root it trusts now. */
  private provisionedRootId: string | undefined;
  /** The temporary download credential of the job in flight (`downloadAuth: 'token'`). */
  private credential: { jobId: string; token: string; expiresAt: number } | undefined;

  /** Only assigns; `start()` does the I/O. */
  constructor(opts: UpdateAgentOptions) {
    super();
    checkUpdateAgentOptions(opts);
    this.opts = opts;
    this.log = (opts.logger ?? silentLogger).child(`agent:${opts.deviceId}`);
  }

  /** The id of the job in flight, if any. */
  get currentJobId(): string | undefined {
    return this.state.inFlight?.jobId;
  }

  /** True while connected to the broker. */
  get connected(): boolean {
    return this.online;
  }

  /** Requests this agent sent since it started, per operation: reports (`update`), `get`s, credential requests. */
  get requestsSent(): Readonly<Record<'update' | 'get' | 'credentials', number>> {
    return this.requester?.sent ?? { update: 0, get: 0, credentials: 0 };
  }

  /**
   * Calls each listener of `event` in turn, as EventEmitter does, but an exception a listener
   * throws is logged, not thrown into the agent: emitted from inside a job, it ended the job in
   * FAILURE (an installed update reported failed, QA) and kept the listeners after it from
   * hearing the event. Listeners are the application's code; the outcome is the device's.
   * An `async` listener's rejected promise is logged the same way: left alone, it was an
   * unhandled rejection, which ends a Node.js process by default.
   */
  override emit<K extends keyof AgentEvents>(event: K, ...args: AgentEvents[K]): boolean {
    const listeners = this.rawListeners(event);
    const ignored = (err: unknown) => this.log.error('an event listener threw: ignored', { event, error: err instanceof Error ? (err.stack ?? err.message) : String(err) });
    for (const listener of listeners) {
      try {
        const returned = (listener as (...a: AgentEvents[K]) => unknown).apply(this, args);
        if (isThenable(returned)) returned.then(undefined, ignored);
      } catch (err) {
        ignored(err);
      }
    }
    return listeners.length > 0;
  }

  /**
   * Loads the persisted state, resumes an interrupted update, and connects (without waiting for
   * the broker). Called again while a start is under way, it gives that start's promise. A start
   * that fails leaves the agent stopped, nothing held: a later call starts afresh. One that
   * `stop()` overtakes resolves without connecting: at once, unless it is checking a slot again.
   */
  start(): Promise<void> {
    if (this.starting?.epoch === this.epoch) return this.starting.done;
    if (this.started) return Promise.resolve();
    const epoch = this.epoch;
    let abandon: () => void = () => {};
    const abandoned = new Promise<void>((resolve) => (abandon = resolve));
    // a start stuck in a read (a hung mount, a custom store or installer) must not hold up stop():
    // it is left to end on its own, and never touches the agent once stopped (the epoch checks)
    const done = Promise.race([this.startUp(epoch), abandoned]);
    this.starting = { epoch, done, abandon };
    const settled = () => {
      if (this.starting?.done === done) this.starting = undefined;
    };
    done.then(settled, settled);
    return done;
  }

  /** The work of `start()`, as the start of `epoch`: it connects only while no `stop()` came since. */
  private async startUp(epoch: number): Promise<void> {
    // a start right after a stop begins once that stop has closed everything it had to
    await this.stopping;
    if (epoch !== this.epoch) return;
    this.started = true;
    const o = this.opts;
    try {
      // read into locals: a start that stop() overtook (and did not wait for) may end after a
      // later start has begun, and must leave that one's fields alone
      const signatures = signaturePolicy(o.rootPublicKey, o.signingPublicKey, o.allowUnsigned);
      const timeZone = o.timeZone ?? systemTimeZone();
      if (!isTimeZone(timeZone)) throw new UpdraftError('CONFIG', `timeZone "${timeZone}" is not an IANA time zone (such as Europe/Madrid or UTC)`);
      if ('allowUnsigned' in signatures) this.log.warn('no software signing key: signatures are NOT verified (allowUnsigned)');
      const store = o.stateStore ?? new FileAgentStateStore(path.join(o.stateDir, 'agent-state.json'), this.log);
      const state = await store.load();
      const installed = epoch === this.epoch ? await o.installer.current() : undefined;
      // stopped meanwhile (a slow store or installer): this start ends here, the check is left for the next start
      if (epoch !== this.epoch) return;
      this.signatures = signatures;
      this.timeZone = timeZone;
      this.store = store;
      this.state = state;
      this.installed = installed;
      if ('rootKey' in signatures) {
        signatures.minSerial = state.keySerial ?? 0;
        if (state.keySerialKeyId !== undefined) signatures.minSerialKeyId = state.keySerialKeyId;
        this.resumeRotatedRoot(signatures);
      }
      // partial downloads of jobs no longer in flight (left by a crash) only take space; after
      // the removal an earlier start began (stop() does not wait for one on a hung mount)
      if (!o.download) {
        const removal = this.removing.then(() => removeStaleDownloads(o.stateDir, state.inFlight?.jobId));
        this.removing = removal.catch(() => {});
        await removal;
        if (epoch !== this.epoch) return;
      }
      if (!this.state.inFlight && this.installed?.unchecked) {
        // it writes the slot's manifest and ends by its timeout: a stop() meanwhile waits for it (398feac).
        // Before connecting, on purpose: until its verdict what runs is not known, and every connect
        // begins with a report of what runs; a command's install would write the slot the check may
        // roll back to (docs/agent.md, "Why it does not connect first")
        this.rechecking = true;
        try {
          await this.recheckCurrent();
        } finally {
          this.rechecking = false;
        }
      }
      // stopped meanwhile (the check above may take up to its timeout): never connects
      if (epoch !== this.epoch) return;
      this.connect();
    } catch (err) {
      // nothing of a failed start stays behind (the renewal timer, a client): the next start() begins afresh
      if (epoch === this.epoch) {
        this.epoch++;
        this.started = false;
        await this.closing(this.shutdown().catch(() => {}));
      }
      throw err;
    }
  }

  /** Builds the requester and the report queue, and connects to the broker (`start()`'s last step). */
  private connect(): void {
    const o = this.opts;
    this.resetReady();
    this.requester = new ShadowRequester({
      deviceId: o.deviceId,
      send: (topic, payload) => this.publish(topic, payload),
      credentials: o.downloadAuth === 'token',
      certificates: o.certificateRenewal !== undefined,
      policy: {
        timeoutMs: o.requestTimeoutMs ?? AGENT_DEFAULTS.requestTimeoutMs,
        attempts: o.requestAttempts ?? AGENT_DEFAULTS.requestAttempts,
        retryDelayMs: o.retryDelayMs ?? AGENT_DEFAULTS.retryDelayMs,
      },
    });
    const requester = this.requester;
    this.renewer = this.certificateRenewer(requester);
    if (o.mqttOptions?.cert !== undefined) this.certificateIssuer = certificateIssuer(Buffer.isBuffer(o.mqttOptions.cert) ? o.mqttOptions.cert.toString('utf8') : String(o.mqttOptions.cert));
    if (!this.renewer && o.mqttOptions?.cert !== undefined) {
      try {
        this.certificateExpiresAt = Math.floor(certificateExpiry(String(o.mqttOptions.cert)) / 1000);
      } catch {
        // not a certificate the agent can read: the TLS connection says what is wrong with it
      }
    }
    // progress and phase reports share the progress pace; outcomes go at once
    // a device trusting the root reports the newest key certificate it accepted, so the fleet
    // can be asked which devices still accept a replaced signing key (reported.software.keySerial < N)
    const withKeySerial = (software: JsonObject) => (this.state.keySerial === undefined ? software : { ...software, keySerial: this.state.keySerial });
    // the first report of each connection also says what the agent trusts, so the fleet can be
    // asked which devices accept unsigned software, or still trust one signing key only
    const send = async (queued: JsonObject) => {
      // a DOWNLOADING report says the share held as it goes, not as it was queued or last reported
      const software = await this.withHeldProgress(queued);
      const body = reportRequest(withKeySerial(software));
      const announcing = this.announceTrust;
      const clockNews = this.clockNews;
      if (announcing) {
        const agent = trustReport(this.signatures!);
        if (o.deviceType !== undefined) agent.deviceType = o.deviceType;
        agent.timeZone = this.timeZone;
        // what it understands: the server and operators tell older agents apart (protocol/agent-features.ts)
        agent.features = FEATURES;
        if (clockNews !== undefined) agent.clockOffsetSeconds = clockNews;
        // when its client certificate expires: the fleet can be asked which devices would be locked out soon
        const certificateExpiresAt = this.renewer?.expiresAtSeconds ?? this.certificateExpiresAt;
        if (certificateExpiresAt !== undefined) agent.certificateExpiresAt = certificateExpiresAt;
        // and which CA issued it: the fleet can be asked who is still on a rollover's previous CA (updraft ca drop-previous counts them)
        if (this.certificateIssuer !== undefined) agent.certificateIssuer = this.certificateIssuer;
        // why the last renewal failed (null once one succeeds): the operator sees what the device's log says
        if (this.renewalError !== undefined) agent.certificateRenewalError = this.renewalError;
        ((body.state as JsonObject).reported as JsonObject).agent = agent;
      }
      const sentAt = this.now();
      const sent = requester.request('update', body);
      sent.then(
        (answer) => {
          // said until the server has it (a report lost on the way is sent again, and says it again)
          if (announcing) this.announceTrust = false;
          if (announcing && clockNews !== undefined) void this.clockReported(clockNews);
          this.observeClock(sentAt, answer);
        },
        () => {},
      );
      return sent;
    };
    this.reports = new ReportQueue(send, { intervalMs: o.progressIntervalMs ?? AGENT_DEFAULTS.progressIntervalMs, settleMs: AGENT_DEFAULTS.phaseSettleMs });
    // not connected yet: a report resumed before the first connection waits for it
    this.reports.connection(this.online);
    // Reconnecting backs off: the pause before the next attempt grows after each failed one
    // (doubling up to maxRetryDelayMs), with jitter, and starts again from reconnectPeriod
    // once connected. A fleet that lost its server together, or that the server turned away
    // (CONNACK 3, admission control), must not come back all at once, every second. mqtt.js
    // retries at a fixed period; it reads the period anew each time it schedules a retry
    // (when a connection closes), so the agent sets it as each attempt starts ('reconnect').
    const reconnectMs = o.mqttOptions?.reconnectPeriod ?? AGENT_DEFAULTS.reconnectMs;
    const options: mqtt.IClientOptions = {
      clientId: o.deviceId,
      clean: true,
      connectTimeout: 30_000,
      // subscriptions are renewed by our own connect handler, before the catch-up
      resubscribe: false,
      // mqtt.js gives up for good after a refused CONNECT unless told otherwise: a device
      // turned away while the server is full (3), or refused while it is revoked (4, 5), would
      // stay offline until restarted. It retries, on the backoff above.
      reconnectOnConnackError: true,
      // the broker publishes it when the connection ends without a DISCONNECT: a lost link, a
      // crash, and stop() too, which closes the socket. It clears the retained online message
      // (protocol/presence.ts)
      will: { topic: presenceTopic(o.deviceId), payload: PRESENCE_WILL, qos: 1, retain: true },
      ...(o.username !== undefined ? { username: o.username } : {}),
      ...(o.password !== undefined ? { password: o.password } : {}),
      ...o.mqttOptions,
      reconnectPeriod: reconnectMs > 0 ? this.jittered(reconnectMs, 0) : 0,
    };
    // the TLS files as they are now, for the first attempt too: an agent stopped and started
    // again began from `mqttOptions`, the files it had been given, not the ones renewed or
    // replaced since, which a reader that compared with what it had read last did not hand
    // over again (review, 2026-12-06)
    const tls = o.reloadTls?.(tlsInUse(options));
    if (tls !== undefined) this.takeTls(options, tls);
    const client = mqtt.connect(o.brokerUrl, options);
    this.client = client;
    let failedAttempts = 0;
    // the current attempt's failure was said (an error): the close that follows it is the same failure
    let attemptFailed = false;
    const onConnect = () => {
      failedAttempts = 0;
      this.announceTrust = true;
      if (reconnectMs > 0) client.options.reconnectPeriod = this.jittered(reconnectMs, 0);
      // first on the connection, before the subscriptions and the report: QoS 0 is enough,
      // since a connection that drops before it arrives leaves the Will (offline) instead
      client.publish(presenceTopic(o.deviceId), PRESENCE_ONLINE, { qos: 0, retain: true });
      this.onConnect();
    };
    // an attempt starts: should it fail, the next one waits longer
    const onReconnect = () => {
      attemptFailed = false;
      if (reconnectMs > 0) client.options.reconnectPeriod = this.jittered(reconnectMs, ++failedAttempts);
      // a rotated secret, read where it is kept (mqtt.js builds each CONNECT from its options)
      const renewed = o.renewPassword?.();
      if (renewed !== undefined) client.options.password = renewed;
      // and TLS files replaced on the device: mqtt.js builds each TLS connection from its options too
      const tls = o.reloadTls?.(tlsInUse(client.options));
      if (tls !== undefined) this.takeTls(client.options, tls);
    };
    const onClose = () => {
      // a socket the broker closed before any CONNACK: mqtt.js says nothing but 'close', and
      // whoever waits on the attempt waited for the connect timeout
      if (this.started && !this.online && !attemptFailed) onError(new Error('connection closed before CONNACK'));
      this.setOnline(false);
    };
    const onMessage = (topic: string, payload: Buffer) => this.onMessage(topic, payload);
    const onError = (err: Error) => {
      if (!this.online) attemptFailed = true;
      // a hint of the likely cause, in the caller's words (the daemon's: its --ca file, a CA rollover)
      const said = () => {
        const hint = o.connectionErrorHint?.(err.message);
        return hint !== undefined ? `${err.message} (${hint})` : err.message;
      };
      // once per outage, not once per reconnect attempt; said again every
      // REPEATED_ERROR_LOG_MS while it lasts, with the attempts it ended meanwhile: a daemon
      // refused for good (a wrong secret) logged one line, then retried in silence for days
      if (err.message === this.lastError) {
        this.lastErrorRepeats++;
        // a wall clock stepped back (an RTC corrected by NTP) says it again at once, not after the step
        const elapsed = this.now() - this.lastErrorAt;
        if (elapsed >= 0 && elapsed < REPEATED_ERROR_LOG_MS) return;
        this.log.warn('mqtt error, still', { error: said(), since: new Date(this.lastErrorSince).toISOString(), attempts: this.lastErrorRepeats + 1 });
        this.lastErrorAt = this.now();
        return;
      }
      this.lastError = err.message;
      this.lastErrorAt = this.lastErrorSince = this.now();
      this.lastErrorRepeats = 0;
      this.log.warn('mqtt error', { error: said() });
      // mqtt.js's ErrorWithReasonCode: a refused CONNACK's code (4 and 5 retrying cannot fix, 3 it can)
      const code = (err as { code?: unknown }).code;
      this.emit('connection-error', { error: err.message, ...(typeof code === 'number' ? { reasonCode: code } : {}) });
    };
    client.on('connect', onConnect).on('reconnect', onReconnect).on('close', onClose).on('message', onMessage).on('error', onError);
    // only our own listeners: mqtt.js's internal ones must stay to clean up its timers on close
    this.detach = () => client.off('connect', onConnect).off('reconnect', onReconnect).off('close', onClose).off('message', onMessage).off('error', onError);
    // resumed while connecting: its reports wait in the client's queue (runJob logs the resumption).
    // Not yet a job before INSTALLING whose state may be behind (unknownPast): its outcome may
    // have been reported and acknowledged, then lost with a save the disk refused; learnPast
    // resumes it once the shadow says it was not (nothing was changed on the device yet)
    if (this.state.inFlight && !this.resumeAfterLearning()) this.launch(this.state.inFlight, false, undefined);
  }

  /** True when the update in flight is resumed only once the shadow was read (`learnPast`). */
  private resumeAfterLearning(): boolean {
    const phase = this.state.inFlight?.phase;
    return this.state.unknownPast === true && (phase === 'DOWNLOADING' || phase === 'VERIFYING');
  }

  /**
   * Disconnects and releases timers and listeners; an update in flight is left to resume on the
   * next start. A start under way never connects: its promise resolves at once, and what it
   * still reads (the state, the installer's current()) is left to end on its own; only a slot
   * being checked again is waited for (it writes the slot's manifest; up to its check's timeout).
   * Resolves once everything is closed. Called again meanwhile, it resolves with the first.
   */
  stop(): Promise<void> {
    const start = this.starting?.epoch === this.epoch ? this.starting : undefined;
    if (!this.started && !start && !this.stopping) return Promise.resolve();
    // the start under way (or one waiting for this stop) sees it before it touches the agent again
    this.epoch++;
    this.started = false;
    if (start && !this.rechecking) start.abandon();
    const started = start
      ? start.done.then(
          () => {},
          () => {},
        )
      : Promise.resolve();
    if (this.stopping) return Promise.all([this.stopping, started]).then(() => {});
    return this.closing(started.then(() => this.shutdown()));
  }

  /** `done` is the stop under way until it ends: a `start()` meanwhile begins after it. */
  private closing(done: Promise<void>): Promise<void> {
    this.stopping = done;
    const settled = () => {
      if (this.stopping === done) this.stopping = undefined;
    };
    done.then(settled, settled);
    return done;
  }

  /** What `stop()` releases; also after a failed start. Safe to run again: what is released already is skipped. */
  private async shutdown(): Promise<void> {
    clearTimeout(this.syncTimer);
    this.syncTimer = undefined;
    clearInterval(this.renewTimer);
    for (const wake of this.wakers) wake();
    const job = this.job;
    job?.run.stop();
    this.requester?.close();
    await job?.done;
    // the lines of the last second and of the stop, which a restart on this directory takes up
    if (job) await this.saveLogNow(job);
    this.pending = undefined;
    this.held = undefined;
    const client = this.client;
    this.client = undefined;
    if (client) {
      await client.endAsync(true).catch(() => {});
      this.detach();
      this.detach = () => {};
      // a late error of a dead connection attempt must never crash the process
      client.on('error', () => {});
    }
    this.setOnline(false);
    await this.saving;
    clearTimeout(this.saveRetry.timer);
    this.saveRetry.timer = undefined;
    // a finished job the disk refused (full, read-only) is saved now if it can be: a restart
    // that did not know it would take the job's command, still desired after a FAILURE, for new
    if (this.unsaved && this.store) {
      await this.store.save(this.state).then(
        () => {
          this.unsaved = false;
          this.log.info('agent state saved at the stop');
        },
        (err: unknown) => this.log.warn('agent state not saved at the stop: the next start asks its shadow what it finished', { error: asUpdraftError(err).message }),
      );
    }
  }

  /**
   * Saves the state. A save can begin after an answer that comes during `stop()` (the clock
   * offset the server took, a job log it took): `stop()` waits for it, so that what follows a
   * stop (a restart on the same directory, its removal) never meets a late write.
   */
  private saveState(): Promise<void> {
    const run = this.store ? this.store.save(this.state) : Promise.resolve();
    this.saving = Promise.allSettled([this.saving, run]);
    // saves end in the order they began (the store chains them): the last to end says how the file stands
    run.then(
      () => this.savedOk(),
      () => this.saveFailed(),
    );
    return run;
  }

  private savedOk(): void {
    if (this.unsaved) this.log.info('agent state saved again');
    this.unsaved = false;
    clearTimeout(this.saveRetry.timer);
    this.saveRetry = { timer: undefined, failures: 0 };
  }

  /**
   * A save failed: what the agent knows (a finished job above all, whose outcome the server
   * has acknowledged) is only in memory. It is saved again, with backoff, until the disk takes
   * it (space freed, remounted writable), and at the stop: a restart that did not know the
   * job would take its command, still desired after a FAILURE, for a new one (QA).
   */
  private saveFailed(): void {
    this.unsaved = true;
    if (!this.started || this.saveRetry.timer) return;
    const delay = this.backoff(this.saveRetry.failures++);
    this.saveRetry.timer = setTimeout(() => {
      this.saveRetry.timer = undefined;
      if (!this.started || !this.unsaved) return;
      this.saveState().catch((err: unknown) => this.log.debug('agent state still not saved', { error: asUpdraftError(err).message }));
    }, delay);
    this.saveRetry.timer.unref();
  }

  // ---- connection and catch-up -------------------------------------------------------

  private async publish(topic: string, payload: string): Promise<void> {
    await this.ready;
    const client = this.client;
    if (!client) throw new AgentStoppedError();
    await client.publishAsync(topic, payload, { qos: 1 });
  }

  private resetReady(): void {
    this.ready = new Promise((resolve) => (this.markReady = resolve));
  }

  private setOnline(online: boolean): void {
    if (this.online === online) return;
    this.online = online;
    if (!online) this.resetReady();
    // a report on its way while offline waits for the reconnect: its round trip is not the server's pace
    this.reports?.connection(online);
    this.emit('connection', { online });
  }

  private onConnect(): void {
    this.lastError = undefined;
    this.setOnline(true);
    const session = ++this.session;
    // whatever waited for the connection (an owed final report) tries again now
    for (const wake of this.wakers) wake();
    clearTimeout(this.syncTimer);
    void this.sync(session, 0);
  }

  /** On every connect: subscribe, report what runs, fetch the document and act on its delta. */
  private async sync(session: number, attempt: number): Promise<void> {
    try {
      const d = this.opts.deviceId;
      // QoS 0 on purpose: the session is clean, so QoS 1 would redeliver nothing after a
      // reconnect (what is in flight when a connection drops is gone either way); over one live
      // connection TCP delivers in order already. What the agent misses it recovers itself: a
      // `get` on every connect (the command), a request retried when its answer does not come.
      // QoS 1 would cost a PUBACK per message both ways and the broker's in-flight bookkeeping.
      await this.client?.subscribeAsync([deltaTopic(d), ...this.requester!.answerTopics()], { qos: 0 });
      if (session !== this.session || !this.started) return;
      this.markReady();
      // without its state (a first start, a lost or damaged file) the agent does not know what it
      // finished: its shadow does, until the first report overwrites it. Asked first, once.
      // The daemon asks at every start (FileAgentStateStore marks every load unknownPast: a save
      // the disk refused before a kill may have lost an acknowledged outcome). No report can
      // tell it instead: `update/accepted` echoes the request's own state, not the document it
      // replaced, and the report overwrites reported.software, the only record of that outcome
      // (`update/documents` carries the previous one, but the agent does not subscribe to it:
      // the replica then builds and publishes it for every update, for no one). Its answer serves
      // the catch-up below (no second get), so it costs a request only when a command is pending,
      // which the report's delta would have brought (test/agent/daemon-start-requests.test.ts)
      const early = this.state.unknownPast ? { doc: await this.learnPast() } : undefined;
      if (session !== this.session || !this.started) return;
      // the outcome of the slot checked again at start, before any command is acted on
      await this.reportRechecked();
      if (session !== this.session || !this.started) return;
      const held = this.held;
      this.held = undefined;
      let tookHeld = false;
      if (early && held) {
        // a delta heard while asking: the command, unless the document is newer
        const docVersion = numberOrUndefined(early.doc?.version);
        if (held.version === undefined || docVersion === undefined || held.version >= docVersion) {
          early.doc = undefined;
          tookHeld = true;
          this.handleCommand(held.value, held.version);
        }
      }
      const heard = this.softwareDeltas;
      try {
        await this.reportCurrent();
      } catch (err) {
        // refused for good (its shadow is full, say): retrying the same report would never end,
        // and the command must still be acted on; the catch-up goes on without it
        if (err instanceof AgentStoppedError || isRetryable(err)) throw err;
        this.log.error('report of what runs rejected; the server will not take it: going on without it', { error: asUpdraftError(err).message });
      }
      if (session !== this.session || !this.started) return;
      // a client certificate near its expiry is renewed over this connection (not awaited: the
      // catch-up goes on), and one the server said it could not move yet is asked again
      this.renewer?.connected();
      void this.renewer?.check();
      // and the log of a failed job the server has not taken yet
      void this.sendPendingLog();
      // When desired software differs, the report's own delta carries the whole command, as
      // the `get` would: the replica publishes an update's answers back to back, so it comes
      // in the same read as the report's `accepted`, handled one packet per tick before the
      // next turn of the event loop. Then the `get` is skipped (a fleet cycling online saves
      // a request, the full document and a URL signature per visit). A delta that comes later
      // costs nothing but the `get` as before; one heard is never stale (it came after the
      // subscription, and a newer desired state sends a newer delta).
      await new Promise((resolve) => setImmediate(resolve));
      if (session !== this.session || !this.started) return;
      if (this.softwareDeltas === heard) {
        const doc = early ? early.doc : await this.getDocument();
        if (session !== this.session || !this.started) return;
        if (doc) this.handleDocument(doc);
        // no shadow (404): nothing is desired of this device, as refreshCommand takes it
        else if (!tookHeld && this.job?.run.unconfirmed) this.job.run.cancel(calledOff.canceled('the device has no shadow any more'));
      }
      // the server's current document is acted on: a job resumed at start (saved before it
      // installed) that it did not call off (a stay command, desired software cleared) is still
      // wanted and may install now. Not before: a job canceled while the agent was stopped was
      // installed when the install gate said go before the answer came
      this.job?.run.confirm();
    } catch (err) {
      if (!this.started || session !== this.session || err instanceof AgentStoppedError) return;
      const delay = this.backoff(attempt);
      const e = asUpdraftError(err);
      // connected, yet no answer on the replica's topics: a broker with no Updraft server
      // behind it (the machine's own Mosquitto on 1883, reached for want of --broker) said
      // only the timeout (QA of the quick start, 2026-12-07)
      const hint = e.code === 'TIMEOUT' ? { hint: `no device state replica answered on ${requestTopic({ deviceId: this.opts.deviceId, name: '' }, 'get')}: is ${safeUrl(this.opts.brokerUrl)} the Updraft server's broker (--broker), and is the server up?` } : {};
      this.log.warn('catch-up after connect failed, retrying', { error: e.message, ...hint, delayMs: delay });
      this.syncTimer = setTimeout(() => {
        this.syncTimer = undefined;
        void this.sync(session, attempt + 1);
      }, delay);
    }
  }

  /**
   * TLS material read again (`reloadTls`): what differs from the options the connection is
   * built from (the client's, or those of the client about to be made) is used from this
   * attempt on; a new bundle is the renewer's to look for a newer CA in, and a new
   * certificate is the one it renews and the reports name (announced at the next connect).
   */
  private takeTls(clientOptions: mqtt.IClientOptions, tls: TlsMaterial): void {
    const options = clientOptions as { ca?: unknown; cert?: unknown; key?: unknown };
    const inUse = tlsInUse(clientOptions);
    const differs = (k: 'ca' | 'cert' | 'key') => tls[k] !== undefined && tls[k] !== inUse[k];
    const ca = differs('ca');
    const pair = (differs('cert') || differs('key')) && tls.cert !== undefined && tls.key !== undefined;
    if (ca) options.ca = tls.ca;
    if (pair) {
      options.cert = tls.cert;
      options.key = tls.key;
      this.certificateIssuer = certificateIssuer(tls.cert!) ?? this.certificateIssuer;
      try {
        this.certificateExpiresAt = Math.floor(certificateExpiry(tls.cert!) / 1000);
      } catch {
        // checked by whoever read it; the TLS connection says what is wrong with it
      }
      this.announceTrust = true;
    }
    if (ca || pair) this.renewer?.replaced({ ...(ca ? { ca: tls.ca! } : {}), ...(pair ? { pair: { certificate: tls.cert!, privateKey: tls.key! } } : {}) });
  }

  /**
   * The renewer of the client certificate of `mqttOptions`, with `certificateRenewal`; it
   * checks at every connect and twice a day. Undefined without a certificate or the option.
   */
  private certificateRenewer(requester: ShadowRequester): CertificateRenewer | undefined {
    const o = this.opts;
    const cert = o.mqttOptions?.cert;
    const key = o.mqttOptions?.key;
    if (!o.certificateRenewal || cert === undefined || key === undefined) return undefined;
    const pem = (v: unknown) => (Buffer.isBuffer(v) ? v.toString('utf8') : String(v));
    const ca = o.mqttOptions?.ca;
    try {
      certificateExpiry(pem(cert));
    } catch (err) {
      // the TLS connection says what is wrong with it; nothing to renew
      this.log.warn('the client certificate is unreadable: it is not renewed', { error: asUpdraftError(err).message });
      return undefined;
    }
    const renewer = new CertificateRenewer({
      deviceId: o.deviceId,
      current: { certificate: pem(cert), privateKey: pem(key) },
      // every CA given: a renewed certificate of any of them is taken, as TLS takes any
      ...(ca !== undefined ? { ca: Array.isArray(ca) ? ca.map(pem).join('\n') : pem(ca) } : {}),
      options: o.certificateRenewal,
      request: (body) => requester.request('certificate', body),
      use: (renewed) => {
        // mqtt.js builds each TLS connection from its options: the next one presents the new pair
        if (this.client) Object.assign(this.client.options, { cert: renewed.certificate, key: renewed.privateKey });
        // said in the next report (reported.agent.certificateExpiresAt, certificateIssuer: a move to a new CA shows)
        this.certificateIssuer = certificateIssuer(renewed.certificate) ?? this.certificateIssuer;
        this.announceTrust = true;
        if (this.renewalError !== undefined) this.renewalError = null;
        setImmediate(() => this.started && void this.reportCurrent().catch(() => {}));
        this.emit('certificate-renewed', { expiresAt: renewer.expiresAtSeconds });
      },
      onFailure: (message) => {
        this.renewalError = message.length > 300 ? `${message.slice(0, 299)}…` : message;
        this.announceTrust = true;
        // reported now, not only at the next connect
        setImmediate(() => this.started && void this.reportCurrent().catch(() => {}));
      },
      logger: this.log,
      now: () => this.clock.serverTime(this.now()),
    });
    this.renewTimer = setInterval(() => void renewer.check(), 12 * 3_600_000);
    this.renewTimer.unref();
    return renewer;
  }

  /**
   * For an agent whose state may lack its past (`unknownPast`: none, or a file that a save the
   * disk refused left older than what it reported): asks for its document and takes the outcome
   * it reported last (`reported.software`: a job id with SUCCESS or FAILURE) as a finished job,
   * so that a command for that job is answered by re-reporting it, not by running it again
   * (a FAILURE's execution stays FAILED on the server; a retry is a new job id). The document,
   * for the catch-up to act on. Throws when the `get` fails (the catch-up is retried).
   */
  private async learnPast(): Promise<JsonObject | undefined> {
    // what an earlier attempt heard is older than what this one's document says
    this.held = undefined;
    const doc = await this.getDocument();
    const reported = isJsonObject(doc?.state) ? doc.state.reported : undefined;
    const last = parseReportedSoftware(isJsonObject(reported) ? reported.software : undefined);
    const jobId = last?.jobId;
    const status = last?.status;
    const waiting = this.resumeAfterLearning() ? this.state.inFlight : undefined;
    // the last outcome was a stay's: that job was taken back (a state lost since forgot it)
    const stayFor = jobId === undefined ? undefined : canceledBy(jobId);
    if (stayFor !== undefined && !this.state.canceled?.includes(stayFor)) this.state.canceled = rememberCanceled(this.state.canceled, stayFor);
    if (jobId !== undefined && (status === 'SUCCESS' || status === 'FAILURE')) {
      const known = this.state.finished.some((f) => f.jobId === jobId);
      const finished: FinishedJob = { jobId, status, finishedAt: new Date(this.now()).toISOString() };
      if (last?.error !== undefined) finished.error = last.error;
      if (status === 'SUCCESS' && last) finished.installed = last.jobVersion ?? last.version;
      if (waiting?.jobId === jobId) {
        // saved in flight before INSTALLING, yet its outcome was reported (and acknowledged):
        // the saves after it were refused (a full disk) before a kill. It is over, not resumed
        // (a FAILURE's command, still desired, would install it under a job the server keeps FAILED)
        delete this.state.inFlight;
        if (!this.opts.download?.inMemory) await unlink(partFile(this.opts.stateDir, jobId)).catch(() => {});
        if (!known) this.state.finished = rememberFinished(this.state.finished, finished);
        this.log.info('the job saved in flight already reported its outcome (a save the disk refused lost it): taken as finished, not resumed', { jobId, status, phase: waiting.phase });
      } else if (!known && this.state.inFlight?.jobId !== jobId) {
        this.state.finished = rememberFinished(this.state.finished, finished);
        this.log.info('the saved state lacks the last outcome this device reported (lost, or a save the disk refused): took it from its shadow', { jobId, status });
      }
    }
    delete this.state.unknownPast;
    await this.saveState().catch((err: unknown) => this.log.warn('agent state not saved', { error: asUpdraftError(err).message }));
    // the update in flight that start() left for now: resumed, the shadow says nothing against it
    if (waiting && this.state.inFlight === waiting && !this.job && this.started) this.launch(waiting, false, undefined);
    return doc;
  }

  /**
   * At start, no job in flight and `current` on a slot whose health check never passed: a
   * crash came during it, and the job's state was lost, or the job ended meanwhile (canceled,
   * timed out, superseded) so that its command does not come again (QA). Checked again as
   * that job's `recover` would (a check the crash left running killed first), kept or rolled
   * back, before the agent connects, so that its first report tells what runs. Not cut short
   * by `stop()` (a check aborted rolls back, with nothing left to say why): it ends by its
   * timeout. The outcome goes to the slot's job, when known, at the connect (`reportRechecked`).
   */
  private async recheckCurrent(): Promise<void> {
    const installer = this.opts.installer;
    const running = this.installed;
    if (!running?.unchecked || !installer.recover || running.name === undefined || running.sha256 === undefined || running.size === undefined) return;
    const { name, version, sha256, size, jobId } = running;
    // the check's lines (the installer's, the health check's output) go into a log of the slot's
    // job too, sent if the check fails, as an install's are (the job's own log was lost with its state)
    const log = new JobLog(`agent:${this.opts.deviceId}`);
    const logger = teeLogger(this.log, log.logger);
    logger.info('running software whose health check has not passed (interrupted), with no job in flight: checking it again', { version, ...(jobId !== undefined ? { jobId } : {}) });
    let result: RecoveryResult;
    try {
      // no job id (a manifest from before it was recorded): the slot is rejected by no job
      result = await installer.recover({ name, version, sha256, size, jobId: jobId ?? '' }, { logger });
      this.installed = await installer.current();
    } catch (err) {
      this.log.warn('the slot could not be checked again; the next start tries again', { version, error: asUpdraftError(err).message });
      return;
    }
    // kept by the installer: yet what runs now may not be the slot's build (a bootloader that fell
    // back to the old slot, an installer that rolled back without saying so). As installedOutcome
    // (update-job.ts) does after an install: the job is SUCCESS only when current() names its version
    const booted = this.installed?.version;
    if (result.outcome === 'installed' && booted !== version) {
      result = { outcome: 'rolled-back', reason: `booted version ${booted ?? 'none the installer knows of'}, expected ${version}: the bootloader fell back (the health check passed, but the installer says another version runs)` };
    }
    logger.info('slot checked again', { outcome: result.outcome, running: booted ?? UNKNOWN_VERSION, ...(result.reason !== undefined ? { reason: result.reason } : {}) });
    if (jobId === undefined || result.outcome === 'not-started') return;
    const finishedAt = new Date(this.now()).toISOString();
    const job: FinishedJob =
      result.outcome === 'installed' ? { jobId, status: 'SUCCESS', installed: version, finishedAt } : { jobId, status: 'FAILURE', error: result.reason ?? 'health check not passed after a restart; rolled back', finishedAt };
    this.rechecked = { job, log };
  }

  /**
   * At the connect, once the agent knows what it finished (`learnPast`): the outcome of the
   * slot checked again at start is that job's, reported and remembered as `finish` would,
   * unless its outcome was reported before (a SUCCESS whose check now fails: the report of
   * what runs, the old version, says the rollback, as after any rollback). A FAILURE's log
   * (the check's) goes to the server once the server took the FAILURE, as `finish` sends one.
   */
  private async reportRechecked(): Promise<void> {
    const job = this.rechecked?.job;
    const log = this.rechecked?.log;
    if (!job || !log) return;
    const known = this.state.finished.find((f) => f.jobId === job.jobId);
    if (known && known !== job) {
      this.rechecked = undefined;
      this.log.info('the job of the slot checked again reported its outcome before: only what runs now is reported', { jobId: job.jobId, reported: known.status, checked: job.status });
      return;
    }
    if (!known) {
      this.state.finished = rememberFinished(this.state.finished, job);
      await this.saveState().catch((err: unknown) => this.log.warn('finished job not saved', { jobId: job.jobId, error: asUpdraftError(err).message }));
    }
    let taken = true;
    try {
      await this.reportFinished(job);
    } catch (err) {
      if (err instanceof AgentStoppedError || isRetryable(err)) throw err;
      taken = false;
      this.log.error('final report rejected; the server will not take it', { jobId: job.jobId, error: asUpdraftError(err).message });
    }
    this.rechecked = undefined;
    if (job.status === 'FAILURE' && taken) {
      log.logger.info('outcome FAILURE', { jobId: job.jobId, ...(job.error !== undefined ? { error: job.error } : {}) });
      // sent by the catch-up's sendPendingLog, after its report of what runs
      this.state.pendingLog = { jobId: job.jobId, since: new Date(this.now()).toISOString(), ...log.data() };
      await this.saveState().catch((err: unknown) => this.log.warn('agent state not saved', { error: asUpdraftError(err).message }));
    }
    this.log.info('update finished', { jobId: job.jobId, status: job.status, ...(job.error !== undefined ? { error: job.error } : {}) });
    this.emit('job-finished', { jobId: job.jobId, status: job.status, version: this.installed?.version ?? UNKNOWN_VERSION, ...(job.error !== undefined ? { error: job.error } : {}), ...takesBackField(job.jobId) });
  }

  /** The shadow document (`get`), or undefined when the device has none yet. */
  private async getDocument(): Promise<JsonObject | undefined> {
    try {
      const sentAt = this.now();
      const doc = await this.requester!.request('get', {});
      this.adoptReportedClock(doc);
      this.observeClock(sentAt, doc);
      // before anything acts on the document: a command of that job, now or later, is ignored
      this.noteTakenBack(doc.state);
      return doc;
    } catch (err) {
      if (err instanceof UpdraftError && err.status === 404) return undefined;
      throw err;
    }
  }

  private onMessage(topic: string, payload: Buffer): void {
    if (topic !== deltaTopic(this.opts.deviceId)) {
      if (this.requester?.handleMessage(topic, payload)) return;
      if (topic === answerTopic({ deviceId: this.opts.deviceId, name: '' }, 'update', 'accepted')) this.onUpdateAccepted(payload);
      return;
    }
    let delta: DeltaMessage;
    try {
      delta = JSON.parse(payload.toString('utf8')) as DeltaMessage;
    } catch {
      this.log.warn('ignoring a delta that is not JSON');
      return;
    }
    if (!isJsonObject(delta) || !isJsonObject(delta.state)) return;
    this.emit('delta', delta);
    // other keys of the delta belong to the application, not to the update agent
    if (delta.state.software !== undefined) {
      this.softwareDeltas++;
      this.handleCommand(delta.state.software, numberOrUndefined(delta.version));
    }
  }

  /** A `get` answer: its `state.delta.software`, if any, is the command to act on. */
  private handleDocument(doc: JsonObject): void {
    const delta = isJsonObject(doc.state) ? doc.state.delta : undefined;
    const version = numberOrUndefined(doc.version);
    const software = isJsonObject(delta) ? delta.software : undefined;
    if (software !== undefined) {
      this.handleCommand(software, version);
      return;
    }
    const job = this.job?.run;
    // nothing desired any more for the job in flight: it was canceled while we were away
    if (job && (version === undefined || job.commandVersion === undefined || version >= job.commandVersion)) {
      job.cancel(calledOff.canceled('the server no longer asks for this update'));
    }
  }

  /**
   * Another client's update of the shadow, while a job is in flight. The server takes a
   * command back by clearing desired software when the catalogue does not hold the build the
   * device runs (a cancel, a timeout; `jobs/desired-software.ts`): no delta says so, since a
   * cleared key differs from nothing, but the update's accepted answer, which reaches every
   * client subscribed to the shadow's answers, carries `desired.software: null`. It counts
   * as the `get` that shows nothing desired: the download is called off now, not at the next
   * connect (which let a canceled device install the build anyway). The clear names the job
   * it takes back (`softwareCanceled`): remembered, with or without a job in flight, so that a
   * late command of it is ignored (`noteTakenBack`).
   */
  private onUpdateAccepted(payload: Buffer): void {
    // most are answers to others' writes that do not touch the software: no parse
    // (`"software` matches `"software"` and `"softwareCanceled"`)
    if (!payload.includes('"software')) return;
    let body: unknown;
    try {
      body = JSON.parse(payload.toString('utf8'));
    } catch {
      return;
    }
    const state = isJsonObject(body) ? body.state : undefined;
    this.noteTakenBack(state);
    const desired = isJsonObject(state) ? state.desired : undefined;
    if (!isJsonObject(desired) || desired.software !== null) return;
    const job = this.job?.run;
    const version = numberOrUndefined((body as JsonObject).version);
    if (job && (version === undefined || job.commandVersion === undefined || version >= job.commandVersion)) {
      if (job.cancel(calledOff.canceled('the server no longer asks for this update'))) this.log.info('job canceled: desired software cleared', { jobId: job.jobId });
    }
  }

  // ---- commands (steps 5-6) -----------------------------------------------------------

  private handleCommand(value: unknown, version: number | undefined): void {
    if (!this.started) return;
    let command: SoftwareCommand;
    try {
      command = parseSoftwareCommand(value);
    } catch (err) {
      this.log.warn('ignoring a malformed update command', { error: asUpdraftError(err).message });
      return;
    }
    // a stay command takes its job back for good: remembered (and saved) before it is acted on
    const stayFor = canceledBy(command.jobId);
    if (stayFor !== undefined) this.noteCanceled(stayFor);
    const job = this.job?.run;
    if (job?.jobId === command.jobId) {
      // the job in flight: every delta re-sends it (our own reports change the shadow); its
      // fresh URL is kept, but never another build under the same job id (see takeResent)
      if (job.takeResent(command) === 'differs') {
        this.log.warn('ignoring a re-sent command for the job in flight: it names another build', { jobId: job.jobId, name: command.name, version: command.version, sha256: command.sha256, size: command.size, expected: { name: job.command.name, version: job.command.version, sha256: job.command.sha256, size: job.command.size } });
        return;
      }
      job.commandVersion = version ?? job.commandVersion;
      return;
    }
    // the command of a job this device saw canceled: a late message (a delta held by a server
    // instance cut off from the broker, sent after the cancel another instance wrote). Job ids
    // are unique, and a canceled job is never asked for again (a retry has its own id): never
    // started, nor does it call off the job in flight or re-report anything
    if (this.state.canceled?.includes(command.jobId)) {
      // with nothing in flight, answered: a FAILURE naming it, so that a server still waiting
      // for it ends its execution. A server whose database went back (a restore, a failover
      // that lost writes) asks again for a job whose cancel it no longer holds: left
      // unanswered, its execution stayed open for good (review, 2026-12-06). A late message
      // about a job the server did cancel changes nothing there (its execution is ended), and
      // is answered once (not the echo of this report: its version)
      if (!job && version !== undefined && this.acked.get(command.jobId) !== version && !this.reportingOutcome.has(command.jobId)) {
        this.log.info('the server asks for a job canceled before: reporting it called off, not started', { jobId: command.jobId, shadowVersion: version });
        const calledOffBefore: FinishedJob = { jobId: command.jobId, status: 'FAILURE', error: CANCELED_BEFORE, finishedAt: new Date(this.now()).toISOString() };
        void this.reportFinished(calledOffBefore).catch((err: unknown) => this.log.warn('outcome not reported', { jobId: command.jobId, error: asUpdraftError(err).message }));
        return;
      }
      this.log.info('ignoring the command of a job canceled before: a late message', { jobId: command.jobId, ...(version !== undefined ? { shadowVersion: version } : {}) });
      return;
    }
    // not before the agent knows what it finished (learnPast): the catch-up acts on it then
    if (this.state.unknownPast) {
      this.held = { value, version };
      return;
    }
    const finished = this.state.finished.find((f) => f.jobId === command.jobId);
    if (finished) {
      const acked = this.acked.get(finished.jobId);
      // the echo of our own outcome report (desired still differs after a FAILURE): nothing new.
      // The echo only: a command at an older version than the acknowledgement is the server
      // asking again after its database went back (a restore, a failover that lost writes),
      // whose execution is open again and waits for this outcome; it was dropped, and that
      // execution stayed open for good (QA, 2026-12-06). A late older delta is answered too,
      // idempotently
      if (acked !== undefined && (version === undefined || version === acked)) return;
      if (this.reportingOutcome.has(finished.jobId)) return;
      this.log.info('duplicate command for a finished job: re-reporting its outcome', { jobId: finished.jobId, status: finished.status });
      void this.reportFinished(finished).catch((err: unknown) => this.log.warn('outcome not re-reported', { jobId: finished.jobId, error: asUpdraftError(err).message }));
      return;
    }
    if (job) {
      // a newer job: call the current one off if it has not started installing, else run next.
      // One called off before it installed, or a command waiting its turn replaced by this
      // one, is taken back for good: the server ended its execution CANCELED (superseded) when
      // it wrote the newer command (jobs/execution-tracker.ts), and its id never comes back, so
      // a late command of it is ignored (it started it again, or called this one off). Not a
      // job that completes (its install under way, or finished before): the server may lack
      // its outcome (a report lost; a SUCCESS after the supersede is kept as lateSuccess), so
      // a duplicate still re-reports it, idempotently
      const replaced = this.pending?.command.jobId;
      this.pending = { command, version };
      if (replaced !== undefined && replaced !== command.jobId) this.noteCanceled(replaced);
      if (job.cancel(calledOff.supersededBy(command.jobId))) {
        job.supersededBy = command.jobId;
        this.noteCanceled(job.jobId);
        this.log.info('job superseded', { jobId: job.jobId, by: command.jobId });
      }
      return;
    }
    const inFlight: InFlightUpdate = { jobId: command.jobId, command, phase: 'DOWNLOADING', startedAt: new Date(this.now()).toISOString() };
    this.launch(inFlight, true, version);
  }

  /**
   * `jobId` was taken back by the server (its stay command heard, a clear naming it, or
   * superseded before it installed): remembered across restarts (`AgentStateData.canceled`).
   */
  private noteCanceled(jobId: string): void {
    if (this.state.canceled?.includes(jobId)) return;
    this.state.canceled = rememberCanceled(this.state.canceled, jobId);
    this.saveState().catch((err: unknown) => this.log.warn('agent state not saved', { error: asUpdraftError(err).message }));
  }

  /**
   * The job a clear of desired software took back, named by the server (`softwareCanceled`,
   * on both sides of the document so that it makes no delta: jobs/desired-software.ts),
   * remembered as a stay's job is. `state`: a document's or an update's accepted answer's.
   */
  private noteTakenBack(state: unknown): void {
    if (!isJsonObject(state)) return;
    const named = (part: unknown) => (isJsonObject(part) && typeof part.softwareCanceled === 'string' && part.softwareCanceled !== '' ? part.softwareCanceled : undefined);
    const jobId = named(state.desired) ?? named(state.reported);
    if (jobId !== undefined) this.noteCanceled(jobId);
    // the commands a newer one replaced before this device answered them (`softwareSupersedes`,
    // jobs/desired-software.ts): taken back as a superseded job in flight is. Not the job in
    // flight (the server wrote the list before it heard of it: it calls it off or finishes it
    // as any newer command has it do), nor one this device finished (its outcome is re-reported
    // if asked again). A stay in the list takes its job back too
    const list = (part: unknown) => (isJsonObject(part) && Array.isArray(part.softwareSupersedes) ? part.softwareSupersedes : []);
    const superseded = list(state.desired).length > 0 ? list(state.desired) : list(state.reported);
    for (const id of superseded.slice(0, MAX_SUPERSEDED_NOTED)) {
      if (typeof id !== 'string' || id === '' || id.length > 256) continue;
      for (const taken of [id, canceledBy(id)]) {
        if (taken === undefined || taken === this.job?.run.jobId || taken === this.pending?.command.jobId || this.state.finished.some((f) => f.jobId === taken)) continue;
        this.noteCanceled(taken);
      }
    }
  }

  // ---- jobs (step 7) ------------------------------------------------------------------

  private launch(inFlight: InFlightUpdate, fresh: boolean, version: number | undefined): void {
    const o = this.opts;
    // the job's lines go to the agent's log and into the job's own, sent if it fails
    const log = new JobLog(`agent:${o.deviceId}`, inFlight.log, () => this.saveLogSoon());
    const logger = teeLogger(this.log, log.logger);
    const run = new UpdateJob(inFlight.command, inFlight.phase, {
      installer: o.installer,
      download: o.download ?? downloadArtifact,
      file: partFile(this.opts.stateDir, inFlight.jobId),
      enterPhase: (job, phase) => this.enterPhase(job, phase),
      reportProgress: (job, progress) => {
        this.emit('progress', { jobId: job.jobId, progress });
        this.reportSoon(softwareReport(this.installed, { jobId: job.jobId, status: 'DOWNLOADING', progress }));
      },
      refreshCommand: (job) => this.refreshCommand(job),
      now: () => this.now(),
      // what the server enforces (a URL's expiry) by its clock; what the device enforces (a manifest's) by its own
      serverNow: () => this.clock.serverTime(this.now()),
      logger,
      downloadSettings: o.downloadSettings ?? {},
      // a kept build's command was checked before its download, fresh then: its expiries (which
      // guard against a stale command being delivered) are judged as of the job's start
      verifyCommand: (command, running, kept) => this.rememberKeySerial(checkCommand(command, this.signatures!, running, Math.floor((kept ? Math.min(Date.parse(inFlight.startedAt), this.now()) : this.now()) / 1000), this.clock.hint(), o.deviceType)),
      ...(o.downloadAuth === 'token' ? { authorizeDownload: (job: UpdateJob, renew: boolean) => this.authorizeDownload(job, renew) } : {}),
      ...(o.installGate
        ? {
            installGate: {
              ask: o.installGate,
              retryMs: o.installGateRetryMs ?? AGENT_DEFAULTS.installGateRetryMs,
              maxWaitMs: o.installGateMaxWaitMs ?? AGENT_DEFAULTS.installGateMaxWaitMs,
              // the gate's wait so far, which a restart keeps (the start: for an older agent's saved wait)
              startedAt: Date.parse(inFlight.startedAt),
              ...(inFlight.gateWaitedMs !== undefined ? { waitedMs: inFlight.gateWaitedMs } : {}),
            },
          }
        : {}),
      putOff: (job: UpdateJob, wait: InstallWait, gateWaitedMs?: number) => this.putOff(job, wait, gateWaitedMs),
      fetchedFromStart: inFlight.fetchedFromStart === true,
      savedFetchFromStart: (job) => this.savedFetchFromStart(job),
      // resumed from the saved state before it installed: installs once the catch-up confirms it (sync)
      unconfirmed: !fresh && (inFlight.phase === 'DOWNLOADING' || inFlight.phase === 'VERIFYING'),
      ...(inFlight.waiting ? { previousWait: inFlight.waiting } : {}),
      timeZone: this.timeZone,
      urlMarginMs: o.urlMarginMs ?? AGENT_DEFAULTS.urlMarginMs,
      maxUrlRefreshes: o.maxUrlRefreshes ?? AGENT_DEFAULTS.maxUrlRefreshes,
      progressStep: o.progressStep ?? AGENT_DEFAULTS.progressStep,
      progressIntervalMs: o.progressIntervalMs ?? AGENT_DEFAULTS.progressIntervalMs,
    });
    run.commandVersion = version;
    const entry = { run, done: Promise.resolve(), log, logger };
    this.job = entry;
    entry.done = this.runJob(run, inFlight, fresh).finally(() => {
      if (this.job === entry) this.job = undefined;
      const next = this.pending;
      this.pending = undefined;
      if (next && this.started) this.handleCommand(next.command, next.version);
    });
  }

  private async runJob(run: UpdateJob, inFlight: InFlightUpdate, fresh: boolean): Promise<void> {
    try {
      if (fresh) {
        this.loggerOf(run).info('update command received', { jobId: run.jobId, version: run.command.version, size: run.command.size, sha256: run.command.sha256 });
        // persisted BEFORE acting, with its log so far: a crash from here on resumes this job,
        // and the log sent if it fails starts at the command, not at the next phase saved
        const log = this.logOf(run);
        this.state.inFlight = log ? { ...inFlight, log: log.snapshot() } : inFlight;
        await this.saveState();
      } else {
        // in the job's log too (the tee writes the agent's), saved: the restart is part of its story
        this.loggerOf(run).info('resuming interrupted update', { jobId: run.jobId, phase: inFlight.phase });
        await this.saveLogNow(this.job);
      }
      if (inFlight.phase !== 'REPORTING') {
        this.emitStatus(run, inFlight.phase);
        this.reportSoon(this.phaseReport(run, inFlight.phase));
        run.markReported();
      }
      const outcome = inFlight.phase === 'REPORTING' ? inFlight.outcome! : await run.execute();
      await this.finish(run, outcome);
    } catch (err) {
      if (err instanceof AgentStoppedError || !this.started) return;
      // only an internal failure (the state file cannot be written, …) gets here
      const error = asUpdraftError(err).message;
      this.loggerOf(run).error('update job failed unexpectedly', { jobId: run.jobId, error });
      await this.finish(run, { status: 'FAILURE', error }).catch(() => {});
    }
  }

  /**
   * A line of the job's log (a download retry, a refusal) is saved within a second, not only
   * with the next phase: a restart in between (power lost during a flaky download) kept the
   * log as of the phase's start, without the retries that tell why the download was slow or
   * failed. One save per second at most, whatever the installer prints.
   */
  private saveLogSoon(): void {
    if (this.logTimer || !this.started) return;
    const entry = this.job;
    this.logTimer = setTimeout(() => void this.saveLogNow(entry), JOB_LOG_SAVE_DELAY_MS);
    this.logTimer.unref();
  }

  /** Saves the job's log as it is now into the update in flight (at the timer, and at a stop). */
  private async saveLogNow(job: { run: UpdateJob; log: JobLog } | undefined): Promise<void> {
    clearTimeout(this.logTimer);
    this.logTimer = undefined;
    const current = this.state.inFlight;
    if (!job || current?.jobId !== job.run.jobId) return;
    this.state.inFlight = { ...current, log: job.log.snapshot() };
    await this.saveState().catch((err: unknown) => this.log.warn("the job's log is not saved; it is with the next phase", { jobId: current.jobId, error: asUpdraftError(err).message }));
  }

  /** Persists the phase, then announces and reports it. */
  private async enterPhase(job: UpdateJob, phase: InFlightPhase): Promise<void> {
    const current = this.state.inFlight;
    if (!current || current.jobId !== job.jobId) throw new UpdraftError('INTERNAL', `job ${job.jobId} is not the update in flight`);
    checkTransition(current.phase, phase);
    const { waiting: _ended, gateWaitedMs: _waited, ...rest } = current;
    const log = this.logOf(job);
    log?.logger.info(`phase ${phase}`, { jobId: job.jobId });
    this.state.inFlight = { ...rest, phase, command: job.command, ...(log ? { log: log.snapshot() } : {}) };
    await this.saveState();
    this.emitStatus(job, phase);
    this.reportSoon(this.phaseReport(job, phase));
  }

  /** The one fetch from the start of the job's download is about to be made: persisted, so a restart does not make another. */
  private async savedFetchFromStart(job: UpdateJob): Promise<void> {
    const current = this.state.inFlight;
    if (!current || current.jobId !== job.jobId) throw new UpdraftError('INTERNAL', `job ${job.jobId} is not the update in flight`);
    const log = this.logOf(job);
    this.state.inFlight = { ...current, fetchedFromStart: true, ...(log ? { log: log.snapshot() } : {}) };
    await this.saveState();
  }

  /**
   * The install gate put the install off: persisted (a restart goes on counting), announced,
   * and reported as `software.waiting`, so that the server's step timer waits for the gate.
   */
  private async putOff(job: UpdateJob, wait: InstallWait, gateWaitedMs?: number): Promise<void> {
    const current = this.state.inFlight;
    if (!current || current.jobId !== job.jobId || current.phase !== 'VERIFYING') throw new UpdraftError('INTERNAL', `job ${job.jobId} is not waiting to install`);
    const log = this.logOf(job);
    this.state.inFlight = { ...current, waiting: wait, ...(gateWaitedMs !== undefined ? { gateWaitedMs } : {}), ...(log ? { log: log.snapshot() } : {}) };
    await this.saveState();
    this.emit('status', { jobId: job.jobId, status: 'VERIFYING', version: job.command.version, waiting: wait });
    this.reportSoon(this.phaseReport(job, 'VERIFYING'));
  }

  /**
   * Raises the lowest key certificate serial this device accepts to `serial` (one it just
   * accepted), durably before the download starts: from then on, the key of an older
   * certificate (a replaced one) is refused, even after a restart.
   */
  private async rememberKeySerial(check: CommandCheck): Promise<void> {
    if (check.rotatedRoot) await this.adoptRoot(check.rotatedRoot);
    const serial = check.certificateSerial;
    if (serial === undefined || serial <= (this.state.keySerial ?? 0) || !this.signatures || !('rootKey' in this.signatures)) return;
    this.signatures.minSerial = serial;
    this.state.keySerial = serial;
    if (check.certificateKeyId !== undefined) {
      this.signatures.minSerialKeyId = check.certificateKeyId;
      this.state.keySerialKeyId = check.certificateKeyId;
    }
    await this.saveState();
    this.log.info('newer software signing key certificate accepted: certificates of other keys older than it are refused from now on', { serial, keyId: check.certificateKeyId });
  }

  /**
   * Trusts `root` from now on, durably before the download starts: the root the command's
   * root rotations led to from the trusted one. Certificates of the roots before it are
   * refused from then on (a leaked old root vouches for nothing here), even after a restart.
   */
  private async adoptRoot(root: KeyObject): Promise<void> {
    const trust = this.signatures;
    if (!trust || !('rootKey' in trust)) return;
    const previous = trust.rootKeyId ?? keyIdOf(trust.rootKey);
    const keyId = keyIdOf(root);
    if (keyId === previous) return;
    trust.rootKey = root;
    trust.rootKeyId = keyId;
    const provisioned = this.state.rotatedRoot?.provisionedKeyId ?? this.provisionedRootId!;
    this.state.rotatedRoot = { keyId, publicKey: root.export({ type: 'spki', format: 'der' }).toString('base64'), provisionedKeyId: provisioned };
    await this.saveState();
    // said in the next report (reported.agent.keyId), so the fleet can be asked who still trusts the old root
    this.announceTrust = true;
    this.log.info('the offline root was replaced: this device trusts the new root from now on, and refuses certificates of the old one', { previousRootKeyId: previous, rootKeyId: keyId });
  }

  /** At start: the root taken from root rotations before, while the agent is given the root it was taken from. */
  private resumeRotatedRoot(trust: RootTrust): void {
    const provisionedId = keyIdOf(trust.rootKey);
    this.provisionedRootId = provisionedId;
    const saved = this.state.rotatedRoot;
    if (!saved) return;
    if (saved.provisionedKeyId !== provisionedId) {
      // given another root by hand (provisioned again): that one is trusted, and the rotation forgotten
      this.log.warn('this device was given another root key than the one its rotated root came from: it trusts the root it was given', { givenRootKeyId: provisionedId, rotatedRootKeyId: saved.keyId });
      delete this.state.rotatedRoot;
      return;
    }
    try {
      const key = createPublicKey({ key: Buffer.from(saved.publicKey, 'base64'), format: 'der', type: 'spki' });
      if (keyIdOf(key) !== saved.keyId) throw new Error(`its public key is not key ${saved.keyId}`);
      trust.rootKey = key;
      trust.rootKeyId = saved.keyId;
    } catch (err) {
      // the state file is ours and written atomically: damage from outside. The provisioned root still leads to it through the rotations
      this.log.warn('the saved rotated root is unreadable: trusting the provisioned root, whose rotations every command carries', { error: (err as Error).message });
      delete this.state.rotatedRoot;
    }
  }

  /** Asks the server for a fresh command (and URL) for `job`, patiently: the broker may be away. */
  private async refreshCommand(job: UpdateJob): Promise<void> {
    for (let round = 0; ; round++) {
      try {
        const doc = await this.getDocument();
        if (doc) this.handleDocument(doc);
        else job.cancel(calledOff.canceled('the device has no shadow any more'));
        return;
      } catch (err) {
        if (!isRetryable(err) || round >= 4) throw err;
        await this.pause(this.backoff(round));
      }
    }
  }

  /**
   * The URL and header of a download with a temporary credential: the token is asked for over
   * MQTT (it grants reading only the artifact of the device's current job) and reused until it
   * nears its expiry, or `renew` says it was refused.
   */
  private async authorizeDownload(job: UpdateJob, renew: boolean): Promise<{ url: string; headers: Record<string, string>; expiresAt: number }> {
    const marginS = (this.opts.urlMarginMs ?? AGENT_DEFAULTS.urlMarginMs) / 1000;
    let c = this.credential;
    if (renew || !c || c.jobId !== job.jobId || c.expiresAt - marginS <= this.clock.serverTime(this.now()) / 1000) {
      const answer = await this.requester!.request('credentials', { jobId: job.jobId });
      if (typeof answer.token !== 'string' || typeof answer.expiresAt !== 'number') throw new UpdraftError('DOWNLOAD', 'the credentials answer carries no token');
      c = { jobId: job.jobId, token: answer.token, expiresAt: answer.expiresAt };
      this.credential = c;
      this.log.debug('download credential received', { jobId: job.jobId, expiresAt: c.expiresAt });
    }
    // the endpoint of the pre-signed URL, without its signature: the token authorizes instead
    const url = new URL(job.command.url);
    url.search = '';
    url.searchParams.set('device', this.opts.deviceId);
    return { url: url.toString(), headers: { authorization: `Bearer ${c.token}` }, expiresAt: c.expiresAt };
  }

  /** Steps 8-9: persist the outcome, report it until acknowledged, then forget the job. */
  private async finish(job: UpdateJob, outcome: JobOutcome): Promise<void> {
    const current = this.state.inFlight;
    const log = this.logOf(job);
    if (current && current.jobId === job.jobId && current.phase !== 'REPORTING') {
      log?.logger.info(`outcome ${outcome.status}`, { jobId: job.jobId, ...(outcome.error !== undefined ? { error: outcome.error } : {}) });
      this.state.inFlight = { ...current, phase: 'REPORTING', outcome, command: job.command, ...(log ? { log: log.snapshot() } : {}) };
      // the report does not wait on the disk: with the state directory full or read-only, the
      // outcome (that failure itself, most likely) still reaches the server, where the job
      // would otherwise wait for its timeout. Only a restart before the report is sent loses
      // it (the job is then taken up again, as after any crash before the outcome was saved)
      await this.saveState().catch((err: unknown) => this.log.warn('outcome not saved before reporting it', { jobId: job.jobId, error: asUpdraftError(err).message }));
    }
    // a plain file or none: unlink is one call, where rm first lstats it (9% of a simulated
    // fleet's CPU, profiled); an in-memory downloader left none (the failing call cost 7% more)
    if (!this.opts.download?.inMemory) await unlink(partFile(this.opts.stateDir, job.jobId)).catch(() => {});
    this.installed = await this.opts.installer.current();
    this.emit('status', { jobId: job.jobId, status: outcome.status, version: job.command.version, ...(outcome.error ? { error: outcome.error } : {}) });
    const ack = await this.deliver(outcomeReport(this.installed, job.command, outcome), job.jobId);
    const finished: FinishedJob = { jobId: job.jobId, status: outcome.status, finishedAt: new Date(this.now()).toISOString() };
    if (outcome.error !== undefined) finished.error = outcome.error;
    if (outcome.status === 'SUCCESS') finished.installed = job.command.version;
    delete this.state.inFlight;
    this.state.finished = rememberFinished(this.state.finished, finished);
    // a failure's log goes to the server once the failure is recorded there (the last one only)
    if (outcome.status === 'FAILURE' && ack !== undefined && log) this.state.pendingLog = { jobId: job.jobId, since: new Date(this.now()).toISOString(), ...log.data() };
    // reported and acknowledged: the job is over whether or not the disk takes it (kept in
    // memory; the next save that succeeds writes it)
    await this.saveState().catch((err: unknown) => this.log.warn('finished job not saved', { jobId: job.jobId, error: asUpdraftError(err).message }));
    this.noteAck(job.jobId, ack);
    if (this.state.pendingLog?.jobId === job.jobId) void this.sendPendingLog();
    this.log.info('update finished', { jobId: job.jobId, status: outcome.status, ...(outcome.error ? { error: outcome.error } : {}) });
    // what the outcome is of: a stay's is the take-back of the job it names, a job called off for a newer one's is none (the newer one follows)
    const superseded = outcome.status === 'FAILURE' && job.supersededBy !== undefined ? { supersededBy: job.supersededBy } : {};
    this.emit('job-finished', { jobId: job.jobId, status: outcome.status, version: this.installed?.version ?? UNKNOWN_VERSION, ...(outcome.error ? { error: outcome.error } : {}), ...takesBackField(job.jobId), ...superseded });
  }

  /** Sends the final report until the server accepts it (step 9); gives up only on a definitive rejection. */
  private async deliver(software: JsonObject, jobId: string): Promise<JsonObject | undefined> {
    for (let round = 0; ; round++) {
      try {
        return await this.reports!.submit(software);
      } catch (err) {
        if (err instanceof AgentStoppedError || !this.started) throw new AgentStoppedError();
        if (!isRetryable(err)) {
          this.log.error('final report rejected; the server will not take it', { jobId, error: asUpdraftError(err).message });
          return undefined;
        }
        const delay = this.backoff(round);
        this.log.warn('final report not acknowledged yet, retrying', { jobId, error: asUpdraftError(err).message, delayMs: delay });
        await this.pause(delay);
      }
    }
  }

  /** The log of `job` while it is the job in flight. */
  private logOf(job: UpdateJob): JobLog | undefined {
    return this.job?.run === job ? this.job.log : undefined;
  }

  /** The logger of `job` (into its log too) while it is the job in flight, else the agent's. */
  private loggerOf(job: UpdateJob): Logger {
    return this.job?.run === job ? this.job.logger : this.log;
  }

  /**
   * Sends the log of the last failed job (`state/{id}/job-log`) until the server takes it or
   * refuses it for good (a 4xx: the job is gone, or keeps enough logs). A timeout or a 5xx is
   * tried again with backoff a few times, then at the next connect. One at a time.
   */
  private async sendPendingLog(): Promise<void> {
    const pending = this.state.pendingLog;
    if (!pending || this.sendingLog || !this.requester) return;
    this.sendingLog = true;
    try {
      for (let round = 0; ; round++) {
        // a server that never takes it (one older than job logs times out) is not asked forever
        if (this.now() - Date.parse(pending.since) > PENDING_LOG_MAX_AGE_MS) {
          this.log.info('job log not taken by the server for a week; dropped', { jobId: pending.jobId, since: pending.since });
          break;
        }
        try {
          await this.requester.request('job-log', { jobId: pending.jobId, lines: pending.lines, dropped: pending.dropped });
          this.log.info('job log sent', { jobId: pending.jobId, lines: pending.lines.length });
          break;
        } catch (err) {
          if (err instanceof AgentStoppedError || !this.started) return;
          if (!isRetryable(err)) {
            this.log.warn('job log refused by the server; dropped', { jobId: pending.jobId, error: asUpdraftError(err).message });
            break;
          }
          if (round >= 4) {
            this.log.debug('job log not sent yet; tried again at the next connect', { jobId: pending.jobId, error: asUpdraftError(err).message });
            return;
          }
          // woken early by a reconnect; rejects when the agent stops
          await this.pause(this.backoff(round));
        }
      }
    } catch {
      return; // stopped while pausing: the log stays for the next start
    } finally {
      this.sendingLog = false;
    }
    // a later failure's log may have replaced it meanwhile: that one goes next
    if (this.state.pendingLog !== pending) return void this.sendPendingLog();
    delete this.state.pendingLog;
    await this.saveState().catch((err: unknown) => this.log.warn('agent state not saved', { error: asUpdraftError(err).message }));
  }

  // ---- reports (step 8) ---------------------------------------------------------------

  private phaseReport(job: UpdateJob, phase: InFlightPhase): JsonObject {
    if (phase === 'REPORTING') throw new UpdraftError('INTERNAL', 'REPORTING is not a reported phase');
    const waiting = phase === 'VERIFYING' && this.state.inFlight?.jobId === job.jobId ? this.state.inFlight.waiting : undefined;
    return softwareReport(this.installed, { jobId: job.jobId, status: phase, ...(phase === 'DOWNLOADING' ? { progress: job.progress } : waiting ? { waiting } : {}) });
  }

  /**
   * A DOWNLOADING report of the job in flight, as it is sent: its progress is the share of the
   * build held at that moment (`UpdateJob.heldProgress`), whatever it was built with. It was
   * built from the last *reported* progress (throttled by step and interval), so the catch-up
   * after a reconnect, the report of a restart's resume and a report the queue held for its
   * pace said less than the device held (QA: 0.419 with 63% on disk; 0 with half the file
   * kept). What it says is taken as reported: the next progress report is a step beyond it.
   */
  private async withHeldProgress(software: JsonObject): Promise<JsonObject> {
    if (software.status !== 'DOWNLOADING' || typeof software.jobId !== 'string') return software;
    const job = this.job?.run;
    let progress: number;
    if (job?.jobId === software.jobId) {
      progress = await job.heldProgress();
      job.progress = progress;
    } else {
      // not launched yet (a restart waiting for its past): the file the job will resume from
      const inFlight = this.state.inFlight;
      if (inFlight?.jobId !== software.jobId || inFlight.phase !== 'DOWNLOADING' || this.opts.download?.inMemory) return software;
      progress = heldShare(await sizeOnDisk(partFile(this.opts.stateDir, inFlight.jobId)), inFlight.command.size);
    }
    return progress === software.progress ? software : { ...software, progress };
  }

  private async reportCurrent(): Promise<void> {
    const job = this.job?.run;
    const progress = job && job.jobId === this.state.inFlight?.jobId ? job.progress : 0;
    const { software, finishedJob } = stateReport(this.installed, this.state, progress);
    if (finishedJob === undefined) {
      await this.reports!.submit(software);
      return;
    }
    await this.reportOutcome(finishedJob, software);
  }

  private reportFinished(finished: FinishedJob): Promise<void> {
    return this.reportOutcome(finished.jobId, finishedReport(this.installed, finished, this.state.finished));
  }

  /** Sends a report that carries a finished job's outcome, and notes the version that acknowledged it. */
  private async reportOutcome(jobId: string, software: JsonObject): Promise<void> {
    this.reportingOutcome.set(jobId, (this.reportingOutcome.get(jobId) ?? 0) + 1);
    try {
      this.noteAck(jobId, await this.reports!.submit(software));
    } finally {
      const left = this.reportingOutcome.get(jobId)! - 1;
      if (left > 0) this.reportingOutcome.set(jobId, left);
      else this.reportingOutcome.delete(jobId);
    }
  }

  /** Fire and forget: a lost progress or phase report is superseded by the next one. */
  private reportSoon(software: JsonObject): void {
    this.reports?.submit(software).catch((err: unknown) => {
      if (!(err instanceof AgentStoppedError)) this.log.debug('report not acknowledged', { error: asUpdraftError(err).message });
    });
  }

  private noteAck(jobId: string, ack: JsonObject | undefined): void {
    const version = numberOrUndefined(ack?.version);
    if (version === undefined) return;
    // the latest, not the highest: after the server's database went back, the echo of the
    // report that answered it comes at a lower version than an earlier acknowledgement
    this.acked.set(jobId, version);
    // remember only jobs still in the finished list
    for (const id of this.acked.keys()) if (!this.state.finished.some((f) => f.jobId === id) && id !== jobId) this.acked.delete(id);
  }

  private emitStatus(job: UpdateJob, status: InFlightPhase): void {
    if (status === 'REPORTING') return;
    this.emit('status', { jobId: job.jobId, status, version: job.command.version });
  }

  // ---- helpers ------------------------------------------------------------------------

  /** Waits `ms`, or until the next connect; rejects when the agent stops. */
  private pause(ms: number): Promise<void> {
    return new Promise((resolve, reject) => {
      if (!this.started) return reject(new AgentStoppedError());
      const wake = () => {
        clearTimeout(timer);
        this.wakers.delete(wake);
        if (this.started) resolve();
        else reject(new AgentStoppedError());
      };
      const timer = setTimeout(wake, ms);
      this.wakers.add(wake);
    });
  }

  private backoff(attempt: number): number {
    return this.jittered(this.opts.retryDelayMs ?? AGENT_DEFAULTS.retryDelayMs, attempt);
  }

  /** base × 2^attempt, at most maxRetryDelayMs, between half of that and all of it. */
  private jittered(base: number, attempt: number): number {
    const max = this.opts.maxRetryDelayMs ?? AGENT_DEFAULTS.maxRetryDelayMs;
    const delay = Math.min(base * 2 ** attempt, max);
    // jitter: a fleet that lost its server together must not return together
    return Math.round(delay * (0.5 + Math.random() / 2));
  }

  private now(): number {
    return this.opts.now ? this.opts.now() : Date.now();
  }

  // ---- the device's clock (clock-offset.ts) ---------------------------------------------

  /** Takes in the server's timestamp of an answer to a request sent at `sentAt`; reports a wrong clock, and a mended one. */
  private observeClock(sentAt: number, answer: JsonObject | undefined): void {
    const offset = this.clock.observe(sentAt, this.now(), answer?.timestamp);
    if (offset === undefined) return;
    const wrong = Math.abs(offset) >= WRONG_CLOCK_SECONDS;
    if (wrong && this.clockWarnedSession !== this.session) {
      this.clockWarnedSession = this.session;
      this.log.warn(`this device's clock is ${describeSeconds(Math.abs(offset))} ${offset > 0 ? 'ahead of' : 'behind'} the server's: signed commands are judged by it, and may look expired; set it (NTP, or an RTC kept in UTC)`, { clockOffsetSeconds: offset });
    }
    const known = this.clockNews ?? this.state.clockOffsetReported;
    const news = wrong ? known === undefined || Math.abs(offset - known) >= WRONG_CLOCK_SECONDS / 2 : known !== undefined && Math.abs(known) >= WRONG_CLOCK_SECONDS;
    if (!news || !this.started) return;
    // one report with reported.agent (a healthy clock that was never wrong costs nothing)
    this.clockNews = offset;
    this.announceTrust = true;
    setImmediate(() => {
      if (!this.started) return;
      this.reportCurrent().catch((err: unknown) => {
        if (!(err instanceof AgentStoppedError)) this.log.debug('clock report not acknowledged', { error: asUpdraftError(err).message });
      });
    });
  }

  /**
   * An agent whose state file was lost (a re-flashed device, a wiped data partition) does not
   * know what it reported before: the clock offset its shadow still holds is taken as
   * reported, so that a clock mended since replaces it instead of leaving it there for good.
   */
  private adoptReportedClock(doc: JsonObject | undefined): void {
    if (this.state.clockOffsetReported !== undefined || this.clockNews !== undefined) return;
    const reported = isJsonObject(doc?.state) ? doc.state.reported : undefined;
    const agent = isJsonObject(reported) ? reported.agent : undefined;
    const offset = isJsonObject(agent) ? agent.clockOffsetSeconds : undefined;
    if (typeof offset === 'number' && Number.isSafeInteger(offset)) this.state.clockOffsetReported = offset;
  }

  /** `offset` is in the shadow: remembered across restarts, so a mended clock is reported once, and a wrong one not again. */
  private async clockReported(offset: number): Promise<void> {
    if (this.clockNews === offset) this.clockNews = undefined;
    if (this.state.clockOffsetReported === offset) return;
    this.state.clockOffsetReported = offset;
    await this.saveState().catch((err: unknown) => this.log.warn('agent state not saved', { error: asUpdraftError(err).message }));
  }
}

/** `reported.agent.features`, one array shared by every report. */
const FEATURES: JsonObject[keyof JsonObject] = [...AGENT_FEATURES];

/** `reported.agent`: how this agent checks software, by key id (`unsigned`: it does not). */
function trustReport(policy: SignaturePolicy): JsonObject {
  if ('rootKey' in policy) return { trust: 'root', keyId: keyIdOf(policy.rootKey) };
  if ('publicKey' in policy) return { trust: 'signing-key', keyId: keyIdOf(policy.publicKey) };
  return { trust: 'unsigned' };
}

/** Secure by default: a public key to verify with, or an explicit opt-out. */
function signaturePolicy(root: string | KeyObject | undefined, key: string | KeyObject | undefined, allowUnsigned: boolean | undefined): SignaturePolicy {
  if (root !== undefined) return { rootKey: typeof root === 'string' ? parsePublicKey(root) : root, minSerial: 0 };
  if (key !== undefined) return { publicKey: typeof key === 'string' ? parsePublicKey(key) : key };
  if (allowUnsigned === true) return { allowUnsigned: true };
  throw new UpdraftError('CONFIG', 'no software signing key: pass signingPublicKey (the server prints where its public key is; updraft keys export-public) or rootPublicKey, or allowUnsigned: true to accept unsigned software (insecure)');
}

/**
 * The job a stay command takes back: `<id>.cancel` names job `<id>` (an attempt's id, `J` or
 * `J.<n>`: server side `jobs/agent-job-id.ts`, docs/protocol.md); undefined for any other id.
 */
function canceledBy(jobId: string): string | undefined {
  const suffix = '.cancel';
  return jobId.length > suffix.length && jobId.endsWith(suffix) ? jobId.slice(0, -suffix.length) : undefined;
}

/** `takesBack` of a `job-finished` event: the job a stay command took back, for a stay's id only. */
function takesBackField(jobId: string): { takesBack?: string } {
  const takesBack = canceledBy(jobId);
  return takesBack === undefined ? {} : { takesBack };
}

function numberOrUndefined(v: unknown): number | undefined {
  return typeof v === 'number' ? v : undefined;
}

/** True for a promise or any object with a `then` method (what an `async` listener returns). */
function isThenable(v: unknown): v is PromiseLike<unknown> {
  return (typeof v === 'object' || typeof v === 'function') && v !== null && typeof (v as { then?: unknown }).then === 'function';
}

/** The TLS material (PEM texts) the client options hold: what `reloadTls` compares the files with. */
function tlsInUse(options: mqtt.IClientOptions): TlsMaterial {
  const o = options as { ca?: unknown; cert?: unknown; key?: unknown };
  const pem = (v: unknown) => (Buffer.isBuffer(v) ? v.toString('utf8') : String(v));
  const out: TlsMaterial = {};
  // a bundle given as an array (of PEM texts or Buffers) is compared as the one text a file of them holds
  if (o.ca !== undefined) out.ca = Array.isArray(o.ca) ? o.ca.map(pem).join('\n') : pem(o.ca);
  if (o.cert !== undefined) out.cert = pem(o.cert);
  if (o.key !== undefined) out.key = pem(o.key);
  return out;
}
