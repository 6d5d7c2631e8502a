/**
 * The fleet simulator: N devices over real MQTT connections with real downloads, using the
 * agent library with a simulated installer. Two modes:
 * - `connected`: every device stays connected (throughput and memory per connection);
 * - `cycling`: at most `concurrency` devices online at once; each connects, takes its
 *   update, disconnects, and the next one comes in (fleets larger than one machine's
 *   file-descriptor limit, and devices that are mostly offline, as real ones are). A bench
 *   scenario: a device visits until its update succeeded (or it was given up), then no more.
 * Failure, crash-during-install and offline periods are configurable and seeded.
 */
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { MemoryAgentStateStore, type AgentStateData } from '../agent/agent-state.ts';
import { UpdateAgent } from '../agent/agent.ts';
import type { JobFinishedEvent } from '../agent/agent-events.ts';
import { SimulatedInstaller, seededRandom } from '../agent/simulated-installer.ts';
import { memoryDownloader } from './memory-downloader.ts';
import { ConnectPacer } from './connect-pacer.ts';
import { parseAgentJobId } from '../jobs/agent-job-id.ts';
import { silentLogger } from '../util/logger.ts';
import { SIM_DEFAULTS, type SimDevice, type SimDeviceState, type SimOptions } from './sim-options.ts';

const MQTT_DEBUG = /mqttjs/.test(process.env.DEBUG ?? '');
const noLog = (): void => {};

export { SIM_DEFAULTS, type SimDevice, type SimDeviceState, type SimOptions } from './sim-options.ts';
export type { SimTrust } from './sim-trust.ts';

/** Counters, readable while the simulation runs. */
export interface SimStats {
  /** Devices whose connection is up now (it follows each connection's ups and downs: a broker gone takes it to 0). */
  connected: number;
  /**
   * Devices whose latest connection attempt failed, not connected since: the broker refused
   * them (a wrong secret, a revoked or deleted device) or could not be reached.
   */
  refused: number;
  /**
   * Devices given up in this run: refused `refusalsToGiveUp` times in a row for a reason
   * retrying cannot fix (bad user name or password, not authorized, client id rejected,
   * banned, protocol version not supported: `REFUSED_FOR_GOOD`). Counted in `refused` too
   * while that is their latest attempt.
   */
  gaveUp: number;
  /** Devices whose update came to an outcome (their first: a stay's take-back is one, a job superseded on the device is none). */
  finished: number;
  /**
   * Devices by their latest outcome: a device that failed and then succeeded a retry counts as
   * succeeded (as the server's execution does), so `succeeded + failed = finished`.
   */
  succeeded: number;
  failed: number;
  /** Outcomes the devices reported, retries' included (one per device-side job id). */
  outcomes: number;
  crashes: number;
  offlinePeriods: number;
  /** MQTT connections opened, and cycling visits that ended idle (no command in `idleTimeoutMs`). */
  connects: number;
  idleVisits: number;
}

