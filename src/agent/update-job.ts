/**
 * One update job on the device, from command to outcome (pattern steps 5-7): download with
 * resume and URL refresh, verify, install (or, after a crash mid-install, recover). The agent
 * owns persistence and reporting and passes them in; the job only sequences the phases and
 * decides the outcome. A job lives only while it runs: an idle agent holds none.
 */
import { stat } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { UpdraftError, asUpdraftError } from '../errors.ts';
import { inWindow, nextOpening, wallTime, windowProblems, type MaintenanceWindow } from '../protocol/maintenance-window.ts';
import { MAX_WAIT_CHECK_SECONDS, MAX_WAIT_REASON, type InstallWait, type SoftwareCommand } from '../protocol/software.ts';
import { redactUrl, type Logger } from '../util/logger.ts';
import { clipped, redactUrlsIn } from '../util/redact-url.ts';
import { MONOTONIC_CLOCK, type MonotonicClock } from './monotonic-clock.ts';
import { cutReason, type InFlightPhase, type JobOutcome } from './agent-state.ts';
import { downloadRetryDelay, type DownloadOptions, type Downloader } from './downloader.ts';
import { hashFile } from './file-hash.ts';
import { isInstalled, type InstalledSoftware, type Installer } from './installer.ts';
import { AgentStoppedError } from './shadow-requester.ts';

/** The install gate's answer: install now, not now (why), or not this build (why). */
export type GateAnswer = { go: true } | { later: string } | { refuse: string };

/** Download settings the agent passes through. */
export type JobDownloadSettings = Pick<DownloadOptions, 'retryForMs' | 'maxAttempts' | 'retryDelayMs' | 'maxRetryDelayMs' | 'maxBytesPerSecond'>;

/** What a job needs from the agent. */
export interface UpdateJobDeps {
  installer: Installer;
  download: Downloader;
  /** Where the artifact is downloaded (`<stateDir>/downloads/<jobId>.part`). */
  file: string;
  /** Persists the new phase (before the job acts on it), then reports it. */
  enterPhase: (job: UpdateJob, phase: InFlightPhase) => Promise<void>;
  /** Reports download progress (already throttled). */
  reportProgress: (job: UpdateJob, progress: number) => void;
  /** Asks the server for the current command (`get`); a fresh URL arrives through `job.command`. */
  refreshCommand: (job: UpdateJob) => Promise<void>;
  /** Milliseconds since the epoch. */
  now: () => number;
  /** The server's time (ms), by which a URL's expiry is judged (the server enforces it); default `now`. */
  serverNow?: () => number;
  logger: Logger;
  downloadSettings: JobDownloadSettings;
  /** A URL expiring within this many ms is refreshed before use. */
  urlMarginMs: number;
  /**
   * Fresh URLs (or credentials) asked for after a 403 at most this many times per job, and
   * because one expired at most this many times in a row without a byte downloaded between.
   */
  maxUrlRefreshes: number;
  /**
   * The device's say on when to install a verified build (battery, a vehicle in motion, a
   * machine at work): asked before INSTALLING, again every `retryMs` while it says "later",
   * until it has put the install off for `maxWaitMs` (counted from its first ask, by `now`'s
   * steps forward, plus `waitedMs` from before a restart), when the job fails with the last
   * reason; "refuse" fails it at once.
   */
  installGate?: {
    ask: (command: SoftwareCommand, signal: AbortSignal) => Promise<GateAnswer>;
    retryMs: number;
    maxWaitMs: number;
    /** When the job started on the device (ms): only for a wait saved without `waitedMs` (an older agent's state). */
    startedAt: number;
    /** How long the gate had put this install off before a restart (saved with each wait), ms. */
    waitedMs?: number;
  };
  /**
   * Persists and reports that the install is put off (`reported.software.waiting`), by the
   * install gate or until the command's maintenance window opens here, before the job waits:
   * the server's step timer then waits too. `previousWait` is the wait recorded before (a
   * restart goes on counting from it); `gateWaitedMs`, how long the install gate has put the
   * install off so far (saved: a restart goes on from it).
   */
  putOff?: (job: UpdateJob, wait: InstallWait, gateWaitedMs?: number) => Promise<void>;
  previousWait?: InstallWait;
  /** This device's IANA time zone: the command's `installWindows` are its wall-clock times. */
  timeZone?: string;
  /**
   * Refuses a command that must not be installed (signature, expiry, downgrade): throws INTEGRITY
   * with the reason. `kept`: the command saved with a build already on the device, checked
   * before its download: its expiries are judged as of the job's start, when it was checked first.
   */
  verifyCommand?: (command: SoftwareCommand, running: InstalledSoftware | undefined, kept?: boolean) => void | Promise<void>;
  /**
   * Download with a temporary credential instead of the pre-signed URL: the URL and headers
   * to use, and when the credential expires (seconds, the server's time); `renew` asks for a
   * new credential (the previous one was refused or expired).
   */
  authorizeDownload?: (job: UpdateJob, renew: boolean) => Promise<{ url: string; headers: Record<string, string>; expiresAt: number }>;
  /**
   * The one fetch from the start (after a resumed file failed verification) was made for this
   * job before a restart: saved with the job, so a restart does not allow another.
   */
  fetchedFromStart?: boolean;
  /** Persists that the fetch from the start is made, before it is (a restart keeps the limit). */
  savedFetchFromStart?: (job: UpdateJob) => Promise<void>;
  /**
   * A job resumed from the saved state before it installed: the server may have taken it back
   * while the agent was stopped. It does not install until `confirm()` (the agent acted on
   * the server's current document, which did not call the job off); it may download meanwhile.
   */
  unconfirmed?: boolean;
  /** Progress is reported when it advanced by this much (0..1)... */
  progressStep: number;
  /** ...and at least this many ms passed since the last report (measured on `clock`). */
  progressIntervalMs: number;
  /** The clock progress pacing is measured on (tests); default MONOTONIC_CLOCK, which wall-clock steps leave alone. */
  clock?: MonotonicClock;
}

