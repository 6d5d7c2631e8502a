/**
 * The fleet simulator's options and their defaults, apart from the simulator itself, so that
 * the `updraft` command can describe them without loading the agent and mqtt.js.
 */
import os from 'node:os';
import path from 'node:path';
import type { FinishedJob, TrustState } from '../agent/agent-state.ts';
import type { InstalledSoftware } from '../agent/installer.ts';
import type { Logger } from '../util/logger.ts';
import type { PacerClock } from './connect-pacer.ts';
import type { SimTrust } from './sim-trust.ts';

/**
 * What a simulated device keeps between runs, as a real device keeps it on its disk: the
 * software it runs, the jobs its agent finished, and what a device trusting the root keeps of
 * its trust (`TrustState`: the highest key certificate serial it accepted and that
 * certificate's key, and the root it rotated to, each only once it has one). `updraft sim`
 * writes it into the devices file when it stops, so a rerun with `--devices-file` starts where
 * the devices were: a job they finished is acknowledged again, not installed again and not
 * counted as finished; a certificate older than the one they accepted is refused, and a device
 * that followed a root rotation trusts the new root (a rerun forgot both until 2026-12-07).
 */
export interface SimDeviceState extends TrustState {
  software: InstalledSoftware;
  finished: FinishedJob[];
}

/** One simulated device's identity, and its state from an earlier run. */
export interface SimDevice {
  deviceId: string;
  secret: string;
  state?: SimDeviceState;
}

/** Options of the simulator. */
export interface SimOptions {
  brokerUrl: string;
  devices: SimDevice[];
  /**
   * What every device verifies commands and artifacts with, as a real agent does: the
   * server's root or signing public key (one KeyObject, shared by all the agents), or
   * `{ allowUnsigned: true }`, the explicit opt-out (devices then report `trust = unsigned`,
   * which `updraft doctor` and the Health page warn about). No default: secure by default.
   */
  trust: SimTrust;
  mode: 'connected' | 'cycling';
  /** Cycling: devices online at once. */
  concurrency: number;
  /**
   * New connections per second (a real fleet does not connect in one burst): every connection
   * the simulator opens, at its start, in each cycling visit and after a crash or an offline
   * period, takes the next slot of a schedule 1000/connectRate ms apart.
   */
  connectRate: number;
  /** The connect rate's clock (tests: a virtual one). */
  clock?: PacerClock;
  /** Version the devices run at start (a device with a `state` from an earlier run runs its own). */
  initialVersion: string;
  /** Simulated install duration, ms. */
  installMs: number;
  /** Probability that an install fails its health check. */
  failureRate: number;
  /**
   * Probability, per device and job attempt (a retry draws again), that the device "crashes"
   * (agent stopped) while installing and restarts; it then resumes and finishes the job.
   */
  crashRate: number;
  /** Probability, per device and job attempt, that a device goes offline for `offlineMs` while downloading. */
  offlineRate: number;
  offlineMs: number;
  /** Cycling: how long a device waits online for a command before giving its slot away (and at most to connect). */
  idleTimeoutMs: number;
  /**
   * How long a connection attempt that neither connected nor failed holds its place among
   * those opened at once (a broker that accepted the socket and neither answers nor closes it;
   * a socket closed before any CONNACK is a failed attempt, and frees its place at once).
   */
  connectAttemptMs: number;
  /**
   * A device the broker refuses for a reason retrying cannot fix (bad user name or password,
   * not authorized, client id rejected, banned, protocol version not supported: CONNACK 4, 5,
   * 2 or 1 in MQTT 3.1.1; 0x86, 0x87, 0x85, 0x8A or 0x84 in MQTT 5) this many times in a row,
   * with no connection between (each time after a pause: 1-2 s, then 2-4 s..., in both
   * modes), is given up: counted in `gaveUp`, it takes no connecting
   * place and no cycling worker any more, and counts as done for `whenFinished`. A refusal
   * that retrying can fix (3, server unavailable: admission control) is retried, never counted.
   */
  refusalsToGiveUp: number;
  /**
   * Cycling: whether the server still owes `deviceId` a command of job `jobId` (an execution
   * QUEUED or IN_PROGRESS: a retry the rollout holds back behind its rate, waves, window,
   * in-flight limit or a pause), by what it said at `since` (ms, Date.now) or later
   * (owed-commands.ts). Asked when a device whose latest attempt (of `jobId`) failed visits and
   * finds no command: a device owed one is not done, and comes back; one owed none is done in
   * this run. Without it (no server to ask) the visit that found no command ends the device's
   * run, and a retry held back longer than `idleTimeoutMs` is not waited for. A question that
   * fails (it rejects) counts as none owed.
   */
  commandOwed?: (deviceId: string, jobId: string, since: number) => Promise<boolean>;
  /** Hears a device the broker refused or could not be reached for: once, until it connects. */
  onRefused?: (deviceId: string, reason: string) => void;
  /** Where partial downloads go. */
  workDir: string;
  seed: number;
  /**
   * Index of the first device in the whole fleet, when this simulator runs one slice of it
   * (`updraft sim --processes`): each device's random sequence follows its index in the fleet,
   * so a fleet split over several processes fails, crashes and goes offline exactly as in one.
   */
  firstIndex: number;
  logger?: Logger;
}

/** Defaults for every option but the broker, the devices and what they trust. */
export const SIM_DEFAULTS: Omit<SimOptions, 'brokerUrl' | 'devices' | 'trust'> = {
  mode: 'connected',
  concurrency: 5000,
  connectRate: 2000,
  initialVersion: '1.0.0',
  installMs: 0,
  failureRate: 0,
  crashRate: 0,
  offlineRate: 0,
  offlineMs: 2000,
  idleTimeoutMs: 5000,
  connectAttemptMs: 10_000,
  refusalsToGiveUp: 3,
  workDir: path.join(os.tmpdir(), 'updraft-sim'),
  seed: 1,
  firstIndex: 0,
};