interface DeviceSlot {
  device: SimDevice;
  installer: SimulatedInstaller;
  /** This device's own random sequence (failures, crashes, offline periods). */
  random: () => number;
  state: MemoryAgentStateStore;
  agent?: UpdateAgent;
  /** The agent's connection is up, and counted in `stats.connected`; its close or retire() uncounts it. */
  online: boolean;
  /** Wakes what waits on the device's connection (connect()): it came up, went down, failed, or the agent was retired. */
  onChange?: () => void;
  /** The agent whose connection attempt failed (its place among those connecting is free again). */
  failed?: UpdateAgent;
  /** Why the device's latest connection attempt failed, until it connects (counted in `stats.refused`). */
  refused?: string;
  /** The agent the broker refused for a reason retrying cannot fix (`REFUSED_FOR_GOOD`). */
  refusedBy?: UpdateAgent;
  /**
   * The slot's agent has been connected: its connection attempts since are its own reconnects
   * (mqtt.js's backoff), which no connect() waits on, and a refusal of one for good is counted
   * by `refusedOnReconnect`.
   */
  connectedBefore: boolean;
  /** Cycling: ends the visit of an agent refused for good on a reconnect (`refusedOnReconnect`). */
  onRefused?: () => void;
  /** Such refusals in a row, with no connection between; at `refusalsToGiveUp` the device is given up (`gaveUp`). */
  refusals: number;
  gaveUp: boolean;
  /** The device is done in this run (its update ended, or it was given up: `whenFinished`): counted once in `settled`. */
  settled: boolean;
  /**
   * The device's outcome for the update: its latest attempt's, and that attempt's device-side
   * job id (a retry has its own); none until an attempt ended (`updateOutcome`). A stay's
   * SUCCESS is its attempt taken back (a FAILURE here), a job superseded by a newer command is none.
   */
  outcome?: { jobId: string; status: 'SUCCESS' | 'FAILURE' };
  /** The device-side job id of the latest `job-finished` (an event repeated for it counts once in `outcomes`). */
  lastFinished?: string;
  /** Cycling: wakes the worker holding this device (its update's attempt ended: `updateOutcome`). */
  onFinished?: () => void;
  /** Cycling: a job ended that is no outcome of the update (superseded, or the stay of a take-back): the visit waits for the next command. */
  onCalledOff?: () => void;
  /** Cycling: the device took a command (it stays online until the job ends). */
  onCommand?: () => void;
  /** Statuses the device reported for commands it took: a question about a retry owed holds only if none came since it was asked. */
  statuses: number;
  /** A question whether the server owes the device a command is in flight (one at a time). */
  asking: boolean;
  /**
   * The device-side job ids (a retry has its own) for which this device drew its crash and its
   * offline period: one draw each per job attempt, not one per status. The status a restarted
   * agent resumes with would otherwise draw again, and a rate of 1 would crash it forever.
   */
  crashDrawn?: string;
  offlineDrawn?: string;
}

/** What `updraft sim` drives: one simulator, or several in their own processes (sim-processes.ts). */
export interface SimulatedFleet {
  readonly stats: SimStats;
  /** Total installs performed (a job applied twice on a device would show here). */
  readonly installs: number;
  /** Devices done in this run: their update ended (`whenFinished`), or they were given up (`stats.gaveUp`). */
  readonly settled: number;
  /** Requests of the devices' agents so far: reports (what runs, phases, outcomes) and catch-up `get`s. */
  requestsSent(): { reports: number; gets: number };
  /** Connected mode: resolves once every device is connected or given up. Cycling: once the devices start visiting. */
  start(): Promise<void>;
  /**
   * Resolves when `n` devices are done in this run (`settled`): their update succeeded, or
   * failed (in cycling mode: and a visit after that found no retry for the device: no command
   * within the idle time), or they were given up. A job a device had finished in an earlier run
   * (its `state`) is acknowledged again, not counted.
   */
  whenFinished(n: number): Promise<void>;
  /** Once stopped: the devices with the state each keeps for the next run. */
  devicesState(): Promise<SimDevice[]>;
  stop(): Promise<void>;
}

/**
 * CONNACK codes that retrying cannot fix, in MQTT 3.1.1 (§3.2.2.3: 1 unacceptable protocol
 * version, 2 identifier rejected, 4 bad user name or password, 5 not authorized) and in MQTT 5
 * (§3.2.2.2: 0x84 unsupported protocol version, 0x85 client identifier not valid, 0x86 bad
 * user name or password, 0x87 not authorized, 0x8A banned): the device sends the same
 * protocol version, client id and credentials again. Server unavailable (3; 0x88
 * server unavailable, 0x89 server busy in 5) is the broker's admission control: the device
 * retries on its backoff. (The agents speak 3.1.1, so the MQTT 5 codes reach the simulator
 * only from a broker that sends them regardless.)
 */
const REFUSED_FOR_GOOD = new Set([1, 2, 4, 5, 0x84, 0x85, 0x86, 0x87, 0x8a]);

/** Runs a simulated fleet until stopped (connected) or until every device finished or was given up (cycling). */
export class FleetSimulator implements SimulatedFleet {
  readonly stats: SimStats = { connected: 0, refused: 0, gaveUp: 0, finished: 0, succeeded: 0, failed: 0, outcomes: 0, crashes: 0, offlinePeriods: 0, connects: 0, idleVisits: 0 };
  private readonly opts: SimOptions;
  private readonly slots: DeviceSlot[];
  /** Requests of the agents stopped so far. */
  private readonly retired = { reports: 0, gets: 0 };
  private readonly random: () => number;
  private stopped = false;
  /** Every new connection (a start, a visit, a restart after a crash or an offline period) takes a slot of the connect rate. */
  private readonly pacer: ConnectPacer;
  /** Connections being opened now, and the connects waiting for a place (`connectingPlace`). */
  private connecting = 0;
  private readonly connectWaiters: (() => void)[] = [];
  /** Each returns true once satisfied (and is then dropped). */
  private finishedListeners: (() => boolean)[] = [];
  private settledCount = 0;
  /** Aborted at stop: ends the pauses between a device's attempts and its offline periods (`pause`). */
  private readonly stopping = new AbortController();