/** A running update job. */
export class UpdateJob {
  readonly jobId: string;
  /**
   * The latest command of this job (a duplicate delta or a `get` brings a fresher URL, taken
   * through `takeResent`); once downloaded, the one that was verified before the download.
   */
  command: SoftwareCommand;
  /** Shadow version of the message that delivered `command`, when known. */
  commandVersion: number | undefined;
  phase: InFlightPhase;
  /**
   * Last reported progress (0..1): the base of the step that throttles progress reports. The
   * agent sets it to what a DOWNLOADING report carried when it was sent (`heldProgress`).
   */
  progress = 0;
  /** The job whose command called this one off (`cancel` with `calledOff.supersededBy`, set by the agent): its FAILURE is no outcome of the update. */
  supersededBy?: string;
  /** When progress (or the phase) was last reported, on `clock`. */
  private lastProgressAt = -Infinity;
  /** The bytes held as the downloader last said (`onProgress`): what an in-memory downloader holds. */
  private heldBytes = 0;
  private readonly deps: UpdateJobDeps;
  private readonly clock: MonotonicClock;
  private readonly ctrl = new AbortController();
  private cancelReason: string | undefined;
  /** Set once the install was put off (gate, maintenance window): the file is hashed again before it is installed. */
  private waited = false;
  /** Set once the build is downloaded and verified: `command` is then the verified one, and stays. */
  private fetched = false;
  /** The one fetch from the start of this job's download is made (in this run or before a restart). */
  private fetchedFromStart: boolean;
  /** While the job waits to be confirmed still wanted (`unconfirmed`): ends that wait. */
  private confirmation: { done: Promise<void>; resolve: () => void } | undefined;

  constructor(command: SoftwareCommand, phase: InFlightPhase, deps: UpdateJobDeps) {
    this.jobId = command.jobId;
    this.command = command;
    this.commandVersion = undefined;
    this.phase = phase;
    this.deps = deps;
    this.clock = deps.clock ?? MONOTONIC_CLOCK;
    this.fetchedFromStart = deps.fetchedFromStart === true;
    if (deps.unconfirmed) {
      let resolve!: () => void;
      const done = new Promise<void>((r) => (resolve = r));
      this.confirmation = { done, resolve };
    }
  }