  constructor(opts: Partial<SimOptions> & Pick<SimOptions, 'brokerUrl' | 'devices' | 'trust'>) {
    this.opts = { ...SIM_DEFAULTS, ...opts };
    this.random = seededRandom(this.opts.seed + this.opts.firstIndex);
    this.pacer = new ConnectPacer(this.opts.connectRate, this.opts.clock);
    // one random sequence per device: outcomes then depend on the seed alone, not on the
    // order in which devices happen to reach each step
    this.slots = this.opts.devices.map((device, i) => {
      const random = seededRandom(this.opts.seed * 100_003 + this.opts.firstIndex + i);
      return {
        device,
        random,
        installer: new SimulatedInstaller({ initial: device.state?.software ?? { name: 'fw', version: this.opts.initialVersion }, durationMs: this.opts.installMs, failureRate: this.opts.failureRate, random }),
        state: new MemoryAgentStateStore(agentStateOf(device.state)),
        online: false,
        connectedBefore: false,
        refusals: 0,
        gaveUp: false,
        settled: false,
        statuses: 0,
        asking: false,
      };
    });
  }

  /** Total installs performed (a job applied twice on a device would show here). */
  get installs(): number {
    return this.slots.reduce((n, s) => n + s.installer.installs, 0);
  }

  /** Devices done in this run: their update ended (`whenFinished`), or they were given up. */
  get settled(): number {
    return this.settledCount;
  }

  /**
   * Connected mode: resolves once every device is connected, or given up (refused for good:
   * a device the broker always refuses held it back for ever, and with it `sim: ready`). Cycling:
   * starts the workers.
   */
  async start(): Promise<void> {
    if (this.opts.mode === 'connected') {
      await Promise.all(this.slots.map((slot) => this.connectOrGiveUp(slot)));
      return;
    }
    const queue = [...this.slots];
    // devices refused for good, pausing before their next visit (refusalPauseMs) away from the
    // queue and holding no worker; a worker with nothing to take waits for one to come back
    let away = 0;
    const idleWorkers: (() => void)[] = [];
    const workers = Array.from({ length: Math.min(this.opts.concurrency, queue.length) }, async () => {
      while (!this.stopped) {
        const slot = queue.shift();
        if (!slot) {
          if (away === 0) break;
          await new Promise<void>((resolve) => idleWorkers.push(resolve));
          continue;
        }
        const visit = await this.cycle(slot);
        if (visit === 'done' || this.stopped) continue;
        if (visit === 'again') {
          queue.push(slot); // not targeted yet: come back later
          continue;
        }
        // refused for good, not given up yet: back after the connected mode's pause, not at once.
        // In a fleet not much larger than --concurrency "after the others" was at once: 25
        // devices registered a second before an external broker's password file listed them
        // were refused 3 times each within that second, and given up (QA)
        away++;
        void this.pause(this.refusalPauseMs(slot)).then(() => {
          away--;
          queue.push(slot);
          idleWorkers.shift()?.();
        });
      }
      // the others waiting for a device to come back: there is none (or the simulator stopped)
      for (const wake of idleWorkers.splice(0)) wake();
    });
    void Promise.all(workers);
  }

  /** Resolves when `n` devices are done in this run (`SimulatedFleet.whenFinished`). */
  whenFinished(n: number): Promise<void> {
    if (this.settledCount >= n) return Promise.resolve();
    return new Promise((resolve) => {
      const check = () => {
        if (this.settledCount < n) return false;
        resolve();
        return true;
      };
      this.finishedListeners.push(check);
    });
  }

  /** The devices with what each keeps for the next run (the software it runs, the jobs it finished, its trust: `SimDeviceState`). */
  async devicesState(): Promise<SimDevice[]> {
    return Promise.all(
      this.slots.map(async (s) => {
        const { deviceId, secret } = s.device;
        const software = (await s.installer.current()) ?? { version: this.opts.initialVersion };
        const { finished, keySerial, keySerialKeyId, rotatedRoot } = s.state.current;
        const state: SimDeviceState = { software, finished };
        if (keySerial !== undefined) state.keySerial = keySerial;
        if (keySerialKeyId !== undefined) state.keySerialKeyId = keySerialKeyId;
        if (rotatedRoot) state.rotatedRoot = rotatedRoot;
        return { deviceId, secret, state };
      }),
    );
  }

  /** Stops every agent. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.stopping.abort();
    await Promise.all(this.slots.map((s) => this.retire(s).catch(() => undefined)));
  }

  /** Stops a slot's agent and lets it go, keeping the count of the requests it sent (a visit, a crash, an offline period each end one). */
  private async retire(slot: DeviceSlot): Promise<void> {
    const agent = slot.agent;
    if (!agent) return;
    slot.agent = undefined;
    slot.failed = undefined;
    if (slot.online) {
      slot.online = false;
      this.stats.connected--;
    }
    slot.onChange?.();
    await agent.stop();
    this.retired.reports += agent.requestsSent.update;
    this.retired.gets += agent.requestsSent.get;
  }

  /** Requests the devices' agents sent so far: reports (what runs, phases, outcomes) and catch-up `get`s. */
  requestsSent(): { reports: number; gets: number } {
    const out = { ...this.retired };
    for (const { agent } of this.slots) {
      if (!agent) continue;
      out.reports += agent.requestsSent.update;
      out.gets += agent.requestsSent.get;
    }
    return out;
  }

  /**
   * The agent's connection attempt failed (while it was not connected): its place is free, and
   * the device counts as refused until it connects. A refusal retrying cannot fix ends the
   * wait for its connection (`connect()`: 'refused').
   */
  private attemptFailed(slot: DeviceSlot, agent: UpdateAgent, reason: string, reasonCode: number | undefined): void {
    if (slot.agent !== agent || slot.online) return;
    slot.failed = agent;
    const forGood = reasonCode !== undefined && REFUSED_FOR_GOOD.has(reasonCode);
    if (forGood) slot.refusedBy = agent;
    if (slot.refused === undefined) {
      this.stats.refused++;
      this.opts.onRefused?.(slot.device.deviceId, reason);
    }
    slot.refused = reason;
    slot.onChange?.();
    // connect() counts the refusals of the agent it waits on; one that was connected (a device
    // revoked or deleted since) retries on its own backoff, refused for ever and never given up (QA)
    if (forGood && slot.connectedBefore) void this.refusedOnReconnect(slot);
  }

  /**
   * The slot's agent, connected before, was refused for good on a reconnect: the refusal counts
   * as one at a connect() does. Cycling: the visit ends as a refused one (`cycle`). Connected:
   * the agent is retired, and the device connects again as at start (`connectOrGiveUp`: after
   * `refusalPauseMs`, a new agent), so that 3 refusals in a row give it up.
   */
  private async refusedOnReconnect(slot: DeviceSlot): Promise<void> {
    // cycling: only a visit's agent is online (its visit waits on it)
    if (this.opts.mode === 'cycling') return slot.onRefused?.();
    if (await this.refusedThenPause(slot)) await this.connectOrGiveUp(slot);
  }