  /** True while the job, resumed, waits to be confirmed still wanted before it installs. */
  get unconfirmed(): boolean {
    return this.confirmation !== undefined;
  }

  /** The server's current document did not call the job off: it may install. */
  confirm(): void {
    const c = this.confirmation;
    this.confirmation = undefined;
    c?.resolve();
  }

  /** True while the job may still be called off (nothing installed yet). */
  get cancellable(): boolean {
    return this.phase === 'DOWNLOADING' || this.phase === 'VERIFYING';
  }

  /** Calls the job off before it installs (superseded or canceled); it then ends in FAILURE with `reason`. */
  cancel(reason: string): boolean {
    if (!this.cancellable || this.cancelReason !== undefined) return false;
    this.cancelReason = reason;
    this.ctrl.abort(new UpdraftError('DOWNLOAD', reason));
    return true;
  }

  /** The agent stops: abort whatever runs; `execute` rejects with AgentStoppedError and nothing is reported. */
  stop(): void {
    this.ctrl.abort(new AgentStoppedError());
  }

  /**
   * A command re-sent for this job (every delta repeats it; a `get` brings it with a fresh URL
   * and a manifest signed with it). Taken while the download may still need its URL, and only
   * when it names the same build: it is verified, like every command, before its URL is used.
   * 'differs' when it names another build under this job id (a job's build never changes, a
   * new build is a new job): ignored, never installed. 'done' once the build is downloaded.
   */
  takeResent(command: SoftwareCommand): 'taken' | 'differs' | 'done' {
    if (this.fetched) return 'done';
    const c = this.command;
    const same = command.jobId === c.jobId && command.name === c.name && command.version === c.version && command.sha256 === c.sha256 && command.size === c.size && JSON.stringify(command.installWindows) === JSON.stringify(c.installWindows);
    if (!same) return 'differs';
    this.command = command;
    return 'taken';
  }

  /**
   * The share of the build held now (bytes on disk / size, floored to 0.001 as progress
   * reports are): what a DOWNLOADING report carries when it is sent. The last reported
   * `progress` is not it: progress reports are throttled, and bytes that came after the last
   * one (before the link dropped, or before a restart) were never reported (QA: a catch-up
   * after a reconnect said 0.419 with 63% on disk, a resumed download's first report 0).
   * Read from the file, which a restart keeps; an in-memory downloader's from its last
   * `onProgress`.
   */
  async heldProgress(): Promise<number> {
    if (this.deps.download.inMemory) return heldShare(this.heldBytes, this.command.size);
    const bytes = await sizeOnDisk(this.deps.file);
    // what a report says is held is the base bytes going back are measured from (onProgress)
    this.heldBytes = bytes;
    return heldShare(bytes, this.command.size);
  }

  /** Marks the (already persisted) phase as started now, for progress throttling. */
  markReported(): void {
    this.lastProgressAt = this.clock.now();
  }

  /**
   * Runs the job to its outcome; rejects only with AgentStoppedError (or an unexpected internal
   * error). A FAILURE's reason goes to the shadow and the job's record: any URL it quotes is
   * redacted (an installer's or a custom downloader's error may quote the signed URL), and it
   * is cut to MAX_SAVED_ERROR_CHARS (`failureReason`).
   */
  async execute(): Promise<JobOutcome> {
    const outcome = await this.run();
    return outcome.status === 'FAILURE' && outcome.error !== undefined ? { ...outcome, error: failureReason(outcome.error) } : outcome;
  }