  private newAgent(slot: DeviceSlot): UpdateAgent {
    const { deviceId, secret } = slot.device;
    const agent: UpdateAgent = new UpdateAgent({
      deviceId,
      username: deviceId,
      password: secret,
      brokerUrl: this.opts.brokerUrl,
      installer: slot.installer,
      stateStore: slot.state,
      download: memoryDownloader,
      stateDir: path.join(this.opts.workDir, deviceId),
      logger: this.opts.logger ?? silentLogger,
      // the server's public key, as a provisioned device has it: every manifest and artifact is
      // verified, as on a real device (one KeyObject shared by every agent: none parses it)
      ...this.opts.trust,
      // a fleet reconnecting in lockstep is a thundering herd: spread it
      // mqtt.js's `debug` logger, made per client and called per packet even when disabled,
      // took 2% of a cycling simulator; DEBUG=mqttjs* still turns it on
      mqttOptions: { reconnectPeriod: 1000 + Math.floor(this.random() * 4000), keepalive: 300, ...(MQTT_DEBUG ? {} : { log: noLog }) },
    });
    // a refused CONNACK, no broker there, none in time, a socket closed before any: its place is free, and it counts as refused
    agent.on('connection-error', ({ error, reasonCode }) => this.attemptFailed(slot, agent, error, reasonCode));
    // the count follows the connection itself: a broker that went away takes it down at once
    agent.on('connection', ({ online }) => {
      if (slot.agent !== agent || slot.online === online) return;
      slot.online = online;
      this.stats.connected += online ? 1 : -1;
      if (online) {
        slot.refusals = 0;
        slot.connectedBefore = true;
      }
      if (online && slot.refused !== undefined) {
        slot.refused = undefined;
        this.stats.refused--;
      }
      slot.onChange?.();
    });
    agent.on('status', (e) => {
      // a retired agent's last events (while it stops) no longer speak for the device
      if (slot.agent !== agent) return;
      slot.statuses++;
      slot.onCommand?.();
      // at most one crash and one offline period per device and job attempt: the resumed agent
      // then finishes the job, as a device that restarted once does
      if (e.status === 'INSTALLING' && slot.crashDrawn !== e.jobId) {
        slot.crashDrawn = e.jobId;
        if (slot.random() < this.opts.crashRate) void this.crash(slot);
      }
      if (e.status === 'DOWNLOADING' && slot.offlineDrawn !== e.jobId) {
        slot.offlineDrawn = e.jobId;
        if (slot.random() < this.opts.offlineRate) void this.offlinePeriod(slot);
      }
    });
    agent.on('job-finished', (e) => {
      if (slot.lastFinished === e.jobId) return;
      slot.lastFinished = e.jobId;
      this.stats.outcomes++;
      const outcome = updateOutcome(e);
      // a job called off for a newer command (a retry that met the device): the newer one runs
      // next, on this visit. It ended the visit as a failure, and the retry's timer ran out
      // before the device came back (soak QA J4)
      if (!outcome) {
        slot.onCalledOff?.();
        return;
      }
      const was = slot.outcome;
      if (was && (was.jobId === outcome.jobId || !isLaterAttempt(outcome.jobId, was.jobId))) {
        // the attempt has its outcome already (a stay after its late SUCCESS), or an older one's
        // (a rollback, `<job>.rollback`, of a failed update: it changes no outcome): nothing
        // changes, but the command the visit took has ended, and the visit waits for the next as
        // at its start. Only a stay's woke it: a rollback held its visit, and the worker, for good
        slot.onCalledOff?.();
        return;
      }
      slot.outcome = outcome;
      if (was?.status !== outcome.status) {
        if (was) this.stats[was.status === 'SUCCESS' ? 'succeeded' : 'failed']--;
        this.stats[outcome.status === 'SUCCESS' ? 'succeeded' : 'failed']++;
      }
      if (!was) this.stats.finished++;
      // cycling: a device that failed is done once a visit finds no retry for it (cycle())
      if (outcome.status === 'SUCCESS' || this.opts.mode !== 'cycling') this.settle(slot);
      // a take-back's stay: the server may queue the attempt's retry, which the visit waits for
      if (e.takesBack !== undefined) slot.onCalledOff?.();
      else slot.onFinished?.();
    });
    return agent;
  }

  /**
   * Starts a new agent for the device and resolves once it connected (counted in `connects`),
   * or was retired first, or was not connected within `withinMs` (a cycling visit's time;
   * the agent is left to its retries, for the caller to retire). The agent resumes what the
   * device was doing (a download), and may reach a step that draws a crash (the install of a
   * job it went offline during) and retires it before it connects: then it is not counted.
   *
   * It holds a place among the connections opened at once (`connectingPlace`) while its first
   * attempt lasts: until it connects, fails (the broker refused it: a wrong secret, a revoked
   * or deleted device; no broker there; no CONNACK in time; the socket closed before any
   * CONNACK), or `connectAttemptMs` pass (a broker that neither answers nor closes). A socket
   * closed without a CONNACK held it for those 10 s until the agent reported such a close as a
   * failed attempt (2026-12-05). Held until the device connected, a device the broker
   * refuses held it for good: one such device of 10 at --connect-rate 5 kept the 9 others from
   * connecting (QA). Its retries (the agent's backoff) take no place.
   *
   * 'refused': the broker refused it for a reason retrying cannot fix (`REFUSED_FOR_GOOD`); the
   * agent is left for the caller to retire, and to count the refusal (`refusedAgain`).
   */
  private async connect(slot: DeviceSlot, withinMs = Infinity): Promise<'connected' | 'retired' | 'not connected' | 'refused'> {
    await this.pacer.take();
    await this.connectingPlace();
    let agent: UpdateAgent;
    const startedAt = performance.now();
    try {
      if (this.stopped) return 'retired';
      agent = this.newAgent(slot);
      slot.agent = agent;
      slot.connectedBefore = false;
      await agent.start();
      await until(slot, agent, () => slot.online || slot.failed === agent, Math.min(this.opts.connectAttemptMs, withinMs));
    } finally {
      this.connecting--;
      this.connectWaiters.shift()?.();
    }
    const connected = await until(slot, agent, () => slot.online || slot.refusedBy === agent, withinMs - (performance.now() - startedAt));
    if (slot.agent !== agent) return 'retired';
    if (!slot.online && slot.refusedBy === agent) return 'refused';
    if (!connected) return 'not connected';
    this.stats.connects++;
    return 'connected';
  }

  /**
   * Connects the device, and again after each refusal retrying cannot fix (a new agent, after a
   * pause that doubles: 1-2 s, then 2-4 s...), until it connected, was retired, or was given up.
   * The agent alone would retry for ever, and say so only once (its errors are said once per outage).
   */
  private async connectOrGiveUp(slot: DeviceSlot): Promise<void> {
    while ((await this.connect(slot)) === 'refused') {
      if (!(await this.refusedThenPause(slot))) return;
    }
  }

  /**
   * The slot's agent was refused for good: retires it, counts the refusal (`refusedAgain`) and
   * pauses before the next attempt (`refusalPauseMs`). False once the device is given up or the
   * simulator stopped: no attempt follows.
   */
  private async refusedThenPause(slot: DeviceSlot): Promise<boolean> {
    await this.retire(slot);
    if (this.refusedAgain(slot)) return false;
    await this.pause(this.refusalPauseMs(slot));
    return !this.stopped;
  }

  /**
   * How long a device refused for good `slot.refusals` times in a row waits before it tries
   * again, in both modes (a connect, a cycling visit): 1-2 s, then 2-4 s... With the default 3
   * refusals to give up, a device is given up after 3-6 s of refusals: a broker that admits a
   * device a second or two after it was registered (an external one whose password file is
   * rebuilt then) lets it in.
   */
  private refusalPauseMs(slot: DeviceSlot): number {
    return (1 + this.random()) * 1000 * 2 ** (slot.refusals - 1);
  }

  /**
   * The device was refused for a reason retrying cannot fix once more: true once that is
   * `refusalsToGiveUp` times in a row, and the device is given up (it is done, for `whenFinished`).
   */
  private refusedAgain(slot: DeviceSlot): boolean {
    if (slot.gaveUp) return true;
    slot.refusals++;
    if (slot.refusals < this.opts.refusalsToGiveUp) return false;
    slot.gaveUp = true;
    this.stats.gaveUp++;
    this.settle(slot);
    // a cycling visit waiting for its job (a crash's restart was refused): it is over
    slot.onFinished?.();
    return true;
  }

  /** The device is done in this run (its update ended, or it was given up): counted once. */
  private settle(slot: DeviceSlot): void {
    if (slot.settled) return;
    slot.settled = true;
    this.settledCount++;
    this.finishedListeners = this.finishedListeners.filter((l) => !l());
  }

  /** Resolves after `ms`, or at once when the simulator stops. */
  private pause(ms: number): Promise<void> {
    return sleep(ms, undefined, { signal: this.stopping.signal }).catch(() => undefined);
  }

  /**
   * At most a tenth of a second's worth of the connect rate is connecting at once: a broker
   * slower than the rate is not handed thousands of half-open connections (it answers the
   * last ones seconds later, and the server's memory grows with the burst: the bench's memory
   * per connected device went from 37-40 KB to 48-50 KB when the pacer alone let 5,000 in at
   * 4,000/s). The rate stays an upper bound.
   */
  private async connectingPlace(): Promise<void> {
    const max = Math.max(1, Math.round(this.opts.connectRate / 10));
    while (this.connecting >= max) await new Promise<void>((resolve) => this.connectWaiters.push(resolve));
    this.connecting++;
  }