  private async run(): Promise<JobOutcome> {
    const { installer, logger } = this.deps;
    const signal = this.ctrl.signal;
    try {
      let recovering = this.phase === 'INSTALLING';
      if (!recovering) {
        const running = await installer.current();
        if (isInstalled(running, this.command)) {
          // checked as any command is before its download: an unsigned command naming the build
          // that runs would otherwise have its job reported SUCCESS (with a signing key set)
          await this.deps.verifyCommand?.(this.command, running);
          if (!running?.unchecked || !installer.recover) {
            logger.info('already running the desired software', { jobId: this.jobId, version: this.command.version });
            return { status: 'SUCCESS' };
          }
          // switched to, but its health check never passed: a crash came during it, and the
          // state that said INSTALLING was lost with it (QA). Checked again, kept or rolled back
          logger.info('running the desired software, but its health check has not passed (interrupted, and the install\'s state lost): checking it again', { jobId: this.jobId, version: this.command.version });
          if (this.phase === 'DOWNLOADING') await this.enter('VERIFYING');
          await this.enter('INSTALLING');
          recovering = true;
        }
      }
      if (recovering) {
        // the agent died while installing: the installer finishes or undoes it
        const result = installer.recover ? await installer.recover(this.command, { signal, logger }) : { outcome: 'not-started' as const };
        logger.info('install interrupted by a restart: recovered', { jobId: this.jobId, outcome: result.outcome });
        if (result.outcome === 'installed') return await this.installedOutcome();
        if (result.outcome === 'rolled-back') return { status: 'FAILURE', error: result.reason ?? 'install interrupted by a restart; rolled back' };
        await this.enter('VERIFYING');
      }
      const file = await this.fetch();
      if (this.cancelReason !== undefined) return { status: 'FAILURE', error: this.cancelReason };
      // a custom downloader may not call beforeVerify: the phases still go in order
      if (this.phase === 'DOWNLOADING') await this.enter('VERIFYING');
      await this.awaitConfirmation(signal);
      if (this.cancelReason !== undefined) return { status: 'FAILURE', error: this.cancelReason };
      const refused = await this.awaitInstallTime(signal);
      if (refused !== undefined) return { status: 'FAILURE', error: refused };
      if (this.cancelReason !== undefined) return { status: 'FAILURE', error: this.cancelReason };
      const changed = this.waited ? await this.changedSinceVerified(file, signal) : undefined;
      if (changed !== undefined) return { status: 'FAILURE', error: changed };
      await this.enter('INSTALLING');
      await installer.install(file, this.command, { signal, logger });
      return await this.installedOutcome();
    } catch (err) {
      if (signal.reason instanceof AgentStoppedError) throw signal.reason;
      if (err instanceof AgentStoppedError) throw err;
      if (this.cancelReason !== undefined) return { status: 'FAILURE', error: this.cancelReason };
      return { status: 'FAILURE', error: asUpdraftError(err).message };
    }
  }