  /**
   * Cycling: online until the device finished a job, or sat idle too long without a command.
   * Once it has its command it stays until the job ends, as a real device does: leaving in
   * the middle of a download would only make it start over on its next visit. True once the
   * device succeeded: a device whose update failed keeps coming back (after the others of the
   * queue), as a device in the field comes online again, so a job's retry can reach it. True
   * too once the device is given up (refused for good `refusalsToGiveUp` visits in a row): it
   * came back for ever, and `--until-finished` never ended (QA).
   *
   * 'done': the device visits no more in this run (succeeded, or given up); 'again': it comes
   * back after the others; 'refused': refused for good, not given up yet, it comes back after
   * the pause of `refusalPauseMs`.
   */
  private async cycle(slot: DeviceSlot): Promise<'done' | 'again' | 'refused'> {
    if (succeeded(slot) || slot.gaveUp) return 'done';
    // a device the broker turns away (or that could not connect within its visit's time) ends
    // its visit and comes back: it held its worker for good (QA). Refused for a reason
    // retrying cannot fix, its visit ends at once, and counts towards giving it up
    // the visit's start: a question about a retry owed is answered by what the server said from then on
    const since = Date.now();
    const visit = await this.connect(slot, this.opts.idleTimeoutMs);
    if (visit === 'not connected') {
      await this.retire(slot);
      return 'again';
    }
    if (visit === 'refused') return this.visitRefused(slot);
    let finished = false;
    let commanded = false;
    let refused = false;
    await new Promise<void>((resolve) => {
      let timer = setTimeout(resolve, this.opts.idleTimeoutMs);
      slot.onCommand = () => {
        commanded = true;
        clearTimeout(timer);
      };
      slot.onFinished = () => {
        finished = true;
        clearTimeout(timer);
        resolve();
      };
      // a job that ended without ending the update (superseded, a take-back's stay): the visit
      // waits for the next command as at its start; the device's command (a retry) follows, or none
      slot.onCalledOff = () => {
        clearTimeout(timer);
        timer = setTimeout(resolve, this.opts.idleTimeoutMs);
      };
      // revoked or deleted while online: its reconnects are refused for good, and the visit
      // ends as one refused at its start. A visit that had its command waited for its end for ever
      slot.onRefused = () => {
        refused = true;
        clearTimeout(timer);
        resolve();
      };
    });
    slot.onFinished = undefined;
    slot.onCommand = undefined;
    slot.onCalledOff = undefined;
    slot.onRefused = undefined;
    if (refused) return this.visitRefused(slot);
    if (!finished && !commanded) this.stats.idleVisits++;
    // no command for the idle time, and the update's latest attempt failed (or was taken back):
    // unless the server says it still owes the device a command (a retry its rollout holds back),
    // it has no retry for the device, which is done in this run (`whenFinished`). Settled at its
    // first outcome, a device that failed let `--until-finished` end with its retry QUEUED (soak
    // QA J4); settled at the first visit with no command, with a retry held back longer than the
    // idle time (a rollout's rate or window, a pause) too. Asked once the device left, and only
    // for a device not done yet: a done one that failed still visits, so that a job's retry
    // reaches it, and was asked about again at each visit (review of d646af1)
    // the agent may have been replaced by a crash or an offline period meanwhile
    await this.retire(slot);
    if (!finished && !slot.settled && slot.outcome?.status === 'FAILURE') this.settleUnlessOwed(slot, slot.outcome, since);
    return succeeded(slot) || slot.gaveUp ? 'done' : 'again';
  }

  /** Cycling: the visit's agent was refused for good; 'done' once that gave the device up. */
  private async visitRefused(slot: DeviceSlot): Promise<'done' | 'refused'> {
    await this.retire(slot);
    return this.refusedAgain(slot) ? 'done' : 'refused';
  }

  /**
   * Settles the device unless the server says it still owes it a command of the job of the
   * failed attempt `outcome` (`SimOptions.commandOwed`; at once when there is no server to ask).
   * The question does not hold the device's worker (a slow server held every visit of the fleet
   * up while it answered: review of 4e685a7): the device is back in the queue meanwhile, and is
   * settled when the answer comes only if nothing happened to it since (the same outcome, no
   * status of a command taken). One question per device at a time; a failed one counts as none owed.
   */
  private settleUnlessOwed(slot: DeviceSlot, outcome: NonNullable<DeviceSlot['outcome']>, since: number): void {
    if (!this.opts.commandOwed) return this.settle(slot);
    if (slot.asking || this.stopped) return;
    slot.asking = true;
    const statuses = slot.statuses;
    const jobId = parseAgentJobId(outcome.jobId)?.jobId ?? outcome.jobId;
    void this.opts
      .commandOwed(slot.device.deviceId, jobId, since)
      .catch(() => false)
      .then((owed) => {
        slot.asking = false;
        if (!owed && slot.outcome === outcome && slot.statuses === statuses) this.settle(slot);
      });
  }

  /** The device dies mid-install and comes back: the agent resumes from its persisted state. */
  private async crash(slot: DeviceSlot): Promise<void> {
    this.stats.crashes++;
    await this.retire(slot);
    if (!this.stopped) await this.connectOrGiveUp(slot);
  }

  private async offlinePeriod(slot: DeviceSlot): Promise<void> {
    this.stats.offlinePeriods++;
    await this.retire(slot);
    await this.pause(this.opts.offlineMs);
    if (!this.stopped) await this.connectOrGiveUp(slot);
  }
}

/**
 * What a device's agent starts from: the jobs it finished and its trust (`SimDeviceState`),
 * as a real agent loads them from its disk; only the fields the device has (none for most).
 */
function agentStateOf(state: SimDeviceState | undefined): AgentStateData {
  const out: AgentStateData = { finished: state?.finished ?? [] };
  if (state?.keySerial !== undefined) out.keySerial = state.keySerial;
  if (state?.keySerialKeyId !== undefined) out.keySerialKeyId = state.keySerialKeyId;
  if (state?.rotatedRoot) out.rotatedRoot = state.rotatedRoot;
  return out;
}

/**
 * What a `job-finished` event says of the device's update: the outcome of an attempt (its
 * device-side job id), or undefined for none. A stay (`<id>.cancel`, `takesBack`) acknowledges
 * that the server took attempt `<id>` back (timed out, canceled): that attempt did not
 * succeed, whatever the stay's own status (a SUCCESS: the device stayed on the old version,
 * and was counted as updated, soak QA J4). A FAILURE because a newer command called the job
 * off (`supersededBy`) is no outcome: the newer one runs next.
 */
function updateOutcome(e: JobFinishedEvent): { jobId: string; status: 'SUCCESS' | 'FAILURE' } | undefined {
  if (e.takesBack !== undefined) return { jobId: e.takesBack, status: 'FAILURE' };
  if (e.supersededBy !== undefined) return undefined;
  return { jobId: e.jobId, status: e.status };
}

/** Device-side id `a` names a later attempt of its job than `b` does (another job's: taken as later, it came after). */
function isLaterAttempt(a: string, b: string): boolean {
  const pa = parseAgentJobId(a);
  const pb = parseAgentJobId(b);
  if (!pa || !pb || pa.jobId !== pb.jobId) return true;
  return pa.attempt > pb.attempt;
}

/** The device's latest outcome was a success (a function: the visit's awaits may change it). */
function succeeded(slot: DeviceSlot): boolean {
  return slot.outcome?.status === 'SUCCESS';
}

/**
 * True once `done()` holds for `agent` (checked at each change of the slot's connection);
 * false if `agent` is retired first (it is no longer the slot's) or `ms` pass.
 */
function until(slot: DeviceSlot, agent: UpdateAgent, done: () => boolean, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    let over = false;
    const finish = (): void => {
      over = true;
      clearTimeout(timer);
      resolve(slot.agent === agent && done());
    };
    // one waiter per slot: a connect() waits only after the one before it for that slot was woken (its agent retired) or was over
    const check = (): void => {
      if (over) return;
      if (slot.agent !== agent || done()) finish();
      else slot.onChange = check;
    };
    const timer = Number.isFinite(ms) ? setTimeout(finish, Math.max(0, ms)) : undefined;
    check();
  });
}