  /**
   * A resumed job waits here, before the install gate and the maintenance windows are asked,
   * until the agent has acted on the server's current document (`confirm`): a job canceled
   * while the agent was stopped is called off by it (`cancel`, which ends this wait), instead
   * of being installed because the gate said go before the answer came.
   */
  private async awaitConfirmation(signal: AbortSignal): Promise<void> {
    const c = this.confirmation;
    if (!c) return;
    this.deps.logger.info('resumed job: waiting for the server to confirm it is still wanted before installing', { jobId: this.jobId });
    signal.throwIfAborted();
    await new Promise<void>((resolve, reject) => {
      const onAbort = () => reject(signal.reason);
      signal.addEventListener('abort', onAbort, { once: true });
      void c.done.then(() => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      });
    });
  }

  /**
   * SUCCESS once the installer says it installed (or recovered) the build and `current()`
   * agrees: the SUCCESS report names the target version, so a custom installer that ends
   * without error while the old version still runs (it installed nothing, or rolled back
   * without throwing) must not have the device claim a version it does not run. A FAILURE
   * then, as if the install had thrown: reported with what runs, its log sent.
   */
  private async installedOutcome(): Promise<JobOutcome> {
    const running = await this.deps.installer.current();
    const target = this.command.version;
    if (running?.version === target) return { status: 'SUCCESS' };
    const runs = running?.version ?? 'no software the installer knows of';
    throw new UpdraftError('INSTALL', `the installer finished but the device runs ${runs}, not ${target}: it installed nothing, or rolled back without saying so`);
  }

  /**
   * Waits until a window of the command's `installWindows` is open in this device's time
   * zone, then for the install gate's "go" (the window is looked at again after each "later":
   * it may have closed meanwhile). The FAILURE reason when the windows are malformed, or the
   * gate refuses or keeps putting the install off.
   */
  private async awaitInstallTime(signal: AbortSignal): Promise<string | undefined> {
    const gate = this.deps.installGate;
    const windows = this.command.installWindows;
    if (windows !== undefined) {
      const problems = windowProblems(windows, 'installWindows');
      if (problems.length > 0) return `the command's maintenance windows are malformed (${problems[0]}); nothing installed`;
    }
    if (!gate && windows === undefined) return undefined;
    const zone = this.deps.timeZone ?? 'UTC';
    let count = this.deps.previousWait?.count ?? 0;
    // The gate's own wait, from its first ask in this run (the wall clock's steps between asks,
    // a step back counted as none), plus what it waited before a restart (saved with each
    // wait). It was the wall clock since the job's
    // start: a start in the future (a clock wrong when the command came, then set right) never
    // reached the limit, one far in the past failed the job at the first "later" (QA), and a
    // NaN one asked the gate every few ms for ever. A wait saved without it (an older agent)
    // goes on from the wall clock since the start, as it counted then, a start that is no
    // time or later than now read as now.
    const now0 = this.deps.now();
    const gateStartedAt = gate && Number.isFinite(gate.startedAt) && gate.startedAt <= now0 ? gate.startedAt : now0;
    const before = gate?.waitedMs ?? (this.deps.previousWait ? now0 - gateStartedAt : 0);
    let gateWaitedMs = before;
    let lastAskAt: number | undefined;
    const gateWaited = () => gateWaitedMs;
    const putOff = async (reason: string, nextCheckInSeconds: number) => {
      this.waited = true;
      count += 1;
      const text = reason.length > MAX_WAIT_REASON ? `${reason.slice(0, MAX_WAIT_REASON - 1)}…` : reason;
      await this.deps.putOff?.(this, { reason: text, count, nextCheckInSeconds }, gate ? Math.round(gateWaited()) : undefined);
    };
    for (;;) {
      if (windows !== undefined) {
        const now = this.deps.now();
        const list = windows as unknown as MaintenanceWindow[];
        if (!inWindow(list, now, zone)) {
          const opensAt = nextOpening(list, now, zone);
          // windows open weekly at the least; checked again within a day however far the next one is
          const waitMs = Math.min(Math.max(1000, (opensAt ?? now + 86_400_000) - now), MAX_WAIT_CHECK_SECONDS * 1000);
          const opens = opensAt === undefined ? 'none opens within 8 days' : `the next opens at ${wallTime(opensAt, zone)} (${zone})`;
          this.deps.logger.info('install held until a maintenance window opens here', { jobId: this.jobId, timeZone: zone, opensAt: opensAt === undefined ? null : new Date(opensAt).toISOString() });
          await putOff(`outside the job's maintenance windows here: ${opens}`, Math.ceil(waitMs / 1000));
          await sleep(waitMs, undefined, { signal });
          continue;
        }
      }
      if (!gate) return undefined;
      lastAskAt ??= this.deps.now();
      const answer = await gate.ask(this.command, signal);
      signal.throwIfAborted();
      if ('go' in answer) return undefined;
      if ('refuse' in answer) return `refused by the device's install gate: ${answer.refuse}; nothing installed`;
      const askedAt = this.deps.now();
      gateWaitedMs += Math.max(0, askedAt - lastAskAt);
      lastAskAt = askedAt;
      const waited = gateWaitedMs;
      // asked a last time at the limit, not given up one interval before it (which failed the
      // job early, saying it had waited less than allowed)
      if (waited >= gate.maxWaitMs) {
        return `the device's install gate put the install off for ${Math.round(waited / 1000)} s, the ${Math.round(gate.maxWaitMs / 1000)} s allowed: ${answer.later}; nothing installed`;
      }
      const askAgainInMs = Math.min(gate.retryMs, gate.maxWaitMs - waited);
      this.deps.logger.info('install put off by the device\'s gate', { jobId: this.jobId, reason: answer.later, askAgainInMs });
      await putOff(answer.later, Math.min(askAgainInMs / 1000, MAX_WAIT_CHECK_SECONDS));
      await sleep(askAgainInMs, undefined, { signal });
    }
  }

  /**
   * After the install waited (minutes, hours: the gate, a maintenance window), the downloaded
   * file is hashed again: it sat on the device's disk all that time, and an installer of the
   * device's own is promised a verified file. The FAILURE reason when it is no longer the
   * build the command names. Not when the install went ahead at once: the slot installer
   * hashes what it copies anyway, and a second full read of every build is not free (a
   * downloader that keeps the build in memory left no file to change).
   */
  private async changedSinceVerified(file: string, signal: AbortSignal): Promise<string | undefined> {
    if (this.deps.download.inMemory) return undefined;
    const { sha256, size } = this.command;
    let actual: { size: number; sha256: string };
    try {
      actual = await hashFile(file, signal);
    } catch (err) {
      signal.throwIfAborted();
      return `the downloaded build cannot be read again after the install waited: ${asUpdraftError(err).message}; nothing installed`;
    }
    if (actual.size === size && actual.sha256 === sha256) return undefined;
    const what = actual.size !== size ? `${actual.size} bytes, expected ${size}` : `sha256 ${actual.sha256}, expected ${sha256}`;
    this.deps.logger.warn('the downloaded build changed after it was verified: not installed', { jobId: this.jobId, file, actualSha256: actual.sha256, size: actual.size });
    return `the downloaded build changed on the device after it was verified, while the install waited: ${what}; nothing installed`;
  }

  private async enter(phase: InFlightPhase): Promise<void> {
    this.phase = phase;
    await this.deps.enterPhase(this, phase);
    this.markReported();
  }

  /**
   * Downloads and verifies, asking for a fresh URL (or credential) when the one in hand has
   * expired or is refused with 403, with two budgets of `maxUrlRefreshes` each:
   * - Expiry, judged by the server's time before use, or a 403 on a URL that has expired by
   *   then (a download on a slow or flaky link outlives its URL, and the attempt after an
   *   interruption is refused): a fresh one at once, counted in a row and renewed by every
   *   byte downloaded, so a long download gets as many as it needs, while a server that
   *   hands out URLs no better than the last fails the job after `maxUrlRefreshes`.
   * - A 403 on a URL not yet expired: a pause (the download's retry backoff), a fresh URL or
   *   credential, and another attempt, whether or not the fresh URL differs: the server hands
   *   out the same URL for a refresh within the second it signed it (`artifacts/url-signer.ts`
   *   caches them), and a refusal may pass (a key staged on one instance but not yet another,
   *   a proxy) while the URL stays good. At most 1 + maxUrlRefreshes such attempts per job,
   *   then FAILURE naming the 403 and the count.
   * Any other refusal (404, INTEGRITY, a bad manifest) fails at once.
   */
  private async fetch(): Promise<string> {
    const { deps } = this;
    const signal = this.ctrl.signal;
    const serverNow = deps.serverNow ?? deps.now;
    // expiring within the margin counts as expired: it would not last the request
    const expired = (expiresAt: number) => expiresAt * 1000 - deps.urlMarginMs <= serverNow();
    const fresh = deps.authorizeDownload ? 'credential' : 'URL';
    let expiredInRow = 0;
    // the most bytes the device has held of this build (a file a restart left counts): only
    // bytes beyond it end a row of expiries. Any byte did, bytes fetched again included, so a
    // server serving the same first bytes again under each fresh URL, until it expired (a
    // server ignoring Range on a slow link), was asked for fresh URLs for ever. An
    // in-memory downloader keeps no file: not looked for (a failing stat per job, as the
    // unlink the agent skips for it, costs a simulated fleet several % of its CPU)
    // the build already on the device, whole (a restart in the install's wait): no URL needed
    const kept = await this.keptFile();
    if (kept !== undefined) return kept;
    let mostHeld = deps.download.inMemory ? 0 : await sizeOnDisk(deps.file);
    // what is held as the download begins: a download starting again from byte 0 (a server
    // ignoring the Range) is then seen going back, and the progress step counts from 0
    // (review: after a restart the step stayed at the kept share, and nothing was reported
    // until the new download passed it)
    this.heldBytes = Math.max(this.heldBytes, mostHeld);
    let refused = 0;
    let refusedRefreshes = 0;
    let renewCredential = false;
    const expiryRefresh = (what: string) => {
      if (expiredInRow >= deps.maxUrlRefreshes) {
        throw new UpdraftError('DOWNLOAD', `download ${what} expired and no fresh one arrived after ${expiredInRow} requests (maxUrlRefreshes ${deps.maxUrlRefreshes})`);
      }
      expiredInRow++;
    };
    for (;;) {
      signal.throwIfAborted();
      const cmd = this.command;
      if (expired(cmd.urlExpiresAt)) {
        expiryRefresh('URL');
        deps.logger.info('download URL expired, asking for a fresh one', { jobId: this.jobId, url: clipped(redactUrl(cmd.url)) });
        await deps.refreshCommand(this);
        continue;
      }
      // before a byte is fetched: a command that must not be installed fails here, with the reason
      await deps.verifyCommand?.(cmd, await deps.installer.current());
      const target = deps.authorizeDownload ? await deps.authorizeDownload(this, renewCredential) : { url: cmd.url, headers: {}, expiresAt: cmd.urlExpiresAt };
      renewCredential = false;
      try {
        await deps.download({
          ...deps.downloadSettings,
          url: target.url,
          headers: target.headers,
          file: deps.file,
          size: cmd.size,
          sha256: cmd.sha256,
          signal,
          logger: deps.logger,
          onProgress: (received, size) => {
            if (received > mostHeld) {
              mostHeld = received;
              expiredInRow = 0;
            }
            this.onProgress(received, size);
          },
          // once per job, not per call: a fresh URL or a restart does not allow another (saved first)
          fetchedFromStart: this.fetchedFromStart,
          // the one fetch from the start after a failed verification: its bytes are progress again
          onRestart: async () => {
            mostHeld = 0;
            this.fetchedFromStart = true;
            await deps.savedFetchFromStart?.(this);
          },
          // the job's command is the one this download was checked for before VERIFYING is saved
          // with it: a re-send taken meanwhile (takeResent) stayed in the state file through
          // the install's wait, and a restart resumed from it (QA). Not yet `fetched`: a failed
          // verification fetches again from the start, which may need a fresh URL after a 403
          beforeVerify: async () => {
            this.command = cmd;
            if (this.phase === 'DOWNLOADING') await this.enter('VERIFYING');
          },
        });
        deps.logger.info('downloaded and verified', { jobId: this.jobId, size: cmd.size });
        // what is installed, waited for and reported is the command checked before the download
        // (QA: one re-sent under this job id meanwhile went to the installer unchecked)
        this.command = cmd;
        this.fetched = true;
        return deps.file;
      } catch (err) {
        const forbidden = err instanceof UpdraftError && err.code === 'DOWNLOAD' && err.status === 403;
        if (!forbidden || signal.aborted) throw err;
        if (expired(target.expiresAt)) {
          // refused for its age, not a refusal to pause on: a fresh one is the answer. A URL is
          // asked for at the top of the loop (unless a delta brought one meanwhile)
          deps.logger.info(`download ${fresh} expired while downloading`, { jobId: this.jobId, error: err.message });
          if (deps.authorizeDownload) {
            expiryRefresh('credential');
            renewCredential = true;
          }
          continue;
        }
        refused++;
        if (refusedRefreshes >= deps.maxUrlRefreshes) {
          const plural = (n: number, what: string) => `${n} ${what}${n === 1 ? '' : 's'}`;
          const asked = plural(refusedRefreshes, deps.authorizeDownload ? 'new credential' : 'fresh URL');
          throw new UpdraftError('DOWNLOAD', `download refused with HTTP 403 on ${plural(refused, 'attempt')}, ${asked} asked for (maxUrlRefreshes ${deps.maxUrlRefreshes}): ${err.message}`, { status: 403, cause: err });
        }
        refusedRefreshes++;
        // a pause first, as for an interrupted download: a refusal that passes (a key not yet on
        // every instance) gets time to, and the server is not asked again at once
        const delayMs = downloadRetryDelay(refused, deps.downloadSettings);
        if (deps.authorizeDownload) {
          // a refused temporary credential: ask for a new one (the server re-checks the device's current job)
          renewCredential = true;
          deps.logger.info('download refused, asking for a new credential', { jobId: this.jobId, error: err.message, attempt: refused, delayMs });
          await sleep(delayMs, undefined, { signal });
          continue;
        }
        // a URL may be refused before its announced expiry (clock skew, key rotation): ask for a
        // new one and try again, even when it is the same URL (signed within the same second)
        deps.logger.info('download refused, asking for a fresh URL', { jobId: this.jobId, error: err.message, attempt: refused, delayMs });
        await sleep(delayMs, undefined, { signal });
        await deps.refreshCommand(this);
      }
    }
  }

  /**
   * The build on the device already, whole (the agent restarted while the install waited, or
   * after the last byte came): its command checked again (signature, the keys trusted now, its
   * fields; expiries as of the job's start) and the file hashed, then kept without a URL or a
   * credential: a fresh one is asked for only to download. An expired URL was refreshed first,
   * so the install waited for the server (and failed when it could not be reached). Undefined
   * when there is no whole file, or it is not the build: the download deals with it (a file
   * from before, fetched again from the start once).
   */
  private async keptFile(): Promise<string | undefined> {
    const { deps } = this;
    if (deps.download.inMemory) return undefined;
    const cmd = this.command;
    const size = await stat(deps.file).then((st) => st.size, () => undefined);
    if (size !== cmd.size) return undefined;
    await deps.verifyCommand?.(cmd, await deps.installer.current(), true);
    const actual = await hashFile(deps.file, this.ctrl.signal).catch(() => undefined);
    this.ctrl.signal.throwIfAborted();
    if (actual?.size !== cmd.size || actual.sha256 !== cmd.sha256) {
      deps.logger.warn('the build on the device is not the one verified before: downloading it again', { jobId: this.jobId, file: deps.file });
      return undefined;
    }
    deps.logger.info('the downloaded build is on the device, whole: checked again, kept', { jobId: this.jobId, size: cmd.size });
    this.fetched = true;
    return deps.file;
  }

  private onProgress(received: number, size: number): void {
    // fewer bytes than before: the download started again from byte 0 (a failed verification,
    // a server that ignored the range); the step counts from there, not from what was held
    if (received < this.heldBytes) this.progress = 0;
    this.heldBytes = received;
    if (this.phase !== 'DOWNLOADING' || size === 0) return;
    const p = heldShare(received, size);
    // the VERIFYING report follows at 100%; in between at most one report per step and per interval
    if (p >= 1 || p - this.progress < this.deps.progressStep) return;
    // a monotonic clock: on the wall clock, a step back held every progress report for its length
    const now = this.clock.now();
    if (now - this.lastProgressAt < this.deps.progressIntervalMs) return;
    this.progress = p;
    this.lastProgressAt = now;
    this.deps.reportProgress(this, p);
  }
}

/**
 * A FAILURE's reason as it is reported: its URLs redacted (a URL's query is its signature),
 * and no longer than MAX_SAVED_ERROR_CHARS, saying how long it was. An installer's error
 * quoting a URL of 70,000 characters was reported whole: larger than the broker takes (and
 * than a shadow document), the report was refused, the device reconnected and sent it again
 * for ever, and the job waited for its timeout. The bound (characters and bytes of JSON,
 * `cutReason`) is the one a saved reason is read with (agent-state.ts), so the reason is the
 * same after a restart.
 */
export function failureReason(text: string): string {
  const redacted = redactUrlsIn(text);
  return cutReason(redacted, `... (${redacted.length} characters)`);
}

/** The share of a build of `size` bytes that `bytes` are, floored to 0.001 (0..1). */
export function heldShare(bytes: number, size: number): number {
  if (!(size > 0) || !(bytes > 0)) return 0;
  return Math.min(1, Math.floor((bytes / size) * 1000) / 1000);
}

/** The size of `file`, 0 when there is none (an in-memory downloader writes none). */
export async function sizeOnDisk(file: string): Promise<number> {
  return stat(file).then(
    (st) => st.size,
    () => 0,
  );
}
